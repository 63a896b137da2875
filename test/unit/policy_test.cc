// Goal: pin down domain/policy.h: the oslo.policy rule language (each check kind, precedence,
// templates, what an absent value does), its errors (every parse error names the rule and the
// column; undefined references, loops and over-deep chains are refused), overrides, and every
// default rule against Cinder's personas.
//
// Method: small rules are tried through overrides of a custom rule name. The defaults are checked
// against an expected-persona table written here, independent of policy.cc: for every default,
// whether admin, member and reader (with the roles Keystone gives them, admin => member =>
// reader) may act in their own project and in another one. A guard fails when a default has no
// row here, so a new rule is not silently untested.
#include "clinker/domain/policy.h"

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "clinker/core/error.h"

namespace clinker::domain {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kOwnProject = "0a1b2c3d4e5f40718293a4b5c6d7e8f9";
constexpr std::string_view kOtherProject = "f9e8d7c6b5a4493827160f5e4d3c2b1a";

Policy MustCreate(const std::map<std::string, std::string>& overrides) {
  Result<Policy> policy = Policy::Create(overrides);
  EXPECT_TRUE(policy.has_value()) << (policy ? "" : policy.error().message);
  return policy ? *std::move(policy) : Policy::Default();
}

// Enforces the custom rule "t" defined as `rule`.
bool Try(const std::string& rule,
         const PolicyCredentials& credentials,
         const PolicyTarget& target) {
  const Policy policy = MustCreate({{"t", rule}});
  return policy.Has("t") && policy.Enforce("t", credentials, target);
}

PolicyCredentials Caller(std::vector<std::string> roles, std::string_view project = kOwnProject) {
  PolicyCredentials credentials;
  credentials.user_id = "u1";
  credentials.project_id = std::string(project);
  credentials.roles = std::move(roles);
  return credentials;
}

// Keystone's default role inference: admin implies member implies reader.
PolicyCredentials Admin() {
  return Caller({"admin", "member", "reader"});
}

PolicyCredentials Member() {
  return Caller({"member", "reader"});
}

PolicyCredentials Reader() {
  return Caller({"reader"});
}

std::string ParseError(const std::string& rule) {
  Result<Policy> policy = Policy::Create({{"t", rule}});
  EXPECT_FALSE(policy.has_value()) << "rule parsed: " << rule;
  if (policy) {
    return "";
  }
  EXPECT_EQ(policy.error().code, ErrorCode::kInvalidArgument);
  return policy.error().message;
}

// ---- The language ------------------------------------------------------------------------------

TEST(PolicyLanguageTest, EmptyRuleAllowsEveryoneAsInOslo) {
  EXPECT_TRUE(Try("", PolicyCredentials{}, PolicyTarget{}));
  EXPECT_TRUE(Try("", Reader(), PolicyTarget::ForProject(std::string(kOtherProject))));
}

TEST(PolicyLanguageTest, AtAlwaysAndBangNever) {
  EXPECT_TRUE(Try("@", PolicyCredentials{}, PolicyTarget{}));
  EXPECT_FALSE(Try("!", Admin(), PolicyTarget::OfCaller(Admin())));
}

TEST(PolicyLanguageTest, RoleIsCaseInsensitive) {
  const PolicyTarget target;
  EXPECT_TRUE(Try("role:Admin", Caller({"ADMIN"}), target));
  EXPECT_TRUE(Try("role:admin", Caller({"Admin"}), target));
  EXPECT_FALSE(Try("role:admin", Caller({"administrator", "member"}), target));
  EXPECT_FALSE(Try("role:admin", Caller({}), target));
}

TEST(PolicyLanguageTest, RoleNameMayComeFromTheTarget) {
  PolicyTarget target;
  target.attributes["role_name"] = "Auditor";
  EXPECT_TRUE(Try("role:%(role_name)s", Caller({"auditor"}), target));
  EXPECT_FALSE(Try("role:%(missing)s", Caller({"auditor"}), target));
}

TEST(PolicyLanguageTest, ProjectIdComparesCredentialsWithTarget) {
  const PolicyCredentials caller = Reader();
  const std::string rule = "project_id:%(project_id)s";
  EXPECT_TRUE(Try(rule, caller, PolicyTarget::ForProject(std::string(kOwnProject))));
  EXPECT_FALSE(Try(rule, caller, PolicyTarget::ForProject(std::string(kOtherProject))));
  // Absent on either side is false, never "" == "".
  EXPECT_FALSE(Try(rule, caller, PolicyTarget{}));
  EXPECT_FALSE(Try(rule, Caller({"reader"}, ""), PolicyTarget{}));
  EXPECT_FALSE(Try(rule, Caller({"reader"}, ""), PolicyTarget::ForProject("")));
}

TEST(PolicyLanguageTest, UserIdAndDomainAttributes) {
  PolicyCredentials caller = Member();
  caller.domain_id = "d1";
  caller.user_domain_id = "ud";
  caller.project_domain_id = "pd";
  PolicyTarget target = PolicyTarget::OfCaller(caller);
  target.attributes["domain_id"] = "d1";
  EXPECT_TRUE(Try("user_id:%(user_id)s", caller, target));
  EXPECT_TRUE(Try("domain_id:%(domain_id)s", caller, target));
  EXPECT_TRUE(Try("user_domain_id:ud and project_domain_id:pd", caller, target));
  EXPECT_FALSE(Try("user_domain_id:pd", caller, target));
  target.user_id = "someone-else";
  EXPECT_FALSE(Try("user_id:%(user_id)s", caller, target));
}

TEST(PolicyLanguageTest, BooleansCompareAsPythonPrintsThem) {
  PolicyCredentials caller = Member();
  caller.is_admin = true;
  EXPECT_TRUE(Try("is_admin:True", caller, PolicyTarget{}));
  EXPECT_FALSE(Try("is_admin:true", caller, PolicyTarget{}));  // str(True) is "True".
  EXPECT_FALSE(Try("is_admin:False", caller, PolicyTarget{}));
  caller.is_admin = false;
  EXPECT_FALSE(Try("is_admin:True", caller, PolicyTarget{}));
  EXPECT_TRUE(Try("is_admin:False", caller, PolicyTarget{}));
  EXPECT_TRUE(Try("is_admin_project:True", caller, PolicyTarget{}));  // Default: true.
  caller.is_admin_project = false;
  EXPECT_FALSE(Try("is_admin_project:True", caller, PolicyTarget{}));
}

TEST(PolicyLanguageTest, SystemScope) {
  PolicyCredentials caller = Admin();
  EXPECT_FALSE(Try("system_scope:all", caller, PolicyTarget{}));
  caller.system_scope = "all";
  EXPECT_TRUE(Try("role:admin and system_scope:all", caller, PolicyTarget{}));
}

TEST(PolicyLanguageTest, GenericRolesCheckIsExactAndMatchesAnyRole) {
  EXPECT_TRUE(Try("roles:reader", Member(), PolicyTarget{}));
  EXPECT_FALSE(Try("roles:Reader", Member(), PolicyTarget{}));
}

TEST(PolicyLanguageTest, CustomCredentialAndTargetAttributes) {
  PolicyCredentials caller = Member();
  caller.attributes["service_user_id"] = "nova";
  PolicyTarget target;
  target.attributes["owner"] = "nova";
  EXPECT_TRUE(Try("service_user_id:nova", caller, target));
  EXPECT_TRUE(Try("service_user_id:%(owner)s", caller, target));
  EXPECT_FALSE(Try("service_user_id:cinder", caller, target));
  EXPECT_FALSE(Try("unknown_attribute:nova", caller, target));
  // As in oslo: a missing value makes the check false, so `not` of it is true.
  EXPECT_TRUE(Try("not unknown_attribute:nova", caller, target));
  EXPECT_FALSE(Try("service_user_id:%(missing)s", caller, target));
}

TEST(PolicyLanguageTest, LiteralLeftSideComparesWithTheTarget) {
  PolicyTarget target;
  target.attributes["kind"] = "member";
  target.attributes["enabled"] = "True";
  target.attributes["count"] = "42";
  const PolicyCredentials nobody;
  EXPECT_TRUE(Try("'member':%(kind)s", nobody, target));
  EXPECT_TRUE(Try("\"member\":%(kind)s", nobody, target));
  EXPECT_FALSE(Try("'reader':%(kind)s", nobody, target));
  EXPECT_TRUE(Try("True:%(enabled)s", nobody, target));
  EXPECT_FALSE(Try("False:%(enabled)s", nobody, target));
  EXPECT_TRUE(Try("42:%(count)s", nobody, target));
  EXPECT_FALSE(Try("'member':%(missing)s", nobody, target));
}

TEST(PolicyLanguageTest, TemplatesMixTextFieldsAndEscapedPercent) {
  PolicyCredentials caller = Member();
  caller.attributes["label"] = "p-0a1b/50%";
  PolicyTarget target;
  target.attributes["short"] = "0a1b";
  EXPECT_TRUE(Try("label:p-%(short)s/50%%", caller, target));
  EXPECT_FALSE(Try("label:p-%(short)s/50", caller, target));
}

TEST(PolicyLanguageTest, NotBindsTighterThanAndWhichBindsTighterThanOr) {
  const PolicyCredentials nobody;
  const PolicyTarget target;
  // @ or (! and !): true. Were `or` tighter, (@ or !) and ! would be false.
  EXPECT_TRUE(Try("@ or ! and !", nobody, target));
  EXPECT_TRUE(Try("! and ! or @", nobody, target));
  // (not @) or @: true. Were `not` looser, not (@ or @) would be false.
  EXPECT_TRUE(Try("not @ or @", nobody, target));
  EXPECT_FALSE(Try("not @ and @", nobody, target));
  EXPECT_TRUE(Try("not not @", nobody, target));
  EXPECT_FALSE(Try("not ! and !", nobody, target));
}

TEST(PolicyLanguageTest, ParenthesesGroup) {
  const PolicyCredentials nobody;
  const PolicyTarget target;
  EXPECT_FALSE(Try("(@ or !) and !", nobody, target));
  EXPECT_TRUE(Try("((@))", nobody, target));
  EXPECT_TRUE(Try("( @ )", nobody, target));
  EXPECT_FALSE(Try("not (@ or !)", nobody, target));
  EXPECT_TRUE(Try("(role:admin) or (role:reader and project_id:%(project_id)s)",
                  Reader(),
                  PolicyTarget::OfCaller(Reader())));
}

TEST(PolicyLanguageTest, KeywordsAreCaseInsensitive) {
  const PolicyCredentials nobody;
  const PolicyTarget target;
  EXPECT_FALSE(Try("@ AND !", nobody, target));
  EXPECT_TRUE(Try("! Or @", nobody, target));
  EXPECT_FALSE(Try("NOT @", nobody, target));
}

TEST(PolicyLanguageTest, LongChainsOfAndAndOr) {
  const PolicyCredentials nobody;
  const PolicyTarget target;
  EXPECT_TRUE(Try("@ and @ and @ and @", nobody, target));
  EXPECT_FALSE(Try("@ and @ and ! and @", nobody, target));
  EXPECT_TRUE(Try("! or ! or ! or @", nobody, target));
  EXPECT_FALSE(Try("! or ! or ! or !", nobody, target));
}

TEST(PolicyLanguageTest, RuleReferencesFollowOtherRules) {
  const Policy policy = MustCreate({{"base", "role:auditor"},
                                    {"middle", "rule:base or role:admin"},
                                    {"t", "rule:middle and project_id:%(project_id)s"}});
  const PolicyCredentials auditor = Caller({"auditor"});
  EXPECT_TRUE(policy.Enforce("t", auditor, PolicyTarget::OfCaller(auditor)));
  EXPECT_FALSE(policy.Enforce("t", auditor, PolicyTarget::ForProject(std::string(kOtherProject))));
  EXPECT_FALSE(policy.Enforce("t", Reader(), PolicyTarget::OfCaller(Reader())));
}

// ---- Errors ------------------------------------------------------------------------------------

TEST(PolicyErrorTest, ParseErrorsNameTheRuleTheColumnAndTheSource) {
  struct Case {
    std::string rule;
    std::string what;
    std::size_t column;
  };

  const std::vector<Case> cases = {
      {"role:admin and", "expected a check, found the end of the rule", 15},
      {"role:admin or", "expected a check, found the end of the rule", 14},
      {"not", "expected a check, found the end of the rule", 4},
      {"(role:admin", "expected ')' to close the '(' at column 1", 12},
      {"(role:admin or (@)", "expected ')' to close the '(' at column 1", 19},
      {"role:admin)", "')' closes no '('", 11},
      {"role:admin role:member", "expected 'and' or 'or' before 'role:member'", 12},
      {"and @", "expected a check, found 'and'", 1},
      {"@ or or @", "expected a check, found 'or'", 6},
      {"()", "expected a check, found ')'", 2},
      {"admin", "'admin' is not a check", 1},
      {":admin", "a check needs a kind before ':'", 1},
      {"role:", "a check needs a value after ':'", 6},
      {"@ and rule:", "a check needs a value after ':'", 12},
      {"'quoted'", "a quoted string is not a check", 1},
      {"http://policy.example.com", "remote (http/https) checks are not supported", 1},
      {"https://policy.example.com", "remote (http/https) checks are not supported", 1},
      {"project_id:%(project_id)d", "'%' must start %(field)s or be doubled", 12},
      {"project_id:50%", "'%' must start %(field)s or be doubled", 14},
      {"project_id:%()s", "'%' must start %(field)s or be doubled", 12},
      {"project_id:%(project_id", "'%' must start %(field)s or be doubled", 12},
      {"@ and 'abc:def", "unterminated quote in ''abc'", 7},
      {"   ", "the rule is blank", 1},
  };
  for (const Case& test : cases) {
    SCOPED_TRACE(test.rule);
    const std::string message = ParseError(test.rule);
    EXPECT_THAT(message, HasSubstr("policy rule \"t\" (policy file)"));
    EXPECT_THAT(message, HasSubstr(test.what));
    EXPECT_THAT(message, HasSubstr("at column " + std::to_string(test.column) + " of"));
    EXPECT_THAT(message, HasSubstr("\"" + test.rule + "\""));
  }
}

TEST(PolicyErrorTest, NestingIsBounded) {
  const std::string deep_ok =
      std::string(kMaxRuleNesting, '(') + "@" + std::string(kMaxRuleNesting, ')');
  EXPECT_TRUE(Try(deep_ok, PolicyCredentials{}, PolicyTarget{}));
  const std::string too_deep =
      std::string(kMaxRuleNesting + 1, '(') + "@" + std::string(kMaxRuleNesting + 1, ')');
  EXPECT_THAT(ParseError(too_deep), HasSubstr("nested too deeply"));
  std::string nots;
  for (int i = 0; i <= kMaxRuleNesting; ++i) {
    nots += "not ";
  }
  EXPECT_THAT(ParseError(nots + "@"), HasSubstr("nested too deeply"));
}

TEST(PolicyErrorTest, BadOverrideOfADefaultNamesIt) {
  Result<Policy> policy = Policy::Create({{"volume:get", "role:reader and"}});
  ASSERT_FALSE(policy.has_value());
  EXPECT_THAT(policy.error().message, HasSubstr("policy rule \"volume:get\" (policy file)"));
}

TEST(PolicyErrorTest, UndefinedRuleReferenceIsAnError) {
  Result<Policy> policy = Policy::Create({{"t", "rule:no_such_rule or @"}});
  ASSERT_FALSE(policy.has_value());
  EXPECT_EQ(policy.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(policy.error().message, HasSubstr("rule:no_such_rule names no rule"));
  EXPECT_THAT(policy.error().message, HasSubstr("\"t\""));
  // oslo would read `not rule:typo` as "allow": here it never loads.
  EXPECT_FALSE(Policy::Create({{"volume:delete", "not rule:admn_api"}}).has_value());
}

TEST(PolicyErrorTest, ReferenceLoopsAreErrors) {
  Result<Policy> self = Policy::Create({{"t", "rule:t"}});
  ASSERT_FALSE(self.has_value());
  EXPECT_THAT(self.error().message, HasSubstr("loop: t -> t"));

  Result<Policy> pair = Policy::Create({{"a", "@ and rule:b"}, {"b", "role:x or rule:a"}});
  ASSERT_FALSE(pair.has_value());
  EXPECT_THAT(pair.error().message, HasSubstr("loop: a -> b -> a"));

  // A loop through defaults: admin_api is used by many defaults.
  Result<Policy> through_defaults = Policy::Create({{"admin_api", "rule:volume:force_delete"}});
  ASSERT_FALSE(through_defaults.has_value());
  EXPECT_THAT(through_defaults.error().message, HasSubstr("loop"));
  EXPECT_THAT(through_defaults.error().message, HasSubstr("admin_api"));
  EXPECT_THAT(through_defaults.error().message, HasSubstr("volume:force_delete"));
}

std::string ChainName(int i) {
  // Built by appending: GCC 12 at -O3 warns falsely (-Wrestrict, bug 105329) on "chain" + ....
  std::string name = "chain";
  name += std::to_string(i);
  return name;
}

std::map<std::string, std::string> Chain(int length) {
  std::map<std::string, std::string> rules;
  for (int i = 0; i + 1 < length; ++i) {
    rules.emplace(ChainName(i), std::string("rule:").append(ChainName(i + 1)));
  }
  rules.emplace(ChainName(length - 1), "@");
  return rules;
}

TEST(PolicyErrorTest, ReferenceChainsAreBounded) {
  const Policy policy = MustCreate(Chain(kMaxRuleDepth));
  EXPECT_TRUE(policy.Enforce("chain0", PolicyCredentials{}, PolicyTarget{}));

  Result<Policy> too_deep = Policy::Create(Chain(kMaxRuleDepth + 1));
  ASSERT_FALSE(too_deep.has_value());
  EXPECT_THAT(too_deep.error().message, HasSubstr("more than the limit"));

  // A hostile file's very long chain is refused without exhausting the call stack.
  EXPECT_FALSE(Policy::Create(Chain(20000)).has_value());
}

TEST(PolicyErrorDeathTest, EnforcingAnUnknownActionAborts) {
  const Policy policy = Policy::Default();
  EXPECT_DEATH((void)policy.Enforce("volume:no_such_action", Admin(), PolicyTarget{}),
               "volume:no_such_action");
}

// ---- Overrides ---------------------------------------------------------------------------------

TEST(PolicyOverrideTest, OverrideReplacesADefault) {
  const Policy policy = MustCreate({{"volume:get", "role:reader and project_id:%(project_id)s"}});
  PolicyCredentials admin = Admin();
  admin.is_admin = true;
  const PolicyTarget other = PolicyTarget::ForProject(std::string(kOtherProject));
  EXPECT_FALSE(policy.Enforce(policies::kVolumeGet, admin, other));
  EXPECT_TRUE(policy.Enforce(policies::kVolumeGetAll, admin, other));  // Untouched.
  EXPECT_EQ(policy.RuleText(policies::kVolumeGet), "role:reader and project_id:%(project_id)s");
  EXPECT_EQ(policy.RuleText(policies::kVolumeGetAll), "rule:xena_system_admin_or_project_reader");
  EXPECT_EQ(policy.RuleText("no_such_rule"), "");
  EXPECT_TRUE(policy.ExtraRuleNames().empty());
}

TEST(PolicyOverrideTest, EmptyOverrideAllowsEveryone) {
  const Policy policy = MustCreate({{std::string(policies::kServicesIndex), ""}});
  EXPECT_TRUE(policy.Enforce(policies::kServicesIndex, PolicyCredentials{}, PolicyTarget{}));
}

TEST(PolicyOverrideTest, CustomRulesCanBeDefinedAndUsed) {
  const Policy policy =
      MustCreate({{"is_operator", "role:operator"},
                  {std::string(policies::kServicesIndex), "rule:admin_api or rule:is_operator"}});
  EXPECT_TRUE(policy.Enforce(policies::kServicesIndex, Caller({"operator"}), PolicyTarget{}));
  EXPECT_FALSE(policy.Enforce(policies::kServicesUpdate, Caller({"operator"}), PolicyTarget{}));
  EXPECT_EQ(policy.ExtraRuleNames(), std::vector<std::string>{"is_operator"});
  EXPECT_TRUE(policy.Has("is_operator"));
}

TEST(PolicyOverrideTest, OverridingABaseRuleChangesEveryActionUsingIt) {
  const Policy policy = MustCreate({{"admin_api", "role:cloud_admin"}});
  const PolicyCredentials cloud_admin = Caller({"cloud_admin"});
  PolicyCredentials admin = Admin();
  admin.is_admin = true;
  for (const std::string_view action :
       {policies::kVolumeResetStatus, policies::kQuotasUpdate, policies::kClustersGetAll}) {
    SCOPED_TRACE(action);
    EXPECT_TRUE(policy.Enforce(action, cloud_admin, PolicyTarget{}));
    EXPECT_FALSE(policy.Enforce(action, admin, PolicyTarget{}));
  }
}

TEST(PolicyOverrideTest, TypesManageOverrideGovernsTheSplitTypeRules) {
  const Policy policy = MustCreate({{"volume_extension:types_manage", "role:type_admin"}});
  for (const std::string_view action :
       {policies::kTypeCreate, policies::kTypeUpdate, policies::kTypeDelete}) {
    SCOPED_TRACE(action);
    EXPECT_TRUE(policy.Enforce(action, Caller({"type_admin"}), PolicyTarget{}));
    EXPECT_FALSE(policy.Enforce(action, Admin(), PolicyTarget{}));
  }
  // The new name, when overridden itself, wins.
  const Policy split = MustCreate({{"volume_extension:types_manage", "role:type_admin"},
                                   {"volume_extension:type_delete", "!"}});
  EXPECT_FALSE(split.Enforce(policies::kTypeDelete, Caller({"type_admin"}), PolicyTarget{}));
  EXPECT_TRUE(split.Enforce(policies::kTypeCreate, Caller({"type_admin"}), PolicyTarget{}));
}

TEST(PolicyOverrideTest, ContextIsAdminDecidesIsAdmin) {
  const Policy defaults = Policy::Default();
  EXPECT_TRUE(defaults.IsAdmin(Admin()));
  EXPECT_TRUE(defaults.IsAdmin(Caller({"ADMIN"})));
  EXPECT_FALSE(defaults.IsAdmin(Member()));
  EXPECT_FALSE(defaults.IsAdmin(Reader()));
  const Policy custom = MustCreate({{"context_is_admin", "role:cloud_admin"}});
  EXPECT_FALSE(custom.IsAdmin(Admin()));
  EXPECT_TRUE(custom.IsAdmin(Caller({"cloud_admin"})));
}

TEST(PolicyOverrideTest, CopiesShareTheRulesAndStayValid) {
  Policy copy = Policy::Default();
  {
    const Policy original = MustCreate({{"volume:create", "!"}});
    copy = original;
  }
  EXPECT_FALSE(copy.Enforce(policies::kVolumeCreate, Admin(), PolicyTarget::OfCaller(Admin())));
}

// ---- The defaults against Cinder's personas ----------------------------------------------------

// Who may, by persona and project: own = the resource is in the caller's project.
struct Personas {
  bool admin_own;
  bool admin_other;
  bool member_own;
  bool member_other;
  bool reader_own;
  bool reader_other;
};

constexpr Personas kReaderRule{true, true, true, false, true, false};
constexpr Personas kMemberRule{true, true, true, false, false, false};
constexpr Personas kAdminRule{true, true, false, false, false, false};

// Every default rule, with who Cinder's defaults let through (the persona matrix of Cinder's
// "Policy Personas and Permissions", Xena onwards, which 2023.1 keeps).
const std::map<std::string, Personas>& ExpectedDefaults() {
  static const std::map<std::string, Personas> expected = {
      // Base rules.
      {"context_is_admin", kAdminRule},
      // Legacy: admin, or anyone (any role, even none) in the project.
      {"admin_or_owner", {true, true, true, false, true, false}},
      {"admin_api", kAdminRule},
      // Admin of the target project only (no system scope or domain here).
      {"system_or_domain_or_project_admin", {true, false, false, false, false, false}},
      {"xena_system_admin_or_project_reader", kReaderRule},
      {"xena_system_admin_or_project_member", kMemberRule},
      // Volumes.
      {"volume:create", kMemberRule},
      {"volume:get", kReaderRule},
      {"volume:get_all", kReaderRule},
      {"volume:update", kMemberRule},
      {"volume:delete", kMemberRule},
      {"volume:force_delete", kAdminRule},
      {"volume:extend", kMemberRule},
      {"volume:extend_attached_volume", kMemberRule},
      {"volume:multiattach", kMemberRule},
      {"volume_extension:volume_admin_actions:reset_status", kAdminRule},
      {"volume_extension:volume_admin_actions:force_delete", kAdminRule},
      {"volume_extension:volume_tenant_attribute", kReaderRule},
      {"volume_extension:volume_host_attribute", kAdminRule},
      {"volume_extension:volume_mig_status_attribute", kAdminRule},
      {"volume_extension:volume_actions:initialize_connection", kMemberRule},
      {"volume_extension:volume_actions:terminate_connection", kMemberRule},
      {"volume_extension:volume_actions:reserve", kMemberRule},
      {"volume_extension:volume_actions:unreserve", kMemberRule},
      {"volume_extension:volume_actions:begin_detaching", kMemberRule},
      {"volume_extension:volume_actions:roll_detaching", kMemberRule},
      {"volume_extension:volume_actions:attach", kMemberRule},
      {"volume_extension:volume_actions:detach", kMemberRule},
      {"volume:retype", kMemberRule},
      {"volume:update_readonly_flag", kMemberRule},
      // Volume metadata, image metadata, admin metadata.
      {"volume:get_volume_metadata", kReaderRule},
      {"volume:create_volume_metadata", kMemberRule},
      {"volume:update_volume_metadata", kMemberRule},
      {"volume:delete_volume_metadata", kMemberRule},
      {"volume_extension:volume_image_metadata:show", kReaderRule},
      {"volume_extension:volume_image_metadata:set", kMemberRule},
      {"volume_extension:volume_image_metadata:remove", kMemberRule},
      {"volume:update_volume_admin_metadata", kAdminRule},
      // Snapshots.
      {"volume:create_snapshot", kMemberRule},
      {"volume:get_snapshot", kReaderRule},
      {"volume:get_all_snapshots", kReaderRule},
      {"volume:update_snapshot", kMemberRule},
      {"volume:delete_snapshot", kMemberRule},
      {"volume_extension:extended_snapshot_attributes", kReaderRule},
      {"volume_extension:snapshot_admin_actions:reset_status", kAdminRule},
      {"snapshot_extension:snapshot_actions:update_snapshot_status", kMemberRule},
      {"volume_extension:snapshot_admin_actions:force_delete", kAdminRule},
      {"volume:get_snapshot_metadata", kReaderRule},
      {"volume:update_snapshot_metadata", kMemberRule},
      {"volume:delete_snapshot_metadata", kMemberRule},
      // Backups.
      {"backup:create", kMemberRule},
      {"backup:get", kReaderRule},
      {"backup:get_all", kReaderRule},
      {"backup:update", kMemberRule},
      {"backup:delete", kMemberRule},
      {"backup:restore", kMemberRule},
      {"backup:backup_project_attribute", kAdminRule},
      {"backup:backup-import", kAdminRule},
      {"backup:export-import", kAdminRule},
      {"volume_extension:backup_admin_actions:reset_status", kAdminRule},
      {"volume_extension:backup_admin_actions:force_delete", kAdminRule},
      // Volume transfers.
      {"volume:get_all_transfers", kReaderRule},
      {"volume:create_transfer", kMemberRule},
      {"volume:get_transfer", kReaderRule},
      {"volume:accept_transfer", kMemberRule},
      {"volume:delete_transfer", kMemberRule},
      // Attachments.
      {"volume:attachment_create", kMemberRule},
      {"volume:attachment_update", kMemberRule},
      {"volume:attachment_delete", kMemberRule},
      {"volume:attachment_complete", kMemberRule},
      {"volume:multiattach_bootable_volume", kMemberRule},
      // Services and clusters.
      {"volume_extension:services:index", kAdminRule},
      {"volume_extension:services:update", kAdminRule},
      {"clusters:get", kAdminRule},
      {"clusters:get_all", kAdminRule},
      {"clusters:update", kAdminRule},
      {"volume:freeze_host", kAdminRule},
      {"volume:thaw_host", kAdminRule},
      {"volume:failover_host", kAdminRule},
      // Admin information and user messages.
      {"volume_extension:hosts", kAdminRule},
      {"volume_extension:capabilities", kAdminRule},
      {"scheduler_extension:scheduler_stats:get_pools", kAdminRule},
      {"message:get_all", kReaderRule},
      {"message:get", kReaderRule},
      {"message:delete", kMemberRule},
      // Quotas and limits.
      {"volume_extension:quotas:show", kReaderRule},
      {"volume_extension:quotas:update", kAdminRule},
      {"volume_extension:quotas:delete", kAdminRule},
      {"limits_extension:used_limits", kReaderRule},
      {"volume_extension:quota_classes", kAdminRule},
      {"volume_extension:quota_classes:get", kAdminRule},
      {"volume_extension:quota_classes:update", kAdminRule},
      // Volume types.
      {"volume_extension:types_manage", kAdminRule},
      {"volume_extension:type_create", kAdminRule},
      {"volume_extension:type_update", kAdminRule},
      {"volume_extension:type_delete", kAdminRule},
      {"volume_extension:type_get", kReaderRule},
      {"volume_extension:type_get_all", kReaderRule},
      {"volume_extension:access_types_extra_specs", kReaderRule},
      {"volume_extension:access_types_qos_specs_id", kAdminRule},
      {"volume_extension:types_extra_specs:index", kReaderRule},
      {"volume_extension:types_extra_specs:show", kReaderRule},
      {"volume_extension:types_extra_specs:create", kAdminRule},
      {"volume_extension:types_extra_specs:update", kAdminRule},
      {"volume_extension:types_extra_specs:delete", kAdminRule},
      {"volume_extension:qos_specs_manage:get_all", kAdminRule},
      {"volume_extension:qos_specs_manage:get", kAdminRule},
      {"volume_extension:qos_specs_manage:create", kAdminRule},
      {"volume_extension:qos_specs_manage:update", kAdminRule},
      {"volume_extension:qos_specs_manage:delete", kAdminRule},
      {"volume_extension:types_extra_specs:read_sensitive", kAdminRule},
      {"volume_extension:volume_type_encryption", kAdminRule},
      {"volume_extension:volume_type_encryption:create", kAdminRule},
      {"volume_extension:volume_type_encryption:get", kAdminRule},
      {"volume_extension:volume_type_encryption:update", kAdminRule},
      {"volume_extension:volume_type_encryption:delete", kAdminRule},
      // Volume type access.
      {"volume_extension:volume_type_access", kMemberRule},
      {"volume_extension:volume_type_access:addProjectAccess", kAdminRule},
      {"volume_extension:volume_type_access:removeProjectAccess", kAdminRule},
      {"volume_extension:volume_type_access:get_all_for_type", kAdminRule},
      // Generic volume groups.
      {"group:group_types_manage", kAdminRule},
      {"group:group_types:create", kAdminRule},
      {"group:group_types:update", kAdminRule},
      {"group:group_types:delete", kAdminRule},
      {"group:access_group_types_specs", kAdminRule},
      {"group:group_types_specs", kAdminRule},
      {"group:group_types_specs:get", kAdminRule},
      {"group:group_types_specs:get_all", kAdminRule},
      {"group:group_types_specs:create", kAdminRule},
      {"group:group_types_specs:update", kAdminRule},
      {"group:group_types_specs:delete", kAdminRule},
      {"group:get_all", kReaderRule},
      {"group:create", kMemberRule},
      {"group:get", kReaderRule},
      {"group:update", kMemberRule},
      {"group:group_project_attribute", kAdminRule},
      {"group:delete", kMemberRule},
      {"group:reset_status", kAdminRule},
      {"group:get_all_group_snapshots", kReaderRule},
      {"group:create_group_snapshot", kMemberRule},
      {"group:get_group_snapshot", kReaderRule},
      {"group:delete_group_snapshot", kMemberRule},
      {"group:update_group_snapshot", kMemberRule},
      {"group:group_snapshot_project_attribute", kAdminRule},
      {"group:reset_group_snapshot_status", kAdminRule},
  };
  return expected;
}

// The credentials as the API builds them: is_admin from context_is_admin.
PolicyCredentials AsTheApiBuildsThem(const Policy& policy, PolicyCredentials credentials) {
  credentials.is_admin = policy.IsAdmin(credentials);
  return credentials;
}

TEST(PolicyDefaultsTest, EveryDefaultHasAnExpectedRowAndNamesAreUnique) {
  std::set<std::string_view> seen;
  for (const PolicyDefault& row : PolicyDefaults()) {
    SCOPED_TRACE(row.name);
    EXPECT_TRUE(seen.insert(row.name).second) << "listed twice";
    EXPECT_TRUE(ExpectedDefaults().contains(std::string(row.name)))
        << "a new default needs its row in ExpectedDefaults()";
    EXPECT_FALSE(row.description.empty());
  }
  EXPECT_EQ(seen.size(), ExpectedDefaults().size()) << "a row here names no default";
}

TEST(PolicyDefaultsTest, EveryDefaultLetsThroughExactlyTheExpectedPersonas) {
  const Policy policy = Policy::Default();
  const PolicyCredentials admin = AsTheApiBuildsThem(policy, Admin());
  const PolicyCredentials member = AsTheApiBuildsThem(policy, Member());
  const PolicyCredentials reader = AsTheApiBuildsThem(policy, Reader());
  ASSERT_TRUE(admin.is_admin);
  ASSERT_FALSE(member.is_admin);
  ASSERT_FALSE(reader.is_admin);
  const PolicyTarget own = PolicyTarget::ForProject(std::string(kOwnProject));
  const PolicyTarget other = PolicyTarget::ForProject(std::string(kOtherProject));
  for (const auto& [name, who] : ExpectedDefaults()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(policy.Has(name));
    EXPECT_EQ(policy.Enforce(name, admin, own), who.admin_own) << "admin, own project";
    EXPECT_EQ(policy.Enforce(name, admin, other), who.admin_other) << "admin, other project";
    EXPECT_EQ(policy.Enforce(name, member, own), who.member_own) << "member, own project";
    EXPECT_EQ(policy.Enforce(name, member, other), who.member_other) << "member, other project";
    EXPECT_EQ(policy.Enforce(name, reader, own), who.reader_own) << "reader, own project";
    EXPECT_EQ(policy.Enforce(name, reader, other), who.reader_other) << "reader, other project";
  }
}

TEST(PolicyDefaultsTest, NoRolesInTheProjectMeansNothingButTheLegacyOwnerRule) {
  const Policy policy = Policy::Default();
  const PolicyCredentials nobody = AsTheApiBuildsThem(policy, Caller({}));
  const PolicyTarget own = PolicyTarget::OfCaller(nobody);
  for (const PolicyDefault& row : PolicyDefaults()) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(policy.Enforce(row.name, nobody, own), row.name == policies::kAdminOrOwner);
  }
}

TEST(PolicyDefaultsTest, NoauthCallerIsAdminEverywhere) {
  // Cinder's noauth context: is_admin with the role "admin" added.
  const Policy policy = Policy::Default();
  PolicyCredentials noauth = Caller({"admin"});
  noauth.is_admin = true;
  const PolicyTarget other = PolicyTarget::ForProject(std::string(kOtherProject));
  for (const PolicyDefault& row : PolicyDefaults()) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(policy.Enforce(row.name, noauth, other),
              row.name != policies::kSystemOrDomainOrProjectAdmin);
  }
}

