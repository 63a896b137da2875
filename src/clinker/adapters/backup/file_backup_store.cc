#include "clinker/adapters/backup/file_backup_store.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

namespace clinker::adapters {
namespace {

using Bytes = std::vector<unsigned char>;

constexpr int kManifestFormatVersion = 1;
// Keeps "backup-<id>" and the marker names well under NAME_MAX; a UUID is 36 characters.
constexpr std::size_t kMaxBackupIdLength = 128;
constexpr std::int64_t kBlockBytes = 4096;
constexpr std::int64_t kMinChunkBytes = std::int64_t{64} << 10;
constexpr std::int64_t kMaxChunkBytes = std::int64_t{1} << 30;
// Far beyond any volume; keeps chunk arithmetic on a damaged manifest from overflowing.
constexpr std::int64_t kMaxSizeBytes = std::int64_t{1} << 60;
constexpr std::size_t kSha256HexLength = 64;
// A directory lock is retried when the directory was replaced between open() and flock(), which
// needs a delete and a create of the same backup in that window; more than a few is a bug.
constexpr int kLockAttemptsMax = 4;

constexpr std::string_view kManifestName = "manifest.json";
constexpr std::string_view kManifestTempName = "manifest.json.tmp";
constexpr std::string_view kDependentsName = "dependents";

std::string ErrnoText(int error) {
  return std::error_code(error, std::generic_category()).message();
}

tl::unexpected<Error> SysError(std::string_view what, const std::string& path, int error) {
  return MakeError(ErrorCode::kDriverFailed,
                   std::string(what) + " " + path + " failed: " + ErrnoText(error));
}

tl::unexpected<Error> Corrupt(std::string_view backup_id, const std::string& what) {
  return MakeError(ErrorCode::kDriverFailed,
                   "backup " + std::string(backup_id) + " is corrupt: " + what);
}

// The only guard against path traversal: an id made of hex digits and '-' cannot contain '/'
// or be "." / "..".
bool IsValidBackupId(std::string_view backup_id) {
  if (backup_id.empty() || backup_id.size() > kMaxBackupIdLength) {
    return false;
  }
  return std::all_of(backup_id.begin(), backup_id.end(), [](char c) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    return hex || c == '-';
  });
}

Result<void> ValidateBackupId(std::string_view backup_id, std::string_view what) {
  if (!IsValidBackupId(backup_id)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string(what) + " must have 1 to 128 characters, hex digits and '-': '" +
                         std::string(backup_id) + "'");
  }
  return {};
}

// Owns a file descriptor; closing on scope exit is for error paths, where the close result no
// longer matters (durability comes from an explicit fsync before a successful return).
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}

  FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

  FileDescriptor& operator=(FileDescriptor&&) = delete;
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;

  ~FileDescriptor() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }

  int get() const { return fd_; }

  // Closes now and reports the error: on some file systems a deferred write error shows only
  // in close().
  Result<void> Close(const std::string& path) {
    const int rc = ::close(std::exchange(fd_, -1));
    if (rc != 0) {
      return SysError("close", path, errno);
    }
    return {};
  }

 private:
  int fd_;
};

Result<FileDescriptor> Open(const std::string& path, int flags, mode_t mode = 0) {
  int fd = -1;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    return SysError("open", path, errno);
  }
  return FileDescriptor(fd);
}

Result<void> ReadFull(
    int fd, const std::string& path, unsigned char* data, std::int64_t size, std::int64_t offset) {
  std::int64_t done = 0;
  while (done < size) {
    const ssize_t got = ::pread(
        fd, data + done, static_cast<std::size_t>(size - done), static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) {
        continue;
      }
      return SysError("read", path, errno);
    }
    if (got == 0) {
      return MakeError(ErrorCode::kDriverFailed,
                       "read " + path + " failed: it ended at " + std::to_string(offset + done) +
                           ", before " + std::to_string(offset + size));
    }
    done += got;
  }
  return {};
}

Result<void> WriteFull(int fd,
                       const std::string& path,
                       const unsigned char* data,
                       std::int64_t size,
                       std::int64_t offset) {
  std::int64_t done = 0;
  while (done < size) {
    const ssize_t put = ::pwrite(
        fd, data + done, static_cast<std::size_t>(size - done), static_cast<off_t>(offset + done));
    if (put < 0) {
      if (errno == EINTR) {
        continue;
      }
      return SysError("write", path, errno);
    }
    done += put;
  }
  return {};
}

Result<void> Fsync(int fd, const std::string& path) {
  if (::fsync(fd) != 0) {
    return SysError("fsync", path, errno);
  }
  return {};
}

// A create, rename or unlink is durable only once the directory itself is synced.
Result<void> SyncDirectory(const std::string& dir) {
  CLINKER_ASSIGN_OR_RETURN(FileDescriptor fd, Open(dir, O_RDONLY | O_DIRECTORY));
  CLINKER_RETURN_IF_ERROR(Fsync(fd.get(), dir));
  return fd.Close(dir);
}

// Creates (or replaces) `path` with `data`, synced. The directory entry is the caller's to sync.
Result<void> WriteFileDurably(const std::string& path,
                              const unsigned char* data,
                              std::int64_t size) {
  CLINKER_ASSIGN_OR_RETURN(FileDescriptor fd, Open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  CLINKER_RETURN_IF_ERROR(WriteFull(fd.get(), path, data, size, 0));
  CLINKER_RETURN_IF_ERROR(Fsync(fd.get(), path));
  return fd.Close(path);
}

// The whole file, or nullopt if it (or its directory) does not exist.
Result<std::optional<std::string>> ReadWholeFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int open_errno = errno;
    if (open_errno == ENOENT || open_errno == ENOTDIR) {
      return std::optional<std::string>();
    }
    return SysError("open", path, open_errno);
  }
  FileDescriptor owned(fd);

  struct stat info {};

  if (::fstat(fd, &info) != 0) {
    return SysError("stat", path, errno);
  }
  std::string text(static_cast<std::size_t>(info.st_size), '\0');
  CLINKER_RETURN_IF_ERROR(ReadFull(fd,
                                   path,
                                   reinterpret_cast<unsigned char*>(text.data()),
                                   static_cast<std::int64_t>(text.size()),
                                   0));
  return std::optional<std::string>(std::move(text));
}

