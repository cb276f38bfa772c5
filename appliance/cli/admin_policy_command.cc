// `signet admin policy show|validate|apply|versions|explain`: the policy lifecycle on the admin
// socket (admin/API.md, "Policy").
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "appliance/cli/cli.h"
#include "appliance/cli/internal/admin.h"

namespace signet::cli {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxPolicyBytes = std::size_t{1} << 20;  // the daemon's limit (policy.h)

constexpr std::string_view kFooter = R"footer(
The policy decides who may sign with which key (its [[rule]]s) and who administers (its [roles]).
`show` prints the policy in force: its version number, SHA-256, who applied it and when, then its
text. `validate FILE` checks a file against signetd's parser without applying it and says what
applying it would change; an error is printed as FILE:LINE:COL: message. `apply FILE` makes it
the policy in force for every sign request that arrives afterwards, as a new version recorded in
the audit log. `versions` lists every version, newest first. `explain` says what the policy in
force decides for a request, without signing (the same evaluation; rate limits aside).

Examples:
  signet admin policy show
  signet admin policy validate policy.toml
  signet admin policy apply policy.toml --comment "CI may sign release candidates"
  signet admin policy versions
  signet admin policy explain --principal user:alice --key release --tool signet \
      --artifact dist/app.tar.gz)footer";

// "rules added: a, b; roles changed: admin", or "no change", from the API's "changes" object.
std::string ChangeSummary(const json& changes) {
  if (!changes.is_object()) {
    return "changes unknown";
  }
  if (changes.value("unchanged", false)) {
    return "no change";
  }
  std::string out;
  const auto list = [&](const char* what, const char* field) {
    if (!changes.contains(field) || !changes[field].is_array() || changes[field].empty()) {
      return;
    }
    out += fmt::format("{}{}: ", out.empty() ? "" : "; ", what);
    bool first = true;
    for (const json& name : changes[field]) {
      out += fmt::format("{}{}", first ? "" : ", ",
                         name.is_string() ? DisplayName(name.get<std::string>()) : name.dump());
      first = false;
    }
  };
  list("rules added", "rules_added");
  list("rules removed", "rules_removed");
  list("rules changed", "rules_changed");
  list("roles changed", "roles_changed");
  if (changes.value("rules_reordered", false)) {
    out += out.empty() ? "rules reordered" : "; rules reordered";
  }
  return out.empty() ? "text changed (comments or layout only)" : out;
}

// The file's bytes. Errors: kIo naming the file, kInvalidArgument (over the daemon's limit).
Result<std::string> ReadPolicyFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return MakeError(ErrnoError(errno, "read " + DisplayName(path)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return MakeError(ErrnoError(errno, "read " + DisplayName(path)));
  }
  std::string bytes = std::move(text).str();
  if (bytes.size() > kMaxPolicyBytes) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        fmt::format("{} is {} bytes; a policy is at most 1 MiB", DisplayName(path), bytes.size()));
  }
  return bytes;
}

// The 422 invalid_policy answer's "admin-api:LINE:COL: what" lines (the parser reports several
// problems, one a line) as "FILE:LINE:COL: what" lines, ready for an editor to jump to.
std::string WhereInFile(const json& body, const std::string& file) {
  constexpr std::string_view kSource = "admin-api:";
  const std::string message = body.contains("message") && body["message"].is_string()
                                  ? body["message"].get<std::string>()
                                  : std::string("the policy is not valid");
  std::string out;
  std::string_view rest = message;
  while (!rest.empty()) {
    const std::size_t eol = rest.find('\n');
    const std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);
    if (line.starts_with(kSource)) {
      out += DisplayName(file + ":" + std::string(line.substr(kSource.size()))) + "\n";
    } else if (out.empty() && body.contains("line") && body["line"].is_number_integer()) {
      out += DisplayName(fmt::format("{}:{}:{}: {}", file, body["line"].get<long long>(),
                                     body.value("column", 1LL), line)) +
             "\n";
    } else {
      out += DisplayName(file + ": " + std::string(line)) + "\n";
    }
  }
  return out;
}

