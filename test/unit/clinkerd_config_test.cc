// clinkerd's configuration of its volume back-ends: the short form (one back-end from [volume]
// and [service]) and [[backends]] (several, as Cinder's enabled_backends), read and validated as
// the daemon does (ReadConfigText, then ValidateConfig).
#include <string>

#include <gtest/gtest.h>

#include "clinkerd/config.h"

namespace clinkerd {
namespace {

// The config of `text` after reading and validation, or the first error's message.
struct Loaded {
  Config config;
  std::string error;
};

Loaded Load(const std::string& text) {
  Loaded loaded;
  loaded.config.host = "node1";
  loaded.config.state_dir = "/srv/clinker";
  if (auto read = ReadConfigText(text, "clinker.toml", &loaded.config); !read) {
    loaded.error = read.error().message;
    return loaded;
  }
  if (auto valid = ValidateConfig(&loaded.config); !valid) {
    loaded.error = valid.error().message;
  }
  return loaded;
}

TEST(ClinkerdConfigTest, ShortFormIsOneBackendNamedAfterItsDriver) {
  Loaded loaded = Load("");
  ASSERT_EQ(loaded.error, "");
  ASSERT_EQ(loaded.config.backends.size(), 1u);
  const BackendConfig& backend = loaded.config.backends[0];
  EXPECT_EQ(backend.name, "file");
  EXPECT_EQ(backend.volume_backend_name, "file");
  EXPECT_EQ(backend.driver, "file");
  EXPECT_EQ(backend.volume_dir, "/srv/clinker/volumes");
  EXPECT_EQ(backend.BackendAddress(), "node1@file");
  EXPECT_EQ(backend.workers, Config{}.workers);  // [volume] workers, by default.
  EXPECT_EQ(loaded.config.scheduler_backends, std::vector<std::string>{"node1@file"});
  EXPECT_TRUE(loaded.config.scheduler_clusters.empty());
}

TEST(ClinkerdConfigTest, ShortFormKeepsItsVolumeSettings) {
  Loaded loaded =
      Load("[service]\ncluster = \"c1\"\n[volume]\nvolume_dir = \"/data/vols\"\nworkers = 7\n");
  ASSERT_EQ(loaded.error, "");
  ASSERT_EQ(loaded.config.backends.size(), 1u);
  const BackendConfig& backend = loaded.config.backends[0];
  EXPECT_EQ(backend.volume_dir, "/data/vols");
  EXPECT_EQ(backend.workers, 7);
  EXPECT_EQ(backend.ClusterAddress(), "c1@file");
  EXPECT_EQ(loaded.config.scheduler_clusters, std::vector<std::string>{"c1@file"});
  EXPECT_TRUE(loaded.config.scheduler_backends.empty());
}

TEST(ClinkerdConfigTest, SeveralBackendsWithTheirDefaults) {
  Loaded loaded = Load(R"(
[volume]
workers = 3

[[backends]]
name = "fast"

[[backends]]
name = "slow"
volume_backend_name = "capacity"
volume_dir = "/big/disk"
host = "node2"
cluster = "tier2"
workers = 9
)");
  ASSERT_EQ(loaded.error, "");
  ASSERT_EQ(loaded.config.backends.size(), 2u);
  const BackendConfig& fast = loaded.config.backends[0];
  EXPECT_EQ(fast.name, "fast");
  EXPECT_EQ(fast.volume_backend_name, "fast");
  EXPECT_EQ(fast.driver, "file");
  EXPECT_EQ(fast.volume_dir, "/srv/clinker/volumes/fast");
  EXPECT_EQ(fast.PlacementAddress(), "node1@fast");
  EXPECT_EQ(fast.workers, 3);
  const BackendConfig& slow = loaded.config.backends[1];
  EXPECT_EQ(slow.volume_backend_name, "capacity");
  EXPECT_EQ(slow.volume_dir, "/big/disk");
  EXPECT_EQ(slow.BackendAddress(), "node2@slow");
  EXPECT_EQ(slow.PlacementAddress(), "tier2@slow");
  EXPECT_EQ(slow.workers, 9);
  // The scheduler places on every back-end of the process unless told otherwise.
  EXPECT_EQ(loaded.config.scheduler_backends, std::vector<std::string>{"node1@fast"});
  EXPECT_EQ(loaded.config.scheduler_clusters, std::vector<std::string>{"tier2@slow"});
}

TEST(ClinkerdConfigTest, ServiceClusterIsEveryBackendsDefault) {
  Loaded loaded =
      Load("[service]\ncluster = \"c\"\n[[backends]]\nname = \"a\"\n[[backends]]\nname = \"b\"\n");
  ASSERT_EQ(loaded.error, "");
  EXPECT_EQ(loaded.config.scheduler_clusters, (std::vector<std::string>{"c@a", "c@b"}));
}

TEST(ClinkerdConfigTest, ExplicitSchedulerBackendsWin) {
  Loaded loaded = Load(
      "[scheduler]\nbackends = [\"other@x\"]\n[[backends]]\nname = \"a\"\n[[backends]]\nname = "
      "\"b\"\n");
  ASSERT_EQ(loaded.error, "");
  EXPECT_EQ(loaded.config.scheduler_backends, std::vector<std::string>{"other@x"});
}

TEST(ClinkerdConfigTest, BadBackendsNameTheSetting) {
  struct Case {
    std::string text;
    std::string message;
  };

  const Case cases[] = {
      {"[[backends]]\nvolume_dir = \"/x\"\n", "[[backends]] #1 name is required"},
      {"[[backends]]\nname = \"a\"\nsize = 3\n", "unknown setting [[backends]] #1 size"},
      {"[[backends]]\nname = 3\n", "[[backends]] #1 name must be a string"},
      {"[[backends]]\nname = \"a\"\nworkers = \"2\"\n", "workers must be an integer"},
      {"backends = [\"a\"]\n", "[[backends]] must be one or more tables"},
      {"[[backends]]\nname = \"a@b\"\n", "'a@b' name"},
      {"[[backends]]\nname = \"a\"\n[[backends]]\nname = \"a\"\n", "two back-ends have this name"},
      {"[[backends]]\nname = \"a\"\ndriver = \"lvm\"\n", "unknown driver 'lvm'"},
      {"[[backends]]\nname = \"a\"\nworkers = 0\n", "[[backends]] #1 workers: 0 must be 1-256"},
      {"[[backends]]\nname = \"a\"\nhost = \"h@x\"\n", "'a' host"},
      {"[[backends]]\nname = \"a\"\nvolume_dir = \"/d\"\n[[backends]]\nname = \"b\"\n"
       "volume_dir = \"/d\"\n",
       "another back-end's directory"},
      {"[volume]\nvolume_dir = \"/d\"\n[[backends]]\nname = \"a\"\n",
       "[volume] volume_dir: not used with [[backends]]"},
      {"[volume]\nbackend = \"file\"\n[[backends]]\nname = \"a\"\n",
       "[volume] backend: not used with [[backends]]"},
      {"[volume]\nbackend = \"lvm\"\n", "unknown back-end 'lvm'"},
      {"[database]\nurl = \"postgresql://u@h/db\"\n[[backends]]\nname = \"a\"\n",
       "required for the volume role on PostgreSQL"},
  };
  for (const Case& c : cases) {
    Loaded loaded = Load(c.text);
    EXPECT_NE(loaded.error.find(c.message), std::string::npos)
        << "config:\n"
        << c.text << "error: " << loaded.error;
  }
}

TEST(ClinkerdConfigTest, PostgresAcceptsBackendsWithTheirOwnClusters) {
  Loaded loaded = Load(
      "[database]\nurl = \"postgresql://u@h/db\"\n[[backends]]\nname = \"a\"\ncluster = \"ca\"\n");
  ASSERT_EQ(loaded.error, "");
  EXPECT_EQ(loaded.config.scheduler_clusters, std::vector<std::string>{"ca@a"});
}

TEST(ClinkerdConfigTest, WeighersAreCindersNames) {
  EXPECT_EQ(Load("").config.scheduler_weighers, std::vector<std::string>{"CapacityWeigher"});
  Loaded loaded = Load("[scheduler]\ndefault_weighers = [\"VolumeNumberWeigher\"]\n");
  ASSERT_EQ(loaded.error, "");
  EXPECT_EQ(loaded.config.scheduler_weighers, std::vector<std::string>{"VolumeNumberWeigher"});
  EXPECT_NE(Load("[scheduler]\ndefault_weighers = [\"GoodnessWeigher\"]\n")
                .error.find("[scheduler] default_weighers"),
            std::string::npos);
  EXPECT_NE(Load("[scheduler]\ndefault_weighers = []\n").error.find("default_weighers"),
            std::string::npos);
}

TEST(ClinkerdConfigTest, SyntaxErrorNamesTheLine) {
  Loaded loaded = Load("[api]\nport = 1\n[[backends]\n");
  EXPECT_NE(loaded.error.find("clinker.toml"), std::string::npos) << loaded.error;
  EXPECT_NE(loaded.error.find("(line 3)"), std::string::npos) << loaded.error;
}

}  // namespace
}  // namespace clinkerd
