// Signed notes and checkpoints: published vectors (Go's sumdb/note, Sigstore Rekor), real SoftHSM
// keys checked by the openssl command line, and the malformed inputs a verifier must refuse.
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "appliance/audit/audit.h"
#include "tests/audit/hsm_note_signer.h"
#include "tests/hsm/softhsm_token.h"

namespace signet::audit {
namespace {

using ::testing::HasSubstr;
using EvpPkey = std::unique_ptr<EVP_PKEY, FnDeleter<&EVP_PKEY_free>>;
using EvpMdCtx = std::unique_ptr<EVP_MD_CTX, FnDeleter<&EVP_MD_CTX_free>>;

Bytes Unbase64(std::string_view text) { return Base64Decode(text).value(); }

// golang.org/x/mod/sumdb/note, note_test.go: the PeterNeumann key pair and its signed note.
constexpr std::string_view kGoVerifierKey = "ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
constexpr std::string_view kGoSignerKey = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
constexpr std::string_view kGoText =
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n";
constexpr std::string_view kGoSignature =
    "\xe2\x80\x94 PeterNeumann "
    "x08go/ZJkuBS9UG/"
    "SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
std::string GoNote() { return std::string(kGoText) + "\n" + std::string(kGoSignature); }

// Rekor's production key (sigstore/root-signing trusted_root.json) and a checkpoint it signed
// (quoted in pypi/warehouse docs/dev/development/attestation-internals.rst).
constexpr std::string_view kRekorSpki =
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2G2Y+"
    "2tabdTV5BcGiBIx0a9fAFwrkBbmLSGtks4L3qX6yYY0zufBnhC8Ur/"
    "iy55GhWP/9A/bY2LhC30M9+RYtw==";
constexpr std::string_view kRekorCheckpoint =
    "rekor.sigstore.dev - 1193050959916656506\n25232885\nwfIuS5NLOf+4rU8wVjPaezQYEVVpf3aF1G/"
    "BfRYMXew=\n\n\xe2\x80\x94 rekor.sigstore.dev "
    "wNI9ajBFAiAj+8BDcU0CKq9AJ1uOND6fCQ/"
    "ugLsk1xnSz0IpXoaE+AIhALUXqsTZ40Mt2X30WNlk6baivF1KA4V4rrjbPNVo9eFC\n";

Bytes Spki(const EVP_PKEY* key) {
  Bytes der(static_cast<std::size_t>(i2d_PUBKEY(key, nullptr)));
  unsigned char* p = der.data();
  i2d_PUBKEY(key, &p);
  return der;
}

// A software NoteSigner (OpenSSL), for tests that need no HSM: the Go vector's Ed25519 key or a
// fresh EC key.
class OpenSslSigner : public NoteSigner {
 public:
  OpenSslSigner(EvpPkey key, std::string name) : key_(std::move(key)) {
    verifier_ = MakeNoteVerifier(name, Spki(key_.get())).value();
  }
  static std::unique_ptr<OpenSslSigner> GoKey() {
    const Bytes seed = Unbase64(kGoSignerKey);  // 0x01 ‖ 32-byte seed
    return std::make_unique<OpenSslSigner>(
        EvpPkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data() + 1, 32)),
        "PeterNeumann");
  }
  const NoteVerifier& verifier() const override { return verifier_; }
  Result<Bytes> Sign(std::span<const std::uint8_t> text) override {
    EvpMdCtx ctx(EVP_MD_CTX_new());
    const bool ed25519 = verifier_.type == NoteKeyType::kEd25519;
    std::size_t length = 0;
    EVP_DigestSignInit(ctx.get(), nullptr, ed25519 ? nullptr : EVP_sha256(), nullptr, key_.get());
    EVP_DigestSign(ctx.get(), nullptr, &length, text.data(), text.size());
    Bytes signature(length);
    EVP_DigestSign(ctx.get(), signature.data(), &length, text.data(), text.size());
    signature.resize(length);
    if (corrupt_) {
      signature.back() ^= 1;
    }
    return signature;
  }
  bool corrupt_ = false;

 private:
  EvpPkey key_;
  NoteVerifier verifier_;
};

