// The real signetd under trouble: an HSM that loses sessions and then fails every signature (the
// fault-injecting PKCS#11 module in front of SoftHSM), clients that hang up mid-request, malformed
// CBOR, and SIGTERM in the middle of a `signet sign` run. Each test checks what a user relies on:
// every released signature verifies and has exactly one audit record, a refusal releases nothing,
// and the daemon keeps serving (or drains and exits 0).
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "appliance/base/base.h"
#include "tests/daemon/signetd_process.h"

namespace signet::daemon {
namespace {

using net::testing::ConnectUnix;
using net::testing::Curl;
using net::testing::HttpResult;
using net::testing::RunCommand;
using net::testing::SendAll;
using net::testing::ShellQuote;
using nlohmann::json;
using testing::ChildProcess;
using testing::ReadFile;
using testing::ReplaceFile;
using testing::Sha256Hex;
using testing::SignBody;
using testing::SignItem;
using testing::WriteFile;

constexpr std::string_view kSoftHsm = "/usr/lib/softhsm/libsofthsm2.so";

// The records of `kind` whose artifact name starts with `prefix`.
std::vector<json> RecordsFor(const std::vector<json>& records, std::string_view kind,
                             std::string_view prefix) {
  std::vector<json> found;
  for (const json& r : records) {
    if (!r.is_object() || r.value("kind", "") != kind || !r.contains("artifact")) {
      continue;
    }
    if (r["artifact"].value("name", "").starts_with(prefix)) {
      found.push_back(r);
    }
  }
  return found;
}

// The value of response header `name` (lower-case) in curl's header dump, or "".
std::string HeaderValue(const std::string& headers, std::string_view name) {
  std::istringstream lines(headers);
  for (std::string line; std::getline(lines, line);) {
    std::string lower = line;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (lower.starts_with(std::string(name) + ":")) {
      std::string value = line.substr(name.size() + 1);
      while (!value.empty() && (value.front() == ' ')) {
        value.erase(0, 1);
      }
      while (!value.empty() && (value.back() == '\r' || value.back() == ' ')) {
        value.pop_back();
      }
      return value;
    }
  }
  return "";
}

// The first token's statistics in a GET /v1/health answer.
json TokenStats(const json& health) {
  if (!health.is_object() || !health.contains("hsm") || !health["hsm"].is_array() ||
      health["hsm"].empty()) {
    return json::object();
  }
  return health["hsm"][0];
}

class RobustnessTest : public testing::SignetdFixture {
 protected:
  json Health() {
    const HttpResult health = Get("/v1/health");
    EXPECT_EQ(health.status, 200) << health.body;
    return json::parse(health.body, nullptr, /*allow_exceptions=*/false);
  }

  // POSTs `items` (name -> content) and checks each returned signature with openssl. Returns the
  // HTTP result.
  HttpResult SignVerifyAll(const std::vector<std::pair<std::string, std::string>>& items,
                           const std::string& pem) {
    json list = json::array();
    for (const auto& [name, content] : items) {
      list.push_back(SignItem(name, content));
    }
    HttpResult result = PostSign(SignBody(std::move(list)));
    if (result.status != 200) {
      return result;
    }
    const json answer = json::parse(result.body, nullptr, /*allow_exceptions=*/false);
    EXPECT_TRUE(answer.contains("items") && answer["items"].size() == items.size()) << result.body;
    if (!answer.contains("items") || answer["items"].size() != items.size()) {
      return result;
    }
    for (std::size_t i = 0; i < items.size(); ++i) {
      EXPECT_EQ(answer["items"][i].value("name", ""), items[i].first);
      auto signature = Base64Decode(answer["items"][i].value("signature", ""));
      EXPECT_TRUE(signature) << result.body;
      if (signature) {
        std::string file_name = items[i].first;
        std::replace(file_name.begin(), file_name.end(), '/', '_');
        ExpectOpensslVerifies(file_name, items[i].second,
                              std::string(signature->begin(), signature->end()), pem);
      }
    }
    return result;
  }

