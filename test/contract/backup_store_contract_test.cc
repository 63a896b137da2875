// Goal: prove that every BackupStore adapter meets the contract in ports/backup_store.h: a restore
// gives back exactly the data backed up, sparse volumes make small backups and restore sparse,
// incrementals store only changed chunks and keep their parents alive, creates and deletes are
// idempotent, and bad requests get the documented error codes.
//
// Method: one typed suite (TYPED_TEST_SUITE_P), instantiated for every adapter through a factory
// (only FileBackupStore so far). Volumes are 64 MiB sparse files with data in a few 1 MiB chunks,
// compared byte for byte after restores. File-only tests then play the crashes and the damage the
// file adapter promises to survive or detect, by editing its directory layout directly: a create
// interrupted before its manifest, stale dependent markers, flipped, truncated and missing chunk
// objects, and a manifest whose checksums were tampered with.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "clinker/adapters/backup/file_backup_store.h"

#include "support/temp_dir.h"

namespace clinker::adapters {
namespace {

using clinker::test_support::TempDir;

constexpr std::int64_t kKib = std::int64_t{1} << 10;
constexpr std::int64_t kMib = std::int64_t{1} << 20;
constexpr std::int64_t kVolumeBytes = 64 * kMib;
constexpr std::int64_t kChunkBytes = kMib;
// Chunks that hold data in the volume WriteVolume makes. Chunk 20 is written, but with zeros.
constexpr std::array<int, 6> kDataChunks = {0, 5, 16, 17, 40, 63};

constexpr char kFull[] = "b0000000-0000-4000-8000-000000000001";
constexpr char kChild[] = "b0000000-0000-4000-8000-000000000002";
constexpr char kGrandchild[] = "B0000000-0000-4000-8000-000000000003";
constexpr char kOther[] = "b0000000-0000-4000-8000-000000000004";

// ---- Files. ----

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes;
  in.seekg(0, std::ios::end);
  bytes.resize(static_cast<std::size_t>(std::max<std::streamoff>(in.tellg(), 0)));
  in.seekg(0, std::ios::beg);
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return bytes;
}

void WriteAt(const std::string& path, std::int64_t offset, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << path;
  const ssize_t written = ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset));
  ::close(fd);
  ASSERT_EQ(written, static_cast<ssize_t>(bytes.size())) << path;
}

void CreateSparseFile(const std::string& path, std::int64_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << path;
  const int rc = ::ftruncate(fd, static_cast<off_t>(size));
  ::close(fd);
  ASSERT_EQ(rc, 0) << path;
}

// A file of `size` bytes, every one of them `fill`, all allocated.
void CreateFilledFile(const std::string& path, std::int64_t size, char fill) {
  ASSERT_NO_FATAL_FAILURE(CreateSparseFile(path, size));
  const std::string block(static_cast<std::size_t>(kMib), fill);
  for (std::int64_t offset = 0; offset < size; offset += kMib) {
    ASSERT_NO_FATAL_FAILURE(WriteAt(
        path, offset, block.substr(0, static_cast<std::size_t>(std::min(kMib, size - offset)))));
  }
}

// A sparse file of `size` bytes with a block of `fill` in every MiB: garbage everywhere a restore
// must overwrite, at a fraction of the I/O of CreateFilledFile.
void CreateDirtyFile(const std::string& path, std::int64_t size, char fill) {
  ASSERT_NO_FATAL_FAILURE(CreateSparseFile(path, size));
  for (std::int64_t offset = 0; offset < size; offset += kMib) {
    const std::int64_t length = std::min(4 * kKib, size - offset);
    ASSERT_NO_FATAL_FAILURE(
        WriteAt(path, offset, std::string(static_cast<std::size_t>(length), fill)));
  }
}

std::int64_t AllocatedBytes(const std::string& path) {
  struct stat info {};

  if (::stat(path.c_str(), &info) != 0) {
    return -1;
  }
  return static_cast<std::int64_t>(info.st_blocks) * 512;
}

// Incompressible bytes, different for each seed.
std::string RandomBytes(std::uint64_t seed, std::int64_t size) {
  std::string bytes(static_cast<std::size_t>(size), '\0');
  std::uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (char& byte : bytes) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    byte = static_cast<char>(state >> 56);
  }
  return bytes;
}

std::string TextBytes(std::int64_t size) {
  std::string bytes;
  for (int line = 0; std::ssize(bytes) < size; ++line) {
    bytes += "volume line " + std::to_string(line) + ": the quick brown fox jumps over it\n";
  }
  bytes.resize(static_cast<std::size_t>(size));
  return bytes;
}

