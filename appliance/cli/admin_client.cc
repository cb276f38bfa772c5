// The admin socket's client for `signet admin`: finding the socket, one request over it with
// libcurl, and errors a user can act on (internal/admin.h).
#include <curl/curl.h>
#include <fmt/format.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
#include <string>

#include "appliance/cli/cli.h"
#include "appliance/cli/internal/admin.h"

namespace signet::cli {
namespace {

using nlohmann::json;
using CurlEasy = std::unique_ptr<CURL, FnDeleter<&curl_easy_cleanup>>;
using CurlSlist = std::unique_ptr<curl_slist, FnDeleter<&curl_slist_free_all>>;

constexpr const char* kDefaultSockets[] = {"./.signet/admin/admin.sock",
                                           "/run/signet/admin/admin.sock",
                                           "/var/lib/signet/admin/admin.sock"};

std::size_t AppendBody(char* data, std::size_t size, std::size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

// "user:alice (uid 1000)", for messages about roles.
std::string Me() {
  const uid_t uid = ::geteuid();
  struct passwd pw {};
  struct passwd* found = nullptr;
  char buffer[4096];
  if (::getpwuid_r(uid, &pw, buffer, sizeof(buffer), &found) == 0 && found != nullptr) {
    return fmt::format("user:{} (uid {})", DisplayName(found->pw_name), uid);
  }
  return fmt::format("uid:{}", uid);
}

// The socket to use: --socket, else $SIGNET_ADMIN_SOCKET, else the first default that exists.
// Errors: kUnavailable (nothing found, naming every place looked at).
Result<std::string> FindSocket(const AdminOptions& options) {
  if (options.socket_option != nullptr && options.socket_option->count() > 0) {
    return options.socket;
  }
  if (const char* env = std::getenv("SIGNET_ADMIN_SOCKET"); env != nullptr && *env != '\0') {
    return std::string(env);
  }
  std::string tried;
  for (const char* path : kDefaultSockets) {
    struct stat st {};
    if (::stat(path, &st) == 0) {
      return std::string(path);
    }
    tried += fmt::format("{}{}", tried.empty() ? "" : ", ", path);
  }
  return MakeError(ErrorCode::kUnavailable,
                   fmt::format("no admin socket found (looked for {}); is signetd running? Name "
                               "its admin socket with --socket PATH or $SIGNET_ADMIN_SOCKET",
                               tried));
}

// Why `socket` cannot be reached, from the errno of stat(2) or connect(2).
std::string DescribeSocketErrno(const std::string& socket, int err) {
  const std::string name = DisplayName(socket);
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return fmt::format(
          "no admin socket at {}; is signetd running, and is that its [admin] socket? (signetd "
          "--dev makes STATE_DIR/admin/admin.sock)",
          name);
    case EACCES:
    case EPERM:
      return fmt::format(
          "permission denied reaching {}: the admin socket is mode 0660 in a directory of mode "
          "0750; {} needs to be signetd's user or in the group that owns them (the [admin] "
          "group in signetd.toml)",
          name, Me());
    case ECONNREFUSED:
      return fmt::format(
          "nothing is listening on {}: signetd is not running (the socket file is left from "
          "one that stopped)",
          name);
    case ENOTSOCK:
      return fmt::format("{} is not a socket; name signetd's admin socket with --socket", name);
    default:
      return fmt::format("cannot reach the admin socket {}: {}", name, std::strerror(err));
  }
}

// The curl failure `rc` (with the socket errno `err`) on `socket` as a message.
std::string DescribeCurlFailure(const std::string& socket, CURLcode rc, long err,
                                const char* detail) {
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
      // A refused or missing socket sets errno; a connection that signetd accepted and closed at
      // once (the peer check) can surface here too, with no errno or a reset.
      if (err != 0 && err != ECONNRESET && err != EPIPE) {
        return DescribeSocketErrno(socket, static_cast<int>(err));
      }
      [[fallthrough]];
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
      // signetd disconnects a peer that holds no role before reading a byte of its request.
      return fmt::format(
          "signetd at {} closed the connection without an answer: your user may hold no role in "
          "the policy's [roles] ({}; signetd logs the refusal and records it in the audit log). "
          "Ask an admin to add you, e.g. admin = [\"user:NAME\"] or a group:NAME you are in",
          DisplayName(socket), Me());
    case CURLE_OPERATION_TIMEDOUT:
      return fmt::format("signetd at {} did not answer in time ({})", DisplayName(socket), detail);
    default:
      break;
  }
  return fmt::format("talking to signetd at {}: {}", DisplayName(socket), detail);
}

// One request over `socket`. Errors: kUnavailable (the message says what to check), kInternal.
Result<HttpAnswer> Send(const std::string& socket, const AdminRequestSpec& spec) {
  // Thread-safe from libcurl 7.84 on, and a no-op after the first call.
  if (const CURLcode init = curl_global_init(CURL_GLOBAL_DEFAULT); init != CURLE_OK) {
    return MakeError(ErrorCode::kInternal,
                     fmt::format("curl_global_init: {}", curl_easy_strerror(init)));
  }
  CurlEasy easy(curl_easy_init());
  if (!easy) {
    return MakeError(ErrorCode::kInternal, "curl: out of memory");
  }
  // Without "Expect:", curl sends "Expect: 100-continue" before large bodies and waits for it.
  std::vector<std::string> lines = {"Expect:"};
  if (spec.body) {
    lines.push_back("Content-Type: " + spec.content_type);
  }
  for (const auto& [name, value] : spec.headers) {
    lines.push_back(name + ": " + value);
  }
  CurlSlist headers;
  for (const std::string& line : lines) {
    // Appending returns the list's head: the first node, then the same pointer again.
    curl_slist* list = curl_slist_append(headers.get(), line.c_str());
    if (list == nullptr) {
      return MakeError(ErrorCode::kInternal, "curl: out of memory");
    }
    if (!headers) {
      headers.reset(list);
    }
  }
  HttpAnswer answer;
  char error[CURL_ERROR_SIZE] = {};
  const std::string url = "http://localhost" + spec.target;
  CURL* h = easy.get();
  bool ok = curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &AppendBody) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer.body) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L) == CURLE_OK &&
            // Generating a key or committing an audit record; minutes means something is wrong.
            curl_easy_setopt(h, CURLOPT_TIMEOUT, 300L) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, socket.c_str()) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_URL, url.c_str()) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get()) == CURLE_OK;
  if (spec.body) {
    ok = ok && curl_easy_setopt(h, CURLOPT_POSTFIELDS, spec.body->data()) == CURLE_OK &&
         curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                          static_cast<curl_off_t>(spec.body->size())) == CURLE_OK;
  }
  if (spec.method != "GET" && spec.method != "POST") {
    ok = ok && curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, spec.method.c_str()) == CURLE_OK;
  }
  if (!ok) {
    return MakeError(ErrorCode::kInternal, "curl_easy_setopt failed");
  }
  if (const CURLcode rc = curl_easy_perform(h); rc != CURLE_OK) {
    long os_errno = 0;
    curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
    const char* detail = error[0] != '\0' ? error : curl_easy_strerror(rc);
    return MakeError(ErrorCode::kUnavailable, DescribeCurlFailure(socket, rc, os_errno, detail));
  }
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  answer.status = static_cast<int>(status);
  return answer;
}

}  // namespace

