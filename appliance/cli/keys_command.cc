// `signet keys list` and `signet keys show NAME [--pem]`: the keys signetd signs with, as its sign
// API describes them (GET /v1/keys, GET /v1/keys/NAME).
#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "appliance/cli/cli.h"
#include "appliance/cli/internal/command.h"
#include "appliance/cli/internal/daemon_client.h"

namespace signet::cli {
namespace {

using nlohmann::json;

constexpr std::string_view kFooter = R"footer(
`list` prints one key per line: name, algorithm, format (what its signatures look like) and the
SHA-256 fingerprint of its public key. `show NAME` prints one key with its public key in PEM;
with --pem only the PEM, ready for `signet verify --key-file`. --json prints signetd's own
description (list: {"keys": [...]}).

Exit status: 0 done, 1 no such key or signetd could not be asked, 2 bad command line.

Examples:
  signet keys list
  signet keys show release --pem > release.pub.pem)footer";

// A key description has these fields as strings, and a PEM of printable ASCII lines (it is
// printed as it is).
bool WellFormed(const json& key) {
  static constexpr const char* kFields[] = {"name", "algorithm", "format", "fingerprint",
                                            "public_key_pem"};
  if (!key.is_object()) {
    return false;
  }
  for (const char* field : kFields) {
    if (!key.contains(field) || !key[field].is_string()) {
      return false;
    }
  }
  const auto& pem = key["public_key_pem"].get_ref<const std::string&>();
  return pem.starts_with("-----BEGIN PUBLIC KEY-----") &&
         std::all_of(pem.begin(), pem.end(),
                     [](char c) { return c == '\n' || (c >= 0x20 && c <= 0x7e); });
}

class KeysCommand final : public Command {
 public:
  CLI::App* Register(CLI::App& parent) override;
  int Run(Console& console) override;

 private:
  // Asks signetd for `target`; the parsed body on 200. Errors are printed; nullopt then.
  std::optional<json> Fetch(Console& console, const EndpointOptions& options,
                            const std::string& target);
  int List(Console& console);
  int Show(Console& console);

