#include "clinker/adapters/file/file_lock_manager.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <system_error>
#include <thread>

#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <unistd.h>

namespace clinker::adapters {
namespace {

using Clock = std::chrono::steady_clock;
using ports::LockMode;

// The first retry comes quickly because most holds are short (one state-store write); the cap
// bounds how late a waiter notices a release without burning a core while it waits.
constexpr std::chrono::microseconds kBackoffStart{200};
constexpr std::chrono::microseconds kBackoffMax{5000};
// Longer timeouts are clamped so that now + timeout cannot overflow the steady clock.
constexpr std::chrono::milliseconds kMaxTimeout = std::chrono::hours(24 * 365);
// How long even a TryAcquire waits for the turnstile: a reader holds it for microseconds while it
// picks a slot, and that should not turn a free lock into kBusy.
constexpr std::chrono::milliseconds kTurnstileGrace{20};
// How long a grant waits for the token file whatever its own timeout: its holders only read,
// write and sync 21 bytes, so waiting longer means the disk is stuck (kUnavailable then).
constexpr std::chrono::milliseconds kTokenLockBudget{10000};

constexpr std::string_view kLockSuffix = ".lock";
constexpr std::string_view kTurnstileSuffix = ".turnstile";
constexpr std::string_view kCappedSuffix = ".capped";
constexpr std::string_view kTokenSuffix = ".token";
constexpr std::string_view kSlotSuffix = ".slot.";

constexpr std::size_t DecimalDigits(int value) {
  std::size_t digits = 1;
  for (; value >= 10; value /= 10) {
    ++digits;
  }
  return digits;
}

// The longest suffix a name's files get: ".turnstile" or ".slot.1023".
constexpr std::size_t kLongestSuffix = std::max(
    kTurnstileSuffix.size(), kSlotSuffix.size() + DecimalDigits(ports::kMaxReadersLimit - 1));

// Fixed widths, so that a rewrite always covers the whole previous value (no truncate needed).
constexpr std::size_t kTokenDigits = 20;  // Every uint64_t fits.
constexpr std::size_t kCapDigits = 10;

std::string ErrnoText(int error) {
  return std::error_code(error, std::generic_category()).message();
}

bool IsPlainByte(unsigned char byte) {
  return (byte >= 'A' && byte <= 'Z') || (byte >= 'a' && byte <= 'z') ||
         (byte >= '0' && byte <= '9') || byte == '.' || byte == '_' || byte == '-';
}

// Percent-encoding is injective because '%' is not a plain byte: "a/b" -> "a%2Fb" and the
// literal name "a%2Fb" -> "a%252Fb". A name made only of dots stays harmless since a suffix is
// always appended ("..lock" is an ordinary file name).
std::string EncodeName(std::string_view name) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(name.size());
  for (char c : name) {
    auto byte = static_cast<unsigned char>(c);
    if (IsPlainByte(byte)) {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0x0F]);
    }
  }
  return out;
}

std::string SlotPath(const std::string& base, int index) {
  return base + std::string(kSlotSuffix) + std::to_string(index);
}

// Owns one descriptor (with its own open file description) and whatever flock it holds.
class UniqueFd {
 public:
  UniqueFd() = default;

  explicit UniqueFd(int fd) : fd_(fd) {}

  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }

  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }

  bool valid() const { return fd_ >= 0; }

  void Unlock() {
    if (fd_ >= 0) {
      ::flock(fd_, LOCK_UN);
    }
  }

  // Unlocks before closing: a child forked (without exec) while the lock was held shares this
  // open file description, and close() alone would leave the lock with that child.
  void Reset() {
    if (fd_ >= 0) {
      ::flock(fd_, LOCK_UN);
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_ = -1;
};

// kNotFound when `create` is false and the file does not exist.
Result<UniqueFd> OpenFile(const std::string& path, bool create) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
  if (fd < 0) {
    const int open_errno = errno;
    if (open_errno == ENOENT && !create) {
      return MakeError(ErrorCode::kNotFound, path + " does not exist");
    }
    return MakeError(ErrorCode::kUnavailable,
                     "cannot open lock file " + path + ": " + ErrnoText(open_errno));
  }
  return UniqueFd(fd);
}