// Opens a volume's data (a regular file or a block device) and returns its size. The path comes
// from the caller, so a path that cannot be used is kInvalidArgument, not a back-end failure.
Result<std::pair<FileDescriptor, std::int64_t>> OpenVolumeData(const std::string& path,
                                                               int flags,
                                                               std::string_view role) {
  const std::string name = std::string(role) + " " + path;
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    const int open_errno = errno;
    switch (open_errno) {
      case ENOENT:
      case ENOTDIR:
      case EACCES:
      case EPERM:
      case EISDIR:
      case ENXIO:
      case ENODEV:
      case ELOOP:
        return MakeError(ErrorCode::kInvalidArgument,
                         "cannot open " + name + ": " + ErrnoText(open_errno));
      default:
        return SysError("open", name, open_errno);
    }
  }
  FileDescriptor owned(fd);

  struct stat info {};

  if (::fstat(fd, &info) != 0) {
    return SysError("stat", name, errno);
  }
  if (!S_ISREG(info.st_mode) && !S_ISBLK(info.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     name + " is neither a regular file nor a block device");
  }
  // st_size is 0 for a block device; seeking to the end works for both.
  const off_t size = ::lseek(fd, 0, SEEK_END);
  if (size < 0) {
    return SysError("seek to the end of", name, errno);
  }
  return std::pair<FileDescriptor, std::int64_t>(std::move(owned), size);
}

Result<std::string> Sha256Hex(const unsigned char* data, std::int64_t size) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  if (EVP_Digest(
          data, static_cast<std::size_t>(size), digest, &digest_size, EVP_sha256(), nullptr) != 1) {
    return MakeError(ErrorCode::kDriverFailed, "SHA-256 failed (out of memory?)");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(std::size_t{2} * digest_size);
  for (unsigned int i = 0; i < digest_size; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0x0f]);
  }
  return hex;
}

bool IsSha256Hex(const std::string& text) {
  return text.size() == kSha256HexLength && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool IsAllZero(const unsigned char* data, std::int64_t size) {
  // Comparing the buffer with itself shifted by one byte runs at memcmp speed.
  return size == 0 ||
         (data[0] == 0 && std::memcmp(data, data + 1, static_cast<std::size_t>(size - 1)) == 0);
}

// flock on a backup's directory for as long as it lives. Each lock opens its own file
// description, so threads of one process exclude each other as processes do.
class DirectoryLock {
 public:
  // kNotFound if the directory does not exist; kBusy if `operation` has LOCK_NB and the lock is
  // held elsewhere.
  static Result<DirectoryLock> Take(const std::string& path, int operation) {
    for (int attempt = 0; attempt < kLockAttemptsMax; ++attempt) {
      const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0) {
        const int open_errno = errno;
        if (open_errno == ENOENT) {
          return MakeError(ErrorCode::kNotFound, path + " does not exist");
        }
        return SysError("open directory", path, open_errno);
      }
      FileDescriptor owned(fd);
      int rc = 0;
      do {
        rc = ::flock(fd, operation);
      } while (rc != 0 && errno == EINTR);
      if (rc != 0) {
        const int flock_errno = errno;
        if (flock_errno == EWOULDBLOCK) {
          return MakeError(ErrorCode::kBusy, path + " is locked");
        }
        return SysError("flock", path, flock_errno);
      }

      // The lock counts only if it is on the directory that is still at `path`: a delete may
      // have removed it (and a create made a new one) while this thread waited.
      struct stat locked {};

      struct stat current {};

      if (::fstat(fd, &locked) != 0) {
        return SysError("stat", path, errno);
      }
      if (::stat(path.c_str(), &current) != 0) {
        const int stat_errno = errno;
        if (stat_errno == ENOENT) {
          return MakeError(ErrorCode::kNotFound, path + " does not exist");
        }
        return SysError("stat", path, stat_errno);
      }
      if (locked.st_nlink > 0 && locked.st_dev == current.st_dev &&
          locked.st_ino == current.st_ino) {
        return DirectoryLock(std::move(owned));
      }
    }
    return MakeError(ErrorCode::kDriverFailed,
                     path + " was replaced " + std::to_string(kLockAttemptsMax) +
                         " times while it was being locked");
  }

 private:
  explicit DirectoryLock(FileDescriptor fd) : fd_(std::move(fd)) {}

  FileDescriptor fd_;  // Closing it drops the flock.
};

// ---- Manifest ----------------------------------------------------------------------------------

enum class ChunkKind { kZero, kStored, kParent };

struct ChunkRecord {
  ChunkKind kind = ChunkKind::kZero;
  std::string sha256;         // Of the chunk's data; empty for kZero.
  std::string object_sha256;  // Of the object; kStored and kParent.
  std::int64_t object_bytes = 0;
  std::string from;  // kParent: the backup whose directory holds the object.
};

struct Manifest {
  std::string backup_id;
  std::optional<std::string> parent_backup_id;
  std::int64_t size_bytes = 0;
  std::int64_t chunk_size = 0;
  std::vector<ChunkRecord> chunks;
};