NoteVerifier GoVerifier() {
  Bytes spki = *HexDecode("302a300506032b6570032100");
  const Bytes key = Unbase64(kGoVerifierKey);
  EXPECT_EQ(key.at(0), 0x01);  // the Ed25519 algorithm byte
  spki.insert(spki.end(), key.begin() + 1, key.end());
  return MakeNoteVerifier("PeterNeumann", spki).value();
}

template <class T>
void ExpectCode(const Result<T>& result, ErrorCode code, std::string_view message = "") {
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), code) << result.error();
  EXPECT_THAT(result.error().message(), HasSubstr(std::string(message)));
}

TEST(NoteVectorTest, GoEd25519NoteVerifies) {
  const NoteVerifier key = GoVerifier();
  EXPECT_EQ(key.type, NoteKeyType::kEd25519);
  EXPECT_EQ(key.key_id, 0xc74f20a3u);
  auto note = ParseNote(GoNote());
  ASSERT_TRUE(note.has_value()) << note.error();
  EXPECT_EQ(note->text, kGoText);
  ASSERT_EQ(note->signatures.size(), 1u);
  EXPECT_EQ(note->signatures[0].key_id, 0xc74f20a3u);
  EXPECT_TRUE(VerifyNote(*note, key).has_value());

  std::string flipped = GoNote();
  flipped.replace(flipped.find("cryptography"), 12, "cryptographY");
  auto tampered = ParseNote(flipped);
  ASSERT_TRUE(tampered.has_value());
  ExpectCode(VerifyNote(*tampered, key), ErrorCode::kCrypto, "PeterNeumann (ID c74f20a3)");
}

TEST(NoteVectorTest, SignNoteReproducesTheGoNoteByteForByte) {
  auto signer = OpenSslSigner::GoKey();
  EXPECT_EQ(signer->verifier().key_id, 0xc74f20a3u);
  auto note = SignNote(kGoText, *signer);
  ASSERT_TRUE(note.has_value()) << note.error();
  EXPECT_EQ(*note, GoNote());  // Ed25519 is deterministic
}

TEST(NoteVectorTest, RekorEcdsaCheckpointVerifies) {
  const Bytes der = Unbase64(kRekorSpki);
  auto key = MakeNoteVerifier("rekor.sigstore.dev", der);
  ASSERT_TRUE(key.has_value()) << key.error();
  EXPECT_EQ(key->type, NoteKeyType::kEcdsa);
  EXPECT_EQ(key->key_id, 0xc0d23d6au);  // Rekor's log ID starts c0d23d6a: SHA-256 of the SPKI
  EXPECT_EQ(key->spki_der, der);
  auto checkpoint = OpenCheckpoint(kRekorCheckpoint, *key);
  ASSERT_TRUE(checkpoint.has_value()) << checkpoint.error();
  EXPECT_EQ(checkpoint->origin, "rekor.sigstore.dev - 1193050959916656506");
  EXPECT_EQ(checkpoint->size, 25232885u);
  EXPECT_EQ(Base64Encode(checkpoint->root), "wfIuS5NLOf+4rU8wVjPaezQYEVVpf3aF1G/BfRYMXew=");

  // The same key as PEM makes the same verifier.
  std::string pem = "-----BEGIN PUBLIC KEY-----\n" + std::string(kRekorSpki.substr(0, 64)) + "\n" +
                    std::string(kRekorSpki.substr(64)) + "\n-----END PUBLIC KEY-----\n";
  auto from_pem = MakeNoteVerifier("rekor.sigstore.dev", AsBytes(pem));
  ASSERT_TRUE(from_pem.has_value()) << from_pem.error();
  EXPECT_EQ(from_pem->key_id, key->key_id);

  std::string bigger(kRekorCheckpoint);
  bigger.replace(bigger.find("25232885"), 8, "25232886");
  ExpectCode(OpenCheckpoint(bigger, *key), ErrorCode::kCrypto);
}

class HsmNoteTest : public ::testing::TestWithParam<hsm::KeyType> {};

