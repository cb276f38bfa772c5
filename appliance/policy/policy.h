// appliance/policy/policy.h: the public interface of signet::policy.
//
// Not built yet: this module will hold identities, roles, the policy model, the TOML policy parser
// and the evaluator. It may use: base. It names no C library type (OpenSSL, PKCS#11, LMDB,
// liburing, TBB): those stay behind appliance/policy/internal/.
#ifndef SIGNET_APPLIANCE_POLICY_POLICY_H_
#define SIGNET_APPLIANCE_POLICY_POLICY_H_

#include "appliance/base/base.h"

namespace signet::policy {}  // namespace signet::policy

#endif  // SIGNET_APPLIANCE_POLICY_POLICY_H_
