// HSM signing on SoftHSM: the batched signer beside plain PKCS#11 loops, in one run.
//
// - BM_PlainSign is the reference: N threads, each with a session of its own, loop C_SignInit +
//   C_Sign with one key; no pool, no queue, no verification (PKCS#11 called directly).
// - BM_SignerThroughput keeps a window of jobs in flight on a Token (each job's callback submits
//   the next), so every session has work; items/s is signatures/s. One iteration is one job of
//   `batch` digests. Filling the window, a warm-up and the final drain are not timed: this is the
//   steady state, comparable with the reference loops.
// - BM_IdleLatency times Token::Sign of one ECDSA P-256 digest on an otherwise idle pool.
//
// One SoftHSM token in a temp dir (removed at exit) holds one key per type, made once per process
// by Token::GenerateKey. PKCS#11 allows one C_Initialize per module and process, so the Token runs
// and the reference runs take turns: Env closes one before it opens the other.
//
// At the end the program prints the ratios the HSM issue sets targets for (to stdout after the
// console table, to stderr with --benchmark_format=json/csv).
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "hsm/hsm.h"
#include "tests/hsm/softhsm_token.h"

namespace signet::hsm {
namespace {

constexpr KeyType kKeyTypes[] = {KeyType::kEcdsaP256, KeyType::kEd25519, KeyType::kRsa3072};
constexpr std::size_t kMaxBatch = 256;
// DigestInfo for SHA-256 (RFC 8017 §9.2, note 1): what CKM_RSA_PKCS signs before the digest, as
// Signet's kRsaPkcs1 scheme does.
constexpr std::uint8_t kSha256DigestInfo[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                              0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                              0x01, 0x05, 0x00, 0x04, 0x20};

std::string KeyLabel(KeyType type) { return "bench-" + std::string(KeyTypeName(type)); }

SignSpec SpecFor(KeyType type) {
  switch (type) {
    case KeyType::kEd25519:
      return {Scheme::kEd25519, Hash::kSha256};
    case KeyType::kRsa3072:
    case KeyType::kRsa4096:
      return {Scheme::kRsaPkcs1, Hash::kSha256};
    case KeyType::kEcdsaP256:
    case KeyType::kEcdsaP384:
      break;
  }
  return {Scheme::kEcdsa, Hash::kSha256};
}

// kMaxBatch distinct SHA-256 digests: the inputs of every run (Ed25519 signs them as messages).
const std::vector<Bytes>& Digests() {
  static const std::vector<Bytes> digests = [] {
    std::vector<Bytes> out;
    for (std::size_t i = 0; i < kMaxBatch; ++i) {
      const std::string text = "signet hsm bench input " + std::to_string(i);
      Bytes digest(32);
      EVP_Digest(text.data(), text.size(), digest.data(), nullptr, EVP_sha256(), nullptr);
      out.push_back(std::move(digest));
    }
    return out;
  }();
  return digests;
}

// ---- Checking a signature with OpenSSL
// -----------------------------------------------------------

using EvpPkey = std::unique_ptr<EVP_PKEY, FnDeleter<&EVP_PKEY_free>>;
using EvpPkeyCtx = std::unique_ptr<EVP_PKEY_CTX, FnDeleter<&EVP_PKEY_CTX_free>>;
using EvpMdCtx = std::unique_ptr<EVP_MD_CTX, FnDeleter<&EVP_MD_CTX_free>>;
using EcdsaSig = std::unique_ptr<ECDSA_SIG, FnDeleter<&ECDSA_SIG_free>>;

// PKCS#11 returns a P-256 signature as r ‖ s; OpenSSL verifies DER. Empty on a malformed input.
Bytes EcdsaRawToDer(std::span<const std::uint8_t> raw) {
  if (raw.size() != 64) {
    return {};
  }
  EcdsaSig sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(raw.data(), 32, nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + 32, 32, nullptr);
  if (!sig || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return {};
  }
  const int length = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (length <= 0) {
    return {};
  }
  Bytes der(static_cast<std::size_t>(length));
  std::uint8_t* p = der.data();
  i2d_ECDSA_SIG(sig.get(), &p);
  return der;
}

// True when `signature` (DER for ECDSA) over `digest` verifies against the key's exported public
// key: each run checks one of its signatures, so no run counts wrong ones.
bool Verifies(const KeyHandle& key, std::span<const std::uint8_t> digest,
              std::span<const std::uint8_t> signature) {
  const std::uint8_t* p = key.public_key.spki_der.data();
  EvpPkey pkey(d2i_PUBKEY(nullptr, &p, static_cast<long>(key.public_key.spki_der.size())));
  bool ok = false;
  if (pkey && key.type == KeyType::kEd25519) {
    EvpMdCtx ctx(EVP_MD_CTX_new());
    ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) == 1 &&
         EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), digest.data(),
                          digest.size()) == 1;
  } else if (pkey) {
    EvpPkeyCtx ctx(EVP_PKEY_CTX_new(pkey.get(), nullptr));
    ok = ctx && EVP_PKEY_verify_init(ctx.get()) == 1 &&
         EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) == 1 &&
         (key.type != KeyType::kRsa3072 ||
          EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) == 1) &&
         EVP_PKEY_verify(ctx.get(), signature.data(), signature.size(), digest.data(),
                         digest.size()) == 1;
  }
  ERR_clear_error();
  return ok;
}

