// appliance/audit/note.cc: C2SP signed notes (https://c2sp.org/signed-note) and tlog-checkpoint
// bodies (https://c2sp.org/tlog-checkpoint), with Ed25519 and ECDSA keys.
//
// The ECDSA key ID follows transparency-dev/witness and Sigstore Rekor, which hash only the DER
// SubjectPublicKeyInfo, so that Signet's checkpoints can be checked by their tools and theirs by
// Signet's.
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "appliance/audit/audit.h"
#include "appliance/audit/internal/utf8.h"
#include "appliance/base/base.h"

namespace signet::audit {
namespace {

using EvpPkey = std::unique_ptr<EVP_PKEY, FnDeleter<&EVP_PKEY_free>>;
using EvpMdCtx = std::unique_ptr<EVP_MD_CTX, FnDeleter<&EVP_MD_CTX_free>>;
using Bio = std::unique_ptr<BIO, FnDeleter<&BIO_free>>;

constexpr std::string_view kSignaturePrefix = "\xe2\x80\x94 ";  // U+2014 em dash, space
constexpr std::size_t kMaxPublicKeyBytes = 16 * 1024;

// Go's unicode.IsSpace outside ASCII (ASCII spaces other than ' ' are control characters, which
// are refused anyway): what the reference implementation refuses in key names.
bool IsUnicodeSpace(char32_t c) {
  return c == ' ' || c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
         c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

// Checks that `text` is UTF-8 with no control character but "\n". `what` names it in messages.
Status CheckText(std::string_view text, std::string_view what) {
  for (std::size_t i = 0; i < text.size();) {
    const internal::Rune rune = internal::DecodeRune(text, i);
    if (rune.length == 0) {
      return MakeError(ErrorCode::kInvalidArgument,
                       std::string(what) + " is not valid UTF-8 at byte " + std::to_string(i));
    }
    if ((rune.code_point < 0x20 && rune.code_point != '\n') || rune.code_point == 0x7f) {
      return MakeError(ErrorCode::kInvalidArgument,
                       std::string(what) + " holds control character 0x" +
                           HexEncode(AsBytes(text.substr(i, 1))) + " at byte " + std::to_string(i) +
                           " (only newlines are allowed)");
    }
    i += rune.length;
  }
  return OkStatus();
}

Status CheckKeyName(std::string_view name) {
  if (name.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "a note key name must not be empty");
  }
  SIGNET_RETURN_IF_ERROR(CheckText(name, "note key name"));
  for (std::size_t i = 0; i < name.size();) {
    const internal::Rune rune = internal::DecodeRune(name, i);
    if (rune.code_point == '\n' || rune.code_point == '+' || IsUnicodeSpace(rune.code_point)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "note key name \"" + std::string(name) +
                           "\" holds a space, newline or '+' (C2SP signed-note forbids them)");
    }
    i += rune.length;
  }
  return OkStatus();
}

std::string KeyIdHex(std::uint32_t id) {
  const std::array<std::uint8_t, 4> bytes = {
      static_cast<std::uint8_t>(id >> 24), static_cast<std::uint8_t>(id >> 16),
      static_cast<std::uint8_t>(id >> 8), static_cast<std::uint8_t>(id)};
  return HexEncode(bytes);
}

// A key the caller handed in that OpenSSL cannot use is the caller's mistake, not a crypto
// failure: keep OpenSSL's reasons but report kInvalidArgument.
Error InvalidKey(std::string what) {
  return Error(ErrorCode::kInvalidArgument, OpenSslError(std::move(what)).message());
}

Result<EvpPkey> ParsePublicKey(std::span<const std::uint8_t> bytes) {
  if (bytes.size() > kMaxPublicKeyBytes) {
    return MakeError(ErrorCode::kInvalidArgument, "public key is " + std::to_string(bytes.size()) +
                                                      " bytes: too large for a public key");
  }
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (text.find("-----BEGIN") != std::string_view::npos) {
    Bio bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
    EvpPkey key(bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!key) {
      return MakeError(InvalidKey("not a PEM public key (\"-----BEGIN PUBLIC KEY-----\")"));
    }
    return key;
  }
  const unsigned char* p = bytes.data();
  EvpPkey key(d2i_PUBKEY(nullptr, &p, static_cast<long>(bytes.size())));
  if (!key) {
    return MakeError(InvalidKey("not a DER SubjectPublicKeyInfo or PEM public key"));
  }
  if (p != bytes.data() + bytes.size()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "public key has " + std::to_string(bytes.data() + bytes.size() - p) +
                         " bytes after its DER SubjectPublicKeyInfo");
  }
  return key;
}

