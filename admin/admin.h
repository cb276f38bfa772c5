// admin/admin.h: the public interface of signet::admin.
//
// Not built yet: this module will hold the admin-socket API: policy, keys, approvals, audit
// query/export, metrics, health. It may use: service, audit, policy. It names no C library type
// (OpenSSL, PKCS#11, LMDB, liburing, TBB): those stay behind admin/internal/.
#ifndef SIGNET_ADMIN_ADMIN_H_
#define SIGNET_ADMIN_ADMIN_H_

#include "appliance/base/base.h"

namespace signet::admin {}  // namespace signet::admin

#endif  // SIGNET_ADMIN_ADMIN_H_
