// appliance/service/internal/answer.h: the 200 answer to a batch key's POST /v1/sign (BATCH.md,
// "The sign answer"), written without building an nlohmann DOM of one object per item.
//
// The answer is rendered once the batches are signed, with the records' sequence numbers left
// out (they are known only after the commit), and completed from the first one: a request's
// records are submitted batch by batch, the `batch` record and then its leaves' `sign` records,
// so every seq is the first plus a fixed offset. The bytes are those of BatchAnswerJson (keys
// sorted, as nlohmann::json::dump writes objects), which stays the reference and the CBOR form.
#ifndef SIGNET_APPLIANCE_SERVICE_INTERNAL_ANSWER_H_
#define SIGNET_APPLIANCE_SERVICE_INTERNAL_ANSWER_H_

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "appliance/formats/formats.h"

namespace signet::service::internal {

// What the answer says. The views must outlive every call that takes the answer.
struct BatchAnswer {
  struct Batch {
    std::string_view id;
    std::uint64_t tree_size = 0;
    std::string_view note;
    bool proofs = true;     // its items carry leaf_hash and inclusion_proof
    std::size_t items = 0;  // how many of `items` (which follow the previous batch's) are in it
  };
  struct Item {
    std::string_view name;
    std::size_t batch = 0;  // index into `batches`
    std::uint64_t leaf_index = 0;
    std::string leaf_hash;           // base64; only when the batch has proofs
    std::vector<std::string> proof;  // base64 hashes; only when the batch has proofs
  };
  std::string_view key;
  std::string_view format;
  std::string_view key_fingerprint;
  std::string_view request_id;
  std::vector<Batch> batches;
  std::vector<Item> items;  // batch by batch
};

// The answer as an nlohmann object whose records start at `first_seq` (the reference).
nlohmann::json BatchAnswerJson(const BatchAnswer& answer, std::uint64_t first_seq);

// The answer's JSON text without its seqs: `text` cut where each seq goes.
struct RenderedAnswer {
  std::string text;
  std::vector<std::pair<std::size_t, std::uint64_t>> holes;  // (offset in text, seq - first_seq)
};
RenderedAnswer RenderBatchAnswer(const BatchAnswer& answer);
// The bytes BatchAnswerJson(answer, first_seq).dump(-1, ' ', false, replace) would be.
std::string FinishBatchAnswer(const RenderedAnswer& rendered, std::uint64_t first_seq);

// The JSON string writer shared with signet and the receipts (formats.h).
using formats::AppendJsonString;

}  // namespace signet::service::internal

#endif  // SIGNET_APPLIANCE_SERVICE_INTERNAL_ANSWER_H_
