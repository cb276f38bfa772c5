// `signet sign` with a batch key: each file's receipt from signetd's answer (internal/receipt.h,
// WriteBatchReceipts).
#include <fmt/format.h>

#include <optional>
#include <utility>

#include "appliance/cli/internal/receipt.h"

namespace signet::cli {
namespace {

// Sets `leaf` to `file`'s leaf in the request `request_id`: built from what this client hashed,
// never from the answer. Reuses `leaf`'s memory. Errors: kInvalidArgument (a digest not in hex).
Status FillLeaf(const RequestedFile& file, const std::string& request_id,
                formats::BatchLeaf& leaf) {
  SIGNET_ASSIGN_OR_RETURN(leaf.digest, HexDecode(file.digest_hex));
  leaf.name.assign(file.name);
  leaf.size = file.size;
  leaf.digest_algorithm.assign(pipeline::DigestAlgorithmName(file.algorithm));
  leaf.request_id.assign(request_id);
  return OkStatus();
}

// A leaf of a batch answered without proofs, as this client computed it: where the answer put it
// and its hash.
struct ClientLeaf {
  std::uint64_t index = 0;
  pipeline::MerkleHash hash{};
};

// The RFC 6962 tree of a batch answered without proofs, over this client's own leaves, when
// `members` are exactly the batch's tree_size leaves, each index once. Errors: kInvalidArgument
// ("... does not list its N leaves once each").
Result<pipeline::MerkleTree> ClientTree(const AnsweredBatch& batch,
                                        const std::vector<ClientLeaf>& members) {
  std::vector<pipeline::MerkleHash> leaves(members.size() == batch.tree_size ? members.size() : 0);
  std::vector<bool> seen(leaves.size(), false);
  bool complete = !leaves.empty();
  for (const ClientLeaf& member : members) {
    if (!complete || member.index >= leaves.size() || seen[member.index]) {
      complete = false;
      break;
    }
    seen[member.index] = true;
    leaves[member.index] = member.hash;
  }
  if (!complete) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("batch {} has no inclusion proofs, but the answer does not list "
                                 "its {} leaves once each",
                                 batch.batch_id, batch.tree_size));
  }
  return pipeline::MerkleTree(std::move(leaves));
}

// Whether `tree` is what the batch's note signs: the note checks out (`check`), and its
// statement is about this batch id and tree size, with `tree`'s root. When it is, every receipt
// with a leaf and proof from `tree` holds by construction. When not, such receipts fail
// VerifyReceipt, which then says what is wrong (the note, or the proof).
bool TreeIsSigned(const AnsweredBatch& batch, const pipeline::MerkleTree& tree,
                  const formats::NoteCheck& check) {
  auto text = check(batch.note);
  auto statement = text ? formats::ParseBatchStatement(*text) : Result<formats::BatchStatement>();
  return text && statement && statement->batch_id == batch.batch_id &&
         statement->tree_size == batch.tree_size && statement->root == tree.Root();
}

// One answer's receipts: its batches, the trees this client built for those without proofs, and
// the buffers reused from receipt to receipt.
class ReceiptAssembler {
 public:
  ReceiptAssembler(const std::vector<RequestedFile>& files, ReadAnswer answer,
                   const ReceiptKey& key, const ReceiptOptions& options)
      : files_(files),
        answer_(std::move(answer)),
        key_(key),
        options_(options),
        check_(RememberingCheck(key.check)),
        trees_(answer_.batches.size()),
        proven_(answer_.batches.size(), false) {}

  void Run(const ReceiptSink& sink) {
    BuildTrees();
    std::vector<Result<AnsweredLine>>& lines = answer_.lines;
    for (std::size_t i = 0; i < files_.size(); ++i) {
      const Status filled = lines[i] ? Fill(i) : Status(MakeError(lines[i].error()));
      if (!filled) {
        sink(i, std::nullopt,
             MakeError(ErrorCode::kInvalidArgument,
                       "signetd's answer for this file is malformed: " + filled.error().message()));
        continue;
      }
      const formats::ReceiptVerdict verdict =
          proven_[lines[i]->batch] ? formats::ReceiptVerdict{} : Verify(i);
      if (!verdict.ok()) {
        sink(i, receipt_.seq,
             MakeError(ErrorCode::kCrypto,
                       fmt::format("signetd's receipt does not check out ({}): {}{}",
                                   formats::ReceiptFailureName(verdict.failure), verdict.message,
                                   options_.changed_hint)));
        continue;
      }
      text_.clear();
      if (Status serialized = formats::AppendReceipt(text_, receipt_, options_.layout);
          !serialized) {
        sink(i, receipt_.seq, MakeError(serialized.error()));
        continue;
      }
      sink(i, receipt_.seq, std::string_view(text_));
    }
  }

