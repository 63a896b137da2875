// Goal: prove that every StorageDriver adapter meets the contract in ports/storage_driver.h
// (idempotent create, clone, snapshot, extend and delete; size rules; missing sources; fencing of
// every operation that writes; connection info; id validation), so that service tests against
// the in-memory fake say something about the file driver used in production runs.
//
// Method: one typed suite (TYPED_TEST_SUITE_P) instantiated for MemoryStorageDriver and
// FileStorageDriver; each factory also says how to observe a volume or snapshot (the fake's
// maps, or stat() on the image file). File-only tests then check what only the file driver
// promises: copies hold the source's bytes (a snapshot keeps them after the volume is
// overwritten), copies and grown volumes stay sparse, no temp files left behind, one journal
// line per completed operation, and the injected delay (lower bound only, so the test cannot
// flake on a slow machine). Memory-only tests check the fake's hooks.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include "clinker/adapters/file/file_storage_driver.h"
#include "clinker/adapters/memory/memory_storage_driver.h"

#include "support/temp_dir.h"

namespace clinker::adapters {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr std::int64_t kGib = std::int64_t{1} << 30;
constexpr char kVolumeA[] = "3f1c2a9e-0d4b-4e7a-9c61-5b8f2e7d1a04";
constexpr char kVolumeB[] = "0A1B2C3D-4E5F-4a6b-8c7d-9e0f1a2b3c4d";
constexpr char kVolumeC[] = "7e2d9b10-5c3a-4d8f-b1e6-0a9c8d7e6f51";
constexpr char kSnapshotS[] = "5d9c1e42-7b3a-4f08-a6e1-2c4b8d0f9e13";
constexpr char kSnapshotT[] = "c4a8e0f2-1b6d-4e9a-8f37-6d2b1c0e9a85";

using clinker::test_support::TempDir;

ports::VolumeSpec Spec(std::string id, std::int64_t size_gib, std::string operation_id = "op-1") {
  ports::VolumeSpec spec;
  spec.volume_id = std::move(id);
  spec.size_gib = size_gib;
  spec.operation_id = std::move(operation_id);
  return spec;
}

ports::VolumeSpec CloneSpec(std::string id,
                            std::int64_t size_gib,
                            ports::VolumeSource::Kind kind,
                            std::string source_id,
                            std::string operation_id = "op-clone") {
  ports::VolumeSpec spec = Spec(std::move(id), size_gib, std::move(operation_id));
  spec.source = ports::VolumeSource{kind, std::move(source_id)};
  return spec;
}

ports::SnapshotSpec SnapshotOf(std::string volume_id,
                               std::string snapshot_id,
                               std::string operation_id = "op-snap",
                               std::uint64_t fencing_token = 0) {
  return ports::SnapshotSpec{
      std::move(snapshot_id), std::move(volume_id), std::move(operation_id), fencing_token};
}

constexpr auto kFromVolume = ports::VolumeSource::Kind::kVolume;
constexpr auto kFromSnapshot = ports::VolumeSource::Kind::kSnapshot;

template <class T>
::testing::AssertionResult Succeeded(const Result<T>& result) {
  if (!result.has_value()) {
    return ::testing::AssertionFailure() << result.error().ToString();
  }
  return ::testing::AssertionSuccess();
}

template <class T>
::testing::AssertionResult FailsWith(const Result<T>& result, ErrorCode code) {
  if (result.has_value()) {
    return ::testing::AssertionFailure() << "succeeded; expected " << ErrorCodeName(code);
  }
  if (result.error().code != code) {
    return ::testing::AssertionFailure()
           << result.error().ToString() << "; expected " << ErrorCodeName(code);
  }
  return ::testing::AssertionSuccess();
}

struct MemoryFactory {
  using Driver = MemoryStorageDriver;

  static std::unique_ptr<Driver> Make(const std::string& /*dir*/) {
    return std::make_unique<MemoryStorageDriver>();
  }

  // Size in GiB of the volume, or nullopt if absent.
  static std::optional<std::int64_t> SizeGib(Driver& driver, const std::string& id) {
    return driver.VolumeSizeGib(id);
  }

  static bool HasSnapshot(Driver& driver, const std::string& id) { return driver.HasSnapshot(id); }
};

struct FileFactory {
  using Driver = FileStorageDriver;

  static std::unique_ptr<Driver> Make(const std::string& dir) {
    FileStorageDriver::Options options;
    options.volume_dir = dir + "/volumes";
    auto driver = FileStorageDriver::Create(options);
    EXPECT_TRUE(driver.has_value()) << driver.error().ToString();
    return driver ? std::move(*driver) : nullptr;
  }

  static std::optional<std::int64_t> SizeGib(Driver& driver, const std::string& id) {
    struct stat info {};

    if (::stat(driver.VolumePath(id).c_str(), &info) != 0) {
      return std::nullopt;
    }
    return info.st_size / kGib;
  }

  static bool HasSnapshot(Driver& driver, const std::string& id) {
    struct stat info {};

    return ::stat(driver.SnapshotPath(id).c_str(), &info) == 0;
  }
};

template <class Factory>
class StorageDriverContractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    driver_ = Factory::Make(temp_dir_.path());
    ASSERT_NE(driver_, nullptr);
  }

  ports::StorageDriver& driver() { return *driver_; }

  std::optional<std::int64_t> SizeGib(const std::string& id) {
    return Factory::SizeGib(*driver_, id);
  }

  bool HasSnapshot(const std::string& id) { return Factory::HasSnapshot(*driver_, id); }

  // Creates a volume, failing the test if that fails.
  void MakeVolume(const std::string& id, std::int64_t size_gib) {
    auto created = driver().CreateVolume(Spec(id, size_gib, "op-make"));
    ASSERT_TRUE(created.has_value()) << created.error().ToString();
  }

 private:
  TempDir temp_dir_;
  std::unique_ptr<typename Factory::Driver> driver_;
};

TYPED_TEST_SUITE_P(StorageDriverContractTest);

TYPED_TEST_P(StorageDriverContractTest, CreateThenDelete) {
  ASSERT_EQ(this->SizeGib(kVolumeA), std::nullopt);
  auto created = this->driver().CreateVolume(Spec(kVolumeA, 1));
  ASSERT_TRUE(created.has_value()) << created.error().ToString();
  EXPECT_EQ(this->SizeGib(kVolumeA), 1);

  auto deleted = this->driver().DeleteVolume(kVolumeA, "op-2", 0);
  ASSERT_TRUE(deleted.has_value()) << deleted.error().ToString();
  EXPECT_EQ(this->SizeGib(kVolumeA), std::nullopt);
}

TYPED_TEST_P(StorageDriverContractTest, CreateIsIdempotent) {
  ASSERT_TRUE(this->driver().CreateVolume(Spec(kVolumeA, 2, "op-1")).has_value());
  auto again = this->driver().CreateVolume(Spec(kVolumeA, 2, "op-1"));
  EXPECT_TRUE(again.has_value()) << again.error().ToString();
  EXPECT_EQ(this->SizeGib(kVolumeA), 2);
}

TYPED_TEST_P(StorageDriverContractTest, DeleteIsIdempotent) {
  ASSERT_TRUE(this->driver().CreateVolume(Spec(kVolumeA, 1)).has_value());
  ASSERT_TRUE(this->driver().DeleteVolume(kVolumeA, "op-2", 0).has_value());
  auto again = this->driver().DeleteVolume(kVolumeA, "op-2", 0);
  EXPECT_TRUE(again.has_value()) << again.error().ToString();
  auto never_created = this->driver().DeleteVolume(kVolumeB, "op-3", 0);
  EXPECT_TRUE(never_created.has_value()) << never_created.error().ToString();
  EXPECT_EQ(this->SizeGib(kVolumeA), std::nullopt);
}

