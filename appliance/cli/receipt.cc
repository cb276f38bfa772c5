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

namespace {

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

Result<AnsweredLine> ReadAnsweredLine(const json& answered, std::string_view name,
                                      const std::vector<Result<AnsweredBatch>>& batches) {
  auto bad = [](const std::string& what) { return MakeError(ErrorCode::kInvalidArgument, what); };
  const auto field = [&](const char* key) {
    const auto it = answered.find(key);
    return it != answered.end() ? &*it : nullptr;
  };
  const json* answered_name = answered.is_object() ? field("name") : nullptr;
  if (answered_name == nullptr || !answered_name->is_string() ||
      answered_name->get_ref<const std::string&>() != name) {
    return bad("not this file's line");
  }
  AnsweredLine line;
  const std::pair<const char*, std::uint64_t*> numbers[] = {
      {"batch", &line.batch}, {"leaf_index", &line.leaf_index}, {"seq", &line.seq}};
  for (const auto& [key, value] : numbers) {
    const json* number = field(key);
    if (number == nullptr || !number->is_number_unsigned()) {
      return bad(std::string(key) + " missing");
    }
    *value = number->get<std::uint64_t>();
  }
  if (line.batch >= batches.size()) {
    return bad("its batch is missing");
  }
  if (!batches[line.batch]) {
    return MakeError(batches[line.batch].error());
  }
  if (batches[line.batch]->proofs) {
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
      line.proof.push_back(node);
    }
  }
  return line;
}

// AnswerReader takes the SAX events of a batch key's sign answer of the usual shape straight into
// AnsweredBatch and AnsweredLine values: what building nlohmann's DOM of 8,192 items (a std::map
// per item) and walking it cost. It gives up (the parse stops) on anything else: a field that is
// unknown, of another type or given twice, a batch with proofs, more items than files. Such an
// answer goes to the DOM path (ReadBatchAnswer), which names what is wrong.
class AnswerReader {
 public:
  explicit AnswerReader(const std::vector<std::string_view>& names) : names_(names) {
    answer_.lines.reserve(names.size());
  }

  bool done() const { return state_ == State::kDone; }
  ReadAnswer& answer() { return answer_; }

