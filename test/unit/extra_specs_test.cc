// domain/extra_specs: Cinder's CapabilitiesFilter and extra_specs_ops, as a table.
#include "clinker/domain/extra_specs.h"

#include <gtest/gtest.h>

namespace clinker::domain {
namespace {

struct Case {
  std::string capability;
  std::string requirement;
  bool matches;
};

TEST(ExtraSpecsTest, EachOperatorMatchesAsCinders) {
  const Case cases[] = {
      {"file", "file", true},
      {"file", "File", false},
      {"True", "<is> True", true},
      {"True", "<is> true", true},
      {"False", "<is> True", false},
      {"True", "<is> False", false},
      {"bogus", "<is> True", false},
      {"Clinker file", "<in> file", true},
      {"Clinker", "<in> file", false},
      {"a b c", "<all-in> a c", true},
      {"a b", "<all-in> a c", false},
      {"iSCSI", "<or> FC <or> iSCSI", true},
      {"NFS", "<or> FC <or> iSCSI", false},
      {"100", "= 50", true},
      {"10", "= 50", false},
      {"50", "== 50", true},
      {"50", "!= 50", false},
      {"60", ">= 50", true},
      {"40", "<= 50", true},
      {"60", "<= 50", false},
      {"abc", "= 5", false},  // Not a number: no match.
      {"abc", "s== abc", true},
      {"abc", "s!= abc", false},
      {"b", "s> a", true},
      {"a", "s< b", true},
      {"b", "s>= b", true},
      {"a", "s<= b", true},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(RequirementMatches(c.capability, c.requirement), c.matches)
        << "'" << c.capability << "' against '" << c.requirement << "'";
  }
}

TEST(ExtraSpecsTest, OnlyUnscopedAndCapabilitiesKeysCount) {
  const Capabilities capabilities = {{"vendor_name", "Clinker"}, {"storage_protocol", "file"}};
  EXPECT_TRUE(ExtraSpecsMatch({}, capabilities));
  EXPECT_TRUE(ExtraSpecsMatch(
      {{"vendor_name", "Clinker"}, {"capabilities:storage_protocol", "file"}}, capabilities));
  // Other scopes are for the driver or the API.
  EXPECT_TRUE(
      ExtraSpecsMatch({{"RESKEY:availability_zones", "az9"}, {"volume:x", "y"}}, capabilities));
  std::string why;
  EXPECT_FALSE(ExtraSpecsMatch({{"vendor_name", "Acme"}}, capabilities, &why));
  EXPECT_EQ(why, "capability vendor_name is 'Clinker', the volume type asks 'Acme'");
  EXPECT_FALSE(ExtraSpecsMatch({{"capabilities:replication", "<is> True"}}, capabilities, &why));
  EXPECT_EQ(why, "capability replication is not reported, the volume type asks '<is> True'");
}

}  // namespace
}  // namespace clinker::domain
