// The TOML policy reader. It checks everything a rule says before the policy exists, so that a
// typo refuses the file (and the daemon keeps its previous policy) instead of silently widening
// or narrowing who may sign. Problems are collected, not stopped at, so one pass over the file
// shows the author every line to fix.
#include <toml++/toml.h>
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "appliance/policy/internal/parse.h"
#include "appliance/policy/internal/text.h"

namespace signet::policy::internal {
namespace {

constexpr std::size_t kMaxReported = 20;
constexpr std::string_view kRuleKeys =
    "name, description, keys, principals, tools, artifacts, max_items, rate_per_hour, approvals, "
    "approvers";

std::string_view TypeName(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time:
      return "a date or time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

bool ValidRuleName(std::string_view name) {
  if (name.empty() || name.size() > kMaxRuleNameBytes) {
    return false;
  }
  const auto ok = [](char c, bool first) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
           (!first && (c == '.' || c == '_' || c == '-'));
  };
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (!ok(name[i], i == 0)) {
      return false;
    }
  }
  return true;
}

class Reader {
 public:
  explicit Reader(std::string_view source_name) : source_name_(source_name) {}

  void Problem(const toml::source_region& where, std::string message) {
    problems_.push_back({where.begin.line, where.begin.column, std::move(message)});
  }