// ---- Plain PKCS#11, for the reference
// ------------------------------------------------------------

Error CkError(CK_RV rv, const std::string& what) {
  char code[32];
  std::snprintf(code, sizeof code, "CK_RV 0x%lx", static_cast<unsigned long>(rv));
  return Error(ErrorCode::kHsm, what + ": " + code, ErrorDomain::kPkcs11,
               static_cast<std::int64_t>(rv));
}

// One session of its own for one reference thread; closed by the destructor. Used by one thread at
// a time, as PKCS#11 requires.
class RawSession {
 public:
  RawSession(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session, KeyHandle key,
             CK_OBJECT_HANDLE private_key)
      : fn_(fn), session_(session), key_(std::move(key)), private_key_(private_key) {
    mechanism_.mechanism = key_.type == KeyType::kRsa3072   ? CKM_RSA_PKCS
                           : key_.type == KeyType::kEd25519 ? CKM_EDDSA
                                                            : CKM_ECDSA;
    for (const Bytes& digest : Digests()) {
      Bytes input;
      if (key_.type == KeyType::kRsa3072) {
        input.assign(std::begin(kSha256DigestInfo), std::end(kSha256DigestInfo));
      }
      input.insert(input.end(), digest.begin(), digest.end());
      inputs_.push_back(std::move(input));
    }
  }
  ~RawSession() { fn_->C_CloseSession(session_); }
  RawSession(const RawSession&) = delete;
  RawSession& operator=(const RawSession&) = delete;

  // C_SignInit + C_Sign of input `i` (mod kMaxBatch), as Signet would ask the token for it.
  CK_RV Sign(std::size_t i) {
    last_ = i % inputs_.size();
    Bytes& input = inputs_[last_];
    if (CK_RV rv = fn_->C_SignInit(session_, &mechanism_, private_key_); rv != CKR_OK) {
      return rv;
    }
    length_ = out_.size();
    return fn_->C_Sign(session_, input.data(), static_cast<CK_ULONG>(input.size()), out_.data(),
                       &length_);
  }

  // Whether the last signature verifies (checked with OpenSSL against the public key).
  bool LastVerifies() const {
    const std::span<const std::uint8_t> raw(out_.data(), length_);
    const Bytes der = key_.type == KeyType::kEcdsaP256 ? EcdsaRawToDer(raw) : Bytes();
    return Verifies(key_, Digests()[last_], der.empty() ? raw : std::span<const std::uint8_t>(der));
  }

 private:
  CK_FUNCTION_LIST* fn_;
  CK_SESSION_HANDLE session_;
  KeyHandle key_;  // its public key; private_object belongs to another C_Initialize
  CK_OBJECT_HANDLE private_key_;
  CK_MECHANISM mechanism_{CKM_ECDSA, nullptr, 0};
  std::vector<Bytes> inputs_;
  std::array<std::uint8_t, 512> out_{};
  CK_ULONG length_ = 0;
  std::size_t last_ = 0;
};