std::string_view KindName(ChunkKind kind) {
  switch (kind) {
    case ChunkKind::kZero:
      return "zero";
    case ChunkKind::kStored:
      return "stored";
    case ChunkKind::kParent:
      return "parent";
  }
  return "unknown";
}

std::int64_t ChunkCount(std::int64_t size_bytes, std::int64_t chunk_size) {
  return (size_bytes + chunk_size - 1) / chunk_size;
}

// The largest object a chunk of `chunk_size` can compress to.
std::int64_t ObjectBytesMax(std::int64_t chunk_size) {
  return static_cast<std::int64_t>(::compressBound(static_cast<uLong>(chunk_size)));
}

std::string ManifestToJson(const Manifest& manifest) {
  nlohmann::ordered_json json;
  json["format_version"] = kManifestFormatVersion;
  json["backup_id"] = manifest.backup_id;
  json["parent_backup_id"] = manifest.parent_backup_id
                                 ? nlohmann::ordered_json(*manifest.parent_backup_id)
                                 : nlohmann::ordered_json(nullptr);
  json["size_bytes"] = manifest.size_bytes;
  json["chunk_size"] = manifest.chunk_size;
  nlohmann::ordered_json chunks = nlohmann::ordered_json::array();
  for (std::size_t index = 0; index < manifest.chunks.size(); ++index) {
    const ChunkRecord& chunk = manifest.chunks[index];
    nlohmann::ordered_json entry;
    entry["index"] = index;
    entry["kind"] = KindName(chunk.kind);
    if (chunk.kind != ChunkKind::kZero) {
      entry["sha256"] = chunk.sha256;
      entry["object_sha256"] = chunk.object_sha256;
      entry["object_bytes"] = chunk.object_bytes;
    }
    if (chunk.kind == ChunkKind::kParent) {
      entry["from"] = chunk.from;
    }
    chunks.push_back(std::move(entry));
  }
  json["chunks"] = std::move(chunks);
  return json.dump() + "\n";
}

// Checks everything a restore relies on, so that a damaged manifest is reported as corruption
// instead of steering reads and allocations.
Result<ChunkRecord> ParseChunk(const nlohmann::json& entry,
                               const Manifest& manifest,
                               std::size_t index) {
  const std::string where = "chunk " + std::to_string(index) + " in the manifest";
  if (entry.at("index").get<std::int64_t>() != static_cast<std::int64_t>(index)) {
    return Corrupt(manifest.backup_id, where + " has index " + entry.at("index").dump());
  }
  ChunkRecord chunk;
  const std::string kind = entry.at("kind").get<std::string>();
  if (kind == "zero") {
    return chunk;
  }
  if (kind == "stored") {
    chunk.kind = ChunkKind::kStored;
  } else if (kind == "parent") {
    chunk.kind = ChunkKind::kParent;
    chunk.from = entry.at("from").get<std::string>();
    if (!manifest.parent_backup_id || !IsValidBackupId(chunk.from) ||
        chunk.from == manifest.backup_id) {
      return Corrupt(manifest.backup_id, where + " refers to backup '" + chunk.from + "'");
    }
  } else {
    return Corrupt(manifest.backup_id, where + " has kind '" + kind + "'");
  }
  chunk.sha256 = entry.at("sha256").get<std::string>();
  chunk.object_sha256 = entry.at("object_sha256").get<std::string>();
  chunk.object_bytes = entry.at("object_bytes").get<std::int64_t>();
  if (!IsSha256Hex(chunk.sha256) || !IsSha256Hex(chunk.object_sha256)) {
    return Corrupt(manifest.backup_id, where + " has a malformed checksum");
  }
  if (chunk.object_bytes <= 0 || chunk.object_bytes > ObjectBytesMax(manifest.chunk_size)) {
    return Corrupt(manifest.backup_id,
                   where + " has object_bytes " + std::to_string(chunk.object_bytes));
  }
  return chunk;
}

Result<Manifest> ParseManifest(const std::string& text, std::string_view backup_id) {
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.is_object()) {
    return Corrupt(backup_id, "the manifest is not a JSON object");
  }
  try {
    if (json.at("format_version").get<int>() != kManifestFormatVersion) {
      return Corrupt(backup_id,
                     "unknown manifest format_version " + json.at("format_version").dump());
    }
    Manifest manifest;
    manifest.backup_id = json.at("backup_id").get<std::string>();
    if (manifest.backup_id != backup_id) {
      return Corrupt(backup_id, "the manifest names backup '" + manifest.backup_id + "'");
    }
    const nlohmann::json& parent = json.at("parent_backup_id");
    if (!parent.is_null()) {
      manifest.parent_backup_id = parent.get<std::string>();
      if (!IsValidBackupId(*manifest.parent_backup_id)) {
        return Corrupt(backup_id, "the manifest has parent '" + parent.dump() + "'");
      }
    }
    manifest.size_bytes = json.at("size_bytes").get<std::int64_t>();
    manifest.chunk_size = json.at("chunk_size").get<std::int64_t>();
    if (manifest.size_bytes < 0 || manifest.size_bytes > kMaxSizeBytes ||
        manifest.chunk_size <= 0 || manifest.chunk_size > kMaxChunkBytes) {
      return Corrupt(backup_id,
                     "the manifest has size_bytes " + std::to_string(manifest.size_bytes) +
                         " and chunk_size " + std::to_string(manifest.chunk_size));
    }
    const nlohmann::json& chunks = json.at("chunks");
    if (!chunks.is_array() || static_cast<std::int64_t>(chunks.size()) !=
                                  ChunkCount(manifest.size_bytes, manifest.chunk_size)) {
      return Corrupt(backup_id, "the manifest does not list one entry per chunk");
    }
    manifest.chunks.reserve(chunks.size());
    for (std::size_t index = 0; index < chunks.size(); ++index) {
      CLINKER_ASSIGN_OR_RETURN(ChunkRecord chunk, ParseChunk(chunks[index], manifest, index));
      manifest.chunks.push_back(std::move(chunk));
    }
    return manifest;
  } catch (const nlohmann::json::exception& error) {
    return Corrupt(backup_id, std::string("malformed manifest: ") + error.what());
  }
}

