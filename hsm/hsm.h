// hsm/hsm.h: signing with keys that were made inside an HSM and never leave it, over PKCS#11.
//
// Caveats:
// - One Token per token per process. The PKCS#11 module is dlopen'ed and C_Initialize'd (with
//   CKF_OS_LOCKING_OK) by the first Token that uses it and C_Finalize'd when the last one closes.
// - The PIN is read from a file into a SecureBuffer (locked in RAM, out of core dumps, wiped when
//   the Token closes), kept only to log in again after the token loses its sessions, and never
//   logged or put in argv or the environment. One session stays open for the Token's lifetime
//   to hold the login.
// - A PKCS#11 session is used by one thread at a time: the pool leases sessions to the signer's
//   workers (one worker per session). Token and Signer are thread-safe.
// - A key is used only when its private half is sensitive, never extractable and may only sign
//   (no decrypt, unwrap or derive); FindKey names the attribute that refuses a key.
// - The daemon builds all padding: callers pass digests (or, for Ed25519, a short message), never
//   a DigestInfo or a pre-padded block. MD5 and SHA-1 do not exist in this API.
// - Every signature is checked against the public key with OpenSSL before it is returned (always
//   for RSA, where a faulty CRT signature would leak the key; ECDSA and Ed25519 per VerifyPolicy).
//   A signature that fails the check is an error, never a result.
// - Sessions that die (handle invalid, closed, logged out, device error or removed, token absent)
//   are reopened (logging in again); the affected signature is retried at most 3 times with
//   backoff, else its job fails with an error naming the CK_RV. A job never returns a partial or
//   wrong result.
#ifndef SIGNET_HSM_HSM_H_
#define SIGNET_HSM_HSM_H_

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/base/base.h"

namespace signet::hsm {

// Key pair types Signet makes and uses.
enum class KeyType : std::uint8_t { kEcdsaP256, kEcdsaP384, kRsa3072, kRsa4096, kEd25519 };
// "ecdsa-p256", "ecdsa-p384", "rsa-3072", "rsa-4096", "ed25519".
std::string_view KeyTypeName(KeyType type);
[[nodiscard]] Result<KeyType> ParseKeyType(std::string_view name);

// The hash a digest was made with (for ECDSA and RSA signatures).
enum class Hash : std::uint8_t { kSha256, kSha384, kSha512 };
std::string_view HashName(Hash hash);  // "sha256", "sha384", "sha512"
std::size_t HashLength(Hash hash);     // 32, 48, 64

// How a signature is made. One key signs with one scheme (the daemon fixes it per key).
enum class Scheme : std::uint8_t {
  kEcdsa,     // CKM_ECDSA over the digest; the result is DER (SEQUENCE of r, s)
  kRsaPkcs1,  // CKM_RSA_PKCS over the DigestInfo Signet builds for `hash`
  kRsaPss,    // CKM_RSA_PKCS_PSS with MGF1 of `hash` and salt = hash length
  kEd25519,   // CKM_EDDSA, pure Ed25519 over a message of at most kMaxEd25519Message bytes
};
std::string_view SchemeName(Scheme scheme);
inline constexpr std::size_t kMaxEd25519Message = 16 * 1024;

struct SignSpec {
  Scheme scheme = Scheme::kEcdsa;
  Hash hash = Hash::kSha256;  // ignored for kEd25519
};

// Whether ECDSA and Ed25519 signatures are verified before release (RSA always is).
enum class VerifyPolicy : std::uint8_t { kAll, kNone };

struct TokenConfig {
  std::filesystem::path module = "/usr/lib/softhsm/libsofthsm2.so";
  std::string token_label;
  std::filesystem::path pin_file;
  unsigned sessions = 2;              // signing sessions (and workers): 1 to 64
  std::size_t queue_capacity = 4096;  // jobs waiting for a worker; Submit fails past it
  // A worker takes up to this many jobs at a time (past the first, only small ones of under 32
  // inputs, while they add up to at most 256 signatures). A job of 64 inputs or more is split
  // into parts of at least 32, at most one per session, so one large job keeps every session busy.
  unsigned jobs_per_wakeup = 16;
  VerifyPolicy verify = VerifyPolicy::kAll;
};

// A public key as exported from the token.
struct PublicKey {
  KeyType type = KeyType::kEcdsaP256;
  Bytes spki_der;           // SubjectPublicKeyInfo, DER
  std::string pem;          // the same, PEM ("-----BEGIN PUBLIC KEY-----")
  std::string fingerprint;  // lower-case hex SHA-256 of spki_der
};

// A usable key: found on the token and checked. Cheap to copy.
struct KeyHandle {
  std::string label;
  KeyType type = KeyType::kEcdsaP256;
  Bytes id;                          // CKA_ID
  std::uint64_t private_object = 0;  // the token's handle for the private key (opaque)
  PublicKey public_key;
};

// The outcome of one job: one signature per input, in order, or an error for the whole job.
using Signatures = std::vector<Bytes>;
using JobCallback = std::function<void(Result<Signatures>)>;

class Token {
 public:
  // Loads the module, finds the token by label, logs in with the PIN from the file and opens the
  // signing sessions. Errors: kInvalidArgument (a config value out of range, naming it), kNotFound
  // (module file or token label; the message lists the labels present), kPermissionDenied (PIN
  // file readable by others, or CKR_PIN_INCORRECT), kHsm (any other CK_RV, named).
  [[nodiscard]] static Result<std::unique_ptr<Token>> Open(const TokenConfig& config);
  ~Token();
  Token(const Token&) = delete;
  Token& operator=(const Token&) = delete;

