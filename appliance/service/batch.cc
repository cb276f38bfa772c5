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
#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

#include "appliance/formats/formats.h"
#include "appliance/service/internal/call.h"
#include "appliance/service/internal/crypto.h"

namespace signet::service::internal {
namespace {

using nlohmann::json;

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
  std::vector<formats::BatchLeaf> leaves;
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
  for (std::size_t c = 0; c < group.calls.size(); ++c) {
    const SignCall& call = *group.calls[c];
    const std::string hash_name(hsm::HashName(call.key->key.spec.hash));
    for (std::size_t i = 0; i < call.items.size(); ++i) {
      if (group.batches.empty() || group.batches.back().leaves.size() == max_leaves) {
        if (!group.batches.empty()) {
          SIGNET_RETURN_IF_ERROR(finish());
        }
        group.batches.emplace_back();
      }
      const SignItem& item = call.items[i];
      formats::BatchLeaf leaf{.name = item.name,
                              .size = item.size.value_or(0),
                              .digest_algorithm = hash_name,
                              .digest = HexDecode(item.digests.at(hash_name)).value_or(Bytes{}),
                              .request_id = call.request_id};
      auto hash = formats::BatchLeafHash(leaf);
      if (!hash) {
        return MakeError(std::move(hash).error().WithContext("request " + call.request_id +
                                                             " items[" + std::to_string(i) + "]"));
      }
      hashes.push_back(*hash);
      group.batches.back().leaves.push_back(std::move(leaf));
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

// Records and answers request `c` of a signed group, whose leaves are `runs`: for each batch it
// has leaves in, a `batch` record and its `sign` records; the answer lists only its own batches
// and items.
void RecordAndAnswer(const std::shared_ptr<Group>& group, std::size_t c,
                     const std::vector<LeafRun>& runs) {
  const std::shared_ptr<SignCall>& call = group->calls[c];
  auto batches_json = std::make_shared<json>(json::array());
  auto items_json = std::make_shared<json>(json::array());
  // For the seqs: per batch of this call, how many sign records follow its batch record.
  auto leaves_per_batch = std::make_shared<std::vector<std::size_t>>();
  std::vector<audit::Record> records;
  records.reserve(call->items.size() + group->batches.size());
  for (const LeafRun& run : runs) {
    const Batch& batch = group->batches[run.batch];
    const std::string note_sha256 = Sha256Hex(AsBytes(batch.note));
    audit::Record batch_record = BaseRecord(*call, audit::RecordKind::kBatch);
    batch_record.batch = audit::BatchRef{.id = batch.id,
                                         .leaf_index = std::nullopt,
                                         .tree_size = batch.tree.size(),
                                         .root = Base64Encode(batch.tree.Root()),
                                         .note = batch.note};
    batch_record.signature_sha256 = note_sha256;
    batch_record.decision = "allow";
    batch_record.policy_rule = call->verdict.rule;
    records.push_back(std::move(batch_record));
    const std::size_t batch_index = batches_json->size();
    // A batch made of this request's leaves alone needs no proofs in the answer: its client has
    // every leaf, rebuilds the tree, checks the root against the note and derives each proof
    // (BATCH.md, "The sign answer"). A batch shared with other requests (a gathering window), and
    // a held request's answer (stored, and collected later by a client that may no longer have
    // every file as it was), carry each leaf's proof.
    const bool proofs = !call->envelope.client_builds_proofs || !call->approvers.empty() ||
                        run.first != 0 || run.count != batch.tree.size();
    batches_json->push_back(json{{"batch_id", batch.id},
                                 {"tree_size", batch.tree.size()},
                                 {"note", batch.note},
                                 {"inclusion_proofs", proofs},
                                 {"seq", nullptr}});
    leaves_per_batch->push_back(run.count);
    for (std::size_t leaf = run.first; leaf < run.first + run.count; ++leaf) {
      const SignItem& item = call->items[batch.sources[leaf].item];
      if (!proofs) {
        items_json->push_back(json{
            {"name", item.name}, {"batch", batch_index}, {"leaf_index", leaf}, {"seq", nullptr}});
      } else {
        auto proof = batch.tree.InclusionProof(leaf);
        auto leaf_hash = batch.tree.Node(0, leaf);
        if (!proof || !leaf_hash) {
          FailHsm(call,
                  Error(ErrorCode::kInternal, "no inclusion proof for leaf " +
                                                  std::to_string(leaf) + " of batch " + batch.id));
          return;
        }
        json proof_json = json::array();
        for (const auto& hash : *proof) {
          proof_json.push_back(Base64Encode(hash));
        }
        items_json->push_back(json{{"name", item.name},
                                   {"batch", batch_index},
                                   {"leaf_index", leaf},
                                   {"leaf_hash", Base64Encode(*leaf_hash)},
                                   {"inclusion_proof", std::move(proof_json)},
                                   {"seq", nullptr}});
      }
      audit::Record r = BaseRecord(*call, audit::RecordKind::kSign);
      r.artifact_name = item.name;
      r.artifact_size = item.size;
      r.digests = item.digests;
      r.signature_sha256 = note_sha256;
      r.batch = audit::BatchRef{
          .id = batch.id, .leaf_index = leaf, .tree_size = std::nullopt, .root = "", .note = ""};
      r.decision = "allow";
      r.policy_rule = call->verdict.rule;
      records.push_back(std::move(r));
    }
  }
  auto status = call->state->log.Submit(
      std::move(records),
      [call, items_json, batches_json, leaves_per_batch](Result<audit::SeqRange> committed) {
        if (!committed) {
          spdlog::error("request {}: batch records not recorded, receipts withheld: {}",
                        call->request_id, committed.error().ToString());
          call->respond(AuditUnavailable(committed.error()));
          return;
        }
        // Submitted batch by batch: the batch record, then this request's leaves in it.
        std::uint64_t seq = committed->first;
        std::size_t item = 0;
        for (std::size_t b = 0; b < leaves_per_batch->size(); ++b) {
          (*batches_json)[b]["seq"] = seq++;
          for (std::size_t i = 0; i < (*leaves_per_batch)[b]; ++i) {
            (*items_json)[item++]["seq"] = seq++;
          }
        }
        call->respond(Encode(200,
                             json{{"key", call->key->key.name},
                                  {"format", call->key->key.format},
                                  {"key_fingerprint", call->key->key.key.public_key.fingerprint},
                                  {"request_id", call->request_id},
                                  {"batches", std::move(*batches_json)},
                                  {"items", std::move(*items_json)}},
                             call->cbor));
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
  thread_ = std::thread([this] { Loop(); });
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
