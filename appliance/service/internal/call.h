// appliance/service/internal/call.h: what service.cc and batch.cc share: the service's state, one
// sign request in flight, and the helpers that record and answer it.
#ifndef SIGNET_APPLIANCE_SERVICE_INTERNAL_CALL_H_
#define SIGNET_APPLIANCE_SERVICE_INTERNAL_CALL_H_

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "appliance/service/internal/request.h"
#include "appliance/service/service.h"

namespace signet::service {
namespace internal {

struct KeyEntry {
  ServiceKey key;
  // Batch keys: the statements' origin ("<host>/signet-batch/<key>"), which is also the note key
  // name, and the verifier of the key's notes (each signed root is checked before release).
  std::string origin;
  std::optional<audit::NoteVerifier> note_verifier;
};

struct SignCall;

// Gathers the requests for one batch key that arrive within a window and signs them together
// (batch.cc), so that many small requests cost few HSM signatures. A thread of its own waits for
// the window to close (or max_leaves to be reached) and then starts the signing; the answers come
// back through the usual callbacks. Stop signs what waits, then joins the thread.
class BatchGatherer {
 public:
  BatchGatherer(std::chrono::milliseconds window, std::size_t max_leaves);
  ~BatchGatherer();
  BatchGatherer(const BatchGatherer&) = delete;
  BatchGatherer& operator=(const BatchGatherer&) = delete;

  void Add(std::shared_ptr<SignCall> call);
  void Stop();

 private:
  struct Pending;
  void Loop();

  const std::chrono::milliseconds window_;
  const std::size_t max_leaves_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::unique_ptr<Pending> pending_;  // guarded by mu_
  bool stopping_ = false;             // guarded by mu_
  std::thread thread_;
};

}  // namespace internal

struct SignService::State {
  ServiceOptions options;
  std::map<std::string, internal::KeyEntry, std::less<>> keys;
  audit::Log& log;
  policy::RateLimiter limiter;
  mutable std::mutex policy_mu;
  std::shared_ptr<const policy::Policy> policy;
  // Batch keys with a gathering window (ServiceOptions::batch_window > 0), by key name. Stopped
  // by ~SignService, before the state can go.
  std::map<std::string, std::unique_ptr<internal::BatchGatherer>, std::less<>> gatherers;

  State(ServiceOptions o, audit::Log& l)
      : options(std::move(o)), log(l), limiter(options.max_rate_counters) {}

  std::shared_ptr<const policy::Policy> CurrentPolicy() const {
    std::lock_guard lock(policy_mu);
    return policy;
  }
};

namespace internal {

using State = SignService::State;

// One POST /v1/sign in flight. Shared by the callbacks that carry it along.
struct SignCall {
  std::shared_ptr<State> state;
  const KeyEntry* key = nullptr;  // null when the key is unknown
  std::shared_ptr<const policy::Policy> policy;
  net::Peer peer;
  std::string request_id;
  SignBody envelope;
  std::vector<SignItem> items;
  bool cbor = false;
  policy::Verdict verdict;
  net::Responder respond;
};

net::Response JsonResponse(int status, const nlohmann::json& body);
// JSON, or CBOR when the request was CBOR.
net::Response Encode(int status, const nlohmann::json& body, bool cbor);
net::Response AuditUnavailable(const Error& error);

// The fields every record of `call` shares.
audit::Record BaseRecord(const SignCall& call, audit::RecordKind kind);
// Writes one `deny` record for `call` and sends `answer` once it is durable (503 if it cannot
// be written).
void DenyAfterAudit(const std::shared_ptr<SignCall>& call, std::string decision, std::string rule,
                    std::string detail, net::Response answer);
// Records the HSM failure as a denial and answers 503 "hsm_unavailable".
void FailHsm(const std::shared_ptr<SignCall>& call, const Error& error);

// Format "batch" (batch.cc): builds the leaves, splits them into batches of at most
// ServiceOptions::max_batch_leaves, has the HSM sign each batch's statement, records a `batch`
// record per batch and one `sign` record per artifact, and answers once they are durable. With a
// gathering window for the key, the request first waits in its BatchGatherer.
void SignBatches(const std::shared_ptr<SignCall>& call);

}  // namespace internal
}  // namespace signet::service

#endif  // SIGNET_APPLIANCE_SERVICE_INTERNAL_CALL_H_
