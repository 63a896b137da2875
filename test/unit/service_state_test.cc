// Goal: check the liveness rules of domain/service_state.h against Cinder's: a service is up iff
// its last heartbeat is no older than service_down_time (boundary included, future included,
// none = down); a cluster is up iff any member is up, with its host counts and latest heartbeat;
// the down time is raised to 2.5 report intervals when it is not longer than one.
//
// Method: pure functions on fixed time points; each boundary is tested on both sides.
#include "clinker/domain/service_state.h"

#include <vector>

#include <gtest/gtest.h>

namespace clinker::domain {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr WallTimePoint kNow{seconds(1767225600)};

TEST(ServiceStateTest, ServiceIsUpWithinTheDownTimeBoundaryIncluded) {
  EXPECT_TRUE(IsServiceUp(kNow, kNow, seconds(60)));
  EXPECT_TRUE(IsServiceUp(kNow - seconds(60), kNow, seconds(60)));
  EXPECT_FALSE(IsServiceUp(kNow - seconds(60) - milliseconds(1), kNow, seconds(60)));
  EXPECT_FALSE(IsServiceUp(kNow - seconds(3600), kNow, seconds(60)));
}

TEST(ServiceStateTest, FutureHeartbeatIsUpAndNoHeartbeatIsDown) {
  EXPECT_TRUE(IsServiceUp(kNow + seconds(30), kNow, seconds(60)));
  EXPECT_FALSE(IsServiceUp(std::nullopt, kNow, seconds(60)));
}

TEST(ServiceStateTest, HeartbeatMillisRoundTrip) {
  WallTimePoint time = kNow + milliseconds(1234);
  EXPECT_EQ(ToHeartbeatMillis(time), 1767225601234);
  EXPECT_EQ(FromHeartbeatMillis(ToHeartbeatMillis(time)), time);
}

TEST(ServiceStateTest, ClusterIsUpIfAnyMemberIsUp) {
  std::vector<std::optional<WallTimePoint>> members = {
      kNow - seconds(120), std::nullopt, kNow - seconds(5)};
  ClusterLiveness liveness = SummarizeCluster(members, kNow, seconds(60));
  EXPECT_TRUE(liveness.is_up);
  EXPECT_EQ(liveness.num_hosts, 3);
  EXPECT_EQ(liveness.num_down_hosts, 2);
  ASSERT_TRUE(liveness.last_heartbeat.has_value());
  EXPECT_EQ(*liveness.last_heartbeat, kNow - seconds(5));
}

TEST(ServiceStateTest, ClusterWithAllMembersDownOrNoneIsDown) {
  std::vector<std::optional<WallTimePoint>> down = {kNow - seconds(61), kNow - seconds(300)};
  ClusterLiveness liveness = SummarizeCluster(down, kNow, seconds(60));
  EXPECT_FALSE(liveness.is_up);
  EXPECT_EQ(liveness.num_hosts, 2);
  EXPECT_EQ(liveness.num_down_hosts, 2);
  EXPECT_EQ(liveness.last_heartbeat, kNow - seconds(61));

  ClusterLiveness empty = SummarizeCluster({}, kNow, seconds(60));
  EXPECT_FALSE(empty.is_up);
  EXPECT_EQ(empty.num_hosts, 0);
  EXPECT_EQ(empty.num_down_hosts, 0);
  EXPECT_FALSE(empty.last_heartbeat.has_value());
}

TEST(ServiceStateTest, DownTimeNotLongerThanReportIntervalBecomesTwoAndAHalfIntervals) {
  EXPECT_EQ(EffectiveServiceDownTime(seconds(60), seconds(10)), seconds(60));
  EXPECT_EQ(EffectiveServiceDownTime(seconds(10), seconds(10)), milliseconds(25000));
  EXPECT_EQ(EffectiveServiceDownTime(seconds(5), seconds(10)), milliseconds(25000));
}

}  // namespace
}  // namespace clinker::domain
