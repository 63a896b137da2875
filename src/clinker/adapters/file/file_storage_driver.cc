#include "clinker/adapters/file/file_storage_driver.h"

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace clinker::adapters {
namespace {

constexpr int kGibShift = 30;
constexpr std::int64_t kMaxSizeGib = std::numeric_limits<std::int64_t>::max() >> kGibShift;
// Keeps "volume-<id>.img" and the temp name well under NAME_MAX; a UUID is 36 characters.
constexpr std::size_t kMaxVolumeIdLength = 128;

std::string ErrnoText(int error) {
  return std::error_code(error, std::generic_category()).message();
}

tl::unexpected<Error> SysError(std::string_view what, const std::string& path, int error) {
  return MakeError(ErrorCode::kDriverFailed,
                   std::string(what) + " " + path + " failed: " + ErrnoText(error));
}

// The only guard against path traversal: an id made of hex digits and '-' cannot contain '/'
// or be "." / "..".
Result<void> ValidateVolumeId(std::string_view volume_id) {
  if (volume_id.empty() || volume_id.size() > kMaxVolumeIdLength) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "volume id must have 1 to 128 characters: '" + std::string(volume_id) + "'");
  }
  for (char c : volume_id) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex && c != '-') {
      return MakeError(
          ErrorCode::kInvalidArgument,
          "volume id may hold only hex digits and '-': '" + std::string(volume_id) + "'");
    }
  }
  return {};
}

// A rename or unlink is durable only once the directory itself is synced.
Result<void> SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return SysError("open directory", dir, errno);
  }
  const int rc = ::fsync(fd);
  const int sync_errno = errno;
  ::close(fd);
  if (rc != 0) {
    return SysError("fsync directory", dir, sync_errno);
  }
  return {};
}

// Present with the expected size: true; absent: false; present with another size:
// kInvalidArgument (the request can never succeed).
Result<bool> ExistsWithSize(const std::string& path, off_t size_bytes, std::int64_t size_gib) {
  struct stat info {};

  if (::stat(path.c_str(), &info) != 0) {
    const int stat_errno = errno;
    if (stat_errno == ENOENT) {
      return false;
    }
    return SysError("stat", path, stat_errno);
  }
  if (!S_ISREG(info.st_mode)) {
    return MakeError(ErrorCode::kDriverFailed, path + " exists and is not a regular file");
  }
  if (info.st_size != size_bytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "volume exists with " + std::to_string(info.st_size >> kGibShift) +
                         " GiB, not the requested " + std::to_string(size_gib) + " GiB");
  }
  return true;
}

// Writes a fully sized, synced file under a temporary name; returns that name. The caller
// renames it into place or removes it.
Result<std::string> WriteTempVolume(const std::string& dir,
                                    std::string_view volume_id,
                                    off_t size_bytes) {
  std::string name = dir + "/.volume-" + std::string(volume_id) + ".img.tmp.XXXXXX";
  std::vector<char> buffer(name.begin(), name.end());
  buffer.push_back('\0');
  const int fd = ::mkostemp(buffer.data(), O_CLOEXEC);
  if (fd < 0) {
    return SysError("create temp file in", dir, errno);
  }
  std::string temp_path(buffer.data());
  // ftruncate extends without writing blocks: the volume is sparse, and creating a 1 TiB
  // volume costs the same as a 1 GiB one.
  int rc = ::ftruncate(fd, size_bytes);
  const char* step = "ftruncate";
  if (rc == 0) {
    rc = ::fsync(fd);
    step = "fsync";
  }
  const int step_errno = errno;
  const int close_rc = ::close(fd);
  const int close_errno = errno;
  if (rc != 0 || close_rc != 0) {
    ::unlink(temp_path.c_str());
    return rc != 0 ? SysError(step, temp_path, step_errno)
                   : SysError("close", temp_path, close_errno);
  }
  return temp_path;
}

