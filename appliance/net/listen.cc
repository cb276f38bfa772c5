// Binding Unix sockets (with stale-file handling) and building the TLS server context.
#include <openssl/err.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "appliance/net/internal/internal.h"

namespace signet::net::internal {
namespace {

constexpr std::size_t kMaxSunPath = sizeof(sockaddr_un::sun_path) - 1;

sockaddr_un UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// A socket file nobody listens on is left behind by a crash; one somebody listens on belongs to a
// running daemon, and replacing it would silently steal its clients.
Status RemoveStaleSocket(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return OkStatus();
    }
    return MakeError(ErrnoError(errno, "stat " + path));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     path +
                         " exists and is not a socket; refusing to replace it (move it away or "
                         "choose another socket path)");
  }
  UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe) {
    return MakeError(ErrnoError(errno, "socket(AF_UNIX)"));
  }
  sockaddr_un addr = UnixAddress(path);
  if (connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) {
    return MakeError(ErrorCode::kUnavailable, "another signetd is listening on " + path +
                                                  "; stop it or choose another socket path");
  }
  if (errno != ECONNREFUSED) {
    return MakeError(ErrnoError(errno, "check whether something listens on " + path));
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return MakeError(ErrnoError(errno, "remove the stale socket " + path));
  }
  return OkStatus();
}

bool FileExists(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

}  // namespace

Result<UniqueFd> BindUnixSocket(const UnixListenerOptions& options, int backlog) {
  const std::string& path = options.path.native();
  if (path.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "a Unix listener needs a socket path");
  }
  if (path.size() > kMaxSunPath) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "socket path " + path + " is " + std::to_string(path.size()) +
                         " bytes; a Unix socket path is at most " + std::to_string(kMaxSunPath) +
                         " bytes (sun_path): choose a shorter directory");
  }
  if ((options.mode & ~07777u) != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "socket mode must be at most 07777");
  }
  SIGNET_RETURN_IF_ERROR(RemoveStaleSocket(path));

  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    return MakeError(ErrnoError(errno, "socket(AF_UNIX)"));
  }
  sockaddr_un addr = UnixAddress(path);
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    if (err == EADDRINUSE) {
      return MakeError(Error(ErrorCode::kUnavailable, "bind " + path + ": address in use",
                             ErrorDomain::kErrno, err));
    }
    return MakeError(ErrnoError(err, "bind " + path));
  }
  // Permissions are fixed before listen(), so no client can connect through a wider mode.
  auto fail = [&](std::string what) {
    int err = errno;
    unlink(path.c_str());
    return MakeError(ErrnoError(err, what));
  };
  if (options.group && chown(path.c_str(), static_cast<uid_t>(-1), *options.group) != 0) {
    return fail("chgrp " + path + " to gid " + std::to_string(*options.group));
  }
  if (chmod(path.c_str(), options.mode) != 0) {
    return fail("chmod " + path);
  }
  if (listen(fd.get(), backlog) != 0) {
    return fail("listen on " + path);
  }
  return fd;
}

Result<SslCtx> MakeServerTlsContext(const TlsListenerOptions& options) {
  for (const auto* file : {&options.cert_file, &options.key_file, &options.ca_file}) {
    if (file->empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "a TLS listener needs cert_file, key_file and ca_file");
    }
    if (!FileExists(*file)) {
      return MakeError(ErrorCode::kNotFound, "TLS file " + file->string() + " does not exist");
    }
  }
  ERR_clear_error();
  SslCtx ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) {
    return MakeError(OpenSslError("SSL_CTX_new"));
  }
  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION) != 1) {
    return MakeError(OpenSslError("restrict the TLS listener to TLS 1.3"));
  }
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), options.cert_file.c_str()) != 1) {
    return MakeError(OpenSslError("load the server certificate " + options.cert_file.string()));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), options.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return MakeError(OpenSslError("load the server key " + options.key_file.string()));
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    return MakeError(OpenSslError("the server key " + options.key_file.string() +
                                  " does not match " + options.cert_file.string()));
  }
  if (SSL_CTX_load_verify_locations(ctx.get(), options.ca_file.c_str(), nullptr) != 1) {
    return MakeError(OpenSslError("load the client CA " + options.ca_file.string()));
  }
  // Tell clients which CAs are acceptable, so one with several certificates picks the right one.
  if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.ca_file.c_str())) {
    SSL_CTX_set_client_CA_list(ctx.get(), names);
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  // Resumed sessions keep the verified client certificate; OpenSSL refuses resumption with client
  // verification unless a session id context is set.
  static constexpr unsigned char kSessionContext[] = "signet";
  if (SSL_CTX_set_session_id_context(ctx.get(), kSessionContext, sizeof(kSessionContext) - 1) !=
      1) {
    return MakeError(OpenSslError("set the TLS session id context"));
  }
  ERR_clear_error();
  return ctx;
}

}  // namespace signet::net::internal
