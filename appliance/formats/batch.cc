// Merkle batch receipts: leaves, the signed statement, receipts and their verification. The
// byte-exact formats are in BATCH.md; keep the two in step.
#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <nlohmann/json.hpp>
#include <utility>

#include "appliance/formats/formats.h"

namespace signet::formats {
namespace {

using nlohmann::json;

constexpr std::string_view kLeafPrefix = "signet-batch-leaf/v1\n";
constexpr std::string_view kStatementTag = "signet-batch";
constexpr std::size_t kMaxAlgorithmBytes = 32;
constexpr std::size_t kMaxDigestBytes = 64;
constexpr std::size_t kMaxRequestIdBytes = 128;

void AppendBigEndian(Bytes& out, std::uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
  }
}

bool IsLowerHex(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool ValidBatchId(std::string_view id) { return id.size() == 32 && IsLowerHex(id); }

Error Invalid(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

// A decimal without sign or leading zeros (C2SP checkpoints' tree size rule), as uint64.
std::optional<std::uint64_t> ParseDecimal(std::string_view text) {
  if (text.empty() || text.size() > 20 || (text.size() > 1 && text[0] == '0')) {
    return std::nullopt;
  }
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

Result<pipeline::MerkleHash> HashFromBase64(std::string_view text, const std::string& field) {
  auto bytes = Base64Decode(text);
  if (!bytes || bytes->size() != 32) {
    return MakeError(Invalid(field + " is not the base64 of 32 bytes"));
  }
  pipeline::MerkleHash hash{};
  std::copy(bytes->begin(), bytes->end(), hash.begin());
  return hash;
}

// The JSON member `key` of `object` with type check; names the field in errors.
Result<const json*> Member(const json& object, const char* key, json::value_t type,
                           const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end()) {
    return MakeError(Invalid(where + key + " is missing"));
  }
  const bool fits =
      type == json::value_t::number_unsigned ? it->is_number_unsigned() : it->type() == type;
  if (!fits) {
    return MakeError(Invalid(where + key + " has the wrong type"));
  }
  return &*it;
}

}  // namespace

Result<Bytes> BatchLeafBytes(const BatchLeaf& leaf) {
  if (leaf.name.empty() || leaf.name.size() > kMaxLeafNameBytes) {
    return MakeError(Invalid("leaf name must be 1 to 4096 bytes"));
  }
  if (leaf.digest_algorithm.empty() || leaf.digest_algorithm.size() > kMaxAlgorithmBytes) {
    return MakeError(Invalid("leaf digest_algorithm must be 1 to 32 bytes"));
  }
  if (leaf.digest.empty() || leaf.digest.size() > kMaxDigestBytes) {
    return MakeError(Invalid("leaf digest must be 1 to 64 bytes"));
  }
  if (leaf.request_id.size() > kMaxRequestIdBytes) {
    return MakeError(Invalid("leaf request_id must be at most 128 bytes"));
  }
  Bytes out(kLeafPrefix.begin(), kLeafPrefix.end());
  AppendBigEndian(out, leaf.name.size(), 4);
  out.insert(out.end(), leaf.name.begin(), leaf.name.end());
  AppendBigEndian(out, leaf.size, 8);
  AppendBigEndian(out, leaf.digest_algorithm.size(), 1);
  out.insert(out.end(), leaf.digest_algorithm.begin(), leaf.digest_algorithm.end());
  AppendBigEndian(out, leaf.digest.size(), 1);
  out.insert(out.end(), leaf.digest.begin(), leaf.digest.end());
  AppendBigEndian(out, leaf.request_id.size(), 1);
  out.insert(out.end(), leaf.request_id.begin(), leaf.request_id.end());
  return out;
}

Result<pipeline::MerkleHash> BatchLeafHash(const BatchLeaf& leaf) {
  SIGNET_ASSIGN_OR_RETURN(Bytes bytes, BatchLeafBytes(leaf));
  return pipeline::LeafHash(bytes);
}

std::string BatchOrigin(std::string_view host_id, std::string_view key_name) {
  return std::string(host_id) + "/signet-batch/" + std::string(key_name);
}

Result<std::string> BatchStatementText(const BatchStatement& statement) {
  if (statement.origin.empty() || statement.origin.find('\n') != std::string::npos) {
    return MakeError(Invalid("the origin must be one non-empty line"));
  }
  if (statement.tree_size == 0) {
    return MakeError(Invalid("a batch has at least one leaf"));
  }
  if (!ValidBatchId(statement.batch_id)) {
    return MakeError(Invalid("a batch id is 32 lower-case hex digits"));
  }
  return statement.origin + "\n" + std::to_string(statement.tree_size) + "\n" +
         Base64Encode(statement.root) + "\n" + std::string(kStatementTag) + " " +
         statement.batch_id + " " + std::to_string(statement.time) + "\n";
}

Result<BatchStatement> ParseBatchStatement(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    if (end == std::string_view::npos) {
      return MakeError(Invalid("the statement's last line has no newline"));
    }
    lines.push_back(text.substr(0, end));
    text.remove_prefix(end + 1);
  }
  if (lines.size() != 4) {
    return MakeError(Invalid("a batch statement has 4 lines, not " + std::to_string(lines.size())));
  }
  BatchStatement statement;
  statement.origin = std::string(lines[0]);
  if (statement.origin.empty()) {
    return MakeError(Invalid("line 1 (origin) is empty"));
  }
  const auto size = ParseDecimal(lines[1]);
  if (!size || *size == 0) {
    return MakeError(Invalid("line 2 (tree size) is not a positive decimal"));
  }
  statement.tree_size = *size;
  SIGNET_ASSIGN_OR_RETURN(statement.root, HashFromBase64(lines[2], "line 3 (root)"));
  const std::string_view extension = lines[3];
  const std::string prefix = std::string(kStatementTag) + " ";
  if (!extension.starts_with(prefix)) {
    return MakeError(Invalid("line 4 does not start with \"signet-batch \""));
  }
  const std::string_view rest = extension.substr(prefix.size());
  const std::size_t space = rest.find(' ');
  if (space == std::string_view::npos || !ValidBatchId(rest.substr(0, space))) {
    return MakeError(Invalid("line 4: expected \"signet-batch <32 hex digit id> <seconds>\""));
  }
  statement.batch_id = std::string(rest.substr(0, space));
  const auto time = ParseDecimal(rest.substr(space + 1));
  if (!time || *time > static_cast<std::uint64_t>(INT64_MAX)) {
    return MakeError(Invalid("line 4: the time is not a decimal number of seconds"));
  }
  statement.time = static_cast<std::int64_t>(*time);
  return statement;
}

Result<std::string> NewBatchId() {
  std::uint8_t bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    return MakeError(ErrorCode::kCrypto, "RAND_bytes failed: no batch id");
  }
  return HexEncode(bytes);
}

