#include "appliance/cli/internal/daemon_client.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <vector>

#include "appliance/cli/internal/console.h"

namespace signet::cli {
namespace {

using nlohmann::json;
using CurlEasy = std::unique_ptr<CURL, FnDeleter<&curl_easy_cleanup>>;
using CurlSlist = std::unique_ptr<curl_slist, FnDeleter<&curl_slist_free_all>>;

constexpr std::string_view kSystemSocket = "/run/signet/sign.sock";

std::size_t AppendBody(char* data, std::size_t size, std::size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

// The first socket path that exists: `given`, else $SIGNET_SOCKET, ./.signet/sign.sock and
// /run/signet/sign.sock. Errors: kUnavailable listing every path tried.
Result<std::string> FindSocket(const std::optional<std::string>& given) {
  std::vector<std::string> candidates;
  if (given) {
    candidates.push_back(*given);
  } else {
    if (const char* env = std::getenv("SIGNET_SOCKET"); env != nullptr && *env != '\0') {
      candidates.emplace_back(env);
    }
    candidates.emplace_back("./.signet/sign.sock");
    candidates.emplace_back(kSystemSocket);
  }
  std::string tried;
  for (const std::string& path : candidates) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
      return path;
    }
    tried += (tried.empty() ? "" : ", ") + DisplayName(path);
  }
  return MakeError(ErrorCode::kUnavailable,
                   fmt::format("no signetd socket found (looked for {}); is signetd running? Name "
                               "its socket with --socket PATH or $SIGNET_SOCKET, or use --url",
                               tried));
}

// https://HOST:PORT or https://[V6]:PORT, nothing after the port.
bool ValidUrl(const std::string& url) {
  constexpr std::string_view kScheme = "https://";
  if (!url.starts_with(kScheme) || url.size() > 512) {
    return false;
  }
  const std::string rest = url.substr(kScheme.size());
  const std::size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size() ||
      rest.find('/') != std::string::npos || rest.find('@') != std::string::npos) {
    return false;
  }
  const std::string port = rest.substr(colon + 1);
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  const unsigned long value = std::strtoul(port.c_str(), nullptr, 10);
  return value >= 1 && value <= 65535;
}

}  // namespace

void EndpointOptions::Register(CLI::App* app) {
  socket_option_ =
      app->add_option("--socket", socket_, "signetd's Unix socket (default: see below)")
          ->type_name("PATH");
  url_option_ = app->add_option("--url", url_,
                                "signetd's TLS listener, https://HOST:PORT (instead of a socket)")
                    ->type_name("URL");
  app->add_option("--cert", cert_, "Client certificate for --url (PEM)")->type_name("FILE");
  app->add_option("--cert-key", cert_key_, "Private key of --cert (PEM)")->type_name("FILE");
  app->add_option("--cacert", cacert_, "CA certificate that signed signetd's certificate (PEM)")
      ->type_name("FILE");
}

Result<Endpoint> EndpointOptions::Resolve() const {
  Endpoint endpoint;
  const bool tls_files = !cert_.empty() || !cert_key_.empty() || !cacert_.empty();
  if (url_option_->count() == 0) {
    if (tls_files) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "--cert, --cert-key and --cacert go with --url https://HOST:PORT");
    }
    std::optional<std::string> given;
    if (socket_option_->count() > 0) {
      if (socket_.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "--socket needs a path");
      }
      given = socket_;
    }
    SIGNET_ASSIGN_OR_RETURN(endpoint.socket, FindSocket(given));
    return endpoint;
  }
  if (socket_option_->count() > 0) {
    return MakeError(ErrorCode::kInvalidArgument, "give --socket or --url, not both");
  }
  if (!ValidUrl(url_)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("--url '{}': expected https://HOST:PORT (TLS only, no path)",
                                 DisplayName(url_)));
  }
  if (cert_.empty() || cert_key_.empty() || cacert_.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "--url needs --cert, --cert-key and --cacert: signetd requires a client "
                     "certificate and its own must be checked against a CA you name");
  }
  for (const std::string* file : {&cert_, &cert_key_, &cacert_}) {
    struct stat st {};
    if (::stat(file->c_str(), &st) != 0) {
      return MakeError(ErrnoError(errno, DisplayName(*file)));
    }
  }
  endpoint.url = url_;
  endpoint.cert = cert_;
  endpoint.cert_key = cert_key_;
  endpoint.cacert = cacert_;
  return endpoint;
}

struct DaemonClient::Handle {
  Endpoint endpoint;
  CurlEasy easy;
  CurlSlist json_headers;
  char error[CURL_ERROR_SIZE] = {};

  std::string Name() const {
    return endpoint.url.empty() ? DisplayName(endpoint.socket) : DisplayName(endpoint.url);
  }
};