// The SoftHSM module driven directly: dlopen'ed, C_Initialize'd (CKF_OS_LOCKING_OK, as Signet
// does) and logged in here; logged out, finalized and closed by the destructor. Open only while no
// Token is. Thread-safe (the module locks); each RawSession is one thread's.
class RawModule {
 public:
  // Errors: kHsm (dlopen, C_Initialize, C_Login, ...), kNotFound (no token labelled so).
  [[nodiscard]] static Result<std::unique_ptr<RawModule>> Open(const std::string& token_label,
                                                               const std::string& pin) {
    std::unique_ptr<RawModule> module(new RawModule());
    module->handle_ = ::dlopen(testing::kSoftHsmModule, RTLD_NOW | RTLD_LOCAL);
    if (module->handle_ == nullptr) {
      return MakeError(ErrorCode::kHsm, std::string("dlopen: ") + ::dlerror());
    }
    auto get_list =
        reinterpret_cast<CK_C_GetFunctionList>(::dlsym(module->handle_, "C_GetFunctionList"));
    CK_FUNCTION_LIST* fn = nullptr;
    if (get_list == nullptr || get_list(&fn) != CKR_OK || fn == nullptr) {
      return MakeError(ErrorCode::kHsm, "C_GetFunctionList of the SoftHSM module failed");
    }
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    if (CK_RV rv = fn->C_Initialize(&args); rv != CKR_OK) {
      return MakeError(CkError(rv, "C_Initialize (is a Token still open?)"));
    }
    module->fn_ = fn;
    SIGNET_ASSIGN_OR_RETURN(module->slot_, module->FindSlot(token_label));
    SIGNET_ASSIGN_OR_RETURN(module->login_, module->OpenSession());
    if (CK_RV rv = fn->C_Login(module->login_, CKU_USER,
                               reinterpret_cast<CK_UTF8CHAR*>(const_cast<char*>(pin.data())),
                               static_cast<CK_ULONG>(pin.size()));
        rv != CKR_OK) {
      return MakeError(CkError(rv, "C_Login"));
    }
    return module;
  }

  ~RawModule() {
    if (fn_ != nullptr) {
      if (login_ != CK_INVALID_HANDLE) {
        fn_->C_Logout(login_);
        fn_->C_CloseSession(login_);
      }
      fn_->C_Finalize(nullptr);
    }
    if (handle_ != nullptr) {
      ::dlclose(handle_);
    }
  }
  RawModule(const RawModule&) = delete;
  RawModule& operator=(const RawModule&) = delete;

  // A session of its own signing with `key` (found again by its label: object handles belong to
  // one C_Initialize). Errors: kHsm, kNotFound.
  [[nodiscard]] Result<std::unique_ptr<RawSession>> NewSession(const KeyHandle& key) {
    SIGNET_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE private_key, FindPrivateKey(key.label));
    SIGNET_ASSIGN_OR_RETURN(CK_SESSION_HANDLE session, OpenSession());
    return std::make_unique<RawSession>(fn_, session, key, private_key);
  }

 private:
  RawModule() = default;

  [[nodiscard]] Result<CK_SLOT_ID> FindSlot(const std::string& label) {
    CK_ULONG count = 0;
    if (CK_RV rv = fn_->C_GetSlotList(CK_TRUE, nullptr, &count); rv != CKR_OK) {
      return MakeError(CkError(rv, "C_GetSlotList"));
    }
    std::vector<CK_SLOT_ID> slots(count);
    if (CK_RV rv = fn_->C_GetSlotList(CK_TRUE, slots.data(), &count); rv != CKR_OK) {
      return MakeError(CkError(rv, "C_GetSlotList"));
    }
    for (CK_ULONG i = 0; i < count; ++i) {
      CK_TOKEN_INFO info{};
      if (fn_->C_GetTokenInfo(slots[i], &info) != CKR_OK) {
        continue;
      }
      std::string name(reinterpret_cast<const char*>(info.label), sizeof info.label);
      name.erase(name.find_last_not_of(' ') + 1);
      if (name == label) {
        return slots[i];
      }
    }
    return MakeError(ErrorCode::kNotFound, "no token labelled '" + label + "'");
  }

  [[nodiscard]] Result<CK_SESSION_HANDLE> OpenSession() {
    CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
    if (CK_RV rv = fn_->C_OpenSession(slot_, CKF_SERIAL_SESSION, nullptr, nullptr, &session);
        rv != CKR_OK) {
      return MakeError(CkError(rv, "C_OpenSession"));
    }
    return session;
  }

  [[nodiscard]] Result<CK_OBJECT_HANDLE> FindPrivateKey(const std::string& label) {
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE query[] = {{CKA_CLASS, &cls, sizeof cls},
                            {CKA_LABEL, const_cast<char*>(label.data()), label.size()}};
    if (CK_RV rv = fn_->C_FindObjectsInit(login_, query, 2); rv != CKR_OK) {
      return MakeError(CkError(rv, "C_FindObjectsInit"));
    }
    CK_OBJECT_HANDLE object = CK_INVALID_HANDLE;
    CK_ULONG found = 0;
    const CK_RV rv = fn_->C_FindObjects(login_, &object, 1, &found);
    fn_->C_FindObjectsFinal(login_);
    if (rv != CKR_OK) {
      return MakeError(CkError(rv, "C_FindObjects"));
    }
    if (found != 1) {
      return MakeError(ErrorCode::kNotFound, "no private key labelled '" + label + "'");
    }
    return object;
  }

  void* handle_ = nullptr;
  CK_FUNCTION_LIST* fn_ = nullptr;  // set once C_Initialize succeeded
  CK_SLOT_ID slot_ = 0;
  CK_SESSION_HANDLE login_ = CK_INVALID_HANDLE;
};