Result<std::string> SerializeReceipt(const Receipt& receipt, ReceiptLayout layout) {
  std::string out;
  SIGNET_RETURN_IF_ERROR(AppendReceipt(out, receipt, layout));
  return out;
}

Status AppendReceipt(std::string& out, const Receipt& receipt, ReceiptLayout layout) {
  // Built by hand: the bytes are exactly what nlohmann's dump(2) (or dump()) of the receipt's
  // object writes (keys sorted; tests/formats checks the two agree), without building the
  // object first, which was most of the cost of writing 20,000 receipts.
  const std::size_t start = out.size();
  out.reserve(start + 512 + receipt.note.size() + receipt.leaf.name.size() +
              48 * receipt.inclusion_proof.size());
  auto string_value = [&](std::string_view text) -> Status {
    if (!AppendJsonStringIfUtf8(out, text)) {
      out.resize(start);
      return MakeError(Invalid("the receipt holds a string that is not valid UTF-8"));
    }
    return OkStatus();
  };
  // nlohmann's dump(2) (a FILE.receipt) or dump() (a bundle's line): where they differ.
  const bool lines = layout == ReceiptLayout::kIndented;
  const std::string_view open1 = lines ? "{\n  " : "{";
  const std::string_view next1 = lines ? ",\n  " : ",";
  const std::string_view open2 = lines ? "{\n    " : "{";
  const std::string_view next2 = lines ? ",\n    " : ",";
  const std::string_view close2 = lines ? "\n  }" : "}";
  auto key = [&](std::string_view indent, std::string_view name) {
    out += indent;
    out += '"';
    out += name;
    out += lines ? "\": " : "\":";
  };
  key(open1, "batch_id");
  SIGNET_RETURN_IF_ERROR(string_value(receipt.batch_id));
  key(next1, "inclusion_proof");
  if (receipt.inclusion_proof.empty()) {
    out += "[]";
  } else {
    out += '[';
    for (std::size_t i = 0; i < receipt.inclusion_proof.size(); ++i) {
      out += i == 0 ? (lines ? "\n    \"" : "\"") : (lines ? ",\n    \"" : ",\"");
      AppendBase64(out, receipt.inclusion_proof[i]);  // base64 needs no escaping
      out += '"';
    }
    out += lines ? "\n  ]" : "]";
  }
  key(next1, "key_fingerprint");
  SIGNET_RETURN_IF_ERROR(string_value(receipt.key_fingerprint));
  key(next1, "leaf");
  key(open2, "digest");
  out += '"';
  AppendHex(out, receipt.leaf.digest);
  out += '"';
  key(next2, "digest_algorithm");
  SIGNET_RETURN_IF_ERROR(string_value(receipt.leaf.digest_algorithm));
  key(next2, "name");
  SIGNET_RETURN_IF_ERROR(string_value(receipt.leaf.name));
  key(next2, "request_id");
  SIGNET_RETURN_IF_ERROR(string_value(receipt.leaf.request_id));
  key(next2, "size");
  out += std::to_string(receipt.leaf.size);
  out += close2;
  key(next1, "leaf_hash");
  out += '"';
  AppendBase64(out, receipt.leaf_hash);
  out += '"';
  key(next1, "leaf_index");
  out += std::to_string(receipt.leaf_index);
  key(next1, "note");
  SIGNET_RETURN_IF_ERROR(string_value(receipt.note));
  if (receipt.seq) {
    key(next1, "seq");
    out += std::to_string(*receipt.seq);
  }
  key(next1, "tree_size");
  out += std::to_string(receipt.tree_size);
  key(next1, "type");
  SIGNET_RETURN_IF_ERROR(string_value(kReceiptType));
  out += lines ? "\n}\n" : "}\n";
  return OkStatus();
}