void WriteFile(const std::filesystem::path& path, std::span<const std::uint8_t> bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

TEST_P(HsmNoteTest, SignedNotesVerifyHereAndWithOpenssl) {
  testing::AuditKey audit_key(GetParam(), "signet.test/audit");
  const NoteVerifier& key = audit_key.verifier();
  const bool ed25519 = GetParam() == hsm::KeyType::kEd25519;
  EXPECT_EQ(key.type, ed25519 ? NoteKeyType::kEd25519 : NoteKeyType::kEcdsa);

  // The key ID, computed here from the C2SP rules.
  const Bytes& spki = audit_key.public_key().spki_der;
  Bytes id_input = spki;
  if (ed25519) {
    id_input.assign({'s', 'i', 'g', 'n', 'e', 't', '.', 't', 'e', 's', 't', '/', 'a', 'u', 'd', 'i',
                     't', '\n', 0x01});
    id_input.insert(id_input.end(), spki.end() - 32, spki.end());
  }
  std::array<std::uint8_t, 32> digest{};
  EVP_Digest(id_input.data(), id_input.size(), digest.data(), nullptr, EVP_sha256(), nullptr);
  EXPECT_EQ(key.key_id, (std::uint32_t{digest[0]} << 24) | (std::uint32_t{digest[1]} << 16) |
                            (std::uint32_t{digest[2]} << 8) | digest[3]);

  Checkpoint checkpoint{"signet.test/audit", 3, {}};
  const Bytes root = hsm::testing::Random(32);
  std::copy(root.begin(), root.end(), checkpoint.root.begin());
  auto note = SignNote(CheckpointText(checkpoint), *audit_key.signer());
  ASSERT_TRUE(note.has_value()) << note.error();
  auto parsed = ParseNote(*note);
  ASSERT_TRUE(parsed.has_value()) << parsed.error();
  ASSERT_EQ(parsed->signatures.size(), 1u);
  EXPECT_EQ(parsed->signatures[0].name, "signet.test/audit");
  EXPECT_EQ(parsed->signatures[0].key_id, key.key_id);
  EXPECT_TRUE(VerifyNote(*parsed, key).has_value());
  auto opened = OpenCheckpoint(*note, key);
  ASSERT_TRUE(opened.has_value()) << opened.error();
  EXPECT_EQ(*opened, checkpoint);

  // The openssl command line accepts the signature over the text, and refuses altered text.
  testing::TempDir dir;
  WriteFile(dir.path() / "pub.pem", AsBytes(audit_key.public_key().pem));
  WriteFile(dir.path() / "text", AsBytes(parsed->text));
  WriteFile(dir.path() / "bad", AsBytes(parsed->text + "x"));
  WriteFile(dir.path() / "sig", parsed->signatures[0].signature);
  const auto openssl = [&](const char* text) {
    const std::string d = dir.path().string() + "/";
    return hsm::testing::RunCommand(
        ed25519
            ? "openssl pkeyutl -verify -pubin -inkey " + d + "pub.pem -rawin -in " + d + text +
                  " -sigfile " + d + "sig"
            : "openssl dgst -sha256 -verify " + d + "pub.pem -signature " + d + "sig " + d + text);
  };
  EXPECT_EQ(openssl("text"), 0);
  EXPECT_NE(openssl("bad"), 0);

  // A different key under the same name, and this key under another name: not found.
  EvpPkey other(ed25519 ? EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")
                        : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  auto other_key = MakeNoteVerifier("signet.test/audit", Spki(other.get()));
  ASSERT_TRUE(other_key.has_value()) << other_key.error();
  ExpectCode(VerifyNote(*parsed, *other_key), ErrorCode::kNotFound,
             "it is signed by: signet.test/audit (ID ");
  auto renamed = MakeNoteVerifier("signet.test/other", spki);
  ASSERT_TRUE(renamed.has_value());
  ExpectCode(VerifyNote(*parsed, *renamed), ErrorCode::kNotFound, "no signature by key");

  // A flipped signature byte does not verify.
  SignedNote flipped = *parsed;
  flipped.signatures[0].signature.back() ^= 0x01;
  ExpectCode(VerifyNote(flipped, key), ErrorCode::kCrypto, "does not verify");

  // Signatures by unknown keys are ignored, before or after ours.
  const std::string stranger =
      "\xe2\x80\x94 stranger.example/key " + Base64Encode(hsm::testing::Random(68)) + "\n";
  const std::size_t block = note->rfind("\n\n") + 2;
  for (const std::string& extended :
       {*note + stranger, std::string(*note).insert(block, stranger)}) {
    auto with_stranger = ParseNote(extended);
    ASSERT_TRUE(with_stranger.has_value()) << with_stranger.error();
    EXPECT_EQ(with_stranger->signatures.size(), 2u);
    EXPECT_TRUE(VerifyNote(*with_stranger, key).has_value());
  }
  // A second signature under our name and ID that does not verify is not outvoted by a good one.
  SignedNote doubled = *parsed;
  doubled.signatures.push_back(flipped.signatures[0]);
  ExpectCode(VerifyNote(doubled, key), ErrorCode::kCrypto);
}

INSTANTIATE_TEST_SUITE_P(Keys, HsmNoteTest,
                         ::testing::Values(hsm::KeyType::kEcdsaP256, hsm::KeyType::kEd25519),
                         [](const ::testing::TestParamInfo<hsm::KeyType>& param_info) {
                           return param_info.param == hsm::KeyType::kEd25519 ? "Ed25519"
                                                                             : "EcdsaP256";
                         });

TEST(NoteTest, SignNoteRefusesBadTextAndBadSignatures) {
  auto signer = OpenSslSigner::GoKey();
  for (const std::string_view text :
       {"", "no newline", "tab\there\n", "cr\r\n", "del\x7f\n", "bad \xc0\xaf utf-8\n"}) {
    ExpectCode(SignNote(text, *signer), ErrorCode::kInvalidArgument);
  }
  ExpectCode(SignNote(std::string(kMaxNoteBytes, '\n'), *signer), ErrorCode::kInvalidArgument);
  signer->corrupt_ = true;
  ExpectCode(SignNote(kGoText, *signer), ErrorCode::kCrypto);
}

TEST(NoteTest, TextMayHoldBlankLines) {
  auto signer = OpenSslSigner::GoKey();
  for (const std::string_view text :
       {"a\n\nb\n", "a\n\n", "\n", "\xe2\x80\x94 looks like a sig\n"}) {
    auto note = SignNote(text, *signer);
    ASSERT_TRUE(note.has_value()) << note.error();
    auto parsed = ParseNote(*note);
    ASSERT_TRUE(parsed.has_value()) << parsed.error();
    EXPECT_EQ(parsed->text, text);
    EXPECT_TRUE(VerifyNote(*parsed, signer->verifier()).has_value());
  }
}

TEST(NoteTest, ParseNoteRefusesMalformedNotes) {
  const std::string note = GoNote();
  const auto replaced = [&](std::string_view from, std::string_view to) {
    std::string s = note;
    return s.replace(s.find(from), from.size(), to);
  };
  const std::string other_line =
      "\xe2\x80\x94 other " + Base64Encode(hsm::testing::Random(36)) + "\n";
  std::string too_many = note;
  for (std::size_t i = 0; i < kMaxNoteSignatures; ++i) {
    too_many += other_line;
  }
  const std::vector<std::pair<std::string, std::string>> cases = {
      {replaced("\n\n", "\n"), "no blank line"},
      {std::string(kGoText) + "\n", "no signature lines"},
      {note.substr(0, note.size() - 1), "newline"},
      {replaced("\xe2\x80\x94 ", "- "), "does not start with"},
      {replaced("\xe2\x80\x94 ", "\xe2\x80\x94"), "does not start with"},
      {replaced("PeterNeumann ", "PeterNeumann"), "no space"},
      {replaced("PeterNeumann ", "Peter+Neumann "), "'+'"},
      {replaced("PeterNeumann ", "Peter\xc2\xa0Neumann "), "space"},
      {replaced("\xe2\x80\x94 PeterNeumann", "\xe2\x80\x94 "), "empty"},
      {replaced("JnAM=", "JnAM"), "base64"},
      {replaced("x08go/", "x08go_"), "base64"},
      {replaced("x08go/ZJkuBS9UG/"
                "SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
                "x08goA=="),
       "4-byte key ID"},
      {replaced("problem,", "problem,\t"), "control character"},
      {replaced("problem,", "problem,\r"), "control character"},
      {replaced("problem,", "problem,\xed\xa0\x80"), "UTF-8"},
      {too_many, "more than 32 signatures"},
      {std::string(kMaxNoteBytes, 'a') + note, "limit"},
  };
  for (const auto& [bad, message] : cases) {
    auto parsed = ParseNote(bad);
    ASSERT_FALSE(parsed.has_value()) << bad;
    EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument) << bad;
    EXPECT_THAT(parsed.error().message(), HasSubstr(message)) << bad;
  }
  too_many.resize(too_many.size() - other_line.size());  // exactly 32 signatures is fine
  EXPECT_TRUE(ParseNote(too_many).has_value());
}

TEST(NoteTest, MakeNoteVerifierRefusesUnsupportedKeysAndNames) {
  for (const char* curve : {"P-384", "P-521"}) {
    EvpPkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve));
    auto verifier = MakeNoteVerifier("k", Spki(key.get()));
    ASSERT_TRUE(verifier.has_value()) << curve << ": " << verifier.error();
    EXPECT_EQ(verifier->type, NoteKeyType::kEcdsa);
  }
  EvpPkey k256(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "secp256k1"));
  ExpectCode(MakeNoteVerifier("k", Spki(k256.get())), ErrorCode::kInvalidArgument, "secp256k1");
  EvpPkey rsa(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{1024}));
  ExpectCode(MakeNoteVerifier("k", Spki(rsa.get())), ErrorCode::kInvalidArgument,
             "unsupported key type RSA");

  const Bytes good = Unbase64(kRekorSpki);
  Bytes trailing = good;
  trailing.push_back(0);
  for (const Bytes& bad :
       {Bytes{}, Bytes{0x30, 0x00}, trailing, Bytes(good.begin(), good.end() - 1)}) {
    ExpectCode(MakeNoteVerifier("k", bad), ErrorCode::kInvalidArgument);
  }
  for (const std::string_view name : {"", "a b", "a+b", "a\nb",
                                      "a\xe3\x80\x80"
                                      "b",
                                      "a\xc0\xaf"}) {
    ExpectCode(MakeNoteVerifier(name, good), ErrorCode::kInvalidArgument);
  }
}

