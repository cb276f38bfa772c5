// GET /metrics on the admin socket, read back with the Prometheus reference parser (Debian's
// python3-prometheus-client, run by parse_metrics.py): after sign requests that are signed,
// denied, rate-limited and refused for an unknown key, every counter equals the requests made.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/admin/admin_fixture.h"

namespace signet::admin::testing {
namespace {

using net::testing::Curl;
using net::testing::HttpResult;
using net::testing::RunCommand;
using net::testing::ShellQuote;
using nlohmann::json;
using Labels = std::map<std::string, std::string>;

// The exposition as the reference parser read it.
struct Parsed {
  json families;  // name -> {"type", "help"}
  json samples;   // [{"family", "name", "labels", "value"}]

  // The value of the sample `name` with exactly `labels`, if there is one.
  std::optional<double> Value(std::string_view name, const Labels& labels = {}) const {
    for (const json& s : samples) {
      if (s["name"] == name && s["labels"].get<Labels>() == labels) {
        return s["value"].get<double>();
      }
    }
    return std::nullopt;
  }
};

class MetricsTest : public AdminFixture {
 protected:
  // Rule "self" allows 3 items an hour: the fourth is rate-limited.
  std::string PolicyText() const override {
    return "[[rule]]\nname = \"self\"\nkeys = [\"default\"]\nprincipals = [\"" + SelfPrincipal() +
           "\"]\ntools = [\"signet\"]\nrate_per_hour = 3\n\n[roles]\nauditor = [\"" +
           SelfPrincipal() + "\"]\n";
  }

  // GET /metrics, checked for status and content type, parsed by parse_metrics.py.
  Parsed Scrape() {
    const HttpResult result = Admin("GET", "/metrics");
    EXPECT_EQ(result.status, 200) << result.body;
    EXPECT_NE(result.headers.find("text/plain; version=0.0.4"), std::string::npos)
        << result.headers;
    const auto file = dir() / ("metrics-" + std::to_string(scrapes_++) + ".txt");
    std::ofstream(file, std::ios::binary) << result.body;
    const auto run = RunCommand("/usr/bin/python3 " + ShellQuote(METRICS_PARSER_SCRIPT) + " " +
                                ShellQuote(file.string()) + " 2>&1");
    EXPECT_EQ(run.exit_code, 0) << run.out << "\n---\n" << result.body;
    const json parsed = json::parse(run.out, nullptr, false);
    EXPECT_TRUE(parsed.is_object()) << run.out;
    if (!parsed.is_object()) {
      return {json::object(), json::array()};
    }
    CheckShape(parsed);
    return {parsed["families"], parsed["samples"]};
  }

  // What holds for every scrape: signet_ names, HELP and TYPE for every family, histograms whose
  // buckets grow with `le` and end in +Inf == _count.
  static void CheckShape(const json& parsed) {
    for (const auto& [name, family] : parsed["families"].items()) {
      EXPECT_TRUE(name.starts_with("signet_")) << name;
      EXPECT_FALSE(family["help"].get<std::string>().empty()) << name;
      const std::string type = family["type"];
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << name << type;
    }
    // Per histogram series (family and labels without le): buckets in order, then _count.
    std::map<std::string, std::vector<std::pair<double, double>>> buckets;
    std::map<std::string, double> counts;
    for (const json& s : parsed["samples"]) {
      const std::string family = s["family"];
      if (parsed["families"][family]["type"] != "histogram") {
        continue;
      }
      Labels labels = s["labels"].get<Labels>();
      const std::string name = s["name"];
      if (name == family + "_bucket") {
        const std::string le = labels["le"];
        labels.erase("le");
        const double bound = le == "+Inf" ? std::numeric_limits<double>::infinity() : std::stod(le);
        buckets[family + json(labels).dump()].emplace_back(bound, s["value"].get<double>());
      } else if (name == family + "_count") {
        counts[family + json(labels).dump()] = s["value"].get<double>();
      }
    }
    EXPECT_FALSE(buckets.empty());
    for (const auto& [series, points] : buckets) {
      ASSERT_FALSE(points.empty()) << series;
      for (std::size_t i = 1; i < points.size(); ++i) {
        EXPECT_LT(points[i - 1].first, points[i].first) << series;
        EXPECT_LE(points[i - 1].second, points[i].second) << series;
      }
      EXPECT_TRUE(std::isinf(points.back().first)) << series;
      ASSERT_TRUE(counts.contains(series)) << series;
      EXPECT_EQ(points.back().second, counts[series]) << series;
    }
  }