Result<Receipt> ParseReceipt(std::string_view text) {
  if (text.size() > kMaxReceiptBytes) {
    return MakeError(
        Invalid("a receipt is at most 64 KiB; this is " + std::to_string(text.size()) + " bytes"));
  }
  const json in = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!in.is_object()) {
    return MakeError(Invalid("not a JSON object"));
  }
  using V = json::value_t;
  SIGNET_ASSIGN_OR_RETURN(const json* type, Member(in, "type", V::string, ""));
  if (*type != kReceiptType) {
    return MakeError(Invalid("type is \"" + type->get<std::string>() + "\", not \"" +
                             std::string(kReceiptType) + "\""));
  }
  static constexpr const char* kKnown[] = {"type",
                                           "leaf",
                                           "leaf_hash",
                                           "leaf_index",
                                           "tree_size",
                                           "batch_id",
                                           "inclusion_proof",
                                           "note",
                                           "key_fingerprint",
                                           "seq"};
  for (const auto& [key, value] : in.items()) {
    if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown)) {
      return MakeError(Invalid("unknown field \"" + key + "\""));
    }
  }
  Receipt receipt;
  SIGNET_ASSIGN_OR_RETURN(const json* leaf, Member(in, "leaf", V::object, ""));
  SIGNET_ASSIGN_OR_RETURN(const json* name, Member(*leaf, "name", V::string, "leaf."));
  SIGNET_ASSIGN_OR_RETURN(const json* size, Member(*leaf, "size", V::number_unsigned, "leaf."));
  SIGNET_ASSIGN_OR_RETURN(const json* algorithm,
                          Member(*leaf, "digest_algorithm", V::string, "leaf."));
  SIGNET_ASSIGN_OR_RETURN(const json* digest, Member(*leaf, "digest", V::string, "leaf."));
  SIGNET_ASSIGN_OR_RETURN(const json* request_id, Member(*leaf, "request_id", V::string, "leaf."));
  if (leaf->size() != 5) {
    return MakeError(
        Invalid("leaf has fields other than name, size, digest_algorithm, digest "
                "and request_id"));
  }
  receipt.leaf.name = name->get<std::string>();
  receipt.leaf.size = size->get<std::uint64_t>();
  receipt.leaf.digest_algorithm = algorithm->get<std::string>();
  auto digest_bytes = HexDecode(digest->get<std::string>());
  if (!digest_bytes || !IsLowerHex(digest->get<std::string>())) {
    return MakeError(Invalid("leaf.digest is not lower-case hex"));
  }
  receipt.leaf.digest = std::move(*digest_bytes);
  receipt.leaf.request_id = request_id->get<std::string>();
  if (auto bytes = BatchLeafBytes(receipt.leaf); !bytes) {
    return MakeError(std::move(bytes).error());
  }

  SIGNET_ASSIGN_OR_RETURN(const json* leaf_hash, Member(in, "leaf_hash", V::string, ""));
  SIGNET_ASSIGN_OR_RETURN(receipt.leaf_hash,
                          HashFromBase64(leaf_hash->get<std::string>(), "leaf_hash"));
  SIGNET_ASSIGN_OR_RETURN(const json* index, Member(in, "leaf_index", V::number_unsigned, ""));
  SIGNET_ASSIGN_OR_RETURN(const json* tree_size, Member(in, "tree_size", V::number_unsigned, ""));
  receipt.leaf_index = index->get<std::uint64_t>();
  receipt.tree_size = tree_size->get<std::uint64_t>();
  if (receipt.leaf_index >= receipt.tree_size) {
    return MakeError(Invalid("leaf_index " + std::to_string(receipt.leaf_index) +
                             " is not below tree_size " + std::to_string(receipt.tree_size)));
  }
  SIGNET_ASSIGN_OR_RETURN(const json* batch_id, Member(in, "batch_id", V::string, ""));
  receipt.batch_id = batch_id->get<std::string>();
  if (!ValidBatchId(receipt.batch_id)) {
    return MakeError(Invalid("batch_id is not 32 lower-case hex digits"));
  }
  SIGNET_ASSIGN_OR_RETURN(const json* proof, Member(in, "inclusion_proof", V::array, ""));
  if (proof->size() > kMaxProofLength) {
    return MakeError(Invalid("inclusion_proof has more than 64 hashes"));
  }
  for (std::size_t i = 0; i < proof->size(); ++i) {
    const json& hash = (*proof)[i];
    if (!hash.is_string()) {
      return MakeError(Invalid("inclusion_proof[" + std::to_string(i) + "] is not a string"));
    }
    SIGNET_ASSIGN_OR_RETURN(
        pipeline::MerkleHash parsed,
        HashFromBase64(hash.get<std::string>(), "inclusion_proof[" + std::to_string(i) + "]"));
    receipt.inclusion_proof.push_back(parsed);
  }
  SIGNET_ASSIGN_OR_RETURN(const json* note, Member(in, "note", V::string, ""));
  receipt.note = note->get<std::string>();
  SIGNET_ASSIGN_OR_RETURN(const json* fingerprint, Member(in, "key_fingerprint", V::string, ""));
  receipt.key_fingerprint = fingerprint->get<std::string>();
  if (receipt.key_fingerprint.size() != 64 || !IsLowerHex(receipt.key_fingerprint)) {
    return MakeError(Invalid("key_fingerprint is not 64 lower-case hex digits"));
  }
  if (in.contains("seq")) {
    SIGNET_ASSIGN_OR_RETURN(const json* seq, Member(in, "seq", V::number_unsigned, ""));
    receipt.seq = seq->get<std::uint64_t>();
  }
  return receipt;
}