ports::BackupDescription Describe(const Manifest& manifest) {
  ports::BackupDescription description;
  description.backup_id = manifest.backup_id;
  description.parent_backup_id = manifest.parent_backup_id;
  description.size_bytes = manifest.size_bytes;
  description.chunk_count = static_cast<std::int64_t>(manifest.chunks.size());
  for (const ChunkRecord& chunk : manifest.chunks) {
    if (chunk.kind == ChunkKind::kStored) {
      ++description.object_count;
      description.stored_bytes += chunk.object_bytes;
    }
  }
  return description;
}

// ---- Layout ------------------------------------------------------------------------------------

std::string BackupDir(const std::string& backup_dir, std::string_view backup_id) {
  return backup_dir + "/backup-" + std::string(backup_id);
}

std::string ManifestPath(const std::string& backup_dir, std::string_view backup_id) {
  return BackupDir(backup_dir, backup_id) + "/" + std::string(kManifestName);
}

std::string ObjectPath(const std::string& backup_dir,
                       std::string_view backup_id,
                       std::size_t index) {
  return BackupDir(backup_dir, backup_id) + "/chunk-" + std::to_string(index) + ".z";
}

std::string DependentsDir(const std::string& backup_dir, std::string_view backup_id) {
  return BackupDir(backup_dir, backup_id) + "/" + std::string(kDependentsName);
}

// The complete backup's manifest; nullopt if the backup is absent or incomplete.
Result<std::optional<Manifest>> ReadManifest(const std::string& backup_dir,
                                             std::string_view backup_id) {
  CLINKER_ASSIGN_OR_RETURN(std::optional<std::string> text,
                           ReadWholeFile(ManifestPath(backup_dir, backup_id)));
  if (!text) {
    return std::optional<Manifest>();
  }
  CLINKER_ASSIGN_OR_RETURN(Manifest manifest, ParseManifest(*text, backup_id));
  return std::optional<Manifest>(std::move(manifest));
}

Result<void> RemoveTree(const std::string& path) {
  std::error_code error;
  std::filesystem::remove_all(path, error);
  if (error) {
    return MakeError(ErrorCode::kDriverFailed, "cannot remove " + path + ": " + error.message());
  }
  return {};
}

Result<void> UnlinkIfPresent(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return SysError("unlink", path, errno);
  }
  return {};
}

// Records `child_id` as a dependent of `parent_id`, durably, before the child's manifest is
// written: a parent's delete must never miss a complete child.
Result<void> RegisterDependent(const std::string& backup_dir,
                               std::string_view parent_id,
                               std::string_view child_id) {
  const std::string dependents = DependentsDir(backup_dir, parent_id);
  if (::mkdir(dependents.c_str(), 0755) != 0 && errno != EEXIST) {
    return SysError("mkdir", dependents, errno);
  }
  const std::string marker = dependents + "/" + std::string(child_id);
  CLINKER_ASSIGN_OR_RETURN(FileDescriptor fd, Open(marker, O_WRONLY | O_CREAT, 0644));
  CLINKER_RETURN_IF_ERROR(fd.Close(marker));
  CLINKER_RETURN_IF_ERROR(SyncDirectory(dependents));
  return SyncDirectory(BackupDir(backup_dir, parent_id));
}

// kConflict if a complete backup depends on `backup_id`; removes markers left by incremental
// creates that crashed and by deletes that crashed before removing their marker.
Result<void> CheckNoDependents(const std::string& backup_dir, std::string_view backup_id) {
  const std::string dependents = DependentsDir(backup_dir, backup_id);
  std::error_code error;
  std::filesystem::directory_iterator it(dependents, error);
  if (error) {
    if (error == std::errc::no_such_file_or_directory) {
      return {};
    }
    return MakeError(ErrorCode::kDriverFailed,
                     "cannot list " + dependents + ": " + error.message());
  }
  for (const auto& entry : it) {
    const std::string child_id = entry.path().filename().string();
    if (IsValidBackupId(child_id)) {
      Result<std::optional<Manifest>> child = ReadManifest(backup_dir, child_id);
      if (!child) {
        // Cannot tell whether it still needs this backup's objects: keep them.
        return MakeError(ErrorCode::kConflict,
                         "backup " + std::string(backup_id) + " may have dependent backup " +
                             child_id + ", whose manifest is unreadable: " + child.error().message);
      }
      if (*child && (*child)->parent_backup_id == backup_id) {
        return MakeError(ErrorCode::kConflict,
                         "backup " + std::string(backup_id) + " has dependent backup " + child_id +
                             "; delete that first");
      }
    }
    CLINKER_RETURN_IF_ERROR(UnlinkIfPresent(entry.path().string()));
  }
  return {};
}

// Zeroes [offset, offset + size) of the target, as holes where the file system can.
Result<void> ZeroRange(
    int fd, const std::string& path, std::int64_t offset, std::int64_t size, Bytes& zeros) {
  if (size == 0) {
    return {};
  }
  if (::fallocate(fd,
                  FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(offset),
                  static_cast<off_t>(size)) == 0) {
    return {};
  }
  const int punch_errno = errno;
  if (punch_errno != EOPNOTSUPP && punch_errno != ENOSYS && punch_errno != EINVAL) {
    return SysError("punch a hole in", path, punch_errno);
  }
  std::fill(zeros.begin(), zeros.end(), 0);
  for (std::int64_t done = 0; done < size;) {
    const std::int64_t piece = std::min<std::int64_t>(size - done, std::ssize(zeros));
    CLINKER_RETURN_IF_ERROR(WriteFull(fd, path, zeros.data(), piece, offset + done));
    done += piece;
  }
  return {};
}