TYPED_TEST_P(StorageDriverContractTest, CreateWithAnotherSizeIsInvalidAndChangesNothing) {
  ASSERT_TRUE(this->driver().CreateVolume(Spec(kVolumeA, 1)).has_value());
  auto conflict = this->driver().CreateVolume(Spec(kVolumeA, 2, "op-9"));
  ASSERT_FALSE(conflict.has_value());
  EXPECT_EQ(conflict.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(this->SizeGib(kVolumeA), 1);
}

TYPED_TEST_P(StorageDriverContractTest, InvalidIdsAreRejected) {
  const std::vector<std::string> bad_ids = {
      "", "../etc", "..", "abc/def", "zz", "a b", "3f1c2a9e\n", std::string(129, 'a')};
  for (const std::string& id : bad_ids) {
    auto created = this->driver().CreateVolume(Spec(id, 1));
    ASSERT_FALSE(created.has_value()) << "'" << id << "'";
    EXPECT_EQ(created.error().code, ErrorCode::kInvalidArgument) << "'" << id << "'";
    auto deleted = this->driver().DeleteVolume(id, "op-2", 0);
    ASSERT_FALSE(deleted.has_value()) << "'" << id << "'";
    EXPECT_EQ(deleted.error().code, ErrorCode::kInvalidArgument) << "'" << id << "'";
  }
  // Upper-case hex and the longest allowed id are fine.
  EXPECT_TRUE(this->driver().CreateVolume(Spec(kVolumeB, 1)).has_value());
  EXPECT_TRUE(this->driver().CreateVolume(Spec(std::string(128, 'f'), 1)).has_value());
}

TYPED_TEST_P(StorageDriverContractTest, NonPositiveSizesAreRejected) {
  for (std::int64_t size_gib : {std::int64_t{0}, std::int64_t{-1}}) {
    auto created = this->driver().CreateVolume(Spec(kVolumeA, size_gib));
    ASSERT_FALSE(created.has_value()) << size_gib;
    EXPECT_EQ(created.error().code, ErrorCode::kInvalidArgument);
  }
  EXPECT_EQ(this->SizeGib(kVolumeA), std::nullopt);
}

TYPED_TEST_P(StorageDriverContractTest, StatsNameTheBackendAndStayConsistent) {
  auto stats = this->driver().GetStats();
  ASSERT_TRUE(stats.has_value()) << stats.error().ToString();
  EXPECT_FALSE(stats->backend_name.empty());
  EXPECT_GE(stats->free_capacity_gib, 0);
  EXPECT_GE(stats->total_capacity_gib, stats->free_capacity_gib);
}

TYPED_TEST_P(StorageDriverContractTest, ThreadsMayWorkOnDifferentVolumes) {
  constexpr int kThreads = 4;
  std::vector<std::string> ids;
  ids.reserve(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    ids.push_back("00000000-0000-4000-8000-00000000000" + std::to_string(i));
  }
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  std::vector<int> failures(kThreads, 0);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int round = 0; round < 5; ++round) {
        failures[i] += this->driver().CreateVolume(Spec(ids[i], 1)).has_value() ? 0 : 1;
        failures[i] += this->driver().DeleteVolume(ids[i], "op", 0).has_value() ? 0 : 1;
      }
      failures[i] += this->driver().CreateVolume(Spec(ids[i], 1)).has_value() ? 0 : 1;
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(failures[i], 0) << ids[i];
    EXPECT_EQ(this->SizeGib(ids[i]), 1) << ids[i];
  }
}

// A node that took a volume over fences it; the node it took over from (paused, not dead) then
// carries an older token and must change nothing, before or after the volume is deleted.
TYPED_TEST_P(StorageDriverContractTest, FenceRefusesOlderTokensAndOutlivesTheVolume) {
  ports::VolumeSpec stale = Spec(kVolumeA, 1, "op-stale");
  stale.fencing_token = 5;
  ASSERT_TRUE(this->driver().CreateVolume(stale).has_value()) << "no fence yet: admitted";

  ASSERT_TRUE(this->driver().Fence(kVolumeA, 7).has_value());
  EXPECT_TRUE(this->driver().Fence(kVolumeA, 7).has_value()) << "fencing is idempotent";
  auto older_fence = this->driver().Fence(kVolumeA, 6);
  ASSERT_FALSE(older_fence.has_value());
  EXPECT_EQ(older_fence.error().code, ErrorCode::kFenced);

  auto stale_delete = this->driver().DeleteVolume(kVolumeA, "op-stale-delete", 5);
  ASSERT_FALSE(stale_delete.has_value());
  EXPECT_EQ(stale_delete.error().code, ErrorCode::kFenced) << stale_delete.error().ToString();
  EXPECT_EQ(this->SizeGib(kVolumeA), 1) << "a refused delete changes nothing";
  auto unfenced_delete = this->driver().DeleteVolume(kVolumeA, "op-unfenced", 0);
  ASSERT_FALSE(unfenced_delete.has_value());
  EXPECT_EQ(unfenced_delete.error().code, ErrorCode::kFenced);

  ASSERT_TRUE(this->driver().DeleteVolume(kVolumeA, "op-delete", 8).has_value());
  EXPECT_EQ(this->SizeGib(kVolumeA), std::nullopt);
  auto resurrect = this->driver().CreateVolume(stale);
  ASSERT_FALSE(resurrect.has_value());
  EXPECT_EQ(resurrect.error().code, ErrorCode::kFenced);
  EXPECT_EQ(this->SizeGib(kVolumeA), std::nullopt) << "a stale create must not bring it back";

  // Other volumes are not affected by this one's fence.
  EXPECT_TRUE(this->driver().CreateVolume(Spec(kVolumeB, 1)).has_value());
  EXPECT_EQ(this->SizeGib(kVolumeB), 1);
}

TYPED_TEST_P(StorageDriverContractTest, CloneFromVolumeIsGrownToItsSizeAndIdempotent) {
  this->MakeVolume(kVolumeA, 2);
  auto same_size = this->driver().CreateVolume(CloneSpec(kVolumeB, 2, kFromVolume, kVolumeA));
  ASSERT_TRUE(Succeeded(same_size));
  EXPECT_EQ(this->SizeGib(kVolumeB), 2);
  EXPECT_TRUE(Succeeded(this->driver().CreateVolume(CloneSpec(kVolumeB, 2, kFromVolume, kVolumeA))))
      << "a repeated clone succeeds";
  EXPECT_EQ(this->SizeGib(kVolumeB), 2);

  ASSERT_TRUE(
      Succeeded(this->driver().CreateVolume(CloneSpec(kVolumeC, 5, kFromVolume, kVolumeA))));
  EXPECT_EQ(this->SizeGib(kVolumeC), 5) << "a larger clone is grown to the requested size";
  EXPECT_EQ(this->SizeGib(kVolumeA), 2) << "the source is untouched";

  auto other_size = this->driver().CreateVolume(CloneSpec(kVolumeC, 4, kFromVolume, kVolumeA));
  EXPECT_TRUE(FailsWith(other_size, ErrorCode::kInvalidArgument));
  EXPECT_EQ(this->SizeGib(kVolumeC), 5);
}