void AdminOptions::Register(CLI::App* app) {
  socket_option =
      app->add_option("--socket", socket, "signetd's admin socket (default: see below)")
          ->type_name("PATH")
          ->check(CLI::Validator(
              [](const std::string& path) {
                return path.empty() ? std::string("--socket needs a path") : std::string();
              },
              "", "non-empty"));
  app->add_flag("--json", json, "Print signetd's JSON answer as it is (one document)");
}

std::optional<HttpAnswer> AdminRequest(Console& console, std::string_view command,
                                       const AdminOptions& options, const AdminRequestSpec& spec) {
  const auto fail = [&](std::string_view message) {
    console.Error(fmt::format("{}: {}", command, message));
    return std::nullopt;
  };
  const auto socket = FindSocket(options);
  if (!socket) {
    return fail(socket.error().message());
  }
  // stat(2) first: its errno tells a missing socket from a directory the user may not enter.
  struct stat st {};
  if (::stat(socket->c_str(), &st) != 0) {
    return fail(DescribeSocketErrno(*socket, errno));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return fail(DescribeSocketErrno(*socket, ENOTSOCK));
  }
  auto answer = Send(*socket, spec);
  if (!answer) {
    return fail(answer.error().message());
  }
  for (const int status : spec.accepted) {
    if (answer->status == status) {
      return std::move(*answer);
    }
  }
  return fail(DescribeAdminRefusal(*answer));
}

