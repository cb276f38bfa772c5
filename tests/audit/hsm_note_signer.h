// tests/audit/hsm_note_signer.h: an audit::NoteSigner backed by a key in a real SoftHSM token, as
// the service will back it (the audit module itself never sees the HSM).
#ifndef SIGNET_TESTS_AUDIT_HSM_NOTE_SIGNER_H_
#define SIGNET_TESTS_AUDIT_HSM_NOTE_SIGNER_H_

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "appliance/audit/audit.h"
#include "appliance/service/service.h"
#include "hsm/hsm.h"
#include "tests/hsm/softhsm_token.h"

namespace signet::audit::testing {

using HsmNoteSigner = service::HsmNoteSigner;

// A signer over `key` under the note key name `name`, as the daemon makes one. Throws
// std::runtime_error when the key cannot make a verifier (a broken test setup).
std::shared_ptr<HsmNoteSigner> MakeHsmNoteSigner(hsm::Token& token, hsm::KeyHandle key,
                                                 std::string_view name);

// An audit key in a SoftHSM token shared by every AuditKey of the process (SoftHSM reads its
// configuration once per process, so a test process has one token), and a signer over it. Each
// AuditKey generates a key of its own. Keep it alive as long as any Log that uses the signer.
class AuditKey {
 public:
  explicit AuditKey(hsm::KeyType type = hsm::KeyType::kEcdsaP256,
                    std::string name = "signet.test/audit");
  ~AuditKey();
  std::shared_ptr<HsmNoteSigner> signer() const { return signer_; }
  const NoteVerifier& verifier() const { return signer_->verifier(); }
  const hsm::PublicKey& public_key() const { return signer_->key().public_key; }
  // The key's label, and the token it is in (for a child process to open).
  const std::string& label() const { return signer_->key().label; }
  static const hsm::testing::SoftHsmToken& token();

 private:
  std::shared_ptr<HsmNoteSigner> signer_;
};

// A fresh directory under the test temp dir, removed (with its contents) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Options for a log in root/log with its checkpoint file at root/checkpoints, origin
// "signet.test/audit" (the AuditKey default name), small intervals so tests see checkpoints.
LogOptions TestLogOptions(const std::filesystem::path& root);

// A plausible `sign` record for artifact `i` (about 500 bytes serialized), digest
// SHA-256("artifact-i").
Record SampleRecord(std::uint64_t i);
// The hex SHA-256 SampleRecord(i) carries.
std::string SampleDigest(std::uint64_t i);

}  // namespace signet::audit::testing

#endif  // SIGNET_TESTS_AUDIT_HSM_NOTE_SIGNER_H_
