// pipeline/pipeline.h: the public interface of signet::pipeline.
//
// Not built yet: this module will hold file reading (io_uring, with a plain-read fallback), digests
// (OpenSSL EVP: SHA-256/384/512, BLAKE2b-512), the TBB pipeline across files, RFC 6962 Merkle trees
// and proofs. It may use: base. It names no C library type (OpenSSL, PKCS#11, LMDB, liburing, TBB):
// those stay behind pipeline/internal/.
#ifndef SIGNET_PIPELINE_PIPELINE_H_
#define SIGNET_PIPELINE_PIPELINE_H_

#include "appliance/base/base.h"

namespace signet::pipeline {}  // namespace signet::pipeline

#endif  // SIGNET_PIPELINE_PIPELINE_H_