 private:
  // For each batch answered without proofs: the tree over this client's own leaves of it, and
  // whether its note signs that tree (then each of its receipts holds by construction, and
  // VerifyReceipt runs only on its first and last, as a check of this code).
  void BuildTrees() {
    const std::vector<Result<AnsweredBatch>>& batches = answer_.batches;
    std::vector<Result<AnsweredLine>>& lines = answer_.lines;
    std::vector<std::vector<std::size_t>> members(batches.size());
    std::vector<std::vector<ClientLeaf>> leaves(batches.size());
    formats::BatchLeaf leaf;
    for (std::size_t i = 0; i < files_.size(); ++i) {
      if (!lines[i] || batches[lines[i]->batch]->proofs) {
        continue;
      }
      auto hash = FillLeaf(files_[i], answer_.request_id, leaf).and_then([&] {
        return formats::BatchLeafHash(leaf);
      });
      if (!hash) {
        lines[i] = MakeError(std::move(hash).error());
        continue;
      }
      members[lines[i]->batch].push_back(i);
      leaves[lines[i]->batch].push_back({lines[i]->leaf_index, *hash});
    }
    for (std::size_t b = 0; b < batches.size(); ++b) {
      if (members[b].empty()) {
        continue;
      }
      trees_[b] = ClientTree(*batches[b], leaves[b]);
      leaves[b] = {};
      if (!*trees_[b] || !TreeIsSigned(*batches[b], **trees_[b], check_)) {
        continue;
      }
      bool holds = true;
      for (const std::size_t m : {members[b].front(), members[b].back()}) {
        holds = holds && Fill(m) && Verify(m).ok();
      }
      proven_[b] = holds;
    }
  }

  // Sets receipt_ to file i's receipt from its answered line and batch, its leaf built from the
  // file, its proof from the answer or, for a batch without proofs, from this client's tree of
  // the batch. Errors: the tree's (a batch whose leaves are not each listed once),
  // kInvalidArgument (a digest not in hex).
  Status Fill(std::size_t i) {
    const AnsweredLine& line = *answer_.lines[i];
    const AnsweredBatch& batch = *answer_.batches[line.batch];
    SIGNET_RETURN_IF_ERROR(FillLeaf(files_[i], answer_.request_id, receipt_.leaf));
    if (batch.proofs) {
      receipt_.inclusion_proof = line.proof;
      SIGNET_ASSIGN_OR_RETURN(receipt_.leaf_hash, formats::BatchLeafHash(receipt_.leaf));
    } else {
      const Result<pipeline::MerkleTree>& tree = *trees_[line.batch];
      if (!tree) {
        return MakeError(tree.error());
      }
      SIGNET_ASSIGN_OR_RETURN(receipt_.inclusion_proof, tree->InclusionProof(line.leaf_index));
      // The tree's leaf at this index is this file's leaf hash (ClientTree put it there).
      SIGNET_ASSIGN_OR_RETURN(receipt_.leaf_hash, tree->Node(0, line.leaf_index));
    }
    receipt_.leaf_index = line.leaf_index;
    receipt_.tree_size = batch.tree_size;
    receipt_.batch_id = batch.batch_id;
    receipt_.note = batch.note;
    receipt_.key_fingerprint = key_.fingerprint;
    receipt_.seq = line.seq;
    return OkStatus();
  }

  // receipt_, filled for file i, checked as `signet verify` checks it.
  formats::ReceiptVerdict Verify(std::size_t i) const {
    return formats::VerifyReceipt(receipt_, files_[i].size, receipt_.leaf.digest, key_.fingerprint,
                                  check_);
  }

  const std::vector<RequestedFile>& files_;
  ReadAnswer answer_;
  const ReceiptKey& key_;
  const ReceiptOptions& options_;
  // Each batch's note is checked once (one ECDSA verification per batch, not per file).
  const formats::NoteCheck check_;
  std::vector<std::optional<Result<pipeline::MerkleTree>>> trees_;  // per batch without proofs
  std::vector<bool> proven_;                                        // per batch
  formats::Receipt receipt_;                                        // the current file's
  std::string text_;                                                // receipt_, serialized
};

}  // namespace

void WriteBatchReceipts(const std::vector<RequestedFile>& files, ReadAnswer answer,
                        const ReceiptKey& key, const ReceiptOptions& options,
                        const ReceiptSink& sink) {
  ReceiptAssembler(files, std::move(answer), key, options).Run(sink);
}

}  // namespace signet::cli