  // Checks that `records` hold exactly one sign record per item, with the item's digest.
  void ExpectOneSignRecordEach(const std::vector<json>& records,
                               const std::vector<std::pair<std::string, std::string>>& items) {
    for (const auto& [name, content] : items) {
      const auto signs = RecordsFor(records, "sign", name);
      std::size_t exact = 0;
      for (const json& r : signs) {
        if (r["artifact"].value("name", "") == name) {
          ++exact;
          EXPECT_EQ(r["artifact"]["digests"].value("sha256", ""), Sha256Hex(content)) << r.dump();
        }
      }
      EXPECT_EQ(exact, 1u) << name;
    }
  }
};

// (a) a session closed or logged out under a signature is reopened and the request still signs;
// (b) an HSM that fails every C_Sign gets a 503 hsm_unavailable, no signature, and an audited
// denial, and /v1/health turns 503 "degraded" naming the error; (c) once the HSM works again, so
// does signing and health is 200 "ok" again. Health counts the retries and failed jobs.
TEST_F(RobustnessTest, HsmSessionFailuresAreRetriedRefusedAndRecoveredFrom) {
  ASSERT_TRUE(MakeDevState());
  std::string config = ReadFile(State() / "signetd.toml");
  const std::string module_line = "module = \"" + std::string(kSoftHsm) + "\"";
  const auto at = config.find(module_line);
  ASSERT_NE(at, std::string::npos) << config;
  config.replace(at, module_line.size(), "module = \"" SIGNET_FAULT_MODULE "\"");
  WriteFile(State() / "fault.toml", config);

  const auto rules = logs_.path() / "fault-rules";
  const auto fault_log = logs_.path() / "fault.log";
  auto daemon = StartConfig(
      State() / "fault.toml",
      {SoftHsmEnv(), "SIGNET_FAULT_TARGET=" + std::string(kSoftHsm),
       "SIGNET_FAULT_RULES_FILE=" + rules.string(), "SIGNET_FAULT_LOG=" + fault_log.string()});
  ASSERT_NE(daemon, nullptr);
  const std::string pem = DefaultPem();
  ASSERT_FALSE(pem.empty());

  // (a) The second C_Sign after the rules change loses its session (closed, or the token logged
  // out). Wait for the checkpoint first so that the audit key's C_Sign does not take that turn.
  std::vector<std::pair<std::string, std::string>> recovered;
  for (const std::string action : {"close", "logout"}) {
    const json before = TokenStats(WaitForCheckpoint());
    ReplaceFile(rules, "C_Sign:2:" + action + "\n");
    std::vector<std::pair<std::string, std::string>> items;
    for (int i = 0; i < 4; ++i) {
      items.emplace_back(
          "hsm-a-" + action + "/" + std::to_string(i),
          "artifact " + std::to_string(i) + " signed across a lost session (" + action + ")\n");
    }
    const HttpResult result = SignVerifyAll(items, pem);
    EXPECT_EQ(result.status, 200) << action << ": " << result.body << "\n" << daemon->log();
    EXPECT_NE(ReadFile(fault_log).find("C_Sign #2 -> " + action), std::string::npos)
        << "the fault did not fire: " << ReadFile(fault_log);
    const json after = TokenStats(Health());
    EXPECT_GT(after.value("retries", 0), before.value("retries", 0)) << after.dump();
    recovered.insert(recovered.end(), items.begin(), items.end());
  }

  // (b) Every C_Sign fails with CKR_DEVICE_ERROR: a 503 that releases no signature.
  const json before_b = TokenStats(WaitForCheckpoint());
  ReplaceFile(rules, "C_Sign:1+:CKR_DEVICE_ERROR\n");
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"hsm-b/0", "refused while the HSM fails\n"}, {"hsm-b/1", "also refused\n"}};
  json refused_items = json::array();
  for (const auto& [name, content] : refused) {
    refused_items.push_back(SignItem(name, content));
  }
  const HttpResult failed = PostSign(SignBody(refused_items));
  EXPECT_EQ(failed.status, 503) << failed.body;
  const json failed_body = json::parse(failed.body, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(failed_body.is_object()) << failed.body;
  EXPECT_EQ(failed_body.value("code", ""), "hsm_unavailable") << failed.body;
  EXPECT_NE(failed_body.value("message", "").find("CKR_DEVICE_ERROR"), std::string::npos)
      << failed.body;
  EXPECT_FALSE(failed_body.contains("items")) << failed.body;
  EXPECT_EQ(failed.body.find("signature"), std::string::npos) << failed.body;
  const std::string refused_id = HeaderValue(failed.headers, "x-request-id");
  EXPECT_EQ(refused_id.size(), 32u) << failed.headers;
  EXPECT_NE(ReadFile(fault_log).find("C_Sign #1 -> CKR_DEVICE_ERROR"), std::string::npos)
      << ReadFile(fault_log);
  // Health says so: 503 "degraded", the token not ok, with the error; the failed job counted.
  const HttpResult during_b_result = Get("/v1/health");
  EXPECT_EQ(during_b_result.status, 503) << during_b_result.body;
  const json during_b = json::parse(during_b_result.body, nullptr, /*allow_exceptions=*/false);
  EXPECT_EQ(during_b.value("status", ""), "degraded") << during_b.dump();
  EXPECT_EQ(TokenStats(during_b).value("ok", true), false) << during_b.dump();
  EXPECT_NE(TokenStats(during_b).value("last_error", "").find("CKR_DEVICE_ERROR"),
            std::string::npos)
      << during_b.dump();
  EXPECT_GT(TokenStats(during_b).value("jobs_failed", 0), before_b.value("jobs_failed", 0))
      << during_b.dump();

  // (c) No rules: signing works again.
  std::filesystem::remove(rules);
  const std::vector<std::pair<std::string, std::string>> again = {
      {"hsm-c/0", "signed after the HSM recovered\n"}, {"hsm-c/1", "and this one too\n"}};
  const HttpResult recovered_result = SignVerifyAll(again, pem);
  EXPECT_EQ(recovered_result.status, 200) << recovered_result.body << "\n" << daemon->log();
  const json after_c = Health();  // 200 "ok" again, the last error still shown
  EXPECT_EQ(after_c.value("status", ""), "ok") << after_c.dump();
  EXPECT_EQ(TokenStats(after_c).value("ok", false), true) << after_c.dump();
  recovered.insert(recovered.end(), again.begin(), again.end());
  EXPECT_EQ(TokenStats(after_c).value("logged_in", false), true) << after_c.dump();

  // (d) The token stops answering whether it is logged in: health asks it on every call, so it
  // turns 503 "degraded" at once, with no signing traffic, and back to "ok" when it answers.
  ReplaceFile(rules, "C_GetSessionInfo:1+:CKR_DEVICE_ERROR\n");
  const HttpResult probe_failed = Get("/v1/health");
  EXPECT_EQ(probe_failed.status, 503) << probe_failed.body;
  const json during_d = json::parse(probe_failed.body, nullptr, /*allow_exceptions=*/false);
  EXPECT_EQ(TokenStats(during_d).value("logged_in", true), false) << during_d.dump();
  EXPECT_NE(TokenStats(during_d).value("login_error", "").find("CKR_DEVICE_ERROR"),
            std::string::npos)
      << during_d.dump();
  std::filesystem::remove(rules);
  EXPECT_EQ(Health().value("status", ""), "ok");

  // The audit log: one sign record per released signature, a deny record for (b) and no sign
  // record for its digests.
  ASSERT_FALSE(WaitForCheckpoint().is_null());
  const std::vector<json> records = ExportAudit();
  ExpectOneSignRecordEach(records, recovered);
  EXPECT_TRUE(RecordsFor(records, "sign", "hsm-b/").empty());
  for (const json& r : records) {
    if (r.value("kind", "") == "sign") {
      for (const auto& [name, content] : refused) {
        EXPECT_NE(r["artifact"]["digests"].value("sha256", ""), Sha256Hex(content)) << r.dump();
      }
    }
  }
  const auto denials = RecordsFor(records, "deny", "hsm-b/");
  ASSERT_EQ(denials.size(), 1u) << "deny records for (b): " << denials.size();
  EXPECT_EQ(denials[0]["request"].value("id", ""), refused_id) << denials[0].dump();
  EXPECT_EQ(denials[0]["artifact"]["digests"].value("sha256", ""), Sha256Hex(refused[0].second));
  EXPECT_NE(denials[0].value("detail", "").find("HSM"), std::string::npos) << denials[0].dump();

  ASSERT_EQ(::kill(daemon->pid(), SIGTERM), 0);
  EXPECT_EQ(daemon->Wait(std::chrono::seconds(40)), 0) << daemon->log();
}

// A client that hangs up half-way through sending a request, and one that sends a whole request
// and leaves without reading the answer: the daemon keeps serving, the first request leaves no
// record, the second all of its records or none.
TEST_F(RobustnessTest, ClientDisconnectsMidRequestLeaveNoPartialRecords) {
  auto daemon = StartDev();
  ASSERT_NE(daemon, nullptr);
  const std::string pem = DefaultPem();
  constexpr int kItems = 500;
  auto request = [&](const std::string& prefix) {
    json items = json::array();
    for (int i = 0; i < kItems; ++i) {
      items.push_back(
          SignItem(prefix + std::to_string(i), prefix + " content " + std::to_string(i) + "\n"));
    }
    const std::string body = SignBody(std::move(items)).dump();
    return std::make_pair(
        "POST /v1/sign HTTP/1.1\r\nHost: signetd\r\n"
        "Content-Type: application/json\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n\r\n",
        body);
  };

  // (a) The headers and half of the body, then close.
  {
    const auto [head, body] = request("disconnect-a/");
    UniqueFd fd = ConnectUnix(Socket());
    ASSERT_TRUE(fd) << "connect " << Socket();
    ASSERT_TRUE(SendAll(fd.get(), head + body.substr(0, body.size() / 2)));
  }
  // (b) The whole request, then close without reading.
  {
    const auto [head, body] = request("disconnect-b/");
    UniqueFd fd = ConnectUnix(Socket());
    ASSERT_TRUE(fd) << "connect " << Socket();
    ASSERT_TRUE(SendAll(fd.get(), head + body));
  }

  EXPECT_TRUE(daemon->Running()) << daemon->log();
  const HttpResult health = Get("/v1/health");
  EXPECT_EQ(health.status, 200) << health.body;
  EXPECT_EQ(
      SignAndVerify("after-disconnects.txt", "signed after two clients hung up\n", pem).status,
      200);
  // Until the tree has stopped growing for a while: request (b) may still be signing.
  ASSERT_FALSE(WaitForCheckpoint(std::chrono::milliseconds(1500)).is_null());

  const std::vector<json> records = ExportAudit();
  std::size_t half_sent = 0;
  for (const json& r : records) {
    if (r.contains("artifact") && r["artifact"].value("name", "").starts_with("disconnect-a/")) {
      ++half_sent;
    }
  }
  EXPECT_EQ(half_sent, 0u) << "records for a request that never arrived in full";
  const auto abandoned = RecordsFor(records, "sign", "disconnect-b/");
  std::cout << "[ INFO     ] request (b), sent whole and abandoned: " << abandoned.size() << " of "
            << kItems << " sign records\n";
  RecordProperty("abandoned_request_sign_records", static_cast<int>(abandoned.size()));
  EXPECT_TRUE(abandoned.empty() || abandoned.size() == static_cast<std::size_t>(kItems))
      << abandoned.size() << " of " << kItems << " items recorded: a partial request";
  if (abandoned.size() == static_cast<std::size_t>(kItems)) {
    std::map<std::string, std::string> seen;
    for (const json& r : abandoned) {
      seen[r["artifact"].value("name", "")] = r["artifact"]["digests"].value("sha256", "");
    }
    EXPECT_EQ(seen.size(), static_cast<std::size_t>(kItems));
    for (int i = 0; i < kItems; ++i) {
      const std::string name = "disconnect-b/" + std::to_string(i);
      EXPECT_EQ(seen[name], Sha256Hex("disconnect-b/ content " + std::to_string(i) + "\n")) << name;
    }
  }
  EXPECT_TRUE(RecordsFor(records, "deny", "disconnect-b/").empty());
  EXPECT_EQ(RecordsFor(records, "sign", "after-disconnects.txt").size(), 1u);
  EXPECT_TRUE(daemon->Running()) << daemon->log();
}

// CBOR that is not CBOR, is cut short, is not a map, or carries a digest of the wrong length (or
// as bytes): 400 naming the problem, and nothing signed or recorded. A valid CBOR request signs.
TEST_F(RobustnessTest, MalformedCborIsRefusedNamingTheProblemAndSignsNothing) {
  auto daemon = StartDev();
  ASSERT_NE(daemon, nullptr);
  const std::string pem = DefaultPem();
  const json valid = SignBody(
      json::array({SignItem("cbor-bad/0", "first\n"), SignItem("cbor-bad/1", "second\n")}));
  const std::vector<std::uint8_t> valid_cbor = json::to_cbor(valid);

  std::mt19937 random(20261127);
  std::vector<std::uint8_t> noise(256);
  for (auto& byte : noise) {
    byte = static_cast<std::uint8_t>(random());
  }
  noise[0] = 0xff;  // a "break" outside an indefinite-length item: never valid CBOR
  ASSERT_TRUE(json::from_cbor(noise, true, false).is_discarded());

  json short_digest = valid;
  short_digest["items"][1]["digests"]["sha256"] =
      short_digest["items"][1]["digests"]["sha256"].get<std::string>().substr(2);
  json binary_digest = valid;
  binary_digest["items"][0]["digests"]["sha256"] = json::binary(std::vector<std::uint8_t>(32, 7));

  struct Case {
    std::string what;
    std::vector<std::uint8_t> body;
    std::string expected;  // in the error message
  };
  const std::vector<Case> cases = {
      {"random bytes", noise, "not valid CBOR"},
      {"truncated",
       std::vector<std::uint8_t>(valid_cbor.begin(), valid_cbor.begin() + valid_cbor.size() / 2),
       "not valid CBOR"},
      {"an array", json::to_cbor(json::array({valid})), "must be an object"},
      {"a string", json::to_cbor(json("sign this")), "must be an object"},
      {"a 62-digit digest", json::to_cbor(short_digest),
       "items[1].digests.sha256 must be 64 hex digits, not 62"},
      {"a binary digest", json::to_cbor(binary_digest), "items[0].digests.sha256 must be a string"},
  };
  const std::uint64_t tree_before =
      WaitForCheckpoint().value("audit", json::object()).value("tree_size", std::uint64_t{0});
  int n = 0;
  for (const Case& c : cases) {
    const auto file = logs_.path() / ("bad-" + std::to_string(n++) + ".cbor");
    WriteFile(file, std::string(c.body.begin(), c.body.end()));
    const HttpResult result = Curl("-X POST -H 'Content-Type: application/cbor' --data-binary @" +
                                   ShellQuote(file.string()) + " --unix-socket " +
                                   ShellQuote(Socket().string()) + " http://x/v1/sign");
    EXPECT_EQ(result.status, 400) << c.what << ": " << result.body;
    json error = json::parse(result.body, nullptr, /*allow_exceptions=*/false);
    if (error.is_discarded()) {
      error = json::from_cbor(result.body, true, false);
    }
    ASSERT_TRUE(error.is_object()) << c.what << ": neither JSON nor CBOR: " << result.body;
    EXPECT_EQ(error.value("code", ""), "malformed") << c.what << ": " << result.body;
    EXPECT_NE(error.value("message", "").find(c.expected), std::string::npos)
        << c.what << ": " << result.body;
    EXPECT_EQ(result.body.find("signature"), std::string::npos) << c.what << ": " << result.body;
  }

  // The same schema, well-formed, in CBOR: signed, answered in CBOR.
  const std::string good = "a good CBOR request\n";
  const auto good_file = logs_.path() / "good.cbor";
  const std::vector<std::uint8_t> good_cbor =
      json::to_cbor(SignBody(json::array({SignItem("cbor-good", good)})));
  WriteFile(good_file, std::string(good_cbor.begin(), good_cbor.end()));
  const HttpResult signed_result =
      Curl("-X POST -H 'Content-Type: application/cbor' --data-binary @" +
           ShellQuote(good_file.string()) + " --unix-socket " + ShellQuote(Socket().string()) +
           " http://x/v1/sign");
  ASSERT_EQ(signed_result.status, 200) << signed_result.body;
  const json answer = json::from_cbor(signed_result.body, true, false);
  ASSERT_TRUE(answer.is_object()) << "the answer to a CBOR request is not CBOR";
  auto signature = Base64Decode(answer["items"][0].value("signature", ""));
  ASSERT_TRUE(signature);
  ExpectOpensslVerifies("cbor-good", good, std::string(signature->begin(), signature->end()), pem);

  // Exactly one record since: the good request's. The bad ones left nothing.
  const json health = WaitForCheckpoint();
  EXPECT_EQ(health.value("audit", json::object()).value("tree_size", std::uint64_t{0}),
            tree_before + 1)
      << health.dump();
  const std::vector<json> records = ExportAudit();
  EXPECT_TRUE(RecordsFor(records, "sign", "cbor-bad/").empty());
  EXPECT_TRUE(RecordsFor(records, "deny", "cbor-bad/").empty());
  EXPECT_EQ(RecordsFor(records, "sign", "cbor-good").size(), 1u);
  EXPECT_TRUE(daemon->Running()) << daemon->log();
}

// SIGTERM while `signet sign -r` works through 3000 files in batches of 20: signetd drains and
// exits 0; signet exits 1; every FILE.sig verifies, was reported ok and has exactly one sign record
// with the file's digest; every file without one was reported as failed.
TEST_F(RobustnessTest, SigtermDuringLargeSigningRunReleasesOnlyRecordedSignatures) {
  constexpr int kFiles = 3000;
  const auto dir = logs_.path() / "artifacts";
  std::filesystem::create_directories(dir);
  std::map<std::string, std::string> contents;  // path -> content
  for (int i = 0; i < kFiles; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "f-%04d", i);
    const auto path = dir / name;
    contents[path.string()] = "artifact " + std::to_string(i) + " of a release\n";
    WriteFile(path, contents[path.string()]);
  }
  auto daemon = StartDev();
  ASSERT_NE(daemon, nullptr);
  const std::string pem = DefaultPem();
  ASSERT_FALSE(pem.empty());

