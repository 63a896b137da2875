#include "clinker/adapters/file/file_storage_driver.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <linux/fs.h>
#include <nlohmann/json.hpp>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace clinker::adapters {
namespace {

constexpr int kGibShift = 30;
constexpr std::int64_t kMaxSizeGib = std::numeric_limits<std::int64_t>::max() >> kGibShift;
// Keeps "snapshot-<id>.img" and the temp name well under NAME_MAX; a UUID is 36 characters.
constexpr std::size_t kMaxIdLength = 128;
// Largest piece one copy_file_range call is asked for; the kernel may do less.
constexpr std::int64_t kCopyChunkBytes = std::int64_t{1} << 30;
// Buffer of the pread/pwrite fallback.
constexpr std::size_t kCopyBufferBytes = std::size_t{1} << 20;

constexpr std::string_view kVolumeKind = "volume";
constexpr std::string_view kSnapshotKind = "snapshot";

std::string ErrnoText(int error) {
  return std::error_code(error, std::generic_category()).message();
}

tl::unexpected<Error> SysError(std::string_view what, const std::string& path, int error) {
  return MakeError(ErrorCode::kDriverFailed,
                   std::string(what) + " " + path + " failed: " + ErrnoText(error));
}

// Owns a file descriptor; closing errors are ignored because every write that matters is
// fsync'ed (and checked) before the descriptor goes.
class ScopedFd {
 public:
  ScopedFd() = default;

  explicit ScopedFd(int fd) : fd_(fd) {}

  ScopedFd(ScopedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

  ScopedFd& operator=(ScopedFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }

  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;

  ~ScopedFd() { Reset(); }

  int get() const { return fd_; }

  // Closes now, reporting the error (a close may report a deferred write error).
  int Close() { return ::close(std::exchange(fd_, -1)); }

 private:
  void Reset() {
    if (fd_ >= 0) {
      ::close(std::exchange(fd_, -1));
    }
  }

  int fd_ = -1;
};

// The only guard against path traversal: an id made of hex digits and '-' cannot contain '/'
// or be "." / "..".
Result<void> ValidateId(std::string_view kind, std::string_view id) {
  if (id.empty() || id.size() > kMaxIdLength) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        std::string(kind) + " id must have 1 to 128 characters: '" + std::string(id) + "'");
  }
  for (char c : id) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex && c != '-') {
      return MakeError(
          ErrorCode::kInvalidArgument,
          std::string(kind) + " id may hold only hex digits and '-': '" + std::string(id) + "'");
    }
  }
  return {};
}

Result<void> ValidateSizeGib(std::int64_t size_gib) {
  if (size_gib <= 0 || size_gib > kMaxSizeGib) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "volume size must be positive, got " + std::to_string(size_gib));
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

// The size of the image at `path`, or nullopt if there is none.
Result<std::optional<std::int64_t>> ImageSize(const std::string& path) {
  struct stat info {};

  if (::stat(path.c_str(), &info) != 0) {
    const int stat_errno = errno;
    if (stat_errno == ENOENT) {
      return std::optional<std::int64_t>();
    }
    return SysError("stat", path, stat_errno);
  }
  if (!S_ISREG(info.st_mode)) {
    return MakeError(ErrorCode::kDriverFailed, path + " exists and is not a regular file");
  }
  return std::optional<std::int64_t>(info.st_size);
}

// Present with the expected size: true; absent: false; present with another size:
// kInvalidArgument (the request can never succeed).
Result<bool> ExistsWithSize(const std::string& path, std::int64_t size_gib) {
  CLINKER_ASSIGN_OR_RETURN(std::optional<std::int64_t> size_bytes, ImageSize(path));
  if (!size_bytes) {
    return false;
  }
  if (*size_bytes != size_gib << kGibShift) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "volume exists with " + std::to_string(*size_bytes >> kGibShift) +
                         " GiB, not the requested " + std::to_string(size_gib) + " GiB");
  }
  return true;
}

// Opens an image to read from; kNotFound (naming `what`) when it does not exist.
Result<ScopedFd> OpenImageForReading(const std::string& path, const std::string& what) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    const int open_errno = errno;
    if (open_errno == ENOENT) {
      return MakeError(ErrorCode::kNotFound, what + " does not exist");
    }
    return SysError("open", path, open_errno);
  }
  return fd;
}