// The 64 MiB volume most tests back up; data in kDataChunks only.
void WriteVolume(const std::string& path) {
  ASSERT_NO_FATAL_FAILURE(CreateSparseFile(path, kVolumeBytes));
  ASSERT_NO_FATAL_FAILURE(WriteAt(path, 0, TextBytes(64 * kKib)));
  ASSERT_NO_FATAL_FAILURE(WriteAt(path, 5 * kMib + 123, RandomBytes(1, 256 * kKib)));
  ASSERT_NO_FATAL_FAILURE(WriteAt(path, 17 * kMib - 4 * kKib, RandomBytes(2, 8 * kKib)));
  ASSERT_NO_FATAL_FAILURE(WriteAt(path, 20 * kMib, std::string(kMib, '\0')));
  ASSERT_NO_FATAL_FAILURE(WriteAt(path, 40 * kMib, TextBytes(kMib)));
  ASSERT_NO_FATAL_FAILURE(WriteAt(path, kVolumeBytes - 4 * kKib, RandomBytes(3, 4 * kKib)));
}

// -1 when equal; otherwise the first offset that differs (or the shorter length).
std::int64_t FirstDifference(const std::string& a, const std::string& b) {
  const std::size_t common = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < common; ++i) {
    if (a[i] != b[i]) {
      return static_cast<std::int64_t>(i);
    }
  }
  return a.size() == b.size() ? -1 : static_cast<std::int64_t>(common);
}

void ExpectSameDescription(const ports::BackupDescription& a, const ports::BackupDescription& b) {
  EXPECT_EQ(a.backup_id, b.backup_id);
  EXPECT_EQ(a.parent_backup_id, b.parent_backup_id);
  EXPECT_EQ(a.size_bytes, b.size_bytes);
  EXPECT_EQ(a.chunk_count, b.chunk_count);
  EXPECT_EQ(a.object_count, b.object_count);
  EXPECT_EQ(a.stored_bytes, b.stored_bytes);
}

template <class T>
void ExpectError(const Result<T>& result, ErrorCode code) {
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, code) << result.error().ToString();
}

ports::BackupRequest Request(std::string id,
                             std::string source,
                             std::optional<std::string> parent = std::nullopt) {
  return ports::BackupRequest{std::move(id), std::move(source), std::move(parent)};
}

// ---- Factories. ----

struct FileFactory {
  using Store = FileBackupStore;

  static std::unique_ptr<Store> Make(const std::string& dir) {
    FileBackupStore::Options options;
    options.backup_dir = dir + "/backups";
    options.chunk_size_bytes = kChunkBytes;
    auto store = FileBackupStore::Create(options);
    EXPECT_TRUE(store.has_value()) << store.error().ToString();
    return store ? std::move(*store) : nullptr;
  }
};

template <class Factory>
class BackupStoreContract : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(temp_dir_.path().empty());
    store_ = Factory::Make(temp_dir_.path());
    ASSERT_NE(store_, nullptr);
  }

  typename Factory::Store& store() { return *store_; }

  std::string Path(const std::string& name) const { return temp_dir_.path() + "/" + name; }

  // Backs up `source` as `id` and expects success.
  ports::BackupDescription Backup(const std::string& id,
                                  const std::string& source,
                                  std::optional<std::string> parent = std::nullopt) {
    auto created = store_->CreateBackup(Request(id, source, std::move(parent)));
    EXPECT_TRUE(created.has_value()) << created.error().ToString();
    return created ? *created : ports::BackupDescription{};
  }

  // Restores `id` into a fresh target with garbage in every MiB and compares it with `expected`.
  void ExpectRestores(const std::string& id, const std::string& expected) {
    const std::string target = Path("restore-" + id);
    ASSERT_NO_FATAL_FAILURE(
        CreateDirtyFile(target, static_cast<std::int64_t>(expected.size()), '\xab'));
    auto restored = store_->RestoreBackup(id, target);
    ASSERT_TRUE(restored.has_value()) << restored.error().ToString();
    EXPECT_EQ(FirstDifference(ReadAll(target), expected), -1) << "restore of " << id;
    std::filesystem::remove(target);
  }

 private:
  TempDir temp_dir_{"clinker_backup_test"};
  std::unique_ptr<typename Factory::Store> store_;
};

TYPED_TEST_SUITE_P(BackupStoreContract);

