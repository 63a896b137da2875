// Goal: check the Authenticator's cache and service-token rules: a validated token is asked about
// once and then answered from the cache until min(expires_at, cached_at + max_positive_ttl); an
// expired token is refused without asking; the cache is a bounded LRU; refused tokens are
// remembered for negative_ttl only; kUnavailable and kInternal are never remembered; a service
// token must be valid and carry a service role; concurrent misses for one token ask once; and
// eight threads hammering it get consistent answers.
//
// Method: a fake TokenValidator with a fixed answer per token (unknown tokens are refused) that
// counts calls and can hold callers at a gate, and a FakeClock, so every expiry is exact. The
// concurrency tests use real threads with bounded loops; waits for a thread to reach a point poll
// a counter with a bound and never assert on elapsed time.
#include "clinker/services/authenticator.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "support/fake_clock.h"

namespace clinker::services {
namespace {

using std::chrono::hours;
using std::chrono::seconds;
using test_support::FakeClock;

class FakeTokenValidator final : public ports::TokenValidator {
 public:
  void Set(const std::string& token, Result<ports::TokenInfo> outcome) {
    std::lock_guard<std::mutex> guard(mutex_);
    outcomes_.insert_or_assign(token, std::move(outcome));
  }

  // While closed, Validate waits (at most 10 s) until Open.
  void Close() {
    std::lock_guard<std::mutex> guard(mutex_);
    open_ = false;
  }

  void Open() {
    std::lock_guard<std::mutex> guard(mutex_);
    open_ = true;
    opened_.notify_all();
  }

  Result<ports::TokenInfo> Validate(std::string_view token) override {
    std::unique_lock<std::mutex> guard(mutex_);
    ++calls_[std::string(token)];
    ++total_calls_;
    opened_.wait_for(guard, seconds(10), [&] { return open_; });
    auto it = outcomes_.find(std::string(token));
    if (it == outcomes_.end()) {
      return MakeError(ErrorCode::kUnauthenticated, "the token is unknown, expired or revoked");
    }
    return it->second;
  }

  int Calls(const std::string& token) const {
    std::lock_guard<std::mutex> guard(mutex_);
    auto it = calls_.find(token);
    return it == calls_.end() ? 0 : it->second;
  }

  int TotalCalls() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return total_calls_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable opened_;
  bool open_ = true;
  std::map<std::string, Result<ports::TokenInfo>> outcomes_;
  std::map<std::string, int> calls_;
  int total_calls_ = 0;
};

class AuthenticatorTest : public ::testing::Test {
 protected:
  ports::TokenInfo Info(const std::string& user,
                        std::chrono::seconds lifetime,
                        std::vector<std::string> roles = {"member"}) {
    ports::TokenInfo info;
    info.user_id = user + "-id";
    info.user_name = user;
    info.project_id = "f7ac731cc11f40efbc03a9f9e1d1d21f";
    info.roles = std::move(roles);
    info.issued_at = clock_.WallNow();
    info.expires_at = clock_.WallNow() + lifetime;
    return info;
  }

