// `signet sign` with a batch key: each file's receipt from signetd's answer (internal/receipt.h,
// WriteBatchReceipts).
#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "appliance/cli/internal/receipt.h"

namespace signet::cli {
namespace {

// A part of an answer assembled by a thread of its own has at least this many files.
constexpr std::size_t kMinFilesPerPart = 1024;

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
    // Once the trees are built, each receipt depends on nothing but its own line: a large answer
    // may be assembled by several threads (ReceiptOptions::threads), each over a contiguous part,
    // so that the last answer of a run (when hashing is over) does not leave a core idle.
    const std::size_t n = files_.size();
    const std::size_t parts = std::clamp<std::size_t>(n / kMinFilesPerPart, 1,
                                                      std::max<std::size_t>(1, options_.threads));
    {
      std::vector<std::jthread> helpers;
      for (std::size_t p = 1; p < parts; ++p) {
        helpers.emplace_back(
            [this, &sink, p, parts, n] { Assemble(n * p / parts, n * (p + 1) / parts, sink); });
      }
      Assemble(0, n / parts, sink);
    }  // joins the helpers
  }

 private:
  // Receipts [begin, end) to `sink`, with buffers of this call's own (it runs beside others).
  void Assemble(std::size_t begin, std::size_t end, const ReceiptSink& sink) const {
    formats::Receipt receipt;
    std::string text;
    const std::vector<Result<AnsweredLine>>& lines = answer_.lines;
    for (std::size_t i = begin; i < end; ++i) {
      const Status filled = lines[i] ? Fill(i, receipt) : Status(MakeError(lines[i].error()));
      if (!filled) {
        sink(i, std::nullopt,
             MakeError(ErrorCode::kInvalidArgument,
                       "signetd's answer for this file is malformed: " + filled.error().message()));
        continue;
      }
      const formats::ReceiptVerdict verdict =
          proven_[lines[i]->batch] ? formats::ReceiptVerdict{} : Verify(i, receipt);
      if (!verdict.ok()) {
        sink(i, receipt.seq,
             MakeError(ErrorCode::kCrypto,
                       fmt::format("signetd's receipt does not check out ({}): {}{}",
                                   formats::ReceiptFailureName(verdict.failure), verdict.message,
                                   options_.changed_hint)));
        continue;
      }
      text.clear();
      if (Status serialized = formats::AppendReceipt(text, receipt, options_.layout); !serialized) {
        sink(i, receipt.seq, MakeError(serialized.error()));
        continue;
      }
      sink(i, receipt.seq, std::string_view(text));
    }
  }

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
      formats::Receipt receipt;
      for (const std::size_t m : {members[b].front(), members[b].back()}) {
        holds = holds && Fill(m, receipt) && Verify(m, receipt).ok();
      }
      proven_[b] = holds;
    }
  }

  // Sets `receipt` to file i's receipt from its answered line and batch, its leaf built from the
  // file, its proof from the answer or, for a batch without proofs, from this client's tree of
  // the batch. Errors: the tree's (a batch whose leaves are not each listed once),
  // kInvalidArgument (a digest not in hex).
  Status Fill(std::size_t i, formats::Receipt& receipt) const {
    const AnsweredLine& line = *answer_.lines[i];
    const AnsweredBatch& batch = *answer_.batches[line.batch];
    SIGNET_RETURN_IF_ERROR(FillLeaf(files_[i], answer_.request_id, receipt.leaf));
    if (batch.proofs) {
      receipt.inclusion_proof = line.proof;
      SIGNET_ASSIGN_OR_RETURN(receipt.leaf_hash, formats::BatchLeafHash(receipt.leaf));
    } else {
      const Result<pipeline::MerkleTree>& tree = *trees_[line.batch];
      if (!tree) {
        return MakeError(tree.error());
      }
      SIGNET_ASSIGN_OR_RETURN(receipt.inclusion_proof, tree->InclusionProof(line.leaf_index));
      // The tree's leaf at this index is this file's leaf hash (ClientTree put it there).
      SIGNET_ASSIGN_OR_RETURN(receipt.leaf_hash, tree->Node(0, line.leaf_index));
    }
    receipt.leaf_index = line.leaf_index;
    receipt.tree_size = batch.tree_size;
    receipt.batch_id = batch.batch_id;
    receipt.note = batch.note;
    receipt.key_fingerprint = key_.fingerprint;
    receipt.seq = line.seq;
    return OkStatus();
  }

  // `receipt`, filled for file i, checked as `signet verify` checks it.
  formats::ReceiptVerdict Verify(std::size_t i, const formats::Receipt& receipt) const {
    return formats::VerifyReceipt(receipt, files_[i].size, receipt.leaf.digest, key_.fingerprint,
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
};

}  // namespace

void WriteBatchReceipts(const std::vector<RequestedFile>& files, ReadAnswer answer,
                        const ReceiptKey& key, const ReceiptOptions& options,
                        const ReceiptSink& sink) {
  ReceiptAssembler(files, std::move(answer), key, options).Run(sink);
}

}  // namespace signet::cli
