// Goal: pin down adapters/os/policy_file.h: a Cinder policy.yaml (and a policy.json) reads into
// name -> check string, and every kind of bad file is refused with an error that names the file
// and the problem instead of being half-read.
//
// Method: real files in a TempDir, read through ReadPolicyFile (the text variant only where the
// file system adds nothing). The overrides read are also fed to domain::Policy::Create, as the
// daemon does, to show a sample file takes effect end to end.
#include "clinker/adapters/os/policy_file.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "clinker/core/error.h"
#include "clinker/domain/policy.h"

#include "support/temp_dir.h"

namespace clinker::adapters {
namespace {

using ::testing::HasSubstr;

class PolicyFileTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }

  std::string Write(std::string_view name, std::string_view text) {
    std::string path = dir_.path() + "/" + std::string(name);
    std::ofstream out(path, std::ios::binary);
    out << text;
    EXPECT_TRUE(out.good());
    return path;
  }

  // The error message for a file that must be refused with kInvalidArgument.
  std::string Refused(std::string_view text) {
    const std::string path = Write("policy.yaml", text);
    Result<PolicyOverrides> read = ReadPolicyFile(path);
    EXPECT_FALSE(read.has_value()) << "accepted: " << text;
    if (read) {
      return "";
    }
    EXPECT_EQ(read.error().code, ErrorCode::kInvalidArgument);
    EXPECT_THAT(read.error().message, HasSubstr("policy file " + path + ": "));
    return read.error().message;
  }

  test_support::TempDir dir_{"clinker_policy_file"};
};

TEST_F(PolicyFileTest, ReadsCinderStyleYaml) {
  const std::string path =
      Write("policy.yaml",
            "# Cinder sample policy, trimmed.\n"
            "\n"
            "# Decides what is required for the 'is_admin:True' check.\n"
            "\"context_is_admin\": \"role:admin\"\n"
            "\"volume:create\": \"\"\n"
            "'volume:get': 'rule:xena_system_admin_or_project_reader'\n"
            "admin_api: role:cloud_admin or is_admin:True\n"
            "is_operator: >-\n"
            "  role:operator and\n"
            "  project_id:%(project_id)s\n"
            "#\"volume:delete\": \"rule:xena_system_admin_or_project_member\"\n");
  Result<PolicyOverrides> read = ReadPolicyFile(path);
  ASSERT_TRUE(read.has_value()) << read.error().message;
  const PolicyOverrides expected = {
      {"context_is_admin", "role:admin"},
      {"volume:create", ""},
      {"volume:get", "rule:xena_system_admin_or_project_reader"},
      {"admin_api", "role:cloud_admin or is_admin:True"},
      {"is_operator", "role:operator and project_id:%(project_id)s"},
  };
  EXPECT_EQ(*read, expected);
}

TEST_F(PolicyFileTest, ReadsJson) {
  const std::string path = Write("policy.json",
                                 "{\n"
                                 "    \"admin_api\": \"role:cloud_admin\",\n"
                                 "\t\"volume:create\": \"\",\n"
                                 "    \"volume:get\": \"rule:admin_api or (role:reader and "
                                 "project_id:%(project_id)s)\"\n"
                                 "}\n");
  Result<PolicyOverrides> read = ReadPolicyFile(path);
  ASSERT_TRUE(read.has_value()) << read.error().message;
  const PolicyOverrides expected = {
      {"admin_api", "role:cloud_admin"},
      {"volume:create", ""},
      {"volume:get", "rule:admin_api or (role:reader and project_id:%(project_id)s)"},
  };
  EXPECT_EQ(*read, expected);
}

TEST_F(PolicyFileTest, EmptyOrCommentOnlyFileHasNoOverrides) {
  for (const std::string_view text : {"", "\n\n", "# nothing overridden\n# at all\n", "{}"}) {
    SCOPED_TRACE(text);
    Result<PolicyOverrides> read = ReadPolicyFile(Write("policy.yaml", text));
    ASSERT_TRUE(read.has_value()) << read.error().message;
    EXPECT_TRUE(read->empty());
  }
}

TEST_F(PolicyFileTest, TaggedStringsAndQuotedLookalikesAreStrings) {
  Result<PolicyOverrides> read = ReadPolicyFile(Write("policy.yaml",
                                                      "a: !!str 1\n"
                                                      "b: \"true\"\n"
                                                      "c: '~'\n"
                                                      "d: role:admin\n"));
  ASSERT_TRUE(read.has_value()) << read.error().message;
  EXPECT_EQ(read->at("a"), "1");
  EXPECT_EQ(read->at("b"), "true");
  EXPECT_EQ(read->at("c"), "~");
}

TEST_F(PolicyFileTest, MissingFileIsNotFound) {
  const std::string path = dir_.path() + "/no-such-policy.yaml";
  Result<PolicyOverrides> read = ReadPolicyFile(path);
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(read.error().message, HasSubstr(path));
  EXPECT_THAT(read.error().message, HasSubstr("does not exist"));
}

TEST_F(PolicyFileTest, DirectoryIsRefused) {
  Result<PolicyOverrides> read = ReadPolicyFile(dir_.path());
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(read.error().message, HasSubstr("is a directory"));
}