// ---- Process-wide state
// --------------------------------------------------------------------------

// The SoftHSM token, its keys, and whichever of a Token or the raw module is open. Thread-safe.
class Env {
 public:
  static Env& Get() {
    std::lock_guard lock(InstanceMutex());
    if (!Instance()) {
      Instance() = std::unique_ptr<Env>(new Env());
    }
    return *Instance();
  }
  // Closes what is open and removes the token directory. Call once, after the last run.
  static void Shutdown() {
    std::lock_guard lock(InstanceMutex());
    Instance().reset();
  }

  ~Env() {
    token_.reset();  // before the directory goes
    raw_.reset();
  }

  // The Token opened with `sessions` and `verify` (reopened when either changes; the raw module is
  // closed first), and its key of `type`, generated the first time one is asked for.
  [[nodiscard]] Result<std::pair<Token*, KeyHandle>> Signer(unsigned sessions, VerifyPolicy verify,
                                                            KeyType type) {
    std::lock_guard lock(mu_);
    SIGNET_RETURN_IF_ERROR(OpenToken(sessions, verify));
    SIGNET_ASSIGN_OR_RETURN(KeyHandle key, TokenKey(type));
    return std::pair<Token*, KeyHandle>(token_.get(), std::move(key));
  }

  // A session of its own on the raw module with the key of `type` (made first with a Token when
  // it does not exist yet). The Token is closed first.
  [[nodiscard]] Result<std::unique_ptr<RawSession>> PlainSession(KeyType type) {
    std::lock_guard lock(mu_);
    if (!keys_.contains(type)) {
      SIGNET_RETURN_IF_ERROR(OpenToken(token_ ? token_sessions_ : 1, token_verify_));
      SIGNET_RETURN_IF_ERROR(TokenKey(type));
    }
    if (!raw_) {
      token_.reset();  // C_Finalize: only one C_Initialize per process
      SIGNET_ASSIGN_OR_RETURN(raw_, RawModule::Open(softhsm_->label(), softhsm_->pin()));
    }
    return raw_->NewSession(keys_.at(type));
  }

 private:
  Env() = default;
  static std::mutex& InstanceMutex() {
    static std::mutex mu;
    return mu;
  }
  static std::unique_ptr<Env>& Instance() {
    static std::unique_ptr<Env> env;
    return env;
  }

  [[nodiscard]] Status OpenToken(unsigned sessions, VerifyPolicy verify) {
    if (token_ && token_sessions_ == sessions && token_verify_ == verify) {
      return OkStatus();
    }
    if (!softhsm_) {
      try {
        softhsm_ = std::make_unique<testing::SoftHsmToken>("signet-bench");
      } catch (const std::exception& e) {
        return MakeError(ErrorCode::kInternal, e.what());
      }
    }
    token_.reset();  // one Token per token per process
    token_keys_.clear();
    raw_.reset();
    TokenConfig config;
    config.module = testing::kSoftHsmModule;
    config.token_label = softhsm_->label();
    config.pin_file = softhsm_->pin_file();
    config.sessions = sessions;
    config.verify = verify;
    SIGNET_ASSIGN_OR_RETURN(token_, Token::Open(config));
    token_sessions_ = sessions;
    token_verify_ = verify;
    return OkStatus();
  }