DaemonClient::DaemonClient(std::unique_ptr<Handle> handle) : handle_(std::move(handle)) {}
DaemonClient::~DaemonClient() = default;

Result<std::unique_ptr<DaemonClient>> DaemonClient::Connect(const Endpoint& endpoint) {
  // Thread-safe from libcurl 7.84 on, and a no-op after the first call.
  if (const CURLcode init = curl_global_init(CURL_GLOBAL_DEFAULT); init != CURLE_OK) {
    return MakeError(ErrorCode::kInternal,
                     fmt::format("curl_global_init: {}", curl_easy_strerror(init)));
  }
  auto handle = std::make_unique<Handle>();
  handle->endpoint = endpoint;
  handle->easy.reset(curl_easy_init());
  curl_slist* list = curl_slist_append(nullptr, "Content-Type: application/json");
  handle->json_headers.reset(list);
  // Without this, curl sends "Expect: 100-continue" before large bodies and waits for it.
  if (list == nullptr || curl_slist_append(list, "Expect:") == nullptr || !handle->easy) {
    return MakeError(ErrorCode::kInternal, "curl: out of memory");
  }
  CURL* h = handle->easy.get();
  bool ok = curl_easy_setopt(h, CURLOPT_ERRORBUFFER, handle->error) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &AppendBody) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L) == CURLE_OK &&
            // A batch waits for the HSM and an audit commit; ten minutes means something is wrong.
            curl_easy_setopt(h, CURLOPT_TIMEOUT, 600L) == CURLE_OK;
  if (handle->endpoint.url.empty()) {
    ok = ok &&
         curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, handle->endpoint.socket.c_str()) == CURLE_OK;
  } else {
    ok = ok && curl_easy_setopt(h, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_3) == CURLE_OK &&
         curl_easy_setopt(h, CURLOPT_SSLCERT, handle->endpoint.cert.c_str()) == CURLE_OK &&
         curl_easy_setopt(h, CURLOPT_SSLKEY, handle->endpoint.cert_key.c_str()) == CURLE_OK &&
         curl_easy_setopt(h, CURLOPT_CAINFO, handle->endpoint.cacert.c_str()) == CURLE_OK &&
         curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
         curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK;
  }
  if (!ok) {
    return MakeError(ErrorCode::kInternal, "curl_easy_setopt failed");
  }
  return std::unique_ptr<DaemonClient>(new DaemonClient(std::move(handle)));
}

Result<HttpAnswer> DaemonClient::Get(const std::string& target) { return Send(target, nullptr); }

namespace {

struct StreamTarget {
  const std::function<bool(std::string_view)>* sink;
  CURL* easy;
  std::string* error_body;  // a status other than 200: its body, collected
  bool stopped = false;     // the sink said stop
};

std::size_t StreamBody(char* data, std::size_t size, std::size_t count, void* user) {
  auto* target = static_cast<StreamTarget*>(user);
  const std::size_t n = size * count;
  long status = 0;
  curl_easy_getinfo(target->easy, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) {
    if (target->error_body->size() < (std::size_t{1} << 20)) {  // an error body is small
      target->error_body->append(data, n);
    }
    return n;
  }
  if (!(*target->sink)(std::string_view(data, n))) {
    target->stopped = true;
    return 0;  // curl ends the transfer with CURLE_WRITE_ERROR
  }
  return n;
}

}  // namespace

Result<HttpAnswer> DaemonClient::GetStreamed(
    const std::string& target, const std::function<bool(std::string_view piece)>& sink) {
  CURL* h = handle_->easy.get();
  const std::string url =
      (handle_->endpoint.url.empty() ? std::string("http://localhost") : handle_->endpoint.url) +
      target;
  HttpAnswer answer;
  StreamTarget stream{.sink = &sink, .easy = h, .error_body = &answer.body};
  handle_->error[0] = '\0';
  // Restored afterwards: the handle's other requests keep their overall timeout.
  const bool ok = curl_easy_setopt(h, CURLOPT_URL, url.c_str()) == CURLE_OK &&
                  curl_easy_setopt(h, CURLOPT_HTTPGET, 1L) == CURLE_OK &&
                  curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr) == CURLE_OK &&
                  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &StreamBody) == CURLE_OK &&
                  curl_easy_setopt(h, CURLOPT_WRITEDATA, &stream) == CURLE_OK &&
                  curl_easy_setopt(h, CURLOPT_TIMEOUT, 0L) == CURLE_OK &&
                  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L) == CURLE_OK &&
                  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 300L) == CURLE_OK;
  const CURLcode rc = ok ? curl_easy_perform(h) : CURLE_FAILED_INIT;
  const bool restored = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &AppendBody) == CURLE_OK &&
                        curl_easy_setopt(h, CURLOPT_TIMEOUT, 600L) == CURLE_OK &&
                        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 0L) == CURLE_OK &&
                        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 0L) == CURLE_OK;
  if (!ok || !restored) {
    return MakeError(ErrorCode::kInternal, "curl_easy_setopt failed");
  }
  if (stream.stopped) {
    return MakeError(ErrorCode::kIo, "the transfer was stopped");
  }
  if (rc != CURLE_OK) {
    const std::string detail = handle_->error[0] != '\0' ? handle_->error : curl_easy_strerror(rc);
    return MakeError(ErrorCode::kUnavailable,
                     rc == CURLE_PARTIAL_FILE
                         ? fmt::format("the answer from signetd at {} was cut short: {}",
                                       handle_->Name(), detail)
                         : fmt::format("talking to signetd at {}: {}", handle_->Name(), detail));
  }
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  answer.status = static_cast<int>(status);
  return answer;
}