  // Polls `done` up to about 10 s; returns whether it came true.
  template <class Done>
  static bool WaitFor(Done done) {
    for (int i = 0; i < 10000 && !done(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return done();
  }

  FakeClock clock_;
  FakeTokenValidator validator_;
};

TEST_F(AuthenticatorTest, RepeatedTokenIsValidatedOnce) {
  validator_.Set("alice", Info("alice", hours(1)));
  Authenticator authenticator(validator_, clock_);
  for (int i = 0; i < 100; ++i) {
    auto result = authenticator.Authenticate("alice", "");
    ASSERT_TRUE(result.has_value()) << result.error().ToString();
    EXPECT_EQ(result->user.user_id, "alice-id");
    EXPECT_FALSE(result->is_service_request);
    EXPECT_FALSE(result->service.has_value());
  }
  EXPECT_EQ(validator_.Calls("alice"), 1);
  const AuthenticatorStats stats = authenticator.Stats();
  EXPECT_EQ(stats.validations, 1U);
  EXPECT_EQ(stats.cache_hits, 99U);
  EXPECT_EQ(stats.entries, 1U);
}

TEST_F(AuthenticatorTest, ExpiredTokenIsRefusedWithoutAsking) {
  validator_.Set("alice", Info("alice", seconds(60)));
  Authenticator authenticator(validator_, clock_);
  ASSERT_TRUE(authenticator.Authenticate("alice", "").has_value());
  clock_.Advance(seconds(59));
  ASSERT_TRUE(authenticator.Authenticate("alice", "").has_value());
  clock_.Advance(seconds(1));  // now == expires_at: expired.
  for (int i = 0; i < 3; ++i) {
    auto result = authenticator.Authenticate("alice", "");
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code, ErrorCode::kUnauthenticated);
  }
  EXPECT_EQ(validator_.Calls("alice"), 1);
  // Even past the cache cap the expired entry answers: an expired token never becomes valid.
  clock_.Advance(hours(1));
  EXPECT_FALSE(authenticator.Authenticate("alice", "").has_value());
  EXPECT_EQ(validator_.Calls("alice"), 1);
}

TEST_F(AuthenticatorTest, TokenThatLooksExpiredOnArrivalIsRefusedAndRemembered) {
  // The local clock is ahead of Keystone's: Keystone vouches for a token already past expires_at.
  ports::TokenInfo info = Info("alice", hours(1));
  info.expires_at = clock_.WallNow() - seconds(1);
  validator_.Set("alice", info);
  Authenticator authenticator(validator_, clock_);
  for (int i = 0; i < 3; ++i) {
    auto result = authenticator.Authenticate("alice", "");
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code, ErrorCode::kUnauthenticated);
  }
  EXPECT_EQ(validator_.Calls("alice"), 1);
}

TEST_F(AuthenticatorTest, CacheCapBoundsHowLateARevocationIsNoticed) {
  validator_.Set("alice", Info("alice", hours(2)));
  AuthenticatorOptions options;
  options.max_positive_ttl = seconds(300);
  Authenticator authenticator(validator_, clock_, options);
  ASSERT_TRUE(authenticator.Authenticate("alice", "").has_value());
  validator_.Set(
      "alice", MakeError(ErrorCode::kUnauthenticated, "the token is unknown, expired or revoked"));
  clock_.Advance(seconds(299));
  EXPECT_TRUE(authenticator.Authenticate("alice", "").has_value());  // Still trusted.
  EXPECT_EQ(validator_.Calls("alice"), 1);
  clock_.Advance(seconds(1));
  auto result = authenticator.Authenticate("alice", "");
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(validator_.Calls("alice"), 2);
}

TEST_F(AuthenticatorTest, CacheCapRevalidatesAGoodToken) {
  validator_.Set("alice", Info("alice", hours(2)));
  AuthenticatorOptions options;
  options.max_positive_ttl = seconds(300);
  Authenticator authenticator(validator_, clock_, options);
  for (int round = 1; round <= 3; ++round) {
    ASSERT_TRUE(authenticator.Authenticate("alice", "").has_value());
    ASSERT_TRUE(authenticator.Authenticate("alice", "").has_value());
    EXPECT_EQ(validator_.Calls("alice"), round);
    clock_.Advance(seconds(300));
  }
}

TEST_F(AuthenticatorTest, CacheIsABoundedLru) {
  for (const char* user : {"a", "b", "c", "d"}) {
    validator_.Set(user, Info(user, hours(1)));
  }
  AuthenticatorOptions options;
  options.max_entries = 3;
  Authenticator authenticator(validator_, clock_, options);
  for (const char* user : {"a", "b", "c"}) {
    ASSERT_TRUE(authenticator.Authenticate(user, "").has_value());
  }
  ASSERT_TRUE(authenticator.Authenticate("a", "").has_value());  // "b" is now the oldest.
  ASSERT_TRUE(authenticator.Authenticate("d", "").has_value());  // Evicts "b".
  EXPECT_EQ(authenticator.Stats().entries, 3U);
  for (const char* user : {"a", "c", "d"}) {
    ASSERT_TRUE(authenticator.Authenticate(user, "").has_value());
    EXPECT_EQ(validator_.Calls(user), 1) << user;
  }
  ASSERT_TRUE(authenticator.Authenticate("b", "").has_value());
  EXPECT_EQ(validator_.Calls("b"), 2);
  EXPECT_EQ(authenticator.Stats().entries, 3U);
}

TEST_F(AuthenticatorTest, ZeroEntriesDisablesTheCache) {
  validator_.Set("alice", Info("alice", hours(1)));
  AuthenticatorOptions options;
  options.max_entries = 0;
  Authenticator authenticator(validator_, clock_, options);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(authenticator.Authenticate("alice", "").has_value());
  }
  EXPECT_EQ(validator_.Calls("alice"), 3);
  EXPECT_EQ(authenticator.Stats().entries, 0U);
}

TEST_F(AuthenticatorTest, RefusedTokenIsRememberedForNegativeTtl) {
  AuthenticatorOptions options;
  options.negative_ttl = seconds(10);
  Authenticator authenticator(validator_, clock_, options);
  for (int i = 0; i < 50; ++i) {
    auto result = authenticator.Authenticate("forged", "");
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code, ErrorCode::kUnauthenticated);
  }
  EXPECT_EQ(validator_.Calls("forged"), 1);
  clock_.Advance(seconds(9));
  EXPECT_FALSE(authenticator.Authenticate("forged", "").has_value());
  EXPECT_EQ(validator_.Calls("forged"), 1);
  clock_.Advance(seconds(1));
  EXPECT_FALSE(authenticator.Authenticate("forged", "").has_value());
  EXPECT_EQ(validator_.Calls("forged"), 2);
  // A token Keystone starts to accept (e.g. just issued, and replicated late) is accepted once the
  // negative entry has run out.
  validator_.Set("forged", Info("late", hours(1)));
  clock_.Advance(seconds(10));
  EXPECT_TRUE(authenticator.Authenticate("forged", "").has_value());
  EXPECT_EQ(validator_.Calls("forged"), 3);
}

