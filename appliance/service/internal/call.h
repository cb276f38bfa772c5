// appliance/service/internal/call.h: what service.cc and batch.cc share: the service's state, one
// sign request in flight, and the helpers that record and answer it.
#ifndef SIGNET_APPLIANCE_SERVICE_INTERNAL_CALL_H_
#define SIGNET_APPLIANCE_SERVICE_INTERNAL_CALL_H_

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
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

}  // namespace internal

struct SignService::State {
  ServiceOptions options;
  std::map<std::string, internal::KeyEntry, std::less<>> keys;
  audit::Log& log;
  policy::RateLimiter limiter;
  mutable std::mutex policy_mu;
  std::shared_ptr<const policy::Policy> policy;

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
// ServiceOptions::max_batch_leaves, has the HSM sign each batch's statement, records one `batch`
// record per batch and one `sign` record per artifact, and answers once they are durable.
void SignBatches(const std::shared_ptr<SignCall>& call);

}  // namespace internal
}  // namespace signet::service

#endif  // SIGNET_APPLIANCE_SERVICE_INTERNAL_CALL_H_