// Writes a chunk's `length` bytes at `offset`, leaving its all-zero blocks as holes (punched, as
// the target may hold older data there), so a restored volume stays as sparse as its source.
Result<void> WriteSparse(int fd,
                         const std::string& path,
                         const Bytes& data,
                         std::int64_t length,
                         std::int64_t offset,
                         Bytes& zeros) {
  constexpr std::int64_t kBlock = std::int64_t{64} << 10;
  auto is_zero = [&](std::int64_t from, std::int64_t size) {
    const auto begin = data.begin() + from;
    return std::all_of(begin, begin + size, [](auto byte) { return byte == 0; });
  };
  std::int64_t run_start = 0;
  bool run_zero = false;
  auto flush = [&](std::int64_t run_end) -> Result<void> {
    if (run_end == run_start) {
      return {};
    }
    if (run_zero) {
      return ZeroRange(fd, path, offset + run_start, run_end - run_start, zeros);
    }
    return WriteFull(fd, path, data.data() + run_start, run_end - run_start, offset + run_start);
  };
  for (std::int64_t block = 0; block < length; block += kBlock) {
    const std::int64_t size = std::min(kBlock, length - block);
    const bool zero = is_zero(block, size);
    if (block == 0) {
      run_zero = zero;
    } else if (zero != run_zero) {
      CLINKER_RETURN_IF_ERROR(flush(block));
      run_start = block;
      run_zero = zero;
    }
  }
  return flush(length);
}

// Where the data at or after `offset` starts, per SEEK_DATA; `size` if only holes follow;
// nullopt if the file system (or device) cannot tell.
Result<std::optional<std::int64_t>> NextData(int fd,
                                             const std::string& path,
                                             std::int64_t offset,
                                             std::int64_t size) {
  const off_t data = ::lseek(fd, static_cast<off_t>(offset), SEEK_DATA);
  if (data >= 0) {
    return std::optional<std::int64_t>(data);
  }
  const int seek_errno = errno;
  if (seek_errno == ENXIO) {
    return std::optional<std::int64_t>(size);
  }
  if (seek_errno == EINVAL || seek_errno == EOPNOTSUPP) {
    return std::optional<std::int64_t>();
  }
  return SysError("seek to data in", path, seek_errno);
}

struct CreateContext {
  const std::string& backup_dir;
  const ports::BackupRequest& request;
  const Manifest* parent;  // Null for a full backup.
  int compression_level;
  int source_fd;
};

// Reads the source chunk by chunk and writes the objects; returns the manifest to commit.
Result<Manifest> WriteChunks(const CreateContext& context, Manifest manifest) {
  const std::string& source = context.request.source_path;
  const std::int64_t chunk_count = ChunkCount(manifest.size_bytes, manifest.chunk_size);
  Bytes data(static_cast<std::size_t>(manifest.chunk_size));
  Bytes packed(static_cast<std::size_t>(ObjectBytesMax(manifest.chunk_size)));
  bool holes_known = true;
  std::int64_t next_data = -1;  // No data in [last SEEK_DATA offset, next_data).
  manifest.chunks.reserve(static_cast<std::size_t>(chunk_count));
  for (std::int64_t index = 0; index < chunk_count; ++index) {
    const std::int64_t offset = index * manifest.chunk_size;
    const std::int64_t length = std::min(manifest.chunk_size, manifest.size_bytes - offset);
    if (holes_known && next_data < offset) {
      CLINKER_ASSIGN_OR_RETURN(std::optional<std::int64_t> found,
                               NextData(context.source_fd, source, offset, manifest.size_bytes));
      holes_known = found.has_value();
      next_data = found.value_or(offset);
    }
    ChunkRecord chunk;
    const bool hole = holes_known && next_data >= offset + length;
    if (hole) {
      manifest.chunks.push_back(std::move(chunk));
      continue;
    }
    CLINKER_RETURN_IF_ERROR(ReadFull(context.source_fd, source, data.data(), length, offset));
    if (IsAllZero(data.data(), length)) {
      manifest.chunks.push_back(std::move(chunk));
      continue;
    }
    CLINKER_ASSIGN_OR_RETURN(chunk.sha256, Sha256Hex(data.data(), length));
    const std::size_t slot = static_cast<std::size_t>(index);
    if (context.parent != nullptr && context.parent->chunks[slot].kind != ChunkKind::kZero &&
        context.parent->chunks[slot].sha256 == chunk.sha256) {
      // The same data as the parent's chunk: point at the object that holds it, wherever in the
      // chain that is, so a restore never walks the chain.
      const ChunkRecord& base = context.parent->chunks[slot];
      chunk.kind = ChunkKind::kParent;
      chunk.object_sha256 = base.object_sha256;
      chunk.object_bytes = base.object_bytes;
      chunk.from = base.kind == ChunkKind::kStored ? context.parent->backup_id : base.from;
      manifest.chunks.push_back(std::move(chunk));
      continue;
    }
    uLongf packed_size = static_cast<uLongf>(packed.size());
    const int rc = ::compress2(packed.data(),
                               &packed_size,
                               data.data(),
                               static_cast<uLong>(length),
                               context.compression_level);
    if (rc != Z_OK) {
      return MakeError(ErrorCode::kDriverFailed,
                       "compressing chunk " + std::to_string(index) + " of " + source +
                           " failed: zlib error " + std::to_string(rc));
    }
    chunk.kind = ChunkKind::kStored;
    chunk.object_bytes = static_cast<std::int64_t>(packed_size);
    CLINKER_ASSIGN_OR_RETURN(chunk.object_sha256, Sha256Hex(packed.data(), chunk.object_bytes));
    CLINKER_RETURN_IF_ERROR(
        WriteFileDurably(ObjectPath(context.backup_dir, manifest.backup_id, slot),
                         packed.data(),
                         chunk.object_bytes));
    manifest.chunks.push_back(std::move(chunk));
  }
  return manifest;
}

