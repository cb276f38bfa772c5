// appliance/service/service.h: the public interface of signet::service.
//
// Not built yet: this module will hold the sign service: request -> policy -> HSM -> formats ->
// audit -> response; approvals; metrics. It may use: all modules above it. It names no C library
// type (OpenSSL, PKCS#11, LMDB, liburing, TBB): those stay behind appliance/service/internal/.
#ifndef SIGNET_APPLIANCE_SERVICE_SERVICE_H_
#define SIGNET_APPLIANCE_SERVICE_SERVICE_H_

#include "appliance/base/base.h"

namespace signet::service {}  // namespace signet::service

#endif  // SIGNET_APPLIANCE_SERVICE_SERVICE_H_
