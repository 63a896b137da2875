// NewUuid: canonical version-4 form, unique across threads, and its random bits unbiased (the
// kernel's CSPRNG behind it; a constant or a counter in any bit fails here).
#include "clinker/core/uuid.h"

#include <array>
#include <cctype>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "clinker/core/hex.h"

namespace clinker {
namespace {

TEST(NewUuidTest, IsCanonicalLowerCaseVersion4) {
  for (int i = 0; i < 1000; ++i) {
    const std::string id = NewUuid();
    ASSERT_TRUE(IsUuid(id)) << id;
    EXPECT_EQ(id, [&] {
      std::string lower = id;
      for (char& c : lower) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      return lower;
    }());
    EXPECT_EQ(id[14], '4') << id;                                          // Version 4.
    EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos) << id;  // RFC 4122 variant.
  }
}

TEST(NewUuidTest, ThreadsNeverRepeatAnId) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;  // Several refills of each thread's buffer.
  std::mutex mutex;
  std::set<std::string> seen;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      std::vector<std::string> mine;
      mine.reserve(kPerThread);
      for (int i = 0; i < kPerThread; ++i) {
        mine.push_back(NewUuid());
      }
      std::lock_guard<std::mutex> lock(mutex);
      seen.insert(mine.begin(), mine.end());
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kThreads * kPerThread));
}

TEST(NewUuidTest, EveryRandomBitIsSetAboutHalfTheTime) {
  // 20,000 ids: a fair bit is set 10,000 +- 71 (one standard deviation) times; the bounds below
  // are 14 deviations out, so a fair source fails with no practical chance and a stuck or
  // strongly biased bit always does.
  constexpr int kIds = 20000;
  std::array<int, 128> set_count{};
  for (int i = 0; i < kIds; ++i) {
    const std::string id = NewUuid();
    int bit = 0;
    for (char c : id) {
      if (c == '-') {
        continue;
      }
      const int value = HexDigitValue(c);
      for (int b = 3; b >= 0; --b, ++bit) {
        set_count[bit] += (value >> b) & 1;
      }
    }
  }
  for (int bit = 0; bit < 128; ++bit) {
    const bool fixed = (bit >= 48 && bit < 52) || bit == 64 || bit == 65;  // Version, variant.
    if (fixed) {
      continue;
    }
    EXPECT_GT(set_count[bit], 9000) << "bit " << bit;
    EXPECT_LT(set_count[bit], 11000) << "bit " << bit;
  }
}

}  // namespace
}  // namespace clinker