  [[nodiscard]] Result<KeyHandle> TokenKey(KeyType type) {
    if (auto it = token_keys_.find(type); it != token_keys_.end()) {
      return it->second;
    }
    auto key = token_->FindKey(KeyLabel(type));
    if (!key && key.error().code() == ErrorCode::kNotFound) {
      key = token_->GenerateKey(KeyLabel(type), type);
    }
    if (!key) {
      return MakeError(key.error());
    }
    token_keys_[type] = *key;
    keys_[type] = *key;
    return *key;
  }

  std::mutex mu_;
  std::unique_ptr<testing::SoftHsmToken> softhsm_;  // declared first: removed last
  std::unique_ptr<Token> token_;
  unsigned token_sessions_ = 0;
  VerifyPolicy token_verify_ = VerifyPolicy::kAll;
  std::map<KeyType, KeyHandle> token_keys_;  // of the open Token (object handles change)
  std::map<KeyType, KeyHandle> keys_;        // every key made so far, for its public key
  std::unique_ptr<RawModule> raw_;
};

// ---- A window of jobs in flight
// ------------------------------------------------------------------

// Keeps `window` jobs of `batch` digests in flight on a Token: each job's callback submits the
// next one until Stop. The first error stops the stream and is kept.
// WARNING: the callbacks point at this object; Stop (or the destructor) waits for all of them.
class JobStream {
 public:
  JobStream(Token& token, KeyHandle key, std::size_t batch, std::int64_t window)
      : token_(token), key_(std::move(key)), batch_(batch), window_(window) {}
  ~JobStream() { Stop(); }
  JobStream(const JobStream&) = delete;
  JobStream& operator=(const JobStream&) = delete;

  void Start() {
    {
      std::lock_guard lock(mu_);
      in_flight_ = window_;
    }
    for (std::int64_t i = 0; i < window_; ++i) {
      SubmitOne();
    }
  }

  // Waits until `jobs` more jobs have finished (or the stream stopped on an error).
  void WaitForMore(std::int64_t jobs) {
    std::unique_lock lock(mu_);
    target_ = finished_ + jobs;
    finished_cv_.wait(lock, [&] { return finished_ >= target_ || stopping_; });
  }

  // Stops submitting and waits for the jobs in flight.
  void Stop() {
    std::unique_lock lock(mu_);
    stopping_ = true;
    finished_cv_.wait(lock, [&] { return in_flight_ == 0; });
  }

  const std::optional<Error>& error() const { return error_; }  // after Stop
  const Bytes& sample() const { return sample_; }  // the first signature of a finished job

 private:
  void SubmitOne() {  // in_flight_ counts this job already
    const std::vector<Bytes>& digests = Digests();
    std::vector<Bytes> inputs(digests.begin(),
                              digests.begin() + static_cast<std::ptrdiff_t>(batch_));
    Status status = token_.Submit(key_, SpecFor(key_.type), std::move(inputs),
                                  [this](Result<Signatures> result) { Done(std::move(result)); });
    if (!status) {
      std::lock_guard lock(mu_);
      if (!error_) {
        error_ = std::move(status).error();
      }
      stopping_ = true;
      --in_flight_;
      finished_cv_.notify_all();  // under the lock: the waiter may destroy this object next
    }
  }

  void Done(Result<Signatures> result) {
    bool again = false;
    {
      std::lock_guard lock(mu_);
      ++finished_;
      if (!result) {
        if (!error_) {
          error_ = std::move(result).error();
        }
        stopping_ = true;
      } else if (sample_.empty() && !result->empty()) {
        sample_ = std::move(result->front());
      }
      again = !stopping_;
      if (!again) {
        --in_flight_;
      }
      if (!again || finished_ == target_) {
        finished_cv_.notify_all();
      }
    }
    if (again) {
      SubmitOne();
    }
  }

