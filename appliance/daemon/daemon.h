// appliance/daemon/daemon.h: the public interface of signet::daemon.
//
// Not built yet: this module will hold signetd's configuration (TOML), start-up, the --dev embedded
// default, hardening and signals. It may use: service, admin. It names no C library type (OpenSSL,
// PKCS#11, LMDB, liburing, TBB): those stay behind appliance/daemon/internal/.
#ifndef SIGNET_APPLIANCE_DAEMON_DAEMON_H_
#define SIGNET_APPLIANCE_DAEMON_DAEMON_H_

#include "appliance/base/base.h"

namespace signet::daemon {}  // namespace signet::daemon

#endif  // SIGNET_APPLIANCE_DAEMON_DAEMON_H_