Result<std::vector<Receipt>> MakeReceipts(const std::vector<BatchLeaf>& leaves,
                                          const pipeline::MerkleTree& tree,
                                          const std::string& batch_id, const std::string& note,
                                          const std::string& key_fingerprint,
                                          const std::vector<std::uint64_t>& seqs) {
  if (leaves.empty() || leaves.size() != tree.size()) {
    return MakeError(Invalid("a batch of " + std::to_string(leaves.size()) +
                             " leaves does not fit a tree of " + std::to_string(tree.size())));
  }
  if (!seqs.empty() && seqs.size() != leaves.size()) {
    return MakeError(Invalid("one audit seq per leaf, or none"));
  }
  std::vector<Receipt> receipts;
  receipts.reserve(leaves.size());
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    Receipt r;
    r.leaf = leaves[i];
    SIGNET_ASSIGN_OR_RETURN(r.leaf_hash, BatchLeafHash(leaves[i]));
    SIGNET_ASSIGN_OR_RETURN(const pipeline::MerkleHash node, tree.Node(0, i));
    if (node != r.leaf_hash) {
      return MakeError(Invalid("leaf " + std::to_string(i) + " is not the tree's leaf"));
    }
    r.leaf_index = i;
    r.tree_size = tree.size();
    r.batch_id = batch_id;
    SIGNET_ASSIGN_OR_RETURN(r.inclusion_proof, tree.InclusionProof(i));
    r.note = note;
    r.key_fingerprint = key_fingerprint;
    if (!seqs.empty()) {
      r.seq = seqs[i];
    }
    receipts.push_back(std::move(r));
  }
  return receipts;
}

