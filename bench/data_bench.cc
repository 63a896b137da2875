// bench_data: how fast the file back-end (FileStorageDriver) copies a volume's data, and how fast
// the file backup store (FileBackupStore) backs it up and restores it, next to cp.
//
// Method: one source volume of --size-gib GiB is made with the driver and filled with random data
// in 1 MiB blocks at random block offsets (seeded by --seed), --data-percent of its blocks in all;
// the rest stays holes, as in a real, partly written volume. Then each row copies that volume
// once and is timed:
// - clone: FileStorageDriver::CreateVolume with the volume as source;
// - snapshot: FileStorageDriver::CreateSnapshot of the volume;
// - cp --sparse=always and cp --reflink=auto of the image file (run without a shell);
// - backup: FileBackupStore::CreateBackup of the volume (a full backup, in chunks of
//   --chunk-size-mib, zlib level --compression-level, SHA-256 per chunk);
// - restore: FileBackupStore::RestoreBackup of that backup into a new, empty volume (made
//   untimed before the row, as the volume manager makes it before it asks for the restore);
// - incremental backup: CreateBackup with the full backup as parent, after about 1 % of the
//   source's data blocks were overwritten (untimed) with new random data, as writes between two
//   backups would; it stores only the chunks that changed.
// The driver and the backup store fsync what they write before they return; a cp row times cp
// plus an fsync of its copy, so every row measures a durable copy. `sync` runs (untimed) before
// every row, so no row pays for the write-back of the one before. The source is read from the
// page cache (it was just written), as a recently used volume would be, and so are the backup's
// objects by the restore. Throughput is the volume's size (not the bytes that hold data) divided
// by the time. Each copy that is a volume image (all but the backups) is then read back whole and
// its checksum compared with the source's; a mismatch or a failed copy makes the run exit 1. The
// full backup is thereby checked through the restore; the incremental one is not restored. A
// backup row reports the space its directory occupies and what the store describes: the chunk
// objects it stored itself and their compressed bytes.
// A benchmark, not a test: it prints one line per row and a final line of JSON with all figures.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iterator>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clinker/adapters/backup/file_backup_store.h"
#include "clinker/adapters/file/file_storage_driver.h"
#include "clinker/core/error.h"
#include "clinker/core/uuid.h"
#include "clinker/ports/backup_store.h"
#include "clinker/ports/storage_driver.h"

namespace {

using Clock = std::chrono::steady_clock;
using clinker::ErrorCode;
using clinker::MakeError;
using clinker::Result;
using clinker::adapters::FileBackupStore;
using clinker::adapters::FileStorageDriver;

constexpr std::int64_t kMib = std::int64_t{1} << 20;
constexpr std::int64_t kGib = std::int64_t{1} << 30;
constexpr std::int64_t kBlockBytes = kMib;  // The unit of random data written to the source.
constexpr std::string_view kDefaultParent = "var/bench";
// Share of the source's data blocks the incremental backup finds changed.
constexpr std::int64_t kChangedPercent = 1;

struct Settings {
  std::string dir;  // Empty: a new temp dir under ./var/bench.
  bool keep = false;
  std::int64_t size_gib = 1;
  int data_percent = 50;
  std::uint64_t seed = 1;
  std::int64_t chunk_size_mib = 8;
  int compression_level = 1;
};

// One timed copy of the source volume.
struct Row {
  std::string name;
  double seconds = 0;
  double mib_per_s = 0;
  std::int64_t allocated_mib = 0;  // Blocks the copy occupies (shared reflink blocks count).
  bool verified = false;
  std::string error;  // Empty when the copy succeeded.
  // Backup rows: the store's description of the backup (objects it stored, compressed bytes).
  std::optional<clinker::ports::BackupDescription> backup;
};

// The source volume as FillSource wrote it.
struct SourceData {
  std::int64_t data_bytes = 0;
  std::vector<std::int64_t> data_blocks;  // Indices of the 1 MiB blocks that hold data, sorted.
};

std::string ErrnoText(int error) {
  return std::error_code(error, std::generic_category()).message();
}

// Where the run works, and what it must remove at the end.
struct RunDir {
  std::string path;
  bool owned = false;  // Made by this run: removed whole.
  // In a given --dir: what the run made there, removed at the end (files first, then the
  // directories, innermost first).
  std::vector<std::string> files;
  std::vector<std::string> directories;  // Outermost first.
};

Result<RunDir> PrepareRunDir(const Settings& settings) {
  std::error_code error;
  RunDir run;
  if (settings.dir.empty()) {
    std::filesystem::create_directories(std::string(kDefaultParent), error);
    if (error) {
      return MakeError(ErrorCode::kInternal, "cannot create ./var/bench: " + error.message());
    }
    std::string pattern =
        std::filesystem::absolute(std::string(kDefaultParent)).string() + "/data_XXXXXX";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    if (::mkdtemp(buffer.data()) == nullptr) {
      return MakeError(ErrorCode::kInternal, "mkdtemp " + pattern + ": " + ErrnoText(errno));
    }
    run.path = buffer.data();
    run.owned = true;
    return run;
  }
  run.path = std::filesystem::absolute(settings.dir).lexically_normal().string();
  // Every directory the run is about to create, outermost first, so that all of them go.
  for (std::filesystem::path missing = run.path;
       !missing.empty() && missing != missing.root_path() &&
       !std::filesystem::exists(missing, error);
       missing = missing.parent_path()) {
    run.directories.insert(run.directories.begin(), missing.string());
  }
  std::filesystem::create_directories(run.path, error);
  if (error) {
    return MakeError(ErrorCode::kInternal, "cannot create " + run.path + ": " + error.message());
  }
  // The driver keeps its fence guard here; it is the run's only if it was not there before.
  const std::string fences = run.path + "/.fences";
  if (!std::filesystem::exists(fences, error)) {
    run.directories.push_back(fences);
  }
  return run;
}

// Removes what the run made (unless --keep) however the run ends, an exception included.
class CleanUpAtExit {
 public:
  CleanUpAtExit(const RunDir& run, bool keep) : run_(run), keep_(keep) {}