TYPED_TEST_P(StorageDriverContractTest, CloneFromSnapshotIsGrownToItsSizeAndIdempotent) {
  this->MakeVolume(kVolumeA, 2);
  ASSERT_TRUE(Succeeded(this->driver().CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS))));
  ASSERT_TRUE(
      Succeeded(this->driver().CreateVolume(CloneSpec(kVolumeB, 2, kFromSnapshot, kSnapshotS))));
  EXPECT_EQ(this->SizeGib(kVolumeB), 2);
  EXPECT_TRUE(
      Succeeded(this->driver().CreateVolume(CloneSpec(kVolumeB, 2, kFromSnapshot, kSnapshotS))));
  ASSERT_TRUE(
      Succeeded(this->driver().CreateVolume(CloneSpec(kVolumeC, 3, kFromSnapshot, kSnapshotS))));
  EXPECT_EQ(this->SizeGib(kVolumeC), 3);
  EXPECT_TRUE(this->HasSnapshot(kSnapshotS)) << "the source snapshot is untouched";
}

TYPED_TEST_P(StorageDriverContractTest, CloneSmallerThanItsSourceIsInvalidAndCreatesNothing) {
  this->MakeVolume(kVolumeA, 2);
  ASSERT_TRUE(Succeeded(this->driver().CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS))));
  EXPECT_TRUE(FailsWith(this->driver().CreateVolume(CloneSpec(kVolumeB, 1, kFromVolume, kVolumeA)),
                        ErrorCode::kInvalidArgument));
  EXPECT_TRUE(
      FailsWith(this->driver().CreateVolume(CloneSpec(kVolumeB, 1, kFromSnapshot, kSnapshotS)),
                ErrorCode::kInvalidArgument));
  EXPECT_EQ(this->SizeGib(kVolumeB), std::nullopt);
}

TYPED_TEST_P(StorageDriverContractTest, CloneOfAMissingSourceIsNotFoundAndCreatesNothing) {
  EXPECT_TRUE(FailsWith(this->driver().CreateVolume(CloneSpec(kVolumeB, 1, kFromVolume, kVolumeA)),
                        ErrorCode::kNotFound));
  EXPECT_TRUE(
      FailsWith(this->driver().CreateVolume(CloneSpec(kVolumeB, 1, kFromSnapshot, kSnapshotS)),
                ErrorCode::kNotFound));
  // Volumes and snapshots are different things even where their ids could be confused.
  this->MakeVolume(kVolumeA, 1);
  ASSERT_TRUE(Succeeded(this->driver().CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS))));
  EXPECT_TRUE(
      FailsWith(this->driver().CreateVolume(CloneSpec(kVolumeB, 1, kFromSnapshot, kVolumeA)),
                ErrorCode::kNotFound));
  EXPECT_TRUE(
      FailsWith(this->driver().CreateVolume(CloneSpec(kVolumeB, 1, kFromVolume, kSnapshotS)),
                ErrorCode::kNotFound));
  EXPECT_EQ(this->SizeGib(kVolumeB), std::nullopt);
}

TYPED_TEST_P(StorageDriverContractTest, SnapshotCreateAndDeleteAreIdempotent) {
  this->MakeVolume(kVolumeA, 1);
  ASSERT_TRUE(Succeeded(this->driver().CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS))));
  EXPECT_TRUE(this->HasSnapshot(kSnapshotS));
  EXPECT_TRUE(Succeeded(this->driver().CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS))));
  EXPECT_TRUE(this->HasSnapshot(kSnapshotS));
  EXPECT_EQ(this->SizeGib(kVolumeA), 1) << "the volume is untouched";

  ASSERT_TRUE(Succeeded(this->driver().DeleteSnapshot(kSnapshotS, "op-del", 0)));
  EXPECT_FALSE(this->HasSnapshot(kSnapshotS));
  EXPECT_TRUE(Succeeded(this->driver().DeleteSnapshot(kSnapshotS, "op-del", 0)));
  EXPECT_TRUE(Succeeded(this->driver().DeleteSnapshot(kSnapshotT, "op-never", 0)));
  EXPECT_EQ(this->SizeGib(kVolumeA), 1);
}

TYPED_TEST_P(StorageDriverContractTest, SnapshotOfAMissingVolumeIsNotFound) {
  EXPECT_TRUE(FailsWith(this->driver().CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS)),
                        ErrorCode::kNotFound));
  EXPECT_FALSE(this->HasSnapshot(kSnapshotS));
}

TYPED_TEST_P(StorageDriverContractTest, SnapshotOutlivesItsVolumeAndItsVolumeGrowing) {
  this->MakeVolume(kVolumeA, 1);
  ASSERT_TRUE(Succeeded(this->driver().CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS))));
  ASSERT_TRUE(Succeeded(this->driver().ExtendVolume(kVolumeA, 2, "op-extend", 0)));
  EXPECT_TRUE(Succeeded(this->driver().CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS))))
      << "a repeated request finds the snapshot it made";
  ASSERT_TRUE(Succeeded(this->driver().DeleteVolume(kVolumeA, "op-delete", 0)));
  EXPECT_TRUE(this->HasSnapshot(kSnapshotS));
  ASSERT_TRUE(
      Succeeded(this->driver().CreateVolume(CloneSpec(kVolumeB, 1, kFromSnapshot, kSnapshotS))))
      << "the snapshot keeps the volume's size when it was taken";
  EXPECT_EQ(this->SizeGib(kVolumeB), 1);
}

TYPED_TEST_P(StorageDriverContractTest, ExtendGrowsRepeatsAndRefusesShrinks) {
  this->MakeVolume(kVolumeA, 1);
  ASSERT_TRUE(Succeeded(this->driver().ExtendVolume(kVolumeA, 3, "op-extend", 0)));
  EXPECT_EQ(this->SizeGib(kVolumeA), 3);
  EXPECT_TRUE(Succeeded(this->driver().ExtendVolume(kVolumeA, 3, "op-extend", 0)))
      << "already that size";
  EXPECT_EQ(this->SizeGib(kVolumeA), 3);

  EXPECT_TRUE(FailsWith(this->driver().ExtendVolume(kVolumeA, 2, "op-shrink", 0),
                        ErrorCode::kInvalidArgument));
  EXPECT_TRUE(FailsWith(this->driver().ExtendVolume(kVolumeA, 0, "op-zero", 0),
                        ErrorCode::kInvalidArgument));
  EXPECT_EQ(this->SizeGib(kVolumeA), 3);

  EXPECT_TRUE(
      FailsWith(this->driver().ExtendVolume(kVolumeB, 2, "op-missing", 0), ErrorCode::kNotFound));
  EXPECT_EQ(this->SizeGib(kVolumeB), std::nullopt) << "extend never creates";
}

TYPED_TEST_P(StorageDriverContractTest, NewOperationsRejectInvalidIds) {
  this->MakeVolume(kVolumeA, 1);
  const ports::Connector connector{"host-1", "iqn.test"};
  const std::vector<std::string> bad_ids = {"", "../etc", "abc/def", "zz", std::string(129, 'a')};
  for (const std::string& id : bad_ids) {
    const ErrorCode invalid = ErrorCode::kInvalidArgument;
    EXPECT_TRUE(FailsWith(this->driver().ExtendVolume(id, 2, "op", 0), invalid)) << id;
    EXPECT_TRUE(FailsWith(this->driver().CreateSnapshot(SnapshotOf(kVolumeA, id)), invalid)) << id;
    EXPECT_TRUE(FailsWith(this->driver().CreateSnapshot(SnapshotOf(id, kSnapshotS)), invalid))
        << id;
    EXPECT_TRUE(FailsWith(this->driver().DeleteSnapshot(id, "op", 0), invalid)) << id;
    EXPECT_TRUE(
        FailsWith(this->driver().CreateVolume(CloneSpec(kVolumeB, 1, kFromVolume, id)), invalid))
        << id;
    EXPECT_TRUE(
        FailsWith(this->driver().CreateVolume(CloneSpec(kVolumeB, 1, kFromSnapshot, id)), invalid))
        << id;
    EXPECT_TRUE(FailsWith(this->driver().InitializeConnection(id, connector), invalid)) << id;
    EXPECT_TRUE(FailsWith(this->driver().TerminateConnection(id, connector), invalid)) << id;
    EXPECT_TRUE(FailsWith(this->driver().Fence(id, 1), invalid)) << id;
  }
  EXPECT_FALSE(this->HasSnapshot(kSnapshotS));
  EXPECT_EQ(this->SizeGib(kVolumeB), std::nullopt);
}

