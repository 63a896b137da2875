#include "clinker/adapters/file/file_lock_manager.h"

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <system_error>
#include <thread>

#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <unistd.h>

namespace clinker::adapters {
namespace {

// The first retry comes quickly because most holds are short (one state-store write); the cap
// bounds how late a waiter notices a release without burning a core while it waits.
constexpr std::chrono::microseconds kBackoffStart{200};
constexpr std::chrono::microseconds kBackoffMax{5000};
constexpr std::string_view kLockSuffix = ".lock";
// Longer timeouts are clamped so that now + timeout cannot overflow the steady clock.
constexpr std::chrono::milliseconds kMaxTimeout = std::chrono::hours(24 * 365);

std::string ErrnoText(int error) {
  return std::error_code(error, std::generic_category()).message();
}

bool IsPlainByte(unsigned char byte) {
  return (byte >= 'A' && byte <= 'Z') || (byte >= 'a' && byte <= 'z') ||
         (byte >= '0' && byte <= '9') || byte == '.' || byte == '_' || byte == '-';
}

// Percent-encoding is injective because '%' is not a plain byte: "a/b" -> "a%2Fb" and the
// literal name "a%2Fb" -> "a%252Fb". A name made only of dots stays harmless since ".lock" is
// appended ("..lock" is an ordinary file name).
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

// Owns one O_CLOEXEC descriptor with its own open file description holding LOCK_EX. Not shared
// between threads: one holder owns it.
class FileLock final : public ports::Lock {
 public:
  FileLock(std::string name, int fd) : name_(std::move(name)), fd_(fd) {}

  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  ~FileLock() override { Release(); }

  const std::string& name() const override { return name_; }

  void Release() override {
    if (fd_ < 0) {
      return;
    }
    // Unlock before closing: a child forked (without exec) while the lock was held shares this
    // open file description, and close() alone would leave the lock with that child.
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
    fd_ = -1;
  }

 private:
  std::string name_;
  int fd_;
};

}  // namespace

Result<std::unique_ptr<FileLockManager>> FileLockManager::Create(std::string dir) {
  if (dir.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "lock directory is empty");
  }
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot create lock directory " + dir + ": " + error.message());
  }
  if (!std::filesystem::is_directory(dir, error)) {
    return MakeError(ErrorCode::kUnavailable, "lock directory " + dir + " is not a directory");
  }
  return std::unique_ptr<FileLockManager>(new FileLockManager(std::move(dir)));
}

std::string FileLockManager::PathFor(std::string_view name) const {
  std::string path = dir_;
  path += '/';
  path += EncodeName(name);
  path += kLockSuffix;
  return path;
}

Result<ports::LockPtr> FileLockManager::Acquire(std::string_view name,
                                                std::chrono::milliseconds timeout) {
  return AcquireWithin(name, std::clamp(timeout, std::chrono::milliseconds(0), kMaxTimeout));
}

Result<ports::LockPtr> FileLockManager::TryAcquire(std::string_view name) {
  return AcquireWithin(name, std::chrono::milliseconds(0));
}

Result<ports::LockPtr> FileLockManager::AcquireWithin(std::string_view name,
                                                      std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + timeout;
  if (name.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "lock name is empty");
  }
  if (EncodeName(name).size() + kLockSuffix.size() > NAME_MAX) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "lock name too long for a file name: " + std::string(name));
  }
  // Lock files are created on demand and never unlinked. Unlinking one would break exclusion:
  // a process blocked on (or about to flock) the old inode would get "its" lock on a file
  // nobody else can see any more, while a newcomer creates and locks a fresh inode under the
  // same name. The files are empty, so keeping them costs one inode per resource.
  const std::string path = PathFor(name);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int open_errno = errno;
    return MakeError(ErrorCode::kUnavailable,
                     "cannot open lock file " + path + ": " + ErrnoText(open_errno));
  }
  std::chrono::microseconds backoff = kBackoffStart;
  while (true) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      ports::LockPtr lock = std::make_unique<FileLock>(std::string(name), fd);
      return lock;
    }
    const int flock_errno = errno;
    if (flock_errno != EWOULDBLOCK && flock_errno != EINTR) {
      ::close(fd);
      return MakeError(ErrorCode::kUnavailable,
                       "flock on " + path + " failed: " + ErrnoText(flock_errno));
    }
    const Clock::time_point now = Clock::now();
    if (now >= deadline) {
      ::close(fd);
      return MakeError(ErrorCode::kBusy, "lock " + std::string(name) + " is held");
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, kBackoffMax);
  }
}

}  // namespace clinker::adapters
