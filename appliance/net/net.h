// appliance/net/net.h: HTTP/1.1 listeners on Unix sockets and TLS 1.3, with peer identity, size
// limits and timeouts (Boost.Beast/Asio and OpenSSL stay behind appliance/net/internal/).
//
// Caveats:
// - HTTP/1.1 only, no pipelining beyond reading the next request after the previous response; a
//   request of another version gets 505. Every error the server makes itself is JSON:
//   {"code":"body_too_large","message":"...","limit":"max_body_bytes"} ("limit" only when a limit
//   was exceeded).
// - The Handler runs on an I/O thread and must not block: it takes the Request and a `respond`
//   callback and returns at once; the work goes elsewhere and calls `respond` later, from any
//   thread. `respond` is used at most once (later calls are ignored). If every copy of it is
//   destroyed without a call, the client gets 500 "internal" (so a forgotten request never hangs).
//   If the client went away meanwhile, the response is dropped: calling `respond` after the
//   connection, or the whole Server, is gone is safe.
// - Request::cancelled becomes true when the client disconnects while its request waits for a
//   response (checked every 100 ms once the client has sent more bytes). It is advice: the service
//   may stop work early, and still calls `respond`.
// - Peer identity comes from the kernel (SO_PEERCRED, read at accept time, so it names whoever
//   connected, not whoever writes later) or from a client certificate that the TLS handshake
//   verified against the listener's CA. User and group names are resolved with getpwuid_r and
//   getgrouplist on the I/O thread: a slow NSS source (LDAP) slows accepting.
// - UnixListenerOptions::accept_peer runs at accept time, before a single byte is read; a refused
//   peer is disconnected without a response. The predicate is where refusals are logged/audited.
// - A stale socket file is removed at start only when connect() to it is refused; a live one (or a
//   path that is not a socket) is an error. The socket file is removed again by Stop when it is
//   still the one this Server bound.
// - Exceeding max_connections still accepts the connection, answers 503 and closes it, so the
//   client learns why; such connections do not count toward the limit.
// - Stop (and the destructor) stop accepting, close idle connections, let requests already read
//   finish until the deadline (their responses carry "Connection: close"), then close the rest.
//   Do not call Stop or destroy the Server from inside a Handler.
#ifndef SIGNET_APPLIANCE_NET_NET_H_
#define SIGNET_APPLIANCE_NET_NET_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "appliance/base/base.h"

namespace signet::net {

// Peer is who is on the other end of a connection.
struct Peer {
  enum class Kind : std::uint8_t { kUnix, kTls };
  Kind kind = Kind::kUnix;

  // kUnix: from SO_PEERCRED at accept time.
  std::optional<std::int64_t> pid{};
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::string user{};                 // "" when the uid has no passwd entry (the uid still counts)
  std::vector<std::uint32_t> gids{};  // primary and supplementary groups (getgrouplist)
  std::vector<std::string> groups{};  // their names; a gid without a name appears as its number

  // kTls: from the verified client certificate.
  std::string cert_subject{};  // RFC 2253, e.g. "CN=ci-runner-1,O=Example"
  // Subject alternative names: "DNS:host", "URI:spiffe://...", "email:a@b", "IP:1.2.3.4".
  std::vector<std::string> cert_sans{};
  std::string cert_fingerprint{};  // lower-case hex SHA-256 of the DER certificate

  // kUnix: the listener's socket path; kTls: the client's "ip:port" ("[v6]:port").
  std::string address{};
};

// The identity a local account would have as a Unix peer: uid, user, primary and supplementary
// groups, resolved as for a connecting peer (no pid, no address). For the admin API's "explain".
// Errors: kNotFound (no such account), kIo.
[[nodiscard]] Result<Peer> LocalPeer(std::string_view user);
[[nodiscard]] Result<Peer> LocalPeer(std::uint32_t uid);

// Request is one HTTP/1.1 request, read completely (body included) before the Handler sees it.
struct Request {
  std::string method{};  // "GET", "POST", ...
  std::string target{};  // "/v1/sign?x=y", as sent
  // Header fields in arrival order; names lower-cased, values as sent (without surrounding spaces).
  std::vector<std::pair<std::string, std::string>> headers{};
  std::string body{};
  Peer peer{};
  // 32 hex digits generated per request; the response carries it as X-Request-Id.
  std::string request_id{};
  // Set (never cleared) when the client disconnects before the response is written.
  std::shared_ptr<const std::atomic<bool>> cancelled{};