Result<HttpAnswer> DaemonClient::Post(const std::string& target, const std::string& json_body) {
  return Send(target, &json_body);
}

Result<HttpAnswer> DaemonClient::Post(const std::string& target, const std::string& json_body,
                                      const std::vector<std::string>& headers) {
  return Send(target, &json_body, headers);
}

Result<HttpAnswer> DaemonClient::Send(const std::string& target, const std::string* body,
                                      const std::vector<std::string>& headers) {
  CURL* h = handle_->easy.get();
  const std::string url =
      (handle_->endpoint.url.empty() ? std::string("http://localhost") : handle_->endpoint.url) +
      target;
  HttpAnswer answer;
  handle_->error[0] = '\0';
  bool ok = curl_easy_setopt(h, CURLOPT_URL, url.c_str()) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer.body) == CURLE_OK;
  // The JSON headers, plus `headers` for this request only.
  CurlSlist request_headers;
  curl_slist* header_list = handle_->json_headers.get();
  if (!headers.empty()) {
    bool appended = true;
    auto append = [&](const char* line) {
      curl_slist* list = curl_slist_append(request_headers.get(), line);
      if (list == nullptr) {
        appended = false;
      } else if (request_headers.get() == nullptr) {
        request_headers.reset(list);  // the first node; later ones are appended to it
      }
    };
    append("Content-Type: application/json");
    append("Expect:");
    for (const std::string& header : headers) {
      append(header.c_str());
    }
    if (!appended) {
      return MakeError(ErrorCode::kInternal, "curl: out of memory");
    }
    header_list = request_headers.get();
  }
  if (body != nullptr) {
    ok = ok && curl_easy_setopt(h, CURLOPT_POST, 1L) == CURLE_OK &&
         curl_easy_setopt(h, CURLOPT_HTTPHEADER, header_list) == CURLE_OK &&
         curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->data()) == CURLE_OK &&
         curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size())) ==
             CURLE_OK;
  } else {
    ok = ok && curl_easy_setopt(h, CURLOPT_HTTPGET, 1L) == CURLE_OK &&
         curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr) == CURLE_OK;
  }
  if (!ok) {
    return MakeError(ErrorCode::kInternal, "curl_easy_setopt failed");
  }
  const CURLcode rc = curl_easy_perform(h);
  if (header_list != handle_->json_headers.get()) {
    // This request's own list is freed on return: the handle must not keep pointing at it.
    (void)curl_easy_setopt(h, CURLOPT_HTTPHEADER, handle_->json_headers.get());
  }
  if (rc != CURLE_OK) {
    const std::string detail = handle_->error[0] != '\0' ? handle_->error : curl_easy_strerror(rc);
    return MakeError(ErrorCode::kUnavailable,
                     fmt::format("talking to signetd at {}: {}", handle_->Name(), detail));
  }
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  answer.status = static_cast<int>(status);
  return answer;
}

std::string DescribeRefusal(const HttpAnswer& answer) {
  const json body = json::parse(answer.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object() || !body.contains("message") || !body["message"].is_string()) {
    return fmt::format("signetd answered HTTP {}: {}", answer.status,
                       DisplayName(answer.body.substr(0, 200)));
  }
  std::string text =
      fmt::format("signetd refused (HTTP {} {}): {}", answer.status,
                  body.value("code", std::string("error")), body["message"].get<std::string>());
  if (body.contains("rule") && body["rule"].is_string()) {
    const auto& rule = body["rule"].get_ref<const std::string&>();
    text += rule.empty() ? " (no policy rule applies)" : fmt::format(" (policy rule \"{}\")", rule);
  }
  if (body.contains("limit") && body["limit"].is_string()) {
    text += fmt::format(" (limit {})", body["limit"].get<std::string>());
  }
  return DisplayName(text);
}

}  // namespace signet::cli
