
#include <algorithm>
#include <cctype>
#include <string>

#include "pipeline/internal/evp.h"
#include "pipeline/pipeline.h"

namespace signet::pipeline {

std::string_view DigestAlgorithmName(DigestAlgorithm algorithm) {
  switch (algorithm) {
    case DigestAlgorithm::kSha256:
      return "sha256";
    case DigestAlgorithm::kSha384:
      return "sha384";
    case DigestAlgorithm::kSha512:
      return "sha512";
    case DigestAlgorithm::kBlake2b512:
      return "blake2b512";
  }
  return "unknown";
}

std::size_t DigestLength(DigestAlgorithm algorithm) {
  switch (algorithm) {
    case DigestAlgorithm::kSha256:
      return 32;
    case DigestAlgorithm::kSha384:
      return 48;
    case DigestAlgorithm::kSha512:
    case DigestAlgorithm::kBlake2b512:
      return 64;
  }
  return 0;
}

Result<DigestAlgorithm> ParseDigestAlgorithm(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "sha256" || lower == "sha-256") {
    return DigestAlgorithm::kSha256;
  }
  if (lower == "sha384" || lower == "sha-384") {
    return DigestAlgorithm::kSha384;
  }
  if (lower == "sha512" || lower == "sha-512") {
    return DigestAlgorithm::kSha512;
  }
  if (lower == "blake2b512" || lower == "blake2b-512" || lower == "blake2b") {
    return DigestAlgorithm::kBlake2b512;
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown digest algorithm '" + std::string(name) +
                       "'; use one of sha256, sha384, sha512, blake2b512");
}

Result<Digest> Digest::Make(DigestAlgorithm algorithm, std::span<const std::uint8_t> bytes) {
  if (bytes.size() != DigestLength(algorithm)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a " + std::string(DigestAlgorithmName(algorithm)) + " digest is " +
                         std::to_string(DigestLength(algorithm)) + " bytes, not " +
                         std::to_string(bytes.size()));
  }
  Digest digest;
  digest.algorithm_ = algorithm;
  digest.length_ = static_cast<std::uint8_t>(bytes.size());
  std::copy(bytes.begin(), bytes.end(), digest.bytes_.begin());
  return digest;
}

Result<Digest> DigestBytes(DigestAlgorithm algorithm, std::span<const std::uint8_t> bytes) {
  const DigestAlgorithm one[] = {algorithm};
  SIGNET_ASSIGN_OR_RETURN(auto digest, internal::MultiDigest::Create(one));
  SIGNET_RETURN_IF_ERROR(digest.Update(bytes));
  SIGNET_ASSIGN_OR_RETURN(auto digests, digest.Finish());
  return digests.front();
}

namespace internal {

const EVP_MD* Md(DigestAlgorithm algorithm) {
  // Fetched once: EVP_MD_fetch is slow, and the fetched objects are immutable and thread-safe.
  static const EVP_MD* const kMds[] = {
      EVP_MD_fetch(nullptr, "SHA256", nullptr),
      EVP_MD_fetch(nullptr, "SHA384", nullptr),
      EVP_MD_fetch(nullptr, "SHA512", nullptr),
      EVP_MD_fetch(nullptr, "BLAKE2B-512", nullptr),
  };
  return kMds[static_cast<std::size_t>(algorithm)];
}

Result<MultiDigest> MultiDigest::Create(std::span<const DigestAlgorithm> algorithms) {
  if (algorithms.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "no digest algorithm given");
  }
  MultiDigest digest;
  digest.algorithms_.assign(algorithms.begin(), algorithms.end());
  for (const DigestAlgorithm algorithm : algorithms) {
    if (Md(algorithm) == nullptr) {
      return MakeError(
          OpenSslError("OpenSSL has no " + std::string(DigestAlgorithmName(algorithm))));
    }
    EvpMdCtx ctx(EVP_MD_CTX_new());
    if (!ctx) {
      return MakeError(OpenSslError("EVP_MD_CTX_new"));
    }
    digest.contexts_.push_back(std::move(ctx));
  }
  SIGNET_RETURN_IF_ERROR(digest.Reset());
  return digest;
}

Status MultiDigest::Reset() {
  for (std::size_t i = 0; i < contexts_.size(); ++i) {
    if (EVP_DigestInit_ex2(contexts_[i].get(), Md(algorithms_[i]), nullptr) != 1) {
      return MakeError(OpenSslError("EVP_DigestInit_ex2"));
    }
  }
  return OkStatus();
}

Status MultiDigest::Update(std::span<const std::uint8_t> bytes) {
  for (auto& ctx : contexts_) {
    if (EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) != 1) {
      return MakeError(OpenSslError("EVP_DigestUpdate"));
    }
  }
  return OkStatus();
}

Result<std::vector<Digest>> MultiDigest::Finish() {
  std::vector<Digest> out;
  out.reserve(contexts_.size());
  for (std::size_t i = 0; i < contexts_.size(); ++i) {
    std::uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_DigestFinal_ex(contexts_[i].get(), md, &length) != 1) {
      return MakeError(OpenSslError("EVP_DigestFinal_ex"));
    }
    SIGNET_ASSIGN_OR_RETURN(Digest digest, Digest::Make(algorithms_[i], {md, length}));
    out.push_back(digest);
  }
  return out;
}

}  // namespace internal
}  // namespace signet::pipeline
