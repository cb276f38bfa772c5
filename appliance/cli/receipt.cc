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

void DeriveProofs(std::vector<Result<formats::Receipt>>& receipts,
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
    return;
  }
  const pipeline::MerkleTree tree(std::move(leaves));
  auto text = check(first.note);
  auto statement = text ? formats::ParseBatchStatement(*text) : Result<formats::BatchStatement>();
  if (!text || !statement || statement->root != tree.Root()) {
    return;  // VerifyReceipt names what is wrong: the note, or (no proof) the proof
  }
  for (const std::size_t m : members) {
    auto proof = tree.InclusionProof(receipts[m]->leaf_index);
    if (!proof) {
      receipts[m] = MakeError(std::move(proof).error());
      continue;
    }
    receipts[m]->inclusion_proof = std::move(*proof);
  }
}

Result<formats::Receipt> AssembleReceipt(const RequestedFile& file,
                                         std::string_view key_fingerprint, const json& answered,
                                         const json& batches, const std::string& request_id,
                                         bool& proofs) {
  auto bad = [](const std::string& what) { return MakeError(ErrorCode::kInvalidArgument, what); };
  if (!answered.is_object() || answered.value("name", std::string()) != file.name) {
    return bad("not this file's line");
  }
  for (const char* field : {"batch", "leaf_index", "seq"}) {
    if (!answered.contains(field) || !answered[field].is_number_unsigned()) {
      return bad(std::string(field) + " missing");
    }
  }
  const auto b = answered["batch"].get<std::size_t>();
  if (!batches.is_array() || b >= batches.size() || !batches[b].is_object() ||
      !batches[b].contains("note") || !batches[b]["note"].is_string() ||
      !batches[b].contains("batch_id") || !batches[b]["batch_id"].is_string() ||
      !batches[b].contains("tree_size") || !batches[b]["tree_size"].is_number_unsigned()) {
    return bad("its batch is missing");
  }
  // Absent (an older signetd): every item carries its proof.
  if (const auto flag = batches[b].find("inclusion_proofs"); flag != batches[b].end()) {
    if (!flag->is_boolean()) {
      return bad("its batch's inclusion_proofs is not true or false");
    }
    proofs = flag->get<bool>();
  }
  formats::Receipt receipt;
  if (proofs) {
    if (!answered.contains("inclusion_proof") || !answered["inclusion_proof"].is_array() ||
        answered["inclusion_proof"].size() > formats::kMaxProofLength) {
      return bad("inclusion_proof missing");
    }
    for (const json& hash : answered["inclusion_proof"]) {
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
  receipt.leaf_index = answered["leaf_index"].get<std::uint64_t>();
  receipt.tree_size = batches[b]["tree_size"].get<std::uint64_t>();
  receipt.batch_id = batches[b]["batch_id"].get<std::string>();
  receipt.note = batches[b]["note"].get<std::string>();
  receipt.key_fingerprint = std::string(key_fingerprint);
  receipt.seq = answered["seq"].get<std::uint64_t>();
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