  Result<ParsedPolicy> Finish(ParsedPolicy parsed) {
    if (problems_.empty()) {
      return parsed;
    }
    std::stable_sort(problems_.begin(), problems_.end(), [](const auto& a, const auto& b) {
      return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    std::string message;
    for (std::size_t i = 0; i < problems_.size() && i < kMaxReported; ++i) {
      if (i > 0) {
        message += '\n';
      }
      message += Location(problems_[i].line, problems_[i].column) + ": " + problems_[i].message;
    }
    if (problems_.size() > kMaxReported) {
      message += "\n" + std::to_string(problems_.size() - kMaxReported) + " more problems";
    }
    return MakeError(ErrorCode::kInvalidArgument, std::move(message));
  }

  std::string Location(std::uint32_t line, std::uint32_t column) const {
    return std::string(source_name_) + ":" + std::to_string(line) + ":" + std::to_string(column);
  }

  std::optional<std::string> String(const toml::node& node, std::string_view what) {
    const auto* value = node.as_string();
    if (value == nullptr) {
      Problem(node.source(),
              std::string(what) + " must be a string, not " + std::string(TypeName(node)));
      return std::nullopt;
    }
    const std::string& text = value->get();
    if (text.size() > kMaxStringBytes) {
      Problem(node.source(), std::string(what) + " is " + std::to_string(text.size()) +
                                 " bytes long; at most " + std::to_string(kMaxStringBytes));
      return std::nullopt;
    }
    return text;
  }

  // A non-empty array of strings. Each element is handed to `check`, which reports its own
  // problems and returns false to leave the element out.
  template <class Check>
  bool StringList(const toml::node& node, std::string_view what, Check check) {
    const auto* array = node.as_array();
    if (array == nullptr) {
      Problem(node.source(), std::string(what) + " must be an array of strings, not " +
                                 std::string(TypeName(node)));
      return false;
    }
    if (array->empty()) {
      Problem(node.source(), std::string(what) +
                                 " is empty; a rule needs at least one (leave it out to mean "
                                 "any, where that is allowed)");
      return false;
    }
    bool ok = true;
    for (const toml::node& element : *array) {
      std::optional<std::string> text = String(element, std::string(what) + " entry");
      ok = text.has_value() && check(element, *text) && ok;
    }
    return ok;
  }

  // A list of principal patterns ("user:NAME", ...), appended to `out`.
  bool Principals(const toml::node& node, std::string_view what,
                  std::vector<PrincipalPattern>& out) {
    return StringList(node, what, [&](const toml::node& element, const std::string& text) {
      Result<PrincipalPattern> pattern = PrincipalPattern::Parse(text);
      if (!pattern) {
        Problem(element.source(), pattern.error().message());
        return false;
      }
      out.push_back(*std::move(pattern));
      return true;
    });
  }

  bool Globs(const toml::node& node, std::string_view what, std::vector<std::string>& out) {
    return StringList(node, what, [&](const toml::node& element, const std::string& text) {
      if (text.empty()) {
        Problem(element.source(), std::string(what) + " entry is an empty pattern");
        return false;
      }
      if (Status glob = CheckGlob(text); !glob) {
        Problem(element.source(),
                std::string(what) + " pattern " + Quoted(text) + ": " + glob.error().message());
        return false;
      }
      out.push_back(text);
      return true;
    });
  }

  std::optional<std::uint64_t> Integer(const toml::node& node, std::string_view what,
                                       std::int64_t min, std::uint64_t max) {
    const auto* value = node.as_integer();
    if (value == nullptr) {
      Problem(node.source(),
              std::string(what) + " must be an integer, not " + std::string(TypeName(node)));
      return std::nullopt;
    }
    const std::int64_t number = value->get();
    if (number < min || static_cast<std::uint64_t>(number) > max) {
      Problem(node.source(), std::string(what) + " = " + std::to_string(number) +
                                 " is out of range (" + std::to_string(min) + " to " +
                                 std::to_string(max) + ")");
      return std::nullopt;
    }
    return static_cast<std::uint64_t>(number);
  }

  void ReadRule(const toml::table& table, std::vector<Rule>& rules,
                std::map<std::string, std::uint32_t, std::less<>>& names);
  void ReadRoles(const toml::table& table, std::map<Role, std::vector<PrincipalPattern>>& roles);

 private:
  struct Finding {
    std::uint32_t line;
    std::uint32_t column;
    std::string message;
  };

  std::string_view source_name_;
  std::vector<Finding> problems_;
};

void Reader::ReadRule(const toml::table& table, std::vector<Rule>& rules,
                      std::map<std::string, std::uint32_t, std::less<>>& names) {
  Rule rule;
  rule.line = static_cast<int>(table.source().begin.line);
  bool ok = true;
  bool has_keys = false;
  bool has_principals = false;
  const toml::node* name_node = nullptr;
  const toml::node* approvers_node = nullptr;
  bool approvals_read = true;  // false when `approvals` is present but refused
  for (auto&& [key, node] : table) {
    const std::string_view field = key.str();
    if (field == "name") {
      name_node = &node;
    } else if (field == "description") {
      std::optional<std::string> text = String(node, "description");
      ok = text.has_value() && ok;
      rule.description = text.value_or("");
    } else if (field == "keys") {
      has_keys = true;
      ok = Globs(node, "keys", rule.keys) && ok;
    } else if (field == "principals") {
      has_principals = true;
      ok = Principals(node, "principals", rule.principals) && ok;
    } else if (field == "tools") {
      ok = Globs(node, "tools", rule.tools) && ok;
    } else if (field == "artifacts") {
      ok = Globs(node, "artifacts", rule.artifacts) && ok;
    } else if (field == "max_items") {
      std::optional<std::uint64_t> n = Integer(node, "max_items", 1, kMaxMaxItems);
      ok = n.has_value() && ok;
      rule.max_items = n.value_or(0);
    } else if (field == "rate_per_hour") {
      std::optional<std::uint64_t> n = Integer(node, "rate_per_hour", 1, kMaxRatePerHour);
      ok = n.has_value() && ok;
      rule.rate_per_hour = n;
    } else if (field == "approvals") {
      std::optional<std::uint64_t> n = Integer(node, "approvals", 0, kMaxApprovals);
      approvals_read = n.has_value();
      ok = n.has_value() && ok;
      rule.approvals = static_cast<std::uint32_t>(n.value_or(0));
    } else if (field == "approvers") {
      approvers_node = &node;
      ok = Principals(node, "approvers", rule.approvers) && ok;
    } else {
      Problem(key.source(), "unknown key " + Quoted(field) +
                                " in [[rule]] (keys: " + std::string(kRuleKeys) + ")");
      ok = false;
    }
  }
  // Checked after the loop: the table's keys do not come in file order. An `approvals` already
  // refused has its own problem; saying "needs approvals > 0" as well would only mislead.
  if (approvers_node != nullptr && approvals_read && rule.approvals == 0) {
    Problem(approvers_node->source(), "approvers needs approvals > 0");
    ok = false;
  }
  if (name_node == nullptr) {
    Problem(table.source(), "[[rule]] has no name");
    ok = false;
  } else if (std::optional<std::string> name = String(*name_node, "name"); !name) {
    ok = false;
  } else if (!ValidRuleName(*name)) {
    Problem(name_node->source(),
            "rule name " + Quoted(*name) +
                " must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or "
                "digit");
    ok = false;
  } else if (auto first = names.find(*name); first != names.end()) {
    Problem(name_node->source(), "duplicate rule name " + Quoted(*name) + " (first at line " +
                                     std::to_string(first->second) + ")");
    ok = false;
  } else {
    names.emplace(*name, name_node->source().begin.line);
    rule.name = *std::move(name);
  }
  const std::string label = rule.name.empty() ? "[[rule]]" : "rule " + rule.name;
  if (!has_keys) {
    Problem(table.source(), label + " has no keys (key name patterns)");
    ok = false;
  }
  if (!has_principals) {
    Problem(table.source(), label + " has no principals");
    ok = false;
  }
  if (ok) {
    rules.push_back(std::move(rule));
  }
}

void Reader::ReadRoles(const toml::table& table,
                       std::map<Role, std::vector<PrincipalPattern>>& roles) {
  for (auto&& [key, node] : table) {
    Result<Role> role = ParseRole(key.str());
    if (!role) {
      Problem(key.source(), role.error().message() + " in [roles]");
      continue;
    }
    std::vector<PrincipalPattern>& members = roles[*role];
    (void)StringList(node, RoleName(*role),
                     [&](const toml::node& element, const std::string& text) {
                       Result<PrincipalPattern> pattern = PrincipalPattern::Parse(text);
                       if (!pattern) {
                         Problem(element.source(), pattern.error().message());
                         return false;
                       }
                       using Kind = PrincipalPattern::Kind;
                       if (pattern->kind != Kind::kUser && pattern->kind != Kind::kUid &&
                           pattern->kind != Kind::kGroup) {
                         Problem(element.source(),
                                 "role members are user:NAME, uid:N or group:NAME (the admin "
                                 "socket sees only local peers), not " +
                                     Quoted(text));
                         return false;
                       }
                       members.push_back(*std::move(pattern));
                       return true;
                     });
  }
}

}  // namespace

Result<ParsedPolicy> ParsePolicyToml(std::string_view text, std::string_view source_name) {
  Reader reader(source_name);
  if (text.size() > kMaxPolicyBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     reader.Location(1, 1) + ": policy is " + std::to_string(text.size()) +
                         " bytes; at most " + std::to_string(kMaxPolicyBytes));
  }
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& error) {
    return MakeError(ErrorCode::kInvalidArgument,
                     reader.Location(error.source().begin.line, error.source().begin.column) +
                         ": " + std::string(error.description()));
  }

  ParsedPolicy parsed;
  std::map<std::string, std::uint32_t, std::less<>> names;
  for (auto&& [key, node] : root) {
    const std::string_view field = key.str();
    if (field == "rule") {
      const toml::array* array = node.as_array();
      if (array == nullptr || !array->is_array_of_tables()) {
        reader.Problem(node.source(), "'rule' must be [[rule]] tables");
        continue;
      }
      std::size_t count = 0;
      for (const toml::node& element : *array) {
        if (++count > kMaxRules) {
          reader.Problem(element.source(), "too many rules: at most " + std::to_string(kMaxRules));
          break;
        }
        reader.ReadRule(*element.as_table(), parsed.rules, names);
      }
    } else if (field == "roles") {
      if (const toml::table* table = node.as_table(); table != nullptr) {
        reader.ReadRoles(*table, parsed.roles);
      } else {
        reader.Problem(node.source(), "'roles' must be a [roles] table");
      }
    } else {
      reader.Problem(key.source(), "unknown key " + Quoted(field) +
                                       " (a policy holds [[rule]] tables and one [roles] table)");
    }
  }
  return reader.Finish(std::move(parsed));
}

}  // namespace signet::policy::internal
