// `signet admin approvals list|show|approve|deny`: the held sign requests (admin/API.md,
// "Approvals"). A policy rule with `approvals = M` holds each request it decides until M distinct
// approvers other than the requester approve it; these commands list them and approve or deny.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "appliance/cli/cli.h"
#include "appliance/cli/internal/admin.h"

namespace signet::cli {
namespace {

using nlohmann::json;

constexpr std::string_view kFooter = R"footer(
A policy rule with `approvals = M` holds every sign request it decides: nothing is signed until M
distinct approvers have approved it (`approvers = [...]` in the rule names who may; without it,
anyone with the approver role). The requester can never approve their own request. The M-th
approval has signetd check the policy in force again and sign; the requester's `signet sign
--wait` then writes the signatures. A denial (--reason is required) ends the request; so does its
expiry ([limits] approval_ttl_ms, default 24 hours). Every approval, denial and expiry is an audit
record.

`list` prints the pending requests (--all: every request signetd still holds, whatever its
state), oldest first; `show ID` one request with every artifact and its digests.

Examples:
  signet admin approvals list
  signet admin approvals show 7f3a9c
  signet admin approvals approve 7f3a9c
  signet admin approvals deny 7f3a9c --reason "not a release build")footer";

// Approval IDs in URL paths: 1 to 128 of A-Z a-z 0-9 . _ -, and not a dot segment.
bool ValidApprovalId(std::string_view id) { return ValidKeyName(id) && id != "." && id != ".."; }

std::uint64_t Count(const json& object, const char* name) {
  return object.is_object() && object.contains(name) && object[name].is_number_unsigned()
             ? object[name].get<std::uint64_t>()
             : 0;
}

std::size_t ApprovalsGiven(const json& approval) {
  return approval.contains("approvals") && approval["approvals"].is_array()
             ? approval["approvals"].size()
             : 0;
}

// "k/M".
std::string ApprovalFraction(const json& approval) {
  return fmt::format("{}/{}", ApprovalsGiven(approval), Count(approval, "approvals_required"));
}

// How long until `time_us`: "23h59m", "4m10s", "12s"; "expired" once passed.
std::string TimeUntil(std::int64_t time_us) {
  const std::int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  if (time_us <= now_us) {
    return "expired";
  }
  const std::int64_t s = (time_us - now_us) / 1000000;
  if (s >= 86400) {
    return fmt::format("{}d{}h", s / 86400, s % 86400 / 3600);
  }
  if (s >= 3600) {
    return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  }
  if (s >= 60) {
    return fmt::format("{}m{:02}s", s / 60, s % 60);
  }
  return fmt::format("{}s", s);
}

std::string ExpiresIn(const json& approval) {
  if (Field(approval, "status") != "pending") {
    return "-";
  }
  if (!approval.contains("expires_time_us") || !approval["expires_time_us"].is_number_integer()) {
    return "?";
  }
  return TimeUntil(approval["expires_time_us"].get<std::int64_t>());
}

std::string TimeField(const json& object, const char* name) {
  return object.is_object() && object.contains(name) && object[name].is_number_integer()
             ? Rfc3339(object[name].get<std::int64_t>())
             : std::string("?");
}

// Rows as columns two spaces apart, the last column unpadded.
std::string Table(const std::vector<std::vector<std::string>>& rows) {
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
  return out;
}

// One artifact of `show`: "NAME  SIZE bytes  sha256:HEX ...". Older answers (or the list's first
// 20) give names only.
std::string ArtifactLine(const json& artifact) {
  if (artifact.is_string()) {
    return DisplayName(artifact.get<std::string>());
  }
  std::string line = Field(artifact, "name", "?");
  if (artifact.contains("size") && artifact["size"].is_number_unsigned()) {
    line += fmt::format("  {} bytes", artifact["size"].get<std::uint64_t>());
  }
  if (artifact.contains("digests") && artifact["digests"].is_object()) {
    for (const auto& [algorithm, hex] : artifact["digests"].items()) {
      line += fmt::format("  {}:{}", DisplayName(algorithm),
                          hex.is_string() ? DisplayName(hex.get<std::string>()) : hex.dump());
    }
  }
  return line;
}

// What a refusal of approve or deny means and what to do about it; empty for the codes the
// generic description covers (role_required, audit_unavailable, ...).
std::string RefusalHint(const std::string& code, const std::string& id) {
  if (code == "self_approval") {
    return "a requester never approves their own request: ask another approver (one the rule's "
           "approvers name, or anyone with the approver role) to run `signet admin approvals "
           "approve " +
           id + "`";
  }
  if (code == "not_an_approver") {
    return "ask one of the rule's approvers (`signet admin policy show` lists them), or an admin "
           "to add you to them";
  }
  if (code == "already_approved") {
    return "each approver counts once; `signet admin approvals show " + id + "` lists who approved";
  }
  if (code == "not_pending") {
    return "it can no longer change; `signet admin approvals show " + id + "` says how it ended";
  }
  if (code == "unknown_approval") {
    return "`signet admin approvals list --all` lists the requests signetd holds";
  }
  return "";
}