class AdminPolicyCommand final : public Command {
 public:
  CLI::App* Register(CLI::App& parent) override;
  int Run(Console& console) override;

 private:
  int Show(Console& console);
  // validate and apply.
  int Check(Console& console, bool apply);
  int Versions(Console& console);
  int Explain(Console& console);

  CLI::App* show_ = nullptr;
  CLI::App* validate_ = nullptr;
  CLI::App* apply_ = nullptr;
  CLI::App* versions_ = nullptr;
  CLI::App* explain_ = nullptr;
  AdminOptions show_options_;
  AdminOptions validate_options_;
  AdminOptions apply_options_;
  AdminOptions versions_options_;
  AdminOptions explain_options_;
  std::string validate_file_;
  std::string apply_file_;
  std::string comment_;
  std::string principal_;
  std::string key_;
  std::string tool_;
  std::vector<std::string> artifacts_;
};

CLI::App* AdminPolicyCommand::Register(CLI::App& parent) {
  CLI::App* app = parent.add_subcommand(
      "policy", "Show, validate, apply, list and explain the signing policy (role admin)");
  app->require_subcommand(1, 1);
  const std::string footer = std::string(kFooter) + "\n" + std::string(kAdminSocketHelp);
  app->footer(footer);

  show_ = app->add_subcommand("show", "The policy in force: version, who applied it, its text");
  show_options_.Register(show_);
  show_->footer(footer);

  validate_ = app->add_subcommand("validate", "Check a policy file and say what it would change");
  validate_->add_option("FILE", validate_file_, "The policy (TOML)")->required();
  validate_options_.Register(validate_);
  validate_->footer(footer);

  apply_ = app->add_subcommand("apply", "Make a policy file the policy in force (a new version)");
  apply_->add_option("FILE", apply_file_, "The policy (TOML)")->required();
  apply_->add_option("--comment", comment_, "Why; kept with the version and its audit record")
      ->type_name("TEXT");
  apply_options_.Register(apply_);
  apply_->footer(footer);

  versions_ = app->add_subcommand("versions", "Every version applied, newest first");
  versions_options_.Register(versions_);
  versions_->footer(footer);

  explain_ = app->add_subcommand("explain", "What the policy decides for a request, and why");
  explain_
      ->add_option("--principal", principal_,
                   "Who asks: user:NAME (resolved on signetd's host), uid:N, cert-subject:SUBJECT "
                   "or cert-fingerprint:HEX")
      ->required()
      ->type_name("P");
  explain_->add_option("--key", key_, "The key asked for")->required()->type_name("K");
  explain_->add_option("--tool", tool_, "The tool name the client gives")->type_name("T");
  explain_->add_option("--artifact", artifacts_, "Artifact names (repeatable)")->type_name("NAME");
  explain_options_.Register(explain_);
  explain_->footer(footer);
  return app;
}

int AdminPolicyCommand::Show(Console& console) {
  constexpr std::string_view kCommand = "admin policy show";
  const auto answer = AdminRequest(console, kCommand, show_options_, {.target = "/v1/policy"});
  if (!answer) {
    return kExitFailed;
  }
  const auto body = ParseAnswer(console, kCommand, *answer);
  if (!body) {
    return kExitFailed;
  }
  if (!body->contains("text") || !(*body)["text"].is_string()) {
    console.Error(fmt::format("{}: signetd's answer has no policy text", kCommand));
    return kExitFailed;
  }
  if (show_options_.json) {
    console.Out(AsIs(answer->body));
    return kExitOk;
  }
  std::string out;
  if (body->contains("number") && (*body)["number"].is_number_unsigned()) {
    out += fmt::format("version  {}\n", (*body)["number"].get<std::uint64_t>());
  }
  out += fmt::format("sha256   {}\n", Field(*body, "version", "?"));
  if (body->contains("time_us") && (*body)["time_us"].is_number_integer()) {
    out += fmt::format("applied  {} by {}\n", Rfc3339((*body)["time_us"].get<std::int64_t>()),
                       Field(*body, "applied_by", "?"));
  }
  out += fmt::format("source   {}\n", Field(*body, "source", "?"));
  if (const std::string comment = Field(*body, "comment"); !comment.empty()) {
    out += fmt::format("comment  {}\n", comment);
  }
  // The text as it is: it is what was applied, byte for byte (TOML is UTF-8 text).
  const std::string& text = (*body)["text"].get_ref<const std::string&>();
  out += "\n" + text + (text.ends_with('\n') || text.empty() ? "" : "\n");
  console.Out(out);
  return kExitOk;
}