// Like rename(), but never replaces a volume another worker put in place meanwhile. Returns
// false (and leaves `from` alone) when `to` exists.
Result<bool> RenameNoReplace(const std::string& from, const std::string& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) {
    return true;
  }
  const int rename_errno = errno;
  if (rename_errno == EEXIST) {
    return false;
  }
  if (rename_errno == EINVAL || rename_errno == ENOSYS) {
    // The file system lacks RENAME_NOREPLACE; callers serialise per volume anyway.
    if (::rename(from.c_str(), to.c_str()) == 0) {
      return true;
    }
    return SysError("rename to", to, errno);
  }
  return SysError("rename to", to, rename_errno);
}

// Temp files left by a create that crashed: removed with the volume so nothing leaks.
void RemoveStaleTempFiles(const std::string& dir, std::string_view volume_id) {
  const std::string prefix = ".volume-" + std::string(volume_id) + ".img.tmp.";
  std::error_code error;
  std::filesystem::directory_iterator it(dir, error);
  if (error) {
    return;
  }
  for (const auto& entry : it) {
    const std::string file_name = entry.path().filename().string();
    if (file_name.size() == prefix.size() + 6 && file_name.compare(0, prefix.size(), prefix) == 0) {
      ::unlink(entry.path().c_str());
    }
  }
}

constexpr std::string_view kFenceDir = "/.fences";
constexpr std::string_view kFenceGuard = "/.fences/.lock";

// flock on the fence guard file for as long as it lives. Each guard opens its own file
// description, so threads of one process exclude each other as processes do.
class FenceGuard {
 public:
  static Result<FenceGuard> Take(const std::string& volume_dir, int operation) {
    const std::string path = volume_dir + std::string(kFenceGuard);
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return SysError("open", path, errno);
    }
    int rc = 0;
    do {
      rc = ::flock(fd, operation);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      const int flock_errno = errno;
      ::close(fd);
      return SysError("flock", path, flock_errno);
    }
    return FenceGuard(fd);
  }

  FenceGuard(FenceGuard&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

  FenceGuard& operator=(FenceGuard&&) = delete;
  FenceGuard(const FenceGuard&) = delete;
  FenceGuard& operator=(const FenceGuard&) = delete;

  ~FenceGuard() {
    if (fd_ >= 0) {
      ::close(fd_);  // Drops the flock.
    }
  }

 private:
  explicit FenceGuard(int fd) : fd_(fd) {}

  int fd_;
};

// The fence token stored at `path`; 0 when there is none.
Result<std::uint64_t> ReadFence(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int open_errno = errno;
    if (open_errno == ENOENT) {
      return std::uint64_t{0};
    }
    return SysError("open", path, open_errno);
  }
  char buffer[32] = {};
  const ssize_t got = ::read(fd, buffer, sizeof(buffer) - 1);
  const int read_errno = errno;
  ::close(fd);
  if (got < 0) {
    return SysError("read", path, read_errno);
  }
  std::uint64_t token = 0;
  const char* end = buffer + got;
  auto [next, error] = std::from_chars(buffer, end, token);
  if (error != std::errc() || next == buffer || (next != end && *next != '\n')) {
    // Never treated as "no fence": that would let a stale holder through.
    return MakeError(ErrorCode::kDriverFailed, "corrupt fence file " + path);
  }
  return token;
}

}  // namespace

FileStorageDriver::FileStorageDriver(Options options) : options_(std::move(options)) {}

Result<std::unique_ptr<FileStorageDriver>> FileStorageDriver::Create(Options options) {
  if (options.volume_dir.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "volume_dir is empty");
  }
  std::error_code error;
  std::filesystem::create_directories(options.volume_dir, error);
  if (error) {
    return MakeError(
        ErrorCode::kDriverFailed,
        "cannot create volume directory " + options.volume_dir + ": " + error.message());
  }
  if (!std::filesystem::is_directory(options.volume_dir, error)) {
    return MakeError(ErrorCode::kDriverFailed, options.volume_dir + " is not a directory");
  }
  std::filesystem::create_directories(options.volume_dir + std::string(kFenceDir), error);
  if (error) {
    return MakeError(
        ErrorCode::kDriverFailed,
        "cannot create fence directory in " + options.volume_dir + ": " + error.message());
  }
  return std::unique_ptr<FileStorageDriver>(new FileStorageDriver(std::move(options)));
}