Result<std::int64_t> FileSize(int fd, const std::string& path) {
  struct stat info {};

  if (::fstat(fd, &info) != 0) {
    return SysError("fstat", path, errno);
  }
  if (!S_ISREG(info.st_mode)) {
    return MakeError(ErrorCode::kDriverFailed, path + " is not a regular file");
  }
  return static_cast<std::int64_t>(info.st_size);
}

// Copies [offset, offset + length) by pread/pwrite, for when the kernel cannot copy between the
// two files itself.
Result<void> CopyRangeThroughBuffer(int source_fd,
                                    int target_fd,
                                    std::int64_t offset,
                                    std::int64_t length,
                                    const std::string& target_path) {
  std::vector<char> buffer(kCopyBufferBytes);
  const std::int64_t end = offset + length;
  while (offset < end) {
    const auto want = static_cast<std::size_t>(
        std::min<std::int64_t>(end - offset, static_cast<std::int64_t>(buffer.size())));
    const ssize_t got = ::pread(source_fd, buffer.data(), want, offset);
    if (got < 0) {
      if (errno == EINTR) {
        continue;
      }
      return SysError("read source of", target_path, errno);
    }
    if (got == 0) {
      // The caller holds the source under a shared lock, so it cannot shrink: a bug or an
      // outside writer.
      return MakeError(
          ErrorCode::kDriverFailed,
          "source of " + target_path + " ended early at byte " + std::to_string(offset));
    }
    std::size_t written = 0;
    while (written < static_cast<std::size_t>(got)) {
      const ssize_t put = ::pwrite(target_fd,
                                   buffer.data() + written,
                                   static_cast<std::size_t>(got) - written,
                                   offset + static_cast<std::int64_t>(written));
      if (put < 0) {
        if (errno == EINTR) {
          continue;
        }
        return SysError("write", target_path, errno);
      }
      written += static_cast<std::size_t>(put);
    }
    offset += got;
  }
  return {};
}

// Copies one data range, in the kernel (copy_file_range) while it can; `kernel_copy` turns false
// for good once the kernel refuses this pair of files.
Result<void> CopyRange(int source_fd,
                       int target_fd,
                       std::int64_t offset,
                       std::int64_t length,
                       bool& kernel_copy,
                       const std::string& target_path) {
  const std::int64_t end = offset + length;
  while (offset < end && kernel_copy) {
    loff_t in = offset;
    loff_t out = offset;
    const auto want = static_cast<std::size_t>(std::min(end - offset, kCopyChunkBytes));
    const ssize_t copied = ::copy_file_range(source_fd, &in, target_fd, &out, want, 0);
    if (copied > 0) {
      offset += copied;
      continue;
    }
    if (copied < 0 && errno == EINTR) {
      continue;
    }
    const int copy_errno = copied < 0 ? errno : 0;
    // 0 before the end: some file systems copy nothing rather than fail; let the buffer path
    // decide whether the source really ended.
    if (copied == 0 || copy_errno == EXDEV || copy_errno == ENOSYS || copy_errno == EINVAL ||
        copy_errno == EOPNOTSUPP) {
      kernel_copy = false;
      break;
    }
    return SysError("copy_file_range to", target_path, copy_errno);
  }
  if (offset < end) {
    return CopyRangeThroughBuffer(source_fd, target_fd, offset, end - offset, target_path);
  }
  return {};
}

