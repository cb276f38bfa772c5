// appliance/net/net.h: the public interface of signet::net.
//
// Not built yet: this module will hold HTTP/1.1 over Unix sockets and TLS (Boost.Beast/Asio), peer
// identity, size limits and timeouts. It may use: base. It names no C library type (OpenSSL,
// PKCS#11, LMDB, liburing, TBB): those stay behind appliance/net/internal/.
#ifndef SIGNET_APPLIANCE_NET_NET_H_
#define SIGNET_APPLIANCE_NET_NET_H_

#include "appliance/base/base.h"

namespace signet::net {}  // namespace signet::net

#endif  // SIGNET_APPLIANCE_NET_NET_H_
