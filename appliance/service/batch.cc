// Format "batch": one HSM signature per batch of artifacts (appliance/formats/BATCH.md).
//
// SignBatches runs on the I/O thread: it builds each artifact's leaf from the request (never from
// anything the client calls a leaf or a root), the RFC 6962 tree of each batch and the statement
// about its root, and submits one HSM job with one digest per batch. OnBatchesSigned (an HSM
// worker) turns each signature into a C2SP signed note (audit::SignNote checks it against the
// key before anything else happens), prepares the answer, and submits one `batch` record per
// batch plus one `sign` record per artifact to the audit log; the answer goes out from the log's
// delivery thread once they are durable. No record, no receipt.
#include <spdlog/spdlog.h>

#include <chrono>
#include <nlohmann/json.hpp>
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

struct Batch {
  std::string id;
  std::size_t first = 0;  // the request's index of its first item
  std::vector<formats::BatchLeaf> leaves;
  pipeline::MerkleTree tree{{}};
  std::string statement;
};

// The batches of one request, between the HSM and the audit log.
struct BatchCall {
  std::shared_ptr<SignCall> call;
  std::vector<Batch> batches;
};

std::int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Builds the batches of `call`'s items, at most `max_leaves` each. Errors: kInvalidArgument (an
// item that does not make a leaf), kCrypto (no random batch id).
Result<std::vector<Batch>> BuildBatches(const SignCall& call, std::size_t max_leaves) {
  const std::string hash_name(hsm::HashName(call.key->key.spec.hash));
  std::vector<Batch> batches;
  const std::int64_t now = NowSeconds();
  for (std::size_t first = 0; first < call.items.size(); first += max_leaves) {
    Batch batch;
    batch.first = first;
    const std::size_t end = std::min(call.items.size(), first + max_leaves);
    std::vector<pipeline::MerkleHash> hashes;
    hashes.reserve(end - first);
    batch.leaves.reserve(end - first);
    for (std::size_t i = first; i < end; ++i) {
      const SignItem& item = call.items[i];
      formats::BatchLeaf leaf{.name = item.name,
                              .size = item.size.value_or(0),
                              .digest_algorithm = hash_name,
                              .digest = HexDecode(item.digests.at(hash_name)).value_or(Bytes{}),
                              .request_id = call.request_id};
      auto hash = formats::BatchLeafHash(leaf);
      if (!hash) {
        return MakeError(std::move(hash).error().WithContext("items[" + std::to_string(i) + "]"));
      }
      hashes.push_back(*hash);
      batch.leaves.push_back(std::move(leaf));
    }
    batch.tree = pipeline::MerkleTree(std::move(hashes));
    SIGNET_ASSIGN_OR_RETURN(batch.id, formats::NewBatchId());
    SIGNET_ASSIGN_OR_RETURN(batch.statement,
                            formats::BatchStatementText({.origin = call.key->origin,
                                                         .tree_size = batch.tree.size(),
                                                         .root = batch.tree.Root(),
                                                         .batch_id = batch.id,
                                                         .time = now}));
    batches.push_back(std::move(batch));
  }
  return batches;
}