TEST_F(AuthenticatorTest, UnavailableAndInternalAreNeverCached) {
  Authenticator authenticator(validator_, clock_);
  validator_.Set("alice",
                 MakeError(ErrorCode::kUnavailable, "Keystone at 127.0.0.1:5000 is unreachable"));
  for (int i = 0; i < 3; ++i) {
    auto result = authenticator.Authenticate("alice", "");
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code, ErrorCode::kUnavailable);
    EXPECT_NE(result.error().message.find("127.0.0.1:5000"), std::string::npos);
  }
  EXPECT_EQ(validator_.Calls("alice"), 3);
  validator_.Set("alice", MakeError(ErrorCode::kInternal, "Keystone's token reply is not JSON"));
  auto internal = authenticator.Authenticate("alice", "");
  ASSERT_FALSE(internal.has_value());
  EXPECT_EQ(internal.error().code, ErrorCode::kInternal);
  validator_.Set("alice", Info("alice", hours(1)));
  EXPECT_TRUE(authenticator.Authenticate("alice", "").has_value());
  EXPECT_EQ(validator_.Calls("alice"), 5);
  EXPECT_EQ(authenticator.Stats().entries, 1U);
}

TEST_F(AuthenticatorTest, MissingOrMalformedTokenIsRefusedWithoutAsking) {
  Authenticator authenticator(validator_, clock_);
  validator_.Set("alice", Info("alice", hours(1)));
  for (const std::string& token :
       {std::string(), std::string("two words"), std::string(ports::kMaxTokenLength + 1, 'x')}) {
    auto result = authenticator.Authenticate(token, "");
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code, ErrorCode::kUnauthenticated);
  }
  auto bad_service = authenticator.Authenticate("alice", "tab\tbed");
  ASSERT_FALSE(bad_service.has_value());
  EXPECT_EQ(bad_service.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(validator_.TotalCalls(), 1);  // Only "alice".
  EXPECT_EQ(authenticator.Stats().entries, 1U);
}

