#include "tests/hsm/softhsm_token.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <random>
#include <stdexcept>

// Sanitizer builds: SoftHSM 2.6.1 leaks an ASN1 string (the "edwards25519" curve name) on every
// EdDSA C_Sign. Leaks inside libsofthsm2.so are not ours to fix; full stacks (libcrypto has no
// frame pointers) let LeakSanitizer see that a leak comes from there. Unused in other builds.
// WARNING: full stacks make every allocation several times slower. CI's ASan run sets
// fast_unwind_on_malloc=1 (ASAN_OPTIONS wins over these defaults) for every test but those
// that sign with Ed25519 in SoftHSM, listed as FULL_MALLOC_STACKS (tests/CMakeLists.txt): a new
// such test fails there with a leak in libcrypto until it is listed.
extern "C" const char* __lsan_default_suppressions() { return "leak:libsofthsm2.so\n"; }
extern "C" const char* __asan_default_options() { return "fast_unwind_on_malloc=0"; }

namespace signet::hsm::testing {
namespace {

std::string RandomDigits(std::size_t n) {
  std::random_device rd;
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(static_cast<char>('0' + rd() % 10));
  }
  return out;
}

}  // namespace

int RunCommand(const std::string& command, std::string* output) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) {
    return -1;
  }
  std::array<char, 512> buf{};
  std::string out;
  while (std::fgets(buf.data(), buf.size(), pipe) != nullptr) {
    out += buf.data();
  }
  const int status = ::pclose(pipe);
  if (output != nullptr) {
    *output = std::move(out);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

SoftHsmToken::SoftHsmToken(std::string label) : label_(std::move(label)), pin_(RandomDigits(12)) {
  char tmpl[] = "/tmp/signet-softhsm-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    throw std::runtime_error("mkdtemp failed");
  }
  dir_ = tmpl;
  std::filesystem::create_directory(dir_ / "tokens");
  conf_ = dir_ / "softhsm2.conf";
  std::ofstream(conf_) << "directories.tokendir = " << (dir_ / "tokens").string() << "\n"
                       << "objectstore.backend = file\n"
                       << "log.level = ERROR\n"
                       << "slots.removable = false\n";
  pin_file_ = dir_ / "user.pin";
  std::ofstream(pin_file_) << pin_ << "\n";
  ::chmod(pin_file_.c_str(), 0600);
  ::setenv("SOFTHSM2_CONF", conf_.c_str(), 1);
  std::string output;
  const std::string command = "softhsm2-util --init-token --free --label '" + label_ + "' --pin " +
                              pin_ + " --so-pin " + RandomDigits(12);
  if (RunCommand(command, &output) != 0) {
    throw std::runtime_error("softhsm2-util --init-token failed: " + output);
  }
}

Bytes Random(std::size_t n) {
  Bytes out(n);
  RAND_bytes(out.data(), static_cast<int>(n));
  return out;
}

namespace {

const EVP_MD* Md(Hash hash) {
  return hash == Hash::kSha256 ? EVP_sha256() : hash == Hash::kSha384 ? EVP_sha384() : EVP_sha512();
}

}  // namespace

bool Verifies(const PublicKey& public_key, SignSpec spec, const Bytes& input,
              const Bytes& signature) {
  const std::uint8_t* p = public_key.spki_der.data();
  EVP_PKEY* key = d2i_PUBKEY(nullptr, &p, static_cast<long>(public_key.spki_der.size()));
  if (key == nullptr) {
    return false;
  }
  bool ok = false;
  if (spec.scheme == Scheme::kEd25519) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ok = EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, key) == 1 &&
         EVP_DigestVerify(ctx, signature.data(), signature.size(), input.data(), input.size()) == 1;
    EVP_MD_CTX_free(ctx);
  } else {
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(key, nullptr);
    ok = EVP_PKEY_verify_init(ctx) == 1 && EVP_PKEY_CTX_set_signature_md(ctx, Md(spec.hash)) == 1;
    if (ok && spec.scheme == Scheme::kRsaPss) {
      ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, static_cast<int>(HashLength(spec.hash))) == 1;
    }
    ok = ok &&
         EVP_PKEY_verify(ctx, signature.data(), signature.size(), input.data(), input.size()) == 1;
    EVP_PKEY_CTX_free(ctx);
  }
  EVP_PKEY_free(key);
  return ok;
}

TokenConfig ConfigFor(const SoftHsmToken& token, unsigned sessions) {
  TokenConfig config;
  config.module = kSoftHsmModule;
  config.token_label = token.label();
  config.pin_file = token.pin_file();
  config.sessions = sessions;
  return config;
}

SoftHsmToken::~SoftHsmToken() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

}  // namespace signet::hsm::testing
