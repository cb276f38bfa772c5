// The audit log's checkpoint signer over a key in an HSM: see HsmNoteSigner in service.h.
#include <openssl/sha.h>

#include <utility>

#include "appliance/service/service.h"

namespace signet::service {

HsmNoteSigner::HsmNoteSigner(hsm::Token& token, hsm::KeyHandle key, audit::NoteVerifier verifier)
    : token_(token), key_(std::move(key)), verifier_(std::move(verifier)) {}

Result<Bytes> HsmNoteSigner::Sign(std::span<const std::uint8_t> text) {
  hsm::SignSpec spec;
  Bytes input;
  if (key_.type == hsm::KeyType::kEd25519) {
    spec.scheme = hsm::Scheme::kEd25519;
    input.assign(text.begin(), text.end());
  } else {
    spec.scheme = hsm::Scheme::kEcdsa;
    spec.hash = hsm::Hash::kSha256;
    input.resize(SHA256_DIGEST_LENGTH);
    SHA256(text.data(), text.size(), input.data());
  }
  std::vector<Bytes> inputs;
  inputs.push_back(std::move(input));
  SIGNET_ASSIGN_OR_RETURN(auto signatures,
                          token_.Sign(key_, spec, std::move(inputs), Deadline::Never()));
  return std::move(signatures.at(0));
}

}  // namespace signet::service