std::optional<json> ParseAnswer(Console& console, std::string_view command,
                                const HttpAnswer& answer) {
  json body = json::parse(answer.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object()) {
    console.Error(fmt::format("{}: signetd's answer (HTTP {}) is not a JSON object: {}", command,
                              answer.status, DisplayName(answer.body.substr(0, 200))));
    return std::nullopt;
  }
  return body;
}

std::string AsIs(std::string_view body) {
  std::string out(body);
  if (!out.ends_with('\n')) {
    out += '\n';
  }
  return out;
}

std::string DescribeAdminRefusal(const HttpAnswer& answer) {
  const json body = json::parse(answer.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object() || !body.contains("message") || !body["message"].is_string()) {
    if (answer.status == 404) {
      return fmt::format(
          "signetd answered HTTP 404: it does not offer this endpoint (is it older than this "
          "signet?) {}",
          DisplayName(answer.body.substr(0, 200)));
    }
    return fmt::format("signetd answered HTTP {}: {}", answer.status,
                       DisplayName(answer.body.substr(0, 200)));
  }
  const std::string code = Field(body, "code", "error");
  std::string text = fmt::format("{} ({})", Field(body, "message"), code);
  if (code == "role_required") {
    text += fmt::format(
        "; {} lacks the {} role: ask an admin to add you to the policy's [roles] {} list", Me(),
        Field(body, "role", "needed"), Field(body, "role", "admin"));
  }
  if (body.contains("limit") && body["limit"].is_string()) {
    text += fmt::format(" (limit {})", Field(body, "limit"));
  }
  return text;
}

std::string Rfc3339(std::int64_t time_us) {
  const std::time_t seconds = static_cast<std::time_t>(time_us / 1000000);
  std::tm tm{};
  if (time_us < 0 || ::gmtime_r(&seconds, &tm) == nullptr) {
    return "?";
  }
  char buffer[32];
  const std::size_t n = std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return n == 0 ? std::string("?") : std::string(buffer, n);
}

std::string Field(const json& object, const char* name, std::string_view fallback) {
  if (!object.is_object() || !object.contains(name) || !object[name].is_string()) {
    return std::string(fallback);
  }
  return DisplayName(object[name].get_ref<const std::string&>());
}

bool ValidKeyName(std::string_view name) {
  return !name.empty() && name.size() <= 128 &&
         name.find_first_not_of(
             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") ==
             std::string_view::npos;
}

int UsageError(Console& console, std::string_view command, std::string_view message) {
  console.Err(
      fmt::format("signet: {}: {}\nRun with --help for more information.\n", command, message));
  return kExitUsage;
}

std::vector<MetricSample> ParseMetrics(std::string_view text) {
  std::vector<MetricSample> samples;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    if (line.empty() || line.front() == '#') {
      continue;
    }
    MetricSample sample;
    const std::size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string_view::npos || name_end == 0) {
      continue;
    }
    sample.name = std::string(line.substr(0, name_end));
    std::size_t i = name_end;
    bool ok = true;
    if (line[i] == '{') {
      ++i;
      // label="value" pairs, the value with \\, \" and \n escaped.
      while (ok && i < line.size() && line[i] != '}') {
        const std::size_t eq = line.find('=', i);
        if (eq == std::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
          ok = false;
          break;
        }
        std::string label(line.substr(i, eq - i));
        std::string value;
        std::size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) {
            ++j;
            value += line[j] == 'n' ? '\n' : line[j];
          } else {
            value += line[j];
          }
        }
        if (j >= line.size()) {
          ok = false;
          break;
        }
        sample.labels.emplace_back(std::move(label), std::move(value));
        i = j + 1;
        if (i < line.size() && line[i] == ',') {
          ++i;
        }
      }
      if (!ok || i >= line.size()) {
        continue;
      }
      ++i;  // '}'
    }
    std::string_view rest = line.substr(i);
    while (!rest.empty() && rest.front() == ' ') {
      rest.remove_prefix(1);
    }
    const std::string value(rest.substr(0, rest.find(' ')));
    if (value == "+Inf" || value == "-Inf" || value == "NaN") {
      sample.value = value == "NaN"    ? std::numeric_limits<double>::quiet_NaN()
                     : value == "+Inf" ? std::numeric_limits<double>::infinity()
                                       : -std::numeric_limits<double>::infinity();
    } else {
      const auto [end, ec] =
          std::from_chars(value.data(), value.data() + value.size(), sample.value);
      if (ec != std::errc() || end != value.data() + value.size() || value.empty()) {
        continue;
      }
    }
    samples.push_back(std::move(sample));
  }
  return samples;
}

}  // namespace signet::cli
