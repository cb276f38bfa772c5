#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "hsm/hsm.h"
#include "hsm/internal/keys.h"
#include "hsm/internal/p11.h"

namespace signet::hsm {

using internal::CkError;
using internal::SessionPool;

namespace {

constexpr unsigned kMaxSessions = 64;
constexpr int kMaxRetries = 3;
constexpr std::chrono::milliseconds kFirstBackoff{10};
constexpr std::size_t kMaxSignatureBytes = 1024;  // RSA-4096 is 512
// A worker takes further jobs at one wake-up only while their signatures stay within this.
constexpr std::size_t kSignaturesPerWakeup = 256;
// A job of at least twice this many inputs is split into parts of at least this many, at most one
// per session; a worker takes further jobs at one wake-up only when they are smaller than this.
constexpr std::size_t kMinPart = 32;

struct Job {
  std::shared_ptr<const KeyHandle> key;
  SignSpec spec;
  std::vector<Bytes> inputs;
  JobCallback done;
};

// The parts of one split job. The caller's callback runs once, on the worker that finishes the
// last part, with every signature in order or with the first part's error.
class Join {
 public:
  Join(std::size_t parts, JobCallback done)
      : results_(parts), pending_(parts), done_(std::move(done)) {}

  void Done(std::size_t part, Result<Signatures> result) {
    {
      std::lock_guard lock(mu_);
      if (result) {
        results_[part] = std::move(*result);
      } else if (!error_) {
        error_ = std::move(result).error();
      }
      if (--pending_ > 0) {
        return;
      }
    }
    // The last part: nobody else touches the results any more.
    if (error_) {
      done_(tl::unexpected(std::move(*error_)));
      return;
    }
    Signatures all;
    for (Signatures& part_signatures : results_) {
      all.insert(all.end(), std::make_move_iterator(part_signatures.begin()),
                 std::make_move_iterator(part_signatures.end()));
    }
    done_(std::move(all));
  }

 private:
  std::mutex mu_;
  std::vector<Signatures> results_;
  std::optional<Error> error_;
  std::size_t pending_;
  JobCallback done_;
};

std::string TrimLabel(const CK_UTF8CHAR* label, std::size_t size) {
  std::string out(reinterpret_cast<const char*>(label), size);
  while (!out.empty() && (out.back() == ' ' || out.back() == '\0')) {
    out.pop_back();
  }
  return out;
}

// Finds the slot whose token is labelled `label`. Errors: kNotFound listing the labels present.
Result<CK_SLOT_ID> FindSlot(CK_FUNCTION_LIST* fn, const std::string& label) {
  CK_ULONG count = 0;
  if (CK_RV rv = fn->C_GetSlotList(CK_TRUE, nullptr, &count); rv != CKR_OK) {
    return MakeError(CkError(rv, "C_GetSlotList"));
  }
  std::vector<CK_SLOT_ID> slots(count);
  if (CK_RV rv = fn->C_GetSlotList(CK_TRUE, slots.data(), &count); rv != CKR_OK) {
    return MakeError(CkError(rv, "C_GetSlotList"));
  }
  slots.resize(count);
  std::string present;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info{};
    if (fn->C_GetTokenInfo(slot, &info) != CKR_OK) {
      continue;
    }
    const std::string name = TrimLabel(info.label, sizeof info.label);
    if (name == label) {
      return slot;
    }
    present.append(present.empty() ? "" : ", ").append("'" + name + "'");
  }
  return MakeError(ErrorCode::kNotFound, "no token labelled '" + label + "' (tokens present: " +
                                             (present.empty() ? "none" : present) + ")");
}

}  // namespace

struct Token::State {
  TokenConfig config;
  std::shared_ptr<internal::Module> module;
  std::unique_ptr<SessionPool> pool;

  std::mutex mu;  // guards the queue, stopping and stats
  std::condition_variable work;
  std::deque<Job> queue;
  bool stopping = false;
  Stats stats;
  std::vector<std::thread> workers;

  std::mutex keys_mu;  // guards public_keys and objects, both by CKA_ID
  std::map<Bytes, std::shared_ptr<internal::EvpPkey>> public_keys;
  // The private key's current handle, when the token has given it a new one since it was found.
  std::map<Bytes, CK_OBJECT_HANDLE> objects;

