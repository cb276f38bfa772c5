// `signet admin`: the admin socket's commands (admin/API.md). `policy` lives in
// admin_policy_command.cc, `approvals` in admin_approvals_command.cc, `stats` in
// admin_stats_command.cc; this file holds the group itself and `keys list|generate|disable|enable`.
#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "appliance/cli/cli.h"
#include "appliance/cli/internal/admin.h"

namespace signet::cli {
namespace {

using nlohmann::json;

constexpr std::string_view kAdminFooter = R"footer(
Administers signetd over its admin socket: the policy (who may sign what, who administers),
keys (generated in the HSM, disabled, enabled), the sign requests held for approval, and
statistics. Every change is recorded in the audit log before signetd answers.

Examples:
  signet admin policy show --socket .signet/admin/admin.sock
  signet admin keys list
  signet admin approvals list
  signet admin stats)footer";

constexpr std::string_view kKeysFooter = R"footer(
`list` prints one key per line: name, algorithm, format, state, where it was defined (config or
admin-api), signatures made, and the SHA-256 fingerprint of its public key. `generate NAME`
creates a key inside the HSM (sign-only, sensitive, non-extractable) for one signature format;
`disable NAME` makes signetd refuse every sign request with it (403 key_disabled) until
`enable NAME`. The state persists across restarts.

Examples:
  signet admin keys list
  signet admin keys generate release-2027 --algorithm ecdsa-p256 --format raw --hsm main
  signet admin keys disable release-2026 --reason "rotated to release-2027"
  signet admin keys enable release-2026)footer";

// "key NAME: algorithm A, format F, enabled, fingerprint X", for generate/disable/enable.
std::string KeyLine(const json& key) {
  std::string line = fmt::format("key {}: {}, format {}, {}", Field(key, "name", "?"),
                                 Field(key, "algorithm", "?"), Field(key, "format", "?"),
                                 key.value("enabled", true) ? "enabled" : "disabled");
  if (const std::string fingerprint = Field(key, "fingerprint"); !fingerprint.empty()) {
    line += ", fingerprint " + fingerprint;
  }
  if (key.contains("attributes_ok") && !key.value("attributes_ok", true)) {
    line += fmt::format(" (HSM attributes NOT as required: {})", Field(key, "attributes", "?"));
  }
  return line + "\n";
}

class AdminKeysCommand final : public Command {
 public:
  CLI::App* Register(CLI::App& parent) override;
  int Run(Console& console) override;

 private:
  int List(Console& console);
  int Generate(Console& console);
  // disable and enable.
  int Toggle(Console& console, bool enable);

  CLI::App* list_ = nullptr;
  CLI::App* generate_ = nullptr;
  CLI::App* disable_ = nullptr;
  CLI::App* enable_ = nullptr;
  AdminOptions list_options_;
  AdminOptions generate_options_;
  AdminOptions disable_options_;
  AdminOptions enable_options_;
  std::string generate_name_;
  std::string algorithm_;
  std::string format_;
  std::string hsm_;
  std::string disable_name_;
  std::string enable_name_;
  std::string disable_reason_;
  std::string enable_reason_;
};

CLI::App* AdminKeysCommand::Register(CLI::App& parent) {
  CLI::App* app = parent.add_subcommand(
      "keys", "List, generate, disable and enable signing keys (role admin; list: auditor too)");
  app->require_subcommand(1, 1);
  const std::string footer = std::string(kKeysFooter) + "\n" + std::string(kAdminSocketHelp);
  app->footer(footer);

  list_ = app->add_subcommand("list", "Every key with its state and signature count");
  list_options_.Register(list_);
  list_->footer(footer);

  generate_ = app->add_subcommand("generate", "Generate a key inside the HSM");
  generate_->add_option("NAME", generate_name_, "The new key's name")->required();
  generate_->add_option("--algorithm", algorithm_, "The key's algorithm, e.g. ecdsa-p256, rsa-3072")
      ->required()
      ->type_name("A");
  generate_
      ->add_option("--format", format_,
                   "The one signature format it signs in, e.g. raw, batch, openpgp, ssh")
      ->required()
      ->type_name("F");
  generate_->add_option("--hsm", hsm_, "The [[hsm]] to generate it in (default: signetd's)")
      ->type_name("H");
  generate_options_.Register(generate_);
  generate_->footer(footer);

  disable_ = app->add_subcommand("disable", "Refuse every sign request with a key");
  disable_->add_option("NAME", disable_name_, "The key's name")->required();
  disable_->add_option("--reason", disable_reason_, "Why; kept in the audit record")
      ->type_name("R");
  disable_options_.Register(disable_);
  disable_->footer(footer);

  enable_ = app->add_subcommand("enable", "Let a disabled key sign again");
  enable_->add_option("NAME", enable_name_, "The key's name")->required();
  enable_->add_option("--reason", enable_reason_, "Why; kept in the audit record")->type_name("R");
  enable_options_.Register(enable_);
  enable_->footer(footer);
  return app;
}