TEST_F(AuthenticatorTest, ServiceTokenWithServiceRoleMakesAServiceRequest) {
  validator_.Set("alice", Info("alice", hours(1)));
  validator_.Set("nova", Info("nova", hours(1), {"Service", "admin"}));  // Case-insensitive.
  Authenticator authenticator(validator_, clock_);
  for (int i = 0; i < 3; ++i) {
    auto result = authenticator.Authenticate("alice", "nova");
    ASSERT_TRUE(result.has_value()) << result.error().ToString();
    EXPECT_EQ(result->user.user_id, "alice-id");
    ASSERT_TRUE(result->service.has_value());
    EXPECT_EQ(result->service->user_id, "nova-id");
    EXPECT_TRUE(result->is_service_request);
  }
  EXPECT_EQ(validator_.Calls("alice"), 1);
  EXPECT_EQ(validator_.Calls("nova"), 1);  // Cached like a user token.
}

TEST_F(AuthenticatorTest, InvalidServiceTokenIsUnauthenticatedEvenWithAGoodUserToken) {
  validator_.Set("alice", Info("alice", hours(1)));
  Authenticator authenticator(validator_, clock_);
  auto result = authenticator.Authenticate("alice", "forged-service-token");
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(result.error().message.rfind("X-Service-Token", 0), 0U) << result.error().message;
  // Remembered like any refused token.
  EXPECT_FALSE(authenticator.Authenticate("alice", "forged-service-token").has_value());
  EXPECT_EQ(validator_.Calls("forged-service-token"), 1);
}

TEST_F(AuthenticatorTest, ServiceTokenWithoutServiceRole) {
  validator_.Set("alice", Info("alice", hours(1)));
  validator_.Set("bob", Info("bob", hours(1), {"member"}));
  {
    Authenticator required(validator_, clock_);
    auto result = required.Authenticate("alice", "bob");
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code, ErrorCode::kUnauthenticated);
    EXPECT_NE(result.error().message.find("service"), std::string::npos);
  }
  {
    AuthenticatorOptions options;
    options.service_token_roles_required = false;
    Authenticator lenient(validator_, clock_, options);
    auto result = lenient.Authenticate("alice", "bob");
    ASSERT_TRUE(result.has_value()) << result.error().ToString();
    EXPECT_FALSE(result->is_service_request);
  }
  {
    AuthenticatorOptions options;
    options.service_token_roles = {"compute-service", "member"};
    Authenticator custom(validator_, clock_, options);
    auto result = custom.Authenticate("alice", "bob");
    ASSERT_TRUE(result.has_value()) << result.error().ToString();
    EXPECT_TRUE(result->is_service_request);
  }
}

TEST_F(AuthenticatorTest, UnavailableServiceTokenValidationIsUnavailable) {
  validator_.Set("alice", Info("alice", hours(1)));
  validator_.Set("nova", MakeError(ErrorCode::kUnavailable, "Keystone at k:5000 is unreachable"));
  Authenticator authenticator(validator_, clock_);
  auto result = authenticator.Authenticate("alice", "nova");
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::kUnavailable);
}

TEST_F(AuthenticatorTest, ExpiredServiceTokenIsRefused) {
  validator_.Set("alice", Info("alice", hours(1)));
  validator_.Set("nova", Info("nova", seconds(30), {"service"}));
  Authenticator authenticator(validator_, clock_);
  ASSERT_TRUE(authenticator.Authenticate("alice", "nova").has_value());
  clock_.Advance(seconds(30));
  auto result = authenticator.Authenticate("alice", "nova");
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(validator_.Calls("nova"), 1);
}

