#include "appliance/cli/internal/receipt.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "appliance/audit/audit.h"
#include "appliance/cli/internal/console.h"

namespace signet::cli {

Result<ReceiptKey> MakeReceiptKey(std::string_view public_key) {
  // The key ID of an ECDSA note key does not depend on the key name: any name finds it.
  SIGNET_ASSIGN_OR_RETURN(audit::NoteVerifier probe,
                          audit::MakeNoteVerifier("key", AsBytes(public_key)));
  SIGNET_ASSIGN_OR_RETURN(
      pipeline::Digest fingerprint,
      pipeline::DigestBytes(pipeline::DigestAlgorithm::kSha256, probe.spki_der));
  ReceiptKey key;
  key.fingerprint = fingerprint.Hex();
  key.check = [spki = probe.spki_der,
               key_id = probe.key_id](std::string_view note) -> Result<std::string> {
    SIGNET_ASSIGN_OR_RETURN(audit::SignedNote parsed, audit::ParseNote(note));
    for (const audit::NoteSignature& signature : parsed.signatures) {
      if (signature.key_id != key_id) {
        continue;
      }
      // The signature line names the key; the statement's first line (its origin) must agree.
      if (!parsed.text.starts_with(signature.name + "\n")) {
        return MakeError(ErrorCode::kCrypto, "the note is signed as \"" + signature.name +
                                                 "\" but its statement names another origin");
      }
      SIGNET_ASSIGN_OR_RETURN(audit::NoteVerifier verifier,
                              audit::MakeNoteVerifier(signature.name, spki));
      SIGNET_RETURN_IF_ERROR(audit::VerifyNote(parsed, verifier));
      return parsed.text;
    }
    return MakeError(ErrorCode::kNotFound,
                     "no signature by the given key on the note (signed by another key)");
  };
  return key;
}

using nlohmann::json;

bool DeriveProofs(std::vector<Result<formats::Receipt>>& receipts,
                  const std::vector<std::size_t>& members, const formats::NoteCheck& check) {
  const formats::Receipt& first = *receipts[members.front()];
  const std::uint64_t tree_size = first.tree_size;
  std::vector<pipeline::MerkleHash> leaves(members.size() == tree_size ? members.size() : 0);
  std::vector<bool> seen(leaves.size(), false);
  bool complete = !leaves.empty();
  for (const std::size_t m : members) {
    const std::uint64_t index = receipts[m]->leaf_index;
    if (!complete || index >= tree_size || seen[index]) {
      complete = false;
      break;
    }
    seen[index] = true;
    leaves[index] = receipts[m]->leaf_hash;
  }
  if (!complete) {
    const std::string message = fmt::format(
        "batch {} has no inclusion proofs, but the answer does not list its {} leaves once each",
        first.batch_id, tree_size);
    for (const std::size_t m : members) {
      receipts[m] = MakeError(ErrorCode::kInvalidArgument, message);
    }
    return false;
  }
  const pipeline::MerkleTree tree(std::move(leaves));
  auto text = check(first.note);
  auto statement = text ? formats::ParseBatchStatement(*text) : Result<formats::BatchStatement>();
  if (!text || !statement || statement->root != tree.Root()) {
    return false;  // VerifyReceipt names what is wrong: the note, or (no proof) the proof
  }
  bool proven = statement->batch_id == first.batch_id && statement->tree_size == tree_size;
  for (const std::size_t m : members) {
    auto proof = tree.InclusionProof(receipts[m]->leaf_index);
    if (!proof) {
      receipts[m] = MakeError(std::move(proof).error());
      proven = false;
      continue;
    }
    receipts[m]->inclusion_proof = std::move(*proof);
  }
  return proven;
}

std::vector<Result<AnsweredBatch>> ReadAnsweredBatches(const json& batches) {
  std::vector<Result<AnsweredBatch>> out;
  if (!batches.is_array()) {
    return out;
  }
  out.reserve(batches.size());
  for (const json& batch : batches) {
    const auto field = [&](const char* name) {
      const auto it = batch.is_object() ? batch.find(name) : batch.end();
      return it != batch.end() ? &*it : nullptr;
    };
    const json* note = field("note");
    const json* batch_id = field("batch_id");
    const json* tree_size = field("tree_size");
    if (note == nullptr || !note->is_string() || batch_id == nullptr || !batch_id->is_string() ||
        tree_size == nullptr || !tree_size->is_number_unsigned()) {
      out.push_back(MakeError(ErrorCode::kInvalidArgument, "its batch is missing"));
      continue;
    }
    AnsweredBatch read{.batch_id = batch_id->get<std::string>(),
                       .tree_size = tree_size->get<std::uint64_t>(),
                       .note = note->get<std::string>()};
    // Absent (an older signetd): every item carries its proof.
    if (const json* flag = field("inclusion_proofs"); flag != nullptr) {
      if (!flag->is_boolean()) {
        out.push_back(MakeError(ErrorCode::kInvalidArgument,
                                "its batch's inclusion_proofs is not true or false"));
        continue;
      }
      read.proofs = flag->get<bool>();
    }
    out.push_back(std::move(read));
  }
  return out;
}

Result<formats::Receipt> AssembleReceipt(const RequestedFile& file,
                                         std::string_view key_fingerprint, const json& answered,
                                         const std::vector<Result<AnsweredBatch>>& batches,
                                         const std::string& request_id) {
  auto bad = [](const std::string& what) { return MakeError(ErrorCode::kInvalidArgument, what); };
  const auto field = [&](const char* name) {
    const auto it = answered.find(name);
    return it != answered.end() ? &*it : nullptr;
  };
  const json* name = answered.is_object() ? field("name") : nullptr;
  if (name == nullptr || !name->is_string() || name->get_ref<const std::string&>() != file.name) {
    return bad("not this file's line");
  }
  std::uint64_t numbers[3] = {};  // batch, leaf_index, seq
  const char* const kNumbers[3] = {"batch", "leaf_index", "seq"};
  for (int i = 0; i < 3; ++i) {
    const json* value = field(kNumbers[i]);
    if (value == nullptr || !value->is_number_unsigned()) {
      return bad(std::string(kNumbers[i]) + " missing");
    }
    numbers[i] = value->get<std::uint64_t>();
  }
  if (numbers[0] >= batches.size()) {
    return bad("its batch is missing");
  }
  if (!batches[numbers[0]]) {
    return MakeError(batches[numbers[0]].error());
  }
  const AnsweredBatch& batch = *batches[numbers[0]];
  formats::Receipt receipt;
  if (batch.proofs) {
    const json* proof = field("inclusion_proof");
    if (proof == nullptr || !proof->is_array() || proof->size() > formats::kMaxProofLength) {
      return bad("inclusion_proof missing");
    }
    for (const json& hash : *proof) {
      auto bytes = hash.is_string() ? Base64Decode(hash.get<std::string>()) : Result<Bytes>();
      if (!hash.is_string() || !bytes || bytes->size() != 32) {
        return bad("an inclusion proof hash is not base64 of 32 bytes");
      }
      pipeline::MerkleHash node{};
      std::copy(bytes->begin(), bytes->end(), node.begin());
      receipt.inclusion_proof.push_back(node);
    }
  }
  SIGNET_ASSIGN_OR_RETURN(receipt.leaf.digest, HexDecode(file.digest_hex));
  receipt.leaf.name = std::string(file.name);
  receipt.leaf.size = file.size;
  receipt.leaf.digest_algorithm = std::string(pipeline::DigestAlgorithmName(file.algorithm));
  receipt.leaf.request_id = request_id;
  SIGNET_ASSIGN_OR_RETURN(receipt.leaf_hash, formats::BatchLeafHash(receipt.leaf));
  receipt.leaf_index = numbers[1];
  receipt.tree_size = batch.tree_size;
  receipt.batch_id = batch.batch_id;
  receipt.note = batch.note;
  receipt.key_fingerprint = std::string(key_fingerprint);
  receipt.seq = numbers[2];
  return receipt;
}

formats::NoteCheck RememberingCheck(formats::NoteCheck check) {
  // Past this many notes (batches) the memory starts over: a bound, not a cost in practice.
  constexpr std::size_t kMaxNotes = 4096;
  struct Memory {
    std::mutex mu;
    std::map<std::string, Result<std::string>, std::less<>> answers;
  };
  return [check = std::move(check),
          memory = std::make_shared<Memory>()](std::string_view note) -> Result<std::string> {
    std::lock_guard lock(memory->mu);
    auto it = memory->answers.find(note);
    if (it == memory->answers.end()) {
      if (memory->answers.size() >= kMaxNotes) {
        memory->answers.clear();
      }
      it = memory->answers.emplace(std::string(note), check(note)).first;
    }
    return it->second;
  };
}

std::string BundleKey(std::string_view name) {
  return std::filesystem::path(name).lexically_normal().native();
}

Result<ReceiptBundle> ReadReceiptBundle(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) {
    return MakeError(ErrnoError(errno, "--bundle " + DisplayName(path)));
  }
  ReceiptBundle bundle;
  std::uint64_t line_number = 0;
  auto take_line = [&](std::string_view line) -> Status {
    ++line_number;
    if (line.empty()) {
      return OkStatus();
    }
    const std::string where = fmt::format("--bundle {} line {}", DisplayName(path), line_number);
    if (line.size() > formats::kMaxReceiptBytes) {
      return MakeError(
          ErrorCode::kInvalidArgument,
          fmt::format("{}: longer than {} bytes: not a receipt", where, formats::kMaxReceiptBytes));
    }
    auto receipt = formats::ParseReceipt(line);
    if (!receipt) {
      return MakeError(ErrorCode::kInvalidArgument,
                       where + ": not a receipt: " + receipt.error().message());
    }
    const auto [it, added] =
        bundle.by_name.emplace(BundleKey(receipt->leaf.name), bundle.receipts.size());
    if (!added) {
      return MakeError(
          ErrorCode::kInvalidArgument,
          fmt::format("{}: a second receipt for {} (the first is on line {}); a "
                      "bundle holds one receipt per file",
                      where, DisplayName(receipt->leaf.name), bundle.lines[it->second]));
    }
    bundle.receipts.push_back(std::move(*receipt));
    bundle.lines.push_back(line_number);
    return OkStatus();
  };
  std::string buffer(1 << 20, '\0');
  std::string partial;  // the start of a line that the last read cut
  while (true) {
    const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return MakeError(ErrnoError(errno, "--bundle " + DisplayName(path)));
    }
    if (n == 0) {
      break;
    }
    std::string_view chunk(buffer.data(), static_cast<std::size_t>(n));
    for (std::size_t nl = chunk.find('\n'); nl != std::string_view::npos; nl = chunk.find('\n')) {
      if (partial.empty()) {
        SIGNET_RETURN_IF_ERROR(take_line(chunk.substr(0, nl)));
      } else {
        partial.append(chunk.substr(0, nl));
        SIGNET_RETURN_IF_ERROR(take_line(partial));
        partial.clear();
      }
      chunk.remove_prefix(nl + 1);
    }
    partial.append(chunk);
    if (partial.size() > formats::kMaxReceiptBytes) {
      return MakeError(ErrorCode::kInvalidArgument,
                       fmt::format("--bundle {} line {}: longer than {} bytes: not a receipt",
                                   DisplayName(path), line_number + 1, formats::kMaxReceiptBytes));
    }
  }
  if (!partial.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("--bundle {} line {}: cut short (no newline at its end)",
                                 DisplayName(path), line_number + 1));
  }
  return bundle;
}

}  // namespace signet::cli