std::array<std::uint8_t, 32> Sha256(std::span<const std::uint8_t> data) {
  std::array<std::uint8_t, 32> digest{};
  EVP_Digest(data.data(), data.size(), digest.data(), nullptr, EVP_sha256(), nullptr);
  return digest;
}

std::uint32_t BigEndian32(std::span<const std::uint8_t> b) {
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
         std::uint32_t{b[3]};
}

// Checks one signature by `key` over `text`. Errors: kCrypto (it does not verify),
// kInvalidArgument (a NoteVerifier whose SPKI does not match its type).
Status VerifySignature(const NoteVerifier& key, std::string_view text,
                       std::span<const std::uint8_t> signature) {
  const std::string who = key.name + " (ID " + KeyIdHex(key.key_id) + ")";
  const unsigned char* p = key.spki_der.data();
  EvpPkey pkey(d2i_PUBKEY(nullptr, &p, static_cast<long>(key.spki_der.size())));
  const int want = key.type == NoteKeyType::kEd25519 ? EVP_PKEY_ED25519 : EVP_PKEY_EC;
  if (!pkey || EVP_PKEY_get_base_id(pkey.get()) != want) {
    return MakeError(InvalidKey("note key " + who +
                                ": its SubjectPublicKeyInfo is not a key of "
                                "its type; make verifiers with MakeNoteVerifier"));
  }
  EvpMdCtx ctx(EVP_MD_CTX_new());
  // Ed25519 signs the text itself (no pre-hash); ECDSA signs SHA-256 of it.
  const EVP_MD* md = key.type == NoteKeyType::kEd25519 ? nullptr : EVP_sha256();
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, pkey.get()) != 1) {
    return MakeError(OpenSslError("note key " + who + ": cannot start verifying"));
  }
  if (EVP_DigestVerify(ctx.get(), signature.data(), signature.size(),
                       reinterpret_cast<const unsigned char*>(text.data()), text.size()) != 1) {
    return MakeError(OpenSslError("the signature by " + who + " does not verify over this note"));
  }
  return OkStatus();
}

Result<NoteSignature> ParseSignatureLine(std::string_view line, std::size_t number) {
  const std::string where = "note signature line " + std::to_string(number);
  if (!line.starts_with(kSignaturePrefix)) {
    return MakeError(ErrorCode::kInvalidArgument, where + " does not start with \"— \"");
  }
  line.remove_prefix(kSignaturePrefix.size());
  const std::size_t space = line.find(' ');
  if (space == std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     where + " has no space between the key name and the signature");
  }
  NoteSignature signature;
  signature.name = std::string(line.substr(0, space));
  if (auto ok = CheckKeyName(signature.name); !ok) {
    return MakeError(std::move(ok).error().WithContext(where));
  }
  auto blob = Base64Decode(line.substr(space + 1));
  if (!blob) {
    return MakeError(std::move(blob).error().WithContext(where));
  }
  if (blob->size() < 5) {
    return MakeError(ErrorCode::kInvalidArgument,
                     where + " holds " + std::to_string(blob->size()) +
                         " bytes; it needs a 4-byte key ID and a signature");
  }
  signature.key_id = BigEndian32(*blob);
  signature.signature.assign(blob->begin() + 4, blob->end());
  return signature;
}

}  // namespace