  // POST /v1/sign naming key "nope".
  HttpResult SignUnknownKey() {
    const json body{
        {"key", "nope"},
        {"tool", {{"name", "signet"}, {"version", "1"}}},
        {"items",
         json::array(
             {{{"name", "x"}, {"size", 1}, {"digests", {{"sha256", std::string(64, 'a')}}}}})}};
    const auto file = dir() / "unknown-key.json";
    std::ofstream(file, std::ios::binary) << body.dump();
    return Curl("-X POST -H 'Content-Type: application/json' --data-binary @" +
                ShellQuote(file.string()) + " --unix-socket " + ShellQuote(sign_socket().string()) +
                " http://localhost/v1/sign");
  }

  int scrapes_ = 0;
};

Labels Default(std::string result) {
  return {{"key", "default"}, {"format", "raw"}, {"result", std::move(result)}};
}

TEST_F(MetricsTest, CountersEqualTheRequestsMade) {
  const Parsed before = Scrape();
  // Configured keys have every result from the start, at zero; no rule has denied yet.
  for (const char* result :
       {"signed", "denied", "rate_limited", "hsm_error", "audit_error", "malformed", "internal"}) {
    EXPECT_EQ(before.Value("signet_sign_requests_total", Default(result)), 0.0) << result;
    EXPECT_EQ(before.Value("signet_signatures_total", Default(result)), 0.0) << result;
  }
  EXPECT_EQ(before.Value("signet_request_duration_seconds_count", {{"endpoint", "sign"}}), 0.0);
  EXPECT_EQ(before.Value("signet_denials_total", {{"rule", "self"}}), std::nullopt);
  const double hsm_before =
      before.Value("signet_hsm_signatures_total", {{"token", "main"}}).value();

  for (int i = 0; i < 3; ++i) {
    const HttpResult signed_answer = Sign("a" + std::to_string(i), "content " + std::to_string(i));
    ASSERT_EQ(signed_answer.status, 200) << signed_answer.body;
  }
  ASSERT_EQ(Sign("d", "denied", "curl-by-hand").status, 403);
  ASSERT_EQ(Sign("r", "rate-limited").status, 429);
  ASSERT_EQ(SignUnknownKey().status, 404);

  const Parsed after = Scrape();
  EXPECT_EQ(after.Value("signet_sign_requests_total", Default("signed")), 3.0);
  EXPECT_EQ(after.Value("signet_signatures_total", Default("signed")), 3.0);
  EXPECT_EQ(after.Value("signet_sign_requests_total", Default("denied")), 1.0);
  EXPECT_EQ(after.Value("signet_sign_requests_total", Default("rate_limited")), 1.0);
  EXPECT_EQ(after.Value("signet_sign_requests_total", Default("hsm_error")), 0.0);
  EXPECT_EQ(after.Value("signet_sign_requests_total",
                        {{"key", "(unknown)"}, {"format", ""}, {"result", "denied"}}),
            1.0);
  EXPECT_EQ(after.Value("signet_signatures_total",
                        {{"key", "(unknown)"}, {"format", ""}, {"result", "denied"}}),
            1.0);
  EXPECT_EQ(after.Value("signet_denials_total", {{"rule", "self"}}), 1.0);
  EXPECT_EQ(after.Value("signet_denials_total", {{"rule", "none"}}), 1.0);
  EXPECT_EQ(after.Value("signet_rate_limit_hits_total", {{"rule", "self"}}), 1.0);
  EXPECT_EQ(after.Value("signet_request_duration_seconds_count", {{"endpoint", "sign"}}), 6.0);
  EXPECT_EQ(
      after.Value("signet_request_duration_seconds_bucket", {{"endpoint", "sign"}, {"le", "30"}}),
      6.0);
  EXPECT_GT(after.Value("signet_request_duration_seconds_sum", {{"endpoint", "sign"}}), 0.0);
  EXPECT_EQ(after.Value("signet_sign_hsm_jobs_total", {{"key", "default"}, {"format", "raw"}}),
            3.0);

  // The token signed the three requests (and perhaps a checkpoint with the audit key).
  EXPECT_GE(after.Value("signet_hsm_signatures_total", {{"token", "main"}}).value(),
            hsm_before + 3);
  EXPECT_EQ(after.Value("signet_hsm_consecutive_failures", {{"token", "main"}}), 0.0);
  EXPECT_EQ(after.Value("signet_hsm_jobs_failed_total", {{"token", "main"}}), 0.0);
  EXPECT_TRUE(after.Value("signet_hsm_queue_depth", {{"token", "main"}}).has_value());
  EXPECT_EQ(after.Value("signet_hsm_sessions", {{"token", "main"}}), 2.0);  // ConfigFor's 2
  // Idle once the answers are out; the audit log's periodic checkpoint may hold a session of the
  // same token for a moment, so look again for a while before calling it busy.
  std::optional<double> in_use = after.Value("signet_hsm_sessions_in_use", {{"token", "main"}});
  for (int i = 0; i < 50 && in_use != 0.0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    in_use = Scrape().Value("signet_hsm_sessions_in_use", {{"token", "main"}});
  }
  EXPECT_EQ(in_use, 0.0) << "idle";
  EXPECT_TRUE(after.Value("signet_hsm_retries_total", {{"token", "main"}}).has_value());
  EXPECT_TRUE(after.Value("signet_hsm_sessions_reopened_total", {{"token", "main"}}).has_value());

  // The log: the seeded policy, three signatures, three denials (403, 429, 404).
  const audit::LogStats stats = log().stats();
  EXPECT_EQ(stats.tree_size, 7u);
  EXPECT_EQ(after.Value("signet_audit_tree_size"), 7.0);
  EXPECT_EQ(after.Value("signet_audit_records_total"), static_cast<double>(stats.records));
  EXPECT_EQ(after.Value("signet_audit_commits_total"), static_cast<double>(stats.commits));
  EXPECT_EQ(after.Value("signet_audit_commit_duration_seconds_count"),
            static_cast<double>(stats.commits));
  EXPECT_EQ(after.Value("signet_audit_records_per_commit_count"),
            static_cast<double>(stats.commits));
  EXPECT_EQ(after.Value("signet_audit_records_per_commit_sum"), static_cast<double>(stats.records));
  EXPECT_EQ(after.Value("signet_audit_healthy"), 1.0);
  EXPECT_GT(after.Value("signet_audit_map_used_bytes").value(), 0.0);
  EXPECT_GE(after.Value("signet_audit_map_size_bytes").value(),
            after.Value("signet_audit_map_used_bytes").value());
  EXPECT_EQ(after.Value("signet_approvals_pending"), 0.0);

  // Scrapes are not audited.
  EXPECT_EQ(log().stats().tree_size, 7u);
}

TEST_F(MetricsTest, CheckpointSizeAndAge) {
  ASSERT_EQ(Sign("a", "content").status, 200);
  auto checkpoint = log().CheckpointNow();
  ASSERT_TRUE(checkpoint) << checkpoint.error();
  const Parsed parsed = Scrape();
  EXPECT_EQ(parsed.Value("signet_audit_checkpoint_size"),
            static_cast<double>(log().stats().checkpoint_size));
  EXPECT_EQ(parsed.Value("signet_audit_checkpoint_size"), parsed.Value("signet_audit_tree_size"));
  const std::optional<double> age = parsed.Value("signet_audit_checkpoint_age_seconds");
  ASSERT_TRUE(age.has_value());
  EXPECT_GE(*age, 0.0);
  EXPECT_LT(*age, 60.0);
}

TEST_F(MetricsTest, OnlyGetAndAdminRequestsAreCounted) {
  EXPECT_EQ(Admin("POST", "/metrics").status, 405);
  EXPECT_EQ(Admin("GET", "/v1/policy").status, 200);
  EXPECT_EQ(Admin("GET", "/v1/policy/versions/99").status, 404);
  Scrape();  // counted once answered: the next scrape shows it
  const Parsed parsed = Scrape();
  EXPECT_EQ(
      parsed.Value("signet_admin_requests_total", {{"endpoint", "metrics"}, {"status", "405"}}),
      1.0);
  EXPECT_EQ(
      parsed.Value("signet_admin_requests_total", {{"endpoint", "metrics"}, {"status", "200"}}),
      1.0);
  EXPECT_EQ(
      parsed.Value("signet_admin_requests_total", {{"endpoint", "policy"}, {"status", "200"}}),
      1.0);
  EXPECT_EQ(
      parsed.Value("signet_admin_requests_total", {{"endpoint", "policy"}, {"status", "404"}}),
      1.0);
}

}  // namespace
}  // namespace signet::admin::testing