TYPED_TEST_P(BackupStoreContract, FullBackupRestoresExactlyAndSparse) {
  const std::string source = this->Path("volume");
  ASSERT_NO_FATAL_FAILURE(WriteVolume(source));
  const ports::BackupDescription created = this->Backup(kFull, source);
  EXPECT_EQ(created.backup_id, kFull);
  EXPECT_EQ(created.parent_backup_id, std::nullopt);
  EXPECT_EQ(created.size_bytes, kVolumeBytes);
  EXPECT_EQ(created.chunk_count, kVolumeBytes / kChunkBytes);
  // One object per chunk holding non-zero data; the zeros written at chunk 20 are not stored.
  EXPECT_EQ(created.object_count, static_cast<std::int64_t>(kDataChunks.size()));
  EXPECT_GT(created.stored_bytes, 0);
  // The random parts (268 KiB) do not compress; the text does, and the holes cost nothing.
  EXPECT_LT(created.stored_bytes, 2 * kMib);
  this->RecordProperty("object_count", std::to_string(created.object_count));
  this->RecordProperty("stored_bytes", std::to_string(created.stored_bytes));

  auto described = this->store().DescribeBackup(kFull);
  ASSERT_TRUE(described.has_value()) << described.error().ToString();
  ExpectSameDescription(*described, created);

  // Into a target full of garbage: everything is overwritten, and the zero chunks become holes.
  const std::string target = this->Path("target");
  ASSERT_NO_FATAL_FAILURE(CreateFilledFile(target, kVolumeBytes, '\xab'));
  auto restored = this->store().RestoreBackup(kFull, target);
  ASSERT_TRUE(restored.has_value()) << restored.error().ToString();
  EXPECT_EQ(FirstDifference(ReadAll(target), ReadAll(source)), -1);
  // Allowance of one chunk for the file system's own metadata blocks.
  EXPECT_LE(AllocatedBytes(target),
            static_cast<std::int64_t>(kDataChunks.size() + 1) * kChunkBytes);

  // Restoring twice writes the same data twice.
  restored = this->store().RestoreBackup(kFull, target);
  ASSERT_TRUE(restored.has_value()) << restored.error().ToString();
  EXPECT_EQ(FirstDifference(ReadAll(target), ReadAll(source)), -1);
}

TYPED_TEST_P(BackupStoreContract, SparseVolumeStoresNoObjects) {
  const std::string source = this->Path("volume");
  ASSERT_NO_FATAL_FAILURE(CreateSparseFile(source, kVolumeBytes + 12345));
  const ports::BackupDescription created = this->Backup(kFull, source);
  EXPECT_EQ(created.size_bytes, kVolumeBytes + 12345);
  EXPECT_EQ(created.chunk_count, kVolumeBytes / kChunkBytes + 1);  // The last one is short.
  EXPECT_EQ(created.object_count, 0);
  EXPECT_EQ(created.stored_bytes, 0);
  this->ExpectRestores(kFull, std::string(static_cast<std::size_t>(kVolumeBytes + 12345), '\0'));
}

TYPED_TEST_P(BackupStoreContract, ShortLastChunkRoundTrips) {
  const std::string source = this->Path("volume");
  const std::int64_t size = 3 * kChunkBytes + 4 * kKib + 7;
  ASSERT_NO_FATAL_FAILURE(CreateSparseFile(source, size));
  ASSERT_NO_FATAL_FAILURE(WriteAt(source, size - 10 * kKib, RandomBytes(9, 10 * kKib)));
  const ports::BackupDescription created = this->Backup(kFull, source);
  EXPECT_EQ(created.chunk_count, 4);
  EXPECT_EQ(created.object_count, 2);  // The write spans the end of chunk 2 and the short chunk 3.
  this->ExpectRestores(kFull, ReadAll(source));
}

TYPED_TEST_P(BackupStoreContract, RestoreIntoALargerTargetLeavesTheTail) {
  const std::string source = this->Path("volume");
  ASSERT_NO_FATAL_FAILURE(WriteVolume(source));
  this->Backup(kFull, source);
  const std::string target = this->Path("target");
  ASSERT_NO_FATAL_FAILURE(CreateFilledFile(target, kVolumeBytes + 16 * kMib, '\x5a'));
  auto restored = this->store().RestoreBackup(kFull, target);
  ASSERT_TRUE(restored.has_value()) << restored.error().ToString();
  const std::string expected = ReadAll(source) + std::string(16 * kMib, '\x5a');
  EXPECT_EQ(FirstDifference(ReadAll(target), expected), -1);
}

TYPED_TEST_P(BackupStoreContract, RestoreIntoASmallerOrMissingTargetIsInvalid) {
  const std::string source = this->Path("volume");
  ASSERT_NO_FATAL_FAILURE(WriteVolume(source));
  this->Backup(kFull, source);
  const std::string target = this->Path("target");
  ASSERT_NO_FATAL_FAILURE(CreateFilledFile(target, kVolumeBytes - kMib, '\x5a'));
  ExpectError(this->store().RestoreBackup(kFull, target), ErrorCode::kInvalidArgument);
  EXPECT_EQ(FirstDifference(ReadAll(target), std::string(kVolumeBytes - kMib, '\x5a')), -1);
  ExpectError(this->store().RestoreBackup(kFull, this->Path("missing")),
              ErrorCode::kInvalidArgument);
  ExpectError(this->store().RestoreBackup(kFull, this->Path("")), ErrorCode::kInvalidArgument);
}

