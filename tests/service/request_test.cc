// The sign body parser's fast path against its DOM reference path, and the batch answer's
// direct writer against nlohmann: same results, same errors, same bytes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "appliance/service/internal/answer.h"
#include "appliance/service/internal/json_scan.h"
#include "appliance/service/internal/request.h"
#include "tests/service/request_outcome.h"

namespace signet::service::internal {
namespace {

using nlohmann::json;

// What ParseSignBody and then CheckItems (for `hash`) made of `body`, as text to compare.
std::string Outcome(const std::string& body, ParsePath path, hsm::Hash hash) {
  return SignBodyOutcome(body, path, hash);
}

void ExpectSame(const std::string& body) {
  for (hsm::Hash hash : {hsm::Hash::kSha256, hsm::Hash::kSha384, hsm::Hash::kSha512}) {
    EXPECT_EQ(Outcome(body, ParsePath::kFast, hash), Outcome(body, ParsePath::kDom, hash))
        << body.substr(0, 300);
  }
}

const std::string kSha256(64, 'a');

json Item(const std::string& name, json size, json digests) {
  json item{{"name", name}, {"digests", std::move(digests)}};
  if (!size.is_null()) {
    item["size"] = std::move(size);
  }
  return item;
}

json Body(json items) {
  return json{{"key", "batch"},
              {"tool", {{"name", "signet"}, {"version", "1.0"}}},
              {"client_host", "ci-1"},
              {"items", std::move(items)}};
}

TEST(SignBodyTest, FastPathAgreesWithTheDomOnBodiesOfEveryShape) {
  std::vector<std::string> bodies;
  const json good = Body(json::array(
      {Item("a", 1, {{"sha256", kSha256}}), Item("dir/b", 0, {{"sha256", std::string(64, 'B')}})}));
  bodies.push_back(good.dump());
  auto with = [&](const std::function<void(json&)>& change) {
    json body = good;
    change(body);
    bodies.push_back(body.dump());
  };
  with([](json& b) { b["ticket"] = "CHG-1"; });
  with([](json& b) { b["ticket"] = std::string(1025, 't'); });
  with([](json& b) { b["key"] = ""; });
  with([](json& b) { b["key"] = 7; });
  with([](json& b) { b.erase("key"); });
  with([](json& b) { b["colour"] = "blue"; });
  with([](json& b) { b["tool"].erase("name"); });
  with([](json& b) { b["tool"]["name"] = ""; });
  with([](json& b) { b["tool"]["version"] = 2; });
  with([](json& b) { b["tool"]["extra"] = "x"; });
  with([](json& b) { b["tool"] = "signet"; });
  with([](json& b) { b.erase("tool"); });
  with([](json& b) { b["client_host"] = nullptr; });
  with([](json& b) { b["items"] = json::array(); });
  with([](json& b) { b["items"] = json::object(); });
  with([](json& b) { b.erase("items"); });
  with([](json& b) { b["items"].push_back(7); });
  with([](json& b) { b["items"].push_back(json::array()); });
  with([](json& b) { b["items"][1]["colour"] = "red"; });
  with([](json& b) { b["items"][1].erase("name"); });
  with([](json& b) { b["items"][1].erase("size"); });
  with([](json& b) { b["items"][1].erase("digests"); });
  with([](json& b) { b["items"][1]["name"] = ""; });
  with([](json& b) { b["items"][1]["name"] = 5; });
  with([](json& b) { b["items"][1]["name"] = std::string(4096, 'n'); });
  with([](json& b) { b["items"][1]["name"] = std::string(4097, 'n'); });
  with([](json& b) { b["items"][1]["name"] = "caf\xc3\xa9 \"q\" \\ \t\x01 \xe2\x82\xac"; });
  with([](json& b) { b["items"][1]["size"] = -1; });
  with([](json& b) { b["items"][1]["size"] = 1.5; });
  with([](json& b) { b["items"][1]["size"] = "1"; });
  with([](json& b) { b["items"][1]["size"] = nullptr; });
  with([](json& b) { b["items"][1]["size"] = std::uint64_t{18446744073709551615u}; });
  with([](json& b) { b["items"][1]["digests"] = json::object(); });
  with([](json& b) { b["items"][1]["digests"] = "x"; });
  with([](json& b) { b["items"][1]["digests"]["md5"] = std::string(32, 'a'); });
  with([](json& b) { b["items"][1]["digests"]["sha1"] = std::string(40, 'a'); });
  with([](json& b) { b["items"][1]["digests"]["sha3"] = std::string(64, 'a'); });
  with([](json& b) { b["items"][1]["digests"]["sha384"] = std::string(96, 'C'); });
  with([](json& b) { b["items"][1]["digests"]["sha512"] = std::string(128, 'd'); });
  with([](json& b) { b["items"][1]["digests"]["blake2b512"] = std::string(128, 'e'); });
  with([](json& b) { b["items"][1]["digests"]["sha256"] = std::string(62, 'a'); });
  with([](json& b) { b["items"][1]["digests"]["sha256"] = std::string(64, 'g'); });
  with([](json& b) { b["items"][1]["digests"]["sha256"] = 12; });
  with([](json& b) { b["items"][1]["digests"] = {{"sha512", std::string(128, 'a')}}; });
  with([](json& b) {
    for (int i = 0; i < 10; ++i) {
      b["items"][1]["digests"]["x" + std::to_string(i)] = "00";
    }
  });
  // Duplicate fields (last wins in the DOM), which json cannot hold: written by hand.
  const std::string digest = "{\"sha256\":\"" + kSha256 + "\"}";
  bodies.push_back(
      "{\"key\":\"a\",\"key\":\"batch\",\"tool\":{\"name\":\"s\"},\"items\":[{\"name\":"
      "\"x\",\"digests\":" +
      digest + "}]}");
  bodies.push_back(
      "{\"key\":\"batch\",\"tool\":{\"name\":\"s\",\"name\":\"t\"},\"items\":[{\"name\":"
      "\"x\",\"digests\":" +
      digest + "}]}");
  bodies.push_back(
      "{\"key\":\"batch\",\"tool\":{\"name\":\"s\"},\"items\":[{\"name\":\"x\","
      "\"name\":\"y\",\"digests\":" +
      digest + "}]}");
  bodies.push_back(
      "{\"key\":\"batch\",\"tool\":{\"name\":\"s\"},\"items\":[{\"name\":\"x\","
      "\"digests\":{\"sha256\":\"zz\",\"sha256\":\"" +
      kSha256 + "\"}}]}");
  bodies.push_back(
      "{\"key\":\"batch\",\"tool\":{\"name\":\"s\"},\"items\":[],\"items\":[{\"name\":"
      "\"x\",\"digests\":" +
      digest + "}]}");
  for (const char* text : {"", "{", "[1,2]", "\"x\"", "null", "{} x", "{\"key\":\"\xff\"}",
                           "{\"items\":[[[[[[[[[[]]]]]]]]]]}", " {\"key\":\"k\"} "}) {
    bodies.push_back(text);
  }
  // Bodies the subset scanner leaves to nlohmann's SAX parser, or reads with odd spacing.
  std::string escaped = good.dump();
  escaped.replace(escaped.find("\"dir/b\""), 7, "\"dir\\/\\u00e9\\\"b\"");
  bodies.push_back(escaped);
  std::string spaced = good.dump(2);
  bodies.push_back(spaced);
  bodies.push_back("\xef\xbb\xbf" + good.dump());
  std::string zero_size = good.dump();
  zero_size.replace(zero_size.find("\"size\":0"), 8, "\"size\":00");
  bodies.push_back(zero_size);
  for (const char* size : {"1.0", "1e2", "-0", "18446744073709551616", "18446744073709551615"}) {
    std::string body = good.dump();
    body.replace(body.find("\"size\":0"), 8, std::string("\"size\":") + size);
    bodies.push_back(body);
  }
  for (const std::string& body : bodies) {
    ExpectSame(body);
  }
}

// Random edits of a good body: whatever the fast path makes of them, the DOM makes the same.
TEST(SignBodyTest, FastPathAgreesWithTheDomOnMutatedBodies) {
  const std::string good =
      Body(json::array({Item("a/\xc3\xa9", 1, {{"sha256", kSha256}}),
                        Item("b", 22, {{"sha256", kSha256}, {"sha512", std::string(128, 'f')}})}))
          .dump();
  const std::string alphabet = "{}[]\",:0123456789abcdefABCDEF-.e \\ntu\x01\xc3\xa9";
  std::mt19937 rng(6962);
  for (int round = 0; round < 4000; ++round) {
    std::string body = good;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !body.empty(); ++e) {
      const std::size_t at = rng() % body.size();
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          body[at] = c;
          break;
        case 1:
          body.insert(body.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        default:
          body.erase(at, 1);
      }
    }
    EXPECT_EQ(Outcome(body, ParsePath::kFast, hsm::Hash::kSha256),
              Outcome(body, ParsePath::kDom, hsm::Hash::kSha256))
        << body;
  }
}

// CBOR whose map or array declares more entries than a container can hold makes nlohmann throw
// even when asked not to (found by tests/fuzz/request_fuzz): the body is refused as not valid
// CBOR, a client's error, not a failure of the handler.
TEST(SignBodyTest, CborThatDeclaresAnImpossibleSizeIsRefused) {
  // An array of one map whose declared size is 2^64 - 1 - 0x4444... entries.
  const std::string bodies[] = {
      std::string("\x81\xbb\xbb\xbb\xbb\xbb\xbb\xbb\xbb\xbb", 10),
      std::string("\x9b\xff\xff\xff\xff\xff\xff\xff\xf0", 9),
      std::string("\xbb\xff\xff\xff\xff\xff\xff\xff\xf0", 9),
  };
  for (const std::string& body : bodies) {
    auto parsed = ParseSignBody(body, /*cbor=*/true);
    ASSERT_FALSE(parsed);
    EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(parsed.error().message().find("not valid CBOR"), std::string::npos)
        << parsed.error().message();
  }
}

// Logs SAX events; takes them all.
struct EventLog {
  std::string log;
  bool null() { return Add("null"); }
  bool boolean(bool v) { return Add(v ? "true" : "false"); }
  bool number_integer(json::number_integer_t v) { return Add("int " + std::to_string(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return Add("uint " + std::to_string(v)); }
  bool number_float(json::number_float_t /*v*/, const std::string& s) { return Add("float " + s); }
  bool string(std::string& s) { return Add("string " + s); }
  bool binary(json::binary_t& /*v*/) { return Add("binary"); }
  bool start_object(std::size_t /*n*/) { return Add("{"); }
  bool key(std::string& s) { return Add("key " + s); }
  bool end_object() { return Add("}"); }
  bool start_array(std::size_t /*n*/) { return Add("["); }
  bool end_array() { return Add("]"); }
  bool parse_error(std::size_t /*at*/, const std::string& /*token*/, const json::exception& /*e*/) {
    return false;
  }
  bool Add(const std::string& event) {
    log += event;
    log += '\n';
    return true;
  }
};

// What the subset scanner accepts, nlohmann accepts, with the same events.
void ExpectScannerAgrees(const std::string& text) {
  EventLog mine;
  if (!JsonSubsetScanner(text, mine).Scan()) {
    return;
  }
  EventLog theirs;
  ASSERT_TRUE(json::sax_parse(text.begin(), text.end(), &theirs)) << text;
  EXPECT_EQ(mine.log, theirs.log) << text;
}

TEST(JsonScanTest, WhatTheSubsetScannerAcceptsNlohmannReadsTheSame) {
  int accepted = 0;
  for (const std::string text : {"{}",
                                 "[]",
                                 " { \"a\" : [ 1 , 0 , \"x\" ] } \n",
                                 "{\"a\":{\"b\":{}}}",
                                 "0",
                                 "18446744073709551615",
                                 "18446744073709551616",
                                 "01",
                                 "1.5",
                                 "1e3",
                                 "-1",
                                 "\"\\n\"",
                                 "\"caf\xc3\xa9\"",
                                 "\"\xc0\xaf\"",
                                 "\"\x7f\"",
                                 "\"\x01\"",
                                 "\xef\xbb\xbf{}",
                                 "{\"a\":1,}",
                                 "[1,]",
                                 "{\"a\" 1}",
                                 "{} {}",
                                 "[true]",
                                 "",
                                 "   ",
                                 "{\"a\":\"b\"",
                                 "[[[[[[]]]]]]"}) {
    ExpectScannerAgrees(text);
    EventLog log;
    accepted += JsonSubsetScanner(text, log).Scan() ? 1 : 0;
  }
  EXPECT_EQ(accepted, 9);
  const std::string good =
      Body(json::array({Item("a/\xc3\xa9", 1, {{"sha256", kSha256}}), Item("b", 22, {})})).dump();
  const std::string alphabet = "{}[]\",:0123456789abcdefABCDEF-.e \\ntu\x01\xc3\xa9\x7f\t";
  std::mt19937 rng(9162);
  for (int round = 0; round < 20000; ++round) {
    std::string text = good;
    for (int e = 1 + static_cast<int>(rng() % 3); e > 0 && !text.empty(); --e) {
      const std::size_t at = rng() % text.size();
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          text[at] = c;
          break;
        case 1:
          text.insert(text.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        default:
          text.erase(at, 1);
      }
    }
    ExpectScannerAgrees(text);
  }
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Strings that need care: escapes, controls, DEL, non-ASCII, invalid UTF-8, long ones.
std::vector<std::string> TrickyStrings() {
  std::vector<std::string> out = {"",
                                  "plain",
                                  "quote \" backslash \\ slash /",
                                  "\b\f\n\r\t",
                                  std::string("\x00\x01\x1f\x7f", 4),
                                  "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91",
                                  "bad \xff byte",
                                  "cut \xe2\x82",
                                  "surrogate \xed\xa0\x80",
                                  "overlong \xc0\xaf",
                                  std::string(5000, 'x') + "\n" + std::string(70000, 'y')};
  std::mt19937 rng(42);
  for (int i = 0; i < 300; ++i) {
    std::string s(rng() % 40, ' ');
    for (char& c : s) {
      c = static_cast<char>(rng() % 256);
    }
    out.push_back(s);
  }
  return out;
}

TEST(BatchAnswerTest, JsonStringsAreWhatNlohmannWrites) {
  for (const std::string& s : TrickyStrings()) {
    std::string mine;
    AppendJsonString(mine, s);
    EXPECT_EQ(mine, Dump(json(s))) << json(s).dump(-1, ' ', true, json::error_handler_t::replace);
  }
}

TEST(BatchAnswerTest, RenderedAnswerIsTheBytesOfTheJsonAnswer) {
  const std::vector<std::string> names = TrickyStrings();
  const std::string note =
      "host/signet-batch/k\n3\nroot=\n\n\xe2\x80\x94 host/signet-batch/k AbC=\n";
  for (const bool first_proofs : {false, true}) {
    BatchAnswer answer{.key = "batch",
                       .format = "batch",
                       .key_fingerprint = "00ff",
                       .request_id = "req-\"1\"",
                       .batches = {},
                       .items = {}};
    answer.batches.push_back(
        {.id = "b1", .tree_size = 7, .note = note, .proofs = first_proofs, .items = 0});
    answer.batches.push_back(
        {.id = "b\n2", .tree_size = 1u << 20, .note = "", .proofs = !first_proofs, .items = 0});
    for (std::size_t i = 0; i < names.size(); ++i) {
      const std::size_t b = i < names.size() / 3 ? 0 : 1;
      ++answer.batches[b].items;
      BatchAnswer::Item item;
      item.name = names[i];
      item.batch = b;
      item.leaf_index = i * 3;
      if (answer.batches[b].proofs) {
        item.leaf_hash = "h" + std::to_string(i) + "=";
        for (std::size_t k = 0; k < i % 4; ++k) {
          item.proof.push_back("p" + std::to_string(k) + "/+=");
        }
      }
      answer.items.push_back(std::move(item));
    }
    for (const std::uint64_t first : {std::uint64_t{0}, std::uint64_t{123456789012345}}) {
      const std::string expected = Dump(BatchAnswerJson(answer, first));
      EXPECT_EQ(FinishBatchAnswer(RenderBatchAnswer(answer), first), expected);
    }
  }
}

}  // namespace
}  // namespace signet::service::internal