TEST(PolicyDefaultsTest, ExpectedCinderCheckStrings) {
  // The base rules verbatim, since operators' policy files refer to them by name.
  const Policy policy = Policy::Default();
  EXPECT_EQ(policy.RuleText("context_is_admin"), "role:admin");
  EXPECT_EQ(policy.RuleText("admin_api"),
            "is_admin:True or (role:admin and is_admin_project:True)");
  EXPECT_EQ(policy.RuleText("admin_or_owner"),
            "is_admin:True or (role:admin and is_admin_project:True) or "
            "project_id:%(project_id)s");
  EXPECT_EQ(policy.RuleText("xena_system_admin_or_project_reader"),
            "(role:admin) or (role:reader and project_id:%(project_id)s)");
  EXPECT_EQ(policy.RuleText("xena_system_admin_or_project_member"),
            "(role:admin) or (role:member and project_id:%(project_id)s)");
  EXPECT_EQ(policy.RuleText("volume:create"), "rule:xena_system_admin_or_project_member");
  EXPECT_EQ(policy.RuleText("volume:get"), "rule:xena_system_admin_or_project_reader");
  EXPECT_EQ(policy.RuleText("volume_extension:volume_admin_actions:reset_status"),
            "rule:admin_api");
}

TEST(PolicyDefaultsTest, DomainAdminRuleUsesTheTargetDomain) {
  const Policy policy = Policy::Default();
  PolicyCredentials domain_admin = Caller({"admin"}, "");
  domain_admin.domain_id = "d1";
  PolicyTarget target = PolicyTarget::ForProject(std::string(kOtherProject));
  EXPECT_FALSE(policy.Enforce(policies::kSystemOrDomainOrProjectAdmin, domain_admin, target));
  target.attributes["domain_id"] = "d1";
  EXPECT_TRUE(policy.Enforce(policies::kSystemOrDomainOrProjectAdmin, domain_admin, target));
  PolicyCredentials system_admin = Caller({"admin"}, "");
  system_admin.system_scope = "all";
  EXPECT_TRUE(
      policy.Enforce(policies::kSystemOrDomainOrProjectAdmin, system_admin, PolicyTarget{}));
}

TEST(PolicyDefaultsTest, AdminApiPassesOnIsAdminAlone) {
  // is_admin:True is the first branch of admin_api; the persona rules need the role instead.
  const Policy policy = Policy::Default();
  PolicyCredentials flagged = Caller({});
  flagged.is_admin = true;
  EXPECT_TRUE(policy.Enforce(policies::kAdminApi, flagged, PolicyTarget{}));
  EXPECT_FALSE(policy.Enforce(policies::kVolumeGet, flagged, PolicyTarget{}));
  // And role:admin needs is_admin_project (true unless Keystone names an admin project).
  PolicyCredentials outside_admin_project = Caller({"admin"});
  outside_admin_project.is_admin_project = false;
  EXPECT_FALSE(policy.Enforce(policies::kAdminApi, outside_admin_project, PolicyTarget{}));
  outside_admin_project.is_admin_project = true;
  EXPECT_TRUE(policy.Enforce(policies::kAdminApi, outside_admin_project, PolicyTarget{}));
}

}  // namespace
}  // namespace clinker::domain