TEST(CheckpointTest, TextRoundTripsAndRefusesVariants) {
  Checkpoint checkpoint{"example.com/log", 10, {}};
  for (std::size_t i = 0; i < checkpoint.root.size(); ++i) {
    checkpoint.root[i] = static_cast<std::uint8_t>(i);
  }
  const std::string text = CheckpointText(checkpoint);
  EXPECT_EQ(text, "example.com/log\n10\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n");
  for (const std::uint64_t size : {std::uint64_t{0}, std::uint64_t{1}, ~std::uint64_t{0}}) {
    Checkpoint c = checkpoint;
    c.size = size;
    c.origin = "signet \xc3\xa9 - 7";
    auto parsed = ParseCheckpointText(CheckpointText(c));
    ASSERT_TRUE(parsed.has_value()) << parsed.error();
    EXPECT_EQ(*parsed, c);
  }
  const std::string root = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
  for (const std::string& bad : std::vector<std::string>{
           "", "o\n10\n" + root, "o\n10\n", "o\n10\n" + root + "\nextension\n",
           "\n10\n" + root + "\n", "o\n\n" + root + "\n", "o\n010\n" + root + "\n",
           "o\n-1\n" + root + "\n", "o\n+1\n" + root + "\n", "o\n 1\n" + root + "\n",
           "o\n1a\n" + root + "\n", "o\n18446744073709551616\n" + root + "\n",
           "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n",  // 31 bytes
           "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=\n",  // non-canonical base64
           "o\t\n1\n" + root + "\n"}) {
    ExpectCode(ParseCheckpointText(bad), ErrorCode::kInvalidArgument);
  }
  // A signed note whose text is not a checkpoint does not open as one.
  auto go = OpenCheckpoint(GoNote(), GoVerifier());
  ExpectCode(go, ErrorCode::kInvalidArgument, "checkpoint");
}

}  // namespace
}  // namespace signet::audit
