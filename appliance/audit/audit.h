// appliance/audit/audit.h: the public interface of signet::audit.
//
// Not built yet: this module will hold the LMDB audit log: records, Merkle tree, signed
// checkpoints, export, offline verification. Checkpoints are signed through a signer interface the
// service hands in, so this module does not depend on hsm. It may use: base, pipeline. It names no
// C library type (OpenSSL, PKCS#11, LMDB, liburing, TBB): those stay behind
// appliance/audit/internal/.
#ifndef SIGNET_APPLIANCE_AUDIT_AUDIT_H_
#define SIGNET_APPLIANCE_AUDIT_AUDIT_H_

#include "appliance/base/base.h"

namespace signet::audit {}  // namespace signet::audit

#endif  // SIGNET_APPLIANCE_AUDIT_AUDIT_H_