  CLI::App* list_ = nullptr;
  CLI::App* show_ = nullptr;
  EndpointOptions list_endpoint_;
  EndpointOptions show_endpoint_;
  bool list_json_ = false;
  bool show_json_ = false;
  bool pem_ = false;
  std::string name_;
  int usage_error_ = 0;
};

CLI::App* KeysCommand::Register(CLI::App& parent) {
  CLI::App* app = parent.add_subcommand("keys", "List the keys signetd signs with, or show one");
  app->require_subcommand(1, 1);
  list_ = app->add_subcommand("list", "One line per key: name, algorithm, format, fingerprint");
  list_endpoint_.Register(list_);
  list_->add_flag("--json", list_json_, "Print signetd's description as JSON");
  list_->footer(std::string(kFooter) + "\n" + std::string(kEndpointHelp));
  show_ = app->add_subcommand("show", "One key with its public key (PEM)");
  show_endpoint_.Register(show_);
  show_->add_option("NAME", name_, "The key's name")->required();
  show_->add_flag("--pem", pem_, "Print only the public key (PEM)");
  show_->add_flag("--json", show_json_, "Print signetd's description as JSON");
  show_->footer(std::string(kFooter) + "\n" + std::string(kEndpointHelp));
  app->footer(std::string(kFooter));
  return app;
}

std::optional<json> KeysCommand::Fetch(Console& console, const EndpointOptions& options,
                                       const std::string& target) {
  auto endpoint = options.Resolve();
  if (!endpoint) {
    if (endpoint.error().code() == ErrorCode::kInvalidArgument) {
      console.Err(fmt::format("signet keys: {}\nRun with --help for more information.\n",
                              endpoint.error().message()));
      usage_error_ = kExitUsage;
      return std::nullopt;
    }
    console.Error(endpoint.error().message());
    return std::nullopt;
  }
  auto client = DaemonClient::Connect(*endpoint);
  if (!client) {
    console.Error(client.error().message());
    return std::nullopt;
  }
  auto answer = (*client)->Get(target);
  if (!answer) {
    console.Error(answer.error().message());
    return std::nullopt;
  }
  if (answer->status == 404 && target != "/v1/keys") {
    console.Error(fmt::format("signetd has no key named \"{}\"; `signet keys list` lists them",
                              DisplayName(name_)));
    return std::nullopt;
  }
  if (answer->status != 200) {
    console.Error(DescribeRefusal(*answer));
    return std::nullopt;
  }
  json body = json::parse(answer->body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    console.Error("signetd's answer is not JSON");
    return std::nullopt;
  }
  return body;
}

int KeysCommand::List(Console& console) {
  const auto body = Fetch(console, list_endpoint_, "/v1/keys");
  if (!body) {
    return usage_error_ != 0 ? usage_error_ : kExitFailed;
  }
  if (!body->contains("keys") || !(*body)["keys"].is_array() ||
      !std::all_of((*body)["keys"].begin(), (*body)["keys"].end(), WellFormed)) {
    console.Error("signetd's list of keys is malformed");
    return kExitFailed;
  }
  if (list_json_) {
    console.Out(body->dump(2, ' ', false, json::error_handler_t::replace) + "\n");
    return kExitOk;
  }
  std::size_t width = 4;
  for (const json& key : (*body)["keys"]) {
    width = std::max(width, DisplayName(key["name"].get<std::string>()).size());
  }
  std::string out = fmt::format("{:<{}}  {:<10}  {:<6}  {}\n", "NAME", width, "ALGORITHM", "FORMAT",
                                "FINGERPRINT (SHA-256 of the public key)");
  for (const json& key : (*body)["keys"]) {
    out += fmt::format("{:<{}}  {:<10}  {:<6}  {}\n", DisplayName(key["name"].get<std::string>()),
                       width, DisplayName(key["algorithm"].get<std::string>()),
                       DisplayName(key["format"].get<std::string>()),
                       DisplayName(key["fingerprint"].get<std::string>()));
  }
  console.Out(out);
  return kExitOk;
}

int KeysCommand::Show(Console& console) {
  const bool valid_name = !name_.empty() && name_.size() <= 128 &&
                          name_.find_first_not_of(
                              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                              "0123456789._-") == std::string::npos;
  if (!valid_name) {
    console.Err(fmt::format(
        "signet keys show: '{}': key names are 1 to 128 of A-Z a-z 0-9 . _ -\nRun with --help "
        "for more information.\n",
        DisplayName(name_)));
    return kExitUsage;
  }
  const auto key = Fetch(console, show_endpoint_, "/v1/keys/" + name_);
  if (!key) {
    return usage_error_ != 0 ? usage_error_ : kExitFailed;
  }
  if (!WellFormed(*key)) {
    console.Error("signetd's description of the key is malformed");
    return kExitFailed;
  }
  const std::string pem = (*key)["public_key_pem"].get<std::string>();
  if (pem_) {
    console.Out(pem.ends_with('\n') ? pem : pem + "\n");
    return kExitOk;
  }
  if (show_json_) {
    console.Out(key->dump(2, ' ', false, json::error_handler_t::replace) + "\n");
    return kExitOk;
  }
  std::string out;
  for (const char* field : {"name", "algorithm", "scheme", "hash", "format", "fingerprint"}) {
    if (key->contains(field) && (*key)[field].is_string()) {
      out += fmt::format("{:<12} {}\n", std::string(field) + ":",
                         DisplayName((*key)[field].get<std::string>()));
    }
  }
  out += pem.ends_with('\n') ? pem : pem + "\n";
  console.Out(out);
  return kExitOk;
}

int KeysCommand::Run(Console& console) {
  if (list_->parsed()) {
    return List(console);
  }
  return Show(console);
}

}  // namespace

std::unique_ptr<Command> MakeKeysCommand() { return std::make_unique<KeysCommand>(); }

}  // namespace signet::cli