  CleanUpAtExit(const CleanUpAtExit&) = delete;
  CleanUpAtExit& operator=(const CleanUpAtExit&) = delete;
  CleanUpAtExit(CleanUpAtExit&&) = delete;
  CleanUpAtExit& operator=(CleanUpAtExit&&) = delete;

  ~CleanUpAtExit() {
    if (keep_) {
      return;
    }
    std::error_code ignored;
    if (run_.owned) {
      std::filesystem::remove_all(run_.path, ignored);
      return;
    }
    for (const std::string& file : run_.files) {
      std::filesystem::remove(file, ignored);
    }
    for (auto it = run_.directories.rbegin(); it != run_.directories.rend(); ++it) {
      std::filesystem::remove_all(*it, ignored);
    }
  }

 private:
  const RunDir& run_;
  const bool keep_;
};

// Writes new random bytes into the 1 MiB blocks `indices` of the image at `path`, then fsyncs it.
Result<void> WriteRandomBlocks(const std::string& path,
                               const std::vector<std::int64_t>& indices,
                               std::mt19937_64& random) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return MakeError(ErrorCode::kInternal, "open " + path + ": " + ErrnoText(errno));
  }
  std::vector<std::uint64_t> block(static_cast<std::size_t>(kBlockBytes) / sizeof(std::uint64_t));
  for (std::int64_t index : indices) {
    std::generate(block.begin(), block.end(), std::ref(random));
    const ssize_t written =
        ::pwrite(fd, block.data(), static_cast<std::size_t>(kBlockBytes), index * kBlockBytes);
    if (written != kBlockBytes) {
      const int write_errno = errno;
      ::close(fd);
      return MakeError(ErrorCode::kInternal, "write " + path + ": " + ErrnoText(write_errno));
    }
  }
  const bool synced = ::fsync(fd) == 0;
  const int sync_errno = errno;
  ::close(fd);
  if (!synced) {
    return MakeError(ErrorCode::kInternal, "fsync " + path + ": " + ErrnoText(sync_errno));
  }
  return {};
}

