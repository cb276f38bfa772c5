// GET /metrics: the Prometheus text exposition (format 0.0.4) of the sign service's counters
// (service::ServiceMetrics), each HSM token's stats and the audit log's stats. Every name starts
// with `signet_`; every family has HELP and TYPE lines, even while it has no sample yet.
//
// A scrape takes a snapshot of each source in turn (service, tokens, log): the families are each
// consistent in themselves, not with one another (a request may show in the service's counters
// and not yet in the log's tree size).
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "admin/internal/state.h"

namespace signet::admin::internal {
namespace {

// One label: name and (unescaped) value.
using Label = std::pair<std::string_view, std::string_view>;

// A label value as the text format wants it: backslash, double quote and newline escaped.
std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// HELP text: backslash and newline escaped.
std::string EscapeHelp(std::string_view help) {
  std::string out;
  for (const char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// The shortest text that reads back as `value` ("+Inf", "-Inf", "NaN" as the format spells them),
// without an exponent when `fixed` (bucket bounds: "0.0005", as other exporters write them).
std::string FormatDouble(double value, bool fixed = false) {
  if (std::isnan(value)) {
    return "NaN";
  }
  if (std::isinf(value)) {
    return value > 0 ? "+Inf" : "-Inf";
  }
  char buffer[400];  // the longest shortest fixed form of a double is under 330 characters
  const auto result =
      fixed ? std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::fixed)
            : std::to_chars(buffer, buffer + sizeof(buffer), value);
  return result.ec == std::errc() ? std::string(buffer, result.ptr) : "NaN";
}

class Exposition {
 public:
  // The HELP and TYPE lines of a family; its samples follow.
  void Family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += EscapeHelp(help);
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  void Sample(std::string_view name, std::initializer_list<Label> labels, std::uint64_t value) {
    Line(name, LabelText(labels), std::to_string(value));
  }
  void Sample(std::string_view name, std::initializer_list<Label> labels, double value) {
    Line(name, LabelText(labels), FormatDouble(value));
  }

  // A histogram's samples: NAME_bucket{...,le=...} (cumulative, ending with +Inf), NAME_sum and
  // NAME_count. `H` has bounds, cumulative, count and sum.
  template <class H>
  void Histogram(std::string_view name, std::initializer_list<Label> labels, const H& h) {
    const std::string base = LabelText(labels);
    const std::string bucket = std::string(name) + "_bucket";
    for (std::size_t i = 0; i < h.bounds.size() && i < h.cumulative.size(); ++i) {
      Line(bucket, WithLe(base, FormatDouble(h.bounds[i], true)), std::to_string(h.cumulative[i]));
    }
    Line(bucket, WithLe(base, "+Inf"), std::to_string(h.count));
    Line(std::string(name) + "_sum", base, FormatDouble(h.sum));
    Line(std::string(name) + "_count", base, std::to_string(h.count));
  }

  std::string Take() { return std::move(out_); }

 private:
  // "{a=\"x\",b=\"y\"}", or "" without labels.
  static std::string LabelText(std::initializer_list<Label> labels) {
    if (labels.size() == 0) {
      return "";
    }
    std::string text = "{";
    for (const auto& [label, value] : labels) {
      if (text.size() > 1) {
        text += ',';
      }
      text += label;
      text += "=\"";
      text += EscapeLabelValue(value);
      text += '"';
    }
    text += '}';
    return text;
  }

  static std::string WithLe(const std::string& labels, std::string_view le) {
    std::string text = labels.empty() ? "{" : labels.substr(0, labels.size() - 1) + ",";
    text += "le=\"";
    text += le;
    text += "\"}";
    return text;
  }

  void Line(std::string_view name, std::string_view labels, std::string_view value) {
    out_ += name;
    out_ += labels;
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }

  std::string out_;
};

void RenderService(const service::ServiceMetrics& m, Exposition& out) {
  out.Family("signet_sign_requests_total", "counter",
             "POST /v1/sign requests by key, format and result (signed, denied, rate_limited, "
             "hsm_error, audit_error, malformed, internal, held), counted when answered. Key "
             "\"(unknown)\": a key the service does not have, or a body that did not parse.");
  for (const auto& o : m.outcomes) {
    out.Sample("signet_sign_requests_total",
               {{"key", o.key}, {"format", o.format}, {"result", o.result}}, o.requests);
  }
  out.Family("signet_signatures_total", "counter",
             "Items of POST /v1/sign requests by key, format and result: for result=\"signed\" "
             "the signatures released after their records were committed; otherwise the items "
             "of the refused requests (0 for a body that did not parse).");
  for (const auto& o : m.outcomes) {
    out.Sample("signet_signatures_total",
               {{"key", o.key}, {"format", o.format}, {"result", o.result}}, o.items);
  }
  out.Family("signet_request_duration_seconds", "histogram",
             "Seconds from a request's arrival at the service to its answer, by endpoint.");
  out.Histogram("signet_request_duration_seconds", {{"endpoint", "sign"}}, m.sign_latency);
  out.Family("signet_denials_total", "counter",
             "Sign requests answered \"denied\" (403, 404 unknown key, 413 too many items) by the "
             "policy rule that decided; \"none\" when no rule did.");
  for (const auto& [rule, count] : m.denials_by_rule) {
    out.Sample("signet_denials_total", {{"rule", rule}}, count);
  }
  out.Family("signet_rate_limit_hits_total", "counter",
             "Sign requests answered 429 by the rule whose rate_per_hour they exceeded.");
  for (const auto& [rule, count] : m.rate_limits_by_rule) {
    out.Sample("signet_rate_limit_hits_total", {{"rule", rule}}, count);
  }
  out.Family("signet_sign_hsm_jobs_total", "counter",
             "HSM jobs that signed for the service, by key: one per request for raw keys, one "
             "per group of requests signed together for batch keys.");
  for (const auto& k : m.keys) {
    out.Sample("signet_sign_hsm_jobs_total", {{"key", k.name}, {"format", k.format}}, k.hsm_jobs);
  }
  out.Family("signet_batch_roots_signed_total", "counter",
             "Merkle batch roots signed by the HSM, by batch key.");
  for (const auto& k : m.keys) {
    if (k.format == "batch") {
      out.Sample("signet_batch_roots_signed_total", {{"key", k.name}}, k.batch_roots);
    }
  }
}

void RenderTokens(const std::map<std::string, hsm::Token*>& tokens, Exposition& out) {
  std::vector<std::pair<std::string_view, hsm::Token::Stats>> stats;
  for (const auto& [name, token] : tokens) {
    if (token != nullptr) {
      stats.emplace_back(name, token->stats());
    }
  }
  struct Field {
    std::string_view name;
    std::string_view type;
    std::string_view help;
    std::uint64_t (*get)(const hsm::Token::Stats&);
  };
  static constexpr Field kFields[] = {
      {"signet_hsm_signatures_total", "counter", "Signatures the token has made, by [[hsm]] name.",
       [](const hsm::Token::Stats& s) -> std::uint64_t { return s.signatures; }},
      {"signet_hsm_jobs_failed_total", "counter", "Jobs on the token that failed.",
       [](const hsm::Token::Stats& s) -> std::uint64_t { return s.jobs_failed; }},
      {"signet_hsm_retries_total", "counter",
       "Signatures retried on the token after a session died.",
       [](const hsm::Token::Stats& s) -> std::uint64_t { return s.retries; }},
      {"signet_hsm_sessions_reopened_total", "counter",
       "Sessions reopened (logging in again) on the token.",
       [](const hsm::Token::Stats& s) -> std::uint64_t { return s.sessions_reopened; }},
      {"signet_hsm_queue_depth", "gauge", "Jobs waiting for one of the token's workers.",
       [](const hsm::Token::Stats& s) -> std::uint64_t { return s.queue_depth; }},
      {"signet_hsm_sessions", "gauge", "Signing sessions open on the token.",
       [](const hsm::Token::Stats& s) -> std::uint64_t { return s.sessions; }},
      {"signet_hsm_sessions_in_use", "gauge",
       "Signing sessions leased to a worker that is signing at this moment.",
       [](const hsm::Token::Stats& s) -> std::uint64_t { return s.sessions_in_use; }},
      {"signet_hsm_consecutive_failures", "gauge",
       "Jobs on the token that failed in a row since the last that succeeded (0: healthy).",
       [](const hsm::Token::Stats& s) -> std::uint64_t { return s.consecutive_failures; }},
  };
  for (const Field& field : kFields) {
    out.Family(field.name, field.type, field.help);
    for (const auto& [name, s] : stats) {
      out.Sample(field.name, {{"token", name}}, field.get(s));
    }
  }
}

void RenderAudit(audit::Log& log, Exposition& out) {
  const bool healthy = log.health().has_value();
  const audit::LogStats s = log.stats();
  out.Family("signet_audit_healthy", "gauge",
             "1 while the audit log takes records; 0 once it has failed (signing stops) or is "
             "closing.");
  out.Sample("signet_audit_healthy", {}, std::uint64_t{healthy ? 1u : 0u});
  out.Family("signet_audit_tree_size", "gauge", "Records in the audit log's Merkle tree.");
  out.Sample("signet_audit_tree_size", {}, s.tree_size);
  out.Family("signet_audit_checkpoint_size", "gauge", "Tree size of the latest signed checkpoint.");
  out.Sample("signet_audit_checkpoint_size", {}, s.checkpoint_size);
  out.Family("signet_audit_checkpoint_age_seconds", "gauge",
             "Seconds since the latest checkpoint was signed by this process (no sample before "
             "the first).");
  if (s.checkpoint_time != std::chrono::system_clock::time_point{}) {
    const double age =
        std::chrono::duration<double>(std::chrono::system_clock::now() - s.checkpoint_time).count();
    out.Sample("signet_audit_checkpoint_age_seconds", {}, age < 0 ? 0.0 : age);
  }
  out.Family("signet_audit_commits_total", "counter",
             "Audit write transactions that committed records, since the log was opened.");
  out.Sample("signet_audit_commits_total", {}, s.commits);
  out.Family("signet_audit_records_total", "counter",
             "Records committed to the audit log since it was opened.");
  out.Sample("signet_audit_records_total", {}, s.records);
  out.Family("signet_audit_commit_duration_seconds", "histogram",
             "Seconds from the audit writer taking a group of records to their durable commit.");
  out.Histogram("signet_audit_commit_duration_seconds", {}, s.commit_latency_seconds);
  out.Family("signet_audit_records_per_commit", "histogram",
             "Records per audit write transaction (group commit).");
  out.Histogram("signet_audit_records_per_commit", {}, s.records_per_commit);
  out.Family("signet_audit_map_used_bytes", "gauge", "Bytes of the LMDB map in use.");
  out.Sample("signet_audit_map_used_bytes", {}, std::uint64_t{s.map_used});
  out.Family("signet_audit_map_size_bytes", "gauge",
             "Current size of the LMDB map (it grows up to max_map_size).");
  out.Sample("signet_audit_map_size_bytes", {}, std::uint64_t{s.map_size});
}

}  // namespace

std::string RenderMetrics(State& state) {
  Exposition out;
  RenderService(state.service.metrics(), out);
  RenderTokens(state.tokens, out);
  RenderAudit(state.log, out);
  out.Family("signet_admin_requests_total", "counter",
             "Admin API requests answered, by endpoint group (policy, keys, approvals, audit, "
             "metrics, health, other) and HTTP status. Peers refused at accept are not requests: "
             "they are audit records.");
  {
    std::lock_guard lock(state.requests_mu);
    for (const auto& [key, count] : state.requests) {
      out.Sample("signet_admin_requests_total",
                 {{"endpoint", key.first}, {"status", std::to_string(key.second)}}, count);
    }
  }
  out.Family("signet_approvals_pending", "gauge",
             "Sign requests held for approval and still waiting (not expired).");
  const auto pending = state.service.HeldRequests(true);
  out.Sample("signet_approvals_pending", {},
             static_cast<std::uint64_t>(pending ? pending->size() : 0));
  return out.Take();
}

}  // namespace signet::admin::internal
