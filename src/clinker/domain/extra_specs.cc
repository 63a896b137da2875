#include "clinker/domain/extra_specs.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

namespace clinker::domain {
namespace {

std::vector<std::string> Words(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    words.push_back(word);
  }
  return words;
}

std::optional<double> Number(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  double value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) {
    return std::nullopt;
  }
  return value;
}

std::optional<bool> Truth(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) {
    return static_cast<char>(std::tolower(c));
  });
  if (text == "true" || text == "1" || text == "yes" || text == "on" || text == "t" ||
      text == "y") {
    return true;
  }
  if (text == "false" || text == "0" || text == "no" || text == "off" || text == "f" ||
      text == "n") {
    return false;
  }
  return std::nullopt;
}

// The text after the operator word.
std::string Rest(const std::string& requirement, std::string_view op) {
  std::string rest = requirement.substr(requirement.find(op) + op.size());
  std::size_t start = rest.find_first_not_of(' ');
  return start == std::string::npos ? std::string() : rest.substr(start);
}

}  // namespace

bool RequirementMatches(const std::string& capability, const std::string& requirement) {
  const std::vector<std::string> words = Words(requirement);
  if (words.empty()) {
    return capability == requirement;
  }
  const std::string& op = words[0];
  if (op == "<is>") {
    if (words.size() < 2) {
      return false;
    }
    std::optional<bool> wanted = Truth(words[1]);
    std::optional<bool> have = Truth(capability);
    return wanted && have && *wanted == *have;
  }
  if (op == "<in>") {
    return capability.find(Rest(requirement, "<in>")) != std::string::npos;
  }
  if (op == "<all-in>") {
    std::vector<std::string> have = Words(capability);
    std::set<std::string> have_set(have.begin(), have.end());
    return std::all_of(words.begin() + 1, words.end(), [&](const std::string& word) {
      return have_set.contains(word);
    });
  }
  if (op == "<or>") {
    // "<or> a <or> b": every other word is an option.
    for (std::size_t i = 1; i < words.size(); i += 2) {
      if (words[i] == capability) {
        return true;
      }
    }
    return false;
  }
  static const std::set<std::string> kNumeric = {"=", "==", "!=", ">=", "<="};
  if (kNumeric.contains(op)) {
    if (words.size() < 2) {
      return false;
    }
    std::optional<double> have = Number(capability);
    std::optional<double> wanted = Number(words[1]);
    if (!have || !wanted) {
      return false;
    }
    if (op == "=" || op == ">=") {
      return *have >= *wanted;
    }
    if (op == "==") {
      return *have == *wanted;
    }
    if (op == "!=") {
      return *have != *wanted;
    }
    return *have <= *wanted;
  }
  static const std::set<std::string> kText = {"s==", "s!=", "s>=", "s<=", "s<", "s>"};
  if (kText.contains(op)) {
    if (words.size() < 2) {
      return false;
    }
    const std::string& wanted = words[1];
    if (op == "s==") {
      return capability == wanted;
    }
    if (op == "s!=") {
      return capability != wanted;
    }
    if (op == "s>=") {
      return capability >= wanted;
    }
    if (op == "s<=") {
      return capability <= wanted;
    }
    if (op == "s<") {
      return capability < wanted;
    }
    return capability > wanted;
  }
  return capability == requirement;
}

bool ExtraSpecsMatch(const std::map<std::string, std::string>& extra_specs,
                     const Capabilities& capabilities,
                     std::string* why) {
  for (const auto& [key, requirement] : extra_specs) {
    std::string name = key;
    if (std::size_t colon = key.find(':'); colon != std::string::npos) {
      if (key.substr(0, colon) != "capabilities") {
        continue;  // Another scope: for the driver or the API, not for placement.
      }
      name = key.substr(colon + 1);
    }
    auto have = capabilities.find(name);
    if (have == capabilities.end() || !RequirementMatches(have->second, requirement)) {
      if (why != nullptr) {
        std::string text = "capability " + name + " is ";
        if (have == capabilities.end()) {
          text += "not reported";
        } else {
          text += "'";
          text += have->second;
          text += "'";
        }
        text += ", the volume type asks '";
        text += requirement;
        text += "'";
        *why = std::move(text);
      }
      return false;
    }
  }
  return true;
}

}  // namespace clinker::domain