// Fills the volume image at `path`: `data_percent` % of its 1 MiB blocks, picked at random,
// get random bytes; the others stay holes.
Result<SourceData> FillSource(const std::string& path, const Settings& settings) {
  const std::int64_t blocks = settings.size_gib * (kGib / kBlockBytes);
  const std::int64_t data_blocks = blocks * settings.data_percent / 100;
  std::mt19937_64 random(settings.seed);
  std::vector<std::int64_t> indices(static_cast<std::size_t>(blocks));
  std::iota(indices.begin(), indices.end(), std::int64_t{0});
  std::shuffle(indices.begin(), indices.end(), random);
  indices.resize(static_cast<std::size_t>(data_blocks));
  std::sort(indices.begin(), indices.end());  // Written in order, as a sequential fill would be.
  CLINKER_RETURN_IF_ERROR(WriteRandomBlocks(path, indices, random));
  return SourceData{data_blocks * kBlockBytes, std::move(indices)};
}

// Overwrites kChangedPercent % of the source's data blocks (at least one), picked at random, with
// new random bytes; a source without data gets them in as many of its holes instead. Returns the
// bytes changed.
Result<std::int64_t> ChangeSource(const std::string& path,
                                  const SourceData& source,
                                  const Settings& settings) {
  std::vector<std::int64_t> candidates = source.data_blocks;
  if (candidates.empty()) {
    candidates.resize(static_cast<std::size_t>(settings.size_gib * (kGib / kBlockBytes)));
    std::iota(candidates.begin(), candidates.end(), std::int64_t{0});
  }
  const std::int64_t changed = std::max<std::int64_t>(
      1, (std::ssize(candidates) * kChangedPercent + 50) / 100);  // Rounded to the nearest.
  // A stream of its own, so the new bytes are not the ones the fill wrote.
  std::seed_seq seed{static_cast<std::uint32_t>(settings.seed),
                     static_cast<std::uint32_t>(settings.seed >> 32),
                     std::uint32_t{1}};
  std::mt19937_64 random(seed);
  std::shuffle(candidates.begin(), candidates.end(), random);
  candidates.resize(static_cast<std::size_t>(changed));
  std::sort(candidates.begin(), candidates.end());
  CLINKER_RETURN_IF_ERROR(WriteRandomBlocks(path, candidates, random));
  return changed * kBlockBytes;
}

// A checksum of the whole file (size included), read in 1 MiB pieces; holes read as zeros.
Result<std::uint64_t> Checksum(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return MakeError(ErrorCode::kInternal, "open " + path + ": " + ErrnoText(errno));
  }
  std::vector<char> buffer(static_cast<std::size_t>(kMib));
  std::uint64_t hash = 0x9e3779b97f4a7c15ULL;
  std::int64_t total = 0;
  for (;;) {
    const ssize_t got = ::read(fd, buffer.data(), buffer.size());
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      const int read_errno = errno;
      ::close(fd);
      return MakeError(ErrorCode::kInternal, "read " + path + ": " + ErrnoText(read_errno));
    }
    if (got == 0) {
      break;
    }
    // A read may end mid-word (the buffer is a whole number of words): zero the rest of it.
    const std::size_t padded = (static_cast<std::size_t>(got) + 7) / 8 * 8;
    std::fill(buffer.begin() + got, buffer.begin() + static_cast<std::ptrdiff_t>(padded), '\0');
    for (std::size_t i = 0; i < padded; i += 8) {
      std::uint64_t word = 0;
      std::memcpy(&word, buffer.data() + i, sizeof(word));
      hash = (hash ^ word) * 0x100000001b3ULL;
      hash ^= hash >> 29;
    }
    total += got;
  }
  ::close(fd);
  return hash ^ static_cast<std::uint64_t>(total);
}

std::int64_t AllocatedBytes(const std::string& path) {
  struct stat info {};

  if (::stat(path.c_str(), &info) != 0) {
    return -1;
  }
  return static_cast<std::int64_t>(info.st_blocks) * 512;
}

// Blocks the files under `dir` occupy, or -1 if it cannot be listed.
std::int64_t DirectoryAllocatedBytes(const std::string& dir) {
  std::error_code error;
  std::int64_t total = 0;
  for (std::filesystem::recursive_directory_iterator it(dir, error), end; !error && it != end;
       it.increment(error)) {
    if (it->is_regular_file(error)) {
      total += std::max<std::int64_t>(0, AllocatedBytes(it->path().string()));
    }
  }
  return error ? -1 : total;
}

