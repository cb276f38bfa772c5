// appliance/net/internal/internal.h: pieces of signet::net that need C library types (OpenSSL,
// sockets) but not Boost, so they compile apart from the Beast translation unit.
#ifndef SIGNET_APPLIANCE_NET_INTERNAL_INTERNAL_H_
#define SIGNET_APPLIANCE_NET_INTERNAL_INTERNAL_H_

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <filesystem>
#include <memory>
#include <string>

#include "appliance/base/base.h"
#include "appliance/net/net.h"

namespace signet::net::internal {

using SslCtx = std::unique_ptr<SSL_CTX, FnDeleter<&SSL_CTX_free>>;

// UnixPeer reads SO_PEERCRED from the connected socket `fd` and resolves user and groups.
// `address` is the listener's path. Errors: kIo (getsockopt failed).
[[nodiscard]] Result<Peer> UnixPeer(int fd, std::string address);

// TlsPeer describes the (already verified) client certificate `cert`. Errors: kCrypto.
[[nodiscard]] Result<Peer> TlsPeer(X509* cert, std::string address);

// BindUnixSocket removes a stale socket file at `options.path` (only when connecting to it is
// refused), binds a new one, applies group and mode, and listens. Errors as Server::Start.
[[nodiscard]] Result<UniqueFd> BindUnixSocket(const UnixListenerOptions& options, int backlog);

// MakeServerTlsContext builds a TLS 1.3-only server context that requires a client certificate
// verified against `options.ca_file`. Errors: kNotFound (a file is missing), kCrypto.
[[nodiscard]] Result<SslCtx> MakeServerTlsContext(const TlsListenerOptions& options);

// NewRequestId returns 32 random hex digits.
std::string NewRequestId();

// JsonString returns `s` as a JSON string literal, quotes included (invalid UTF-8 bytes become
// U+FFFD so the output is always valid JSON).
std::string JsonString(std::string_view s);

}  // namespace signet::net::internal

#endif  // SIGNET_APPLIANCE_NET_INTERNAL_INTERNAL_H_
