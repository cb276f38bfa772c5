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
  if (r.batch) {
    Json batch = Json::object();
    put(batch, "id", r.batch->id);
    if (r.batch->leaf_index) {
      batch["leaf_index"] = *r.batch->leaf_index;
    }
    put(batch, "note", r.batch->note);
    put(batch, "root", r.batch->root);
    if (r.batch->tree_size) {
      batch["tree_size"] = *r.batch->tree_size;
    }
    put_object(j, "batch", batch);
  }
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
                                                     "\xe2\x80\x94",  // — (signed notes)
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

  // A batch reference as a sign record (id, leaf index) or a batch record (id, tree size, root,
  // note) carries it, or a random mix; the id is never empty (the serializer refuses that).
  BatchRef Batch() {
    BatchRef b;
    b.id = String();
    if (b.id.empty()) {
      b.id = "0123456789abcdef0123456789abcdef";
    }
    if (Chance(2)) {
      b.leaf_index = Chance(4) ? std::numeric_limits<std::uint64_t>::max() : rng_();
    }
    if (Chance(2)) {
      b.tree_size = Chance(4) ? std::uint64_t{0} : rng_();
    }
    b.root = String();
    if (Chance(2)) {
      // A signed note's shape: lines ending in "\n", an empty line, "— name signature".
      b.note = String() + "\n" + String() + "\n" + String() + "\n\n\xe2\x80\x94 " + String() + "\n";
    } else {
      b.note = String();
    }
    return b;
  }

  Record Next() {
    Record r;
    r.kind = static_cast<RecordKind>(Int(0, 8));
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
    if (Chance(2)) {
      r.batch = Batch();
    }
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

constexpr char kBatchId[] = "5f0c2b7e9a1d4c3b8e6f0a2d4b6c8e1f";
constexpr char kBatchRoot[] = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
// A C2SP signed note of a batch statement (formats/BATCH.md): newlines and the em dash U+2014.
constexpr char kBatchNote[] =
    "signer-1/signet-batch/release-batch\n3\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    "signet-batch 5f0c2b7e9a1d4c3b8e6f0a2d4b6c8e1f 1717200000\n"
    "\n"
    "\xe2\x80\x94 signer-1/signet-batch/release-batch q1w2MEUCIQ==\n";

// The `sign` record of the artifact at leaf 2 of a batch.
Record BatchSignRecord() {
  Record r;
  r.kind = RecordKind::kSign;
  r.seq = 7;
  r.time_us = 1717200000000001;
  r.request_id = "0011";
  r.key_name = "release-batch";
  r.format = "batch";
  r.artifact_name = "a.tar";
  r.digests = {{"sha256", "00ff"}};
  r.batch.emplace();
  r.batch->id = kBatchId;
  r.batch->leaf_index = 2;
  return r;
}

// The `batch` record of that batch.
Record BatchRecord() {
  Record r;
  r.kind = RecordKind::kBatch;
  r.seq = 8;
  r.time_us = 1717200000000002;
  r.request_id = "0011";
  r.key_name = "release-batch";
  r.format = "batch";
  r.signature_sha256 = "cafe";
  r.batch.emplace();
  r.batch->id = kBatchId;
  r.batch->tree_size = 3;
  r.batch->root = kBatchRoot;
  r.batch->note = kBatchNote;
  return r;
}

TEST(RecordTest, KindNamesRoundTrip) {
  for (int i = 0; i <= static_cast<int>(RecordKind::kBatch); ++i) {
    const auto kind = static_cast<RecordKind>(i);
    auto parsed = ParseRecordKind(RecordKindName(kind));
    ASSERT_TRUE(parsed.has_value()) << RecordKindName(kind);
    EXPECT_EQ(*parsed, kind);
  }
  EXPECT_EQ(RecordKindName(RecordKind::kApproval), "approval");
  EXPECT_EQ(RecordKindName(RecordKind::kBatch), "batch");
  EXPECT_EQ(ParseRecordKind("batch").value(), RecordKind::kBatch);
  // The stored kinds keep their numbers: kBatch was added at the end.
  EXPECT_EQ(static_cast<int>(RecordKind::kShutdown), 7);
  EXPECT_EQ(static_cast<int>(RecordKind::kBatch), 8);
  EXPECT_EQ(RecordKindName(static_cast<RecordKind>(9)), "unknown");
  EXPECT_FALSE(ParseRecordKind("Sign").has_value());
  EXPECT_FALSE(ParseRecordKind("batches").has_value());
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

TEST(RecordTest, BatchRecordsHaveExactBytesAndRoundTrip) {
  const std::string sign =
      "{\"artifact\":{\"digests\":{\"sha256\":\"00ff\"},\"name\":\"a.tar\"},"
      "\"batch\":{\"id\":\"5f0c2b7e9a1d4c3b8e6f0a2d4b6c8e1f\",\"leaf_index\":2},"
      "\"format\":\"batch\",\"key\":{\"name\":\"release-batch\"},\"kind\":\"sign\","
      "\"request\":{\"id\":\"0011\"},\"seq\":7,\"time_us\":1717200000000001,\"v\":1}";
  const std::string batch =
      "{\"batch\":{\"id\":\"5f0c2b7e9a1d4c3b8e6f0a2d4b6c8e1f\","
      "\"note\":\"signer-1/signet-batch/release-batch\\n3\\n"
      "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\\n"
      "signet-batch 5f0c2b7e9a1d4c3b8e6f0a2d4b6c8e1f 1717200000\\n\\n"
      "\xe2\x80\x94 signer-1/signet-batch/release-batch q1w2MEUCIQ==\\n\","
      "\"root\":\"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\",\"tree_size\":3},"
      "\"format\":\"batch\",\"key\":{\"name\":\"release-batch\"},\"kind\":\"batch\","
      "\"request\":{\"id\":\"0011\"},\"seq\":8,\"signature_sha256\":\"cafe\","
      "\"time_us\":1717200000000002,\"v\":1}";
  for (const auto& [record, expected] : std::vector<std::pair<Record, std::string>>{
           {BatchSignRecord(), sign}, {BatchRecord(), batch}}) {
    auto bytes = SerializeRecord(record);
    ASSERT_TRUE(bytes.has_value()) << bytes.error();
    EXPECT_EQ(*bytes, expected);
    EXPECT_EQ(*bytes, Reference(record).dump());
    auto parsed = ParseRecord(*bytes);
    ASSERT_TRUE(parsed.has_value()) << parsed.error();
    EXPECT_EQ(*parsed, record);
    ASSERT_TRUE(parsed->batch.has_value());
  }
  // Extremes of the integers.
  Record r = BatchRecord();
  r.batch->leaf_index = 0;
  r.batch->tree_size = std::numeric_limits<std::uint64_t>::max();
  auto bytes = SerializeRecord(r);
  ASSERT_TRUE(bytes.has_value()) << bytes.error();
  EXPECT_THAT(*bytes, HasSubstr("\"leaf_index\":0,"));
  EXPECT_THAT(*bytes, HasSubstr("\"tree_size\":18446744073709551615}"));
  EXPECT_EQ(ParseRecord(*bytes).value(), r);
  // A record without a batch reference parses to one without (not to an empty reference).
  EXPECT_FALSE(ParseRecord(*SerializeRecord(FixedRecord())).value().batch.has_value());
}

TEST(RecordTest, BatchWithoutIdIsRefused) {
  for (Record r : {BatchSignRecord(), BatchRecord()}) {
    r.batch->id.clear();
    auto bytes = SerializeRecord(r);
    ASSERT_FALSE(bytes.has_value());
    EXPECT_EQ(bytes.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(bytes.error().message(), HasSubstr("batch.id"));
    EXPECT_FALSE(internal::PrepareRecord(r).has_value());
  }
  Record r;
  r.batch.emplace();
  auto bytes = SerializeRecord(r);
  ASSERT_FALSE(bytes.has_value());
  EXPECT_THAT(bytes.error().message(), HasSubstr("batch.id"));
}

TEST(RecordTest, ParseRefusesBatchObjectsThatAreNotCanonicalOrWellTyped) {
  const std::string sign = *SerializeRecord(BatchSignRecord());
  const std::string batch = *SerializeRecord(BatchRecord());
  const auto edited = [](std::string bytes, const std::string& from, const std::string& to) {
    const std::size_t at = bytes.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return bytes.replace(at, from.size(), to);
  };
  const std::string id = "\"id\":\"5f0c2b7e9a1d4c3b8e6f0a2d4b6c8e1f\"";
  const std::vector<std::pair<std::string, std::string>> cases = {
      // Re-ordered and spaced batch objects.
      {edited(sign, id + ",\"leaf_index\":2", "\"leaf_index\":2," + id), "canonical form"},
      {edited(sign, id + ",\"leaf_index\":2", id + ", \"leaf_index\":2"), "canonical form"},
      {edited(sign, "\"batch\":{", "\"batch\": {"), "canonical form"},
      {edited(batch, "\"tree_size\":3}", "\"tree_size\":3 }"), "canonical form"},
      {edited(batch, ",\"root\":\"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\",\"tree_size\":3",
              ",\"tree_size\":3,\"root\":\"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\""),
       "canonical form"},
      // "batch" moved out of its sorted place (after "format").
      {edited(edited(sign, "\"batch\":{" + id + ",\"leaf_index\":2},", ""),
              "\"kind\":", "\"batch\":{" + id + ",\"leaf_index\":2},\"kind\":"),
       "canonical form"},
      // The note's escapes: "\n" spelled \u000a, the em dash \u2014-escaped, "/" escaped.
      {edited(batch, "batch\\n3", "batch\\u000a3"), "canonical form"},
      {edited(batch, "\xe2\x80\x94", "\\u2014"), "canonical form"},
      {edited(batch, "signer-1/signet", "signer-1\\/signet"), "canonical form"},
      // Empty values the serializer leaves out, and id-less references.
      {edited(batch, "\"root\":\"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"", "\"root\":\"\""),
       "canonical form"},
      {edited(sign, id + ",\"leaf_index\":2", ""), "batch.id"},
      {edited(sign, id + ",", ""), "batch.id"},
      {edited(sign, "\"5f0c2b7e9a1d4c3b8e6f0a2d4b6c8e1f\"", "\"\""), "batch.id"},
      // Unknown keys inside "batch".
      {edited(sign, "\"leaf_index\":2}", "\"leaf_index\":2,\"size\":3}"),
       "unknown record field \"batch.size\""},
      {edited(sign, "\"batch\":{", "\"batch\":{\"Id\":\"x\","),
       "unknown record field \"batch.Id\""},
      // Types.
      {edited(sign, "\"batch\":{" + id + ",\"leaf_index\":2}", "\"batch\":\"x\""),
       "record field batch: expected an object"},
      {edited(sign, "\"batch\":{" + id + ",\"leaf_index\":2}", "\"batch\":[]"),
       "record field batch: expected an object"},
      {edited(sign, id, "\"id\":7"), "record field batch.id: expected a string"},
      {edited(sign, "\"leaf_index\":2", "\"leaf_index\":-2"), "record field batch.leaf_index"},
      {edited(sign, "\"leaf_index\":2", "\"leaf_index\":\"2\""), "record field batch.leaf_index"},
      {edited(sign, "\"leaf_index\":2", "\"leaf_index\":2.0"), "record field batch.leaf_index"},
      {edited(batch, "\"tree_size\":3", "\"tree_size\":null"), "record field batch.tree_size"},
      {edited(batch, "\"tree_size\":3", "\"tree_size\":18446744073709551616"),
       "record field batch.tree_size"},
      {edited(batch, "\"root\":\"47DEQ", "\"root\":[\"47DEQ"), "not JSON"},
      {edited(batch, "\"note\":\"signer-1", "\"note\":{\"a\":\"signer-1"), "not JSON"},
  };
  for (const auto& [bytes, message] : cases) {
    auto parsed = ParseRecord(bytes);
    ASSERT_FALSE(parsed.has_value()) << bytes;
    EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument) << bytes;
    EXPECT_THAT(parsed.error().message(), HasSubstr(message)) << bytes;
  }
}

TEST(RecordTest, RandomRecordsMatchNlohmannAndRoundTrip) {
  RandomRecords random(20240601);
  int batch_kinds = 0;
  int batch_notes = 0;  // batch refs whose note holds "\n" and the em dash
  for (int i = 0; i < 2000; ++i) {
    const Record record = random.Next();
    batch_kinds += record.kind == RecordKind::kBatch ? 1 : 0;
    batch_notes += record.batch && record.batch->note.find('\n') != std::string::npos &&
                           record.batch->note.find("\xe2\x80\x94") != std::string::npos
                       ? 1
                       : 0;
    auto bytes = SerializeRecord(record);
    ASSERT_TRUE(bytes.has_value()) << bytes.error();
    ASSERT_EQ(*bytes, Reference(record).dump()) << "record " << i;
    ASSERT_EQ(*bytes, Json::parse(*bytes).dump()) << "record " << i;

    auto prepared = internal::PrepareRecord(record);
    ASSERT_TRUE(prepared.has_value()) << prepared.error();
    EXPECT_EQ(internal::FinishRecord(*prepared, record.seq, record.time_us), *bytes);
    EXPECT_EQ(prepared->middle().empty(), record.signature_sha256.empty());

    auto parsed = ParseRecord(*bytes);
    ASSERT_TRUE(parsed.has_value()) << parsed.error() << "\n" << *bytes;
    ASSERT_EQ(*parsed, record) << *bytes;
  }
  EXPECT_GT(batch_kinds, 100);
  EXPECT_GT(batch_notes, 200);
}

// A preparer that reuses the previous record's bytes writes what PrepareRecord writes, through
// runs of records that share some fields and not others, and through errors.
TEST(RecordTest, PreparerReusingPartsMatchesPrepareRecord) {
  RandomRecords random(6962);
  std::vector<Record> records;
  records.reserve(3000);
  records.push_back(random.Next());
  std::mt19937 pick(7);
  for (int i = 1; i < 3000; ++i) {
    const Record fresh = random.Next();
    Record r = pick() % 8 == 0 ? fresh : records.back();
    // The item fields change from record to record; the others now and then.
    r.artifact_name = fresh.artifact_name;
    r.artifact_size = fresh.artifact_size;
    r.digests = fresh.digests;
    r.batch = fresh.batch;
    r.seq = fresh.seq;
    r.time_us = fresh.time_us;
    switch (pick() % 40) {
      case 0:
        r.signature_sha256 = fresh.signature_sha256;
        break;
      case 1:
        r.approvers = fresh.approvers;
        break;
      case 2:
        r.algorithm = fresh.algorithm;
        break;
      case 3:
        r.requester.groups = fresh.requester.groups;
        break;
      case 4:
        r.kind = fresh.kind;
        break;
      case 5:
        r.policy_version = fresh.policy_version;
        break;
      case 6:
        r.tool_version = "bad \xff";
        break;
      case 7:
        r.algorithm = "bad \xc0\xaf";
        break;
      case 8:
        r.artifact_name = "bad \xed\xa0\x80";
        break;
      default:
        break;
    }
    records.push_back(std::move(r));
  }
  internal::RecordPreparer preparer;
  std::size_t errors = 0;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const Record& record = records[i];
    auto reused = preparer.Prepare(record);
    auto alone = internal::PrepareRecord(record);
    ASSERT_EQ(reused.has_value(), alone.has_value()) << "record " << i;
    if (!alone) {
      ++errors;
      EXPECT_EQ(reused.error().message(), alone.error().message()) << "record " << i;
      continue;
    }
    EXPECT_EQ(reused->head(), alone->head()) << "record " << i;
    EXPECT_EQ(reused->middle(), alone->middle()) << "record " << i;
    EXPECT_EQ(internal::FinishRecord(*reused, record.seq, record.time_us), Reference(record).dump())
        << "record " << i;
  }
  EXPECT_GT(errors, 100u);
  EXPECT_GT(records.size() - errors, 1000u);
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
      {"batch.id", [](Record& r, const std::string& s) { r.batch.emplace().id = s; }},
      {"batch.note",
       [](Record& r, const std::string& s) {
         r.batch.emplace().id = "ab";
         r.batch->note = s;
       }},
      {"batch.root",
       [](Record& r, const std::string& s) {
         r.batch.emplace().id = "ab";
         r.batch->root = s;
       }},
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
