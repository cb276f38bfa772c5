// Canonical record bytes: the hand-written serializer must agree with nlohmann::json::dump() byte
// for byte (the leaf hashes depend on it), and ParseRecord must accept only canonical bytes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "appliance/audit/audit.h"
#include "appliance/audit/internal/record.h"

namespace signet::audit {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

// What the record means, built with nlohmann: the independent reference for the serializer.
Json Reference(const Record& r) {
  Json j = Json::object();
  const auto put = [](Json& o, const char* key, const std::string& value) {
    if (!value.empty()) {
      o[key] = value;
    }
  };
  const auto put_object = [](Json& o, const char* key, Json value) {
    if (!value.empty()) {
      o[key] = std::move(value);
    }
  };
  put(j, "algorithm", r.algorithm);
  for (const Approver& a : r.approvers) {
    j["approvers"].push_back(Json{{"identity", a.identity}, {"time_us", a.time_us}});
  }
  Json artifact = Json::object();
  if (!r.digests.empty()) {
    artifact["digests"] = r.digests;
  }
  put(artifact, "name", r.artifact_name);
  if (r.artifact_size) {
    artifact["size"] = *r.artifact_size;
  }
  put_object(j, "artifact", artifact);
  put(j, "decision", r.decision);
  put(j, "detail", r.detail);
  put(j, "format", r.format);
  put(j, "host", r.host_id);
  Json key = Json::object();
  put(key, "fingerprint", r.key_fingerprint);
  put(key, "name", r.key_name);
  put_object(j, "key", key);
  j["kind"] = std::string(RecordKindName(r.kind));
  Json peer = Json::object();
  put(peer, "address", r.peer_address);
  if (r.peer_pid) {
    peer["pid"] = *r.peer_pid;
  }
  put_object(j, "peer", peer);
  Json policy = Json::object();
  put(policy, "rule", r.policy_rule);
  put(policy, "version", r.policy_version);
  put_object(j, "policy", policy);
  Json request = Json::object();
  put(request, "client_host", r.client_host);
  put(request, "id", r.request_id);
  put(request, "ticket", r.ticket);
  Json tool = Json::object();
  put(tool, "name", r.tool_name);
  put(tool, "version", r.tool_version);
  put_object(request, "tool", tool);
  put_object(j, "request", request);
  Json requester = Json::object();
  put(requester, "cert_fingerprint", r.requester.cert_fingerprint);
  put(requester, "cert_subject", r.requester.cert_subject);
  if (!r.requester.groups.empty()) {
    requester["groups"] = r.requester.groups;
  }
  if (r.requester.uid) {
    requester["uid"] = *r.requester.uid;
  }
  put(requester, "user", r.requester.user);
  put_object(j, "requester", requester);
  j["seq"] = r.seq;
  put(j, "signature_sha256", r.signature_sha256);
  j["time_us"] = r.time_us;
  j["v"] = 1;
  return j;
}

class RandomRecords {
 public:
  explicit RandomRecords(std::uint64_t seed) : rng_(seed) {}

  std::string String() {
    static const std::vector<std::string> kPieces = {"a",
                                                     "Z",
                                                     "0",
                                                     " ",
                                                     "\"",
                                                     "\\",
                                                     "/",
                                                     "\b",
                                                     "\f",
                                                     "\n",
                                                     "\r",
                                                     "\t",
                                                     "\x01",
                                                     "\x1f",
                                                     "\x7f",
                                                     "\xc3\xa9",
                                                     "\xe2\x82\xac",
                                                     "\xf0\x9f\x98\x80",
                                                     "\xf4\x8f\xbf\xbf",
                                                     "\xef\xbf\xbf",
                                                     "<&'>",
                                                     std::string(1, '\0')};
    if (Chance(3)) {
      return "";
    }
    std::string s;
    for (int n = Int(1, 10); n > 0; --n) {
      s += kPieces[Int(0, static_cast<int>(kPieces.size()) - 1)];
    }
    return s;
  }