// Reads and checks one chunk's object, and inflates it into `data` (length bytes).
Result<void> LoadChunk(const std::string& backup_dir,
                       const Manifest& manifest,
                       std::size_t index,
                       std::int64_t length,
                       Bytes& packed,
                       Bytes& data) {
  const ChunkRecord& chunk = manifest.chunks[index];
  const std::string& holder = chunk.kind == ChunkKind::kParent ? chunk.from : manifest.backup_id;
  const std::string path = ObjectPath(backup_dir, holder, index);
  const std::string where = "chunk " + std::to_string(index) + " (object " + path + ")";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int open_errno = errno;
    if (open_errno == ENOENT) {
      return Corrupt(manifest.backup_id, where + " is missing");
    }
    return SysError("open", path, open_errno);
  }
  FileDescriptor owned(fd);

  struct stat info {};

  if (::fstat(fd, &info) != 0) {
    return SysError("stat", path, errno);
  }
  if (info.st_size != chunk.object_bytes) {
    return Corrupt(manifest.backup_id,
                   where + " has " + std::to_string(info.st_size) + " bytes, the manifest says " +
                       std::to_string(chunk.object_bytes));
  }
  packed.resize(static_cast<std::size_t>(chunk.object_bytes));
  CLINKER_RETURN_IF_ERROR(ReadFull(fd, path, packed.data(), chunk.object_bytes, 0));
  CLINKER_ASSIGN_OR_RETURN(std::string object_sha256, Sha256Hex(packed.data(), chunk.object_bytes));
  if (object_sha256 != chunk.object_sha256) {
    return Corrupt(manifest.backup_id, where + " does not match its checksum");
  }
  uLongf data_size = static_cast<uLongf>(length);
  const int rc =
      ::uncompress(data.data(), &data_size, packed.data(), static_cast<uLong>(chunk.object_bytes));
  if (rc != Z_OK || static_cast<std::int64_t>(data_size) != length) {
    return Corrupt(manifest.backup_id,
                   where + " does not inflate to " + std::to_string(length) +
                       " bytes (zlib error " + std::to_string(rc) + ")");
  }
  CLINKER_ASSIGN_OR_RETURN(std::string sha256, Sha256Hex(data.data(), length));
  if (sha256 != chunk.sha256) {
    return Corrupt(manifest.backup_id,
                   where + " inflates to data that does not match its checksum");
  }
  return {};
}

// Appends one journal line (see the header) to `path`; nothing when `path` is empty. `ids` is an
// object of the ids of the call, in the order they are written.
Result<void> AppendJournal(const std::string& path,
                           std::string_view op,
                           const nlohmann::ordered_json& ids,
                           bool changed) {
  if (path.empty()) {
    return {};
  }
  nlohmann::ordered_json entry;
  entry["op"] = op;
  for (const auto& [key, value] : ids.items()) {
    entry[key] = value;
  }
  entry["operation_id"] = "";
  entry["pid"] = static_cast<std::int64_t>(::getpid());
  entry["changed"] = changed;
  // One write() of the whole line on an O_APPEND descriptor: the kernel appends it atomically
  // with respect to other appenders (the storage driver may share the file).
  const std::string line = entry.dump() + "\n";
  CLINKER_ASSIGN_OR_RETURN(FileDescriptor fd, Open(path, O_WRONLY | O_APPEND | O_CREAT, 0644));
  ssize_t written = -1;
  do {
    written = ::write(fd.get(), line.data(), line.size());
  } while (written < 0 && errno == EINTR);
  if (written < 0) {
    return SysError("append to journal", path, errno);
  }
  if (static_cast<std::size_t>(written) != line.size()) {
    return MakeError(ErrorCode::kDriverFailed, "short write to journal " + path);
  }
  return {};
}

// The ids of a create's journal line.
nlohmann::ordered_json JournalIds(const ports::BackupRequest& request) {
  nlohmann::ordered_json ids = {{"backup_id", request.backup_id}};
  if (request.parent_backup_id) {
    ids["parent_backup_id"] = *request.parent_backup_id;
  }
  return ids;
}

}  // namespace

FileBackupStore::FileBackupStore(Options options) : options_(std::move(options)) {}

Result<std::unique_ptr<FileBackupStore>> FileBackupStore::Create(Options options) {
  if (options.backup_dir.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "backup_dir is empty");
  }
  if (options.chunk_size_bytes < kMinChunkBytes || options.chunk_size_bytes > kMaxChunkBytes ||
      options.chunk_size_bytes % kBlockBytes != 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "chunk size must be a multiple of 4096 between 64 KiB and 1 GiB, got " +
                         std::to_string(options.chunk_size_bytes));
  }
  if (options.compression_level < Z_DEFAULT_COMPRESSION ||
      options.compression_level > Z_BEST_COMPRESSION) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "compression level must be -1 to 9, got " + std::to_string(options.compression_level));
  }
  std::error_code error;
  std::filesystem::create_directories(options.backup_dir, error);
  if (error) {
    return MakeError(
        ErrorCode::kDriverFailed,
        "cannot create backup directory " + options.backup_dir + ": " + error.message());
  }
  if (!std::filesystem::is_directory(options.backup_dir, error)) {
    return MakeError(ErrorCode::kDriverFailed, options.backup_dir + " is not a directory");
  }
  return std::unique_ptr<FileBackupStore>(new FileBackupStore(std::move(options)));
}