  void WorkerLoop();
  Result<Signatures> RunJob(SessionPool::Lease& lease, const Job& job);
  // Signs one prepared input, reopening a lost session and retrying at most kMaxRetries times.
  Result<Bytes> SignOne(SessionPool::Lease& lease, const KeyHandle& key, SignSpec spec,
                        std::span<const std::uint8_t> data);
  Result<std::shared_ptr<internal::EvpPkey>> PublicKeyFor(const KeyHandle& key);
  CK_OBJECT_HANDLE ObjectFor(const KeyHandle& key);
  void Remember(const KeyHandle& key);
};

Result<std::unique_ptr<Token>> Token::Open(const TokenConfig& config) {
  if (config.sessions < 1 || config.sessions > kMaxSessions) {
    return MakeError(ErrorCode::kInvalidArgument, "sessions = " + std::to_string(config.sessions) +
                                                      " is out of range; use 1 to " +
                                                      std::to_string(kMaxSessions));
  }
  if (config.queue_capacity < 1 || config.jobs_per_wakeup < 1) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "queue capacity and jobs per wake-up must be at least 1");
  }
  if (config.token_label.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "no token label configured");
  }
  auto pin = ReadSecretFile(config.pin_file);
  if (!pin) {
    return MakeError(std::move(pin).error().WithContext("the token's PIN file"));
  }
  auto state = std::make_unique<State>();
  state->config = config;
  SIGNET_ASSIGN_OR_RETURN(state->module, internal::Module::Load(config.module));
  SIGNET_ASSIGN_OR_RETURN(CK_SLOT_ID slot, FindSlot(state->module->fn(), config.token_label));
  SIGNET_ASSIGN_OR_RETURN(state->pool,
                          SessionPool::Open(state->module, slot, std::move(*pin), config.sessions));
  for (unsigned i = 0; i < config.sessions; ++i) {
    state->workers.emplace_back([s = state.get()] {
      (void)::pthread_setname_np(::pthread_self(), "hsm-worker");
      s->WorkerLoop();
    });
  }
  return std::unique_ptr<Token>(new Token(std::move(state)));  // NOLINT: private constructor
}

Token::Token(std::unique_ptr<State> state) : state_(std::move(state)) {}

Token::~Token() {
  {
    std::lock_guard lock(state_->mu);
    state_->stopping = true;  // workers finish what is queued, then exit
  }
  state_->work.notify_all();
  for (std::thread& worker : state_->workers) {
    worker.join();
  }
}

Result<KeyHandle> Token::GenerateKey(std::string_view label, KeyType type) {
  SIGNET_ASSIGN_OR_RETURN(SessionPool::Lease lease, state_->pool->Acquire(Deadline::Never()));
  SIGNET_ASSIGN_OR_RETURN(
      KeyHandle key, internal::GenerateKeyPair(state_->pool->fn(), lease.handle(), label, type));
  state_->Remember(key);
  return key;
}

Result<KeyHandle> Token::FindKey(std::string_view label) {
  SIGNET_ASSIGN_OR_RETURN(SessionPool::Lease lease, state_->pool->Acquire(Deadline::Never()));
  SIGNET_ASSIGN_OR_RETURN(KeyHandle key,
                          internal::FindKeyPair(state_->pool->fn(), lease.handle(), label));
  state_->Remember(key);
  return key;
}