// The one way this driver copies an image (clones and snapshots): makes the empty file at
// `target_fd` a copy of the whole file at `source_fd`, of the same size.
// - First a reflink (FICLONE): the copy shares the source's blocks copy-on-write, in constant
//   time. File systems without it (ext4, tmpfs) or a target on another file system refuse it.
// - Else only the source's data extents are copied (SEEK_DATA / SEEK_HOLE), so its holes stay
//   holes: a mostly empty volume copies fast and stays sparse. File systems that do not report
//   extents make the whole file one data extent.
Result<void> CopyImageData(int source_fd, int target_fd, const std::string& target_path) {
  if (::ioctl(target_fd, FICLONE, source_fd) == 0) {
    return {};
  }
  const int clone_errno = errno;
  if (clone_errno != EOPNOTSUPP && clone_errno != EXDEV && clone_errno != EINVAL &&
      clone_errno != ENOTTY) {
    return SysError("reflink to", target_path, clone_errno);
  }
  CLINKER_ASSIGN_OR_RETURN(const std::int64_t size, FileSize(source_fd, target_path + "'s source"));
  bool kernel_copy = true;
  std::int64_t offset = 0;
  // Each round moves past one data extent, so the loop ends after at most as many rounds as the
  // source has extents.
  while (offset < size) {
    off_t data = ::lseek(source_fd, offset, SEEK_DATA);
    off_t hole = 0;
    if (data < 0) {
      const int seek_errno = errno;
      if (seek_errno == ENXIO) {
        break;  // Only a hole is left.
      }
      if (seek_errno != EINVAL) {
        return SysError("seek data in source of", target_path, seek_errno);
      }
      data = offset;  // No extent reporting: copy the rest as data.
      hole = size;
    } else {
      hole = ::lseek(source_fd, data, SEEK_HOLE);
      if (hole < 0) {
        return SysError("seek hole in source of", target_path, errno);
      }
    }
    hole = std::min<off_t>(hole, size);
    if (hole <= data) {
      break;  // Data past the size we read: nothing within the image is left.
    }
    CLINKER_RETURN_IF_ERROR(
        CopyRange(source_fd, target_fd, data, hole - data, kernel_copy, target_path));
    offset = hole;
  }
  // The source's trailing hole, if any: the target has its size without writing blocks.
  if (::ftruncate(target_fd, size) != 0) {
    return SysError("ftruncate", target_path, errno);
  }
  return {};
}

// Like rename(), but never replaces an image another worker put in place meanwhile. Returns
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
    // The file system lacks RENAME_NOREPLACE; callers serialise per resource anyway.
    if (::rename(from.c_str(), to.c_str()) == 0) {
      return true;
    }
    return SysError("rename to", to, errno);
  }
  return SysError("rename to", to, rename_errno);
}

// ".volume-<id>.img.tmp." or ".snapshot-<id>.img.tmp.", followed by mkostemp's six characters.
std::string TempPrefix(std::string_view kind, std::string_view id) {
  return "." + std::string(kind) + "-" + std::string(id) + ".img.tmp.";
}

// Temp files left by a create that crashed: removed with the resource so nothing leaks.
void RemoveStaleTempFiles(const std::string& dir, std::string_view kind, std::string_view id) {
  const std::string prefix = TempPrefix(kind, id);
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
  // Connection info hands out paths to other processes, whatever their working directory.
  std::filesystem::path absolute = std::filesystem::absolute(options.volume_dir, error);
  if (error) {
    return MakeError(
        ErrorCode::kDriverFailed,
        "cannot resolve volume directory " + options.volume_dir + ": " + error.message());
  }
  options.volume_dir = absolute.lexically_normal().string();
  if (options.volume_dir.size() > 1 && options.volume_dir.back() == '/') {
    options.volume_dir.pop_back();
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

std::string FileStorageDriver::SnapshotPath(std::string_view snapshot_id) const {
  return options_.volume_dir + "/snapshot-" + std::string(snapshot_id) + ".img";
}

void FileStorageDriver::Delay() const {
  if (options_.delay.count() > 0) {
    std::this_thread::sleep_for(options_.delay);
  }
}

Result<void> FileStorageDriver::CreateVolume(const ports::VolumeSpec& spec) {
  CLINKER_RETURN_IF_ERROR(ValidateId(kVolumeKind, spec.volume_id));
  CLINKER_RETURN_IF_ERROR(ValidateSizeGib(spec.size_gib));
  const bool from_snapshot = spec.source.kind == ports::VolumeSource::Kind::kSnapshot;
  const bool cloned = spec.source.kind != ports::VolumeSource::Kind::kNone;
  if (cloned) {
    CLINKER_RETURN_IF_ERROR(
        ValidateId(from_snapshot ? kSnapshotKind : kVolumeKind, spec.source.id));
  }
  Delay();
  const std::string path = VolumePath(spec.volume_id);
  const std::int64_t size_bytes = spec.size_gib << kGibShift;
  CLINKER_ASSIGN_OR_RETURN(bool existed, ExistsWithSize(path, spec.size_gib));
  if (!existed) {
    ScopedFd source;
    if (cloned) {
      const std::string source_path =
          from_snapshot ? SnapshotPath(spec.source.id) : VolumePath(spec.source.id);
      const std::string what =
          (from_snapshot ? "source snapshot " : "source volume ") + spec.source.id;
      CLINKER_ASSIGN_OR_RETURN(source, OpenImageForReading(source_path, what));
      CLINKER_ASSIGN_OR_RETURN(const std::int64_t source_bytes,
                               FileSize(source.get(), source_path));
      if (source_bytes > size_bytes) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "volume size " + std::to_string(spec.size_gib) + " GiB is smaller than " +
                             what + " (" + std::to_string(source_bytes >> kGibShift) + " GiB)");
      }
    }
    CLINKER_ASSIGN_OR_RETURN(
        const bool renamed,
        PublishImage(
            kVolumeKind, spec.volume_id, source.get(), size_bytes, path, spec.fencing_token));
    if (!renamed) {
      // Someone created it between our check and our rename: judge theirs like any other.
      CLINKER_ASSIGN_OR_RETURN(existed, ExistsWithSize(path, spec.size_gib));
    }
  }
  JournalFields fields = {{"volume_id", spec.volume_id}};
  if (cloned) {
    fields.emplace_back("source_kind", from_snapshot ? kSnapshotKind : kVolumeKind);
    fields.emplace_back("source_id", spec.source.id);
  }
  return AppendJournal("create_volume", fields, spec.operation_id, !existed);
}

