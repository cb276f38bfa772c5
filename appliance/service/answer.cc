// The batch sign answer (appliance/service/internal/answer.h).
#include "appliance/service/internal/answer.h"

#include <array>
#include <charconv>

#include "appliance/service/internal/request.h"

namespace signet::service::internal {
namespace {

using nlohmann::json;

void AppendNumber(std::string& out, std::uint64_t value) {
  std::array<char, 24> buf;
  const auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), value);
  out.append(buf.data(), end);
}

// The seq of each batch record relative to the first: a batch record, then its items' records.
std::vector<std::uint64_t> BatchOffsets(const BatchAnswer& answer) {
  std::vector<std::uint64_t> offsets;
  offsets.reserve(answer.batches.size());
  std::uint64_t next = 0;
  for (const BatchAnswer::Batch& batch : answer.batches) {
    offsets.push_back(next);
    next += 1 + batch.items;
  }
  return offsets;
}

void RenderBatches(const BatchAnswer& answer, const std::vector<std::uint64_t>& offsets,
                   RenderedAnswer& out) {
  std::string& text = out.text;
  text.append("{\"batches\":[");
  for (std::size_t b = 0; b < answer.batches.size(); ++b) {
    const BatchAnswer::Batch& batch = answer.batches[b];
    text.append(b == 0 ? "{\"batch_id\":" : ",{\"batch_id\":");
    AppendJsonString(text, batch.id);
    text.append(batch.proofs ? ",\"inclusion_proofs\":true,\"note\":"
                             : ",\"inclusion_proofs\":false,\"note\":");
    AppendJsonString(text, batch.note);
    text.append(",\"seq\":");
    out.holes.emplace_back(text.size(), offsets[b]);
    text.append(",\"tree_size\":");
    AppendNumber(text, batch.tree_size);
    text.push_back('}');
  }
  text.append("],");
}

void RenderItems(const BatchAnswer& answer, const std::vector<std::uint64_t>& offsets,
                 RenderedAnswer& out) {
  std::string& text = out.text;
  text.append("\"items\":[");
  std::size_t in_batch = 0;  // items of the current batch so far
  for (std::size_t i = 0; i < answer.items.size(); ++i) {
    const BatchAnswer::Item& item = answer.items[i];
    in_batch = i > 0 && answer.items[i - 1].batch == item.batch ? in_batch + 1 : 0;
    text.append(i == 0 ? "{\"batch\":" : ",{\"batch\":");
    AppendNumber(text, item.batch);
    if (answer.batches[item.batch].proofs) {
      text.append(",\"inclusion_proof\":[");
      for (std::size_t k = 0; k < item.proof.size(); ++k) {
        if (k != 0) {
          text.push_back(',');
        }
        AppendJsonString(text, item.proof[k]);
      }
      text.append("],\"leaf_hash\":");
      AppendJsonString(text, item.leaf_hash);
    }
    text.append(",\"leaf_index\":");
    AppendNumber(text, item.leaf_index);
    text.append(",\"name\":");
    AppendJsonString(text, item.name);
    text.append(",\"seq\":");
    out.holes.emplace_back(text.size(), offsets[item.batch] + 1 + in_batch);
    text.push_back('}');
  }
  text.append("],");
}

}  // namespace

json BatchAnswerJson(const BatchAnswer& answer, std::uint64_t first_seq) {
  const std::vector<std::uint64_t> offsets = BatchOffsets(answer);
  json batches = json::array();
  for (std::size_t b = 0; b < answer.batches.size(); ++b) {
    const BatchAnswer::Batch& batch = answer.batches[b];
    batches.push_back(json{{"batch_id", std::string(batch.id)},
                           {"tree_size", batch.tree_size},
                           {"note", std::string(batch.note)},
                           {"inclusion_proofs", batch.proofs},
                           {"seq", first_seq + offsets[b]}});
  }
  json items = json::array();
  std::size_t in_batch = 0;
  for (std::size_t i = 0; i < answer.items.size(); ++i) {
    const BatchAnswer::Item& item = answer.items[i];
    in_batch = i > 0 && answer.items[i - 1].batch == item.batch ? in_batch + 1 : 0;
    const std::uint64_t seq = first_seq + offsets[item.batch] + 1 + in_batch;
    if (!answer.batches[item.batch].proofs) {
      items.push_back(json{{"name", std::string(item.name)},
                           {"batch", item.batch},
                           {"leaf_index", item.leaf_index},
                           {"seq", seq}});
      continue;
    }
    json proof = json::array();
    for (const std::string& hash : item.proof) {
      proof.push_back(hash);
    }
    items.push_back(json{{"name", std::string(item.name)},
                         {"batch", item.batch},
                         {"leaf_index", item.leaf_index},
                         {"leaf_hash", item.leaf_hash},
                         {"inclusion_proof", std::move(proof)},
                         {"seq", seq}});
  }
  return json{{"key", std::string(answer.key)},
              {"format", std::string(answer.format)},
              {"key_fingerprint", std::string(answer.key_fingerprint)},
              {"request_id", std::string(answer.request_id)},
              {"batches", std::move(batches)},
              {"items", std::move(items)}};
}

RenderedAnswer RenderBatchAnswer(const BatchAnswer& answer) {
  const std::vector<std::uint64_t> offsets = BatchOffsets(answer);
  RenderedAnswer out;
  std::size_t expected = 256;
  for (const BatchAnswer::Batch& batch : answer.batches) {
    expected += 128 + batch.id.size() + batch.note.size();
  }
  for (const BatchAnswer::Item& item : answer.items) {
    expected += 80 + item.name.size() + item.leaf_hash.size() + 48 * item.proof.size();
  }
  out.text.reserve(expected);
  out.holes.reserve(answer.batches.size() + answer.items.size());
  RenderBatches(answer, offsets, out);
  out.text.append("\"format\":");
  AppendJsonString(out.text, answer.format);
  out.text.push_back(',');
  RenderItems(answer, offsets, out);
  out.text.append("\"key\":");
  AppendJsonString(out.text, answer.key);
  out.text.append(",\"key_fingerprint\":");
  AppendJsonString(out.text, answer.key_fingerprint);
  out.text.append(",\"request_id\":");
  AppendJsonString(out.text, answer.request_id);
  out.text.push_back('}');
  return out;
}

std::string FinishBatchAnswer(const RenderedAnswer& rendered, std::uint64_t first_seq) {
  std::string out;
  out.reserve(rendered.text.size() + 21 * rendered.holes.size());
  std::size_t at = 0;
  for (const auto& [offset, seq] : rendered.holes) {
    out.append(rendered.text, at, offset - at);
    AppendNumber(out, first_seq + seq);
    at = offset;
  }
  out.append(rendered.text, at);
  return out;
}

}  // namespace signet::service::internal