  Token& token_;
  const KeyHandle key_;
  const std::size_t batch_;
  const std::int64_t window_;
  std::mutex mu_;
  std::condition_variable finished_cv_;
  std::int64_t in_flight_ = 0;  // submitted (or about to be) and not finished
  std::int64_t finished_ = 0;
  std::int64_t target_ = -1;
  bool stopping_ = false;
  std::optional<Error> error_;
  Bytes sample_;
};

// ---- Benchmarks
// ----------------------------------------------------------------------------------

std::string PlainLabel(KeyType type, int threads) {
  return std::string(KeyTypeName(type)) + " plain C_SignInit+C_Sign, " + std::to_string(threads) +
         (threads == 1 ? " thread" : " threads") + ", a session each";
}

std::string SignerLabel(KeyType type, unsigned sessions, std::size_t batch, bool verify) {
  std::string label = std::string(KeyTypeName(type)) + " sessions=" + std::to_string(sessions) +
                      " batch=" + std::to_string(batch) + " verify=" + (verify ? "on" : "off");
  if (!verify && (type == KeyType::kRsa3072 || type == KeyType::kRsa4096)) {
    label += " (RSA is always verified: same as on)";
  }
  return label;
}

std::string LatencyLabel(bool verify) {
  return std::string("ecdsa-p256 one digest, idle pool of 2 sessions, verify=") +
         (verify ? "on" : "off");
}

// The reference: each thread loops C_SignInit + C_Sign on a session of its own, one key.
void BM_PlainSign(benchmark::State& state) {
  const KeyType type = kKeyTypes[state.range(0)];
  auto session = Env::Get().PlainSession(type);
  if (!session) {
    state.SkipWithError(session.error().ToString().c_str());
  }
  std::size_t i = 0;
  for (auto _ : state) {
    if (CK_RV rv = (*session)->Sign(i++); rv != CKR_OK) {
      state.SkipWithError(CkError(rv, "C_SignInit/C_Sign").ToString().c_str());
      break;
    }
  }
  if (session && i > 0 && !(*session)->LastVerifies()) {
    state.SkipWithError("a plain C_Sign signature does not verify");
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(PlainLabel(type, state.threads()));
}
BENCHMARK(BM_PlainSign)
    ->ArgName("key")
    ->DenseRange(0, 2)
    ->Threads(1)
    ->Threads(2)
    ->Threads(4)
    ->UseRealTime();

// The batched signer with every session busy. Args: key (0 ecdsa-p256, 1 ed25519, 2 rsa-3072),
// sessions, batch (digests per job), verify (1 = VerifyPolicy::kAll, 0 = kNone).
void BM_SignerThroughput(benchmark::State& state) {
  const KeyType type = kKeyTypes[state.range(0)];
  const auto sessions = static_cast<unsigned>(state.range(1));
  const auto batch = static_cast<std::size_t>(state.range(2));
  const bool verify = state.range(3) != 0;
  state.SetLabel(SignerLabel(type, sessions, batch, verify));
  auto signer =
      Env::Get().Signer(sessions, verify ? VerifyPolicy::kAll : VerifyPolicy::kNone, type);
  if (!signer) {
    state.SkipWithError(signer.error().ToString().c_str());
    return;
  }
  auto& [token, key] = *signer;
  // In flight: one job more than there are sessions, and for small jobs 32 signatures per session
  // (a worker takes up to jobs_per_wakeup = 16 jobs at a time). A worker's own callback submits
  // the job it takes next, so once each has a job none waits. Not timed: filling the window, a
  // warm-up of one job per session (the first worker to wake may take every job there is; each
  // completion hands one to an idle worker), and the drain after the last timed job.
  const auto window = static_cast<std::int64_t>(
      std::max<std::size_t>(sessions + 1, (std::size_t{32} * sessions + batch - 1) / batch));
  JobStream stream(*token, key, batch, window);
  stream.Start();
  stream.WaitForMore(sessions);
  // A multiple of the session count: in the steady state each worker then finishes the same
  // number of jobs between the first and the last completion timed, whatever their phases.
  const std::int64_t jobs = (state.max_iterations + sessions - 1) / sessions * sessions;
  while (state.KeepRunningBatch(jobs)) {
    stream.WaitForMore(jobs);
  }
  stream.Stop();
  if (stream.error()) {
    state.SkipWithError(stream.error()->ToString().c_str());
  } else if (!Verifies(key, Digests()[0], stream.sample())) {
    state.SkipWithError("a signature from the signer does not verify");
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(batch));
}

void SignerArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"key", "sessions", "batch", "verify"});
  for (int key : {0, 1, 2}) {
    for (int sessions : {1, 2, 4, 8}) {
      for (int batch : {1, 16, 256}) {
        for (int verify : {1, 0}) {
          if (key == 2 && batch == 256) {
            continue;  // below
          }
          b->Args({key, sessions, batch, verify});
        }
      }
    }
  }
}
BENCHMARK(BM_SignerThroughput)->Apply(SignerArgs)->UseRealTime()->Unit(benchmark::kMillisecond);