  // The first header named `name` (compared case-insensitively), or nullopt.
  std::optional<std::string_view> Header(std::string_view name) const;
};

// BodyWriter hands the server the next piece of a streamed body. It blocks while the connection
// has kStreamWindowBytes or more queued and unsent, and returns false once the body can no longer
// be delivered (the client went away or stopped reading for request_timeout, or the server is
// stopping): the producer should then stop and return.
using BodyWriter = std::function<bool(std::string_view piece)>;
inline constexpr std::size_t kStreamWindowBytes = 1024 * 1024;

// Response is what the Handler answers. Content-Length (or Transfer-Encoding), X-Request-Id and
// Connection are set by the server; `headers` must not contain those.
struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body{};
  std::vector<std::pair<std::string, std::string>> headers{};
  // A body produced while it is sent, for answers too large to hold in memory. When set, `body`
  // must be empty: the Responder call runs `stream` on the calling thread, and the server sends
  // the head (with "Transfer-Encoding: chunked") with the first piece written, then each piece as
  // it goes, and returns when `stream` has returned. So a streamed response must be given from a
  // thread that may block (a worker of the service, never the Handler or another I/O thread: the
  // server answers 500 "internal" there).
  // If `stream` fails (an error or an exception) before writing a byte, the client gets
  // `refuse_stream(error)` instead, as a whole response (500 "internal" when unset). If it fails
  // later, the connection is cut before the final chunk, so the client sees an incomplete body,
  // never a short one that looks whole.
  std::function<Status(const BodyWriter& write)> stream{};
  std::function<Response(const Error& error)> refuse_stream{};
};

// JsonError builds the server's error shape: {"code":code,"message":message[,"limit":limit]}.
Response JsonError(int status, std::string_view code, std::string_view message,
                   std::string_view limit = {});

// Responder sends the response to one request. Callable from any thread (a streamed one: see
// Response::stream); only the first call counts. Copyable (all copies share one response slot).
using Responder = std::function<void(Response)>;
// Handler receives each complete request on an I/O thread and must return without blocking.
// Exceptions it throws become 500 "internal" responses.
using Handler = std::function<void(Request request, Responder respond)>;

// Limits apply per connection; exceeding one answers with a 4xx/5xx JSON error naming the limit.
struct Limits {
  std::size_t max_body_bytes = 16 * 1024 * 1024;  // 413 body_too_large
  std::size_t max_header_bytes = 16 * 1024;       // 431 headers_too_large (request line included)
  // How long a connection may sit between requests (or before the first one, or before the TLS
  // handshake completes) before it is closed silently.
  std::chrono::milliseconds idle_timeout = std::chrono::seconds(60);
  // How long a client may take to send one whole request once its first byte arrived: 408
  // request_timeout. Also bounds how long writing a response may take.
  std::chrono::milliseconds request_timeout = std::chrono::seconds(300);
  std::size_t max_connections =
      256;  // open connections over all listeners: 503 too_many_connections
};

struct UnixListenerOptions {
  std::filesystem::path path{};          // at most 107 bytes (sun_path is 108 with its NUL)
  std::uint32_t mode = 0660;             // applied to the socket file before listen()
  std::optional<std::uint32_t> group{};  // chgrp the socket file to this gid before listen()
  // Called at accept time with the peer's SO_PEERCRED identity; false disconnects it before any
  // byte is read. Runs on an I/O thread: keep it quick. Empty accepts everyone.
  std::function<bool(const Peer&)> accept_peer{};
};

// TLS 1.3 only; the client must present a certificate that verifies against `ca_file`.
struct TlsListenerOptions {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;             // 0 picks a free port: see Server::bound_tcp_port
  std::filesystem::path cert_file{};  // PEM server certificate chain
  std::filesystem::path key_file{};   // PEM private key
  std::filesystem::path ca_file{};    // PEM CA certificate(s) client certificates must chain to
};

struct ServerOptions {
  unsigned threads = 2;  // I/O threads: 1 to 64
  Limits limits{};
  std::vector<UnixListenerOptions> unix_listeners{};
  std::vector<TlsListenerOptions> tls_listeners{};
  // Reports failures no client can be told about (accept failing, a Handler throwing, an
  // exception escaping on an I/O thread), for logs. Called on I/O threads; may be empty.
  std::function<void(const Error&)> on_error{};
};

// Server owns the listeners and the I/O threads. Thread-safe; neither copyable nor movable.
class Server {
 public:
  // Start binds every listener (all or nothing: on error nothing is left bound or created) and
  // starts serving. Errors: kInvalidArgument (no listener, bad options, path longer than
  // sun_path's 107 bytes, path exists and is not a socket), kUnavailable (address in use, another
  // process listening on the socket path), kPermissionDenied, kNotFound (missing directory or
  // certificate file), kCrypto (certificate, key or CA file unusable), kIo.
  [[nodiscard]] static Result<std::unique_ptr<Server>> Start(ServerOptions options,
                                                             Handler handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The TCP port TLS listener `index` (in ServerOptions::tls_listeners order) is bound to.
  std::uint16_t bound_tcp_port(std::size_t index) const;

  // Stops accepting, closes idle connections, waits until in-flight requests are answered or
  // `deadline` passes, then closes every connection and joins the I/O threads. Idempotent.
  void Stop(Deadline deadline);

  // Number of open connections (including over-limit ones being turned away). For tests/metrics.
  std::size_t open_connections() const;

  // Used by Start; Impl is defined only inside the module.
  class Impl;
  explicit Server(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace signet::net

#endif  // SIGNET_APPLIANCE_NET_NET_H_