Result<NoteVerifier> MakeNoteVerifier(std::string_view name,
                                      std::span<const std::uint8_t> public_key) {
  SIGNET_RETURN_IF_ERROR(CheckKeyName(name));
  SIGNET_ASSIGN_OR_RETURN(EvpPkey pkey, ParsePublicKey(public_key));
  NoteVerifier verifier;
  verifier.name = std::string(name);
  const int base_id = EVP_PKEY_get_base_id(pkey.get());
  if (base_id == EVP_PKEY_ED25519) {
    verifier.type = NoteKeyType::kEd25519;
  } else if (base_id == EVP_PKEY_EC) {
    std::array<char, 64> group{};
    std::size_t length = 0;
    if (EVP_PKEY_get_group_name(pkey.get(), group.data(), group.size(), &length) != 1) {
      return MakeError(InvalidKey("EC public key without a named curve"));
    }
    const std::string_view curve(group.data(), length);
    if (curve != "prime256v1" && curve != "secp384r1" && curve != "secp521r1") {
      return MakeError(ErrorCode::kInvalidArgument,
                       "unsupported curve " + std::string(curve) +
                           ": ECDSA note keys must be on P-256, P-384 or P-521");
    }
    verifier.type = NoteKeyType::kEcdsa;
  } else {
    const char* type = EVP_PKEY_get0_type_name(pkey.get());
    return MakeError(ErrorCode::kInvalidArgument,
                     "unsupported key type " + std::string(type != nullptr ? type : "(unknown)") +
                         ": note keys must be Ed25519 or ECDSA (P-256, P-384, P-521)");
  }
  const int der_length = i2d_PUBKEY(pkey.get(), nullptr);
  if (der_length <= 0) {
    return MakeError(OpenSslError("cannot encode the public key"));
  }
  verifier.spki_der.resize(static_cast<std::size_t>(der_length));
  unsigned char* out = verifier.spki_der.data();
  i2d_PUBKEY(pkey.get(), &out);

  if (verifier.type == NoteKeyType::kEd25519) {
    std::array<std::uint8_t, 32> raw{};
    std::size_t raw_length = raw.size();
    if (EVP_PKEY_get_raw_public_key(pkey.get(), raw.data(), &raw_length) != 1 ||
        raw_length != raw.size()) {
      return MakeError(InvalidKey("cannot read the raw Ed25519 public key"));
    }
    Bytes input(name.begin(), name.end());
    input.push_back('\n');
    input.push_back(static_cast<std::uint8_t>(NoteKeyType::kEd25519));
    input.insert(input.end(), raw.begin(), raw.end());
    verifier.key_id = BigEndian32(Sha256(input));
  } else {
    verifier.key_id = BigEndian32(Sha256(verifier.spki_der));
  }
  return verifier;
}

Result<std::string> SignNote(std::string_view text, NoteSigner& signer) {
  if (text.empty() || text.back() != '\n') {
    return MakeError(ErrorCode::kInvalidArgument, "note text must end in a newline");
  }
  if (text.size() > kMaxNoteBytes) {  // refused before the HSM is asked to sign it
    return MakeError(ErrorCode::kInvalidArgument, "note text is " + std::to_string(text.size()) +
                                                      " bytes; the limit is " +
                                                      std::to_string(kMaxNoteBytes));
  }
  SIGNET_RETURN_IF_ERROR(CheckText(text, "note text"));
  const NoteVerifier& key = signer.verifier();
  SIGNET_RETURN_IF_ERROR(CheckKeyName(key.name));
  SIGNET_ASSIGN_OR_RETURN(const Bytes signature, signer.Sign(AsBytes(text)));
  // A signature that does not verify would make a checkpoint nobody can check; refuse it here
  // rather than store it.
  if (auto ok = VerifySignature(key, text, signature); !ok) {
    return MakeError(Error(ErrorCode::kCrypto, ok.error().message())
                         .WithContext("the note signer returned a bad signature"));
  }
  Bytes blob = {static_cast<std::uint8_t>(key.key_id >> 24),
                static_cast<std::uint8_t>(key.key_id >> 16),
                static_cast<std::uint8_t>(key.key_id >> 8), static_cast<std::uint8_t>(key.key_id)};
  blob.insert(blob.end(), signature.begin(), signature.end());
  std::string note;
  note.append(text).append("\n").append(kSignaturePrefix).append(key.name).append(" ");
  note.append(Base64Encode(blob)).append("\n");
  if (note.size() > kMaxNoteBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "signed note would be " + std::to_string(note.size()) +
                         " bytes; the limit is " + std::to_string(kMaxNoteBytes));
  }
  return note;
}