// An RSA-3072 job of 256 digests takes about 0.6 s of one core, so --benchmark_min_time would time
// one job: these run a fixed number of jobs instead, a multiple of the session count. Verify off
// is not run again: RSA is always verified, it is the same code path (compare batch 1 and 16).
template <int kSessions>
void RsaBatch256Args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"key", "sessions", "batch", "verify"})
      ->Args({2, kSessions, 256, 1})
      ->Iterations(kSessions <= 2 ? 2 * kSessions : kSessions);
}
BENCHMARK(BM_SignerThroughput)
    ->Apply(RsaBatch256Args<1>)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SignerThroughput)
    ->Apply(RsaBatch256Args<2>)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SignerThroughput)
    ->Apply(RsaBatch256Args<4>)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SignerThroughput)
    ->Apply(RsaBatch256Args<8>)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// One digest on an idle pool: the latency a single small request sees. Args: verify.
void BM_IdleLatency(benchmark::State& state) {
  const bool verify = state.range(0) != 0;
  state.SetLabel(LatencyLabel(verify));
  auto signer =
      Env::Get().Signer(2, verify ? VerifyPolicy::kAll : VerifyPolicy::kNone, KeyType::kEcdsaP256);
  if (!signer) {
    state.SkipWithError(signer.error().ToString().c_str());
    return;
  }
  auto& [token, key] = *signer;
  const Bytes& digest = Digests()[0];
  std::vector<double> micros;
  Bytes signature;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    auto result = token->Sign(key, SpecFor(key.type), {digest});
    micros.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
    if (!result) {
      state.SkipWithError(result.error().ToString().c_str());
      break;
    }
    signature = std::move(result->front());
  }
  if (!micros.empty() && !Verifies(key, digest, signature)) {
    state.SkipWithError("a signature from the signer does not verify");
  }
  if (!micros.empty()) {
    std::sort(micros.begin(), micros.end());
    state.counters["p50_us"] = micros[micros.size() / 2];
    state.counters["p99_us"] = micros[micros.size() * 99 / 100];
  }
}
BENCHMARK(BM_IdleLatency)
    ->ArgName("verify")
    ->Arg(1)
    ->Arg(0)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// ---- Summary
// -------------------------------------------------------------------------------------

// Forwards to the reporter --benchmark_format chose and keeps each run's signatures/s and time per
// iteration (µs) by label, for the summary.
class RecordingReporter : public benchmark::BenchmarkReporter {
 public:
  explicit RecordingReporter(std::unique_ptr<benchmark::BenchmarkReporter> inner)
      : inner_(std::move(inner)) {}

  bool ReportContext(const Context& context) override { return inner_->ReportContext(context); }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred || run.iterations == 0) {
        continue;
      }
      Stat& stat = stats_[run.report_label];
      if (auto it = run.counters.find("items_per_second"); it != run.counters.end()) {
        stat.rate += it->second.value;
      }
      stat.micros += run.real_accumulated_time * 1e6 / static_cast<double>(run.iterations);
      ++stat.count;
    }
    inner_->ReportRuns(runs);
  }
  void Finalize() override { inner_->Finalize(); }

  bool console() const {
    return dynamic_cast<const benchmark::ConsoleReporter*>(inner_.get()) != nullptr;
  }
  bool empty() const { return stats_.empty(); }
  // Mean signatures/s of the runs labelled `label`.
  std::optional<double> Rate(const std::string& label) const {
    auto it = stats_.find(label);
    return it == stats_.end() ? std::nullopt : std::optional(it->second.rate / it->second.count);
  }
  // Mean time per iteration, µs.
  std::optional<double> Micros(const std::string& label) const {
    auto it = stats_.find(label);
    return it == stats_.end() ? std::nullopt : std::optional(it->second.micros / it->second.count);
  }

 private:
  struct Stat {
    double rate = 0;
    double micros = 0;
    int count = 0;
  };
  std::unique_ptr<benchmark::BenchmarkReporter> inner_;
  std::map<std::string, Stat> stats_;
};