Result<void> SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    const int open_errno = errno;
    return MakeError(ErrorCode::kUnavailable,
                     "cannot open directory " + dir + ": " + ErrnoText(open_errno));
  }
  const int synced = ::fsync(fd);
  const int sync_errno = errno;
  ::close(fd);
  if (synced != 0) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot sync directory " + dir + ": " + ErrnoText(sync_errno));
  }
  return {};
}

// One non-blocking attempt: true if locked, false if someone else holds a conflicting lock.
Result<bool> TryFlock(const UniqueFd& fd, int operation, const std::string& path) {
  while (true) {
    if (::flock(fd.get(), operation | LOCK_NB) == 0) {
      return true;
    }
    const int flock_errno = errno;
    if (flock_errno == EWOULDBLOCK) {
      return false;
    }
    if (flock_errno != EINTR) {
      return MakeError(ErrorCode::kUnavailable,
                       "flock on " + path + " failed: " + ErrnoText(flock_errno));
    }
  }
}

// Attempts until locked or `deadline` passes (at least once); kBusy with `busy_message` then.
Result<void> FlockUntil(const UniqueFd& fd,
                        int operation,
                        Clock::time_point deadline,
                        const std::string& path,
                        const std::string& busy_message) {
  std::chrono::microseconds backoff = kBackoffStart;
  while (true) {
    CLINKER_ASSIGN_OR_RETURN(const bool locked, TryFlock(fd, operation, path));
    if (locked) {
      return {};
    }
    const Clock::time_point now = Clock::now();
    if (now >= deadline) {
      return MakeError(ErrorCode::kBusy, busy_message);
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, kBackoffMax);
  }
}

// Parses exactly `digits` decimal digits followed by '\n'.
std::optional<std::uint64_t> ParseFixed(const char* text, std::size_t size, std::size_t digits) {
  if (size != digits + 1 || text[digits] != '\n') {
    return std::nullopt;
  }
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(text, text + digits, value);
  if (error != std::errc() || end != text + digits) {
    return std::nullopt;
  }
  return value;
}

std::string FormatFixed(std::uint64_t value, std::size_t digits) {
  std::string text = std::to_string(value);
  text.insert(0, digits - std::min(digits, text.size()), '0');
  text.push_back('\n');
  return text;
}

bool WriteAt0(const UniqueFd& fd, const std::string& text) {
  return ::pwrite(fd.get(), text.data(), text.size(), 0) == static_cast<ssize_t>(text.size());
}

// The cap a slot's holder was admitted under. Holders write it while they hold the turnstile, and
// this runs under the turnstile too, so a slot without a valid cap belongs to a process that died
// mid-admission: treat it as the strictest cap until the kernel frees the slot.
int ReadSlotCap(const UniqueFd& slot) {
  char text[kCapDigits + 2];
  const ssize_t size = ::pread(slot.get(), text, sizeof(text), 0);
  if (size <= 0) {
    return 1;
  }
  auto value = ParseFixed(text, static_cast<std::size_t>(size), kCapDigits);
  if (!value || *value < 1 || *value > static_cast<std::uint64_t>(ports::kMaxReadersLimit)) {
    return 1;
  }
  return static_cast<int>(*value);
}

// What a reader holds, besides the lock file, once admitted.
struct Admission {
  bool admitted = false;
  // Declared before `slot` so that it is released after it: a reader without the `capped` lock
  // never holds a slot, which lets a newcomer skip the slot scan when `capped` is free.
  UniqueFd capped;
  UniqueFd slot;
};