std::string FileStorageDriver::VolumePath(std::string_view volume_id) const {
  return options_.volume_dir + "/volume-" + std::string(volume_id) + ".img";
}

Result<void> FileStorageDriver::CreateVolume(const ports::VolumeSpec& spec) {
  CLINKER_RETURN_IF_ERROR(ValidateVolumeId(spec.volume_id));
  if (spec.size_gib <= 0 || spec.size_gib > kMaxSizeGib) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "volume size must be positive, got " + std::to_string(spec.size_gib));
  }
  if (options_.delay.count() > 0) {
    std::this_thread::sleep_for(options_.delay);
  }
  const std::string path = VolumePath(spec.volume_id);
  const off_t size_bytes = static_cast<off_t>(spec.size_gib) << kGibShift;
  CLINKER_ASSIGN_OR_RETURN(bool existed, ExistsWithSize(path, size_bytes, spec.size_gib));
  if (!existed) {
    CLINKER_ASSIGN_OR_RETURN(std::string temp_path,
                             WriteTempVolume(options_.volume_dir, spec.volume_id, size_bytes));
    Result<FenceGuard> guard = FenceGuard::Take(options_.volume_dir, LOCK_SH);
    Result<void> admitted =
        guard ? CheckFence(spec.volume_id, spec.fencing_token) : tl::unexpected(guard.error());
    if (!admitted) {
      ::unlink(temp_path.c_str());
      return admitted;
    }
    Result<bool> renamed = RenameNoReplace(temp_path, path);
    if (!renamed || !*renamed) {
      ::unlink(temp_path.c_str());
    }
    if (!renamed) {
      return tl::unexpected(std::move(renamed).error());
    }
    if (!*renamed) {
      // Someone created it between our check and our rename: judge theirs like any other.
      CLINKER_ASSIGN_OR_RETURN(existed, ExistsWithSize(path, size_bytes, spec.size_gib));
    }
    CLINKER_RETURN_IF_ERROR(SyncDirectory(options_.volume_dir));
  }
  return AppendJournal("create_volume", spec.volume_id, spec.operation_id, !existed);
}

Result<void> FileStorageDriver::DeleteVolume(std::string_view volume_id,
                                             std::string_view operation_id,
                                             std::uint64_t fencing_token) {
  CLINKER_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
  if (options_.delay.count() > 0) {
    std::this_thread::sleep_for(options_.delay);
  }
  const std::string path = VolumePath(volume_id);
  bool changed = true;
  {
    CLINKER_ASSIGN_OR_RETURN(FenceGuard guard, FenceGuard::Take(options_.volume_dir, LOCK_SH));
    CLINKER_RETURN_IF_ERROR(CheckFence(volume_id, fencing_token));
    if (::unlink(path.c_str()) != 0) {
      const int unlink_errno = errno;
      if (unlink_errno != ENOENT) {
        return SysError("unlink", path, unlink_errno);
      }
      changed = false;
    }
  }
  RemoveStaleTempFiles(options_.volume_dir, volume_id);
  // Synced even when the file was already gone: a redone delete may follow a crash between
  // the unlink and the directory sync.
  CLINKER_RETURN_IF_ERROR(SyncDirectory(options_.volume_dir));
  return AppendJournal("delete_volume", volume_id, operation_id, changed);
}

std::string FileStorageDriver::FencePath(std::string_view volume_id) const {
  return options_.volume_dir + std::string(kFenceDir) + "/volume-" + std::string(volume_id);
}

