// Private to appliance/cli: talking to signetd's sign API, over its Unix socket or over TLS 1.3
// with a client certificate, for `signet sign` and `signet keys`.
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_DAEMON_CLIENT_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_DAEMON_CLIENT_H_

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "appliance/base/base.h"

namespace signet::cli {

// Where signetd is and how to prove who we are.
struct Endpoint {
  std::string socket;  // a Unix socket path, or
  std::string url;     // https://HOST:PORT (then the three files below are set)
  std::string cert;    // client certificate (PEM)
  std::string cert_key;
  std::string cacert;  // the CA that signed signetd's certificate
};

// The options --socket, --url, --cert, --cert-key and --cacert of one subcommand.
class EndpointOptions {
 public:
  void Register(CLI::App* app);
  // Errors: kInvalidArgument (a half-given TLS setup, a URL that is not https://HOST:PORT, both
  // --socket and --url), kUnavailable (no socket given and none of the usual places exists).
  [[nodiscard]] Result<Endpoint> Resolve() const;

 private:
  std::string socket_;
  std::string url_;
  std::string cert_;
  std::string cert_key_;
  std::string cacert_;
  CLI::Option* socket_option_ = nullptr;
  CLI::Option* url_option_ = nullptr;
};

// The usual socket places, for help texts.
inline constexpr std::string_view kEndpointHelp = R"help(
signetd is reached at --socket PATH, else $SIGNET_SOCKET, else ./.signet/sign.sock, else
/run/signet/sign.sock (the first that exists); or over TLS 1.3 with --url https://HOST:PORT
--cert CLIENT.pem --cert-key CLIENT.key --cacert CA.pem (a client certificate is required).)help";

struct HttpAnswer {
  int status = 0;
  std::string body;
};

// One connection to signetd that libcurl keeps open between requests. Used by one thread at a
// time; make one per thread for requests in parallel.
class DaemonClient {
 public:
  // Errors: kInternal (curl could not be set up).
  [[nodiscard]] static Result<std::unique_ptr<DaemonClient>> Connect(const Endpoint& endpoint);
  ~DaemonClient();
  DaemonClient(const DaemonClient&) = delete;
  DaemonClient& operator=(const DaemonClient&) = delete;

  // Errors: kUnavailable (no connection, TLS refused, timeout, broken answer), naming the endpoint.
  [[nodiscard]] Result<HttpAnswer> Get(const std::string& target);
  // GET whose 200 body goes to `sink` piece by piece as it arrives (pieces split anywhere), for
  // bodies too large to hold; the answer's body is then empty. Any other status's body is
  // collected into the answer as Get collects it. No overall timeout: the transfer fails when
  // nothing arrives for five minutes. Errors: Get's, including a body cut short (kUnavailable,
  // "... cut short"); kIo when `sink` returned false (the caller knows why).
  [[nodiscard]] Result<HttpAnswer> GetStreamed(
      const std::string& target, const std::function<bool(std::string_view piece)>& sink);
  [[nodiscard]] Result<HttpAnswer> Post(const std::string& target, const std::string& json_body);
  // Post with more header fields ("Name: value" each).
  [[nodiscard]] Result<HttpAnswer> Post(const std::string& target, const std::string& json_body,
                                        const std::vector<std::string>& headers);

  struct Handle;

 private:
  explicit DaemonClient(std::unique_ptr<Handle> handle);
  [[nodiscard]] Result<HttpAnswer> Send(const std::string& target, const std::string* body,
                                        const std::vector<std::string>& headers = {});
  std::unique_ptr<Handle> handle_;
};

// The daemon's error shape {"code", "message"[, "rule"][, "limit"]} as one line.
std::string DescribeRefusal(const HttpAnswer& answer);

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_DAEMON_CLIENT_H_