// Each operation that writes a resource checks that resource's fence: after Fence(id, 7), an
// operation carrying 5 fails with kFenced and changes nothing, and one carrying 7 goes through.
TYPED_TEST_P(StorageDriverContractTest, FencingCoversCloneExtendAndSnapshots) {
  this->MakeVolume(kVolumeA, 1);

  ASSERT_TRUE(Succeeded(this->driver().Fence(kVolumeB, 7)));
  ports::VolumeSpec clone = CloneSpec(kVolumeB, 1, kFromVolume, kVolumeA);
  clone.fencing_token = 5;
  EXPECT_TRUE(FailsWith(this->driver().CreateVolume(clone), ErrorCode::kFenced));
  EXPECT_EQ(this->SizeGib(kVolumeB), std::nullopt);
  clone.fencing_token = 7;
  EXPECT_TRUE(Succeeded(this->driver().CreateVolume(clone)));

  ASSERT_TRUE(Succeeded(this->driver().Fence(kVolumeA, 7)));
  EXPECT_TRUE(
      FailsWith(this->driver().ExtendVolume(kVolumeA, 2, "op-stale", 5), ErrorCode::kFenced));
  EXPECT_EQ(this->SizeGib(kVolumeA), 1);
  EXPECT_TRUE(Succeeded(this->driver().ExtendVolume(kVolumeA, 2, "op-extend", 7)));
  EXPECT_EQ(this->SizeGib(kVolumeA), 2);

  // The snapshot's own fence counts, not its volume's (which is at 7 now).
  ASSERT_TRUE(Succeeded(this->driver().Fence(kSnapshotS, 9)));
  EXPECT_TRUE(FailsWith(this->driver().CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS, "op", 8)),
                        ErrorCode::kFenced));
  EXPECT_FALSE(this->HasSnapshot(kSnapshotS));
  EXPECT_TRUE(Succeeded(this->driver().CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS, "op", 9))));
  EXPECT_TRUE(this->HasSnapshot(kSnapshotS));

  ASSERT_TRUE(Succeeded(this->driver().Fence(kSnapshotS, 11)));
  EXPECT_TRUE(
      FailsWith(this->driver().DeleteSnapshot(kSnapshotS, "op-stale", 10), ErrorCode::kFenced));
  EXPECT_TRUE(this->HasSnapshot(kSnapshotS)) << "a refused delete changes nothing";
  EXPECT_TRUE(Succeeded(this->driver().DeleteSnapshot(kSnapshotS, "op-delete", 11)));
  EXPECT_FALSE(this->HasSnapshot(kSnapshotS));
  // The fence outlives the snapshot: a stale create cannot bring it back.
  EXPECT_TRUE(FailsWith(this->driver().CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS, "op", 10)),
                        ErrorCode::kFenced));
  EXPECT_FALSE(this->HasSnapshot(kSnapshotS));
}

TYPED_TEST_P(StorageDriverContractTest, ConnectionsNeedTheVolumeAndAreIdempotent) {
  const ports::Connector connector{"host-1", "iqn.test"};
  EXPECT_TRUE(
      FailsWith(this->driver().InitializeConnection(kVolumeA, connector), ErrorCode::kNotFound));
  EXPECT_TRUE(Succeeded(this->driver().TerminateConnection(kVolumeA, connector)))
      << "no connection to end is success";

  this->MakeVolume(kVolumeA, 1);
  auto first = this->driver().InitializeConnection(kVolumeA, connector);
  ASSERT_TRUE(Succeeded(first));
  EXPECT_FALSE(first->driver_volume_type.empty());
  EXPECT_FALSE(first->data.empty());
  auto second = this->driver().InitializeConnection(kVolumeA, connector);
  ASSERT_TRUE(Succeeded(second));
  EXPECT_EQ(second->driver_volume_type, first->driver_volume_type);
  EXPECT_EQ(second->data, first->data);
  EXPECT_TRUE(Succeeded(this->driver().TerminateConnection(kVolumeA, connector)));
  EXPECT_TRUE(Succeeded(this->driver().TerminateConnection(kVolumeA, connector)));
  EXPECT_EQ(this->SizeGib(kVolumeA), 1);
}

REGISTER_TYPED_TEST_SUITE_P(StorageDriverContractTest,
                            FenceRefusesOlderTokensAndOutlivesTheVolume,
                            CreateThenDelete,
                            CreateIsIdempotent,
                            DeleteIsIdempotent,
                            CreateWithAnotherSizeIsInvalidAndChangesNothing,
                            InvalidIdsAreRejected,
                            NonPositiveSizesAreRejected,
                            StatsNameTheBackendAndStayConsistent,
                            ThreadsMayWorkOnDifferentVolumes,
                            CloneFromVolumeIsGrownToItsSizeAndIdempotent,
                            CloneFromSnapshotIsGrownToItsSizeAndIdempotent,
                            CloneSmallerThanItsSourceIsInvalidAndCreatesNothing,
                            CloneOfAMissingSourceIsNotFoundAndCreatesNothing,
                            SnapshotCreateAndDeleteAreIdempotent,
                            SnapshotOfAMissingVolumeIsNotFound,
                            SnapshotOutlivesItsVolumeAndItsVolumeGrowing,
                            ExtendGrowsRepeatsAndRefusesShrinks,
                            NewOperationsRejectInvalidIds,
                            FencingCoversCloneExtendAndSnapshots,
                            ConnectionsNeedTheVolumeAndAreIdempotent);

using Factories = ::testing::Types<MemoryFactory, FileFactory>;

class FactoryNames {
 public:
  template <class T>
  static std::string GetName(int /*index*/) {
    return std::is_same_v<T, MemoryFactory> ? "Memory" : "File";
  }
};

INSTANTIATE_TYPED_TEST_SUITE_P(All, StorageDriverContractTest, Factories, FactoryNames);

// ---- File-only. ----

class FileStorageDriverTest : public ::testing::Test {
 protected:
  std::unique_ptr<FileStorageDriver> Make(milliseconds delay = milliseconds(0)) {
    FileStorageDriver::Options options;
    options.volume_dir = volume_dir();
    options.journal_path = journal_path();
    options.delay = delay;
    auto driver = FileStorageDriver::Create(options);
    EXPECT_TRUE(driver.has_value()) << driver.error().ToString();
    return driver ? std::move(*driver) : nullptr;
  }

  std::string volume_dir() const { return temp_dir_.path() + "/volumes"; }

  std::string journal_path() const { return temp_dir_.path() + "/journal.jsonl"; }

