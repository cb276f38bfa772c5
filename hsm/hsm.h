// hsm/hsm.h: the public interface of signet::hsm.
//
// Not built yet: this module will hold PKCS#11 module loading, token login, session pool, batched
// signer, key generation and lookup, public-key export. Keys are generated inside the HSM and never
// leave it. It may use: base. It names no C library type (OpenSSL, PKCS#11, LMDB, liburing, TBB):
// those stay behind hsm/internal/.
#ifndef SIGNET_HSM_HSM_H_
#define SIGNET_HSM_HSM_H_

#include "appliance/base/base.h"

namespace signet::hsm {}  // namespace signet::hsm

#endif  // SIGNET_HSM_HSM_H_