// Decides whether a shared request with `cap` may go in now, and takes its slot if it is
// counted. The caller holds the turnstile, so admissions never run concurrently; holders leave
// at any time, which can only make this decision stricter than needed, never looser.
//
// Invariant kept by every admission: each occupied slot is below the smallest cap written in the
// occupied slots, and each holder's slot records the cap it was admitted under. So scanning slots
// [0, smallest cap seen) finds every holder, and slots are created in order (a reader creates slot
// i only when 0..i-1 exist), so the first missing slot ends the scan.
Result<Admission> AdmitReader(const std::string& base, int cap) {
  Admission admission;
  const std::string capped_path = base + std::string(kCappedSuffix);
  CLINKER_ASSIGN_OR_RETURN(admission.capped, OpenFile(capped_path, /*create=*/true));
  CLINKER_ASSIGN_OR_RETURN(const bool nobody_counted,
                           TryFlock(admission.capped, LOCK_EX, capped_path));
  if (nobody_counted) {
    admission.capped.Unlock();
    if (cap == 0) {
      admission.capped.Reset();
      admission.admitted = true;
      return admission;
    }
  }

  int smallest = 0;  // Smallest cap among the holders seen; 0 while none is.
  int counted = 0;
  int highest = -1;  // The highest occupied slot.
  int free_index = -1;
  UniqueFd free_slot;  // Locked when the free slot exists.
  auto effective = [&] {
    if (smallest == 0) {
      return cap;
    }
    return cap == 0 ? smallest : std::min(cap, smallest);
  };
  int bound = nobody_counted ? cap : ports::kMaxReadersLimit;
  for (int index = 0; index < bound; ++index) {
    if (nobody_counted && free_index >= 0) {
      break;  // No holder can sit in a slot: the first free one will do.
    }
    const std::string path = SlotPath(base, index);
    auto slot = OpenFile(path, /*create=*/false);
    if (!slot) {
      if (slot.error().code != ErrorCode::kNotFound) {
        return tl::unexpected(std::move(slot).error());
      }
      if (free_index < 0) {
        free_index = index;
      }
      break;
    }
    CLINKER_ASSIGN_OR_RETURN(const bool is_free, TryFlock(*slot, LOCK_EX, path));
    if (is_free) {
      if (free_index < 0) {
        free_index = index;
        free_slot = std::move(*slot);
      }
      continue;  // Any other free slot is unlocked and closed by its destructor.
    }
    ++counted;
    highest = index;
    const int holder_cap = ReadSlotCap(*slot);
    smallest = smallest == 0 ? holder_cap : std::min(smallest, holder_cap);
    bound = std::min(bound, smallest);
    const int limit = effective();
    if (counted >= limit || highest >= limit) {
      return Admission{};
    }
  }

  const int limit = effective();
  if (limit == 0) {
    // No cap asked for, and the capped holders left during the scan.
    admission.capped.Reset();
    admission.admitted = true;
    return admission;
  }
  if (counted >= limit || highest >= limit || free_index < 0 || free_index >= limit) {
    return Admission{};
  }
  const std::string path = SlotPath(base, free_index);
  if (!free_slot.valid()) {
    CLINKER_ASSIGN_OR_RETURN(free_slot, OpenFile(path, /*create=*/true));
    CLINKER_ASSIGN_OR_RETURN(const bool locked, TryFlock(free_slot, LOCK_EX, path));
    if (!locked) {
      return Admission{};  // Only a dying process mid-admission can hold it; try again later.
    }
  }
  if (!WriteAt0(free_slot, FormatFixed(static_cast<std::uint64_t>(limit), kCapDigits))) {
    const int write_errno = errno;
    return MakeError(ErrorCode::kUnavailable,
                     "cannot write reader slot " + path + ": " + ErrnoText(write_errno));
  }
  // Only another admission probes `capped` with LOCK_EX, and the turnstile rules that out.
  CLINKER_ASSIGN_OR_RETURN(const bool shared, TryFlock(admission.capped, LOCK_SH, capped_path));
  if (!shared) {
    return Admission{};
  }
  admission.slot = std::move(free_slot);
  admission.admitted = true;
  return admission;
}

// Holds the lock file's flock, plus a reader's slot and `capped` lock. Not shared between
// threads: one holder owns it.
class FileLock final : public ports::Lock {
 public:
  FileLock(std::string name, LockMode mode, std::uint64_t token, UniqueFd lock, Admission admission)
      : name_(std::move(name)),
        mode_(mode),
        token_(token),
        lock_(std::move(lock)),
        admission_(std::move(admission)) {}

  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  ~FileLock() override { Release(); }