Result<void> FileStorageDriver::DeleteVolume(std::string_view volume_id,
                                             std::string_view operation_id,
                                             std::uint64_t fencing_token) {
  CLINKER_RETURN_IF_ERROR(ValidateId(kVolumeKind, volume_id));
  Delay();
  CLINKER_ASSIGN_OR_RETURN(
      const bool changed,
      RemoveImage(kVolumeKind, volume_id, VolumePath(volume_id), fencing_token));
  return AppendJournal("delete_volume", {{"volume_id", volume_id}}, operation_id, changed);
}

Result<void> FileStorageDriver::ExtendVolume(std::string_view volume_id,
                                             std::int64_t new_size_gib,
                                             std::string_view operation_id,
                                             std::uint64_t fencing_token) {
  CLINKER_RETURN_IF_ERROR(ValidateId(kVolumeKind, volume_id));
  CLINKER_RETURN_IF_ERROR(ValidateSizeGib(new_size_gib));
  Delay();
  const std::string path = VolumePath(volume_id);
  const std::int64_t new_size_bytes = new_size_gib << kGibShift;
  bool changed = false;
  {
    // The ftruncate is the change, so it runs under the guard like a rename.
    CLINKER_ASSIGN_OR_RETURN(FenceGuard guard, FenceGuard::Take(options_.volume_dir, LOCK_SH));
    CLINKER_RETURN_IF_ERROR(CheckFence(volume_id, fencing_token));
    ScopedFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (fd.get() < 0) {
      const int open_errno = errno;
      if (open_errno == ENOENT) {
        return MakeError(ErrorCode::kNotFound,
                         "volume " + std::string(volume_id) + " does not exist");
      }
      return SysError("open", path, open_errno);
    }
    CLINKER_ASSIGN_OR_RETURN(const std::int64_t size_bytes, FileSize(fd.get(), path));
    if (size_bytes > new_size_bytes) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "cannot shrink volume " + std::string(volume_id) + " from " +
                           std::to_string(size_bytes >> kGibShift) + " GiB to " +
                           std::to_string(new_size_gib) + " GiB");
    }
    if (size_bytes < new_size_bytes) {
      // Extends without writing blocks: the new space is a hole that reads as zeros.
      if (::ftruncate(fd.get(), new_size_bytes) != 0) {
        return SysError("ftruncate", path, errno);
      }
      if (::fsync(fd.get()) != 0) {
        return SysError("fsync", path, errno);
      }
      changed = true;
    }
  }
  return AppendJournal("extend_volume",
                       {{"volume_id", volume_id}, {"size_gib", new_size_gib}},
                       operation_id,
                       changed);
}