  // Generates a key pair inside the token with a sign-only, sensitive, non-extractable template,
  // a label and a random CKA_ID. Errors: kInvalidArgument (a key with that label exists), kHsm.
  [[nodiscard]] Result<KeyHandle> GenerateKey(std::string_view label, KeyType type);

  // Finds the key pair labelled `label` and checks its private key's attributes. Errors: kNotFound,
  // kInvalidArgument (two keys with that label), kPermissionDenied (a refused attribute, named:
  // "CKA_EXTRACTABLE is true"), kHsm.
  [[nodiscard]] Result<KeyHandle> FindKey(std::string_view label);

  // Queues a job: sign each of `inputs` (digests of spec.hash's length, or Ed25519 messages) with
  // `key`. `done` is called once, from a worker thread, with every signature or one error.
  // Errors (then `done` is never called): kInvalidArgument (an input of the wrong length, a scheme
  // the key cannot do, no inputs), kUnavailable (the queue is full: back-pressure; try later).
  [[nodiscard]] Status Submit(const KeyHandle& key, SignSpec spec, std::vector<Bytes> inputs,
                              JobCallback done);

  // Submits and waits. Errors: those of Submit and of the job, kDeadlineExceeded when the job has
  // not finished by `deadline` (it still finishes; its result is dropped).
  [[nodiscard]] Result<Signatures> Sign(const KeyHandle& key, SignSpec spec,
                                        std::vector<Bytes> inputs,
                                        Deadline deadline = Deadline::Never());

  struct Stats {
    std::uint64_t signatures = 0;
    std::uint64_t jobs_failed = 0;
    std::uint64_t retries = 0;
    std::uint64_t sessions_reopened = 0;
    std::size_t queue_depth = 0;
    std::size_t sessions = 0;         // signing sessions in the pool
    std::size_t sessions_in_use = 0;  // of those, leased to a worker that is signing now
    // Jobs failed in a row since the last that succeeded (0: the last job succeeded, or none ran),
    // and the error of the most recent failed job (empty if none failed yet).
    std::uint64_t consecutive_failures = 0;
    std::string last_error;
    std::chrono::system_clock::time_point last_failure{};  // when the most recent job failed
  };
  Stats stats() const;

  // Asks the token whether this Token is still logged in (C_GetSessionInfo on the session that
  // holds the login; one round trip), logging in again when the login was lost. For health
  // checks; thread-safe. Errors: kHsm naming the CK_RV, kPermissionDenied (not logged in).
  [[nodiscard]] Status CheckLogin() const;

 private:
  struct State;
  explicit Token(std::unique_ptr<State> state);

  std::unique_ptr<State> state_;
};

}  // namespace signet::hsm

#endif  // SIGNET_HSM_HSM_H_