  const std::string& name() const override { return name_; }

  LockMode mode() const override { return mode_; }

  std::uint64_t fencing_token() const override { return token_; }

  bool IsLost() const override { return false; }

  // The lock file goes first: while a reader still held it after giving its slot back, a newcomer
  // could take the slot and one reader too many would hold the lock.
  void Release() override {
    lock_.Reset();
    admission_.slot.Reset();
    admission_.capped.Reset();
  }

 private:
  std::string name_;
  LockMode mode_;
  std::uint64_t token_;
  UniqueFd lock_;
  Admission admission_;
};

}  // namespace

Result<std::unique_ptr<FileLockManager>> FileLockManager::Create(std::string dir) {
  if (dir.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "lock directory is empty");
  }
  std::error_code error;
  const bool created = std::filesystem::create_directories(dir, error);
  if (error) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot create lock directory " + dir + ": " + error.message());
  }
  if (!std::filesystem::is_directory(dir, error)) {
    return MakeError(ErrorCode::kUnavailable, "lock directory " + dir + " is not a directory");
  }
  if (created) {
    // The token files must not vanish with a power loss, so the new directory's own entry is
    // made durable too.
    std::filesystem::path path = std::filesystem::absolute(dir, error).lexically_normal();
    if (!path.has_filename()) {
      path = path.parent_path();  // "a/locks/" names the directory "a/locks".
    }
    if (!error) {
      CLINKER_RETURN_IF_ERROR(SyncDirectory(path.parent_path().string()));
    }
  }
  return std::unique_ptr<FileLockManager>(new FileLockManager(std::move(dir)));
}

std::string FileLockManager::BasePath(std::string_view name) const {
  std::string path = dir_;
  path += '/';
  path += EncodeName(name);
  return path;
}

std::string FileLockManager::PathFor(std::string_view name) const {
  return BasePath(name) + std::string(kLockSuffix);
}

Result<ports::LockPtr> FileLockManager::Acquire(const ports::LockRequest& request,
                                                std::chrono::milliseconds timeout) {
  return AcquireWithin(request, std::clamp(timeout, std::chrono::milliseconds(0), kMaxTimeout));
}

Result<ports::LockPtr> FileLockManager::TryAcquire(const ports::LockRequest& request) {
  return AcquireWithin(request, std::chrono::milliseconds(0));
}

void FileLockManager::SetLostCallback(ports::LockLostCallback callback) {
  std::lock_guard<std::mutex> guard(mutex_);
  on_lost_ = std::move(callback);
}

Result<std::uint64_t> FileLockManager::NextToken(const std::string& base,
                                                 Clock::time_point deadline) {
  const std::string path = base + std::string(kTokenSuffix);
  CLINKER_ASSIGN_OR_RETURN(UniqueFd token_file, OpenFile(path, /*create=*/true));
  auto locked = FlockUntil(
      token_file, LOCK_EX, std::max(deadline, Clock::now() + kTokenLockBudget), path, "");
  if (!locked) {
    return MakeError(ErrorCode::kUnavailable,
                     locked.error().code == ErrorCode::kBusy
                         ? "token file " + path + " stayed locked too long"
                         : locked.error().message);
  }
  char text[kTokenDigits + 2];
  const ssize_t size = ::pread(token_file.get(), text, sizeof(text), 0);
  if (size < 0) {
    const int read_errno = errno;
    return MakeError(ErrorCode::kUnavailable,
                     "cannot read token file " + path + ": " + ErrnoText(read_errno));
  }
  std::uint64_t last = 0;  // A new (or lost) file: the wall clock alone sets the token.
  if (size != 0) {
    auto parsed = ParseFixed(text, static_cast<std::size_t>(size), kTokenDigits);
    if (!parsed || *parsed == UINT64_MAX) {
      return MakeError(ErrorCode::kUnavailable,
                       "token file " + path +
                           " is corrupt; repair it by hand with a value larger than any token "
                           "issued (20 digits and a newline)");
    }
    last = *parsed;
  }
  // See the header: the wall clock keeps tokens increasing across a lost write, so the write is
  // not synced.
  const auto wall_us = std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  const std::uint64_t token = std::max(last + 1, static_cast<std::uint64_t>(wall_us));
  if (!WriteAt0(token_file, FormatFixed(token, kTokenDigits))) {
    const int write_errno = errno;
    return MakeError(ErrorCode::kUnavailable,
                     "cannot write token file " + path + ": " + ErrnoText(write_errno));
  }
  return token;
}