// Prints signetd's refusal of what was asked about approval `id`, with what to do; kExitFailed.
int Refused(Console& console, std::string_view command, const HttpAnswer& answer,
            const std::string& id) {
  const json refusal = json::parse(answer.body, nullptr, /*allow_exceptions=*/false);
  const std::string hint = RefusalHint(Field(refusal, "code"), DisplayName(id));
  console.Error(fmt::format("{}: {}{}", command, DescribeAdminRefusal(answer),
                            hint.empty() ? "" : "; " + hint));
  return kExitFailed;
}

class AdminApprovalsCommand final : public Command {
 public:
  CLI::App* Register(CLI::App& parent) override;
  int Run(Console& console) override;

 private:
  int List(Console& console);
  int Show(Console& console);
  // approve and deny.
  int Decide(Console& console, bool approve);

  CLI::App* list_ = nullptr;
  CLI::App* show_ = nullptr;
  CLI::App* approve_ = nullptr;
  CLI::App* deny_ = nullptr;
  AdminOptions list_options_;
  AdminOptions show_options_;
  AdminOptions approve_options_;
  AdminOptions deny_options_;
  bool all_ = false;
  std::string show_id_;
  std::string approve_id_;
  std::string deny_id_;
  std::string reason_;
};

CLI::App* AdminApprovalsCommand::Register(CLI::App& parent) {
  CLI::App* app = parent.add_subcommand(
      "approvals", "List, show, approve and deny held sign requests (role approver)");
  app->require_subcommand(1, 1);
  const std::string footer = std::string(kFooter) + "\n" + std::string(kAdminSocketHelp);
  app->footer(footer);

  list_ = app->add_subcommand("list", "The held requests, oldest first (pending ones by default)");
  list_->add_flag("--all", all_, "Every request signetd holds: also approved, denied, expired");
  list_options_.Register(list_);
  list_->footer(footer);

  show_ = app->add_subcommand("show", "One request with every artifact and its digests");
  show_->add_option("ID", show_id_, "The approval ID (`list` shows it)")->required();
  show_options_.Register(show_);
  show_->footer(footer);

  approve_ = app->add_subcommand("approve", "Approve a request (the M-th approval has it signed)");
  approve_->add_option("ID", approve_id_, "The approval ID")->required();
  approve_options_.Register(approve_);
  approve_->footer(footer);

  deny_ = app->add_subcommand("deny", "Refuse a request: nothing of it is signed");
  deny_->add_option("ID", deny_id_, "The approval ID")->required();
  deny_->add_option("--reason", reason_, "Why; the requester sees it and the audit record keeps it")
      ->required()
      ->type_name("TEXT");
  deny_options_.Register(deny_);
  deny_->footer(footer);
  return app;
}