  std::vector<nlohmann::json> ReadJournal() const {
    std::vector<nlohmann::json> entries;
    std::ifstream journal(journal_path());
    std::string line;
    while (std::getline(journal, line)) {
      entries.push_back(nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false));
    }
    return entries;
  }

  // Names of the regular files in the volume directory (images and temp files), sorted.
  std::vector<std::string> RegularFileNames() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(volume_dir())) {
      if (entry.is_regular_file()) {
        names.push_back(entry.path().filename().string());
      }
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  static bool WriteAt(const std::string& path, std::int64_t offset, const std::string& bytes) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      return false;
    }
    const ssize_t written = ::pwrite(fd, bytes.data(), bytes.size(), offset);
    const bool synced = ::fsync(fd) == 0;
    ::close(fd);
    return written == static_cast<ssize_t>(bytes.size()) && synced;
  }

  // `length` bytes at `offset`, or "<unreadable>" (shorter than any expected content).
  static std::string ReadAt(const std::string& path, std::int64_t offset, std::size_t length) {
    std::string bytes(length, '\0');
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return "<unreadable>";
    }
    const ssize_t got = ::pread(fd, bytes.data(), length, offset);
    ::close(fd);
    return got == static_cast<ssize_t>(length) ? bytes : "<unreadable>";
  }

  static std::int64_t AllocatedBytes(const std::string& path) {
    struct stat info {};

    if (::stat(path.c_str(), &info) != 0) {
      return -1;
    }
    return static_cast<std::int64_t>(info.st_blocks) * 512;
  }

  static std::int64_t SizeBytes(const std::string& path) {
    struct stat info {};

    if (::stat(path.c_str(), &info) != 0) {
      return -1;
    }
    return static_cast<std::int64_t>(info.st_size);
  }

 private:
  TempDir temp_dir_;
};

TEST_F(FileStorageDriverTest, VolumeIsASparseFileOfTheRequestedSize) {
  auto driver = Make();
  ASSERT_NE(driver, nullptr);
  ASSERT_TRUE(driver->CreateVolume(Spec(kVolumeA, 1)).has_value());

  struct stat info {};

  ASSERT_EQ(::stat((volume_dir() + "/volume-" + kVolumeA + ".img").c_str(), &info), 0);
  EXPECT_TRUE(S_ISREG(info.st_mode));
  EXPECT_EQ(info.st_size, kGib);
  EXPECT_LT(static_cast<std::int64_t>(info.st_blocks) * 512, std::int64_t{1} << 20)
      << "the image should be sparse";
}

TEST_F(FileStorageDriverTest, CreateLeavesNoTempFiles) {
  auto driver = Make();
  ASSERT_NE(driver, nullptr);
  ASSERT_TRUE(driver->CreateVolume(Spec(kVolumeA, 1)).has_value());
  ASSERT_FALSE(driver->CreateVolume(Spec(kVolumeA, 3)).has_value());
  // A create refused by a fence discards the temp file it had written.
  ASSERT_TRUE(driver->Fence(kVolumeB, 9).has_value());
  ports::VolumeSpec stale = Spec(kVolumeB, 1, "op-stale");
  stale.fencing_token = 8;
  ASSERT_FALSE(driver->CreateVolume(stale).has_value());
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(volume_dir())) {
    if (entry.is_regular_file()) {
      names.push_back(entry.path().filename().string());
    }
  }
  EXPECT_EQ(names, std::vector<std::string>{std::string("volume-") + kVolumeA + ".img"});
}

TEST_F(FileStorageDriverTest, DeleteRemovesTempFilesOfACrashedCreate) {
  auto driver = Make();
  ASSERT_NE(driver, nullptr);
  const std::string stale = volume_dir() + "/.volume-" + kVolumeA + ".img.tmp.Ab12Cd";
  const std::string other = volume_dir() + "/.volume-" + kVolumeB + ".img.tmp.Ab12Cd";
  std::ofstream(stale).put('x');
  std::ofstream(other).put('x');
  ASSERT_TRUE(driver->DeleteVolume(kVolumeA, "op-2", 0).has_value());
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_TRUE(std::filesystem::exists(other)) << "another volume's file was removed";
}

TEST_F(FileStorageDriverTest, JournalHasOneLinePerCompletedOperation) {
  auto driver = Make();
  ASSERT_NE(driver, nullptr);
  ASSERT_TRUE(driver->CreateVolume(Spec(kVolumeA, 1, "op-create")).has_value());
  // Failed operations complete nothing and write nothing.
  ASSERT_FALSE(driver->CreateVolume(Spec(kVolumeA, 2, "op-conflict")).has_value());
  ASSERT_FALSE(driver->CreateVolume(Spec("../x", 1, "op-bad")).has_value());
  ASSERT_TRUE(driver->DeleteVolume(kVolumeA, "op-delete", 0).has_value());
  ASSERT_TRUE(driver->DeleteVolume(kVolumeA, "op-delete", 0).has_value());

  const std::vector<nlohmann::json> entries = ReadJournal();
  ASSERT_EQ(entries.size(), 3u);
  const auto pid = static_cast<std::int64_t>(::getpid());
  const nlohmann::json expected[] = {
      {{"op", "create_volume"},
       {"volume_id", kVolumeA},
       {"operation_id", "op-create"},
       {"pid", pid},
       {"changed", true}},
      {{"op", "delete_volume"},
       {"volume_id", kVolumeA},
       {"operation_id", "op-delete"},
       {"pid", pid},
       {"changed", true}},
      {{"op", "delete_volume"},
       {"volume_id", kVolumeA},
       {"operation_id", "op-delete"},
       {"pid", pid},
       {"changed", false}},
  };
  for (std::size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(entries[i], expected[i]) << "line " << i + 1 << ": " << entries[i].dump();
  }
}

TEST_F(FileStorageDriverTest, IdempotentCreateIsJournaledAsUnchanged) {
  auto driver = Make();
  ASSERT_NE(driver, nullptr);
  ASSERT_TRUE(driver->CreateVolume(Spec(kVolumeA, 1, "op-1")).has_value());
  ASSERT_TRUE(driver->CreateVolume(Spec(kVolumeA, 1, "op-1")).has_value());
  const std::vector<nlohmann::json> entries = ReadJournal();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].value("changed", false), true);
  EXPECT_EQ(entries[1].value("changed", true), false);
}

// Offsets that hit the first block, a block inside the first GiB, the second GiB and the last
// bytes of a 2 GiB volume: a copy that skipped a data extent, or stopped at 1 GiB, shows.
constexpr std::int64_t kPatternOffsets[] = {0, 409'600 + 123, kGib + 12'345, 2 * kGib - 16};

std::string Pattern(std::string_view tag, std::size_t index) {
  return std::string(tag) + "-" + std::to_string(index) + "-0123456";  // 16 bytes for both tags.
}

TEST_F(FileStorageDriverTest, ClonesAndSnapshotsHoldTheSourceBytesAsTheyWere) {
  auto driver = Make();
  ASSERT_NE(driver, nullptr);
  ASSERT_TRUE(Succeeded(driver->CreateVolume(Spec(kVolumeA, 2))));
  const std::string volume = driver->VolumePath(kVolumeA);
  for (std::size_t i = 0; i < std::size(kPatternOffsets); ++i) {
    ASSERT_TRUE(WriteAt(volume, kPatternOffsets[i], Pattern("before", i)));
  }
  ASSERT_TRUE(Succeeded(driver->CreateVolume(CloneSpec(kVolumeB, 2, kFromVolume, kVolumeA))));
  ASSERT_TRUE(Succeeded(driver->CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS))));
  // Written after the snapshot: the snapshot and the clone must not see it.
  for (std::size_t i = 0; i < std::size(kPatternOffsets); ++i) {
    ASSERT_TRUE(WriteAt(volume, kPatternOffsets[i], Pattern("after-", i)));
  }
  ASSERT_TRUE(Succeeded(driver->CreateVolume(CloneSpec(kVolumeC, 3, kFromSnapshot, kSnapshotS))));

  const std::string clone = driver->VolumePath(kVolumeB);
  const std::string snapshot = driver->SnapshotPath(kSnapshotS);
  const std::string from_snapshot = driver->VolumePath(kVolumeC);
  EXPECT_EQ(SizeBytes(clone), 2 * kGib);
  EXPECT_EQ(SizeBytes(snapshot), 2 * kGib);
  EXPECT_EQ(SizeBytes(from_snapshot), 3 * kGib);
  for (std::size_t i = 0; i < std::size(kPatternOffsets); ++i) {
    const std::string before = Pattern("before", i);
    const std::int64_t offset = kPatternOffsets[i];
    EXPECT_EQ(ReadAt(volume, offset, before.size()), Pattern("after-", i)) << offset;
    EXPECT_EQ(ReadAt(clone, offset, before.size()), before) << offset;
    EXPECT_EQ(ReadAt(snapshot, offset, before.size()), before) << offset;
    EXPECT_EQ(ReadAt(from_snapshot, offset, before.size()), before) << offset;
  }
  // Holes copy as holes and the grown part reads as zeros.
  const std::string zeros(64, '\0');
  EXPECT_EQ(ReadAt(clone, kGib / 2, zeros.size()), zeros);
  EXPECT_EQ(ReadAt(from_snapshot, kGib / 2, zeros.size()), zeros);
  EXPECT_EQ(ReadAt(from_snapshot, 2 * kGib + 4096, zeros.size()), zeros);
  EXPECT_EQ(ReadAt(from_snapshot, 3 * kGib - 64, zeros.size()), zeros);
}