Result<void> FileStorageDriver::CreateSnapshot(const ports::SnapshotSpec& spec) {
  CLINKER_RETURN_IF_ERROR(ValidateId(kSnapshotKind, spec.snapshot_id));
  CLINKER_RETURN_IF_ERROR(ValidateId(kVolumeKind, spec.volume_id));
  Delay();
  const std::string path = SnapshotPath(spec.snapshot_id);
  CLINKER_ASSIGN_OR_RETURN(const std::optional<std::int64_t> existing, ImageSize(path));
  bool changed = false;
  // A snapshot keeps its volume as it was when taken, so an existing one is the answer to a
  // repeated request even if the volume has grown since.
  if (!existing) {
    const std::string volume_path = VolumePath(spec.volume_id);
    CLINKER_ASSIGN_OR_RETURN(const ScopedFd volume,
                             OpenImageForReading(volume_path, "volume " + spec.volume_id));
    CLINKER_ASSIGN_OR_RETURN(const std::int64_t size_bytes, FileSize(volume.get(), volume_path));
    CLINKER_ASSIGN_OR_RETURN(
        changed,
        PublishImage(
            kSnapshotKind, spec.snapshot_id, volume.get(), size_bytes, path, spec.fencing_token));
  }
  return AppendJournal("create_snapshot",
                       {{"snapshot_id", spec.snapshot_id}, {"volume_id", spec.volume_id}},
                       spec.operation_id,
                       changed);
}

Result<void> FileStorageDriver::DeleteSnapshot(std::string_view snapshot_id,
                                               std::string_view operation_id,
                                               std::uint64_t fencing_token) {
  CLINKER_RETURN_IF_ERROR(ValidateId(kSnapshotKind, snapshot_id));
  Delay();
  CLINKER_ASSIGN_OR_RETURN(
      const bool changed,
      RemoveImage(kSnapshotKind, snapshot_id, SnapshotPath(snapshot_id), fencing_token));
  return AppendJournal("delete_snapshot", {{"snapshot_id", snapshot_id}}, operation_id, changed);
}

Result<ports::ConnectionInfo> FileStorageDriver::InitializeConnection(
    std::string_view volume_id, const ports::Connector& connector) {
  CLINKER_RETURN_IF_ERROR(ValidateId(kVolumeKind, volume_id));
  const std::string path = VolumePath(volume_id);
  CLINKER_ASSIGN_OR_RETURN(const std::optional<std::int64_t> size_bytes, ImageSize(path));
  if (!size_bytes) {
    return MakeError(ErrorCode::kNotFound, "volume " + std::string(volume_id) + " does not exist");
  }
  // The file is reachable as it is: nothing is exported, so nothing changed.
  CLINKER_RETURN_IF_ERROR(AppendJournal("initialize_connection",
                                        {{"volume_id", volume_id}, {"host", connector.host}},
                                        /*operation_id=*/"",
                                        /*changed=*/false));
  return ports::ConnectionInfo{"local", {{"device_path", path}}};
}

Result<void> FileStorageDriver::TerminateConnection(std::string_view volume_id,
                                                    const ports::Connector& connector) {
  CLINKER_RETURN_IF_ERROR(ValidateId(kVolumeKind, volume_id));
  // A local file has no export to tear down.
  return AppendJournal("terminate_connection",
                       {{"volume_id", volume_id}, {"host", connector.host}},
                       /*operation_id=*/"",
                       /*changed=*/false);
}

