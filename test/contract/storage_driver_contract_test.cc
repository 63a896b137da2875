// Goal: prove that every StorageDriver adapter meets the contract in ports/storage_driver.h
// (idempotent create and delete, size conflicts, id validation), so that service tests against
// the in-memory fake say something about the file driver used in production runs.
//
// Method: one typed suite (TYPED_TEST_SUITE_P) instantiated for MemoryStorageDriver and
// FileStorageDriver; each factory also says how to observe a volume (the fake's map, or stat()
// on the image file). File-only tests then check what only the file driver promises: sparse
// images, no temp files left behind, one journal line per completed operation, and the injected
// delay (lower bound only, so the test cannot flake on a slow machine).
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

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

using clinker::test_support::TempDir;

ports::VolumeSpec Spec(std::string id, std::int64_t size_gib, std::string operation_id = "op-1") {
  return ports::VolumeSpec{std::move(id), size_gib, std::move(operation_id)};
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
  for (int i = 0; i < kThreads; ++i) {
    ids.push_back("00000000-0000-4000-8000-00000000000" + std::to_string(i));
  }
  std::vector<std::thread> threads;
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

REGISTER_TYPED_TEST_SUITE_P(StorageDriverContractTest,
                            FenceRefusesOlderTokensAndOutlivesTheVolume,
                            CreateThenDelete,
                            CreateIsIdempotent,
                            DeleteIsIdempotent,
                            CreateWithAnotherSizeIsInvalidAndChangesNothing,
                            InvalidIdsAreRejected,
                            NonPositiveSizesAreRejected,
                            StatsNameTheBackendAndStayConsistent,
                            ThreadsMayWorkOnDifferentVolumes);

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

TEST_F(FileStorageDriverTest, DelayIsHonoured) {
  const milliseconds delay(120);
  auto driver = Make(delay);
  ASSERT_NE(driver, nullptr);
  Clock::time_point start = Clock::now();
  ASSERT_TRUE(driver->CreateVolume(Spec(kVolumeA, 1)).has_value());
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

}  // namespace
}  // namespace clinker::adapters
