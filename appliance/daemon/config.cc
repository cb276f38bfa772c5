// signetd's TOML configuration: a strict reader over toml++ that names the file, line and setting
// of every problem, and refuses settings it does not know.
#include <unistd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <utility>

#include "appliance/daemon/daemon.h"

namespace signet::daemon {
namespace {

constexpr std::size_t kMaxConfigBytes = 1 << 20;

// Reads the settings of one table; each read marks its key as known, and Finish() refuses the
// rest.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string prefix, const std::filesystem::path& source)
      : table_(table), prefix_(std::move(prefix)), source_(source) {}

  tl::unexpected<Error> Fail(const toml::node* node, std::string_view key,
                             std::string_view what) const {
    return MakeError(ErrorCode::kInvalidArgument,
                     Where(node) + Name(key) + ": " + std::string(what));
  }

  [[nodiscard]] Status String(std::string_view key, std::string& out, bool required = false) {
    const toml::node* node = Find(key);
    if (node == nullptr) {
      return required ? Status(Missing(key)) : OkStatus();
    }
    const auto* value = node->as_string();
    if (value == nullptr) {
      return Fail(node, key, "must be a string");
    }
    if (value->get().empty() && required) {
      return Fail(node, key, "must not be empty");
    }
    if (value->get().size() > 4096) {
      return Fail(node, key, "longer than 4096 characters");
    }
    out = value->get();
    return OkStatus();
  }

  [[nodiscard]] Status Path(std::string_view key, std::filesystem::path& out,
                            bool required = false) {
    std::string text;
    SIGNET_RETURN_IF_ERROR(String(key, text, required));
    if (!text.empty()) {
      std::filesystem::path path(text);
      out = path.is_absolute() ? path : source_.parent_path() / path;
    }
    return OkStatus();
  }

  [[nodiscard]] Status Uint(std::string_view key, std::uint64_t& out, std::uint64_t min,
                            std::uint64_t max) {
    const toml::node* node = Find(key);
    if (node == nullptr) {
      return OkStatus();
    }
    const auto* value = node->as_integer();
    if (value == nullptr) {
      return Fail(node, key, "must be an integer");
    }
    if (value->get() < 0 || static_cast<std::uint64_t>(value->get()) < min ||
        static_cast<std::uint64_t>(value->get()) > max) {
      return Fail(node, key,
                  "must be between " + std::to_string(min) + " and " + std::to_string(max));
    }
    out = static_cast<std::uint64_t>(value->get());
    return OkStatus();
  }

  template <class T>
  [[nodiscard]] Status Number(std::string_view key, T& out, std::uint64_t min, std::uint64_t max) {
    std::uint64_t value = out;
    SIGNET_RETURN_IF_ERROR(Uint(key, value, min, max));
    out = static_cast<T>(value);
    return OkStatus();
  }

  [[nodiscard]] Status Bool(std::string_view key, bool& out) {
    const toml::node* node = Find(key);
    if (node == nullptr) {
      return OkStatus();
    }
    const auto* value = node->as_boolean();
    if (value == nullptr) {
      return Fail(node, key, "must be true or false");
    }
    out = value->get();
    return OkStatus();
  }

  // An integer of bytes or a string with a binary unit.
  [[nodiscard]] Status Size(std::string_view key, std::size_t& out) {
    const toml::node* node = Find(key);
    if (node == nullptr) {
      return OkStatus();
    }
    if (const auto* integer = node->as_integer()) {
      if (integer->get() <= 0) {
        return Fail(node, key, "must be positive");
      }
      out = static_cast<std::size_t>(integer->get());
      return OkStatus();
    }
    const auto* text = node->as_string();
    if (text == nullptr) {
      return Fail(node, key, "must be a size: bytes, or a string like \"64MiB\"");
    }
    auto size = ParseSize(text->get());
    if (!size) {
      return Fail(node, key, size.error().message());
    }
    out = *size;
    return OkStatus();
  }

  [[nodiscard]] Status Millis(std::string_view key, std::chrono::milliseconds& out) {
    std::uint64_t ms = static_cast<std::uint64_t>(out.count());
    SIGNET_RETURN_IF_ERROR(Uint(key, ms, 1, 86'400'000));
    out = std::chrono::milliseconds(ms);
    return OkStatus();
  }