std::string FileBackupStore::BackupPath(std::string_view backup_id) const {
  return BackupDir(options_.backup_dir, backup_id);
}

Result<ports::BackupDescription> FileBackupStore::CreateBackup(
    const ports::BackupRequest& request) {
  CLINKER_RETURN_IF_ERROR(ValidateBackupId(request.backup_id, "backup id"));
  const std::optional<std::string>& parent_id = request.parent_backup_id;
  if (parent_id) {
    CLINKER_RETURN_IF_ERROR(ValidateBackupId(*parent_id, "parent backup id"));
    if (*parent_id == request.backup_id) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "backup " + request.backup_id + " cannot be its own parent");
    }
  }
  const std::string& backup_dir = options_.backup_dir;
  CLINKER_ASSIGN_OR_RETURN(std::optional<Manifest> existing,
                           ReadManifest(backup_dir, request.backup_id));
  if (existing) {
    if (existing->parent_backup_id != parent_id) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "backup " + request.backup_id + " exists with parent " +
                           existing->parent_backup_id.value_or("(none)") + ", not " +
                           parent_id.value_or("(none)"));
    }
    CLINKER_RETURN_IF_ERROR(
        AppendJournal(options_.journal_path, "create_backup", JournalIds(request), false));
    return Describe(*existing);
  }

  // Held until this backup's manifest is durable, so the parent's delete waits for it or fails.
  std::optional<DirectoryLock> parent_lock;
  std::optional<Manifest> parent;
  if (parent_id) {
    Result<DirectoryLock> locked = DirectoryLock::Take(BackupPath(*parent_id), LOCK_SH);
    if (!locked && locked.error().code != ErrorCode::kNotFound) {
      return tl::unexpected(std::move(locked).error());
    }
    if (locked) {
      parent_lock.emplace(std::move(*locked));
      CLINKER_ASSIGN_OR_RETURN(parent, ReadManifest(backup_dir, *parent_id));
    }
    if (!parent) {
      return MakeError(ErrorCode::kNotFound, "parent backup " + *parent_id + " not found");
    }
  }

  CLINKER_ASSIGN_OR_RETURN(auto source,
                           OpenVolumeData(request.source_path, O_RDONLY, "backup source"));
  Manifest manifest;
  manifest.backup_id = request.backup_id;
  manifest.parent_backup_id = parent_id;
  manifest.size_bytes = source.second;
  manifest.chunk_size = parent ? parent->chunk_size : options_.chunk_size_bytes;
  if (parent && parent->size_bytes != manifest.size_bytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "parent backup " + *parent_id + " has " + std::to_string(parent->size_bytes) +
                         " bytes, the source has " + std::to_string(manifest.size_bytes));
  }

  // What an interrupted create or delete left is garbage: start over.
  const std::string path = BackupPath(request.backup_id);
  CLINKER_RETURN_IF_ERROR(RemoveTree(path));
  if (::mkdir(path.c_str(), 0755) != 0) {
    return SysError("mkdir", path, errno);
  }
  auto written = [&]() -> Result<Manifest> {
    CLINKER_RETURN_IF_ERROR(SyncDirectory(backup_dir));
    if (parent) {
      CLINKER_RETURN_IF_ERROR(RegisterDependent(backup_dir, *parent_id, request.backup_id));
    }
    const CreateContext context{backup_dir,
                                request,
                                parent ? &*parent : nullptr,
                                options_.compression_level,
                                source.first.get()};
    CLINKER_ASSIGN_OR_RETURN(Manifest complete, WriteChunks(context, std::move(manifest)));
    CLINKER_RETURN_IF_ERROR(SyncDirectory(path));
    const std::string text = ManifestToJson(complete);
    const std::string temp_path = path + "/" + std::string(kManifestTempName);
    CLINKER_RETURN_IF_ERROR(WriteFileDurably(temp_path,
                                             reinterpret_cast<const unsigned char*>(text.data()),
                                             static_cast<std::int64_t>(text.size())));
    if (::rename(temp_path.c_str(), ManifestPath(backup_dir, request.backup_id).c_str()) != 0) {
      return SysError("rename to", ManifestPath(backup_dir, request.backup_id), errno);
    }
    return complete;
  }();
  if (!written) {
    // Nothing refers to these files yet; a failure to remove them leaves garbage that the next
    // create or delete of this id removes.
    RemoveTree(path).IgnoreError("garbage without a manifest is invisible");
    if (parent) {
      UnlinkIfPresent(DependentsDir(backup_dir, *parent_id) + "/" + request.backup_id)
          .IgnoreError("a stale marker is removed by the parent's delete");
    }
    return tl::unexpected(std::move(written).error());
  }
  // From here on the backup may be complete: an error means "maybe committed", and a retry
  // returns the committed manifest.
  CLINKER_RETURN_IF_ERROR(SyncDirectory(path));
  CLINKER_RETURN_IF_ERROR(
      AppendJournal(options_.journal_path, "create_backup", JournalIds(request), true));
  return Describe(*written);
}

