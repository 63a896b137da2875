// Fuzz target: the policy-file parser and the rule language. The input is a policy file's text
// (policy.yaml; JSON is YAML too): ParsePolicyText reads it as the daemon does at start-up, the
// overrides it yields are compiled by Policy::Create (the oslo.policy check-string parser: rule
// references, and/or/not, parentheses, role:, %(...)s targets), and a policy that compiles is
// enforced for every rule Clinker has, for an admin, a member, a reader and a stranger.
//
// Findings: a crash, a sanitizer report, an exception out of the parser (it must answer an Error)
// or a hang (libFuzzer's -timeout) on rules that refer to each other.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "clinker/adapters/os/policy_file.h"
#include "clinker/domain/policy.h"

namespace {

using clinker::domain::PolicyCredentials;

std::vector<PolicyCredentials> Callers() {
  std::vector<PolicyCredentials> callers(4);
  const char* roles[] = {"admin", "member", "reader", "stranger"};
  for (std::size_t i = 0; i < callers.size(); ++i) {
    callers[i].user_id = "user" + std::to_string(i);
    callers[i].project_id = "project";
    callers[i].user_domain_id = "default";
    callers[i].project_domain_id = "default";
    callers[i].roles = {roles[i]};
    callers[i].is_admin = i == 0;
    callers[i].attributes.emplace("domain_id", "default");
  }
  callers[3].project_id = "other";
  callers[3].system_scope = "all";
  return callers;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto overrides = clinker::adapters::ParsePolicyText(text, "policy.yaml");
  if (!overrides) {
    return 0;
  }
  auto policy = clinker::domain::Policy::Create(*overrides);
  if (!policy) {
    return 0;
  }
  static const std::vector<PolicyCredentials> kCallers = Callers();
  const auto target = clinker::domain::PolicyTarget::ForProject("project");
  for (const auto& rule : clinker::domain::PolicyDefaults()) {
    for (const auto& caller : kCallers) {
      (void)policy->Enforce(rule.name, caller, target);
    }
  }
  for (const auto& caller : kCallers) {
    (void)policy->IsAdmin(caller);
  }
  (void)policy->ExtraRuleNames();
  return 0;
}