Result<SignedNote> ParseNote(std::string_view note) {
  if (note.size() > kMaxNoteBytes) {
    return MakeError(ErrorCode::kInvalidArgument, "note is " + std::to_string(note.size()) +
                                                      " bytes; the limit is " +
                                                      std::to_string(kMaxNoteBytes));
  }
  SIGNET_RETURN_IF_ERROR(CheckText(note, "note"));
  // The text may hold blank lines; the signature block is what follows the last one.
  const std::size_t split = note.rfind("\n\n");
  if (split == std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "note has no blank line before its signatures");
  }
  SignedNote parsed;
  parsed.text = std::string(note.substr(0, split + 1));
  std::string_view block = note.substr(split + 2);
  if (block.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "note has no signature lines");
  }
  if (block.back() != '\n') {
    return MakeError(ErrorCode::kInvalidArgument, "note does not end in a newline");
  }
  while (!block.empty()) {
    if (parsed.signatures.size() == kMaxNoteSignatures) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "note has more than " + std::to_string(kMaxNoteSignatures) + " signatures");
    }
    const std::size_t end = block.find('\n');
    SIGNET_ASSIGN_OR_RETURN(auto signature,
                            ParseSignatureLine(block.substr(0, end), parsed.signatures.size() + 1));
    parsed.signatures.push_back(std::move(signature));
    block.remove_prefix(end + 1);
  }
  return parsed;
}

Status VerifyNote(const SignedNote& note, const NoteVerifier& key) {
  bool found = false;
  std::string signers;
  for (const NoteSignature& signature : note.signatures) {
    if (signature.name != key.name || signature.key_id != key.key_id) {
      signers.append(signers.empty() ? "" : ", ")
          .append(signature.name + " (ID " + KeyIdHex(signature.key_id) + ")");
      continue;
    }
    // Every signature under this key's name and ID must verify: a bad one means the note or the
    // key is not what the reader thinks, even if another copy verifies.
    SIGNET_RETURN_IF_ERROR(VerifySignature(key, note.text, signature.signature));
    found = true;
  }
  if (!found) {
    return MakeError(
        ErrorCode::kNotFound,
        "no signature by key " + key.name + " (ID " + KeyIdHex(key.key_id) +
            ") on this note; it is signed by: " + (signers.empty() ? "nobody" : signers));
  }
  return OkStatus();
}

std::string CheckpointText(const Checkpoint& checkpoint) {
  return checkpoint.origin + "\n" + std::to_string(checkpoint.size) + "\n" +
         Base64Encode(checkpoint.root) + "\n";
}

Result<Checkpoint> ParseCheckpointText(std::string_view text) {
  const auto bad = [](std::string what) {
    return MakeError(ErrorCode::kInvalidArgument, "checkpoint " + std::move(what));
  };
  if (text.size() > kMaxNoteBytes) {
    return bad("is larger than a note may be");
  }
  if (text.empty() || text.back() != '\n') {
    return bad("does not end in a newline");
  }
  SIGNET_RETURN_IF_ERROR(CheckText(text, "checkpoint"));
  std::array<std::string_view, 3> lines;
  std::size_t count = 0;
  for (std::string_view rest = text; !rest.empty(); ++count) {
    const std::size_t end = rest.find('\n');
    if (count == lines.size()) {
      return bad("has extension lines after its root; Signet's checkpoints have none");
    }
    lines[count] = rest.substr(0, end);
    rest.remove_prefix(end + 1);
  }
  if (count < lines.size()) {
    return bad("has " + std::to_string(count) + " lines; it needs origin, size and root");
  }
  Checkpoint checkpoint;
  checkpoint.origin = std::string(lines[0]);
  if (checkpoint.origin.empty()) {
    return bad("origin is empty");
  }
  const std::string_view size = lines[1];
  const auto [end, ec] = std::from_chars(size.data(), size.data() + size.size(), checkpoint.size);
  if (size.empty() || ec != std::errc() || end != size.data() + size.size() ||
      (size.size() > 1 && size[0] == '0')) {
    return bad("size \"" + std::string(size) +
               "\" is not a decimal number below 2^64 without sign or leading zeros");
  }
  auto root = Base64Decode(lines[2]);
  if (!root) {
    return MakeError(std::move(root).error().WithContext("checkpoint root"));
  }
  if (root->size() != checkpoint.root.size()) {
    return bad("root is " + std::to_string(root->size()) + " bytes; it must be 32 (SHA-256)");
  }
  std::copy(root->begin(), root->end(), checkpoint.root.begin());
  return checkpoint;
}

Result<Checkpoint> OpenCheckpoint(std::string_view note, const NoteVerifier& key) {
  SIGNET_ASSIGN_OR_RETURN(const SignedNote parsed, ParseNote(note));
  SIGNET_RETURN_IF_ERROR(VerifyNote(parsed, key));
  return ParseCheckpointText(parsed.text);
}

}  // namespace signet::audit