  // A file mode as an octal string ("0660").
  [[nodiscard]] Status Mode(std::string_view key, std::uint32_t& out) {
    const toml::node* node = Find(key);
    if (node == nullptr) {
      return OkStatus();
    }
    const auto* text = node->as_string();
    std::uint32_t mode = 0;
    if (text == nullptr || text->get().empty() ||
        std::from_chars(text->get().data(), text->get().data() + text->get().size(), mode, 8).ptr !=
            text->get().data() + text->get().size() ||
        mode > 0777) {
      return Fail(node, key, "must be an octal mode in a string, like \"0660\"");
    }
    out = mode;
    return OkStatus();
  }

  // Every setting not read is unknown: a typo, or a setting of another version.
  [[nodiscard]] Status Finish() const {
    for (const auto& [key, node] : table_) {
      if (!read_.contains(std::string(key.str()))) {
        return Fail(&node, key.str(), "unknown setting");
      }
    }
    return OkStatus();
  }

  // Marks `key` as known and returns its node (nullptr when absent).
  const toml::node* Take(std::string_view key) { return Find(key); }

  // A sub-table ([audit]); nullptr when absent.
  Result<const toml::table*> Table(std::string_view key) {
    const toml::node* node = Find(key);
    if (node == nullptr) {
      return nullptr;
    }
    if (node->as_table() == nullptr) {
      return Fail(node, key, "must be a table: [" + Name(key) + "]");
    }
    return node->as_table();
  }

  std::string Where(const toml::node* node) const {
    const auto& begin = node != nullptr ? node->source().begin : table_.source().begin;
    return source_.string() + ":" + std::to_string(begin.line) + ":" +
           std::to_string(begin.column) + ": ";
  }
  std::string Name(std::string_view key) const {
    return prefix_.empty() ? std::string(key) : prefix_ + "." + std::string(key);
  }

 private:
  const toml::node* Find(std::string_view key) {
    read_.insert(std::string(key));
    return table_.get(key);
  }
  tl::unexpected<Error> Missing(std::string_view key) const {
    return MakeError(ErrorCode::kInvalidArgument,
                     Where(nullptr) + Name(key) + ": required setting is missing");
  }

