// Private to appliance/cli: what `signet sign` and `signet verify` need to check Merkle batch
// receipts (appliance/formats/BATCH.md) against a public key.
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_RECEIPT_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_RECEIPT_H_

#include <string>
#include <string_view>

#include "appliance/base/base.h"
#include "appliance/formats/formats.h"

namespace signet::cli {

// The trusted key of a receipt check: its fingerprint and a NoteCheck that accepts a note only
// when it carries a signature whose key ID is this key's and that signature verifies.
struct ReceiptKey {
  std::string fingerprint;  // lower-case hex SHA-256 of the DER SubjectPublicKeyInfo
  formats::NoteCheck check;
};

// From a PEM or DER public key (ECDSA P-256, as batch keys are). Errors: kInvalidArgument (not a
// public key the note code supports).
[[nodiscard]] Result<ReceiptKey> MakeReceiptKey(std::string_view public_key);

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_RECEIPT_H_
