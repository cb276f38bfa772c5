// Format "batch": one HSM signature per batch of artifacts (appliance/formats/BATCH.md).
//
// A *group* is the requests signed together: one request, or (with ServiceOptions::batch_window)
// the requests for the same key that arrived within the window. SignGroup builds each artifact's
// leaf from its request (never from anything a client calls a leaf or a root), cuts the group's
// leaves, in arrival order, into batches of at most max_batch_leaves, builds each batch's RFC 6962
// tree and the statement about its root, and submits one HSM job with one digest per batch.
// OnGroupSigned (an HSM worker) turns each signature into a C2SP signed note (audit::SignNote
// checks it against the key first), then, per request: its `batch` records (one per batch it has
// leaves in) and one `sign` record per artifact go to the audit log, and its answer goes out from
// the log's delivery thread once they are durable. No record, no receipt. When the request says
// its client rebuilds its own batches (X-Signet-Batch-Proofs: client), a batch of its leaves alone
// is answered without per-leaf proofs; every other batch carries them (BATCH.md, "The sign
// answer").
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

#include "appliance/formats/formats.h"
#include "appliance/service/internal/answer.h"
#include "appliance/service/internal/call.h"
#include "appliance/service/internal/crypto.h"

namespace signet::service::internal {
namespace {

// Hands audit::SignNote a signature the HSM has already made, so the note is formatted (and the
// signature checked) by the same code as the audit log's checkpoints.
class PresignedNoteSigner final : public audit::NoteSigner {
 public:
  PresignedNoteSigner(const audit::NoteVerifier& verifier, Bytes signature)
      : verifier_(verifier), signature_(std::move(signature)) {}
  const audit::NoteVerifier& verifier() const override { return verifier_; }
  Result<Bytes> Sign(std::span<const std::uint8_t> /*text*/) override { return signature_; }