  const toml::table& table_;
  std::string prefix_;
  const std::filesystem::path& source_;
  std::set<std::string> read_;
};

// The tables of an array of tables ([[hsm]]), each with its index in the prefix.
Result<std::vector<const toml::table*>> Tables(std::string_view key, TableReader& top) {
  std::vector<const toml::table*> tables;
  const toml::node* node = top.Take(key);
  if (node == nullptr) {
    return tables;
  }
  const auto* array = node->as_array();
  if (array == nullptr || !array->is_array_of_tables()) {
    return top.Fail(node, key, "must be an array of tables: [[" + std::string(key) + "]]");
  }
  for (const toml::node& element : *array) {
    tables.push_back(element.as_table());
  }
  return tables;
}

Status ParseHsm(const toml::table& table, std::string prefix, const std::filesystem::path& source,
                HsmConfig& hsm) {
  TableReader r(table, std::move(prefix), source);
  SIGNET_RETURN_IF_ERROR(r.String("name", hsm.name, true));
  SIGNET_RETURN_IF_ERROR(r.Path("module", hsm.module));
  SIGNET_RETURN_IF_ERROR(r.String("token_label", hsm.token_label, true));
  SIGNET_RETURN_IF_ERROR(r.Path("pin_file", hsm.pin_file, true));
  SIGNET_RETURN_IF_ERROR(r.Number("sessions", hsm.sessions, 1, 64));
  SIGNET_RETURN_IF_ERROR(r.Bool("verify_before_release", hsm.verify_before_release));
  return r.Finish();
}

Status ParseKey(const toml::table& table, std::string prefix, const std::filesystem::path& source,
                KeyConfig& key) {
  TableReader r(table, std::move(prefix), source);
  SIGNET_RETURN_IF_ERROR(r.String("name", key.name, true));
  SIGNET_RETURN_IF_ERROR(r.String("hsm", key.hsm, true));
  SIGNET_RETURN_IF_ERROR(r.String("label", key.label));
  if (key.label.empty()) {
    key.label = key.name;
  }
  SIGNET_RETURN_IF_ERROR(r.String("algorithm", key.algorithm, true));
  static const std::set<std::string> kAlgorithms = {"ecdsa-p256", "ecdsa-p384", "rsa-3072",
                                                    "rsa-4096", "ed25519"};
  if (!kAlgorithms.contains(key.algorithm)) {
    return r.Fail(table.get("algorithm"), "algorithm",
                  "\"" + key.algorithm +
                      "\" is not one of ecdsa-p256, ecdsa-p384, rsa-3072, rsa-4096, ed25519");
  }
  SIGNET_RETURN_IF_ERROR(r.String("format", key.format, true));
  static const std::set<std::string> kFormats = {"raw", "batch", "checkpoint"};
  if (!kFormats.contains(key.format)) {
    return r.Fail(
        table.get("format"), "format",
        "\"" + key.format + "\" is not a format this signetd has (raw, batch, checkpoint)");
  }
  SIGNET_RETURN_IF_ERROR(r.String("hash", key.hash));
  if (key.hash != "sha256" && key.hash != "sha384" && key.hash != "sha512") {
    return r.Fail(table.get("hash"), "hash", "must be sha256, sha384 or sha512");
  }
  SIGNET_RETURN_IF_ERROR(r.String("rsa_padding", key.rsa_padding));
  if (key.rsa_padding != "pkcs1" && key.rsa_padding != "pss") {
    return r.Fail(table.get("rsa_padding"), "rsa_padding", "must be pkcs1 or pss");
  }
  if (table.get("rsa_padding") != nullptr && !key.algorithm.starts_with("rsa-")) {
    return r.Fail(table.get("rsa_padding"), "rsa_padding", "applies to RSA keys only");
  }
  return r.Finish();
}

Status ParseListen(const toml::table& table, std::string prefix,
                   const std::filesystem::path& source, ListenConfig& listen) {
  TableReader r(table, std::move(prefix), source);
  SIGNET_RETURN_IF_ERROR(r.Path("unix", listen.unix_path));
  SIGNET_RETURN_IF_ERROR(r.Mode("mode", listen.mode));
  SIGNET_RETURN_IF_ERROR(r.String("group", listen.group));
  SIGNET_RETURN_IF_ERROR(r.String("tls", listen.tls_address));
  SIGNET_RETURN_IF_ERROR(r.Path("cert", listen.cert_file));
  SIGNET_RETURN_IF_ERROR(r.Path("key", listen.key_file));
  SIGNET_RETURN_IF_ERROR(r.Path("ca", listen.ca_file));
  const bool is_unix = !listen.unix_path.empty();
  const bool is_tls = !listen.tls_address.empty();
  if (is_unix == is_tls) {
    return r.Fail(nullptr, "unix", "a listener has exactly one of unix = PATH or tls = HOST:PORT");
  }
  if (is_tls && (listen.cert_file.empty() || listen.key_file.empty() || listen.ca_file.empty())) {
    return r.Fail(nullptr, "tls",
                  "a TLS listener needs cert, key and ca (client certificates are required)");
  }
  if (is_unix &&
      (!listen.cert_file.empty() || !listen.key_file.empty() || !listen.ca_file.empty())) {
    return r.Fail(nullptr, "cert", "cert, key and ca apply to TLS listeners only");
  }
  return r.Finish();
}

Status CrossCheck(Config& config, TableReader& top) {
  std::set<std::string> hsm_names;
  for (const HsmConfig& hsm : config.hsms) {
    if (!hsm_names.insert(hsm.name).second) {
      return top.Fail(nullptr, "hsm", "two [[hsm]] tables are named \"" + hsm.name + "\"");
    }
  }
  std::set<std::string> key_names;
  std::set<std::pair<std::string, std::string>> labels;
  for (const KeyConfig& key : config.keys) {
    if (!key_names.insert(key.name).second) {
      return top.Fail(nullptr, "key", "two [[key]] tables are named \"" + key.name + "\"");
    }
    if (!hsm_names.contains(key.hsm)) {
      return top.Fail(
          nullptr, "key",
          "key \"" + key.name + "\" names hsm \"" + key.hsm + "\", which no [[hsm]] is");
    }
    if (!labels.insert({key.hsm, key.label}).second) {
      return top.Fail(nullptr, "key",
                      "two keys use label \"" + key.label + "\" in hsm \"" + key.hsm +
                          "\" (one key, one format: a key cannot serve two names)");
    }
  }
  const auto audit_key =
      std::find_if(config.keys.begin(), config.keys.end(),
                   [&](const KeyConfig& key) { return key.name == config.audit.key; });
  if (audit_key == config.keys.end()) {
    return top.Fail(
        nullptr, "audit.key",
        "\"" + config.audit.key + "\" is not a [[key]] (the audit key signs checkpoints)");
  }
  if (audit_key->format != "checkpoint") {
    return top.Fail(nullptr, "audit.key",
                    "key \"" + audit_key->name + "\" has format \"" + audit_key->format +
                        "\"; the audit key must have format \"checkpoint\" and sign nothing else");
  }
  if (audit_key->algorithm != "ecdsa-p256" && audit_key->algorithm != "ed25519") {
    return top.Fail(nullptr, "audit.key",
                    "the audit key must be ecdsa-p256 or ed25519 (C2SP signed-note types 0x02, "
                    "0x01)");
  }
  if (config.listeners.empty()) {
    return top.Fail(nullptr, "listen", "at least one [[listen]] is needed");
  }
  for (const ListenConfig& listen : config.listeners) {
    if (!listen.unix_path.empty() && listen.unix_path == config.admin.socket) {
      return top.Fail(nullptr, "admin.socket",
                      "is also a [[listen]] socket; the admin socket must be a separate path");
    }
  }
  if (config.audit.max_map_size < config.audit.map_size) {
    return top.Fail(nullptr, "audit.max_map_size", "must be at least audit.map_size");
  }
  return OkStatus();
}

std::string HostName() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') {
    return "signet";
  }
  return name;
}

}  // namespace