TYPED_TEST_P(BackupStoreContract, IncrementalStoresOnlyChangedChunks) {
  const std::string source = this->Path("volume");
  ASSERT_NO_FATAL_FAILURE(WriteVolume(source));
  const std::string original = ReadAll(source);
  const ports::BackupDescription full = this->Backup(kFull, source);

  // Chunk 5 changes, chunk 30 gets data for the first time, chunk 40 is zeroed.
  ASSERT_NO_FATAL_FAILURE(WriteAt(source, 5 * kMib + 1000, "changed"));
  ASSERT_NO_FATAL_FAILURE(WriteAt(source, 30 * kMib + 77, TextBytes(100 * kKib)));
  ASSERT_NO_FATAL_FAILURE(WriteAt(source, 40 * kMib, std::string(kMib, '\0')));
  const std::string changed = ReadAll(source);
  const ports::BackupDescription child = this->Backup(kChild, source, kFull);
  EXPECT_EQ(child.parent_backup_id, std::optional<std::string>(kFull));
  EXPECT_EQ(child.size_bytes, kVolumeBytes);
  EXPECT_EQ(child.chunk_count, full.chunk_count);
  EXPECT_EQ(child.object_count, 2);
  EXPECT_LT(child.stored_bytes, full.stored_bytes);

  // A grandchild with one more change refers to objects of both ancestors.
  ASSERT_NO_FATAL_FAILURE(WriteAt(source, kVolumeBytes - 100, "last"));
  const std::string changed_again = ReadAll(source);
  const ports::BackupDescription grandchild = this->Backup(kGrandchild, source, kChild);
  EXPECT_EQ(grandchild.object_count, 1);

  this->ExpectRestores(kGrandchild, changed_again);
  this->ExpectRestores(kChild, changed);
  this->ExpectRestores(kFull, original);

  // An incremental of unchanged data stores nothing.
  const ports::BackupDescription same = this->Backup(kOther, source, kGrandchild);
  EXPECT_EQ(same.object_count, 0);
  EXPECT_EQ(same.stored_bytes, 0);
  this->ExpectRestores(kOther, changed_again);
}

TYPED_TEST_P(BackupStoreContract, ParentWithDependentsCannotBeDeleted) {
  const std::string source = this->Path("volume");
  ASSERT_NO_FATAL_FAILURE(WriteVolume(source));
  const std::string original = ReadAll(source);
  this->Backup(kFull, source);
  ASSERT_NO_FATAL_FAILURE(WriteAt(source, 5 * kMib, "changed"));
  this->Backup(kChild, source, kFull);

  ExpectError(this->store().DeleteBackup(kFull), ErrorCode::kConflict);
  EXPECT_TRUE(this->store().DescribeBackup(kFull).has_value());
  this->ExpectRestores(kFull, original);
  this->ExpectRestores(kChild, ReadAll(source));

  auto deleted = this->store().DeleteBackup(kChild);
  ASSERT_TRUE(deleted.has_value()) << deleted.error().ToString();
  ExpectError(this->store().DescribeBackup(kChild), ErrorCode::kNotFound);
  deleted = this->store().DeleteBackup(kFull);
  ASSERT_TRUE(deleted.has_value()) << deleted.error().ToString();
  ExpectError(this->store().DescribeBackup(kFull), ErrorCode::kNotFound);
  ExpectError(this->store().RestoreBackup(kFull, source), ErrorCode::kNotFound);

  // Deleting what is gone, or was never there, succeeds.
  EXPECT_TRUE(this->store().DeleteBackup(kFull).has_value());
  EXPECT_TRUE(this->store().DeleteBackup(kOther).has_value());
}

TYPED_TEST_P(BackupStoreContract, CreateIsIdempotentAndDoesNotReadAgain) {
  const std::string source = this->Path("volume");
  ASSERT_NO_FATAL_FAILURE(WriteVolume(source));
  const std::string original = ReadAll(source);
  const ports::BackupDescription first = this->Backup(kFull, source);

  ASSERT_NO_FATAL_FAILURE(WriteAt(source, 33 * kMib, RandomBytes(5, kMib)));
  const ports::BackupDescription second = this->Backup(kFull, source);
  ExpectSameDescription(second, first);
  ASSERT_EQ(::unlink(source.c_str()), 0);
  const ports::BackupDescription third = this->Backup(kFull, source);
  ExpectSameDescription(third, first);
  this->ExpectRestores(kFull, original);

  // The same id asked for as an incremental is another backup: refused, and nothing changes.
  ExpectError(this->store().CreateBackup(Request(kFull, source, kOther)),
              ErrorCode::kInvalidArgument);
  this->ExpectRestores(kFull, original);
}