// Runs `argv` (found on PATH, no shell) and waits for it; an error unless it exits 0.
Result<void> RunProgram(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& arg : argv) {
    // posix_spawnp takes char* const[] for C's sake; it does not write the strings.
    args.push_back(const_cast<char*>(arg.c_str()));
  }
  args.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = ::posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ);
  if (spawned != 0) {
    return MakeError(ErrorCode::kInternal, "cannot start " + argv[0] + ": " + ErrnoText(spawned));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return MakeError(ErrorCode::kInternal, "waitpid: " + ErrnoText(errno));
    }
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return MakeError(ErrorCode::kInternal,
                     argv[0] + " failed (status " + std::to_string(status) + ")");
  }
  return {};
}

Result<void> SyncFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return MakeError(ErrorCode::kInternal, "open " + path + ": " + ErrnoText(errno));
  }
  const bool synced = ::fsync(fd) == 0;
  const int sync_errno = errno;
  ::close(fd);
  if (!synced) {
    return MakeError(ErrorCode::kInternal, "fsync " + path + ": " + ErrnoText(sync_errno));
  }
  return {};
}

// cp of the image to `target`, made durable like the driver's copies.
Result<std::string> Cp(const std::string& option,
                       const std::string& source,
                       const std::string& target) {
  CLINKER_RETURN_IF_ERROR(RunProgram({"cp", option, source, target}));
  CLINKER_RETURN_IF_ERROR(SyncFile(target));
  return target;
}