int AdminPolicyCommand::Check(Console& console, bool apply) {
  const std::string command = apply ? "admin policy apply" : "admin policy validate";
  const std::string& file = apply ? apply_file_ : validate_file_;
  const AdminOptions& options = apply ? apply_options_ : validate_options_;
  const auto text = ReadPolicyFile(file);
  if (!text) {
    console.Error(fmt::format("{}: {}", command, text.error().message()));
    return kExitFailed;
  }
  AdminRequestSpec spec{.method = apply ? "PUT" : "POST",
                        .target = apply ? "/v1/policy" : "/v1/policy/validate",
                        .body = *text,
                        .content_type = "application/toml",
                        .accepted = {200, 422}};
  if (apply && !comment_.empty()) {
    if (comment_.size() > 1024 || std::any_of(comment_.begin(), comment_.end(), [](char c) {
          return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
        })) {
      return UsageError(console, command,
                        "--comment: at most 1024 bytes, on one line without control characters");
    }
    spec.headers.emplace_back("X-Signet-Comment", comment_);
  }
  const auto answer = AdminRequest(console, command, options, spec);
  if (!answer) {
    return kExitFailed;
  }
  const auto body = ParseAnswer(console, command, *answer);
  if (!body) {
    return kExitFailed;
  }
  if (options.json) {
    console.Out(AsIs(answer->body));
  }
  if (answer->status == 422) {
    console.Err(WhereInFile(*body, file));
    console.Error(
        fmt::format("{}: {} is not a valid policy{}", command, DisplayName(file),
                    apply ? "; nothing was applied, the policy in force is unchanged" : ""));
    return kExitFailed;
  }
  if (options.json) {
    return kExitOk;
  }
  const std::string summary = ChangeSummary(body->value("changes", json()));
  std::string out;
  if (!apply) {
    out = fmt::format("{}: valid (sha256 {}", DisplayName(file), Field(*body, "version", "?"));
    if (body->contains("rules") && (*body)["rules"].is_number_unsigned()) {
      const auto rules = (*body)["rules"].get<std::uint64_t>();
      out += fmt::format(", {} rule{}", rules, rules == 1 ? "" : "s");
    }
    out += fmt::format(")\nagainst the policy in force: {}\n", summary);
  } else if (body->value("unchanged", false)) {
    out = fmt::format("no change: {} is the policy in force", DisplayName(file));
    if (body->contains("number") && (*body)["number"].is_number_unsigned()) {
      out += fmt::format(" (version {})", (*body)["number"].get<std::uint64_t>());
    }
    out += "\n";
  } else {
    out = fmt::format("applied {} as policy version {} (sha256 {})\n{}\n", DisplayName(file),
                      body->contains("number") ? (*body)["number"].dump() : std::string("?"),
                      Field(*body, "version", "?"), summary);
  }
  console.Out(out);
  return kExitOk;
}