TEST_F(AuthenticatorTest, ConcurrentMissesForOneTokenAskOnce) {
  validator_.Set("alice", Info("alice", hours(1)));
  Authenticator authenticator(validator_, clock_);
  validator_.Close();
  std::atomic<int> successes{0};
  auto call = [&] {
    if (authenticator.Authenticate("alice", "").has_value()) {
      ++successes;
    }
  };
  std::thread first(call);
  ASSERT_TRUE(WaitFor([&] { return validator_.TotalCalls() == 1; }));
  std::thread second(call);
  const bool coalesced = WaitFor([&] { return authenticator.Stats().coalesced == 1; });
  validator_.Open();
  first.join();
  second.join();
  EXPECT_TRUE(coalesced);
  EXPECT_EQ(successes.load(), 2);
  EXPECT_EQ(validator_.Calls("alice"), 1);
  EXPECT_EQ(authenticator.Stats().validations, 1U);
}

TEST_F(AuthenticatorTest, EightThreadsGetConsistentAnswers) {
  constexpr int kGood = 10;
  constexpr int kBad = 5;
  std::vector<std::string> tokens;
  for (int i = 0; i < kGood; ++i) {
    tokens.push_back("good-" + std::to_string(i));
    validator_.Set(tokens.back(), Info(tokens.back(), hours(1)));
  }
  for (int i = 0; i < kBad; ++i) {
    tokens.push_back("bad-" + std::to_string(i));
  }
  validator_.Set("svc", Info("svc", hours(1), {"service"}));
  Authenticator authenticator(validator_, clock_);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        const std::string& token = tokens[static_cast<std::size_t>(i * 7 + t) % tokens.size()];
        const bool good = token.starts_with("good-");
        auto result = authenticator.Authenticate(token, i % 3 == 0 ? "svc" : "");
        const bool right =
            good ? result.has_value() && result->user.user_name == token &&
                       result->is_service_request == (i % 3 == 0)
                 : !result.has_value() && result.error().code == ErrorCode::kUnauthenticated;
        if (!right) {
          ++wrong;
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(wrong.load(), 0);
  // No time passed and the cache holds everything: each token was asked about exactly once.
  EXPECT_EQ(validator_.TotalCalls(), kGood + kBad + 1);
  EXPECT_EQ(authenticator.Stats().validations, static_cast<std::uint64_t>(kGood + kBad + 1));
}

TEST_F(AuthenticatorTest, EightThreadsWithEvictionAndTimePassing) {
  constexpr int kTokens = 12;
  std::vector<std::string> tokens;
  for (int i = 0; i < kTokens; ++i) {
    tokens.push_back("t-" + std::to_string(i));
    if (i % 4 != 0) {
      validator_.Set(tokens.back(), Info(tokens.back(), hours(10)));
    }
  }
  AuthenticatorOptions options;
  options.max_entries = 5;
  options.negative_ttl = seconds(2);
  options.max_positive_ttl = seconds(5);
  Authenticator authenticator(validator_, clock_, options);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int t = 0; t < 7; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 400; ++i) {
        const std::size_t index = static_cast<std::size_t>(i * 5 + t) % tokens.size();
        auto result = authenticator.Authenticate(tokens[index], "");
        if (result.has_value() != (index % 4 != 0)) {
          ++wrong;
        }
      }
    });
  }
  threads.emplace_back([&] {  // The eighth thread moves time: entries run out while in use.
    for (int i = 0; i < 200; ++i) {
      clock_.Advance(seconds(1));
      std::this_thread::yield();
    }
  });
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_LE(authenticator.Stats().entries, 5U);
  EXPECT_EQ(authenticator.Stats().validations, static_cast<std::uint64_t>(validator_.TotalCalls()));
}

}  // namespace
}  // namespace clinker::services