std::string_view ReceiptFailureName(ReceiptFailure failure) {
  switch (failure) {
    case ReceiptFailure::kNone:
      return "ok";
    case ReceiptFailure::kKeyUnknown:
      return "key unknown";
    case ReceiptFailure::kSignatureWrong:
      return "signature wrong";
    case ReceiptFailure::kNoteMismatch:
      return "note does not match the receipt";
    case ReceiptFailure::kLeafAltered:
      return "leaf altered";
    case ReceiptFailure::kProofWrong:
      return "proof wrong";
    case ReceiptFailure::kFileChanged:
      return "file changed";
  }
  return "unknown";
}

ReceiptVerdict VerifyReceipt(const Receipt& receipt, std::uint64_t file_size,
                             std::span<const std::uint8_t> file_digest,
                             std::string_view key_fingerprint, const NoteCheck& check) {
  auto fail = [](ReceiptFailure failure, std::string message) {
    return ReceiptVerdict{failure, std::move(message), std::nullopt};
  };
  if (receipt.key_fingerprint != key_fingerprint) {
    return fail(ReceiptFailure::kKeyUnknown,
                "signed by the key with fingerprint " + receipt.key_fingerprint +
                    ", not by the key given (" + std::string(key_fingerprint) + ")");
  }
  auto text = check(receipt.note);
  if (!text) {
    const ReceiptFailure failure = text.error().code() == ErrorCode::kNotFound
                                       ? ReceiptFailure::kKeyUnknown
                                       : ReceiptFailure::kSignatureWrong;
    return fail(failure, "the receipt's note: " + text.error().message());
  }
  auto statement = ParseBatchStatement(*text);
  if (!statement) {
    return fail(ReceiptFailure::kNoteMismatch,
                "the signed note is not a batch statement: " + statement.error().message());
  }
  if (statement->batch_id != receipt.batch_id || statement->tree_size != receipt.tree_size) {
    return fail(ReceiptFailure::kNoteMismatch,
                "the signed note is about batch " + statement->batch_id + " of " +
                    std::to_string(statement->tree_size) + " leaves, the receipt about batch " +
                    receipt.batch_id + " of " + std::to_string(receipt.tree_size));
  }
  auto leaf_hash = BatchLeafHash(receipt.leaf);
  if (!leaf_hash || *leaf_hash != receipt.leaf_hash) {
    return fail(ReceiptFailure::kLeafAltered,
                "the receipt's leaf (name, size, digest, request id) does not hash to its "
                "leaf_hash: the leaf was altered");
  }
  if (auto included =
          pipeline::VerifyInclusion(receipt.leaf_hash, receipt.leaf_index, receipt.tree_size,
                                    receipt.inclusion_proof, statement->root);
      !included) {
    return fail(ReceiptFailure::kProofWrong,
                "leaf " + std::to_string(receipt.leaf_index) + " is not in the signed tree of " +
                    std::to_string(receipt.tree_size) +
                    " leaves by this inclusion proof: " + included.error().message());
  }
  if (file_size != receipt.leaf.size ||
      !std::equal(file_digest.begin(), file_digest.end(), receipt.leaf.digest.begin(),
                  receipt.leaf.digest.end())) {
    return fail(ReceiptFailure::kFileChanged, file_size != receipt.leaf.size
                                                  ? "the file is " + std::to_string(file_size) +
                                                        " bytes, the signed one " +
                                                        std::to_string(receipt.leaf.size)
                                                  : "the file's " + receipt.leaf.digest_algorithm +
                                                        " is not the signed one: the file changed");
  }
  return ReceiptVerdict{ReceiptFailure::kNone, "", std::move(*statement)};
}

}  // namespace signet::formats