int Run(int argc, char** argv) {
  Settings settings;
  CLI::App app(
      "Times copies of one volume by the file back-end (clone, snapshot) and the file backup "
      "store (full backup, restore into a new volume, incremental backup after about 1 % of the "
      "data changed) next to cp (--sparse=always, --reflink=auto) of the same image, each made "
      "durable; the volume images are verified by checksum. The source volume holds random data "
      "in 1 MiB blocks at random offsets (--data-percent of it, seeded by --seed) and holes "
      "elsewhere. Prints seconds and MiB/s of the volume's size per copy, then one line of JSON; "
      "exits 1 if a copy fails or differs.");
  app.add_option("--dir",
                 settings.dir,
                 "Directory to work in, on the file system to measure (created if missing; the "
                 "run's files are removed from it at the end). Default: a new temp dir under "
                 "./var/bench, removed at the end")
      ->capture_default_str();
  app.add_flag(
      "--keep",
      settings.keep,
      "Keep the volume, snapshot, copies and backups at the end (the first line names their "
      "directory)");
  app.add_option("--size-gib", settings.size_gib, "Size of the source volume, GiB")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1024}))
      ->capture_default_str();
  app.add_option("--data-percent",
                 settings.data_percent,
                 "Share of the volume's 1 MiB blocks that hold data; the rest are holes")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  app.add_option("--seed", settings.seed, "Seed of the block offsets and their random data")
      ->capture_default_str();
  app.add_option("--chunk-size-mib", settings.chunk_size_mib, "Chunk size of the backups, MiB")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1024}))
      ->capture_default_str();
  app.add_option("--compression-level",
                 settings.compression_level,
                 "zlib level of the backups' chunks: -1 (zlib's default) or 0 to 9")
      ->check(CLI::Range(-1, 9))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  Result<RunDir> prepared = PrepareRunDir(settings);
  if (!prepared) {
    std::fprintf(stderr, "bench_data: %s\n", prepared.error().ToString().c_str());
    return 1;
  }
  RunDir run = std::move(*prepared);
  const CleanUpAtExit clean_up(run, settings.keep);

  FileStorageDriver::Options options;
  options.volume_dir = run.path;
  auto driver_or = FileStorageDriver::Create(options);
  if (!driver_or) {
    std::fprintf(stderr, "bench_data: %s\n", driver_or.error().ToString().c_str());
    return 1;
  }
  FileStorageDriver& driver = **driver_or;

  const std::string source_id = clinker::NewUuid();
  const std::string clone_id = clinker::NewUuid();
  const std::string snapshot_id = clinker::NewUuid();
  const std::string restore_id = clinker::NewUuid();
  const std::string backup_id = clinker::NewUuid();
  const std::string incremental_id = clinker::NewUuid();
  const std::string source = driver.VolumePath(source_id);
  const std::string cp_sparse = run.path + "/cp-sparse-" + source_id + ".img";
  const std::string cp_reflink = run.path + "/cp-reflink-" + source_id + ".img";
  // Named after the source, so it is new even in a given --dir, and removed whole.
  const std::string backup_dir = run.path + "/backups-" + source_id;
  run.files = {source,
               driver.VolumePath(clone_id),
               driver.SnapshotPath(snapshot_id),
               cp_sparse,
               cp_reflink,
               driver.VolumePath(restore_id)};
  run.directories.push_back(backup_dir);

  FileBackupStore::Options backup_options;
  backup_options.backup_dir = backup_dir;
  backup_options.chunk_size_bytes = settings.chunk_size_mib * kMib;
  backup_options.compression_level = settings.compression_level;
  auto store_or = FileBackupStore::Create(backup_options);
  if (!store_or) {
    std::fprintf(stderr, "bench_data: %s\n", store_or.error().ToString().c_str());
    return 1;
  }
  FileBackupStore& store = **store_or;

  clinker::ports::VolumeSpec source_spec;
  source_spec.volume_id = source_id;
  source_spec.size_gib = settings.size_gib;
  source_spec.operation_id = "bench-source";
  if (auto created = driver.CreateVolume(source_spec); !created) {
    std::fprintf(stderr, "bench_data: create source: %s\n", created.error().ToString().c_str());
    return 1;
  }
  Result<SourceData> filled = FillSource(source, settings);
  Result<std::uint64_t> source_sum =
      filled ? Checksum(source) : Result<std::uint64_t>(tl::unexpected(filled.error()));
  if (!source_sum) {
    std::fprintf(stderr, "bench_data: source: %s\n", source_sum.error().ToString().c_str());
    return 1;
  }
  const std::int64_t data_bytes = filled->data_bytes;
  const double size_mib = static_cast<double>(settings.size_gib * kGib) / kMib;
  std::printf(
      "dir=%s size_gib=%lld data_mib=%lld seed=%llu source_allocated_mib=%lld "
      "chunk_size_mib=%lld compression_level=%d\n",
      run.path.c_str(),
      static_cast<long long>(settings.size_gib),
      static_cast<long long>(data_bytes / kMib),
      static_cast<unsigned long long>(settings.seed),
      static_cast<long long>(AllocatedBytes(source) / kMib),
      static_cast<long long>(settings.chunk_size_mib),
      settings.compression_level);

  // Each row makes one copy of `source` and returns the image to verify against it, or "" if
  // what it made is not a volume image (a backup).
  struct Measurement {
    std::string name;
    std::function<Result<std::string>()> copy;
    // Untimed, before the `sync` that precedes the copy; may be empty.
    std::function<Result<void>()> prepare;
    // Set for backup rows: the backup to describe after the copy.
    std::string backup_id;
  };

  std::int64_t changed_bytes = 0;  // Of the source, before the incremental backup.
  const std::vector<Measurement> measurements = {
      {"clone",
       [&]() -> Result<std::string> {
         clinker::ports::VolumeSpec spec;
         spec.volume_id = clone_id;
         spec.size_gib = settings.size_gib;
         spec.operation_id = "bench-clone";
         spec.source = {clinker::ports::VolumeSource::Kind::kVolume, source_id};
         CLINKER_RETURN_IF_ERROR(driver.CreateVolume(spec));
         return driver.VolumePath(clone_id);
       },
       {},
       {}},
      {"snapshot",
       [&]() -> Result<std::string> {
         CLINKER_RETURN_IF_ERROR(driver.CreateSnapshot({snapshot_id, source_id, "bench-snapshot"}));
         return driver.SnapshotPath(snapshot_id);
       },
       {},
       {}},
      {"cp --sparse=always", [&] { return Cp("--sparse=always", source, cp_sparse); }, {}, {}},
      {"cp --reflink=auto", [&] { return Cp("--reflink=auto", source, cp_reflink); }, {}, {}},
      {"backup",
       [&]() -> Result<std::string> {
         CLINKER_RETURN_IF_ERROR(store.CreateBackup({backup_id, source, std::nullopt}));
         return std::string();
       },
       {},
       backup_id},
      {"restore",
       [&]() -> Result<std::string> {
         CLINKER_RETURN_IF_ERROR(store.RestoreBackup(backup_id, driver.VolumePath(restore_id)));
         return driver.VolumePath(restore_id);
       },
       [&]() -> Result<void> {
         clinker::ports::VolumeSpec spec;
         spec.volume_id = restore_id;
         spec.size_gib = settings.size_gib;
         spec.operation_id = "bench-restore";
         return driver.CreateVolume(spec);
       },
       {}},
      // After every row that is checked against the source's checksum: it changes the source.
      {"incremental backup",
       [&]() -> Result<std::string> {
         CLINKER_RETURN_IF_ERROR(store.CreateBackup({incremental_id, source, backup_id}));
         return std::string();
       },
       [&]() -> Result<void> {
         CLINKER_ASSIGN_OR_RETURN(changed_bytes, ChangeSource(source, *filled, settings));
         return {};
       },
       incremental_id},
  };

  bool ok = true;
  std::vector<Row> rows;
  for (const Measurement& measurement : measurements) {
    Row row;
    row.name = measurement.name;
    Result<void> prepared_row = measurement.prepare ? measurement.prepare() : Result<void>();
    Result<std::string> image = std::string();
    if (prepared_row) {
      ::sync();
      const Clock::time_point start = Clock::now();
      image = measurement.copy();
      row.seconds = std::chrono::duration<double>(Clock::now() - start).count();
      row.mib_per_s = row.seconds > 0 ? size_mib / row.seconds : 0;
    } else {
      image = tl::unexpected(prepared_row.error());
    }
    if (!image) {
      row.error = image.error().ToString();
    } else if (!image->empty()) {
      row.allocated_mib = AllocatedBytes(*image) / kMib;
      Result<std::uint64_t> sum = Checksum(*image);
      row.verified = sum && *sum == *source_sum;
      if (!row.verified) {
        row.error = sum ? "content differs from the source" : sum.error().ToString();
      }
    } else if (!measurement.backup_id.empty()) {
      // Not a volume image: nothing to compare here (the restore row checks the full backup).
      row.allocated_mib = DirectoryAllocatedBytes(store.BackupPath(measurement.backup_id)) / kMib;
      Result<clinker::ports::BackupDescription> described =
          store.DescribeBackup(measurement.backup_id);
      if (described) {
        row.backup = std::move(*described);
      } else {
        row.error = described.error().ToString();
      }
    }
    ok = ok && row.error.empty();
    std::string status = "verified";
    if (!row.error.empty()) {
      status = "FAILED: " + row.error;
    } else if (row.backup) {
      char figures[128];
      std::snprintf(figures,
                    sizeof(figures),
                    "objects %lld/%lld  stored %.1f MiB",
                    static_cast<long long>(row.backup->object_count),
                    static_cast<long long>(row.backup->chunk_count),
                    static_cast<double>(row.backup->stored_bytes) / kMib);
      status = figures;
    }
    std::printf("%-20s %9.3f s %10.1f MiB/s  allocated %6lld MiB  %s\n",
                row.name.c_str(),
                row.seconds,
                row.mib_per_s,
                static_cast<long long>(row.allocated_mib),
                status.c_str());
    std::fflush(stdout);
    rows.push_back(std::move(row));
  }
  std::printf("incremental backup after changing %lld MiB of the source (%lld %% of its data)\n",
              static_cast<long long>(changed_bytes / kMib),
              static_cast<long long>(kChangedPercent));

  nlohmann::ordered_json report;
  report["bench"] = "data";
  report["size_gib"] = settings.size_gib;
  report["data_percent"] = settings.data_percent;
  report["data_mib"] = data_bytes / kMib;
  report["seed"] = settings.seed;
  report["chunk_size_mib"] = settings.chunk_size_mib;
  report["compression_level"] = settings.compression_level;
  report["changed_mib"] = changed_bytes / kMib;
  report["rows"] = nlohmann::json::array();
  for (const Row& row : rows) {
    nlohmann::ordered_json entry;
    entry["name"] = row.name;
    entry["seconds"] = row.seconds;
    entry["mib_per_s"] = row.mib_per_s;
    entry["allocated_mib"] = row.allocated_mib;
    entry["verified"] = row.verified;
    if (row.backup) {
      entry["chunk_count"] = row.backup->chunk_count;
      entry["object_count"] = row.backup->object_count;
      entry["stored_bytes"] = row.backup->stored_bytes;
    }
    if (!row.error.empty()) {
      entry["error"] = row.error;
    }
    report["rows"].push_back(entry);
  }
  report["ok"] = ok;
  std::printf("%s\n", report.dump().c_str());
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "bench_data: %s\n", error.what());
    return 1;
  }
}
