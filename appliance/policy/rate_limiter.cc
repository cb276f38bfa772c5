// RateLimiter: per (rule, principal) counts over a sliding hour of one-minute buckets. Buckets
// rather than a timestamp per item keep a counter at a fixed ~300 bytes whatever the rate, and
// rather than a token bucket keep "N per hour" meaning what it says (a token bucket lets a full
// bucket's burst plus an hour's refill through within one hour).
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "appliance/policy/internal/text.h"
#include "appliance/policy/policy.h"

namespace signet::policy {
namespace {

constexpr std::int64_t kMinutes = 60;

std::int64_t MinuteOf(RateLimiter::Clock::time_point now) {
  return std::chrono::floor<std::chrono::minutes>(now.time_since_epoch()).count();
}

std::size_t Slot(std::int64_t minute) {
  return static_cast<std::size_t>(((minute % kMinutes) + kMinutes) % kMinutes);
}

// Rule names hold no '\n' (the parser allows letters, digits, '.', '_', '-'), so the key is
// unambiguous.
std::string CounterKey(std::string_view rule, const Principal& principal) {
  std::string key(rule);
  key += '\n';
  key += PrincipalName(principal);
  return key;
}

}  // namespace

struct RateLimiter::Counter {
  std::array<std::uint32_t, kMinutes> buckets{};  // buckets[Slot(m)]: items charged in minute m
  std::int64_t latest = 0;                        // the newest minute a bucket holds
  Lru::iterator lru_position;

  // The newest minute a read at `now` sees: a clock that steps back counts from `latest`.
  std::int64_t Effective(std::int64_t now) const { return std::max(now, latest); }

  std::uint64_t Used(std::int64_t now) const {
    const std::int64_t effective = Effective(now);
    std::uint64_t used = 0;
    for (std::int64_t m = std::max(effective - kMinutes + 1, latest - kMinutes + 1); m <= latest;
         ++m) {
      used += buckets[Slot(m)];
    }
    return used;
  }

  void Advance(std::int64_t now) {
    if (now <= latest) {
      return;
    }
    for (std::int64_t m = latest + 1; m <= now && m <= latest + kMinutes; ++m) {
      buckets[Slot(m)] = 0;
    }
    latest = now;
  }

  // Minutes until `needed` items have left the window (after Advance).
  std::int64_t MinutesUntilFreed(std::uint64_t needed) const {
    std::uint64_t freed = 0;
    for (std::int64_t m = latest - kMinutes + 1; m <= latest; ++m) {
      freed += buckets[Slot(m)];
      if (freed >= needed) {
        return m + kMinutes - latest;
      }
    }
    return kMinutes;
  }
};

RateLimiter::RateLimiter(std::size_t max_tracked)
    : max_tracked_(std::max<std::size_t>(1, max_tracked)) {}

RateLimiter::~RateLimiter() = default;

Verdict RateLimiter::Charge(const Rule& rule, const Principal& principal, std::size_t items,
                            Clock::time_point now) {
  if (!rule.rate_per_hour.has_value()) {
    return Verdict{.decision = Decision::kAllow,
                   .rule = rule.name,
                   .reason = "rule " + rule.name + " has no rate limit"};
  }
  const std::uint64_t limit = *rule.rate_per_hour;
  const std::string who = internal::Printable(PrincipalName(principal));
  const std::string head = "rate limit of rule " + rule.name + ": " + std::to_string(limit) +
                           " signatures per hour for " + who;
  if (items > limit) {
    return Verdict{.decision = Decision::kDeny,
                   .rule = rule.name,
                   .reason = head + "; a request of " + std::to_string(items) +
                             " items can never fit: split it"};
  }
  const std::int64_t minute = MinuteOf(now);
  std::string key = CounterKey(rule.name, principal);

  std::lock_guard lock(mu_);
  auto it = counters_.find(key);
  if (it == counters_.end()) {
    if (counters_.size() >= max_tracked_) {
      counters_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(key);
    auto counter = std::make_unique<Counter>();
    counter->latest = minute;
    counter->lru_position = lru_.begin();
    it = counters_.emplace(std::move(key), std::move(counter)).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second->lru_position);
  }
  Counter& counter = *it->second;
  counter.Advance(minute);
  const std::uint64_t used = counter.Used(minute);
  if (used + items > limit) {
    const std::int64_t wait = counter.MinutesUntilFreed(used + items - limit);
    return Verdict{.decision = Decision::kDeny,
                   .rule = rule.name,
                   .reason = head + ", " + std::to_string(used) + " used, " +
                             std::to_string(items) + " requested; try again in " +
                             std::to_string(wait) + " min"};
  }
  counter.buckets[Slot(counter.latest)] += static_cast<std::uint32_t>(items);
  return Verdict{.decision = Decision::kAllow,
                 .rule = rule.name,
                 .reason = "within the rate limit of rule " + rule.name + ": " +
                           std::to_string(used + items) + " of " + std::to_string(limit) +
                           " used this hour by " + who};
}

std::uint64_t RateLimiter::Used(std::string_view rule, const Principal& principal,
                                Clock::time_point now) const {
  const std::string key = CounterKey(rule, principal);
  std::lock_guard lock(mu_);
  const auto it = counters_.find(key);
  return it == counters_.end() ? 0 : it->second->Used(MinuteOf(now));
}

void RateLimiter::Retain(const Policy& policy) {
  std::lock_guard lock(mu_);
  for (auto it = counters_.begin(); it != counters_.end();) {
    const std::string_view rule = std::string_view(it->first).substr(0, it->first.find('\n'));
    const Rule* kept = policy.FindRule(rule);
    if (kept == nullptr || !kept->rate_per_hour.has_value()) {
      lru_.erase(it->second->lru_position);
      it = counters_.erase(it);
    } else {
      ++it;
    }
  }
}

std::size_t RateLimiter::tracked() const {
  std::lock_guard lock(mu_);
  return counters_.size();
}

Verdict Authorize(const Policy& policy, RateLimiter& limiter, const SignRequest& request,
                  RateLimiter::Clock::time_point now) {
  Verdict verdict = policy.Evaluate(request);
  if (!verdict.allowed()) {
    return verdict;
  }
  const Rule* rule = policy.FindRule(verdict.rule);
  if (rule == nullptr || !rule->rate_per_hour.has_value()) {
    return verdict;
  }
  Verdict charged = limiter.Charge(*rule, request.principal, request.items, now);
  return charged.allowed() ? verdict : charged;
}

}  // namespace signet::policy