Status Token::Submit(const KeyHandle& key, SignSpec spec, std::vector<Bytes> inputs,
                     JobCallback done) {
  if (!internal::SchemeFits(key.type, spec.scheme)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "key '" + key.label + "' (" + std::string(KeyTypeName(key.type)) +
                         ") cannot sign with " + std::string(SchemeName(spec.scheme)));
  }
  if (inputs.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "nothing to sign");
  }
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const std::size_t size = inputs[i].size();
    if (spec.scheme == Scheme::kEd25519 ? size > kMaxEd25519Message
                                        : size != HashLength(spec.hash)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       spec.scheme == Scheme::kEd25519
                           ? "input " + std::to_string(i) + " is " + std::to_string(size) +
                                 " bytes; Ed25519 messages are at most " +
                                 std::to_string(kMaxEd25519Message)
                           : "digest " + std::to_string(i) + " is " + std::to_string(size) +
                                 " bytes; a " + std::string(HashName(spec.hash)) + " digest is " +
                                 std::to_string(HashLength(spec.hash)));
    }
  }
  auto shared_key = std::make_shared<const KeyHandle>(key);
  std::vector<Job> jobs;
  const std::size_t count = inputs.size();
  // Never more parts than the queue can ever hold, or a large job could never be accepted.
  const std::size_t parts = std::min({static_cast<std::size_t>(state_->config.sessions),
                                      count / kMinPart, state_->config.queue_capacity});
  if (parts <= 1) {
    jobs.push_back(Job{std::move(shared_key), spec, std::move(inputs), std::move(done)});
  } else {
    auto join = std::make_shared<Join>(parts, std::move(done));
    for (std::size_t part = 0; part < parts; ++part) {
      const auto begin = inputs.begin() + static_cast<std::ptrdiff_t>(count * part / parts);
      const auto end = inputs.begin() + static_cast<std::ptrdiff_t>(count * (part + 1) / parts);
      jobs.push_back(
          Job{shared_key, spec,
              std::vector<Bytes>(std::make_move_iterator(begin), std::make_move_iterator(end)),
              [join, part](Result<Signatures> r) { join->Done(part, std::move(r)); }});
    }
  }
  {
    std::lock_guard lock(state_->mu);
    if (state_->stopping) {
      return MakeError(ErrorCode::kUnavailable, "the HSM token is closing");
    }
    if (state_->queue.size() + jobs.size() > state_->config.queue_capacity) {
      return MakeError(ErrorCode::kUnavailable, "the HSM signing queue is full (" +
                                                    std::to_string(state_->config.queue_capacity) +
                                                    " jobs waiting); try again shortly");
    }
    for (Job& job : jobs) {
      state_->queue.push_back(std::move(job));
    }
  }
  if (jobs.size() > 1) {
    state_->work.notify_all();
  } else {
    state_->work.notify_one();
  }
  return OkStatus();
}

Result<Signatures> Token::Sign(const KeyHandle& key, SignSpec spec, std::vector<Bytes> inputs,
                               Deadline deadline) {
  // Shared: a job that outlives the deadline still has somewhere to put its result.
  auto promise = std::make_shared<std::promise<Result<Signatures>>>();
  std::future<Result<Signatures>> future = promise->get_future();
  SIGNET_RETURN_IF_ERROR(Submit(key, spec, std::move(inputs), [promise](Result<Signatures> r) {
    promise->set_value(std::move(r));
  }));
  if (!deadline.IsNever() && future.wait_until(deadline.when()) == std::future_status::timeout) {
    return MakeError(ErrorCode::kDeadlineExceeded,
                     "the HSM did not sign before the deadline (queue depth " +
                         std::to_string(stats().queue_depth) + ")");
  }
  return future.get();
}

Token::Stats Token::stats() const {
  std::lock_guard lock(state_->mu);
  Stats out = state_->stats;
  out.queue_depth = state_->queue.size();
  out.sessions_reopened = state_->pool->reopened();
  out.sessions = state_->pool->size();
  out.sessions_in_use = state_->pool->in_use();
  return out;
}

Status Token::CheckLogin() const { return state_->pool->CheckLogin(); }

void Token::State::Remember(const KeyHandle& key) {
  auto parsed = internal::ParseSpki(key.public_key.spki_der);
  if (parsed) {
    std::lock_guard lock(keys_mu);
    public_keys[key.id] = std::make_shared<internal::EvpPkey>(std::move(*parsed));
    objects.erase(key.id);  // found just now: its handle is current
  }
}

Result<std::shared_ptr<internal::EvpPkey>> Token::State::PublicKeyFor(const KeyHandle& key) {
  {
    std::lock_guard lock(keys_mu);
    if (auto it = public_keys.find(key.id); it != public_keys.end()) {
      return it->second;
    }
  }
  SIGNET_ASSIGN_OR_RETURN(internal::EvpPkey parsed, internal::ParseSpki(key.public_key.spki_der));
  auto shared = std::make_shared<internal::EvpPkey>(std::move(parsed));
  std::lock_guard lock(keys_mu);
  public_keys[key.id] = shared;
  return shared;
}