int AdminPolicyCommand::Versions(Console& console) {
  constexpr std::string_view kCommand = "admin policy versions";
  const auto answer =
      AdminRequest(console, kCommand, versions_options_, {.target = "/v1/policy/versions"});
  if (!answer) {
    return kExitFailed;
  }
  const auto body = ParseAnswer(console, kCommand, *answer);
  if (!body) {
    return kExitFailed;
  }
  if (!body->contains("versions") || !(*body)["versions"].is_array()) {
    console.Error(fmt::format("{}: signetd's list of versions is malformed", kCommand));
    return kExitFailed;
  }
  if (versions_options_.json) {
    console.Out(AsIs(answer->body));
    return kExitOk;
  }
  struct Row {
    std::string number, applied, by, source, sha256, comment;
  };
  std::vector<Row> rows = {{"VERSION", "APPLIED (UTC)", "BY", "SOURCE", "SHA256", "COMMENT"}};
  for (const json& v : (*body)["versions"]) {
    rows.push_back({v.contains("number") ? v["number"].dump() : "?",
                    v.contains("time_us") && v["time_us"].is_number_integer()
                        ? Rfc3339(v["time_us"].get<std::int64_t>())
                        : "?",
                    Field(v, "applied_by", "?"), Field(v, "source", "?"),
                    Field(v, "version", "?").substr(0, 16), Field(v, "comment")});
  }
  std::size_t widths[5] = {};
  for (const Row& row : rows) {
    const std::string* cells[] = {&row.number, &row.applied, &row.by, &row.source, &row.sha256};
    for (std::size_t i = 0; i < 5; ++i) {
      widths[i] = std::max(widths[i], cells[i]->size());
    }
  }
  std::string out;
  for (const Row& row : rows) {
    std::string line = fmt::format("{:>{}}  {:<{}}  {:<{}}  {:<{}}  {:<{}}  {}", row.number,
                                   widths[0], row.applied, widths[1], row.by, widths[2], row.source,
                                   widths[3], row.sha256, widths[4], row.comment);
    while (line.ends_with(' ')) {
      line.pop_back();
    }
    out += line + "\n";
  }
  console.Out(out);
  return kExitOk;
}

int AdminPolicyCommand::Explain(Console& console) {
  constexpr std::string_view kCommand = "admin policy explain";
  json request{{"principal", principal_}, {"key", key_}};
  if (!tool_.empty()) {
    request["tool"] = tool_;
  }
  if (!artifacts_.empty()) {
    request["artifacts"] = artifacts_;
  }
  // Names that are not UTF-8 cannot travel in JSON: say so rather than send U+FFFD.
  std::string body_text;
  try {
    body_text = request.dump();
  } catch (const json::exception&) {
    return UsageError(console, kCommand, "--principal, --key, --tool and --artifact must be UTF-8");
  }
  const auto answer = AdminRequest(
      console, kCommand, explain_options_,
      {.method = "POST", .target = "/v1/policy/explain", .body = std::move(body_text)});
  if (!answer) {
    return kExitFailed;
  }
  const auto body = ParseAnswer(console, kCommand, *answer);
  if (!body) {
    return kExitFailed;
  }
  if (explain_options_.json) {
    console.Out(AsIs(answer->body));
    return kExitOk;
  }
  const std::string rule = Field(*body, "rule");
  std::string out =
      fmt::format("decision   {}\nrule       {}\nreason     {}\n", Field(*body, "decision", "?"),
                  rule.empty() ? "(none applies)" : rule, Field(*body, "reason"));
  if (body->contains("approvals") && (*body)["approvals"].is_number_unsigned() &&
      (*body)["approvals"].get<std::uint64_t>() > 0) {
    out += fmt::format("approvals  {}\n", (*body)["approvals"].get<std::uint64_t>());
  }
  if (const std::string who = Field(*body, "principal"); !who.empty()) {
    out += fmt::format("principal  {}\n", who);
  }
  out += fmt::format("policy     sha256 {}\n", Field(*body, "policy_version", "?"));
  console.Out(out);
  return kExitOk;
}

int AdminPolicyCommand::Run(Console& console) {
  if (show_->parsed()) {
    return Show(console);
  }
  if (validate_->parsed()) {
    return Check(console, /*apply=*/false);
  }
  if (apply_->parsed()) {
    return Check(console, /*apply=*/true);
  }
  if (versions_->parsed()) {
    return Versions(console);
  }
  return Explain(console);
}

}  // namespace

std::unique_ptr<Command> MakeAdminPolicyCommand() { return std::make_unique<AdminPolicyCommand>(); }

}  // namespace signet::cli