int AdminApprovalsCommand::List(Console& console) {
  constexpr std::string_view kCommand = "admin approvals list";
  const auto answer =
      AdminRequest(console, kCommand, list_options_,
                   {.target = all_ ? "/v1/approvals?status=all" : "/v1/approvals?status=pending"});
  if (!answer) {
    return kExitFailed;
  }
  const auto body = ParseAnswer(console, kCommand, *answer);
  if (!body) {
    return kExitFailed;
  }
  if (!body->contains("approvals") || !(*body)["approvals"].is_array() ||
      !std::all_of((*body)["approvals"].begin(), (*body)["approvals"].end(),
                   [](const json& approval) { return approval.is_object(); })) {
    console.Error(fmt::format("{}: signetd's list of approvals is malformed", kCommand));
    return kExitFailed;
  }
  if (list_options_.json) {
    console.Out(AsIs(answer->body));
    return kExitOk;
  }
  if ((*body)["approvals"].empty()) {
    console.Out(all_ ? "no held requests\n" : "no requests are waiting for approval\n");
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = {"ID",    "REQUESTER", "KEY",       "RULE",
                                     "ITEMS", "APPROVALS", "EXPIRES IN"};
  if (all_) {
    header.insert(header.begin() + 1, "STATUS");
  }
  rows.push_back(std::move(header));
  for (const json& approval : (*body)["approvals"]) {
    std::vector<std::string> row = {Field(approval, "id", "?"),
                                    Field(approval, "requester", "?"),
                                    Field(approval, "key", "?"),
                                    Field(approval, "rule", "?"),
                                    approval.contains("items") ? approval["items"].dump() : "?",
                                    ApprovalFraction(approval),
                                    ExpiresIn(approval)};
    if (all_) {
      row.insert(row.begin() + 1, Field(approval, "status", "?"));
    }
    rows.push_back(std::move(row));
  }
  console.Out(Table(rows));
  return kExitOk;
}

int AdminApprovalsCommand::Show(Console& console) {
  constexpr std::string_view kCommand = "admin approvals show";
  if (!ValidApprovalId(show_id_)) {
    return UsageError(
        console, kCommand,
        fmt::format("'{}': approval IDs are 1 to 128 of A-Z a-z 0-9 . _ -", DisplayName(show_id_)));
  }
  const auto answer = AdminRequest(console, kCommand, show_options_,
                                   {.target = "/v1/approvals/" + show_id_, .accepted = {200, 404}});
  if (!answer) {
    return kExitFailed;
  }
  if (answer->status != 200) {
    return Refused(console, kCommand, *answer, show_id_);
  }
  const auto body = ParseAnswer(console, kCommand, *answer);
  if (!body) {
    return kExitFailed;
  }
  if (show_options_.json) {
    console.Out(AsIs(answer->body));
    return kExitOk;
  }
  const json& a = *body;
  const std::string status = Field(a, "status", "?");
  std::string out = fmt::format("id         {}\nstatus     {}", Field(a, "id", "?"), status);
  if (status == "pending") {
    out += fmt::format(" ({} of {} approvals)", ApprovalsGiven(a), Count(a, "approvals_required"));
  }
  out += fmt::format("\nrequester  {}\nkey        {}\nrule       {}\n", Field(a, "requester", "?"),
                     Field(a, "key", "?"), Field(a, "rule", "?"));
  constexpr std::pair<const char*, const char*> kOptional[] = {
      {"tool     ", "tool"}, {"host     ", "client_host"}, {"ticket   ", "ticket"}};
  for (const auto& [label, field] : kOptional) {
    if (const std::string value = Field(a, field); !value.empty()) {
      out += fmt::format("{}  {}\n", label, value);
    }
  }
  out += fmt::format("created    {}\n", TimeField(a, "created_time_us"));
  out += fmt::format("expires    {}", TimeField(a, "expires_time_us"));
  if (status == "pending") {
    out += fmt::format(" (in {})", ExpiresIn(a));
  }
  out += fmt::format("\napprovals  {} of {} required\n", ApprovalsGiven(a),
                     Count(a, "approvals_required"));
  if (a.contains("approvals") && a["approvals"].is_array()) {
    for (const json& given : a["approvals"]) {
      out +=
          fmt::format("  {} at {}\n", Field(given, "identity", "?"), TimeField(given, "time_us"));
    }
  }
  if (const std::string reason = Field(a, "reason"); !reason.empty()) {
    out += fmt::format("reason     {}", reason);
    if (const std::string by = Field(a, "denied_by"); !by.empty()) {
      out += " (denied by " + by + ")";
    }
    out += "\n";
  }
  const json artifacts = a.value("artifacts", json::array());
  out += fmt::format("items      {}\n",
                     a.contains("items") ? a["items"].dump() : std::to_string(artifacts.size()));
  if (artifacts.is_array()) {
    for (const json& artifact : artifacts) {
      out += "  " + ArtifactLine(artifact) + "\n";
    }
  }
  console.Out(out);
  return kExitOk;
}

int AdminApprovalsCommand::Decide(Console& console, bool approve) {
  const std::string command = approve ? "admin approvals approve" : "admin approvals deny";
  const std::string& id = approve ? approve_id_ : deny_id_;
  const AdminOptions& options = approve ? approve_options_ : deny_options_;
  if (!ValidApprovalId(id)) {
    return UsageError(
        console, command,
        fmt::format("'{}': approval IDs are 1 to 128 of A-Z a-z 0-9 . _ -", DisplayName(id)));
  }
  json request = json::object();
  if (!approve) {
    if (reason_.empty()) {
      return UsageError(console, command, "--reason needs a text: the requester is told why");
    }
    request["reason"] = reason_;
  }
  std::string body_text;
  try {
    body_text = request.dump();
  } catch (const json::exception&) {
    return UsageError(console, command, "--reason must be UTF-8");
  }
  const auto answer = AdminRequest(
      console, command, options,
      {.method = "POST",
       .target = "/v1/approvals/" + id + (approve ? "/approve" : "/deny"),
       .body = std::move(body_text),
       // Refusals with a code of their own are explained below, the others by AdminRequest.
       .accepted = {200, 403, 404, 409}});
  if (!answer) {
    return kExitFailed;
  }
  if (answer->status != 200) {
    return Refused(console, command, *answer, id);
  }
  const auto body = ParseAnswer(console, command, *answer);
  if (!body) {
    return kExitFailed;
  }
  const std::string status = Field(*body, "status", "?");
  if (options.json) {
    console.Out(AsIs(answer->body));
    return status == "failed" ? kExitFailed : kExitOk;
  }
  const std::size_t given = ApprovalsGiven(*body);
  const std::uint64_t required = Count(*body, "approvals_required");
  const std::string shown = DisplayName(id);
  if (status == "pending") {
    const std::uint64_t missing = required > given ? required - given : 0;
    console.Out(fmt::format("{}: approved {} of {}; waiting for {} more\n", shown, given, required,
                            missing));
  } else if (status == "approved") {
    console.Out(fmt::format("{}: approved {} of {}: signing\n", shown, given, required));
  } else if (status == "signed") {
    console.Out(fmt::format("{}: approved {} of {}: signed\n", shown, given, required));
  } else if (status == "denied") {
    console.Out(fmt::format("{}: denied ({})\n", shown, Field(*body, "reason", reason_)));
  } else if (status == "failed") {
    // The approval counts; the policy re-check, the HSM or the audit log refused the signing.
    console.Error(fmt::format("{}: {}: approved {} of {}, but not signed: {} ({})", command, shown,
                              given, required, Field(*body, "message", "no reason given"),
                              Field(*body, "code", "failed")));
    return kExitFailed;
  } else {
    console.Out(fmt::format("{}: {}\n", shown, status));
  }
  return kExitOk;
}

int AdminApprovalsCommand::Run(Console& console) {
  if (list_->parsed()) {
    return List(console);
  }
  if (show_->parsed()) {
    return Show(console);
  }
  return Decide(console, /*approve=*/approve_->parsed());
}

}  // namespace

std::unique_ptr<Command> MakeAdminApprovalsCommand() {
  return std::make_unique<AdminApprovalsCommand>();
}

}  // namespace signet::cli