TYPED_TEST_P(BackupStoreContract, BadRequestsAreRejected) {
  const std::string source = this->Path("volume");
  ASSERT_NO_FATAL_FAILURE(WriteVolume(source));
  const std::vector<std::string> bad_ids = {
      "", "..", "../etc", "abc/def", "zz", "a b", "3f1c2a9e\n", std::string(129, 'a')};
  for (const std::string& id : bad_ids) {
    SCOPED_TRACE("id '" + id + "'");
    ExpectError(this->store().CreateBackup(Request(id, source)), ErrorCode::kInvalidArgument);
    ExpectError(this->store().CreateBackup(Request(kChild, source, id)),
                ErrorCode::kInvalidArgument);
    ExpectError(this->store().RestoreBackup(id, source), ErrorCode::kInvalidArgument);
    ExpectError(this->store().DeleteBackup(id), ErrorCode::kInvalidArgument);
    ExpectError(this->store().DescribeBackup(id), ErrorCode::kInvalidArgument);
  }
  ExpectError(this->store().CreateBackup(Request(kFull, source, kFull)),
              ErrorCode::kInvalidArgument);

  // A source that is missing or not a volume.
  ExpectError(this->store().CreateBackup(Request(kFull, this->Path("missing"))),
              ErrorCode::kInvalidArgument);
  ExpectError(this->store().CreateBackup(Request(kFull, this->Path(""))),
              ErrorCode::kInvalidArgument);

  ExpectError(this->store().CreateBackup(Request(kChild, source, kFull)), ErrorCode::kNotFound);
  ExpectError(this->store().DescribeBackup(kFull), ErrorCode::kNotFound);
  ExpectError(this->store().RestoreBackup(kFull, source), ErrorCode::kNotFound);

  // A parent of another size.
  this->Backup(kFull, source);
  const std::string bigger = this->Path("bigger");
  ASSERT_NO_FATAL_FAILURE(CreateSparseFile(bigger, kVolumeBytes + kMib));
  ExpectError(this->store().CreateBackup(Request(kChild, bigger, kFull)),
              ErrorCode::kInvalidArgument);
  ExpectError(this->store().DescribeBackup(kChild), ErrorCode::kNotFound);
  // Nothing of the refused child blocks the parent's delete.
  EXPECT_TRUE(this->store().DeleteBackup(kFull).has_value());
}

TYPED_TEST_P(BackupStoreContract, ThreadsMayCreateDifferentBackups) {
  const std::string source = this->Path("volume");
  ASSERT_NO_FATAL_FAILURE(WriteVolume(source));
  const std::string original = ReadAll(source);
  constexpr int kThreads = 4;
  const std::array<std::string, kThreads> ids = {"c1", "c2", "c3", "c4"};
  std::array<std::optional<Error>, kThreads> errors;
  std::array<ports::BackupDescription, kThreads> created;
  auto run = [&](const std::optional<std::string>& parent) {
    std::vector<std::thread> threads;
    threads.reserve(kThreads);
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        auto result =
            this->store().CreateBackup(Request(parent ? ids[i] + "0" : ids[i], source, parent));
        if (result) {
          created[i] = *result;
        } else {
          errors[i] = result.error();
        }
      });
    }
    for (std::thread& thread : threads) {
      thread.join();
    }
  };

  // Four full backups of one source, then four incrementals of one parent.
  run(std::nullopt);
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_FALSE(errors[i].has_value()) << errors[i]->ToString();
    EXPECT_EQ(created[i].object_count, static_cast<std::int64_t>(kDataChunks.size()));
  }
  run(ids[0]);
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_FALSE(errors[i].has_value()) << errors[i]->ToString();
    EXPECT_EQ(created[i].object_count, 0);
  }
  for (int i = 0; i < kThreads; ++i) {
    this->ExpectRestores(ids[i], original);
    this->ExpectRestores(ids[i] + "0", original);
  }
  ExpectError(this->store().DeleteBackup(ids[0]), ErrorCode::kConflict);
}

REGISTER_TYPED_TEST_SUITE_P(BackupStoreContract,
                            FullBackupRestoresExactlyAndSparse,
                            SparseVolumeStoresNoObjects,
                            ShortLastChunkRoundTrips,
                            RestoreIntoALargerTargetLeavesTheTail,
                            RestoreIntoASmallerOrMissingTargetIsInvalid,
                            IncrementalStoresOnlyChangedChunks,
                            ParentWithDependentsCannotBeDeleted,
                            CreateIsIdempotentAndDoesNotReadAgain,
                            BadRequestsAreRejected,
                            ThreadsMayCreateDifferentBackups);

using Factories = ::testing::Types<FileFactory>;

class FactoryNames {
 public:
  template <class T>
  static std::string GetName(int /*index*/) {
    return "File";
  }
};

