#include "clinker/adapters/os/policy_file.h"

#include <cerrno>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <string_view>
#include <system_error>

#include <yaml-cpp/yaml.h>

#include "clinker/core/error.h"

namespace clinker::adapters {

namespace {

Error FileError(ErrorCode code, std::string_view file_name, const std::string& problem) {
  return Error{code, "policy file " + std::string(file_name) + ": " + problem};
}

std::string LineOf(const YAML::Mark& mark) {
  return mark.is_null() ? std::string() : " (line " + std::to_string(mark.line + 1) + ")";
}

// What YAML 1.1 (PyYAML's safe_load, which oslo.policy uses) reads a plain scalar as, when that
// is not a string. A policy written for Cinder relies on that reading, so such a value here is a
// mistake to report rather than text to parse as a rule.
const char* PlainScalarType(const std::string& text) {
  static const std::regex kNull("~|null|Null|NULL|");
  static const std::regex kBool(
      "yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF");
  static const std::regex kInt("[-+]?(0|[1-9][0-9_]*|0[0-7_]+|0x[0-9a-fA-F_]+|0b[01_]+)");
  static const std::regex kFloat(
      "[-+]?[0-9][0-9_]*\\.[0-9_]*([eE][-+][0-9]+)?|\\.[0-9_]+([eE][-+][0-9]+)?|"
      "[-+]?\\.(inf|Inf|INF)|\\.(nan|NaN|NAN)");
  if (std::regex_match(text, kNull)) {
    return "null";
  }
  if (std::regex_match(text, kBool)) {
    return "a boolean";
  }
  if (std::regex_match(text, kInt)) {
    return "an integer";
  }
  if (std::regex_match(text, kFloat)) {
    return "a number";
  }
  return nullptr;
}

Result<PolicyOverrides> ParseRoot(const YAML::Node& root, std::string_view file_name) {
  PolicyOverrides overrides;
  if (root.IsNull()) {
    return overrides;  // Empty, or only comments: no overrides (oslo: `data or {}`).
  }
  if (!root.IsMap()) {
    return tl::unexpected(
        FileError(ErrorCode::kInvalidArgument,
                  file_name,
                  "is not a mapping of rule names to rules" + LineOf(root.Mark())));
  }
  // `*it` is a temporary (key, value) pair: the range-for keeps it alive, `it->first` would not.
  for (const auto& entry : root) {
    const YAML::Node& key = entry.first;
    const YAML::Node& value = entry.second;
    if (!key.IsScalar() || key.Scalar().empty()) {
      return tl::unexpected(FileError(
          ErrorCode::kInvalidArgument, file_name, "a rule name is not text" + LineOf(key.Mark())));
    }
    const std::string& name = key.Scalar();
    // "rule "<name>" <problem> (line N)<advice>".
    auto refuse = [&](std::string_view problem, std::string_view advice) {
      std::string message = "rule \"";
      message += name;
      message += "\" ";
      message += problem;
      message += LineOf(key.Mark());
      message += advice;
      return tl::unexpected(FileError(ErrorCode::kInvalidArgument, file_name, message));
    };
    if (value.IsNull()) {
      return refuse("has no value", "; write \"\" to allow everyone, \"!\" to allow no one");
    }
    if (!value.IsScalar()) {
      return refuse(value.IsSequence() ? "is a list" : "is a mapping", ", not a check string");
    }
    const std::string& tag = value.Tag();
    if (tag == "?") {
      if (const char* other_type = PlainScalarType(value.Scalar()); other_type != nullptr) {
        return refuse(std::string("is ") + other_type, ", not a string (quote it)");
      }
    } else if (tag != "!" && tag != "tag:yaml.org,2002:str") {
      return refuse("is tagged " + tag, ", not a string");
    }
    if (!overrides.emplace(name, value.Scalar()).second) {
      return refuse("is defined twice", "");
    }
  }
  return overrides;
}

}  // namespace

Result<PolicyOverrides> ParsePolicyText(std::string_view text, std::string_view file_name) {
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    return ParseRoot(root, file_name);
  } catch (const YAML::Exception& error) {
    std::string where;
    if (!error.mark.is_null()) {
      where = " at line " + std::to_string(error.mark.line + 1) + ", column " +
              std::to_string(error.mark.column + 1);
    }
    return tl::unexpected(FileError(ErrorCode::kInvalidArgument,
                                    file_name,
                                    "is not valid YAML or JSON" + where + ": " + error.msg));
  } catch (const std::exception& error) {
    return tl::unexpected(FileError(
        ErrorCode::kInvalidArgument, file_name, std::string("cannot be read: ") + error.what()));
  }
}

Result<PolicyOverrides> ReadPolicyFile(const std::string& path) {
  std::error_code error;
  const std::filesystem::file_status status = std::filesystem::status(path, error);
  if (status.type() == std::filesystem::file_type::not_found) {
    return tl::unexpected(FileError(ErrorCode::kNotFound, path, "does not exist"));
  }
  if (error) {
    return tl::unexpected(
        FileError(ErrorCode::kInvalidArgument, path, "cannot be read: " + error.message()));
  }
  if (status.type() == std::filesystem::file_type::directory) {
    return tl::unexpected(FileError(ErrorCode::kInvalidArgument, path, "is a directory"));
  }
  std::string text;
  try {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      const std::error_code open_error(errno, std::generic_category());
      return tl::unexpected(
          FileError(ErrorCode::kInvalidArgument, path, "cannot be read: " + open_error.message()));
    }
    // Read one byte past the limit, so an oversized file is told apart from one at the limit.
    text.resize(kMaxPolicyFileBytes + 1);
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    if (in.bad()) {
      return tl::unexpected(FileError(ErrorCode::kInvalidArgument, path, "cannot be read"));
    }
    text.resize(static_cast<std::size_t>(in.gcount()));
  } catch (const std::exception& exception) {
    return tl::unexpected(FileError(
        ErrorCode::kInvalidArgument, path, std::string("cannot be read: ") + exception.what()));
  }
  if (text.size() > kMaxPolicyFileBytes) {
    return tl::unexpected(
        FileError(ErrorCode::kInvalidArgument,
                  path,
                  "is larger than " + std::to_string(kMaxPolicyFileBytes) + " bytes"));
  }
  return ParsePolicyText(text, path);
}

}  // namespace clinker::adapters