 private:
  const audit::NoteVerifier& verifier_;
  Bytes signature_;
};

// Where a leaf came from: the group's call and that call's item.
struct LeafSource {
  std::size_t call = 0;
  std::size_t item = 0;
};

struct Batch {
  std::string id;
  std::vector<LeafSource> sources;  // one per leaf
  pipeline::MerkleTree tree{{}};
  std::string statement;
  std::string note;  // once signed
};

// The requests signed together, between the HSM and the audit log.
struct Group {
  std::vector<std::shared_ptr<SignCall>> calls;
  std::vector<Batch> batches;
};

std::int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void RespondAll(const Group& group, const net::Response& response) {
  for (const auto& call : group.calls) {
    call->respond(response);
  }
}

void FailGroup(const Group& group, const Error& error) {
  for (const auto& call : group.calls) {
    FailHsm(call, error);
  }
}

// Cuts the group's leaves into batches of at most `max_leaves`. Errors: kInvalidArgument (an
// item that does not make a leaf), kCrypto (no random batch id).
Status BuildBatches(Group& group, std::size_t max_leaves) {
  const std::int64_t now = NowSeconds();
  std::vector<pipeline::MerkleHash> hashes;
  auto finish = [&]() -> Status {
    Batch& batch = group.batches.back();
    batch.tree = pipeline::MerkleTree(std::exchange(hashes, {}));
    SIGNET_ASSIGN_OR_RETURN(batch.id, formats::NewBatchId());
    SIGNET_ASSIGN_OR_RETURN(batch.statement,
                            formats::BatchStatementText({.origin = group.calls.front()->key->origin,
                                                         .tree_size = batch.tree.size(),
                                                         .root = batch.tree.Root(),
                                                         .batch_id = batch.id,
                                                         .time = now}));
    return OkStatus();
  };
  // One leaf, refilled per item: its strings keep their buffers from one item to the next.
  formats::BatchLeaf leaf;
  std::size_t remaining = 0;  // leaves not yet placed
  for (const auto& call : group.calls) {
    remaining += call->items.size();
  }
  for (std::size_t c = 0; c < group.calls.size(); ++c) {
    const SignCall& call = *group.calls[c];
    const std::string hash_name(hsm::HashName(call.key->key.spec.hash));
    leaf.digest_algorithm = hash_name;
    leaf.request_id = call.request_id;
    for (std::size_t i = 0; i < call.items.size(); ++i) {
      if (group.batches.empty() || group.batches.back().sources.size() == max_leaves) {
        if (!group.batches.empty()) {
          SIGNET_RETURN_IF_ERROR(finish());
        }
        group.batches.emplace_back().sources.reserve(std::min(max_leaves, remaining));
        hashes.reserve(std::min(max_leaves, remaining));
      }
      --remaining;
      const SignItem& item = call.items[i];
      leaf.name = item.name;
      leaf.size = item.size.value_or(0);
      leaf.digest = HexDecode(item.digests.at(hash_name)).value_or(Bytes{});
      auto hash = formats::BatchLeafHash(leaf);
      if (!hash) {
        return MakeError(std::move(hash).error().WithContext("request " + call.request_id +
                                                             " items[" + std::to_string(i) + "]"));
      }
      hashes.push_back(*hash);
      group.batches.back().sources.push_back({c, i});
    }
  }
  return finish();
}

// A request's leaves in one batch. They are contiguous: requests join a group whole, in order.
struct LeafRun {
  std::size_t batch = 0;
  std::size_t first = 0;
  std::size_t count = 0;
};

// Per request of `group`, its runs of leaves, batch by batch (one pass over every leaf).
std::vector<std::vector<LeafRun>> RunsByCall(const Group& group) {
  std::vector<std::vector<LeafRun>> runs(group.calls.size());
  for (std::size_t b = 0; b < group.batches.size(); ++b) {
    const std::vector<LeafSource>& sources = group.batches[b].sources;
    for (std::size_t leaf = 0; leaf < sources.size(); ++leaf) {
      std::vector<LeafRun>& mine = runs[sources[leaf].call];
      if (!mine.empty() && mine.back().batch == b) {
        ++mine.back().count;
      } else {
        mine.push_back({b, leaf, 1});
      }
    }
  }
  return runs;
}

// The answer's items of one run of leaves: each leaf's proof when the batch carries proofs.
// Errors: kInternal (no proof for a leaf).
Status AddAnswerItems(const SignCall& call, const Batch& batch, const LeafRun& run,
                      std::size_t batch_index, bool proofs, BatchAnswer& answer) {
  for (std::size_t leaf = run.first; leaf < run.first + run.count; ++leaf) {
    BatchAnswer::Item& out = answer.items.emplace_back();
    out.name = call.items[batch.sources[leaf].item].name;
    out.batch = batch_index;
    out.leaf_index = leaf;
    if (!proofs) {
      continue;
    }
    auto proof = batch.tree.InclusionProof(leaf);
    auto leaf_hash = batch.tree.Node(0, leaf);
    if (!proof || !leaf_hash) {
      return MakeError(ErrorCode::kInternal, "no inclusion proof for leaf " + std::to_string(leaf) +
                                                 " of batch " + batch.id);
    }
    out.leaf_hash = Base64Encode(*leaf_hash);
    out.proof.reserve(proof->size());
    for (const auto& hash : *proof) {
      out.proof.push_back(Base64Encode(hash));
    }
  }
  return OkStatus();
}

// The records of request `call` for its `runs` of leaves, made one at a time for Log::Submit: per
// run, the `batch` record of its batch, then a `sign` record per leaf. The `sign` records are two
// Records refilled in turn (Submit reads each while the next is made), so the fields every record
// of the request shares are not copied into each; the items' digests move into them: nothing
// reads them after.
class RecordSource {
 public:
  RecordSource(SignCall& call, const Group& group, const std::vector<LeafRun>& runs)
      : call_(call), group_(group), runs_(runs) {
    for (const LeafRun& run : runs_) {
      count_ += 1 + run.count;
    }
  }
  std::size_t count() const { return count_; }

  // Record i; called for i = 0, 1, ... in order.
  audit::Record& operator()(std::size_t /*i*/) {
    const LeafRun& run = runs_[run_];
    const Batch& batch = group_.batches[run.batch];
    if (step_ == 0) {
      step_ = 1;
      audit::Record& r = batch_records_.emplace_back(Base(batch, audit::RecordKind::kBatch));
      r.batch = audit::BatchRef{.id = batch.id,
                                .leaf_index = std::nullopt,
                                .tree_size = batch.tree.size(),
                                .root = Base64Encode(batch.tree.Root()),
                                .note = batch.note};
      return r;
    }
    const std::size_t leaf = run.first + step_ - 1;
    audit::Record& r = slots_[turn_];
    turn_ ^= 1;
    if (!r.batch || r.batch->id != batch.id) {  // its first leaf of this batch
      r = Base(batch, audit::RecordKind::kSign);
      r.batch = audit::BatchRef{.id = batch.id,
                                .leaf_index = std::nullopt,
                                .tree_size = std::nullopt,
                                .root = "",
                                .note = ""};
    }
    SignItem& item = call_.items[batch.sources[leaf].item];
    r.artifact_name = item.name;
    r.artifact_size = item.size;
    r.digests = std::move(item.digests);
    r.batch->leaf_index = leaf;
    if (++step_ == run.count + 1) {
      step_ = 0;
      ++run_;
    }
    return r;
  }