CK_OBJECT_HANDLE Token::State::ObjectFor(const KeyHandle& key) {
  std::lock_guard lock(keys_mu);
  auto it = objects.find(key.id);
  return it != objects.end() ? it->second : key.private_object;
}

void Token::State::WorkerLoop() {
  std::vector<Job> batch;
  for (;;) {
    {
      std::unique_lock lock(mu);
      work.wait(lock, [&] { return stopping || !queue.empty(); });
      if (queue.empty()) {
        return;  // stopping, and nothing left to do
      }
      // Several small jobs per wake-up (under load a worker pays the lock and the lease once for
      // many), but never a pile of large ones: they would wait here while other sessions idle.
      std::size_t signatures = 0;
      while (
          !queue.empty() && batch.size() < config.jobs_per_wakeup &&
          (batch.empty() || (queue.front().inputs.size() < kMinPart &&
                             signatures + queue.front().inputs.size() <= kSignaturesPerWakeup))) {
        signatures += queue.front().inputs.size();
        batch.push_back(std::move(queue.front()));
        queue.pop_front();
      }
    }
    auto lease = pool->Acquire(Deadline::Never());
    for (Job& job : batch) {
      Result<Signatures> result =
          lease ? RunJob(*lease, job) : Result<Signatures>(tl::unexpected(lease.error()));
      {
        std::lock_guard lock(mu);
        if (result) {
          stats.signatures += result->size();
          stats.consecutive_failures = 0;
        } else {
          ++stats.jobs_failed;
          ++stats.consecutive_failures;
          stats.last_error = result.error().message();
          stats.last_failure = std::chrono::system_clock::now();
        }
      }
      job.done(std::move(result));
    }
    batch.clear();
  }
}

Result<Signatures> Token::State::RunJob(SessionPool::Lease& lease, const Job& job) {
  const KeyHandle& key = *job.key;
  // RSA signatures are always checked: a faulty CRT computation would leak the private key.
  const bool verify = config.verify == VerifyPolicy::kAll || job.spec.scheme == Scheme::kRsaPkcs1 ||
                      job.spec.scheme == Scheme::kRsaPss;
  std::shared_ptr<internal::EvpPkey> public_key;
  if (verify) {
    SIGNET_ASSIGN_OR_RETURN(public_key, PublicKeyFor(key));
  }
  Signatures signatures;
  signatures.reserve(job.inputs.size());
  for (const Bytes& input : job.inputs) {
    const Bytes data = internal::SignInput(job.spec, input);
    SIGNET_ASSIGN_OR_RETURN(Bytes raw, SignOne(lease, key, job.spec, data));
    SIGNET_ASSIGN_OR_RETURN(Bytes signature, internal::FinishSignature(key.type, job.spec, raw));
    if (verify) {
      SIGNET_RETURN_IF_ERROR(
          internal::VerifySignature(public_key->get(), job.spec, input, signature)
              .map_error(
                  [&](Error e) { return std::move(e).WithContext("key '" + key.label + "'"); }));
    }
    signatures.push_back(std::move(signature));
  }
  return signatures;
}