int AdminKeysCommand::List(Console& console) {
  constexpr std::string_view kCommand = "admin keys list";
  const auto answer = AdminRequest(console, kCommand, list_options_, {.target = "/v1/keys"});
  if (!answer) {
    return kExitFailed;
  }
  const auto body = ParseAnswer(console, kCommand, *answer);
  if (!body) {
    return kExitFailed;
  }
  if (!body->contains("keys") || !(*body)["keys"].is_array() ||
      !std::all_of((*body)["keys"].begin(), (*body)["keys"].end(),
                   [](const json& key) { return key.is_object(); })) {
    console.Error(fmt::format("{}: signetd's list of keys is malformed", kCommand));
    return kExitFailed;
  }
  if (list_options_.json) {
    console.Out(AsIs(answer->body));
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "ALGORITHM", "FORMAT", "STATE", "ORIGIN", "SIGNATURES", "FINGERPRINT"}};
  for (const json& key : (*body)["keys"]) {
    std::string state = key.value("enabled", true) ? "enabled" : "disabled";
    if (!key.value("attributes_ok", true)) {
      state += ",BAD-ATTRIBUTES";
    }
    rows.push_back({Field(key, "name", "?"), Field(key, "algorithm", "?"),
                    Field(key, "format", "?"), std::move(state), Field(key, "origin", "?"),
                    key.contains("signatures") ? key["signatures"].dump() : "?",
                    Field(key, "fingerprint", "?")});
  }
  std::vector<std::size_t> widths(rows.front().size(), 0);
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      out += i + 1 == row.size() ? row[i] + "\n" : fmt::format("{:<{}}  ", row[i], widths[i]);
    }
  }
  for (const json& key : (*body)["keys"]) {
    if (!key.value("attributes_ok", true)) {
      out += fmt::format("{}: HSM attributes not as required: {}\n", Field(key, "name", "?"),
                         Field(key, "attributes", "?"));
    }
  }
  console.Out(out);
  return kExitOk;
}

int AdminKeysCommand::Generate(Console& console) {
  constexpr std::string_view kCommand = "admin keys generate";
  if (!ValidKeyName(generate_name_)) {
    return UsageError(console, kCommand,
                      fmt::format("'{}': key names are 1 to 128 of A-Z a-z 0-9 . _ -",
                                  DisplayName(generate_name_)));
  }
  json request{{"name", generate_name_}, {"algorithm", algorithm_}, {"format", format_}};
  if (!hsm_.empty()) {
    request["hsm"] = hsm_;
  }
  std::string body_text;
  try {
    body_text = request.dump();
  } catch (const json::exception&) {
    return UsageError(console, kCommand, "--algorithm, --format and --hsm must be UTF-8");
  }
  const auto answer = AdminRequest(
      console, kCommand, generate_options_,
      {.method = "POST", .target = "/v1/keys", .body = std::move(body_text), .accepted = {201}});
  if (!answer) {
    return kExitFailed;
  }
  const auto key = ParseAnswer(console, kCommand, *answer);
  if (!key) {
    return kExitFailed;
  }
  console.Out(generate_options_.json ? AsIs(answer->body) : "generated " + KeyLine(*key));
  return kExitOk;
}

int AdminKeysCommand::Toggle(Console& console, bool enable) {
  const std::string command = enable ? "admin keys enable" : "admin keys disable";
  const std::string& name = enable ? enable_name_ : disable_name_;
  const std::string& reason = enable ? enable_reason_ : disable_reason_;
  const AdminOptions& options = enable ? enable_options_ : disable_options_;
  if (!ValidKeyName(name)) {
    return UsageError(
        console, command,
        fmt::format("'{}': key names are 1 to 128 of A-Z a-z 0-9 . _ -", DisplayName(name)));
  }
  json request = json::object();
  if (!reason.empty()) {
    request["reason"] = reason;
  }
  std::string body_text;
  try {
    body_text = request.dump();
  } catch (const json::exception&) {
    return UsageError(console, command, "--reason must be UTF-8");
  }
  const auto answer =
      AdminRequest(console, command, options,
                   {.method = "POST",
                    .target = "/v1/keys/" + name + (enable ? "/enable" : "/disable"),
                    .body = std::move(body_text)});
  if (!answer) {
    return kExitFailed;
  }
  const auto key = ParseAnswer(console, command, *answer);
  if (!key) {
    return kExitFailed;
  }
  if (options.json) {
    console.Out(AsIs(answer->body));
  } else {
    console.Out(KeyLine(*key) +
                (enable ? "it signs again\n"
                        : "sign requests with it are refused (403 key_disabled) until `signet "
                          "admin keys enable " +
                              name + "`\n"));
  }
  return kExitOk;
}

int AdminKeysCommand::Run(Console& console) {
  if (list_->parsed()) {
    return List(console);
  }
  if (generate_->parsed()) {
    return Generate(console);
  }
  return Toggle(console, /*enable=*/enable_->parsed());
}

// `signet admin`: its three groups, one of which runs.
class AdminCommand final : public Command {
 public:
  CLI::App* Register(CLI::App& parent) override {
    CLI::App* app = parent.add_subcommand(
        "admin",
        "Administer signetd: policy, keys, approvals and statistics over its admin socket");
    app->require_subcommand(1, 1);
    app->footer(std::string(kAdminFooter) + "\n" + std::string(kAdminSocketHelp));
    for (auto* command : {&policy_, &keys_, &approvals_, &stats_}) {
      registered_.emplace_back((*command)->Register(*app), command->get());
    }
    return app;
  }

  int Run(Console& console) override {
    for (auto& [app, command] : registered_) {
      if (app->parsed()) {
        return command->Run(console);
      }
    }
    return kExitUsage;  // unreachable: require_subcommand(1, 1)
  }

 private:
  std::unique_ptr<Command> policy_ = MakeAdminPolicyCommand();
  std::unique_ptr<Command> keys_ = MakeAdminKeysCommand();
  std::unique_ptr<Command> approvals_ = MakeAdminApprovalsCommand();
  std::unique_ptr<Command> stats_ = MakeAdminStatsCommand();
  std::vector<std::pair<CLI::App*, Command*>> registered_;
};

}  // namespace

std::unique_ptr<Command> MakeAdminKeysCommand() { return std::make_unique<AdminKeysCommand>(); }

std::unique_ptr<Command> MakeAdminCommand() { return std::make_unique<AdminCommand>(); }

}  // namespace signet::cli