TEST_F(FileStorageDriverTest, CopiesOfAMostlyEmptyVolumeStaySparse) {
  auto driver = Make();
  ASSERT_NE(driver, nullptr);
  ASSERT_TRUE(Succeeded(driver->CreateVolume(Spec(kVolumeA, 2))));
  for (std::size_t i = 0; i < std::size(kPatternOffsets); ++i) {
    ASSERT_TRUE(WriteAt(driver->VolumePath(kVolumeA), kPatternOffsets[i], Pattern("data", i)));
  }
  ASSERT_TRUE(Succeeded(driver->CreateVolume(CloneSpec(kVolumeB, 2, kFromVolume, kVolumeA))));
  ASSERT_TRUE(Succeeded(driver->CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS))));
  ASSERT_TRUE(Succeeded(driver->CreateVolume(CloneSpec(kVolumeC, 4, kFromSnapshot, kSnapshotS))));
  // Four written blocks: a few file-system blocks each at most, never the 2 GiB of the size.
  constexpr std::int64_t kSparseLimit = std::int64_t{1} << 20;
  EXPECT_LT(AllocatedBytes(driver->VolumePath(kVolumeB)), kSparseLimit);
  EXPECT_LT(AllocatedBytes(driver->SnapshotPath(kSnapshotS)), kSparseLimit);
  EXPECT_LT(AllocatedBytes(driver->VolumePath(kVolumeC)), kSparseLimit);
  EXPECT_GT(AllocatedBytes(driver->VolumePath(kVolumeB)), 0) << "the data was copied";
}

TEST_F(FileStorageDriverTest, ExtendKeepsTheDataAndAddsZeros) {
  auto driver = Make();
  ASSERT_NE(driver, nullptr);
  ASSERT_TRUE(Succeeded(driver->CreateVolume(Spec(kVolumeA, 1))));
  const std::string volume = driver->VolumePath(kVolumeA);
  const std::string head = Pattern("head", 0);
  const std::string tail = Pattern("tail", 1);
  ASSERT_TRUE(WriteAt(volume, 0, head));
  ASSERT_TRUE(WriteAt(volume, kGib - static_cast<std::int64_t>(tail.size()), tail));
  ASSERT_TRUE(Succeeded(driver->ExtendVolume(kVolumeA, 2, "op-extend", 0)));
  EXPECT_EQ(SizeBytes(volume), 2 * kGib);
  EXPECT_EQ(ReadAt(volume, 0, head.size()), head);
  EXPECT_EQ(ReadAt(volume, kGib - static_cast<std::int64_t>(tail.size()), tail.size()), tail);
  const std::string zeros(64, '\0');
  EXPECT_EQ(ReadAt(volume, kGib, zeros.size()), zeros);
  EXPECT_EQ(ReadAt(volume, 2 * kGib - 64, zeros.size()), zeros);
  EXPECT_LT(AllocatedBytes(volume), std::int64_t{1} << 20) << "the new space is a hole";
}

TEST_F(FileStorageDriverTest, JournalHasLinesForCloneSnapshotAndExtend) {
  auto driver = Make();
  ASSERT_NE(driver, nullptr);
  ASSERT_TRUE(Succeeded(driver->CreateVolume(Spec(kVolumeA, 1, "op-a"))));
  ASSERT_TRUE(
      Succeeded(driver->CreateVolume(CloneSpec(kVolumeB, 1, kFromVolume, kVolumeA, "op-b"))));
  ASSERT_TRUE(Succeeded(driver->CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS, "op-s"))));
  ASSERT_TRUE(Succeeded(driver->CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS, "op-s"))));
  ASSERT_TRUE(
      Succeeded(driver->CreateVolume(CloneSpec(kVolumeC, 2, kFromSnapshot, kSnapshotS, "op-c"))));
  ASSERT_TRUE(Succeeded(driver->ExtendVolume(kVolumeA, 2, "op-e", 0)));
  ASSERT_TRUE(Succeeded(driver->ExtendVolume(kVolumeA, 2, "op-e", 0)));
  // Failed operations complete nothing and write nothing.
  ASSERT_FALSE(driver->ExtendVolume(kVolumeA, 1, "op-shrink", 0).has_value());
  ASSERT_FALSE(
      driver->CreateSnapshot(SnapshotOf(kVolumeB + std::string("0"), kSnapshotT)).has_value());
  ASSERT_TRUE(Succeeded(driver->DeleteSnapshot(kSnapshotS, "op-d", 0)));
  ASSERT_TRUE(Succeeded(driver->DeleteSnapshot(kSnapshotS, "op-d", 0)));

  const auto pid = static_cast<std::int64_t>(::getpid());
  auto line = [pid](nlohmann::json fields, std::string_view operation_id, bool changed) {
    fields["operation_id"] = operation_id;
    fields["pid"] = pid;
    fields["changed"] = changed;
    return fields;
  };
  const std::vector<nlohmann::json> expected = {
      line({{"op", "create_volume"}, {"volume_id", kVolumeA}}, "op-a", true),
      line({{"op", "create_volume"},
            {"volume_id", kVolumeB},
            {"source_kind", "volume"},
            {"source_id", kVolumeA}},
           "op-b",
           true),
      line({{"op", "create_snapshot"}, {"snapshot_id", kSnapshotS}, {"volume_id", kVolumeA}},
           "op-s",
           true),
      line({{"op", "create_snapshot"}, {"snapshot_id", kSnapshotS}, {"volume_id", kVolumeA}},
           "op-s",
           false),
      line({{"op", "create_volume"},
            {"volume_id", kVolumeC},
            {"source_kind", "snapshot"},
            {"source_id", kSnapshotS}},
           "op-c",
           true),
      line({{"op", "extend_volume"}, {"volume_id", kVolumeA}, {"size_gib", 2}}, "op-e", true),
      line({{"op", "extend_volume"}, {"volume_id", kVolumeA}, {"size_gib", 2}}, "op-e", false),
      line({{"op", "delete_snapshot"}, {"snapshot_id", kSnapshotS}}, "op-d", true),
      line({{"op", "delete_snapshot"}, {"snapshot_id", kSnapshotS}}, "op-d", false),
  };
  const std::vector<nlohmann::json> entries = ReadJournal();
  ASSERT_EQ(entries.size(), expected.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(entries[i], expected[i]) << "line " << i + 1 << ": " << entries[i].dump();
  }
}

