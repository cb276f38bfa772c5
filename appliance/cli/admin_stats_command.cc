// `signet admin stats`: a short summary of GET /v1/health and GET /metrics on the admin socket.
#include <fmt/format.h>

#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "appliance/cli/cli.h"
#include "appliance/cli/internal/admin.h"

namespace signet::cli {
namespace {

using nlohmann::json;

constexpr std::string_view kFooter = R"footer(
Prints signetd's health (ok, degraded: an HSM token's last job failed, unavailable: the audit log
cannot be written), the audit log's size and how old its latest signed checkpoint is, each HSM
token's signatures and failed jobs, and the signatures released or refused per key and result
since signetd started. With --json: {"health": GET /v1/health, "metrics": {NAME: [{"labels":
{...}, "value": N}...]}} parsed from GET /metrics (Prometheus text format).

Any role may read these. Exit status: 0 healthy, 1 signetd is not healthy (the summary is still
printed) or could not be asked, 2 bad command line.

Examples:
  signet admin stats
  signet admin stats --json | jq .health.status)footer";

// A counter's value as text: whole numbers without a fraction.
std::string Count(double value) {
  if (std::isfinite(value) && value == std::floor(value) && std::fabs(value) < 1e15) {
    return fmt::format("{}", static_cast<long long>(value));
  }
  return fmt::format("{}", value);
}

std::string Label(const MetricSample& sample, std::string_view name) {
  for (const auto& [label, value] : sample.labels) {
    if (label == name) {
      return value;
    }
  }
  return "";
}

// {NAME: [{"labels": {...}, "value": N}...]}; NaN and infinities (not JSON) become null.
json MetricsJson(const std::vector<MetricSample>& samples) {
  json out = json::object();
  for (const MetricSample& sample : samples) {
    json labels = json::object();
    for (const auto& [label, value] : sample.labels) {
      labels[label] = value;
    }
    out[sample.name].push_back(
        json{{"labels", std::move(labels)},
             {"value", std::isfinite(sample.value) ? json(sample.value) : json(nullptr)}});
  }
  return out;
}

// "3.2 s", "4 min", for the checkpoint's age.
std::string Age(double seconds) {
  if (seconds < 120) {
    return fmt::format("{:.1f} s", seconds);
  }
  if (seconds < 7200) {
    return fmt::format("{:.0f} min", seconds / 60);
  }
  return fmt::format("{:.1f} h", seconds / 3600);
}

std::string Summary(const json& health, const std::vector<MetricSample>& samples) {
  std::string out = fmt::format("status      {}", Field(health, "status", "?"));
  if (const std::string host = Field(health, "host_id"); !host.empty()) {
    out += fmt::format(" (host {})", host);
  }
  out += "\n";

  const json audit = health.value("audit", json::object());
  std::string audit_line = "audit       ";
  if (audit.contains("tree_size") && audit["tree_size"].is_number()) {
    audit_line += fmt::format("{} records", audit["tree_size"].dump());
  }
  double age_seconds = -1;
  if (audit.contains("checkpoint_age_ms") && audit["checkpoint_age_ms"].is_number()) {
    age_seconds = audit["checkpoint_age_ms"].get<double>() / 1000;
  } else {
    for (const MetricSample& sample : samples) {
      if (sample.name == "signet_audit_checkpoint_age_seconds") {
        age_seconds = sample.value;
      }
    }
  }
  if (audit.contains("checkpoint_size") && audit["checkpoint_size"].is_number() &&
      audit["checkpoint_size"].get<double>() > 0) {
    audit_line += fmt::format(", latest checkpoint covers {}", audit["checkpoint_size"].dump());
    if (age_seconds >= 0 && std::isfinite(age_seconds)) {
      audit_line += fmt::format(", {} old", Age(age_seconds));
    }
  } else {
    audit_line += ", no signed checkpoint yet";
  }
  if (audit.contains("ok") && !audit.value("ok", true)) {
    audit_line += fmt::format("; NOT WRITABLE: {}", Field(audit, "error", "?"));
  }
  out += audit_line + "\n";

  // Per token, named as in [[hsm]], from the metrics.
  std::map<std::string, std::pair<double, double>> tokens;  // signatures, failed jobs
  for (const MetricSample& sample : samples) {
    if (sample.name == "signet_hsm_signatures_total") {
      tokens[Label(sample, "token")].first = sample.value;
    } else if (sample.name == "signet_hsm_jobs_failed_total") {
      tokens[Label(sample, "token")].second = sample.value;
    }
  }
  for (const auto& [token, counts] : tokens) {
    out += fmt::format("token       {}: {} signatures, {} failed jobs\n", DisplayName(token),
                       Count(counts.first), Count(counts.second));
  }

  // Items by key and result, summed over formats.
  std::map<std::pair<std::string, std::string>, double> by_key;
  for (const MetricSample& sample : samples) {
    // signetd lists every result from the start; zeros say nothing here.
    if (sample.name == "signet_signatures_total" && sample.value != 0) {
      by_key[{Label(sample, "key"), Label(sample, "result")}] += sample.value;
    }
  }
  if (by_key.empty()) {
    out += "signatures  none since signetd started\n";
    return out;
  }
  std::size_t key_width = 3;
  std::size_t result_width = 6;
  for (const auto& [key, count] : by_key) {
    key_width = std::max(key_width, DisplayName(key.first).size());
    result_width = std::max(result_width, DisplayName(key.second).size());
  }
  out += fmt::format("signatures  {:<{}}  {:<{}}  {}\n", "KEY", key_width, "RESULT", result_width,
                     "ITEMS");
  for (const auto& [key, count] : by_key) {
    out += fmt::format("            {:<{}}  {:<{}}  {}\n", DisplayName(key.first), key_width,
                       DisplayName(key.second), result_width, Count(count));
  }
  return out;
}

class AdminStatsCommand final : public Command {
 public:
  CLI::App* Register(CLI::App& parent) override {
    CLI::App* app = parent.add_subcommand(
        "stats", "Health, audit log, HSM tokens and signatures per key (any role)");
    options_.Register(app);
    app->footer(std::string(kFooter) + "\n" + std::string(kAdminSocketHelp));
    return app;
  }

  int Run(Console& console) override {
    constexpr std::string_view kCommand = "admin stats";
    // 503 is an answer here: the health of a degraded or failing signetd.
    const auto health_answer =
        AdminRequest(console, kCommand, options_, {.target = "/v1/health", .accepted = {200, 503}});
    if (!health_answer) {
      return kExitFailed;
    }
    const auto health = ParseAnswer(console, kCommand, *health_answer);
    if (!health) {
      return kExitFailed;
    }
    const auto metrics_answer = AdminRequest(console, kCommand, options_, {.target = "/metrics"});
    if (!metrics_answer) {
      return kExitFailed;
    }
    const std::vector<MetricSample> samples = ParseMetrics(metrics_answer->body);
    if (options_.json) {
      console.Out(json{{"health", *health}, {"metrics", MetricsJson(samples)}}.dump(
                      -1, ' ', false, json::error_handler_t::replace) +
                  "\n");
    } else {
      console.Out(Summary(*health, samples));
    }
    if (health_answer->status != 200) {
      console.Error(fmt::format("{}: signetd is not healthy (status \"{}\")", kCommand,
                                Field(*health, "status", "?")));
      return kExitFailed;
    }
    return kExitOk;
  }

 private:
  AdminOptions options_;
};

}  // namespace

std::unique_ptr<Command> MakeAdminStatsCommand() { return std::make_unique<AdminStatsCommand>(); }

}  // namespace signet::cli