TEST_F(PolicyFileTest, UnreadableFileIsRefused) {
  const std::string path = Write("locked.yaml", "a: b\n");
  std::filesystem::permissions(path, std::filesystem::perms::none);
  std::ifstream probe(path);
  if (probe.is_open()) {
    GTEST_SKIP() << "running with privileges that read any file";
  }
  Result<PolicyOverrides> read = ReadPolicyFile(path);
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(read.error().message, HasSubstr("cannot be read"));
  EXPECT_THAT(read.error().message, HasSubstr(path));
}

TEST_F(PolicyFileTest, OversizedFileIsRefused) {
  std::string text = "a: \"";
  text.append(kMaxPolicyFileBytes, 'x');
  text += "\"\n";
  EXPECT_THAT(Refused(text), HasSubstr("is larger than"));
}

TEST_F(PolicyFileTest, NotYamlIsRefusedWithItsPosition) {
  const std::string message = Refused("a: b\n{c: d\n");
  EXPECT_THAT(message, HasSubstr("is not valid YAML or JSON"));
  EXPECT_THAT(message, HasSubstr("line "));
  EXPECT_THAT(Refused("{\"a\": \"b\" \"c\": \"d\"}"), HasSubstr("is not valid YAML or JSON"));
  EXPECT_THAT(Refused("{\"a\": \"b\"}}"), HasSubstr("line 1, column 11"));
  EXPECT_THAT(Refused("a: b\n  c: d\n"), HasSubstr("line 2"));
}

TEST_F(PolicyFileTest, TopLevelMustBeAMapping) {
  EXPECT_THAT(Refused("- role:admin\n- role:member\n"),
              HasSubstr("is not a mapping of rule names to rules"));
  EXPECT_THAT(Refused("role:admin\n"), HasSubstr("is not a mapping of rule names to rules"));
  EXPECT_THAT(Refused("[\"a\", \"b\"]"), HasSubstr("is not a mapping of rule names to rules"));
}

TEST_F(PolicyFileTest, NonStringValuesAreRefusedNamingTheRule) {
  struct Case {
    std::string text;
    std::string what;
  };

  const Case cases[] = {
      {"a: b\nvolume:get:\n", "rule \"volume:get\" has no value (line 2)"},
      {"volume:get: ~\n", "rule \"volume:get\" has no value (line 1)"},
      {"volume:get: [[\"role:admin\"]]\n", "rule \"volume:get\" is a list (line 1)"},
      {"{\"volume:get\": [\"role:admin\"]}", "rule \"volume:get\" is a list"},
      {"volume:get:\n  role: admin\n", "rule \"volume:get\" is a mapping (line 1)"},
      {"volume:get: 1\n", "rule \"volume:get\" is an integer (line 1), not a string (quote it)"},
      {"volume:get: 0x1f\n", "is an integer"},
      {"volume:get: 1.5\n", "is a number"},
      {"volume:get: .inf\n", "is a number"},
      {"volume:get: true\n", "is a boolean"},
      {"volume:get: yes\n", "is a boolean"},
      {"volume:get: Off\n", "is a boolean"},
      {"{\"volume:get\": true}", "is a boolean"},
      {"volume:get: !!int 1\n", "is tagged tag:yaml.org,2002:int"},
      {"? [a]\n: b\n", "a rule name is not text"},
  };
  for (const Case& test : cases) {
    SCOPED_TRACE(test.text);
    EXPECT_THAT(Refused(test.text), HasSubstr(test.what));
  }
}

TEST_F(PolicyFileTest, DuplicateNamesAreRefused) {
  EXPECT_THAT(Refused("a: role:x\nb: role:y\na: role:z\n"),
              HasSubstr("rule \"a\" is defined twice (line 3)"));
}

TEST_F(PolicyFileTest, ParseTextNamesTheGivenSource) {
  Result<PolicyOverrides> read = ParsePolicyText("- x\n", "inline");
  ASSERT_FALSE(read.has_value());
  EXPECT_THAT(read.error().message, HasSubstr("policy file inline: is not a mapping"));
}

TEST_F(PolicyFileTest, OverridesTakeEffectInThePolicy) {
  const std::string path = Write("policy.yaml",
                                 "\"is_operator\": \"role:operator\"\n"
                                 "\"volume_extension:services:index\": \"rule:admin_api or "
                                 "rule:is_operator\"\n");
  Result<PolicyOverrides> read = ReadPolicyFile(path);
  ASSERT_TRUE(read.has_value()) << read.error().message;
  Result<domain::Policy> policy = domain::Policy::Create(*read);
  ASSERT_TRUE(policy.has_value()) << policy.error().message;
  domain::PolicyCredentials operator_credentials;
  operator_credentials.project_id = "p";
  operator_credentials.roles = {"operator"};
  EXPECT_TRUE(policy->Enforce(
      domain::policies::kServicesIndex, operator_credentials, domain::PolicyTarget{}));
  EXPECT_FALSE(policy->Enforce(
      domain::policies::kServicesUpdate, operator_credentials, domain::PolicyTarget{}));
}

TEST_F(PolicyFileTest, BadRuleInTheFileStopsThePolicyNamingIt) {
  Result<PolicyOverrides> read =
      ReadPolicyFile(Write("policy.yaml", "\"volume:get\": \"role:reader and\"\n"));
  ASSERT_TRUE(read.has_value()) << read.error().message;
  Result<domain::Policy> policy = domain::Policy::Create(*read);
  ASSERT_FALSE(policy.has_value());
  EXPECT_THAT(policy.error().message, HasSubstr("policy rule \"volume:get\" (policy file)"));
}

}  // namespace
}  // namespace clinker::adapters