TEST_F(FileStorageDriverTest, ClonesAndSnapshotsLeaveNoTempFiles) {
  auto driver = Make();
  ASSERT_NE(driver, nullptr);
  ASSERT_TRUE(Succeeded(driver->CreateVolume(Spec(kVolumeA, 1))));
  ASSERT_TRUE(WriteAt(driver->VolumePath(kVolumeA), 0, Pattern("data", 0)));
  ASSERT_TRUE(Succeeded(driver->CreateVolume(CloneSpec(kVolumeB, 1, kFromVolume, kVolumeA))));
  ASSERT_TRUE(Succeeded(driver->CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS))));
  // Refused by a fence after the copy was written: the copy is discarded.
  ASSERT_TRUE(Succeeded(driver->Fence(kVolumeC, 9)));
  ports::VolumeSpec stale = CloneSpec(kVolumeC, 1, kFromSnapshot, kSnapshotS);
  stale.fencing_token = 8;
  ASSERT_TRUE(FailsWith(driver->CreateVolume(stale), ErrorCode::kFenced));
  ASSERT_TRUE(Succeeded(driver->Fence(kSnapshotT, 9)));
  ASSERT_TRUE(FailsWith(driver->CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotT, "op", 8)),
                        ErrorCode::kFenced));
  // Refused before copying.
  ASSERT_TRUE(FailsWith(driver->CreateVolume(CloneSpec(kVolumeC, 1, kFromVolume, kVolumeC)),
                        ErrorCode::kNotFound));
  std::vector<std::string> expected = {std::string("snapshot-") + kSnapshotS + ".img",
                                       std::string("volume-") + kVolumeA + ".img",
                                       std::string("volume-") + kVolumeB + ".img"};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(RegularFileNames(), expected);
}

TEST_F(FileStorageDriverTest, DeleteSnapshotRemovesTempFilesOfACrashedCreate) {
  auto driver = Make();
  ASSERT_NE(driver, nullptr);
  const std::string stale = volume_dir() + "/.snapshot-" + kSnapshotS + ".img.tmp.Ab12Cd";
  const std::string other = volume_dir() + "/.snapshot-" + kSnapshotT + ".img.tmp.Ab12Cd";
  std::ofstream(stale).put('x');
  std::ofstream(other).put('x');
  ASSERT_TRUE(Succeeded(driver->DeleteSnapshot(kSnapshotS, "op-2", 0)));
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_TRUE(std::filesystem::exists(other)) << "another snapshot's file was removed";
}

TEST_F(FileStorageDriverTest, ConnectionIsTheLocalImage) {
  auto driver = Make();
  ASSERT_NE(driver, nullptr);
  ASSERT_TRUE(Succeeded(driver->CreateVolume(Spec(kVolumeA, 1))));
  auto info = driver->InitializeConnection(kVolumeA, ports::Connector{"host-1", ""});
  ASSERT_TRUE(Succeeded(info));
  EXPECT_EQ(info->driver_volume_type, "local");
  EXPECT_EQ(info->data,
            (std::map<std::string, std::string>{{"device_path", driver->VolumePath(kVolumeA)}}));
}

TEST_F(FileStorageDriverTest, ConnectionCallsAreJournaledAsUnchanged) {
  auto driver = Make();
  ASSERT_NE(driver, nullptr);
  ASSERT_TRUE(Succeeded(driver->CreateVolume(Spec(kVolumeA, 1, "op-create"))));
  const ports::Connector connector{"host-1", "iqn.2004-10.org.example:host-1"};
  ASSERT_TRUE(Succeeded(driver->InitializeConnection(kVolumeA, connector)));
  // A failed call writes nothing.
  ASSERT_TRUE(FailsWith(driver->InitializeConnection(kVolumeB, connector), ErrorCode::kNotFound));
  ASSERT_TRUE(Succeeded(driver->TerminateConnection(kVolumeA, connector)));

  const std::vector<nlohmann::json> entries = ReadJournal();
  ASSERT_EQ(entries.size(), 3u);
  const auto pid = static_cast<std::int64_t>(::getpid());
  // A local file is never exported: neither call changes anything on the back-end.
  auto line = [pid](std::string_view op) {
    return nlohmann::json{{"op", op},
                          {"volume_id", kVolumeA},
                          {"host", "host-1"},
                          {"operation_id", ""},
                          {"pid", pid},
                          {"changed", false}};
  };
  EXPECT_EQ(entries[1], line("initialize_connection"));
  EXPECT_EQ(entries[2], line("terminate_connection"));
}

TEST_F(FileStorageDriverTest, DelayIsHonoured) {
  const milliseconds delay(120);
  auto driver = Make(delay);
  ASSERT_NE(driver, nullptr);
  Clock::time_point start = Clock::now();
  ASSERT_TRUE(driver->CreateVolume(Spec(kVolumeA, 1)).has_value());
  EXPECT_GE(Clock::now() - start, delay);
  start = Clock::now();
  ASSERT_TRUE(driver->ExtendVolume(kVolumeA, 2, "op-3", 0).has_value());
  EXPECT_GE(Clock::now() - start, delay);
  start = Clock::now();
  ASSERT_TRUE(driver->CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS)).has_value());
  EXPECT_GE(Clock::now() - start, delay);
  start = Clock::now();
  ASSERT_TRUE(driver->DeleteSnapshot(kSnapshotS, "op-4", 0).has_value());
  EXPECT_GE(Clock::now() - start, delay);
  start = Clock::now();
  ASSERT_TRUE(driver->DeleteVolume(kVolumeA, "op-2", 0).has_value());
  EXPECT_GE(Clock::now() - start, delay);
}

TEST_F(FileStorageDriverTest, StatsComeFromTheVolumeFileSystem) {
  auto driver = Make();
  ASSERT_NE(driver, nullptr);
  auto stats = driver->GetStats();
  ASSERT_TRUE(stats.has_value()) << stats.error().ToString();
  EXPECT_EQ(stats->backend_name, "file");
  const std::filesystem::space_info space = std::filesystem::space(volume_dir());
  EXPECT_EQ(stats->total_capacity_gib, static_cast<std::int64_t>(space.capacity >> 30));
}

TEST(FileStorageDriverCreateTest, EmptyVolumeDirIsInvalid) {
  auto driver = FileStorageDriver::Create(FileStorageDriver::Options{});
  ASSERT_FALSE(driver.has_value());
  EXPECT_EQ(driver.error().code, ErrorCode::kInvalidArgument);
}

// ---- Memory-only: the fake's test hooks. ----

TEST(MemoryStorageDriverTest, FailNextFailsOneCallBeforeApplying) {
  MemoryStorageDriver driver;
  driver.FailNext(ErrorCode::kDriverFailed, "backend down");
  auto failed = driver.CreateVolume(Spec(kVolumeA, 1, "op-1"));
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().code, ErrorCode::kDriverFailed);
  EXPECT_EQ(failed.error().message, "backend down");
  EXPECT_FALSE(driver.HasVolume(kVolumeA));

  EXPECT_TRUE(driver.CreateVolume(Spec(kVolumeA, 1, "op-1")).has_value());
  EXPECT_TRUE(driver.HasVolume(kVolumeA));
  EXPECT_EQ(driver.CallCountForOperation("op-1"), 2);
  EXPECT_EQ(driver.CallCount("create_volume"), 2);
  EXPECT_EQ(driver.CallCount("delete_volume"), 0);
  const std::vector<MemoryStorageDriver::Call> calls = driver.Calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_FALSE(calls[0].succeeded);
  EXPECT_TRUE(calls[1].succeeded);
}

TEST(MemoryStorageDriverTest, FailNextAfterApplyingDoesTheWorkButReportsFailure) {
  MemoryStorageDriver driver;
  ASSERT_TRUE(driver.CreateVolume(Spec(kVolumeA, 1)).has_value());
  driver.FailNext(
      ErrorCode::kOutcomeUnknown, "reply lost", MemoryStorageDriver::FailurePoint::kAfterApplying);
  auto failed = driver.DeleteVolume(kVolumeA, "op-2", 0);
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().code, ErrorCode::kOutcomeUnknown);
  EXPECT_FALSE(driver.HasVolume(kVolumeA));
  EXPECT_TRUE(driver.DeleteVolume(kVolumeA, "op-2", 0).has_value());
}