Result<void> FileStorageDriver::CheckFence(std::string_view volume_id,
                                           std::uint64_t fencing_token) const {
  CLINKER_ASSIGN_OR_RETURN(std::uint64_t fence, ReadFence(FencePath(volume_id)));
  if (fencing_token < fence) {
    return MakeError(ErrorCode::kFenced,
                     "volume " + std::string(volume_id) + " is fenced at token " +
                         std::to_string(fence) + "; this operation carries " +
                         std::to_string(fencing_token));
  }
  return {};
}

Result<void> FileStorageDriver::Fence(std::string_view volume_id, std::uint64_t fencing_token) {
  CLINKER_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
  CLINKER_ASSIGN_OR_RETURN(FenceGuard guard, FenceGuard::Take(options_.volume_dir, LOCK_EX));
  const std::string path = FencePath(volume_id);
  CLINKER_ASSIGN_OR_RETURN(std::uint64_t fence, ReadFence(path));
  if (fencing_token < fence) {
    return CheckFence(volume_id, fencing_token);  // The caller's lock is stale: kFenced.
  }
  if (fencing_token == fence) {
    return {};
  }
  // Written aside, synced, then renamed over the old fence: a crash leaves the old or the new
  // token, never a torn one (which ReadFence would refuse anyway).
  const std::string temp_path = path + ".tmp";
  const int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return SysError("open", temp_path, errno);
  }
  const std::string text = std::to_string(fencing_token) + "\n";
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const int write_errno = errno;
  const bool synced = written && ::fsync(fd) == 0;
  const int sync_errno = errno;
  ::close(fd);
  if (!written || !synced) {
    ::unlink(temp_path.c_str());
    return SysError(written ? "fsync" : "write", temp_path, written ? sync_errno : write_errno);
  }
  if (::rename(temp_path.c_str(), path.c_str()) != 0) {
    const int rename_errno = errno;
    ::unlink(temp_path.c_str());
    return SysError("rename to", path, rename_errno);
  }
  return SyncDirectory(options_.volume_dir + std::string(kFenceDir));
}

Result<ports::BackendStats> FileStorageDriver::GetStats() {
  struct statvfs info {};

  if (::statvfs(options_.volume_dir.c_str(), &info) != 0) {
    return SysError("statvfs", options_.volume_dir, errno);
  }
  const auto fragment = static_cast<std::uint64_t>(info.f_frsize);
  ports::BackendStats stats;
  stats.backend_name = options_.backend_name;
  stats.total_capacity_gib = static_cast<std::int64_t>(
      (static_cast<std::uint64_t>(info.f_blocks) * fragment) >> kGibShift);
  stats.free_capacity_gib = static_cast<std::int64_t>(
      (static_cast<std::uint64_t>(info.f_bavail) * fragment) >> kGibShift);
  return stats;
}

Result<void> FileStorageDriver::AppendJournal(std::string_view op,
                                              std::string_view volume_id,
                                              std::string_view operation_id,
                                              bool changed) const {
  if (options_.journal_path.empty()) {
    return {};
  }
  nlohmann::ordered_json entry;
  entry["op"] = op;
  entry["volume_id"] = volume_id;
  entry["operation_id"] = operation_id;
  entry["pid"] = static_cast<std::int64_t>(::getpid());
  entry["changed"] = changed;
  // One write() of the whole line on an O_APPEND descriptor: the kernel appends it atomically
  // with respect to other appenders, so lines from several workers never interleave.
  const std::string line = entry.dump() + "\n";
  const std::string& path = options_.journal_path;
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return SysError("open journal", path, errno);
  }
  ssize_t written = -1;
  int write_errno = 0;
  do {
    written = ::write(fd, line.data(), line.size());
    write_errno = errno;
  } while (written < 0 && write_errno == EINTR);
  ::close(fd);
  if (written < 0) {
    return SysError("append to journal", path, write_errno);
  }
  if (static_cast<std::size_t>(written) != line.size()) {
    return MakeError(ErrorCode::kDriverFailed, "short write to journal " + path);
  }
  return {};
}

}  // namespace clinker::adapters
