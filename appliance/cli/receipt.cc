#include "appliance/cli/internal/receipt.h"

#include "appliance/audit/audit.h"

namespace signet::cli {

Result<ReceiptKey> MakeReceiptKey(std::string_view public_key) {
  // The key ID of an ECDSA note key does not depend on the key name: any name finds it.
  SIGNET_ASSIGN_OR_RETURN(audit::NoteVerifier probe,
                          audit::MakeNoteVerifier("key", AsBytes(public_key)));
  SIGNET_ASSIGN_OR_RETURN(
      pipeline::Digest fingerprint,
      pipeline::DigestBytes(pipeline::DigestAlgorithm::kSha256, probe.spki_der));
  ReceiptKey key;
  key.fingerprint = fingerprint.Hex();
  key.check = [spki = probe.spki_der,
               key_id = probe.key_id](std::string_view note) -> Result<std::string> {
    SIGNET_ASSIGN_OR_RETURN(audit::SignedNote parsed, audit::ParseNote(note));
    for (const audit::NoteSignature& signature : parsed.signatures) {
      if (signature.key_id != key_id) {
        continue;
      }
      // The signature line names the key; the statement's first line (its origin) must agree.
      if (!parsed.text.starts_with(signature.name + "\n")) {
        return MakeError(ErrorCode::kCrypto, "the note is signed as \"" + signature.name +
                                                 "\" but its statement names another origin");
      }
      SIGNET_ASSIGN_OR_RETURN(audit::NoteVerifier verifier,
                              audit::MakeNoteVerifier(signature.name, spki));
      SIGNET_RETURN_IF_ERROR(audit::VerifyNote(parsed, verifier));
      return parsed.text;
    }
    return MakeError(ErrorCode::kNotFound,
                     "no signature by the given key on the note (signed by another key)");
  };
  return key;
}

}  // namespace signet::cli
