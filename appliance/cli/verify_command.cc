// `signet verify --key-file PUB.pem FILE...`: checks raw detached signatures (FILE.sig, the bytes
// `openssl dgst -sha256 -sign key.pem -out FILE.sig FILE` writes), or, where there is no FILE.sig,
// Merkle batch receipts (FILE.receipt, appliance/formats/BATCH.md), locally, without the daemon.
// Files are hashed by the pipeline (streaming, in parallel); each signature is then checked over
// the digest with EVP_PKEY_verify, so no file is ever loaded whole.
#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "appliance/cli/cli.h"
#include "appliance/cli/internal/command.h"
#include "appliance/cli/internal/digest.h"
#include "appliance/cli/internal/json_line.h"
#include "appliance/cli/internal/ordered_run.h"
#include "appliance/cli/internal/receipt.h"
#include "appliance/formats/formats.h"

namespace signet::cli {
namespace {

using nlohmann::json;
using EvpPkey = std::unique_ptr<EVP_PKEY, FnDeleter<&EVP_PKEY_free>>;
using EvpPkeyCtx = std::unique_ptr<EVP_PKEY_CTX, FnDeleter<&EVP_PKEY_CTX_free>>;
using Bio = std::unique_ptr<BIO, FnDeleter<&BIO_free>>;
using EcdsaSig = std::unique_ptr<ECDSA_SIG, FnDeleter<&ECDSA_SIG_free>>;

constexpr std::size_t kMaxKeyFileBytes = 64 * 1024;
// An RSA-16384 signature is 2 KiB; a DER ECDSA P-521 one under 150 bytes. Anything much larger is
// not a raw signature, and is not read whole.
constexpr std::size_t kMaxSignatureBytes = 4 * 1024;

constexpr std::string_view kFooter = R"footer(
Each FILE is checked against its raw detached signature FILE.sig (with --sig-dir DIR:
DIR/FILE.sig, FILE's relative path mirrored under DIR), as
`openssl dgst -sha256 -sign key.pem -out FILE.sig FILE` makes it: ECDSA P-256/P-384 (DER) or RSA
PKCS#1 v1.5; RSA-PSS with --rsa-padding pss (salt length = hash length, MGF1 with the same hash).
The hash defaults to sha256 (P-256, RSA) or sha384 (P-384). Raw Ed25519 signatures are not
supported yet.

Where FILE.sig does not exist but FILE.receipt does, the receipt is checked instead (batch keys,
ECDSA P-256): the key's fingerprint, the note's signature, the leaf, the inclusion proof and the
file's size and digest, in that order; a failure names the step: key unknown, signature wrong,
note does not match the receipt, leaf altered, proof wrong, file changed.

With --bundle FILE (`signet sign --bundle`), each FILE's receipt is the bundle's line for that
name instead (a FILE not in the bundle fails: no receipt); without FILEs, every file the bundle
names is checked, by the name it was signed under (relative to the current directory, as `signet
sign` was given it). A malformed line fails the whole bundle, naming the line.

Prints "FILE: OK" or "FILE: FAILED (REASON)" per file in argument order, and a summary on stderr.

Exit status: 0 every signature verified, 1 a file failed (or the key could not be used),
2 bad command line.

Examples:
  signet verify --key-file release.pub.pem dist/*.tar.gz
  signet verify --key-file release.pub.pem --sig-dir sigs/ dist/app.tar.gz
  signet verify --key-file batch.pub.pem --bundle dist.receipts
  signet verify --key-file rsa.pub.pem --rsa-padding pss --hash sha512 firmware.bin
  signet verify --key-file release.pub.pem --json dist/*.tar.gz | jq 'select(.ok | not)')footer";

// What kind of key --key-file holds, and so how its signatures are checked.
enum class KeyKind : std::uint8_t { kEcP256, kEcP384, kRsa };

struct PublicKey {
  EvpPkey pkey;
  KeyKind kind = KeyKind::kEcP256;
  std::string description;  // "ECDSA P-256", "RSA-3072"
};

// One FILE's verdict. `failure` is a short machine-readable kind for --json.
struct Verdict {
  bool ok = false;
  std::string failure;  // "no_signature", "mismatch", "malformed_signature", "file", ...
  std::string reason;   // what follows "FAILED (" in the line
  std::optional<pipeline::Digest> digest;
};

Verdict Failed(std::string failure, std::string reason) {
  return Verdict{false, std::move(failure), std::move(reason), std::nullopt};
}

// Reads the whole of a small regular file, refusing one over `limit` bytes. Opened non-blocking
// and checked with fstat first, so a FIFO named like a signature cannot hang the command.
// Errors: those of open/read (ErrnoError, naming `path`), kInvalidArgument (not a regular file, or
// larger than `limit`).
Result<std::string> ReadSmallFile(const std::string& path, std::size_t limit) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) {
    return MakeError(ErrnoError(errno, path));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return MakeError(ErrnoError(errno, path));
  }
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument, fmt::format("{}: not a regular file", path));
  }
  std::string bytes(limit + 1, '\0');
  std::size_t filled = 0;
  while (filled < bytes.size()) {
    const ssize_t n = ::read(fd.get(), bytes.data() + filled, bytes.size() - filled);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return MakeError(ErrnoError(errno, path));
    }
    if (n == 0) {
      break;
    }
    filled += static_cast<std::size_t>(n);
  }
  if (filled > limit) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("{}: larger than {} bytes", path, limit));
  }
  bytes.resize(filled);
  return bytes;
}

// Parses a PEM or DER SubjectPublicKeyInfo and checks that Signet can verify raw signatures with
// it. Errors: kInvalidArgument (not a public key, or a key type or curve not supported).
Result<PublicKey> ParsePublicKey(const std::string& bytes) {
  EvpPkey pkey;
  {
    Bio bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
    if (!bio) {
      return MakeError(OpenSslError("BIO_new_mem_buf"));
    }
    pkey.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  }
  if (!pkey) {
    const auto* der = reinterpret_cast<const unsigned char*>(bytes.data());
    pkey.reset(d2i_PUBKEY(nullptr, &der, static_cast<long>(bytes.size())));
  }
  if (!pkey) {
    ERR_clear_error();  // the parsers' errors: the message below says it all
    std::string hint = bytes.find("PRIVATE KEY-----") != std::string::npos
                           ? " (it holds a private key: give the public key, `openssl pkey "
                             "-in KEY.pem -pubout`)"
                           : "";
    return MakeError(ErrorCode::kInvalidArgument,
                     "not a public key (PEM or DER SubjectPublicKeyInfo)" + hint);
  }
  PublicKey key;
  switch (EVP_PKEY_get_base_id(pkey.get())) {
    case EVP_PKEY_EC: {
      char curve[64] = {};
      std::size_t length = 0;
      if (EVP_PKEY_get_group_name(pkey.get(), curve, sizeof(curve), &length) != 1) {
        return MakeError(OpenSslError("reading the key's curve"));
      }
      const std::string_view name(curve, length);
      if (name == "prime256v1" || name == "P-256") {
        key.kind = KeyKind::kEcP256;
        key.description = "ECDSA P-256";
      } else if (name == "secp384r1" || name == "P-384") {
        key.kind = KeyKind::kEcP384;
        key.description = "ECDSA P-384";
      } else {
        return MakeError(ErrorCode::kInvalidArgument,
                         fmt::format("an EC key on curve {}: only P-256 and P-384 are supported",
                                     DisplayName(name)));
      }
      break;
    }
    case EVP_PKEY_RSA:
      key.kind = KeyKind::kRsa;
      key.description = fmt::format("RSA-{}", EVP_PKEY_get_bits(pkey.get()));
      break;
    case EVP_PKEY_ED25519:
      return MakeError(ErrorCode::kInvalidArgument,
                       "an Ed25519 key: raw Ed25519 signatures are not supported yet");
    default:
      return MakeError(ErrorCode::kInvalidArgument,
                       fmt::format("a {} key: only ECDSA P-256/P-384 and RSA are supported",
                                   OBJ_nid2sn(EVP_PKEY_get_base_id(pkey.get()))));
  }
  key.pkey = std::move(pkey);
  return key;
}

const EVP_MD* HashMd(pipeline::DigestAlgorithm algorithm) {
  switch (algorithm) {
    case pipeline::DigestAlgorithm::kSha384:
      return EVP_sha384();
    case pipeline::DigestAlgorithm::kSha512:
      return EVP_sha512();
    default:
      return EVP_sha256();
  }
}

// Checks `signature` over `digest` with `key`. Returns a failed verdict for a signature that does
// not match or cannot be one for this key, and an Error only when OpenSSL itself fails.
Result<Verdict> VerifyDigest(const PublicKey& key, bool pss, const pipeline::Digest& digest,
                             const std::string& signature) {
  const auto* sig = reinterpret_cast<const unsigned char*>(signature.data());
  if (key.kind == KeyKind::kRsa) {
    const auto expected = static_cast<std::size_t>(EVP_PKEY_get_size(key.pkey.get()));
    if (signature.size() != expected) {
      return Failed("malformed_signature",
                    fmt::format("malformed signature: {} bytes, but {} signatures are {} bytes",
                                signature.size(), key.description, expected));
    }
  } else {
    // Strict DER: what `openssl dgst -sign` writes, and nothing else (no raw r‖s, no BER).
    const unsigned char* p = sig;
    EcdsaSig parsed(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(signature.size())));
    unsigned char* der = nullptr;
    const int der_length = parsed ? i2d_ECDSA_SIG(parsed.get(), &der) : -1;
    const bool strict = der_length >= 0 &&
                        static_cast<std::size_t>(der_length) == signature.size() &&
                        std::memcmp(signature.data(), der, signature.size()) == 0;
    OPENSSL_free(der);
    if (!strict) {
      ERR_clear_error();  // the parser's errors are not news
      return Failed("malformed_signature",
                    fmt::format("malformed signature: not a DER ECDSA signature ({} bytes)",
                                signature.size()));
    }
  }

  EvpPkeyCtx ctx(EVP_PKEY_CTX_new(key.pkey.get(), nullptr));
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_signature_md(ctx.get(), HashMd(digest.algorithm())) != 1) {
    return MakeError(OpenSslError("setting up the signature check"));
  }
  if (key.kind == KeyKind::kRsa) {
    const bool set =
        pss ? EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) == 1 &&
                  EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), RSA_PSS_SALTLEN_DIGEST) == 1 &&
                  EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), HashMd(digest.algorithm())) == 1
            : EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) == 1;
    if (!set) {
      return MakeError(OpenSslError("setting the RSA padding"));
    }
  }
  const auto bytes = digest.bytes();
  const int rc = EVP_PKEY_verify(ctx.get(), sig, signature.size(), bytes.data(), bytes.size());
  // 0 is a mismatch; a negative value is too for a bad encoding (e.g. PKCS#1 padding that does
  // not parse), which for the user is the same thing: this key did not make this signature.
  ERR_clear_error();
  if (rc != 1) {
    return Failed("mismatch", "signature does not match");
  }
  Verdict verdict;
  verdict.ok = true;
  verdict.digest = digest;
  return verdict;
}

// The validated command line.
struct VerifySettings {
  std::vector<std::filesystem::path> files;
  std::vector<std::string> signature_paths;  // one per file
  std::optional<std::string> bundle;         // --bundle FILE: the receipts are its lines
  std::optional<pipeline::DigestAlgorithm> hash;
  bool pss = false;
  bool json = false;
};

class VerifyCommand final : public Command {
 public:
  CLI::App* Register(CLI::App& parent) override;
  int Run(Console& console) override;

 private:
  // Turns the raw option strings into settings. Errors: kInvalidArgument naming the option.
  [[nodiscard]] Result<VerifySettings> Validate() const;
  // The output for file `index`: a line of text, or of JSON.
  std::string Render(const VerifySettings& settings, std::size_t index,
                     const Verdict& verdict) const;

  std::string key_file_;
  std::string hash_;
  std::string sig_dir_;
  std::string rsa_padding_ = "pkcs1";
  bool json_ = false;
  std::string bundle_;
  std::vector<std::string> files_;

  CLI::Option* sig_dir_option_ = nullptr;
  CLI::Option* bundle_option_ = nullptr;
};

CLI::App* VerifyCommand::Register(CLI::App& parent) {
  CLI::App* app = parent.add_subcommand(
      "verify", "Verify raw detached signatures (FILE.sig) locally with a public key");
  app->add_option("--key-file,--key", key_file_,
                  "The signing key's public key (PEM or DER SubjectPublicKeyInfo)")
      ->type_name("PUB.pem")
      ->required();
  app->add_option("--hash", hash_,
                  "Hash the files were signed with: sha256, sha384, sha512 (default: sha384 for "
                  "P-384 keys, sha256 otherwise)")
      ->type_name("ALGO");
  sig_dir_option_ = app->add_option("--sig-dir", sig_dir_,
                                    "Look for the signature of a/b/c in DIR/a/b/c.sig instead of "
                                    "a/b/c.sig (FILEs must then be relative paths without '..')")
                        ->type_name("DIR");
  app->add_option("--rsa-padding", rsa_padding_,
                  "RSA signature padding: pkcs1 (PKCS#1 v1.5, default) or pss")
      ->type_name("MODE");
  app->add_flag("--json", json_, "One JSON object per file and line: path, signature, ok, error");
  bundle_option_ = app->add_option("--bundle", bundle_,
                                   "Check receipts from the bundle FILE (signet sign --bundle); "
                                   "without FILEs, every file it names")
                       ->type_name("FILE")
                       ->excludes(sig_dir_option_);
  app->add_option("FILE", files_, "Files whose signatures to check");
  app->footer(std::string(kFooter));
  return app;
}

Result<VerifySettings> VerifyCommand::Validate() const {
  VerifySettings settings;
  settings.json = json_;
  if (!hash_.empty()) {
    auto parsed = pipeline::ParseDigestAlgorithm(hash_);
    if (!parsed || *parsed == pipeline::DigestAlgorithm::kBlake2b512) {
      return MakeError(
          ErrorCode::kInvalidArgument,
          fmt::format("--hash '{}': expected sha256, sha384 or sha512", DisplayName(hash_)));
    }
    settings.hash = *parsed;
  }
  if (rsa_padding_ == "pss") {
    settings.pss = true;
  } else if (rsa_padding_ != "pkcs1") {
    return MakeError(
        ErrorCode::kInvalidArgument,
        fmt::format("--rsa-padding '{}': expected pkcs1 or pss", DisplayName(rsa_padding_)));
  }
  if (bundle_option_->count() > 0) {
    if (bundle_.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "--bundle needs a file name");
    }
    settings.bundle = bundle_;
  } else if (files_.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "no FILE to verify (name the files; with --bundle, none checks every file "
                     "the bundle names)");
  }
  const bool mirror = sig_dir_option_->count() > 0;
  if (mirror && sig_dir_.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "--sig-dir needs a directory name");
  }
  for (const std::string& file : files_) {
    if (file.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "an empty FILE name");
    }
    const std::filesystem::path path(file);
    settings.files.push_back(path);
    if (settings.bundle) {
      settings.signature_paths.push_back(*settings.bundle);
      continue;
    }
    if (!mirror) {
      settings.signature_paths.push_back(file + ".sig");
      continue;
    }
    // Mirroring must stay inside DIR: an absolute path or a '..' would name a signature anywhere.
    if (path.is_absolute()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       fmt::format("--sig-dir mirrors relative paths under {}, but '{}' is "
                                   "absolute: run from the files' directory and name them "
                                   "relatively",
                                   DisplayName(sig_dir_), DisplayName(file)));
    }
    for (const auto& component : path) {
      if (component == "..") {
        return MakeError(ErrorCode::kInvalidArgument,
                         fmt::format("--sig-dir mirrors relative paths under {}, but '{}' has a "
                                     "'..' component that would lead out of it",
                                     DisplayName(sig_dir_), DisplayName(file)));
      }
    }
    settings.signature_paths.push_back((std::filesystem::path(sig_dir_) / path).native() + ".sig");
  }
  return settings;
}

std::string VerifyCommand::Render(const VerifySettings& settings, std::size_t index,
                                  const Verdict& verdict) const {
  const std::string& name = settings.files[index].native();
  const std::string& sig = settings.signature_paths[index];
  if (!settings.json) {
    return verdict.ok
               ? fmt::format("{}: OK\n", DisplayName(name))
               : fmt::format("{}: FAILED ({})\n", DisplayName(name), DisplayName(verdict.reason));
  }
  json line{{"path", name}, {"signature", sig}, {"ok", verdict.ok}};
  if (!IsValidUtf8(name)) {
    line["path_hex"] = HexEncode(AsBytes(name));
  }
  if (verdict.digest) {
    line["hash"] = pipeline::DigestAlgorithmName(verdict.digest->algorithm());
    line["digest"] = verdict.digest->Hex();
  }
  if (!verdict.ok) {
    line["error"] = {{"kind", verdict.failure}, {"message", verdict.reason}};
  }
  return line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

// The verdict for a file the hasher could not hash.
Verdict FileFailure(const std::string& name, const Error& error) {
  std::string message = error.message();
  // The pipeline's messages usually start with the name already: say it once, on the line.
  if (message.starts_with(name + ": ")) {
    message.erase(0, name.size() + 2);
  } else if (message.starts_with(name + " ")) {
    message.erase(0, name.size() + 1);
  }
  if (message.find("changed while hashing") != std::string::npos) {
    return Failed("changed", "file changed while hashing");
  }
  return Failed(error.code() == ErrorCode::kNotFound ? "not_found" : "unreadable", message);
}

// The digest of `algorithm` among those the hasher made for a file, or null.
const pipeline::Digest* FindDigest(const pipeline::FileDigest& file,
                                   pipeline::DigestAlgorithm algorithm) {
  for (const pipeline::Digest& digest : file.digests) {
    if (digest.algorithm() == algorithm) {
      return &digest;
    }
  }
  return nullptr;
}

// Makes the receipt key from --key-file's bytes when the first receipt is met. The error is the
// receipt's file's verdict.
std::optional<Verdict> NeedReceiptKey(std::string_view key_bytes,
                                      std::optional<Result<ReceiptKey>>& receipt_key) {
  if (!receipt_key) {
    receipt_key = MakeReceiptKey(key_bytes);
    if (receipt_key->has_value()) {
      (*receipt_key)->check = RememberingCheck(std::move((*receipt_key)->check));
    }
  }
  if (!receipt_key->has_value()) {
    return Failed("key_unknown",
                  "receipt: key unknown: the key file cannot check batch receipts: " +
                      receipt_key->error().message());
  }
  return std::nullopt;
}

// A parsed receipt (read from `where`), whose digest algorithm is added to those the hasher
// computes. The error is the file's verdict.
tl::expected<formats::Receipt, Verdict> AcceptReceipt(
    formats::Receipt receipt, const std::string& where,
    std::vector<pipeline::DigestAlgorithm>& algorithms) {
  auto algorithm = pipeline::ParseDigestAlgorithm(receipt.leaf.digest_algorithm);
  if (!algorithm) {
    return tl::unexpected(Failed("malformed_receipt", "malformed receipt " + where +
                                                          ": unknown digest algorithm " +
                                                          receipt.leaf.digest_algorithm));
  }
  if (std::find(algorithms.begin(), algorithms.end(), *algorithm) == algorithms.end()) {
    algorithms.push_back(*algorithm);
  }
  return receipt;
}

// Reads and parses FILE.receipt (AcceptReceipt). The error is the file's verdict.
tl::expected<formats::Receipt, Verdict> LoadReceipt(
    const std::string& path, std::string_view key_bytes,
    std::optional<Result<ReceiptKey>>& receipt_key,
    std::vector<pipeline::DigestAlgorithm>& algorithms) {
  if (auto refused = NeedReceiptKey(key_bytes, receipt_key)) {
    return tl::unexpected(std::move(*refused));
  }
  auto text = ReadSmallFile(path, formats::kMaxReceiptBytes);
  if (!text) {
    return tl::unexpected(
        Failed("malformed_receipt", "malformed receipt: " + text.error().message()));
  }
  auto receipt = formats::ParseReceipt(*text);
  if (!receipt) {
    return tl::unexpected(Failed("malformed_receipt",
                                 "malformed receipt " + path + ": " + receipt.error().message()));
  }
  return AcceptReceipt(std::move(*receipt), path, algorithms);
}

// The receipt for `name` in `bundle` (AcceptReceipt). The error is the file's verdict.
tl::expected<formats::Receipt, Verdict> BundledReceipt(
    const std::string& name, const std::string& bundle_path, const ReceiptBundle& bundle,
    std::string_view key_bytes, std::optional<Result<ReceiptKey>>& receipt_key,
    std::vector<pipeline::DigestAlgorithm>& algorithms) {
  const auto it = bundle.by_name.find(BundleKey(name));
  if (it == bundle.by_name.end()) {
    return tl::unexpected(
        Failed("no_signature", fmt::format("no receipt: {} has none for this name", bundle_path)));
  }
  if (auto refused = NeedReceiptKey(key_bytes, receipt_key)) {
    return tl::unexpected(std::move(*refused));
  }
  return AcceptReceipt(bundle.receipts[it->second],
                       fmt::format("{} line {}", bundle_path, bundle.lines[it->second]),
                       algorithms);
}

std::string SnakeCase(std::string_view name) {
  std::string out(name);
  std::replace(out.begin(), out.end(), ' ', '_');
  return out;
}

Verdict CheckReceipt(const formats::Receipt& receipt, const pipeline::FileDigest& file,
                     const ReceiptKey& key) {
  const auto algorithm = pipeline::ParseDigestAlgorithm(receipt.leaf.digest_algorithm);
  const pipeline::Digest* digest = algorithm ? FindDigest(file, *algorithm) : nullptr;
  if (digest == nullptr) {
    return Failed("internal", "the hasher returned no " + receipt.leaf.digest_algorithm);
  }
  const formats::ReceiptVerdict verdict =
      formats::VerifyReceipt(receipt, file.size(), digest->bytes(), key.fingerprint, key.check);
  if (!verdict.ok()) {
    const std::string_view name = formats::ReceiptFailureName(verdict.failure);
    return Failed(SnakeCase(name), "receipt: " + std::string(name) + ": " + verdict.message);
  }
  return Verdict{true, "", "", *digest};
}

int VerifyCommand::Run(Console& console) {
  auto settings = Validate();
  if (!settings) {
    console.Err(fmt::format("signet verify: {}\nRun with --help for more information.\n",
                            settings.error().message()));
    return kExitUsage;
  }
  auto key_bytes = ReadSmallFile(key_file_, kMaxKeyFileBytes);
  if (!key_bytes) {
    console.Error(DisplayName(key_bytes.error().message()));
    return kExitFailed;
  }
  auto key = ParsePublicKey(*key_bytes);
  if (!key) {
    console.Error(DisplayName(key_file_ + ": " + key.error().message()));
    return kExitFailed;
  }
  if (settings->pss && key->kind != KeyKind::kRsa) {
    console.Err(
        fmt::format("signet verify: --rsa-padding pss needs an RSA key; {} holds an {} "
                    "key\nRun with --help for more information.\n",
                    DisplayName(key_file_), key->description));
    return kExitUsage;
  }
  std::optional<ReceiptBundle> bundle;
  if (settings->bundle) {
    auto read = ReadReceiptBundle(*settings->bundle);
    if (!read) {
      console.Error(read.error().message());
      return kExitFailed;
    }
    bundle = std::move(*read);
    if (settings->files.empty()) {  // every file the bundle names, in its order
      for (const formats::Receipt& receipt : bundle->receipts) {
        settings->files.emplace_back(receipt.leaf.name);
        settings->signature_paths.push_back(*settings->bundle);
      }
    }
  }
  const pipeline::DigestAlgorithm algorithm =
      settings->hash.value_or(key->kind == KeyKind::kEcP384 ? pipeline::DigestAlgorithm::kSha384
                                                            : pipeline::DigestAlgorithm::kSha256);

  // First what needs no hashing: files that are not there or are directories, and signatures
  // that are missing or cannot be read. Only the rest are hashed, so a missing .sig never costs
  // a read of a large file.
  const std::size_t count = settings->files.size();
  std::vector<std::optional<Verdict>> verdicts(count);
  std::vector<std::string> signatures(count);
  std::vector<std::optional<formats::Receipt>> receipts(count);
  std::optional<Result<ReceiptKey>> receipt_key;  // made when the first receipt is met
  std::vector<pipeline::DigestAlgorithm> algorithms = {algorithm};
  std::vector<std::filesystem::path> to_hash;
  std::vector<std::size_t> index_of;  // to_hash[i] is FILE number index_of[i]
  for (std::size_t i = 0; i < count; ++i) {
    const std::string& name = settings->files[i].native();
    struct stat st {};
    if (::stat(name.c_str(), &st) != 0) {
      verdicts[i] = FileFailure(name, ErrnoError(errno, name));
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      verdicts[i] = Failed("not_a_file", "is a directory; name the files in it");
      continue;
    }
    // A receipt found: hashed unless it could not be read (that is the file's verdict).
    auto take_receipt = [&](tl::expected<formats::Receipt, Verdict> loaded) {
      if (!loaded) {
        verdicts[i] = std::move(loaded).error();
        return;
      }
      receipts[i] = std::move(*loaded);
      to_hash.push_back(settings->files[i]);
      index_of.push_back(i);
    };
    if (bundle) {
      take_receipt(
          BundledReceipt(name, *settings->bundle, *bundle, *key_bytes, receipt_key, algorithms));
      continue;
    }
    const std::string& sig_path = settings->signature_paths[i];
    auto signature = ReadSmallFile(sig_path, kMaxSignatureBytes);
    const std::string receipt_path = sig_path.substr(0, sig_path.size() - 4) + ".receipt";
    struct stat receipt_st {};
    if (!signature && signature.error().code() == ErrorCode::kNotFound &&
        ::stat(receipt_path.c_str(), &receipt_st) == 0) {
      take_receipt(LoadReceipt(receipt_path, *key_bytes, receipt_key, algorithms));
      continue;
    }
    if (!signature) {
      const Error& error = signature.error();
      if (error.code() == ErrorCode::kNotFound) {
        verdicts[i] = Failed("no_signature", fmt::format("no signature: neither {} nor {} exists",
                                                         sig_path, receipt_path));
      } else if (error.code() == ErrorCode::kInvalidArgument) {
        verdicts[i] = Failed("malformed_signature", "malformed signature: " + error.message());
      } else {
        verdicts[i] = Failed("unreadable_signature", error.message());
      }
      continue;
    }
    signatures[i] = std::move(*signature);
    to_hash.push_back(settings->files[i]);
    index_of.push_back(i);
  }

  std::size_t next = 0;  // the next FILE to print
  std::uint64_t failed = 0;
  std::string text;
  auto print_ready = [&] {
    text.clear();
    for (; next < count && verdicts[next]; ++next) {
      failed += verdicts[next]->ok ? 0 : 1;
      text += Render(*settings, next, *verdicts[next]);
    }
    console.Out(text);
  };
  print_ready();

  if (!to_hash.empty()) {
    pipeline::HashOptions options;
    options.algorithms = algorithms;
    options.follow_symlinks = true;  // a link to a release is verified as the release
    auto hasher = MakeHasher(options);
    if (!hasher) {
      return ReportSetupError(console, hasher.error());
    }
    RunInOrder(*hasher, to_hash, console, [&](pipeline::FileOutcome outcome) {
      if (outcome.ordinal >= index_of.size()) {
        return;
      }
      const std::size_t i = index_of[outcome.ordinal];
      const std::string& name = settings->files[i].native();
      if (!outcome.digest) {
        verdicts[i] = FileFailure(name, outcome.digest.error());
      } else if (receipts[i]) {
        verdicts[i] = CheckReceipt(*receipts[i], *outcome.digest, receipt_key->value());
      } else {
        const pipeline::Digest* digest = FindDigest(*outcome.digest, algorithm);
        if (digest == nullptr) {
          verdicts[i] = Failed("internal", "the hasher returned no digest");
        } else {
          auto verdict = VerifyDigest(*key, settings->pss, *digest, signatures[i]);
          verdicts[i] = verdict ? std::move(*verdict) : Failed("crypto", verdict.error().message());
        }
      }
      print_ready();
    });
  }
  // Only a hasher that skipped an ordinal leaves a file without a verdict; fail it, never pass it.
  for (auto& verdict : verdicts) {
    if (!verdict) {
      verdict = Failed("internal", "the hasher reported no outcome for this file");
    }
  }
  print_ready();

  if (auto flushed = console.Flush(); !flushed) {
    console.Error(flushed.error().message());
    return kExitFailed;
  }
  const std::string with =
      fmt::format("{} key, {}{}", key->description, pipeline::DigestAlgorithmName(algorithm),
                  key->kind == KeyKind::kRsa && settings->pss ? ", PSS" : "");
  if (failed > 0) {
    console.Error(fmt::format("WARNING: {} of {} file{} FAILED verification ({})", failed, count,
                              count == 1 ? "" : "s", with));
    return kExitFailed;
  }
  console.Error(fmt::format("{} file{} verified OK ({})", count, count == 1 ? "" : "s", with));
  return kExitOk;
}

}  // namespace

std::unique_ptr<Command> MakeVerifyCommand() { return std::make_unique<VerifyCommand>(); }

}  // namespace signet::cli