Result<void> FileBackupStore::RestoreBackup(std::string_view backup_id,
                                            std::string_view target_path) {
  CLINKER_RETURN_IF_ERROR(ValidateBackupId(backup_id, "backup id"));
  CLINKER_ASSIGN_OR_RETURN(std::optional<Manifest> manifest,
                           ReadManifest(options_.backup_dir, backup_id));
  if (!manifest) {
    return MakeError(ErrorCode::kNotFound, "backup " + std::string(backup_id) + " not found");
  }
  const std::string target(target_path);
  CLINKER_ASSIGN_OR_RETURN(auto opened, OpenVolumeData(target, O_WRONLY, "restore target"));
  const int fd = opened.first.get();
  if (opened.second < manifest->size_bytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "restore target " + target + " has " + std::to_string(opened.second) +
                         " bytes, backup " + std::string(backup_id) + " needs " +
                         std::to_string(manifest->size_bytes));
  }
  Bytes data(static_cast<std::size_t>(manifest->chunk_size));
  Bytes zeros(std::size_t{64} << 10);
  Bytes packed;
  // Consecutive zero chunks become one hole punch: a sparse volume restores in a few calls.
  std::int64_t zero_start = 0;
  std::int64_t zero_end = 0;
  for (std::size_t index = 0; index < manifest->chunks.size(); ++index) {
    const std::int64_t offset = static_cast<std::int64_t>(index) * manifest->chunk_size;
    const std::int64_t length = std::min(manifest->chunk_size, manifest->size_bytes - offset);
    if (manifest->chunks[index].kind == ChunkKind::kZero) {
      if (zero_end != offset) {
        zero_start = offset;
      }
      zero_end = offset + length;
      continue;
    }
    CLINKER_RETURN_IF_ERROR(ZeroRange(fd, target, zero_start, zero_end - zero_start, zeros));
    zero_start = zero_end = 0;
    CLINKER_RETURN_IF_ERROR(LoadChunk(options_.backup_dir, *manifest, index, length, packed, data));
    CLINKER_RETURN_IF_ERROR(WriteSparse(fd, target, data, length, offset, zeros));
  }
  CLINKER_RETURN_IF_ERROR(ZeroRange(fd, target, zero_start, zero_end - zero_start, zeros));
  CLINKER_RETURN_IF_ERROR(Fsync(fd, target));
  CLINKER_RETURN_IF_ERROR(opened.first.Close(target));
  return AppendJournal(options_.journal_path,
                       "restore_backup",
                       {{"backup_id", backup_id}, {"target_path", target}},
                       true);
}

Result<void> FileBackupStore::DeleteBackup(std::string_view backup_id) {
  CLINKER_RETURN_IF_ERROR(ValidateBackupId(backup_id, "backup id"));
  CLINKER_ASSIGN_OR_RETURN(const bool removed, RemoveBackup(backup_id));
  return AppendJournal(options_.journal_path, "delete_backup", {{"backup_id", backup_id}}, removed);
}

Result<bool> FileBackupStore::RemoveBackup(std::string_view backup_id) {
  const std::string& backup_dir = options_.backup_dir;
  const std::string path = BackupPath(backup_id);
  std::optional<std::string> parent_id;
  {
    // Exclusive and without waiting: a child being created holds it shared for as long as its
    // backup takes, and will be a dependent.
    Result<DirectoryLock> lock = DirectoryLock::Take(path, LOCK_EX | LOCK_NB);
    if (!lock) {
      if (lock.error().code == ErrorCode::kNotFound) {
        // Synced even so: a redone delete may follow a crash before the directory sync.
        CLINKER_RETURN_IF_ERROR(SyncDirectory(backup_dir));
        return false;
      }
      if (lock.error().code == ErrorCode::kBusy) {
        return MakeError(
            ErrorCode::kConflict,
            "backup " + std::string(backup_id) + " is the parent of a backup being created");
      }
      return tl::unexpected(std::move(lock).error());
    }
    CLINKER_RETURN_IF_ERROR(CheckNoDependents(backup_dir, backup_id));
    // A backup whose manifest cannot be parsed is deleted all the same; only its marker in the
    // parent stays behind, which the parent's delete recognises as stale.
    Result<std::optional<Manifest>> manifest = ReadManifest(backup_dir, backup_id);
    if (manifest && *manifest) {
      parent_id = (*manifest)->parent_backup_id;
    }
    // The manifest goes first and durably: from then on the backup is incomplete, whatever a
    // crash leaves of the rest.
    CLINKER_RETURN_IF_ERROR(UnlinkIfPresent(ManifestPath(backup_dir, backup_id)));
    CLINKER_RETURN_IF_ERROR(SyncDirectory(path));
  }
  CLINKER_RETURN_IF_ERROR(RemoveTree(path));
  CLINKER_RETURN_IF_ERROR(SyncDirectory(backup_dir));
  if (parent_id) {
    const std::string dependents = DependentsDir(backup_dir, *parent_id);
    const std::string marker = dependents + "/" + std::string(backup_id);
    if (::unlink(marker.c_str()) != 0) {
      const int unlink_errno = errno;
      // ENOENT: a redone delete, or a parent whose delete already removed the stale marker.
      if (unlink_errno != ENOENT) {
        return SysError("unlink", marker, unlink_errno);
      }
      return true;
    }
    CLINKER_RETURN_IF_ERROR(SyncDirectory(dependents));
  }
  return true;
}

Result<ports::BackupDescription> FileBackupStore::DescribeBackup(std::string_view backup_id) {
  CLINKER_RETURN_IF_ERROR(ValidateBackupId(backup_id, "backup id"));
  CLINKER_ASSIGN_OR_RETURN(std::optional<Manifest> manifest,
                           ReadManifest(options_.backup_dir, backup_id));
  if (!manifest) {
    return MakeError(ErrorCode::kNotFound, "backup " + std::string(backup_id) + " not found");
  }
  return Describe(*manifest);
}

}  // namespace clinker::adapters
