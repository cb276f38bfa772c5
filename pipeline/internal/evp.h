// pipeline/internal/evp.h: OpenSSL EVP helpers shared inside signet::pipeline. Not public.
#ifndef SIGNET_PIPELINE_INTERNAL_EVP_H_
#define SIGNET_PIPELINE_INTERNAL_EVP_H_

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <vector>

#include "pipeline/pipeline.h"

namespace signet::pipeline::internal {

using EvpMdCtx = std::unique_ptr<EVP_MD_CTX, FnDeleter<&EVP_MD_CTX_free>>;

// The EVP_MD for `algorithm`, fetched once per process (never freed).
const EVP_MD* Md(DigestAlgorithm algorithm);

// MultiDigest computes several digests of one byte stream in one pass. Not thread-safe; reusable
// after Finish through Reset.
class MultiDigest {
 public:
  [[nodiscard]] static Result<MultiDigest> Create(std::span<const DigestAlgorithm> algorithms);

  [[nodiscard]] Status Reset();
  [[nodiscard]] Status Update(std::span<const std::uint8_t> bytes);
  [[nodiscard]] Result<std::vector<Digest>> Finish();

 private:
  std::vector<DigestAlgorithm> algorithms_;
  std::vector<EvpMdCtx> contexts_;
};

}  // namespace signet::pipeline::internal

#endif  // SIGNET_PIPELINE_INTERNAL_EVP_H_
