// tests/hsm/softhsm_token.h: a real SoftHSM token of a test's own, in a temporary directory.
//
// Each SoftHsmToken writes its own softhsm2.conf and token directory and points SOFTHSM2_CONF at it
// (process-wide: tests that use one run one token at a time per process; ctest runs each test in a
// process of its own, so tests still run in parallel). The user PIN is random and written to a
// 0600 file, as a deployment would keep it.
#ifndef SIGNET_TESTS_HSM_SOFTHSM_TOKEN_H_
#define SIGNET_TESTS_HSM_SOFTHSM_TOKEN_H_

#include <filesystem>
#include <string>

#include "hsm/hsm.h"

namespace signet::hsm::testing {

inline constexpr const char* kSoftHsmModule = "/usr/lib/softhsm/libsofthsm2.so";

class SoftHsmToken {
 public:
  // Creates and initializes a token labelled `label`. Throws std::runtime_error on failure (a
  // broken test environment, not a test result).
  explicit SoftHsmToken(std::string label = "signet-test");
  ~SoftHsmToken();
  SoftHsmToken(const SoftHsmToken&) = delete;
  SoftHsmToken& operator=(const SoftHsmToken&) = delete;

  const std::string& label() const { return label_; }
  const std::string& pin() const { return pin_; }
  const std::filesystem::path& pin_file() const { return pin_file_; }
  const std::filesystem::path& dir() const { return dir_; }
  const std::filesystem::path& conf() const { return conf_; }

 private:
  std::string label_;
  std::string pin_;
  std::filesystem::path dir_;
  std::filesystem::path conf_;
  std::filesystem::path pin_file_;
};

// A TokenConfig for `token` through SoftHSM, with `sessions` signing sessions.
TokenConfig ConfigFor(const SoftHsmToken& token, unsigned sessions = 2);

// Random bytes (digests, messages) from OpenSSL's RNG.
Bytes Random(std::size_t n);

// Checks `signature` over `input` with OpenSSL against `public_key`: the tests' own check,
// independent of the hsm module's verify-before-release code.
bool Verifies(const PublicKey& public_key, SignSpec spec, const Bytes& input,
              const Bytes& signature);

// Runs a shell command; returns its exit status (stdout and stderr are captured into `output`).
int RunCommand(const std::string& command, std::string* output = nullptr);

}  // namespace signet::hsm::testing

#endif  // SIGNET_TESTS_HSM_SOFTHSM_TOKEN_H_
