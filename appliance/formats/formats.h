// appliance/formats/formats.h: the public interface of signet::formats.
//
// Not built yet: this module will hold signature envelopes: raw DER, Sigstore bundle, OpenPGP v4,
// SSH signatures, minisign, CMS, batch receipts. The daemon builds every envelope itself (one key,
// one format). It may use: base, pipeline. It names no C library type (OpenSSL, PKCS#11, LMDB,
// liburing, TBB): those stay behind appliance/formats/internal/.
#ifndef SIGNET_APPLIANCE_FORMATS_FORMATS_H_
#define SIGNET_APPLIANCE_FORMATS_FORMATS_H_

#include "appliance/base/base.h"

namespace signet::formats {}  // namespace signet::formats

#endif  // SIGNET_APPLIANCE_FORMATS_FORMATS_H_