Result<Bytes> Token::State::SignOne(SessionPool::Lease& lease, const KeyHandle& key, SignSpec spec,
                                    std::span<const std::uint8_t> data) {
  CK_MECHANISM mechanism{CKM_ECDSA, nullptr, 0};
  CK_RSA_PKCS_PSS_PARAMS pss{};
  switch (spec.scheme) {
    case Scheme::kEcdsa:
      break;
    case Scheme::kRsaPkcs1:
      mechanism.mechanism = CKM_RSA_PKCS;
      break;
    case Scheme::kRsaPss:
      pss.hashAlg = spec.hash == Hash::kSha256   ? CKM_SHA256
                    : spec.hash == Hash::kSha384 ? CKM_SHA384
                                                 : CKM_SHA512;
      pss.mgf = spec.hash == Hash::kSha256   ? CKG_MGF1_SHA256
                : spec.hash == Hash::kSha384 ? CKG_MGF1_SHA384
                                             : CKG_MGF1_SHA512;
      pss.sLen = HashLength(spec.hash);
      mechanism = CK_MECHANISM{CKM_RSA_PKCS_PSS, &pss, sizeof pss};
      break;
    case Scheme::kEd25519:
      mechanism.mechanism = CKM_EDDSA;
      break;
  }
  CK_FUNCTION_LIST* fn = pool->fn();
  std::chrono::milliseconds backoff = kFirstBackoff;
  for (int attempt = 0;; ++attempt) {
    Bytes out(kMaxSignatureBytes);
    CK_ULONG length = out.size();
    CK_RV rv = fn->C_SignInit(lease.handle(), &mechanism, ObjectFor(key));
    const char* step = "C_SignInit";
    if (rv == CKR_OK) {
      step = "C_Sign";
      rv = fn->C_Sign(lease.handle(), const_cast<CK_BYTE*>(data.data()),
                      static_cast<CK_ULONG>(data.size()), out.data(), &length);
    }
    if (rv == CKR_OK) {
      out.resize(length);
      return out;
    }
    const bool stale_handle = rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID;
    if (!(internal::IsSessionLost(rv) || stale_handle) || attempt == kMaxRetries) {
      return MakeError(
          CkError(rv, std::string(step) + " with key '" + key.label + "'" +
                          (attempt > 0 ? " after " + std::to_string(attempt) + " retries" : "")));
    }
    {
      std::lock_guard lock(mu);
      ++stats.retries;
    }
    if (stale_handle) {
      // After a new login some modules (SoftHSM among them) give private keys new handles: find
      // the key again by its CKA_ID, checked as when it was first found.
      auto object = internal::RefindPrivateKey(fn, lease.handle(), key);
      if (!object) {
        return MakeError(std::move(object).error());
      }
      std::lock_guard lock(keys_mu);
      objects[key.id] = static_cast<CK_OBJECT_HANDLE>(*object);
      continue;
    }
    // The session (or the login, or the device) went away: wait a little, reopen, try again.
    std::this_thread::sleep_for(backoff);
    backoff *= 4;
    (void)lease.Reopen();  // if this fails, the next attempt fails too and is counted
  }
}

std::string_view KeyTypeName(KeyType type) {
  switch (type) {
    case KeyType::kEcdsaP256:
      return "ecdsa-p256";
    case KeyType::kEcdsaP384:
      return "ecdsa-p384";
    case KeyType::kRsa3072:
      return "rsa-3072";
    case KeyType::kRsa4096:
      return "rsa-4096";
    case KeyType::kEd25519:
      return "ed25519";
  }
  return "unknown";
}

Result<KeyType> ParseKeyType(std::string_view name) {
  for (KeyType type : {KeyType::kEcdsaP256, KeyType::kEcdsaP384, KeyType::kRsa3072,
                       KeyType::kRsa4096, KeyType::kEd25519}) {
    if (name == KeyTypeName(type)) {
      return type;
    }
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown key type '" + std::string(name) +
                       "'; use ecdsa-p256, ecdsa-p384, rsa-3072, rsa-4096 or ed25519");
}

std::string_view HashName(Hash hash) {
  switch (hash) {
    case Hash::kSha256:
      return "sha256";
    case Hash::kSha384:
      return "sha384";
    case Hash::kSha512:
      return "sha512";
  }
  return "unknown";
}

std::size_t HashLength(Hash hash) {
  switch (hash) {
    case Hash::kSha256:
      return 32;
    case Hash::kSha384:
      return 48;
    case Hash::kSha512:
      return 64;
  }
  return 0;
}

std::string_view SchemeName(Scheme scheme) {
  switch (scheme) {
    case Scheme::kEcdsa:
      return "ECDSA";
    case Scheme::kRsaPkcs1:
      return "RSA PKCS#1 v1.5";
    case Scheme::kRsaPss:
      return "RSA-PSS";
    case Scheme::kEd25519:
      return "Ed25519";
  }
  return "unknown";
}

}  // namespace signet::hsm