  Record Next() {
    Record r;
    r.kind = static_cast<RecordKind>(Int(0, 7));
    r.seq = Chance(4) ? std::numeric_limits<std::uint64_t>::max() : rng_();
    r.time_us = static_cast<std::int64_t>(rng_());  // negative half the time
    r.host_id = String();
    r.request_id = String();
    r.ticket = String();
    r.client_host = String();
    r.tool_name = String();
    r.tool_version = String();
    if (Chance(2)) {
      r.requester.uid = static_cast<std::uint32_t>(rng_());
    }
    r.requester.user = String();
    for (int n = Chance(2) ? 0 : Int(1, 3); n > 0; --n) {
      r.requester.groups.push_back(String());
    }
    r.requester.cert_subject = String();
    r.requester.cert_fingerprint = String();
    if (Chance(2)) {
      r.peer_pid = static_cast<std::int64_t>(rng_());
    }
    r.peer_address = String();
    r.key_name = String();
    r.key_fingerprint = String();
    r.algorithm = String();
    r.format = String();
    r.artifact_name = String();
    if (Chance(2)) {
      r.artifact_size = rng_();
    }
    for (int n = Chance(2) ? 0 : Int(1, 3); n > 0; --n) {
      r.digests[String()] = String();
    }
    r.signature_sha256 = String();
    r.decision = String();
    r.policy_rule = String();
    r.policy_version = String();
    for (int n = Chance(2) ? 0 : Int(1, 3); n > 0; --n) {
      r.approvers.push_back({String(), static_cast<std::int64_t>(rng_())});
    }
    r.detail = String();
    return r;
  }