Result<std::size_t> ParseSize(std::string_view text) {
  std::size_t i = 0;
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "\"" + std::string(text) + "\" is not a size (bytes, or e.g. \"64MiB\")");
  }
  i = static_cast<std::size_t>(end - text.data());
  while (i < text.size() && text[i] == ' ') {
    ++i;
  }
  const std::string_view unit = text.substr(i);
  std::uint64_t scale = 1;
  if (unit.empty() || unit == "B") {
    scale = 1;
  } else if (unit == "KiB") {
    scale = std::uint64_t{1} << 10;
  } else if (unit == "MiB") {
    scale = std::uint64_t{1} << 20;
  } else if (unit == "GiB") {
    scale = std::uint64_t{1} << 30;
  } else if (unit == "TiB") {
    scale = std::uint64_t{1} << 40;
  } else {
    return MakeError(ErrorCode::kInvalidArgument,
                     "unit \"" + std::string(unit) + "\" is not one of B, KiB, MiB, GiB, TiB");
  }
  if (value == 0 || value > std::numeric_limits<std::size_t>::max() / scale) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "\"" + std::string(text) + "\" is zero or too large");
  }
  return static_cast<std::size_t>(value * scale);
}

Result<Config> ParseConfig(std::string_view toml_text, const std::filesystem::path& source) {
  if (toml_text.size() > kMaxConfigBytes) {
    return MakeError(ErrorCode::kInvalidArgument, source.string() + ": larger than " +
                                                      std::to_string(kMaxConfigBytes) +
                                                      " bytes; is this the configuration file?");
  }
  toml::table root;
  try {
    root = toml::parse(toml_text, source.string());
  } catch (const toml::parse_error& error) {
    const auto& begin = error.source().begin;
    return MakeError(ErrorCode::kInvalidArgument,
                     source.string() + ":" + std::to_string(begin.line) + ":" +
                         std::to_string(begin.column) + ": " + std::string(error.description()));
  }

  Config config;
  config.source = source;
  TableReader top(root, "", source);
  {
    SIGNET_RETURN_IF_ERROR(top.Path("state_dir", config.state_dir));
    SIGNET_RETURN_IF_ERROR(top.String("host_id", config.host_id));
    SIGNET_RETURN_IF_ERROR(top.Path("policy_file", config.policy_file, true));
  }
  if (config.host_id.empty()) {
    config.host_id = HostName();
  }

  SIGNET_ASSIGN_OR_RETURN(const auto hsms, Tables("hsm", top));
  for (std::size_t i = 0; i < hsms.size(); ++i) {
    SIGNET_RETURN_IF_ERROR(
        ParseHsm(*hsms[i], "hsm[" + std::to_string(i) + "]", source, config.hsms.emplace_back()));
  }
  SIGNET_ASSIGN_OR_RETURN(const auto keys, Tables("key", top));
  for (std::size_t i = 0; i < keys.size(); ++i) {
    SIGNET_RETURN_IF_ERROR(
        ParseKey(*keys[i], "key[" + std::to_string(i) + "]", source, config.keys.emplace_back()));
  }
  SIGNET_ASSIGN_OR_RETURN(const auto listeners, Tables("listen", top));
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    SIGNET_RETURN_IF_ERROR(ParseListen(*listeners[i], "listen[" + std::to_string(i) + "]", source,
                                       config.listeners.emplace_back()));
  }

  SIGNET_ASSIGN_OR_RETURN(const toml::table* audit, top.Table("audit"));
  if (audit == nullptr) {
    return top.Fail(nullptr, "audit", "the [audit] table is required");
  }
  {
    TableReader r(*audit, "audit", source);
    SIGNET_RETURN_IF_ERROR(r.Path("dir", config.audit.dir, true));
    SIGNET_RETURN_IF_ERROR(r.Path("checkpoint_file", config.audit.checkpoint_file, true));
    SIGNET_RETURN_IF_ERROR(r.String("origin", config.audit.origin));
    SIGNET_RETURN_IF_ERROR(r.String("key", config.audit.key, true));
    SIGNET_RETURN_IF_ERROR(r.Size("map_size", config.audit.map_size));
    SIGNET_RETURN_IF_ERROR(r.Size("max_map_size", config.audit.max_map_size));
    SIGNET_RETURN_IF_ERROR(
        r.Uint("checkpoint_every", config.audit.checkpoint_every, 1, 100'000'000));
    SIGNET_RETURN_IF_ERROR(r.Millis("checkpoint_interval_ms", config.audit.checkpoint_interval));
    SIGNET_RETURN_IF_ERROR(r.Finish());
  }
  if (config.audit.origin.empty()) {
    config.audit.origin = config.host_id + "/audit";
  }

  SIGNET_ASSIGN_OR_RETURN(const toml::table* limits, top.Table("limits"));
  if (limits != nullptr) {
    TableReader r(*limits, "limits", source);
    LimitsConfig& l = config.limits;
    SIGNET_RETURN_IF_ERROR(r.Size("max_body_bytes", l.max_body_bytes));
    SIGNET_RETURN_IF_ERROR(r.Size("max_header_bytes", l.max_header_bytes));
    SIGNET_RETURN_IF_ERROR(
        r.Number("max_items_per_request", l.max_items_per_request, 1, 1'000'000));
    SIGNET_RETURN_IF_ERROR(r.Number("max_batch_leaves", l.max_batch_leaves, 1, 1u << 24));
    std::uint64_t window_ms = static_cast<std::uint64_t>(l.batch_window.count());
    SIGNET_RETURN_IF_ERROR(r.Uint("batch_window_ms", window_ms, 0, 10'000));  // 0: off
    l.batch_window = std::chrono::milliseconds(window_ms);
    std::uint64_t ttl_ms = static_cast<std::uint64_t>(l.approval_ttl.count());
    SIGNET_RETURN_IF_ERROR(r.Uint("approval_ttl_ms", ttl_ms, 1000, 30ull * 86'400'000));
    l.approval_ttl = std::chrono::milliseconds(ttl_ms);
    SIGNET_RETURN_IF_ERROR(r.Number("max_connections", l.max_connections, 1, 100'000));
    SIGNET_RETURN_IF_ERROR(r.Millis("idle_timeout_ms", l.idle_timeout));
    SIGNET_RETURN_IF_ERROR(r.Millis("request_timeout_ms", l.request_timeout));
    SIGNET_RETURN_IF_ERROR(r.Finish());
  }
  SIGNET_ASSIGN_OR_RETURN(const toml::table* admin, top.Table("admin"));
  if (admin != nullptr) {
    TableReader r(*admin, "admin", source);
    SIGNET_RETURN_IF_ERROR(r.Path("socket", config.admin.socket));
    SIGNET_RETURN_IF_ERROR(r.String("group", config.admin.group));
    SIGNET_RETURN_IF_ERROR(r.Path("store_dir", config.admin.store_dir));
    std::uint64_t workers = config.admin.workers;
    SIGNET_RETURN_IF_ERROR(r.Uint("workers", workers, 1, 16));
    config.admin.workers = static_cast<unsigned>(workers);
    std::uint64_t max_exports = config.admin.max_exports;
    SIGNET_RETURN_IF_ERROR(r.Uint("max_exports", max_exports, 1, 16));
    config.admin.max_exports = static_cast<unsigned>(max_exports);
    SIGNET_RETURN_IF_ERROR(r.Finish());
  }
  if (config.admin.socket.empty()) {
    config.admin.socket = config.state_dir / "admin" / "admin.sock";
  }
  if (config.admin.store_dir.empty()) {
    config.admin.store_dir = config.state_dir / "state";
  }
  SIGNET_RETURN_IF_ERROR(top.Finish());
  SIGNET_RETURN_IF_ERROR(CrossCheck(config, top));
  return config;
}

Result<Config> LoadConfig(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    return MakeError(ErrnoError(err, "read configuration " + path.string()));
  }
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) {
    return MakeError(ErrorCode::kIo, "read configuration " + path.string());
  }
  text.resize(static_cast<std::size_t>(in.gcount()));
  return ParseConfig(text, path);
}

}  // namespace signet::daemon