INSTANTIATE_TYPED_TEST_SUITE_P(All, BackupStoreContract, Factories, FactoryNames);

// ---- File-only: crashes and damage, played by editing the layout. ----

std::string Sha256Hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EXPECT_EQ(EVP_Digest(bytes.data(), bytes.size(), digest, &size, EVP_sha256(), nullptr), 1);
  std::string hex;
  for (unsigned int i = 0; i < size; ++i) {
    static constexpr char kHex[] = "0123456789abcdef";
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0x0f]);
  }
  return hex;
}

std::string Deflate(const std::string& bytes) {
  std::string packed(::compressBound(static_cast<uLong>(bytes.size())), '\0');
  uLongf size = static_cast<uLongf>(packed.size());
  EXPECT_EQ(::compress2(reinterpret_cast<Bytef*>(packed.data()),
                        &size,
                        reinterpret_cast<const Bytef*>(bytes.data()),
                        static_cast<uLong>(bytes.size()),
                        1),
            Z_OK);
  packed.resize(size);
  return packed;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

class FileBackupStoreTest : public BackupStoreContract<FileFactory> {
 protected:
  void SetUp() override {
    BackupStoreContract<FileFactory>::SetUp();
    source_ = Path("volume");
    ASSERT_NO_FATAL_FAILURE(WriteVolume(source_));
  }

  std::string ObjectPath(const std::string& id, int index) {
    return store().BackupPath(id) + "/chunk-" + std::to_string(index) + ".z";
  }

  std::string ManifestPath(const std::string& id) {
    return store().BackupPath(id) + "/manifest.json";
  }

  nlohmann::json ReadManifest(const std::string& id) {
    return nlohmann::json::parse(ReadAll(ManifestPath(id)), nullptr, false);
  }

  // Restoring `id` fails as corruption of `chunk`, named in the message.
  void ExpectCorruptChunk(const std::string& id, int chunk) {
    const std::string target = Path("target");
    ASSERT_NO_FATAL_FAILURE(CreateSparseFile(target, kVolumeBytes));
    auto restored = store().RestoreBackup(id, target);
    ASSERT_FALSE(restored.has_value());
    EXPECT_EQ(restored.error().code, ErrorCode::kDriverFailed);
    EXPECT_NE(restored.error().message.find("backup " + id + " is corrupt: chunk " +
                                            std::to_string(chunk) + " "),
              std::string::npos)
        << restored.error().message;
  }

  const std::string& source() const { return source_; }

 private:
  std::string source_;
};

TEST_F(FileBackupStoreTest, OptionsAreChecked) {
  const std::vector<std::int64_t> bad_chunk_sizes = {
      0, 4096, 32 * kKib, 64 * kKib + 1, 2048 * kMib};
  for (std::int64_t chunk_size : bad_chunk_sizes) {
    FileBackupStore::Options options;
    options.backup_dir = Path("other");
    options.chunk_size_bytes = chunk_size;
    ExpectError(FileBackupStore::Create(options), ErrorCode::kInvalidArgument);
  }
  FileBackupStore::Options options;
  options.backup_dir = Path("other");
  options.compression_level = 10;
  ExpectError(FileBackupStore::Create(options), ErrorCode::kInvalidArgument);
  options.compression_level = 9;
  options.backup_dir = "";
  ExpectError(FileBackupStore::Create(options), ErrorCode::kInvalidArgument);
  options.backup_dir = Path("other");
  EXPECT_TRUE(FileBackupStore::Create(options).has_value());
}

TEST_F(FileBackupStoreTest, LayoutIsObjectsPlusManifest) {
  Backup(kFull, source());
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(store().BackupPath(kFull))) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  std::vector<std::string> expected = {"manifest.json"};
  for (int index : kDataChunks) {
    expected.push_back("chunk-" + std::to_string(index) + ".z");
  }
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names, expected);
  const nlohmann::json manifest = ReadManifest(kFull);
  ASSERT_FALSE(manifest.is_discarded());
  EXPECT_EQ(manifest["format_version"], 1);
  EXPECT_EQ(manifest["chunk_size"], kChunkBytes);
  EXPECT_EQ(manifest["chunks"][20]["kind"], "zero");
  EXPECT_EQ(manifest["chunks"][40]["kind"], "stored");
  EXPECT_EQ(manifest["chunks"][40]["sha256"], Sha256Hex(TextBytes(kMib)));
}