  const auto out = logs_.path() / "sign.out";
  const auto err = logs_.path() / "sign.err";
  ChildProcess sign(SIGNET_BINARY,
                    {"sign", "--socket", Socket().string(), "--key", "default", "--batch-size",
                     "20", "--json", dir.string(), "-r"},
                    out, err);
  auto sig_count = [&] {
    std::size_t n = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      n += entry.path().extension() == ".sig" ? 1 : 0;
    }
    return n;
  };
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (sig_count() == 0 && sign.Running() && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_GT(sig_count(), 0u) << "no signature appeared\n" << ReadFile(err);
  const auto term_at = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(daemon->pid(), SIGTERM), 0);
  EXPECT_EQ(daemon->Wait(std::chrono::seconds(40)), 0) << daemon->log();
  const auto daemon_exit = std::chrono::steady_clock::now() - term_at;
  EXPECT_EQ(sign.Wait(std::chrono::seconds(60)), 1) << ReadFile(err);
  const auto sign_exit = std::chrono::steady_clock::now() - term_at;

  // signet's report: one line per file.
  std::map<std::string, json> reported;
  std::istringstream lines(ReadFile(out));
  for (std::string line; std::getline(lines, line);) {
    const json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(parsed.is_object()) << line;
    EXPECT_TRUE(reported.emplace(parsed.value("path", ""), parsed).second)
        << "reported twice: " << line;
  }
  EXPECT_EQ(reported.size(), contents.size());

  // The audit log, read after signetd exited (its final checkpoint covers every record).
  const std::vector<json> records = ExportAudit();
  std::map<std::string, std::vector<json>> signs;  // artifact name -> sign records
  std::size_t sign_records = 0;
  for (const json& r : records) {
    if (r.value("kind", "") == "sign") {
      ++sign_records;
      signs[r["artifact"].value("name", "")].push_back(r);
    }
  }

  std::size_t with_sig = 0;
  std::vector<std::string> signed_paths;
  for (const auto& [path, content] : contents) {
    const auto sig_path = path + ".sig";
    const auto it = reported.find(path);
    const bool has_report = it != reported.end();
    EXPECT_TRUE(has_report) << path << " not reported";
    if (!std::filesystem::exists(sig_path)) {
      if (has_report) {
        EXPECT_FALSE(it->second.value("ok", true)) << it->second.dump();
        EXPECT_TRUE(it->second["error"].is_string()) << it->second.dump();
      }
      continue;
    }
    ++with_sig;
    signed_paths.push_back(path);
    const std::string sig = ReadFile(sig_path);
    EXPECT_TRUE(testing::VerifySha256Signature(pem, content, sig)) << sig_path;
    if (has_report) {
      EXPECT_TRUE(it->second.value("ok", false)) << it->second.dump();
    }
    const auto& found = signs[path];
    ASSERT_EQ(found.size(), 1u) << path << ": " << found.size() << " sign records";
    EXPECT_EQ(found[0]["artifact"]["digests"].value("sha256", ""), Sha256Hex(content)) << path;
    EXPECT_EQ(found[0].value("signature_sha256", ""), Sha256Hex(sig)) << path;
    if (has_report && it->second["seq"].is_number()) {
      EXPECT_EQ(found[0].value("seq", std::uint64_t{0}), it->second["seq"].get<std::uint64_t>());
    }
  }
  // About 50 of them, spread evenly, also through the openssl command.
  const auto pem_file = logs_.path() / "default.pem";
  WriteFile(pem_file, pem);
  std::string openssl_loop;
  std::size_t openssl_sampled = 0;
  const std::size_t stride = std::max<std::size_t>(1, signed_paths.size() / 50);
  for (std::size_t i = 0; i < signed_paths.size(); i += stride) {
    const std::string& path = signed_paths[i];
    ++openssl_sampled;
    openssl_loop += "openssl dgst -sha256 -verify " + ShellQuote(pem_file.string()) +
                    " -signature " + ShellQuote(path + ".sig") + " " + ShellQuote(path) +
                    " >/dev/null 2>&1 || echo " + ShellQuote("FAILED " + path) + "\n";
  }
  const auto openssl_run = RunCommand(openssl_loop);
  EXPECT_EQ(openssl_run.out, "") << openssl_run.out;
  // No sign record names a file twice, and every record is for one of the files.
  for (const auto& [name, found] : signs) {
    EXPECT_TRUE(contents.contains(name)) << name;
    EXPECT_LE(found.size(), 1u) << name;
  }
  EXPECT_GE(sign_records, with_sig);
  EXPECT_LT(with_sig, contents.size()) << "the run finished before SIGTERM: nothing was tested";
  std::cout << "[ INFO     ] SIGTERM after the first signature: " << with_sig << " of " << kFiles
            << " files signed, " << sign_records << " sign records, "
            << sign_records - std::min(sign_records, with_sig) << " recorded but not delivered; "
            << openssl_sampled
            << " signatures also checked with the openssl command; signetd exited after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(daemon_exit).count()
            << " ms, signet after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(sign_exit).count() << " ms\n";
  RecordProperty("signed_files", static_cast<int>(with_sig));
  RecordProperty("sign_records", static_cast<int>(sign_records));
}

}  // namespace
}  // namespace signet::daemon