std::string Ratio(std::optional<double> a, std::optional<double> b) {
  if (!a || !b || *b == 0) {
    return "n/a";
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fx", *a / *b);
  return buf;
}

std::string Number(std::optional<double> v, const char* unit) {
  if (!v) {
    return "n/a";
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.0f %s", *v, unit);
  return buf;
}

void PrintSummary(const RecordingReporter& r, std::ostream& out) {
  const KeyType ecdsa = KeyType::kEcdsaP256;
  const KeyType rsa = KeyType::kRsa3072;
  out << "\nSummary (ratios from this run; absolute rates on a shared machine are noise)\n";

  std::optional<double> best_plain;
  int best_threads = 0;
  for (int threads : {2, 4}) {
    auto rate = r.Rate(PlainLabel(ecdsa, threads));
    if (rate && (!best_plain || *rate > *best_plain)) {
      best_plain = rate;
      best_threads = threads;
    }
  }
  const auto signer = r.Rate(SignerLabel(ecdsa, 2, 256, false));
  out << "  ecdsa-p256, 2 sessions, batch 256, verify off: " << Number(signer, "sig/s") << " = "
      << Ratio(signer, best_plain) << " the best plain multi-threaded C_Sign rate ("
      << Number(best_plain, "sig/s") << ", " << best_threads << " threads)  [target >= 0.9x]\n";

  out << "  rsa-3072, 2 sessions / 1 session (verify on):";
  for (std::size_t batch : {1, 16, 256}) {
    out << " batch " << batch << ": "
        << Ratio(r.Rate(SignerLabel(rsa, 2, batch, true)), r.Rate(SignerLabel(rsa, 1, batch, true)))
        << ";";
  }
  out << "  [target >= 1.7x]\n";

  for (KeyType type : kKeyTypes) {
    out << "  plain C_Sign, " << KeyTypeName(type) << ": 1 thread "
        << Number(r.Rate(PlainLabel(type, 1)), "sig/s")
        << "; 2 threads / 1: " << Ratio(r.Rate(PlainLabel(type, 2)), r.Rate(PlainLabel(type, 1)))
        << "; 4 threads / 1: " << Ratio(r.Rate(PlainLabel(type, 4)), r.Rate(PlainLabel(type, 1)))
        << "\n";
  }

  for (KeyType type : {KeyType::kEcdsaP256, KeyType::kEd25519}) {
    out << "  verify-on rate / verify-off rate, " << KeyTypeName(type) << ", batch 256:";
    for (unsigned sessions : {1, 2, 4, 8}) {
      out << " " << sessions << "s "
          << Ratio(r.Rate(SignerLabel(type, sessions, 256, true)),
                   r.Rate(SignerLabel(type, sessions, 256, false)));
    }
    out << "\n";
  }

  out << "  idle single-digest latency, ecdsa-p256 (mean): verify on "
      << Number(r.Micros(LatencyLabel(true)), "us") << ", off "
      << Number(r.Micros(LatencyLabel(false)), "us") << "  [target < 1000 us]\n";
}

}  // namespace
}  // namespace signet::hsm

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  std::unique_ptr<benchmark::BenchmarkReporter> display(benchmark::CreateDefaultDisplayReporter());
  signet::hsm::RecordingReporter reporter(std::move(display));
  int status = 0;
  try {
    benchmark::RunSpecifiedBenchmarks(&reporter);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hsm_bench: %s\n", e.what());
    status = 1;
  }
  signet::hsm::Env::Shutdown();
  if (!reporter.empty()) {
    signet::hsm::PrintSummary(reporter, reporter.console() ? std::cout : std::cerr);
  }
  benchmark::Shutdown();
  return status;
}