 private:
  audit::Record Base(const Batch& batch, audit::RecordKind kind) const {
    audit::Record r = BaseRecord(call_, kind);
    r.signature_sha256 = Sha256Hex(AsBytes(batch.note));
    r.decision = "allow";
    r.policy_rule = call_.verdict.rule;
    return r;
  }

  SignCall& call_;
  const Group& group_;
  const std::vector<LeafRun>& runs_;
  std::size_t count_ = 0;
  std::size_t run_ = 0;   // the run of the next record
  std::size_t step_ = 0;  // 0: its `batch` record next; k: its k-th leaf's `sign` record
  std::deque<audit::Record> batch_records_;  // one per run, each kept until Submit returns
  audit::Record slots_[2];
  std::size_t turn_ = 0;
};

// Records and answers request `c` of a signed group, whose leaves are `runs`: for each batch it
// has leaves in, a `batch` record and its `sign` records; the answer lists only its own batches
// and items.
void RecordAndAnswer(const std::shared_ptr<Group>& group, std::size_t c,
                     const std::vector<LeafRun>& runs) {
  const std::shared_ptr<SignCall>& call = group->calls[c];
  auto answer = std::make_shared<BatchAnswer>();
  answer->key = call->key->key.name;
  answer->format = call->key->key.format;
  answer->key_fingerprint = call->key->key.key.public_key.fingerprint;
  answer->request_id = call->request_id;
  answer->items.reserve(call->items.size());
  for (const LeafRun& run : runs) {
    const Batch& batch = group->batches[run.batch];
    // A batch made of this request's leaves alone needs no proofs in the answer: its client has
    // every leaf, rebuilds the tree, checks the root against the note and derives each proof
    // (BATCH.md, "The sign answer"). A batch shared with other requests (a gathering window), and
    // a held request's answer (stored, and collected later by a client that may no longer have
    // every file as it was), carry each leaf's proof.
    const bool proofs = !call->envelope.client_builds_proofs || !call->approvers.empty() ||
                        run.first != 0 || run.count != batch.tree.size();
    answer->batches.push_back({.id = batch.id,
                               .tree_size = batch.tree.size(),
                               .note = batch.note,
                               .proofs = proofs,
                               .items = run.count});
    if (auto added = AddAnswerItems(*call, batch, run, answer->batches.size() - 1, proofs, *answer);
        !added) {
      FailHsm(call, added.error());
      return;
    }
  }
  // JSON is rendered now, on this HSM worker, and only completed with the seqs on the log's
  // delivery thread; CBOR goes through nlohmann there.
  auto rendered = std::make_shared<RenderedAnswer>();
  if (!call->cbor) {
    *rendered = RenderBatchAnswer(*answer);
  }
  // Once nothing can fail (FailHsm records the first item's digests, which the records take).
  RecordSource records(*call, *group, runs);
  auto status = call->state->log.Submit(
      records.count(), std::ref(records),
      [call, group, answer, rendered](Result<audit::SeqRange> committed) {
        if (!committed) {
          spdlog::error("request {}: batch records not recorded, receipts withheld: {}",
                        call->request_id, committed.error().ToString());
          call->respond(AuditUnavailable(committed.error()));
          return;
        }
        if (call->cbor) {
          call->respond(Encode(200, BatchAnswerJson(*answer, committed->first), true));
          return;
        }
        net::Response response;
        response.status = 200;
        response.body = FinishBatchAnswer(*rendered, committed->first);
        call->respond(std::move(response));
      });
  if (!status) {
    spdlog::error("request {}: batch records not recorded, receipts withheld: {}", call->request_id,
                  status.error().ToString());
    call->respond(AuditUnavailable(status.error()));
  }
}

// HSM worker thread: the notes, then each request's records and answer.
void OnGroupSigned(const std::shared_ptr<Group>& group, Result<hsm::Signatures> signed_result) {
  if (!signed_result) {
    FailGroup(*group, signed_result.error());
    return;
  }
  if (signed_result->size() != group->batches.size()) {
    FailGroup(*group, Error(ErrorCode::kInternal,
                            "the HSM returned " + std::to_string(signed_result->size()) +
                                " signatures for " + std::to_string(group->batches.size()) +
                                " batch roots"));
    return;
  }
  const KeyEntry& key = *group->calls.front()->key;
  for (std::size_t b = 0; b < group->batches.size(); ++b) {
    Batch& batch = group->batches[b];
    PresignedNoteSigner signer(*key.note_verifier, std::move((*signed_result)[b]));
    auto note = audit::SignNote(batch.statement, signer);
    if (!note) {
      FailGroup(*group, note.error().WithContext("batch " + batch.id));
      return;
    }
    batch.note = std::move(*note);
  }
  key.counters->hsm_jobs.fetch_add(1, std::memory_order_relaxed);
  key.counters->batch_roots.fetch_add(group->batches.size(), std::memory_order_relaxed);
  const std::vector<std::vector<LeafRun>> runs = RunsByCall(*group);
  for (std::size_t c = 0; c < group->calls.size(); ++c) {
    RecordAndAnswer(group, c, runs[c]);
  }
}

// Signs the requests of `calls` (same key) together.
void SignGroup(std::vector<std::shared_ptr<SignCall>> calls) {
  auto group = std::make_shared<Group>();
  group->calls = std::move(calls);
  const std::shared_ptr<SignCall>& first = group->calls.front();
  // The items were checked when the requests were parsed: what fails here is the appliance's own
  // fault (no random batch id), not the client's.
  if (auto built = BuildBatches(*group, first->state->options.max_batch_leaves); !built) {
    spdlog::error("batch key {}: cannot build batches: {}", first->key->key.name,
                  built.error().ToString());
    RespondAll(*group, net::JsonError(500, "internal",
                                      "the batch could not be built: " + built.error().message()));
    return;
  }
  // ECDSA (C2SP note type 0x02) signs SHA-256 of the statement text.
  std::vector<Bytes> digests;
  digests.reserve(group->batches.size());
  for (const Batch& batch : group->batches) {
    auto digest =
        pipeline::DigestBytes(pipeline::DigestAlgorithm::kSha256, AsBytes(batch.statement));
    if (!digest) {
      FailGroup(*group, digest.error());
      return;
    }
    digests.emplace_back(digest->bytes().begin(), digest->bytes().end());
  }
  const ServiceKey& key = first->key->key;
  auto submitted = key.token->Submit(
      key.key, key.spec, std::move(digests),
      [group](Result<hsm::Signatures> signatures) { OnGroupSigned(group, std::move(signatures)); });
  if (!submitted) {
    FailGroup(*group, submitted.error());
  }
}

}  // namespace

// ---- Gathering requests within a window --------------------------------------------------------

struct BatchGatherer::Pending {
  std::vector<std::shared_ptr<SignCall>> calls;
  std::size_t leaves = 0;
  std::chrono::steady_clock::time_point deadline;
};

BatchGatherer::BatchGatherer(std::chrono::milliseconds window, std::size_t max_leaves)
    : window_(window), max_leaves_(max_leaves), pending_(std::make_unique<Pending>()) {
  thread_ = std::thread([this] {
    (void)::pthread_setname_np(::pthread_self(), "batch-gather");
    Loop();
  });
}

BatchGatherer::~BatchGatherer() { Stop(); }

void BatchGatherer::Add(std::shared_ptr<SignCall> call) {
  {
    std::lock_guard lock(mu_);
    if (pending_->calls.empty()) {
      pending_->deadline = std::chrono::steady_clock::now() + window_;
    }
    pending_->leaves += call->items.size();
    pending_->calls.push_back(std::move(call));
  }
  wake_.notify_one();
}

void BatchGatherer::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void BatchGatherer::Loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || !pending_->calls.empty(); });
    if (pending_->calls.empty()) {
      return;  // stopping, and nothing waits
    }
    // Until the window closes, the batch is full, or the service stops (then sign what waits).
    wake_.wait_until(lock, pending_->deadline,
                     [&] { return stopping_ || pending_->leaves >= max_leaves_; });
    std::vector<std::shared_ptr<SignCall>> calls = std::move(pending_->calls);
    pending_->calls.clear();
    pending_->leaves = 0;
    lock.unlock();
    SignGroup(std::move(calls));
    lock.lock();
  }
}

void SignBatches(const std::shared_ptr<SignCall>& call) {
  if (call->key->gatherer) {
    call->key->gatherer->Add(call);
    return;
  }
  SignGroup({call});
}

}  // namespace signet::service::internal