Result<ports::LockPtr> FileLockManager::AcquireWithin(const ports::LockRequest& request,
                                                      std::chrono::milliseconds timeout) {
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + timeout;
  CLINKER_RETURN_IF_ERROR(ports::ValidateLockRequest(request));
  if (EncodeName(request.name).size() + kLongestSuffix > NAME_MAX) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "lock name too long for a file name: " + request.name);
  }
  // Lock files are created on demand and never unlinked. Unlinking one would break exclusion:
  // a process blocked on (or about to flock) the old inode would get "its" lock on a file
  // nobody else can see any more, while a newcomer creates and locks a fresh inode under the
  // same name. The files are tiny, so keeping them costs a few inodes per resource.
  const std::string base = BasePath(request.name);
  const std::string lock_path = base + std::string(kLockSuffix);
  const std::string turnstile_path = base + std::string(kTurnstileSuffix);
  // Declared before `lock` so that a reader's slot is given back after the lock file, as in
  // FileLock::Release, when a later step fails.
  Admission admission;
  CLINKER_ASSIGN_OR_RETURN(UniqueFd lock, OpenFile(lock_path, /*create=*/true));
  const std::string held = "lock " + request.name + " is held";

  if (request.mode == LockMode::kExclusive) {
    // A first attempt without the turnstile, so that TryAcquire never waits for it.
    CLINKER_ASSIGN_OR_RETURN(const bool locked, TryFlock(lock, LOCK_EX, lock_path));
    if (!locked) {
      if (Clock::now() >= deadline) {
        return MakeError(ErrorCode::kBusy, held);
      }
      CLINKER_ASSIGN_OR_RETURN(UniqueFd turnstile, OpenFile(turnstile_path, /*create=*/true));
      CLINKER_RETURN_IF_ERROR(FlockUntil(
          turnstile, LOCK_EX, deadline, turnstile_path, held + " (another writer waits)"));
      // Holding the turnstile keeps new readers out until this writer has the lock.
      CLINKER_RETURN_IF_ERROR(FlockUntil(lock, LOCK_EX, deadline, lock_path, held));
    }
  } else {
    CLINKER_ASSIGN_OR_RETURN(UniqueFd turnstile, OpenFile(turnstile_path, /*create=*/true));
    const Clock::time_point turnstile_deadline = std::max(deadline, start + kTurnstileGrace);
    std::chrono::microseconds backoff = kBackoffStart;
    while (true) {
      CLINKER_RETURN_IF_ERROR(FlockUntil(turnstile,
                                         LOCK_EX,
                                         turnstile_deadline,
                                         turnstile_path,
                                         "lock " + request.name + " is awaited by a writer"));
      auto admitted = AdmitReader(base, request.max_readers);
      turnstile.Unlock();
      if (!admitted) {
        return tl::unexpected(std::move(admitted).error());
      }
      if (admitted->admitted) {
        admission = std::move(*admitted);
        break;
      }
      const Clock::time_point now = Clock::now();
      if (now >= deadline) {
        return MakeError(ErrorCode::kBusy, "lock " + request.name + " is at its reader limit");
      }
      std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
      backoff = std::min(backoff * 2, kBackoffMax);
    }
    CLINKER_RETURN_IF_ERROR(FlockUntil(lock, LOCK_SH, deadline, lock_path, held + " exclusively"));
  }

  CLINKER_ASSIGN_OR_RETURN(const std::uint64_t token, NextToken(base, deadline));
  ports::LockPtr granted = std::make_unique<FileLock>(
      request.name, request.mode, token, std::move(lock), std::move(admission));
  return granted;
}

}  // namespace clinker::adapters