TEST_F(FileBackupStoreTest, ChunksOfAncestorsPointAtTheBackupThatStoresThem) {
  Backup(kFull, source());
  ASSERT_NO_FATAL_FAILURE(WriteAt(source(), 5 * kMib, "changed"));
  Backup(kChild, source(), kFull);
  Backup(kGrandchild, source(), kChild);
  const nlohmann::json manifest = ReadManifest(kGrandchild);
  ASSERT_FALSE(manifest.is_discarded());
  EXPECT_EQ(manifest["parent_backup_id"], kChild);
  EXPECT_EQ(manifest["chunks"][0]["kind"], "parent");
  EXPECT_EQ(manifest["chunks"][0]["from"], kFull);
  EXPECT_EQ(manifest["chunks"][5]["kind"], "parent");
  EXPECT_EQ(manifest["chunks"][5]["from"], kChild);
  EXPECT_EQ(manifest["chunks"][7]["kind"], "zero");
  // The incremental uses its parent's chunk size even when the store's option differs.
  FileBackupStore::Options options = store().options();
  options.chunk_size_bytes = 4 * kMib;
  auto other = FileBackupStore::Create(options);
  ASSERT_TRUE(other.has_value()) << other.error().ToString();
  auto created = (*other)->CreateBackup(Request(kOther, source(), kChild));
  ASSERT_TRUE(created.has_value()) << created.error().ToString();
  EXPECT_EQ(created->chunk_count, kVolumeBytes / kChunkBytes);
  EXPECT_EQ(created->object_count, 0);
}

TEST_F(FileBackupStoreTest, JournalHasOneLinePerCompletedCall) {
  FileBackupStore::Options options = store().options();
  options.journal_path = Path("journal.jsonl");
  auto created = FileBackupStore::Create(options);
  ASSERT_TRUE(created.has_value()) << created.error().ToString();
  FileBackupStore& journaled = **created;
  const std::string target = Path("target");
  ASSERT_NO_FATAL_FAILURE(CreateSparseFile(target, kVolumeBytes));
  ASSERT_TRUE(journaled.CreateBackup(Request(kFull, source())).has_value());
  ASSERT_TRUE(journaled.CreateBackup(Request(kFull, source())).has_value());
  ASSERT_TRUE(journaled.CreateBackup(Request(kChild, source(), kFull)).has_value());
  ASSERT_TRUE(journaled.RestoreBackup(kChild, target).has_value());
  // Failed calls complete nothing and write nothing.
  ASSERT_FALSE(journaled.DeleteBackup(kFull).has_value());
  ASSERT_FALSE(journaled.RestoreBackup(kOther, target).has_value());
  ASSERT_TRUE(journaled.DeleteBackup(kChild).has_value());
  ASSERT_TRUE(journaled.DeleteBackup(kChild).has_value());

  std::vector<nlohmann::json> entries;
  std::ifstream journal(options.journal_path);
  for (std::string line; std::getline(journal, line);) {
    entries.push_back(nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false));
  }
  const auto pid = static_cast<std::int64_t>(::getpid());
  auto line = [pid](std::string_view op, nlohmann::json ids, bool changed) {
    ids["op"] = op;
    ids["operation_id"] = "";
    ids["pid"] = pid;
    ids["changed"] = changed;
    return ids;
  };
  const std::vector<nlohmann::json> expected = {
      line("create_backup", {{"backup_id", kFull}}, true),
      line("create_backup", {{"backup_id", kFull}}, false),
      line("create_backup", {{"backup_id", kChild}, {"parent_backup_id", kFull}}, true),
      line("restore_backup", {{"backup_id", kChild}, {"target_path", target}}, true),
      line("delete_backup", {{"backup_id", kChild}}, true),
      line("delete_backup", {{"backup_id", kChild}}, false),
  };
  EXPECT_EQ(entries, expected);
}

TEST_F(FileBackupStoreTest, InterruptedCreateIsInvisibleAndStartsOver) {
  const std::string dir = store().BackupPath(kFull);
  ASSERT_TRUE(std::filesystem::create_directories(dir));
  ASSERT_NO_FATAL_FAILURE(WriteFile(ObjectPath(kFull, 0), "junk"));
  ASSERT_NO_FATAL_FAILURE(WriteFile(ObjectPath(kFull, 7), "junk"));
  ASSERT_NO_FATAL_FAILURE(WriteFile(dir + "/manifest.json.tmp", "{\"format_version\""));
  ExpectError(store().DescribeBackup(kFull), ErrorCode::kNotFound);
  ExpectError(store().RestoreBackup(kFull, source()), ErrorCode::kNotFound);
  ExpectError(store().CreateBackup(Request(kChild, source(), kFull)), ErrorCode::kNotFound);

  const ports::BackupDescription created = Backup(kFull, source());
  EXPECT_EQ(created.object_count, static_cast<std::int64_t>(kDataChunks.size()));
  EXPECT_FALSE(std::filesystem::exists(ObjectPath(kFull, 7)));  // A zero chunk: no object.
  EXPECT_FALSE(std::filesystem::exists(dir + "/manifest.json.tmp"));
  ExpectRestores(kFull, ReadAll(source()));

  // The same remainder is removed by a delete.
  ASSERT_TRUE(std::filesystem::create_directories(store().BackupPath(kOther)));
  ASSERT_NO_FATAL_FAILURE(WriteFile(ObjectPath(kOther, 3), "junk"));
  EXPECT_TRUE(store().DeleteBackup(kOther).has_value());
  EXPECT_FALSE(std::filesystem::exists(store().BackupPath(kOther)));
}

