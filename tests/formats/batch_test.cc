// Merkle batch receipts: the leaf bytes as BATCH.md documents them, the statement, receipts for
// many tree sizes, and one distinct failure for each thing that can be changed. The note's
// signature is checked by the caller (NoteCheck); here a stand-in check binds the note to its text
// exactly, and the real signatures are tested end to end in tests/service and tests/cli.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "appliance/formats/formats.h"

namespace signet::formats {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kKey =
    "1111111111111111111111111111111111111111111111111111111111111111";
// A stand-in for a signed note: the statement, a blank line and one signature line whose
// "signature" is a hash of the text (so any change to the text is caught, as by a real one).
std::string FakeNote(const std::string& text) {
  const auto tag = pipeline::LeafHash(
      std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
  return text + "\n— test-key " + Base64Encode(tag) + "\n";
}

// Accepts exactly FakeNote(text); kNotFound when the signature line names another key.
Result<std::string> FakeCheck(std::string_view note) {
  const std::size_t at = note.rfind("\n\n");
  if (at == std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "not a signed note");
  }
  const std::string text(note.substr(0, at + 1));
  if (note.substr(at + 1).find("test-key") == std::string_view::npos) {
    return MakeError(ErrorCode::kNotFound, "no signature by test-key");
  }
  if (note != FakeNote(text)) {
    return MakeError(ErrorCode::kCrypto, "the signature by test-key does not verify");
  }
  return text;
}

Bytes Digest(std::uint8_t seed) { return Bytes(32, seed); }

std::string Hex(std::string_view text) {
  return HexEncode(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

BatchLeaf Leaf(int i) {
  return BatchLeaf{.name = "dist/pkg-" + std::to_string(i) + ".tar.gz",
                   .size = 4096u + static_cast<std::uint64_t>(i),
                   .digest_algorithm = "sha256",
                   .digest = Digest(static_cast<std::uint8_t>(i)),
                   .request_id = "0123456789abcdef0123456789abcdef"};
}

struct Batch {
  std::vector<BatchLeaf> leaves;
  std::vector<Receipt> receipts;
  std::string note;
};

Batch MakeBatch(int n) {
  Batch batch;
  std::vector<pipeline::MerkleHash> hashes;
  for (int i = 0; i < n; ++i) {
    batch.leaves.push_back(Leaf(i));
    hashes.push_back(*BatchLeafHash(batch.leaves.back()));
  }
  pipeline::MerkleTree tree(std::move(hashes));
  const std::string id = "00112233445566778899aabbccddeeff";
  auto text = BatchStatementText({.origin = BatchOrigin("host-1", "release"),
                                  .tree_size = tree.size(),
                                  .root = tree.Root(),
                                  .batch_id = id,
                                  .time = 1'700'000'000});
  EXPECT_TRUE(text) << text.error();
  batch.note = FakeNote(*text);
  std::vector<std::uint64_t> seqs;
  for (int i = 0; i < n; ++i) {
    seqs.push_back(100 + static_cast<std::uint64_t>(i));
  }
  auto receipts = MakeReceipts(batch.leaves, tree, id, batch.note, std::string(kKey), seqs);
  EXPECT_TRUE(receipts) << receipts.error();
  batch.receipts = std::move(*receipts);
  return batch;
}

ReceiptVerdict Check(const Receipt& r, const BatchLeaf& file) {
  return VerifyReceipt(r, file.size, file.digest, kKey, FakeCheck);
}

// IsUtf8 and AppendJsonString look at eight bytes at a time while they see nothing to do; every
// byte, and every multi-byte sequence (whole, cut or malformed), at every offset of a word and
// across word boundaries, must still come out as nlohmann's dump writes it.
TEST(JsonTextTest, EveryByteAndSequenceAtEveryOffsetIsWrittenAsNlohmannDoes) {
  const auto check = [](const std::string& text) {
    std::string mine;
    AppendJsonString(mine, text);
    const nlohmann::json value = text;
    ASSERT_EQ(mine, value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
        << Hex(text);
    bool valid = true;
    try {
      (void)value.dump();
    } catch (const nlohmann::json::type_error&) {
      valid = false;
    }
    ASSERT_EQ(IsUtf8(text), valid) << Hex(text);
    std::string refusing = "x";
    ASSERT_EQ(AppendJsonStringIfUtf8(refusing, text), valid) << Hex(text);
    ASSERT_EQ(refusing, valid ? "x" + mine : "x") << Hex(text);
  };
  for (std::size_t length = 1; length <= 24; ++length) {
    for (std::size_t at = 0; at < length; ++at) {
      for (int byte = 0; byte < 256; ++byte) {
        std::string text(length, 'a');
        text[at] = static_cast<char>(byte);
        check(text);
      }
    }
  }
  const std::vector<std::string> sequences = {"\xc3\xa9",
                                              "\xe2\x82\xac",
                                              "\xf0\x9f\x94\x91",
                                              "\xc3",
                                              "\xe2\x82",
                                              "\xf0\x9f\x94",
                                              "\xed\xa0\x80",
                                              "\xc0\xaf",
                                              "\xf4\x90\x80\x80",
                                              "\xe0\x80\xaf",
                                              "\x80",
                                              "\"\\",
                                              "\r\n",
                                              std::string(1, '\0')};
  for (const std::string& sequence : sequences) {
    for (std::size_t before = 0; before <= 17; ++before) {
      for (std::size_t after = 0; after <= 9; ++after) {
        check(std::string(before, 'b') + sequence + std::string(after, 'c'));
      }
    }
  }
}

TEST(BatchLeafTest, BytesAreTheDocumentedEncoding) {
  const BatchLeaf leaf{.name = "a/b.bin",
                       .size = 258,
                       .digest_algorithm = "sha256",
                       .digest = Bytes{0xaa, 0xbb},
                       .request_id = "r1"};
  auto bytes = BatchLeafBytes(leaf);
  ASSERT_TRUE(bytes) << bytes.error();
  const std::string expected_hex = Hex("signet-batch-leaf/v1\n") + "00000007" + Hex("a/b.bin") +
                                   "0000000000000102" + "06" + Hex("sha256") + "02aabb" + "02" +
                                   Hex("r1");
  EXPECT_EQ(HexEncode(*bytes), expected_hex);
  EXPECT_EQ(*BatchLeafHash(leaf), pipeline::LeafHash(*bytes));

  BatchLeaf empty_name = leaf;
  empty_name.name.clear();
  EXPECT_FALSE(BatchLeafBytes(empty_name));
  BatchLeaf long_digest = leaf;
  long_digest.digest = Bytes(65, 1);
  EXPECT_THAT(BatchLeafBytes(long_digest).error().message(), HasSubstr("digest"));
}

TEST(BatchStatementTest, RoundTripAndRefusals) {
  const BatchStatement statement{.origin = "host/signet-batch/k",
                                 .tree_size = 65536,
                                 .root = pipeline::EmptyTreeHash(),
                                 .batch_id = "00112233445566778899aabbccddeeff",
                                 .time = 1'700'000'000};
  auto text = BatchStatementText(statement);
  ASSERT_TRUE(text) << text.error();
  EXPECT_EQ(*text, "host/signet-batch/k\n65536\n" + Base64Encode(pipeline::EmptyTreeHash()) +
                       "\nsignet-batch 00112233445566778899aabbccddeeff 1700000000\n");
  auto parsed = ParseBatchStatement(*text);
  ASSERT_TRUE(parsed) << parsed.error();
  EXPECT_EQ(*parsed, statement);

  for (const std::string& bad :
       {std::string("o\n0\n") + Base64Encode(pipeline::EmptyTreeHash()) +
            "\nsignet-batch 00112233445566778899aabbccddeeff 1\n",
        std::string("o\n01\n") + Base64Encode(pipeline::EmptyTreeHash()) +
            "\nsignet-batch 00112233445566778899aabbccddeeff 1\n",
        std::string("o\n1\nAAAA\nsignet-batch 00112233445566778899aabbccddeeff 1\n"),
        std::string("o\n1\n") + Base64Encode(pipeline::EmptyTreeHash()) +
            "\nsignet-batch 00112233445566778899AABBCCDDEEFF 1\n",
        std::string("o\n1\n") + Base64Encode(pipeline::EmptyTreeHash()) + "\n",
        std::string("o\n1\n") + Base64Encode(pipeline::EmptyTreeHash()) +
            "\nsignet-batch 00112233445566778899aabbccddeeff 1"}) {
    EXPECT_FALSE(ParseBatchStatement(bad)) << bad;
  }
  BatchStatement no_size = statement;
  no_size.tree_size = 0;
  EXPECT_FALSE(BatchStatementText(no_size));
}

TEST(ReceiptTest, EveryLeafOfEveryTreeSizeVerifiesAfterARoundTrip) {
  for (int n : {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 100}) {
    const Batch batch = MakeBatch(n);
    ASSERT_EQ(batch.receipts.size(), static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      auto text = SerializeReceipt(batch.receipts[i]);
      ASSERT_TRUE(text) << text.error();
      auto parsed = ParseReceipt(*text);
      ASSERT_TRUE(parsed) << parsed.error() << "\n" << *text;
      EXPECT_EQ(*parsed, batch.receipts[i]);
      EXPECT_EQ(parsed->seq, 100u + static_cast<std::uint64_t>(i));
      const ReceiptVerdict verdict = Check(*parsed, batch.leaves[i]);
      EXPECT_TRUE(verdict.ok()) << n << "/" << i << ": " << verdict.message;
      ASSERT_TRUE(verdict.statement);
      EXPECT_EQ(verdict.statement->tree_size, static_cast<std::uint64_t>(n));
    }
  }
}

TEST(ReceiptTest, EachChangeFailsWithItsOwnReason) {
  const Batch batch = MakeBatch(10);
  const Receipt& good = batch.receipts[6];
  const BatchLeaf& file = batch.leaves[6];
  ASSERT_TRUE(Check(good, file).ok());

  BatchLeaf changed_file = file;
  changed_file.digest[0] ^= 1;
  EXPECT_EQ(Check(good, changed_file).failure, ReceiptFailure::kFileChanged);
  BatchLeaf longer_file = file;
  ++longer_file.size;
  EXPECT_EQ(Check(good, longer_file).failure, ReceiptFailure::kFileChanged);
  EXPECT_THAT(Check(good, longer_file).message, HasSubstr("bytes"));

  Receipt leaf_name = good;
  leaf_name.leaf.name[0] = 'X';
  EXPECT_EQ(Check(leaf_name, file).failure, ReceiptFailure::kLeafAltered);
  Receipt leaf_digest = good;
  leaf_digest.leaf.digest[5] ^= 0x80;
  EXPECT_EQ(Check(leaf_digest, file).failure, ReceiptFailure::kLeafAltered);

  Receipt proof = good;
  proof.inclusion_proof[1][3] ^= 1;
  EXPECT_EQ(Check(proof, file).failure, ReceiptFailure::kProofWrong);
  Receipt index = good;
  index.leaf_index = 7;
  EXPECT_EQ(Check(index, file).failure, ReceiptFailure::kProofWrong);
  Receipt leaf_hash = good;  // leaf and leaf_hash changed together: the proof catches it
  leaf_hash.leaf.name = "forged";
  leaf_hash.leaf_hash = *BatchLeafHash(leaf_hash.leaf);
  EXPECT_EQ(Check(leaf_hash, file).failure, ReceiptFailure::kProofWrong);

  Receipt note = good;
  note.note[note.note.find("signet-batch ") + 20] ^= 1;
  EXPECT_EQ(Check(note, file).failure, ReceiptFailure::kSignatureWrong);
  Receipt other_signer = good;
  other_signer.note.replace(other_signer.note.find("test-key"), 8, "spy--key");
  EXPECT_EQ(Check(other_signer, file).failure, ReceiptFailure::kKeyUnknown);
  EXPECT_EQ(VerifyReceipt(good, file.size, file.digest, std::string(64, '2'), FakeCheck).failure,
            ReceiptFailure::kKeyUnknown);

  Receipt batch_id = good;
  batch_id.batch_id[0] = batch_id.batch_id[0] == 'a' ? 'b' : 'a';
  EXPECT_EQ(Check(batch_id, file).failure, ReceiptFailure::kNoteMismatch);
  Receipt size = good;
  size.tree_size = 11;
  EXPECT_EQ(Check(size, file).failure, ReceiptFailure::kNoteMismatch);
}

TEST(ReceiptTest, ParserRefusesWhatIsNotAReceipt) {
  const Batch batch = MakeBatch(3);
  const std::string good = *SerializeReceipt(batch.receipts[1]);
  auto with = [&](const std::string& from, const std::string& to) {
    std::string text = good;
    const std::size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return text.replace(at, from.size(), to);
  };
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"[]", "not a JSON object"},
      {"{\"type\": \"x\"}", "type is \"x\""},
      {with("\"leaf_index\": 1", "\"leaf_index\": 3"), "not below tree_size"},
      {with("\"leaf_index\": 1", "\"leaf_index\": -1"), "leaf_index has the wrong type"},
      {with("\"seq\"", "\"colour\": 1, \"seq\""), "unknown field \"colour\""},
      {with("\"sha256\"", "\"\""), "digest_algorithm"},
      {with("\"key_fingerprint\": \"1", "\"key_fingerprint\": \"X"), "key_fingerprint"},
      {good.substr(0, good.size() / 2), "not a JSON object"},
      {std::string(kMaxReceiptBytes + 1, ' '), "at most 64 KiB"},
  };
  for (const Case& c : cases) {
    auto parsed = ParseReceipt(c.text);
    ASSERT_FALSE(parsed) << c.text.substr(0, 300);
    EXPECT_THAT(parsed.error().message(), HasSubstr(c.message)) << c.text.substr(0, 300);
  }
}

// What SerializeReceipt wrote before it built the text by hand: nlohmann's dump(2) of the object
// (keys sorted). The receipt format is this text, byte for byte (BATCH.md: pretty-printed, keys
// sorted, ending in a newline); it must not drift.
std::string ReferenceText(const Receipt& receipt, int indent = 2) {
  using nlohmann::json;
  json proof = json::array();
  for (const auto& hash : receipt.inclusion_proof) {
    proof.push_back(Base64Encode(hash));
  }
  json out{{"type", std::string(kReceiptType)},
           {"leaf",
            {{"name", receipt.leaf.name},
             {"size", receipt.leaf.size},
             {"digest_algorithm", receipt.leaf.digest_algorithm},
             {"digest", HexEncode(receipt.leaf.digest)},
             {"request_id", receipt.leaf.request_id}}},
           {"leaf_hash", Base64Encode(receipt.leaf_hash)},
           {"leaf_index", receipt.leaf_index},
           {"tree_size", receipt.tree_size},
           {"batch_id", receipt.batch_id},
           {"inclusion_proof", std::move(proof)},
           {"note", receipt.note},
           {"key_fingerprint", receipt.key_fingerprint}};
  if (receipt.seq) {
    out["seq"] = *receipt.seq;
  }
  return out.dump(indent) + "\n";
}

TEST(ReceiptTest, TextIsByteForByteNlohmannsPrettyDump) {
  const Batch batch = MakeBatch(5);
  std::vector<Receipt> cases = batch.receipts;
  Receipt one = MakeBatch(1).receipts[0];  // an empty proof
  cases.push_back(one);
  one.seq.reset();  // no seq
  cases.push_back(one);
  // Names that need escaping or are not ASCII, and a note escaped differently each time.
  for (const std::string& name : std::vector<std::string>{
           "a \"quoted\" name", "back\\slash", std::string("ctl\x01\x1f\x7f", 6), "tab\tnl\nend",
           "caf\xc3\xa9/\xe2\x80\x94/\xf0\x9f\x93\xa6", "/slash/", "x"}) {
    Receipt r = batch.receipts[2];
    r.leaf.name = name;
    r.note = "note for " + name + "\n\n\xe2\x80\x94 k sig\n";
    cases.push_back(r);
  }
  for (std::size_t i = 0; i < cases.size(); ++i) {
    auto text = SerializeReceipt(cases[i]);
    ASSERT_TRUE(text) << i << ": " << text.error();
    EXPECT_EQ(*text, ReferenceText(cases[i])) << i;
    auto parsed = ParseReceipt(*text);
    ASSERT_TRUE(parsed) << i << ": " << parsed.error();
    EXPECT_EQ(*parsed, cases[i]) << i;
    // A bundle's line: nlohmann's compact dump, one newline, at the end only.
    auto line = SerializeReceipt(cases[i], ReceiptLayout::kOneLine);
    ASSERT_TRUE(line) << i << ": " << line.error();
    EXPECT_EQ(*line, ReferenceText(cases[i], -1)) << i;
    EXPECT_EQ(std::count(line->begin(), line->end(), '\n'), 1) << i;
    auto reparsed = ParseReceipt(*line);
    ASSERT_TRUE(reparsed) << i << ": " << reparsed.error();
    EXPECT_EQ(*reparsed, cases[i]) << i;
  }
  // The same notes again, in another order.
  for (std::size_t i = cases.size(); i-- > 0;) {
    EXPECT_EQ(*SerializeReceipt(cases[i]), ReferenceText(cases[i])) << i;
  }
  // A string that is not UTF-8 is refused, as before, and does not poison the next receipt.
  Receipt bad = batch.receipts[0];
  bad.note = "bad \xff note";
  auto refused = SerializeReceipt(bad);
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(), HasSubstr("not valid UTF-8"));
  EXPECT_FALSE(SerializeReceipt(bad));
  bad.note = batch.receipts[0].note;
  bad.leaf.name = "bad \xc3 name";
  EXPECT_FALSE(SerializeReceipt(bad));
  EXPECT_EQ(*SerializeReceipt(batch.receipts[0]), ReferenceText(batch.receipts[0]));
  // AppendReceipt appends the same bytes to what the buffer holds, and leaves it as it was when it
  // refuses a receipt, however far it got.
  std::string buffer = "kept\n";
  ASSERT_TRUE(AppendReceipt(buffer, batch.receipts[1], ReceiptLayout::kOneLine));
  EXPECT_EQ(buffer, "kept\n" + ReferenceText(batch.receipts[1], -1));
  const std::string before = buffer;
  EXPECT_FALSE(AppendReceipt(buffer, bad));  // its name, late in the text, is not UTF-8
  EXPECT_EQ(buffer, before);
}

// The size target: under 2 KiB per artifact in a batch of 65,536.
TEST(ReceiptTest, AReceiptInABatchOf65536IsUnder2KiB) {
  std::vector<pipeline::MerkleHash> hashes;
  std::vector<BatchLeaf> leaves;
  for (int i = 0; i < 65536; ++i) {
    leaves.push_back(Leaf(i));
    hashes.push_back(*BatchLeafHash(leaves.back()));
  }
  pipeline::MerkleTree tree(std::move(hashes));
  const std::string id = "00112233445566778899aabbccddeeff";
  const std::string note = FakeNote(*BatchStatementText({.origin = BatchOrigin("host-1", "batch"),
                                                         .tree_size = tree.size(),
                                                         .root = tree.Root(),
                                                         .batch_id = id,
                                                         .time = 1'700'000'000}));
  // A real ECDSA P-256 note signature line is about 100 bytes; the stand-in is shorter.
  const std::string real_size_note = note + std::string(80, 'x');
  auto receipts = MakeReceipts(leaves, tree, id, real_size_note, std::string(kKey), {});
  ASSERT_TRUE(receipts) << receipts.error();
  for (std::size_t i : {0u, 12345u, 65535u}) {
    EXPECT_EQ((*receipts)[i].inclusion_proof.size(), 16u);
    const std::size_t size = SerializeReceipt((*receipts)[i])->size();
    EXPECT_LT(size, 2048u) << i;
  }
}

}  // namespace
}  // namespace signet::formats
