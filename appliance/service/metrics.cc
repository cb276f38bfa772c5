// The sign service's metrics (ServiceMetrics): counting each answer, and the snapshot.
#include <algorithm>
#include <mutex>
#include <shared_mutex>

#include "appliance/service/internal/call.h"
#include "appliance/service/service.h"

namespace signet::service {

namespace internal {

std::string_view SignResultName(SignResult result) {
  switch (result) {
    case SignResult::kSigned:
      return "signed";
    case SignResult::kDenied:
      return "denied";
    case SignResult::kRateLimited:
      return "rate_limited";
    case SignResult::kHsmError:
      return "hsm_error";
    case SignResult::kAuditError:
      return "audit_error";
    case SignResult::kMalformed:
      return "malformed";
    case SignResult::kInternal:
      return "internal";
    case SignResult::kHeld:
      return "held";
  }
  return "internal";
}

void LatencyHistogram::Observe(std::chrono::steady_clock::duration elapsed) {
  const double seconds = std::chrono::duration<double>(elapsed).count();
  std::size_t bucket = 0;
  while (bucket < kBounds.size() && seconds > kBounds[bucket]) {
    ++bucket;
  }
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count();
  sum_ns_.fetch_add(ns > 0 ? static_cast<std::uint64_t>(ns) : 0, std::memory_order_relaxed);
}

ServiceMetrics::Histogram LatencyHistogram::Snapshot() const {
  ServiceMetrics::Histogram h;
  h.bounds.assign(kBounds.begin(), kBounds.end());
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
    if (i < kBounds.size()) {
      h.cumulative.push_back(total);
    }
  }
  h.count = total;
  h.sum = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
  return h;
}

namespace {

// The result an answer states (ServiceMetrics lists them).
SignResult ResultOf(const net::Response& response) {
  switch (response.status) {
    case 200:
      return SignResult::kSigned;
    case 202:
      return SignResult::kHeld;
    case 403:
    case 404:
    case 413:
      return SignResult::kDenied;
    case 429:
      return SignResult::kRateLimited;
    case 400:
    case 415:
      return SignResult::kMalformed;
    case 503:
      return response.body.find("\"hsm_unavailable\"") != std::string::npos
                 ? SignResult::kHsmError
                 : SignResult::kAuditError;
    default:
      return SignResult::kInternal;
  }
}

void CountAnswer(SignCall& call, const net::Response& response) {
  if (call.counted.exchange(true, std::memory_order_relaxed)) {
    return;  // only the first answer goes out
  }
  Metrics& metrics = call.state->metrics;
  const SignResult result = ResultOf(response);
  const auto r = static_cast<std::size_t>(result);
  // An answer given before the key was looked up (a failed log is checked first) still counts
  // under the key the request names, when the service has it.
  const KeyEntry* key = call.key;
  if (key == nullptr && !call.envelope.key.empty()) {
    key = call.state->FindKey(call.envelope.key);
  }
  KeyCounters& counters = key != nullptr ? *key->counters : metrics.unknown_key;
  counters.requests[r].fetch_add(1, std::memory_order_relaxed);
  counters.items[r].fetch_add(call.items.empty() ? call.envelope.item_count : call.items.size(),
                              std::memory_order_relaxed);
  metrics.sign_latency.Observe(std::chrono::steady_clock::now() - call.started);
  if (result == SignResult::kDenied || result == SignResult::kRateLimited) {
    const std::string_view rule =
        call.verdict.rule.empty() ? std::string_view("none") : std::string_view(call.verdict.rule);
    std::lock_guard lock(metrics.rules_mu);
    auto& by_rule =
        result == SignResult::kDenied ? metrics.denials_by_rule : metrics.rate_limits_by_rule;
    if (auto it = by_rule.find(rule); it != by_rule.end()) {
      ++it->second;
    } else {
      by_rule.emplace(std::string(rule), 1);
    }
  }
}

void AddOutcomes(ServiceMetrics& out, const std::string& key, const std::string& format,
                 const KeyCounters& counters, bool with_zeros) {
  for (std::size_t r = 0; r < kSignResults; ++r) {
    const std::uint64_t requests = counters.requests[r].load(std::memory_order_relaxed);
    if (requests == 0 && !with_zeros) {
      continue;
    }
    out.outcomes.push_back({.key = key,
                            .format = format,
                            .result = std::string(SignResultName(static_cast<SignResult>(r))),
                            .requests = requests,
                            .items = counters.items[r].load(std::memory_order_relaxed)});
  }
}

}  // namespace

net::Responder CountingResponder(const std::shared_ptr<SignCall>& call, net::Responder respond) {
  return
      [weak = std::weak_ptr<SignCall>(call), respond = std::move(respond)](net::Response response) {
        if (const std::shared_ptr<SignCall> locked = weak.lock()) {
          CountAnswer(*locked, response);
        }
        respond(std::move(response));
      };
}

}  // namespace internal

ServiceMetrics SignService::metrics() const {
  ServiceMetrics out;
  {
    std::shared_lock keys_lock(state_->keys_mu);
    for (const auto& [name, entry] : state_->keys) {
      internal::AddOutcomes(out, name, entry->key.format, *entry->counters, true);
      out.keys.push_back(
          {.name = name,
           .format = entry->key.format,
           .hsm_jobs = entry->counters->hsm_jobs.load(std::memory_order_relaxed),
           .batch_roots = entry->counters->batch_roots.load(std::memory_order_relaxed)});
    }
  }
  internal::AddOutcomes(out, "(unknown)", "", state_->metrics.unknown_key, false);
  out.sign_latency = state_->metrics.sign_latency.Snapshot();
  std::lock_guard lock(state_->metrics.rules_mu);
  out.denials_by_rule.insert(state_->metrics.denials_by_rule.begin(),
                             state_->metrics.denials_by_rule.end());
  out.rate_limits_by_rule.insert(state_->metrics.rate_limits_by_rule.begin(),
                                 state_->metrics.rate_limits_by_rule.end());
  return out;
}

}  // namespace signet::service