TEST_F(FileBackupStoreTest, StaleDependentMarkersDoNotBlockTheParentsDelete) {
  Backup(kFull, source());
  Backup(kChild, source(), kFull);
  // A child whose delete crashed right after removing its manifest.
  ASSERT_EQ(::unlink(ManifestPath(kChild).c_str()), 0);
  ExpectError(store().DescribeBackup(kChild), ErrorCode::kNotFound);
  // A child whose create crashed before its manifest, and one that exists as a full backup
  // (its marker outlived an earlier incarnation).
  const std::string dependents = store().BackupPath(kFull) + "/dependents";
  ASSERT_NO_FATAL_FAILURE(WriteFile(dependents + "/" + kGrandchild, ""));
  Backup(kOther, source());
  ASSERT_NO_FATAL_FAILURE(WriteFile(dependents + "/" + kOther, ""));

  auto deleted = store().DeleteBackup(kFull);
  ASSERT_TRUE(deleted.has_value()) << deleted.error().ToString();
  EXPECT_FALSE(std::filesystem::exists(store().BackupPath(kFull)));
  EXPECT_TRUE(store().DeleteBackup(kChild).has_value());
  EXPECT_FALSE(std::filesystem::exists(store().BackupPath(kChild)));
  ExpectRestores(kOther, ReadAll(source()));
}

TEST_F(FileBackupStoreTest, ParentOfABackupBeingCreatedCannotBeDeleted) {
  Backup(kFull, source());
  // What an incremental create holds while it reads its source.
  const int fd = ::open(store().BackupPath(kFull).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_SH), 0);
  ExpectError(store().DeleteBackup(kFull), ErrorCode::kConflict);
  ::close(fd);
  EXPECT_TRUE(store().DeleteBackup(kFull).has_value());
}

TEST_F(FileBackupStoreTest, DamagedObjectsFailTheRestoreNamingTheChunk) {
  Backup(kFull, source());
  Backup(kChild, source(), kFull);

  // One flipped byte.
  const std::string object = ObjectPath(kFull, 5);
  const std::string good = ReadAll(object);
  ASSERT_GT(good.size(), 100U);
  std::string flipped = good;
  flipped[100] = static_cast<char>(flipped[100] ^ 0x01);
  ASSERT_NO_FATAL_FAILURE(WriteFile(object, flipped));
  ExpectCorruptChunk(kFull, 5);
  // Seen through the incremental that refers to it, too.
  ExpectCorruptChunk(kChild, 5);
  ASSERT_NO_FATAL_FAILURE(WriteFile(object, good));

  // Truncated.
  ASSERT_EQ(::truncate(ObjectPath(kFull, 40).c_str(), 10), 0);
  ExpectCorruptChunk(kFull, 40);

  // Missing.
  ASSERT_EQ(::unlink(ObjectPath(kFull, 0).c_str()), 0);
  ExpectCorruptChunk(kFull, 0);
}

TEST_F(FileBackupStoreTest, TamperedManifestIsDetected) {
  Backup(kFull, source());
  const std::string text = ReadAll(ManifestPath(kFull));
  nlohmann::json manifest = nlohmann::json::parse(text, nullptr, false);
  ASSERT_FALSE(manifest.is_discarded());

  // Another valid object, with the manifest's object checksum and size updated to match: only the
  // checksum of the data inflated from it can tell.
  const std::string forged = Deflate(RandomBytes(77, kMib));
  ASSERT_NO_FATAL_FAILURE(WriteFile(ObjectPath(kFull, 5), forged));
  manifest["chunks"][5]["object_sha256"] = Sha256Hex(forged);
  manifest["chunks"][5]["object_bytes"] = forged.size();
  ASSERT_NO_FATAL_FAILURE(WriteFile(ManifestPath(kFull), manifest.dump()));
  ExpectCorruptChunk(kFull, 5);

  // An unreadable manifest is corruption, not absence; the backup can still be deleted.
  ASSERT_NO_FATAL_FAILURE(WriteFile(ManifestPath(kFull), text.substr(0, text.size() / 2)));
  ExpectError(store().DescribeBackup(kFull), ErrorCode::kDriverFailed);
  ExpectError(store().CreateBackup(Request(kFull, source())), ErrorCode::kDriverFailed);
  EXPECT_TRUE(store().DeleteBackup(kFull).has_value());
  ExpectError(store().DescribeBackup(kFull), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace clinker::adapters