Result<bool> FileStorageDriver::PublishImage(std::string_view kind,
                                             std::string_view resource_id,
                                             int source_fd,
                                             std::int64_t size_bytes,
                                             const std::string& final_path,
                                             std::uint64_t fencing_token) const {
  const std::string& dir = options_.volume_dir;
  std::string pattern = dir + "/" + TempPrefix(kind, resource_id) + "XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  ScopedFd fd(::mkostemp(buffer.data(), O_CLOEXEC));
  if (fd.get() < 0) {
    return SysError("create temp file in", dir, errno);
  }
  const std::string temp_path(buffer.data());
  // Whatever fails from here on, the temp file goes: only a renamed image survives.
  auto discard = [&temp_path](tl::unexpected<Error> error) {
    ::unlink(temp_path.c_str());
    return error;
  };
  if (source_fd >= 0) {
    if (Result<void> copied = CopyImageData(source_fd, fd.get(), temp_path); !copied) {
      return discard(tl::unexpected(std::move(copied).error()));
    }
  }
  // Grows the copy (or makes a blank image) without writing blocks: the new space is a hole, and
  // creating a 1 TiB volume costs the same as a 1 GiB one.
  if (::ftruncate(fd.get(), size_bytes) != 0) {
    return discard(SysError("ftruncate", temp_path, errno));
  }
  if (::fsync(fd.get()) != 0) {
    return discard(SysError("fsync", temp_path, errno));
  }
  if (fd.Close() != 0) {
    return discard(SysError("close", temp_path, errno));
  }
  bool renamed = false;
  {
    Result<FenceGuard> guard = FenceGuard::Take(dir, LOCK_SH);
    if (!guard) {
      return discard(tl::unexpected(std::move(guard).error()));
    }
    if (Result<void> admitted = CheckFence(resource_id, fencing_token); !admitted) {
      return discard(tl::unexpected(std::move(admitted).error()));
    }
    Result<bool> done = RenameNoReplace(temp_path, final_path);
    if (!done) {
      return discard(tl::unexpected(std::move(done).error()));
    }
    renamed = *done;
  }
  if (!renamed) {
    ::unlink(temp_path.c_str());
  }
  CLINKER_RETURN_IF_ERROR(SyncDirectory(dir));
  return renamed;
}

Result<bool> FileStorageDriver::RemoveImage(std::string_view kind,
                                            std::string_view resource_id,
                                            const std::string& path,
                                            std::uint64_t fencing_token) const {
  bool existed = true;
  {
    CLINKER_ASSIGN_OR_RETURN(FenceGuard guard, FenceGuard::Take(options_.volume_dir, LOCK_SH));
    CLINKER_RETURN_IF_ERROR(CheckFence(resource_id, fencing_token));
    if (::unlink(path.c_str()) != 0) {
      const int unlink_errno = errno;
      if (unlink_errno != ENOENT) {
        return SysError("unlink", path, unlink_errno);
      }
      existed = false;
    }
  }
  RemoveStaleTempFiles(options_.volume_dir, kind, resource_id);
  // Synced even when the file was already gone: a redone delete may follow a crash between
  // the unlink and the directory sync.
  CLINKER_RETURN_IF_ERROR(SyncDirectory(options_.volume_dir));
  return existed;
}

// The "volume-" prefix predates snapshots; it names the fence of any resource id, so fences
// written before snapshots existed keep their meaning.
std::string FileStorageDriver::FencePath(std::string_view resource_id) const {
  return options_.volume_dir + std::string(kFenceDir) + "/volume-" + std::string(resource_id);
}

Result<void> FileStorageDriver::CheckFence(std::string_view resource_id,
                                           std::uint64_t fencing_token) const {
  CLINKER_ASSIGN_OR_RETURN(std::uint64_t fence, ReadFence(FencePath(resource_id)));
  if (fencing_token < fence) {
    return MakeError(ErrorCode::kFenced,
                     std::string(resource_id) + " is fenced at token " + std::to_string(fence) +
                         "; this operation carries " + std::to_string(fencing_token));
  }
  return {};
}

Result<void> FileStorageDriver::Fence(std::string_view resource_id, std::uint64_t fencing_token) {
  // Volume and snapshot ids obey the same rule; "resource" keeps the message neutral.
  CLINKER_RETURN_IF_ERROR(ValidateId("resource", resource_id));
  CLINKER_ASSIGN_OR_RETURN(FenceGuard guard, FenceGuard::Take(options_.volume_dir, LOCK_EX));
  const std::string path = FencePath(resource_id);
  CLINKER_ASSIGN_OR_RETURN(std::uint64_t fence, ReadFence(path));
  if (fencing_token < fence) {
    return CheckFence(resource_id, fencing_token);  // The caller's lock is stale: kFenced.
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
                                              const JournalFields& fields,
                                              std::string_view operation_id,
                                              bool changed) const {
  if (options_.journal_path.empty()) {
    return {};
  }
  nlohmann::ordered_json entry;
  entry["op"] = op;
  for (const auto& [key, value] : fields) {
    entry[std::string(key)] = value;
  }
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