  bool null() { return false; }
  bool number_integer(json::number_integer_t /*value*/) { return false; }
  bool number_float(json::number_float_t /*value*/, const std::string& /*text*/) { return false; }
  bool binary(json::binary_t& /*value*/) { return false; }
  bool parse_error(std::size_t /*position*/, const std::string& /*token*/,
                   const json::exception& /*error*/) {
    return false;
  }
  bool boolean(bool value) {
    if (state_ != State::kBatch || field_ != Field::kInclusionProofs || value) {
      return false;  // a batch with proofs: the DOM path reads them
    }
    return Take(Field::kInclusionProofs);
  }
  bool number_unsigned(json::number_unsigned_t value) {
    if (state_ == State::kBatch && field_ == Field::kTreeSize) {
      batch_.tree_size = value;
    } else if (state_ == State::kBatch && field_ == Field::kSeq) {
      // The batch record's seq: not part of a receipt.
    } else if (state_ == State::kItem && field_ == Field::kBatch) {
      line_.batch = value;
    } else if (state_ == State::kItem && field_ == Field::kLeafIndex) {
      line_.leaf_index = value;
    } else if (state_ == State::kItem && field_ == Field::kSeq) {
      line_.seq = value;
    } else {
      return false;
    }
    return Take(field_);
  }
  bool string(json::string_t& value) {
    if (state_ == State::kTop && field_ == Field::kOther) {
      if (top_key_ == "request_id") {
        answer_.request_id = std::move(value);
      }
      return true;
    }
    if (state_ == State::kBatch && field_ == Field::kBatchId) {
      batch_.batch_id = std::move(value);
    } else if (state_ == State::kBatch && field_ == Field::kNote) {
      batch_.note = std::move(value);
    } else if (state_ == State::kItem && field_ == Field::kName) {
      name_matches_ = value == names_[answer_.lines.size()];
    } else {
      return false;
    }
    return Take(field_);
  }
  bool start_object(std::size_t /*size*/) {
    switch (state_) {
      case State::kStart:
        state_ = State::kTop;
        return true;
      case State::kBatches:
        state_ = State::kBatch;
        batch_ = AnsweredBatch{};
        seen_ = 0;
        return true;
      case State::kItems:
        if (answer_.lines.size() == names_.size()) {
          return false;  // more lines than files
        }
        state_ = State::kItem;
        line_ = AnsweredLine{};
        seen_ = 0;
        name_matches_ = false;
        return true;
      default:
        return false;
    }
  }
  bool key(json::string_t& name) {
    if (state_ == State::kTop) {
      top_key_ = std::move(name);
      field_ = Field::kOther;
      return true;
    }
    static constexpr std::pair<std::string_view, Field> kBatchFields[] = {
        {"batch_id", Field::kBatchId},
        {"inclusion_proofs", Field::kInclusionProofs},
        {"note", Field::kNote},
        {"seq", Field::kSeq},
        {"tree_size", Field::kTreeSize}};
    static constexpr std::pair<std::string_view, Field> kItemFields[] = {
        {"batch", Field::kBatch},
        {"leaf_index", Field::kLeafIndex},
        {"name", Field::kName},
        {"seq", Field::kSeq}};
    const std::span<const std::pair<std::string_view, Field>> fields =
        state_ == State::kBatch  ? std::span(kBatchFields)
        : state_ == State::kItem ? std::span(kItemFields)
                                 : std::span<const std::pair<std::string_view, Field>>();
    for (const auto& [text, field] : fields) {
      if (name == text) {
        field_ = field;
        return (seen_ & Bit(field)) == 0;
      }
    }
    return false;
  }
  bool end_object() {
    switch (state_) {
      case State::kTop:
        state_ = State::kDone;
        return seen_top_ == 3 && answer_.lines.size() == names_.size();
      case State::kBatch: {
        const unsigned needed = Bit(Field::kBatchId) | Bit(Field::kNote) | Bit(Field::kTreeSize) |
                                Bit(Field::kInclusionProofs);
        if ((seen_ & needed) != needed) {
          return false;
        }
        batch_.proofs = false;
        answer_.batches.push_back(std::move(batch_));
        state_ = State::kBatches;
        return true;
      }
      case State::kItem: {
        const unsigned needed =
            Bit(Field::kBatch) | Bit(Field::kLeafIndex) | Bit(Field::kName) | Bit(Field::kSeq);
        if ((seen_ & needed) != needed) {
          return false;
        }
        if (!name_matches_) {
          answer_.lines.push_back(
              MakeError(ErrorCode::kInvalidArgument, std::string("not this file's line")));
        } else {
          answer_.lines.push_back(std::move(line_));
        }
        state_ = State::kItems;
        return true;
      }
      default:
        return false;
    }
  }
  bool start_array(std::size_t /*size*/) {
    if (state_ != State::kTop) {
      return false;
    }
    if (top_key_ == "batches" && (seen_top_ & 1) == 0) {
      seen_top_ |= 1;
      state_ = State::kBatches;
      return true;
    }
    if (top_key_ == "items" && (seen_top_ & 2) == 0) {
      seen_top_ |= 2;
      state_ = State::kItems;
      return true;
    }
    return false;
  }
  bool end_array() {
    if (state_ != State::kBatches && state_ != State::kItems) {
      return false;
    }
    state_ = State::kTop;
    return true;
  }

 private:
  enum class State { kStart, kTop, kBatches, kBatch, kItems, kItem, kDone };
  enum class Field {
    kOther,
    kBatchId,
    kInclusionProofs,
    kNote,
    kSeq,
    kTreeSize,
    kBatch,
    kLeafIndex,
    kName
  };
  static unsigned Bit(Field field) { return 1u << static_cast<unsigned>(field); }
  bool Take(Field field) {
    seen_ |= Bit(field);
    return true;
  }

  const std::vector<std::string_view>& names_;
  ReadAnswer answer_;
  State state_ = State::kStart;
  Field field_ = Field::kOther;
  std::string top_key_;
  unsigned seen_top_ = 0;  // 1: batches, 2: items
  unsigned seen_ = 0;      // the current batch's or item's fields
  AnsweredBatch batch_;
  AnsweredLine line_;
  bool name_matches_ = false;
};

}  // namespace

std::optional<ReadAnswer> ReadBatchAnswerFast(std::string_view body,
                                              const std::vector<std::string_view>& names) {
  AnswerReader reader(names);
  if (!json::sax_parse(body.begin(), body.end(), &reader) || !reader.done()) {
    return std::nullopt;
  }
  ReadAnswer& answer = reader.answer();
  for (Result<AnsweredLine>& line : answer.lines) {
    if (line && line->batch >= answer.batches.size()) {
      line = MakeError(ErrorCode::kInvalidArgument, std::string("its batch is missing"));
    }
  }
  return std::move(answer);
}

ReadAnswer ReadBatchAnswer(const json& reply, const std::vector<std::string_view>& names) {
  static const json kNoBatches = json::array();
  const auto batches = reply.find("batches");
  ReadAnswer answer;
  answer.batches = ReadAnsweredBatches(batches != reply.end() ? *batches : kNoBatches);
  answer.request_id = reply.value("request_id", std::string());
  const json& items = reply["items"];
  answer.lines.reserve(names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    answer.lines.push_back(ReadAnsweredLine(items[i], names[i], answer.batches));
  }
  return answer;
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