 private:
  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(int one_in) { return Int(1, one_in) == 1; }
  std::mt19937_64 rng_;
};

Record FixedRecord() {
  Record r;
  r.kind = RecordKind::kSign;
  r.seq = 42;
  r.time_us = -5;
  r.host_id = "signer-1";
  r.request_id = "req-7";
  r.tool_name = "signet-cli";
  r.tool_version = "1.2";
  r.requester.uid = 1000;
  r.requester.user = "alice";
  r.requester.groups = {"release", ""};
  r.peer_pid = 4242;
  r.key_name = "release-key";
  r.key_fingerprint = "ab01";
  r.algorithm = "ecdsa-p256";
  r.artifact_name = "dist/a \"b\"\\\n\t\x01\x7f\xc3\xa9\xf0\x9f\x98\x80.tar";
  r.artifact_size = 1234;
  r.digests = {{"sha256", "00ff"}, {"sha512", "11ee"}};
  r.signature_sha256 = "cafe";
  r.decision = "allow";
  r.policy_rule = "release";
  r.approvers = {{"user:bob", 7}, {"", -1}};
  return r;
}

TEST(RecordTest, KindNamesRoundTrip) {
  for (int i = 0; i < 8; ++i) {
    const auto kind = static_cast<RecordKind>(i);
    auto parsed = ParseRecordKind(RecordKindName(kind));
    ASSERT_TRUE(parsed.has_value()) << RecordKindName(kind);
    EXPECT_EQ(*parsed, kind);
  }
  EXPECT_EQ(RecordKindName(RecordKind::kApproval), "approval");
  EXPECT_FALSE(ParseRecordKind("Sign").has_value());
}

TEST(RecordTest, FixedRecordHasExactBytes) {
  auto bytes = SerializeRecord(FixedRecord());
  ASSERT_TRUE(bytes.has_value()) << bytes.error();
  EXPECT_EQ(*bytes,
            "{\"algorithm\":\"ecdsa-p256\","
            "\"approvers\":[{\"identity\":\"user:bob\",\"time_us\":7},"
            "{\"identity\":\"\",\"time_us\":-1}],"
            "\"artifact\":{\"digests\":{\"sha256\":\"00ff\",\"sha512\":\"11ee\"},"
            "\"name\":\"dist/a \\\"b\\\"\\\\\\n\\t\\u0001\x7f\xc3\xa9\xf0\x9f\x98\x80.tar\","
            "\"size\":1234},"
            "\"decision\":\"allow\",\"host\":\"signer-1\","
            "\"key\":{\"fingerprint\":\"ab01\",\"name\":\"release-key\"},\"kind\":\"sign\","
            "\"peer\":{\"pid\":4242},\"policy\":{\"rule\":\"release\"},"
            "\"request\":{\"id\":\"req-7\",\"tool\":{\"name\":\"signet-cli\",\"version\":\"1.2\"}},"
            "\"requester\":{\"groups\":[\"release\",\"\"],\"uid\":1000,\"user\":\"alice\"},"
            "\"seq\":42,\"signature_sha256\":\"cafe\",\"time_us\":-5,\"v\":1}");
}

TEST(RecordTest, MinimalRecordHasOnlyRequiredFields) {
  Record r;
  r.kind = RecordKind::kStartup;
  auto bytes = SerializeRecord(r);
  ASSERT_TRUE(bytes.has_value()) << bytes.error();
  EXPECT_EQ(*bytes, "{\"kind\":\"startup\",\"seq\":0,\"time_us\":0,\"v\":1}");
}

TEST(RecordTest, RandomRecordsMatchNlohmannAndRoundTrip) {
  RandomRecords random(20240601);
  for (int i = 0; i < 2000; ++i) {
    const Record record = random.Next();
    auto bytes = SerializeRecord(record);
    ASSERT_TRUE(bytes.has_value()) << bytes.error();
    ASSERT_EQ(*bytes, Reference(record).dump()) << "record " << i;
    ASSERT_EQ(*bytes, Json::parse(*bytes).dump()) << "record " << i;

    auto prepared = internal::PrepareRecord(record);
    ASSERT_TRUE(prepared.has_value()) << prepared.error();
    EXPECT_EQ(internal::FinishRecord(*prepared, record.seq, record.time_us), *bytes);
    EXPECT_EQ(prepared->middle.empty(), record.signature_sha256.empty());

    auto parsed = ParseRecord(*bytes);
    ASSERT_TRUE(parsed.has_value()) << parsed.error() << "\n" << *bytes;
    ASSERT_EQ(*parsed, record) << *bytes;
  }
}

TEST(RecordTest, FinishSplicesSeqAndTimeIntoPrepared) {
  const Record base = FixedRecord();
  auto prepared = internal::PrepareRecord(base);
  ASSERT_TRUE(prepared.has_value()) << prepared.error();
  for (const auto& [seq, time_us] : std::vector<std::pair<std::uint64_t, std::int64_t>>{
           {0, 0},
           {1, -1},
           {std::numeric_limits<std::uint64_t>::max(), std::numeric_limits<std::int64_t>::min()},
           {99, std::numeric_limits<std::int64_t>::max()}}) {
    Record r = base;
    r.seq = seq;
    r.time_us = time_us;
    auto bytes = SerializeRecord(r);
    ASSERT_TRUE(bytes.has_value()) << bytes.error();
    EXPECT_EQ(internal::FinishRecord(*prepared, seq, time_us), *bytes);
    EXPECT_EQ(*bytes, Reference(r).dump());
  }
}

TEST(RecordTest, AppendJsonStringMatchesDumpForEveryAsciiByte) {
  for (int c = 0; c < 0x80; ++c) {
    const std::string text = "x" + std::string(1, static_cast<char>(c)) + "y";
    std::string out = "prefix";
    ASSERT_TRUE(internal::AppendJsonString(out, text, "f").has_value());
    EXPECT_EQ(out, "prefix" + Json(text).dump()) << "byte " << c;
  }
}

TEST(RecordTest, InvalidUtf8IsRefusedNamingTheField) {
  const std::vector<std::string> bad = {
      "\x80",              // continuation byte without a lead
      "\xc0\xaf",          // overlong '/'
      "\xe0\x80\xaf",      // overlong, three bytes
      "\xed\xa0\x80",      // surrogate U+D800
      "\xf4\x90\x80\x80",  // U+110000
      "\xe2\x82",          // truncated
      "\xff",
  };
  using Setter = void (*)(Record&, const std::string&);
  const std::vector<std::pair<std::string, Setter>> fields = {
      {"artifact.name", [](Record& r, const std::string& s) { r.artifact_name = s; }},
      {"host", [](Record& r, const std::string& s) { r.host_id = s; }},
      {"request.tool.version", [](Record& r, const std::string& s) { r.tool_version = s; }},
      {"requester.cert_subject",
       [](Record& r, const std::string& s) { r.requester.cert_subject = s; }},
      {"requester.groups[1]",
       [](Record& r, const std::string& s) {
         r.requester.groups = {"ok", s};
       }},
      {"approvers[0].identity",
       [](Record& r, const std::string& s) {
         r.approvers = {{s, 1}};
       }},
      {"artifact.digests key",
       [](Record& r, const std::string& s) {
         r.digests = {{s, "00"}};
       }},
      {"artifact.digests[sha256]",
       [](Record& r, const std::string& s) {
         r.digests = {{"sha256", s}};
       }},
      {"signature_sha256", [](Record& r, const std::string& s) { r.signature_sha256 = s; }},
      {"detail", [](Record& r, const std::string& s) { r.detail = s; }},
  };
  for (const auto& [field, set] : fields) {
    for (const std::string& sequence : bad) {
      Record r = FixedRecord();
      set(r, "ab" + sequence + "cd");
      auto bytes = SerializeRecord(r);
      ASSERT_FALSE(bytes.has_value()) << field;
      EXPECT_EQ(bytes.error().code(), ErrorCode::kInvalidArgument);
      EXPECT_EQ(bytes.error().message(), field + " is not valid UTF-8 at byte 2");
    }
  }
  std::string out = "kept";
  EXPECT_FALSE(internal::AppendJsonString(out, "ok\xc0\xaf", "f").has_value());
  EXPECT_EQ(out, "kept");
}

// Applies `edit` (a replacement of `from` by `to`, which must occur) to the fixed record's bytes.
std::string Edited(const std::string& from, const std::string& to) {
  std::string bytes = *SerializeRecord(FixedRecord());
  const std::size_t at = bytes.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return bytes.replace(at, from.size(), to);
}

TEST(RecordTest, ParseRefusesWhatIsNotCanonical) {
  const std::string canonical = *SerializeRecord(FixedRecord());
  ASSERT_TRUE(ParseRecord(canonical).has_value());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {Edited("\"seq\":42", "\"seq\": 42"), "canonical form"},
      {Edited("{\"algorithm\"", " {\"algorithm\""), "canonical form"},
      {canonical + "\n", "canonical form"},
      // Keys out of order: "host" moved before "detail".
      {Edited("\"decision\":\"allow\",\"host\":\"signer-1\",",
              "\"host\":\"signer-1\",\"decision\":\"allow\","),
       "canonical form"},
      {Edited("\"seq\":42,", "\"seq\":42,\"seq\":42,"), "canonical form"},
      {Edited("\"seq\":42,", "\"seq\":43,\"seq\":42,"), "canonical form"},
      {Edited("\"decision\":\"allow\"", "\"decision\":\"\""), "canonical form"},
      {Edited("\"decision\":\"allow\"", "\"decision\":\"\\u0061llow\""), "canonical form"},
      {Edited("\"name\":\"dist/", "\"name\":\"dist\\/"), "canonical form"},
      {Edited("\"time_us\":-5", "\"time_us\":-0"), "canonical form"},
      {Edited("\"peer\":{\"pid\":4242}", "\"peer\":{}"), "canonical form"},
      {Edited("\"v\":1", "\"v\":2"), "record field v"},
      {Edited("\"v\":1", "\"v\":1.0"), "record field v"},
      {Edited("\"v\":1}", "\"v\":1,\"zzz\":1}"), "unknown record field \"zzz\""},
      {Edited("\"size\":1234", "\"size\":1234,\"type\":\"x\""),
       "unknown record field \"artifact.type\""},
      {Edited("\"kind\":\"sign\"", "\"kind\":\"sing\""), "record field kind"},
      {Edited("\"seq\":42", "\"seq\":\"42\""), "record field seq"},
      {Edited("\"seq\":42", "\"seq\":-42"), "record field seq"},
      {Edited("\"seq\":42", "\"seq\":4.2e1"), "record field seq"},
      {Edited("\"uid\":1000", "\"uid\":4294967296"), "record field requester.uid"},
      {Edited("\"time_us\":-5", "\"time_us\":9223372036854775808"), "record field time_us"},
      {Edited("\"size\":1234", "\"size\":true"), "record field artifact.size"},
      {Edited("\"groups\":[\"release\",\"\"]", "\"groups\":[\"release\",7]"),
       "record field requester.groups[1]"},
      {Edited("\"sha512\":\"11ee\"", "\"sha512\":null"), "record field artifact.digests[sha512]"},
      {Edited("\"seq\":42,", ""), "record field seq: missing"},
      {Edited("\"seq\":42", "\"seq\":042"), "not JSON"},
      {canonical.substr(0, canonical.size() - 1), "not JSON"},
      {"[1]", "record: expected an object"},
      {std::string(40, '[') + std::string(40, ']'), "deeper"},
  };
  for (const auto& [bytes, message] : cases) {
    auto parsed = ParseRecord(bytes);
    ASSERT_FALSE(parsed.has_value()) << bytes;
    EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument) << bytes;
    EXPECT_THAT(parsed.error().message(), HasSubstr(message)) << bytes;
  }
}

TEST(RecordTest, ParseHasASizeLimitOfOneMebibyte) {
  Record r = FixedRecord();
  r.detail = std::string(1000 * 1000, 'x');
  auto bytes = SerializeRecord(r);
  ASSERT_TRUE(bytes.has_value());
  auto parsed = ParseRecord(*bytes);
  ASSERT_TRUE(parsed.has_value()) << parsed.error();
  EXPECT_EQ(*parsed, r);

  r.detail = std::string(std::size_t{1} << 20, 'x');
  bytes = SerializeRecord(r);
  ASSERT_TRUE(bytes.has_value());
  parsed = ParseRecord(*bytes);
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(parsed.error().message(), HasSubstr("1 MiB"));
}

}  // namespace
}  // namespace signet::audit