// HSM worker thread: notes, answer items, records; the answer goes out after the commit.
void OnBatchesSigned(const std::shared_ptr<BatchCall>& batch_call,
                     Result<hsm::Signatures> signed_result) {
  const std::shared_ptr<SignCall>& call = batch_call->call;
  if (!signed_result) {
    FailHsm(call, signed_result.error());
    return;
  }
  if (signed_result->size() != batch_call->batches.size()) {
    FailHsm(call,
            Error(ErrorCode::kInternal,
                  "the HSM returned " + std::to_string(signed_result->size()) + " signatures for " +
                      std::to_string(batch_call->batches.size()) + " batch roots"));
    return;
  }
  const KeyEntry& key = *call->key;
  json batches_json = json::array();
  auto items_json = std::make_shared<json>(json::array());
  std::vector<audit::Record> records;
  records.reserve(call->items.size() + batch_call->batches.size());
  for (std::size_t b = 0; b < batch_call->batches.size(); ++b) {
    Batch& batch = batch_call->batches[b];
    PresignedNoteSigner signer(*key.note_verifier, std::move((*signed_result)[b]));
    auto note = audit::SignNote(batch.statement, signer);
    if (!note) {
      FailHsm(call, note.error().WithContext("batch " + batch.id));
      return;
    }
    const std::string note_sha256 = Sha256Hex(AsBytes(*note));
    audit::Record batch_record = BaseRecord(*call, audit::RecordKind::kBatch);
    batch_record.batch = audit::BatchRef{.id = batch.id,
                                         .leaf_index = std::nullopt,
                                         .tree_size = batch.tree.size(),
                                         .root = Base64Encode(batch.tree.Root()),
                                         .note = *note};
    batch_record.signature_sha256 = note_sha256;
    batch_record.decision = "allow";
    batch_record.policy_rule = call->verdict.rule;
    records.push_back(std::move(batch_record));
    batches_json.push_back(json{{"batch_id", batch.id},
                                {"tree_size", batch.tree.size()},
                                {"note", *note},
                                {"seq", nullptr}});
    for (std::size_t i = 0; i < batch.leaves.size(); ++i) {
      const SignItem& item = call->items[batch.first + i];
      auto proof = batch.tree.InclusionProof(i);
      if (!proof) {
        FailHsm(call, proof.error().WithContext("batch " + batch.id));
        return;
      }
      json proof_json = json::array();
      for (const auto& hash : *proof) {
        proof_json.push_back(Base64Encode(hash));
      }
      items_json->push_back(json{{"name", item.name},
                                 {"batch", b},
                                 {"leaf_index", i},
                                 {"leaf_hash", Base64Encode(*batch.tree.Node(0, i))},
                                 {"inclusion_proof", std::move(proof_json)},
                                 {"seq", nullptr}});
      audit::Record r = BaseRecord(*call, audit::RecordKind::kSign);
      r.artifact_name = item.name;
      r.artifact_size = item.size;
      r.digests = item.digests;
      r.signature_sha256 = note_sha256;
      r.batch = audit::BatchRef{
          .id = batch.id, .leaf_index = i, .tree_size = std::nullopt, .root = "", .note = ""};
      r.decision = "allow";
      r.policy_rule = call->verdict.rule;
      records.push_back(std::move(r));
    }
  }
  auto batches_shared = std::make_shared<json>(std::move(batches_json));
  auto status = call->state->log.Submit(
      std::move(records),
      [call, batch_call, items_json, batches_shared](Result<audit::SeqRange> committed) {
        if (!committed) {
          spdlog::error("request {}: batch records not recorded, receipts withheld: {}",
                        call->request_id, committed.error().ToString());
          call->respond(AuditUnavailable(committed.error()));
          return;
        }
        // Records were submitted batch by batch: the batch record, then its leaves in order.
        std::uint64_t seq = committed->first;
        std::size_t item = 0;
        for (std::size_t b = 0; b < batch_call->batches.size(); ++b) {
          (*batches_shared)[b]["seq"] = seq++;
          for (std::size_t i = 0; i < batch_call->batches[b].leaves.size(); ++i) {
            (*items_json)[item++]["seq"] = seq++;
          }
        }
        call->respond(Encode(200,
                             json{{"key", call->key->key.name},
                                  {"format", call->key->key.format},
                                  {"key_fingerprint", call->key->key.key.public_key.fingerprint},
                                  {"request_id", call->request_id},
                                  {"batches", std::move(*batches_shared)},
                                  {"items", std::move(*items_json)}},
                             call->cbor));
      });
  if (!status) {
    spdlog::error("request {}: batch records not recorded, receipts withheld: {}", call->request_id,
                  status.error().ToString());
    call->respond(AuditUnavailable(status.error()));
  }
}

}  // namespace

void SignBatches(const std::shared_ptr<SignCall>& call) {
  auto batch_call = std::make_shared<BatchCall>();
  batch_call->call = call;
  auto batches = BuildBatches(*call, call->state->options.max_batch_leaves);
  if (!batches) {
    call->respond(net::JsonError(400, "malformed", batches.error().message()));
    return;
  }
  batch_call->batches = std::move(*batches);
  // ECDSA (C2SP note type 0x02) signs SHA-256 of the statement text.
  std::vector<Bytes> digests;
  digests.reserve(batch_call->batches.size());
  for (const Batch& batch : batch_call->batches) {
    auto digest =
        pipeline::DigestBytes(pipeline::DigestAlgorithm::kSha256, AsBytes(batch.statement));
    if (!digest) {
      FailHsm(call, digest.error());
      return;
    }
    digests.emplace_back(digest->bytes().begin(), digest->bytes().end());
  }
  const ServiceKey& key = call->key->key;
  auto submitted = key.token->Submit(key.key, key.spec, std::move(digests),
                                     [batch_call](Result<hsm::Signatures> signatures) {
                                       OnBatchesSigned(batch_call, std::move(signatures));
                                     });
  if (!submitted) {
    FailHsm(call, submitted.error());
  }
}

}  // namespace signet::service::internal