TEST(MemoryStorageDriverTest, StatsSubtractVolumeSizes) {
  MemoryStorageDriver driver("fake", 100);
  ASSERT_TRUE(driver.CreateVolume(Spec(kVolumeA, 30)).has_value());
  ASSERT_TRUE(driver.CreateVolume(Spec(kVolumeB, 20)).has_value());
  auto stats = driver.GetStats();
  ASSERT_TRUE(stats.has_value());
  EXPECT_EQ(stats->backend_name, "fake");
  EXPECT_EQ(stats->total_capacity_gib, 100);
  EXPECT_EQ(stats->free_capacity_gib, 50);
  EXPECT_EQ(driver.VolumeCount(), 2u);
}

TEST(MemoryStorageDriverTest, HookSeesEveryValidCall) {
  MemoryStorageDriver driver;
  std::vector<std::string> seen;
  driver.OnCall([&](const MemoryStorageDriver::Call& call) {
    seen.push_back(call.op + ":" + call.operation_id);
  });
  ASSERT_TRUE(driver.CreateVolume(Spec(kVolumeA, 1, "op-1")).has_value());
  ASSERT_FALSE(driver.CreateVolume(Spec("bad/id", 1, "op-bad")).has_value());
  ASSERT_TRUE(driver.DeleteVolume(kVolumeA, "op-2", 0).has_value());
  EXPECT_EQ(seen, (std::vector<std::string>{"create_volume:op-1", "delete_volume:op-2"}));
}

TEST(MemoryStorageDriverTest, FailNextAppliesToEveryDataOperationButNotToConnections) {
  MemoryStorageDriver driver;
  ASSERT_TRUE(Succeeded(driver.CreateVolume(Spec(kVolumeA, 1))));
  ASSERT_TRUE(Succeeded(driver.CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS))));
  const ports::Connector connector{"host-1", ""};
  const std::vector<std::pair<std::string, std::function<Result<void>()>>> operations = {
      {"clone",
       [&] {
         return driver.CreateVolume(CloneSpec(kVolumeB, 1, kFromVolume, kVolumeA));
       }},
      {"extend",
       [&] {
         return driver.ExtendVolume(kVolumeA, 2, "op", 0);
       }},
      {"create_snapshot",
       [&] {
         return driver.CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotT));
       }},
      {"delete_snapshot",
       [&] {
         return driver.DeleteSnapshot(kSnapshotS, "op", 0);
       }},
      {"delete_volume",
       [&] {
         return driver.DeleteVolume(kVolumeA, "op", 0);
       }},
  };
  for (const auto& [name, operation] : operations) {
    driver.FailNext(ErrorCode::kDriverFailed, "backend down");
    EXPECT_TRUE(Succeeded(driver.InitializeConnection(kVolumeA, connector))) << name;
    EXPECT_TRUE(Succeeded(driver.TerminateConnection(kVolumeA, connector))) << name;
    EXPECT_TRUE(FailsWith(operation(), ErrorCode::kDriverFailed)) << name;
  }
  // Nothing was applied.
  EXPECT_FALSE(driver.HasVolume(kVolumeB));
  EXPECT_EQ(driver.VolumeSizeGib(kVolumeA), 1);
  EXPECT_TRUE(driver.HasSnapshot(kSnapshotS));
  EXPECT_FALSE(driver.HasSnapshot(kSnapshotT));

  driver.FailNext(
      ErrorCode::kOutcomeUnknown, "reply lost", MemoryStorageDriver::FailurePoint::kAfterApplying);
  EXPECT_TRUE(FailsWith(driver.CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotT)),
                        ErrorCode::kOutcomeUnknown));
  EXPECT_TRUE(driver.HasSnapshot(kSnapshotT)) << "applied, then reported as failed";
}

TEST(MemoryStorageDriverTest, CallsRecordEveryOperationAndHooksSeeOnlyDataOperations) {
  MemoryStorageDriver driver;
  std::vector<std::string> seen;
  driver.OnCall([&](const MemoryStorageDriver::Call& call) {
    seen.push_back(call.op + ":" + call.operation_id);
  });
  const ports::Connector connector{"host-1", ""};
  ASSERT_TRUE(Succeeded(driver.CreateVolume(Spec(kVolumeA, 1, "op-a"))));
  ASSERT_TRUE(
      Succeeded(driver.CreateVolume(CloneSpec(kVolumeB, 2, kFromVolume, kVolumeA, "op-b"))));
  ASSERT_TRUE(Succeeded(driver.ExtendVolume(kVolumeA, 3, "op-e", 0)));
  ASSERT_TRUE(Succeeded(driver.CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS, "op-s"))));
  ASSERT_TRUE(Succeeded(driver.InitializeConnection(kVolumeA, connector)));
  ASSERT_TRUE(FailsWith(driver.InitializeConnection(kVolumeC, connector), ErrorCode::kNotFound));
  ASSERT_TRUE(Succeeded(driver.TerminateConnection(kVolumeA, connector)));
  ASSERT_TRUE(Succeeded(driver.DeleteSnapshot(kSnapshotS, "op-d", 0)));
  EXPECT_EQ(seen,
            (std::vector<std::string>{"create_volume:op-a",
                                      "create_volume:op-b",
                                      "extend_volume:op-e",
                                      "create_snapshot:op-s",
                                      "delete_snapshot:op-d"}));

  const std::vector<MemoryStorageDriver::Call> calls = driver.Calls();
  ASSERT_EQ(calls.size(), 8u);
  EXPECT_EQ(calls[1].source.kind, kFromVolume);
  EXPECT_EQ(calls[1].source.id, kVolumeA);
  EXPECT_EQ(calls[1].size_gib, 2);
  EXPECT_EQ(calls[2].size_gib, 3);
  EXPECT_EQ(calls[3].snapshot_id, kSnapshotS);
  EXPECT_EQ(calls[3].volume_id, kVolumeA);
  EXPECT_EQ(calls[4].op, "initialize_connection");
  EXPECT_TRUE(calls[4].succeeded);
  EXPECT_FALSE(calls[5].succeeded);
  EXPECT_EQ(calls[6].op, "terminate_connection");
  EXPECT_EQ(calls[7].snapshot_id, kSnapshotS);
  EXPECT_EQ(driver.CallCount("initialize_connection"), 2);
  EXPECT_EQ(driver.CallCount("create_volume"), 2);
}

TEST(MemoryStorageDriverTest, ConnectionInfoNamesTheVolume) {
  MemoryStorageDriver driver;
  ASSERT_TRUE(Succeeded(driver.CreateVolume(Spec(kVolumeA, 1))));
  auto info = driver.InitializeConnection(kVolumeA, ports::Connector{"host-1", ""});
  ASSERT_TRUE(Succeeded(info));
  EXPECT_EQ(info->driver_volume_type, "memory");
  EXPECT_EQ(info->data, (std::map<std::string, std::string>{{"volume_id", kVolumeA}}));
}

TEST(MemoryStorageDriverTest, StatsSubtractSnapshotsToo) {
  MemoryStorageDriver driver("fake", 100);
  ASSERT_TRUE(Succeeded(driver.CreateVolume(Spec(kVolumeA, 30))));
  ASSERT_TRUE(Succeeded(driver.CreateSnapshot(SnapshotOf(kVolumeA, kSnapshotS))));
  auto stats = driver.GetStats();
  ASSERT_TRUE(Succeeded(stats));
  EXPECT_EQ(stats->free_capacity_gib, 40);
}

}  // namespace
}  // namespace clinker::adapters
