// The audit log: group commit on one writer thread, signed checkpoints, start-up checks, fail
// closed. Layout in internal/store.h; record bytes in internal/record.h.
#include <fcntl.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <utility>

#include "appliance/audit/internal/checkpoint_file.h"
#include "appliance/audit/internal/export.h"
#include "appliance/audit/internal/query.h"
#include "appliance/audit/internal/record.h"
#include "appliance/audit/internal/store.h"

namespace signet::audit {
namespace {

using pipeline::MerkleHash;

// How many of the newest records Open re-hashes and compares with their stored leaves.
constexpr std::uint64_t kTailCheck = 256;

// LogStats' histograms' bucket bounds: seconds, and records.
constexpr std::array<double, 13> kCommitLatencyBounds = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
constexpr std::array<double, 14> kRecordsPerCommitBounds = {1,   2,   4,   8,    16,   32,   64,
                                                            128, 256, 512, 1024, 2048, 4096, 8192};

// The bucket of `value` in `bounds` (bounds.size(): above every bound).
template <std::size_t N>
std::size_t BucketOf(const std::array<double, N>& bounds, double value) {
  return static_cast<std::size_t>(std::lower_bound(bounds.begin(), bounds.end(), value) -
                                  bounds.begin());
}

template <std::size_t N>
LogStats::Histogram Cumulative(const std::array<double, N>& bounds,
                               const std::array<std::uint64_t, N + 1>& counts, double sum) {
  LogStats::Histogram h;
  h.bounds.assign(bounds.begin(), bounds.end());
  for (std::size_t i = 0; i <= N; ++i) {
    h.count += counts[i];
    if (i < N) {
      h.cumulative.push_back(h.count);
    }
  }
  h.sum = sum;
  return h;
}

std::int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string RootText(const MerkleHash& root) { return Base64Encode(root); }

// A record's prepared bytes in its Pending's text, and where its index entries are.
struct Prepared {
  std::size_t offset = 0;  // into Pending::text: head, then middle
  std::size_t head_size = 0;
  std::size_t size = 0;
  std::size_t digests_end = 0;  // its digests are Pending::digests from the previous one's end
};

// An index entry: algorithm, raw digest (in Pending::digest_bytes).
struct DigestEntry {
  std::string algorithm;
  std::size_t offset = 0;
  std::size_t size = 0;
};

// One Submit's records. Their bytes share one buffer, and their digests another: ten thousand
// records are then a handful of allocations rather than tens of thousands (each of which grew
// and shrank the allocating thread's heap).
struct Pending {
  std::string text;
  std::vector<Prepared> records;
  std::vector<DigestEntry> digests;
  Bytes digest_bytes;
  Log::Done done;
};

struct CommitOutcome {
  Log::Done done;
  Result<SeqRange> result;
};

}  // namespace

struct Log::State {
  LogOptions options;
  std::shared_ptr<NoteSigner> signer;
  std::unique_ptr<internal::Store> store;
  internal::CheckpointFile checkpoint_file;

  mutable std::mutex mu;
  std::condition_variable writer_cv;      // work for the writer
  std::condition_variable committed_cv;   // a commit or checkpoint finished, or a failure
  std::condition_variable checkpoint_cv;  // work for the checkpoint thread
  std::deque<Pending> queue;
  std::size_t queued_records = 0;
  std::optional<std::pair<std::uint64_t, std::string>> checkpoint_to_store;
  bool stopping = false;     // no new records
  bool in_flight = false;    // the writer holds a group it has not finished
  bool writer_exit = false;  // the writer drains and exits
  bool checkpointer_exit = false;
  std::optional<Error> failure;

  // Committed state (under mu).
  std::uint64_t tree_size = 0;
  MerkleHash root{};
  std::uint64_t checkpoint_size = 0;
  bool has_checkpoint = false;
  std::string latest_checkpoint;
  std::chrono::system_clock::time_point checkpoint_time{};
  std::chrono::steady_clock::time_point oldest_unsigned{};  // first commit after the checkpoint
  std::uint64_t commits = 0;
  std::uint64_t records_appended = 0;
  std::chrono::microseconds last_commit_latency{0};
  // LogStats' histograms, per bucket (not cumulative; the last is above every bound).
  std::array<std::uint64_t, kCommitLatencyBounds.size() + 1> commit_latency_counts{};
  std::chrono::microseconds commit_latency_sum{0};
  std::array<std::uint64_t, kRecordsPerCommitBounds.size() + 1> records_per_commit_counts{};

  // Writer-owned.
  pipeline::MerkleBuilder builder;
  std::int64_t last_time_us = 0;
  std::chrono::steady_clock::time_point next_reader_check{};

  std::mutex sign_mu;  // one checkpoint signed at a time, so they are stored in size order

  // Callbacks run on their own thread, so the writer starts the next commit while the last
  // one's callers are told.
  struct Delivery {
    std::vector<Pending> group;
    std::vector<SeqRange> ranges;  // empty: every callback gets `error`
    std::optional<Error> error;
  };
  std::mutex deliver_mu;
  std::condition_variable deliver_cv;
  std::deque<Delivery> deliveries;
  bool deliverer_exit = false;

  std::thread writer;
  std::thread checkpointer;
  std::thread deliverer;

  void WriterLoop();
  void CheckpointLoop();
  void DeliverLoop();
  void Deliver(Delivery delivery);
  Status CommitGroup(std::vector<Pending>& group,
                     std::optional<std::pair<std::uint64_t, std::string>>& checkpoint,
                     std::vector<SeqRange>& ranges);
  Result<std::string> SignCheckpoint();
  Status Fail(const Error& error);
};

// ---- Open --------------------------------------------------------------------------------------

namespace {

Status CheckOptions(const LogOptions& options, const NoteSigner* signer) {
  if (signer == nullptr) {
    return MakeError(ErrorCode::kInvalidArgument, "the audit log needs a checkpoint signer");
  }
  if (options.dir.empty() || options.checkpoint_file.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "audit dir and checkpoint_file must both be set");
  }
  std::error_code dir_ec;
  std::error_code file_ec;
  const auto dir = std::filesystem::weakly_canonical(options.dir, dir_ec);
  const auto file = std::filesystem::weakly_canonical(options.checkpoint_file, file_ec);
  if (dir_ec || file_ec) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        dir_ec ? "audit dir " + options.dir.string() + ": " + dir_ec.message()
               : "checkpoint_file " + options.checkpoint_file.string() + ": " + file_ec.message());
  }
  if (std::mismatch(dir.begin(), dir.end(), file.begin(), file.end()).first == dir.end()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "checkpoint_file " + options.checkpoint_file.string() +
                         " must be outside the audit directory " + options.dir.string() +
                         " (it is what catches a restored or rolled-back copy of that directory)");
  }
  if (options.origin.empty() || options.origin.find('\n') != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "audit origin must be one non-empty line");
  }
  if (options.checkpoint_every == 0 || options.max_records_per_commit == 0 ||
      options.queue_capacity == 0 || options.max_record_bytes < 256) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "audit checkpoint_every, max_records_per_commit and queue_capacity must be "
                     "positive and max_record_bytes at least 256");
  }
  return OkStatus();
}

// Compares the stored tree with a signed checkpoint: a smaller tree is a rollback, a different
// root at the checkpoint's size is tampering.
Status CheckAgainst(const internal::ReadView& view, const internal::TreeMeta& tree,
                    const Checkpoint& checkpoint, std::string_view where) {
  if (checkpoint.size > tree.size) {
    return MakeError(ErrorCode::kInternal,
                     "rollback: the audit log holds " + std::to_string(tree.size) +
                         " records but a checkpoint of size " + std::to_string(checkpoint.size) +
                         " was signed (" + std::string(where) +
                         "); the directory was restored from an older copy or truncated");
  }
  MerkleHash root = tree.root;
  if (checkpoint.size < tree.size) {
    SIGNET_ASSIGN_OR_RETURN(root, pipeline::RootFromNodes(checkpoint.size, view.Nodes()));
  }
  if (root != checkpoint.root) {
    return MakeError(ErrorCode::kInternal,
                     "tampered: the audit log's root at size " + std::to_string(checkpoint.size) +
                         " is " + RootText(root) + " but the checkpoint signed for that size (" +
                         std::string(where) + ") says " + RootText(checkpoint.root));
  }
  return OkStatus();
}

}  // namespace

Log::Log(std::unique_ptr<State> state) : state_(std::move(state)) {}

Result<std::unique_ptr<Log>> Log::Open(const LogOptions& options,
                                       std::shared_ptr<NoteSigner> signer) {
  SIGNET_RETURN_IF_ERROR(CheckOptions(options, signer.get()));
  auto state = std::make_unique<State>();
  state->options = options;
  state->signer = std::move(signer);
  SIGNET_ASSIGN_OR_RETURN(
      state->store, internal::Store::Open(options.dir, options.map_size, options.max_map_size));
  const NoteVerifier& key = state->signer->verifier();
  SIGNET_ASSIGN_OR_RETURN(state->checkpoint_file,
                          internal::CheckpointFile::Open(options.checkpoint_file, options.origin));

  {
    SIGNET_ASSIGN_OR_RETURN(auto view, state->store->Read());
    SIGNET_ASSIGN_OR_RETURN(auto tree, view.Tree());
    // The stored tree must be internally consistent: its compact range gives its root, its nodes
    // give the same root, and the newest records hash to their stored leaves.
    auto builder = pipeline::MerkleBuilder::Resume(tree.size, tree.compact_range);
    if (!builder || builder->Root() != tree.root) {
      return MakeError(ErrorCode::kInternal,
                       "tampered: the audit log's stored tree state does not match its root");
    }
    auto from_nodes = pipeline::RootFromNodes(tree.size, view.Nodes());
    if (!from_nodes || *from_nodes != tree.root) {
      return MakeError(
          ErrorCode::kInternal,
          "tampered: the audit log's Merkle nodes do not give its stored root" +
              (from_nodes ? std::string() : " (" + from_nodes.error().message() + ")"));
    }
    for (std::uint64_t seq = tree.size - std::min(tree.size, kTailCheck); seq < tree.size; ++seq) {
      SIGNET_ASSIGN_OR_RETURN(const std::string bytes, view.Record(seq));
      SIGNET_ASSIGN_OR_RETURN(const MerkleHash leaf, view.Node(0, seq));
      if (pipeline::LeafHash(AsBytes(bytes)) != leaf) {
        return MakeError(ErrorCode::kInternal, "tampered: audit record " + std::to_string(seq) +
                                                   " does not match its leaf hash");
      }
    }
    if (auto extra = view.Record(tree.size); extra) {
      return MakeError(
          ErrorCode::kInternal,
          "tampered: the audit log holds a record past its tree size " + std::to_string(tree.size));
    }

    // Both copies of the latest signed checkpoint: in LMDB and in the file outside it.
    SIGNET_ASSIGN_OR_RETURN(const auto stored_note, view.LatestCheckpoint());
    std::optional<Checkpoint> stored;
    if (stored_note) {
      auto opened = OpenCheckpoint(*stored_note, key);
      if (!opened) {
        return MakeError(
            opened.error().WithContext("the latest checkpoint in " + options.dir.string()));
      }
      SIGNET_RETURN_IF_ERROR(CheckAgainst(view, tree, *opened, "in the audit directory"));
      stored = *opened;
      state->latest_checkpoint = *stored_note;
    }
    const std::optional<std::string> file_note = state->checkpoint_file.latest();
    std::optional<Checkpoint> outside;
    if (file_note) {
      auto opened = OpenCheckpoint(*file_note, key);
      if (!opened) {
        return MakeError(opened.error().WithContext("the latest checkpoint in " +
                                                    options.checkpoint_file.string()));
      }
      SIGNET_RETURN_IF_ERROR(
          CheckAgainst(view, tree, *opened, "in " + options.checkpoint_file.string()));
      outside = *opened;
    } else if (stored) {
      // The file lags LMDB by at most the one append a crash cut off (repaired below), so an
      // empty file is that crash only beside the very first checkpoint. With more stored, the
      // file has lost checkpoints it once held.
      SIGNET_ASSIGN_OR_RETURN(const std::uint64_t count, view.CheckpointCount());
      if (count != 1) {
        return MakeError(ErrorCode::kInternal,
                         "the checkpoint file " + options.checkpoint_file.string() +
                             " is missing or empty but the audit log has " + std::to_string(count) +
                             " signed checkpoints, up to size " + std::to_string(stored->size) +
                             "; restore it from its off-box copy (it is what detects a "
                             "rolled-back log)");
      }
      spdlog::warn(
          "audit log: the checkpoint file {} is empty; writing the log's only signed checkpoint "
          "(size {}) to it (a crash cut off its first append)",
          options.checkpoint_file.string(), stored->size);
    }
    for (const auto* cp : {&stored, &outside}) {
      if (*cp && (*cp)->origin != options.origin) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "the audit log's checkpoints have origin \"" + (*cp)->origin +
                             "\" but the configured origin is \"" + options.origin + "\"");
      }
    }
    if (stored) {
      state->has_checkpoint = true;
      state->checkpoint_size = stored->size;
      // A crash between the LMDB commit and the file append leaves the file one behind.
      if (!outside || outside->size < stored->size) {
        SIGNET_RETURN_IF_ERROR(state->checkpoint_file.Append(*stored_note));
      }
    }
    state->builder = std::move(*builder);
    state->tree_size = tree.size;
    state->root = tree.root;
    if (tree.size > 0) {
      SIGNET_ASSIGN_OR_RETURN(const std::string last, view.Record(tree.size - 1));
      const std::size_t at = last.rfind("\"time_us\":");
      state->last_time_us =
          at == std::string::npos ? 0 : std::strtoll(last.c_str() + at + 10, nullptr, 10);
    }
  }
  state->oldest_unsigned = std::chrono::steady_clock::now();
  state->next_reader_check = std::chrono::steady_clock::now() + options.reader_check_interval;
  spdlog::info("audit log {}: {} records, latest checkpoint at size {}", options.dir.string(),
               state->tree_size, state->checkpoint_size);

  State* s = state.get();
  // Named, so that `top -H`, a profile or a core dump tells them apart (15 characters at most).
  s->writer = std::thread([s] {
    (void)::pthread_setname_np(::pthread_self(), "audit-writer");
    s->WriterLoop();
  });
  s->checkpointer = std::thread([s] {
    (void)::pthread_setname_np(::pthread_self(), "audit-checkpt");
    s->CheckpointLoop();
  });
  s->deliverer = std::thread([s] {
    (void)::pthread_setname_np(::pthread_self(), "audit-deliver");
    s->DeliverLoop();
  });
  return std::unique_ptr<Log>(new Log(std::move(state)));
}

// ---- Appending ---------------------------------------------------------------------------------

namespace {

// The index entries of `record`, onto `pending`. Errors: kInvalidArgument (a digest that is not
// hex, or of an odd size).
Status AddDigests(const Record& record, Pending& pending) {
  for (const auto& [algorithm, hex] : record.digests) {
    auto raw = HexDecode(hex);
    if (!raw || raw->empty() || raw->size() > 128 || algorithm.size() > 32) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "audit record digest " + algorithm + " is not a hex digest");
    }
    // Indexed under the pipeline's name of the algorithm, so "SHA-256" and "sha256" agree.
    auto known = pipeline::ParseDigestAlgorithm(algorithm);
    if (pending.digests.empty()) {
      pending.digest_bytes.reserve(pending.records.capacity() * raw->size());
    }
    pending.digests.push_back(
        {known ? std::string(pipeline::DigestAlgorithmName(*known)) : algorithm,
         pending.digest_bytes.size(), raw->size()});
    pending.digest_bytes.insert(pending.digest_bytes.end(), raw->begin(), raw->end());
  }
  return OkStatus();
}

}  // namespace

Status Log::Submit(std::vector<Record> records, Done done) {
  return Submit(
      records.size(), [&records](std::size_t i) -> Record& { return records[i]; }, std::move(done));
}

Status Log::Submit(std::size_t count, const std::function<Record&(std::size_t)>& record_at,
                   Done done) {
  State& s = *state_;
  if (count == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "no audit records to append");
  }
  Pending pending;
  pending.done = std::move(done);
  pending.records.reserve(count);
  // Compares each record with the one before: record_at's contract keeps that one as it was.
  internal::RecordPreparer preparer;
  for (std::size_t i = 0; i < count; ++i) {
    Record& record = record_at(i);
    if (record.host_id != s.options.host_id) {
      record.host_id = s.options.host_id;
    }
    Prepared prepared;
    prepared.offset = pending.text.size();
    SIGNET_ASSIGN_OR_RETURN(prepared.head_size, preparer.Append(record, pending.text));
    prepared.size = pending.text.size() - prepared.offset;
    if (prepared.size + 64 > s.options.max_record_bytes) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "audit record of " + std::to_string(prepared.head_size) +
                           " bytes is larger than max_record_bytes (" +
                           std::to_string(s.options.max_record_bytes) + ")");
    }
    if (pending.records.empty()) {
      // About the first record's size times their number: the buffer rarely grows.
      pending.text.reserve(std::min<std::size_t>(prepared.size + 64, 2048) * count);
    }
    SIGNET_RETURN_IF_ERROR(AddDigests(record, pending));
    prepared.digests_end = pending.digests.size();
    pending.records.push_back(prepared);
  }
  std::lock_guard lock(s.mu);
  if (s.failure) {
    return MakeError(ErrorCode::kUnavailable,
                     "the audit log has stopped after a failure and takes no records until it is "
                     "reopened: " +
                         s.failure->message());
  }
  if (s.stopping) {
    return MakeError(ErrorCode::kUnavailable, "the audit log is closing");
  }
  if (s.queued_records + pending.records.size() > s.options.queue_capacity) {
    return MakeError(ErrorCode::kUnavailable, "the audit queue is full (" +
                                                  std::to_string(s.options.queue_capacity) +
                                                  " records waiting); try again");
  }
  s.queued_records += pending.records.size();
  s.queue.push_back(std::move(pending));
  s.writer_cv.notify_one();
  return OkStatus();
}

Result<SeqRange> Log::Append(std::vector<Record> records, Deadline deadline) {
  auto promise = std::make_shared<std::promise<Result<SeqRange>>>();
  auto future = promise->get_future();
  SIGNET_RETURN_IF_ERROR(Submit(
      std::move(records), [promise](Result<SeqRange> r) { promise->set_value(std::move(r)); }));
  if (deadline.IsNever()) {
    return future.get();
  }
  if (future.wait_for(deadline.Remaining()) != std::future_status::ready) {
    return MakeError(
        ErrorCode::kDeadlineExceeded,
        "the audit commit did not finish in time (the records may still be committed)");
  }
  return future.get();
}

Status Log::State::Fail(const Error& error) {
  std::lock_guard lock(mu);
  if (!failure) {
    failure = error;
    spdlog::critical("audit log {}: {}; appends are refused until the log is reopened",
                     options.dir.string(), error.message());
  }
  committed_cv.notify_all();
  return MakeError(*failure);
}

Status Log::State::CommitGroup(std::vector<Pending>& group,
                               std::optional<std::pair<std::uint64_t, std::string>>& checkpoint,
                               std::vector<SeqRange>& ranges) {
  SIGNET_ASSIGN_OR_RETURN(auto write, store->BeginWrite());
  pipeline::MerkleBuilder next = builder;
  std::int64_t time_us = std::max(NowMicros(), last_time_us);
  Status put = OkStatus();
  std::string bytes;  // one record's, its buffer reused from record to record
  std::vector<internal::DigestIndexEntry> index;
  for (Pending& pending : group) {
    ranges.push_back(SeqRange{next.size(), pending.records.size()});
    const std::string_view text = pending.text;
    std::size_t digest = 0;
    for (const Prepared& prepared : pending.records) {
      const std::uint64_t seq = next.size();
      internal::FinishRecordInto(
          bytes, text.substr(prepared.offset, prepared.head_size),
          text.substr(prepared.offset + prepared.head_size, prepared.size - prepared.head_size),
          seq, time_us);
      SIGNET_RETURN_IF_ERROR(write.PutRecord(seq, bytes));
      next.Append(pipeline::LeafHash(AsBytes(bytes)), [&](const pipeline::MerkleNode& node) {
        if (put) {
          put = write.PutNode(node);
        }
      });
      SIGNET_RETURN_IF_ERROR(put);
      for (; digest < prepared.digests_end; ++digest) {
        const DigestEntry& entry = pending.digests[digest];
        index.push_back(
            {entry.algorithm,
             std::span<const std::uint8_t>(pending.digest_bytes).subspan(entry.offset, entry.size),
             seq});
      }
    }
  }
  // The whole group's digests at once, in the index's order (random digests, one at a time, would
  // each search the index from its root).
  SIGNET_RETURN_IF_ERROR(write.PutDigests(index));
  internal::TreeMeta tree;
  tree.size = next.size();
  tree.root = next.Root();
  tree.compact_range.assign(next.compact_range().begin(), next.compact_range().end());
  SIGNET_RETURN_IF_ERROR(write.PutTree(tree));
  if (checkpoint) {
    SIGNET_RETURN_IF_ERROR(write.PutCheckpoint(checkpoint->first, checkpoint->second));
  }
  SIGNET_RETURN_IF_ERROR(std::move(write).Commit());
  builder = std::move(next);
  last_time_us = time_us;
  return OkStatus();
}

void Log::State::WriterLoop() {
  for (;;) {
    std::vector<Pending> group;
    std::optional<std::pair<std::uint64_t, std::string>> checkpoint;
    {
      std::unique_lock lock(mu);
      writer_cv.wait(lock, [&] { return !queue.empty() || checkpoint_to_store || writer_exit; });
      if (queue.empty() && !checkpoint_to_store) {
        return;  // writer_exit and nothing left
      }
      std::size_t n = 0;
      while (!queue.empty() && (group.empty() || n + queue.front().records.size() <=
                                                     options.max_records_per_commit)) {
        n += queue.front().records.size();
        group.push_back(std::move(queue.front()));
        queue.pop_front();
      }
      queued_records -= n;
      in_flight = true;
      checkpoint = std::move(checkpoint_to_store);
      checkpoint_to_store.reset();
      if (failure) {
        const Error error(ErrorCode::kUnavailable,
                          "the audit log has stopped after a failure: " + failure->message());
        in_flight = false;
        committed_cv.notify_all();
        lock.unlock();
        Deliver({std::move(group), {}, error});
        continue;
      }
    }

    const auto now = std::chrono::steady_clock::now();
    if (now >= next_reader_check) {
      next_reader_check = now + options.reader_check_interval;
      if (auto dead = store->CheckReaders(); dead && *dead > 0) {
        spdlog::warn("audit log: cleared {} stale LMDB reader slot(s)", *dead);
      }
    }
    std::vector<SeqRange> ranges;
    const auto started = std::chrono::steady_clock::now();
    Status status = CommitGroup(group, checkpoint, ranges);
    // A group larger than the map's headroom: grow and try once more (nothing was committed).
    while (!status && internal::IsMapFull(status.error())) {
      auto grown = store->Grow();
      if (!grown || !*grown) {
        break;
      }
      ranges.clear();
      status = CommitGroup(group, checkpoint, ranges);
    }
    if (status && checkpoint) {
      // The outside copy after the durable commit: the file may lag LMDB (repaired at open), never
      // lead it.
      status = checkpoint_file.Append(checkpoint->second);
    }
    if (!status) {
      const Error error(status.error().code(), "audit commit failed: " + status.error().message(),
                        status.error().domain(), status.error().native_code());
      (void)Fail(error);
      {
        std::lock_guard lock(mu);
        in_flight = false;
      }
      Deliver(
          {std::move(group),
           {},
           Error(ErrorCode::kUnavailable, error.message(), error.domain(), error.native_code())});
      continue;
    }
    {
      std::lock_guard lock(mu);
      const bool was_signed = tree_size == checkpoint_size;
      tree_size = builder.size();
      root = builder.Root();
      if (was_signed && tree_size > checkpoint_size) {
        oldest_unsigned = std::chrono::steady_clock::now();
      }
      if (checkpoint && (!has_checkpoint || checkpoint->first >= checkpoint_size)) {
        has_checkpoint = true;
        checkpoint_size = checkpoint->first;
        latest_checkpoint = std::move(checkpoint->second);
        checkpoint_time = std::chrono::system_clock::now();
      }
      std::uint64_t committed_records = 0;
      for (const SeqRange& r : ranges) {
        committed_records += r.count;
      }
      records_appended += committed_records;
      last_commit_latency = std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::steady_clock::now() - started);
      if (!group.empty()) {
        ++commits;
        ++commit_latency_counts[BucketOf(
            kCommitLatencyBounds, std::chrono::duration<double>(last_commit_latency).count())];
        commit_latency_sum += last_commit_latency;
        ++records_per_commit_counts[BucketOf(kRecordsPerCommitBounds,
                                             static_cast<double>(committed_records))];
      }
      in_flight = false;
      committed_cv.notify_all();
      checkpoint_cv.notify_one();
    }
    Deliver({std::move(group), std::move(ranges), std::nullopt});
  }
}

void Log::State::Deliver(Delivery delivery) {
  if (delivery.group.empty()) {
    return;
  }
  std::lock_guard lock(deliver_mu);
  deliveries.push_back(std::move(delivery));
  deliver_cv.notify_one();
}

void Log::State::DeliverLoop() {
  for (;;) {
    std::deque<Delivery> batch;
    {
      std::unique_lock lock(deliver_mu);
      deliver_cv.wait(lock, [&] { return !deliveries.empty() || deliverer_exit; });
      if (deliveries.empty()) {
        return;
      }
      batch.swap(deliveries);
    }
    for (Delivery& d : batch) {
      for (std::size_t i = 0; i < d.group.size(); ++i) {
        if (d.error) {
          d.group[i].done(tl::unexpected(*d.error));
        } else {
          d.group[i].done(d.ranges[i]);
        }
      }
    }
  }
}

// ---- Checkpoints -------------------------------------------------------------------------------

// Signs a checkpoint of the committed tree and waits until the writer has stored it; returns the
// latest note when the tree has not grown since it was signed.
Result<std::string> Log::State::SignCheckpoint() {
  std::lock_guard sign_lock(sign_mu);
  Checkpoint checkpoint;
  checkpoint.origin = options.origin;
  {
    std::lock_guard lock(mu);
    if (failure) {
      return MakeError(ErrorCode::kUnavailable, "the audit log has stopped: " + failure->message());
    }
    if (writer_exit) {
      return MakeError(ErrorCode::kUnavailable, "the audit log is closed");
    }
    if (has_checkpoint && checkpoint_size == tree_size) {
      return latest_checkpoint;
    }
    checkpoint.size = tree_size;
    checkpoint.root = root;
  }
  SIGNET_ASSIGN_OR_RETURN(std::string note, SignNote(CheckpointText(checkpoint), *signer));
  std::unique_lock lock(mu);
  checkpoint_to_store = std::make_pair(checkpoint.size, note);
  writer_cv.notify_one();
  committed_cv.wait(lock, [&] {
    return failure.has_value() ||
           (has_checkpoint && checkpoint_size >= checkpoint.size && !checkpoint_to_store);
  });
  if (failure) {
    return MakeError(ErrorCode::kUnavailable, "the audit log has stopped: " + failure->message());
  }
  return latest_checkpoint;
}

void Log::State::CheckpointLoop() {
  auto backoff = std::chrono::milliseconds(100);
  for (;;) {
    {
      std::unique_lock lock(mu);
      for (;;) {
        if (checkpointer_exit || failure) {
          return;
        }
        const std::uint64_t unsigned_records = tree_size - (has_checkpoint ? checkpoint_size : 0);
        const bool grown = tree_size > checkpoint_size || (!has_checkpoint && tree_size > 0);
        if (grown && unsigned_records >= options.checkpoint_every) {
          break;
        }
        if (grown) {
          const auto due = oldest_unsigned + options.checkpoint_interval;
          if (std::chrono::steady_clock::now() >= due) {
            break;
          }
          checkpoint_cv.wait_until(lock, due);
        } else {
          checkpoint_cv.wait(lock);
        }
      }
    }
    auto note = SignCheckpoint();
    if (!note) {
      spdlog::error("audit log: signing a checkpoint failed: {}; retrying in {} ms",
                    note.error().message(), backoff.count());
      std::unique_lock lock(mu);
      checkpoint_cv.wait_for(lock, backoff, [&] { return checkpointer_exit; });
      backoff = std::min(backoff * 2, std::chrono::milliseconds(10000));
    } else {
      backoff = std::chrono::milliseconds(100);
    }
  }
}

Result<std::string> Log::CheckpointNow() { return state_->SignCheckpoint(); }

std::string Log::LatestCheckpoint() const {
  std::lock_guard lock(state_->mu);
  return state_->latest_checkpoint;
}

// ---- Reading -----------------------------------------------------------------------------------

Status Log::Export(const ExportOptions& options,
                   const std::function<Status(std::string_view line)>& sink) const {
  return internal::ExportFrom(*state_->store, options, sink);
}

Status ExportDirectory(const std::filesystem::path& dir, const ExportOptions& options,
                       const std::function<Status(std::string_view line)>& sink) {
  SIGNET_ASSIGN_OR_RETURN(const auto store, internal::Store::OpenReadOnly(dir));
  return internal::ExportFrom(*store, options, sink);
}

Result<RecordPage> Log::Records(const ExportOptions& filter, std::size_t limit) const {
  return internal::ReadRecords(*state_->store, filter, limit);
}

Result<std::vector<pipeline::MerkleHash>> Log::ConsistencyProof(std::uint64_t from,
                                                                std::uint64_t to) const {
  return internal::ReadConsistencyProof(*state_->store, from, to);
}

Result<std::vector<Record>> Log::FindByDigest(std::string_view hex_digest) const {
  SIGNET_ASSIGN_OR_RETURN(const Bytes raw, HexDecode(hex_digest));
  SIGNET_ASSIGN_OR_RETURN(auto view, state_->store->Read());
  SIGNET_ASSIGN_OR_RETURN(const auto seqs, internal::DigestSeqs(view, raw));
  std::vector<Record> records;
  for (std::uint64_t seq : seqs) {
    SIGNET_ASSIGN_OR_RETURN(const std::string bytes, view.Record(seq));
    SIGNET_ASSIGN_OR_RETURN(Record record, ParseRecord(bytes));
    records.push_back(std::move(record));
  }
  return records;
}

Result<Record> Log::Get(std::uint64_t seq) const {
  SIGNET_ASSIGN_OR_RETURN(auto view, state_->store->Read());
  SIGNET_ASSIGN_OR_RETURN(const std::string bytes, view.Record(seq));
  return ParseRecord(bytes);
}

Status Log::health() const {
  std::lock_guard lock(state_->mu);
  if (state_->failure) {
    return MakeError(*state_->failure);
  }
  if (state_->stopping) {
    return MakeError(ErrorCode::kUnavailable, "the audit log is closing or closed");
  }
  return OkStatus();
}

LogStats Log::stats() const {
  const State& s = *state_;
  LogStats stats;
  {
    std::lock_guard lock(s.mu);
    stats.tree_size = s.tree_size;
    stats.commits = s.commits;
    stats.records = s.records_appended;
    stats.checkpoint_size = s.checkpoint_size;
    stats.checkpoint_time = s.checkpoint_time;
    stats.last_commit_latency = s.last_commit_latency;
    stats.failed = s.failure.has_value();
    stats.commit_latency_seconds =
        Cumulative(kCommitLatencyBounds, s.commit_latency_counts,
                   std::chrono::duration<double>(s.commit_latency_sum).count());
    stats.records_per_commit = Cumulative(kRecordsPerCommitBounds, s.records_per_commit_counts,
                                          static_cast<double>(s.records_appended));
  }
  stats.map_size = s.store->map_size();
  stats.map_used = s.store->map_used();
  return stats;
}

// ---- Closing -----------------------------------------------------------------------------------

Status Log::Close() {
  State& s = *state_;
  {
    std::lock_guard lock(s.mu);
    if (!s.writer.joinable()) {
      return s.failure ? Status(MakeError(*s.failure)) : OkStatus();
    }
    s.stopping = true;
  }
  // Wait for what is queued to commit, then sign the final checkpoint.
  {
    std::unique_lock lock(s.mu);
    s.committed_cv.wait(lock,
                        [&] { return s.failure.has_value() || (s.queue.empty() && !s.in_flight); });
  }
  Status status = OkStatus();
  bool failed = false;
  {
    std::lock_guard lock(s.mu);
    failed = s.failure.has_value();
  }
  if (!failed) {
    auto note = s.SignCheckpoint();
    if (!note) {
      status = MakeError(note.error().WithContext("final audit checkpoint"));
    }
  }
  {
    std::lock_guard lock(s.mu);
    s.writer_exit = true;
    s.checkpointer_exit = true;
    s.writer_cv.notify_all();
    s.checkpoint_cv.notify_all();
  }
  s.writer.join();
  s.checkpointer.join();
  {
    std::lock_guard lock(s.deliver_mu);
    s.deliverer_exit = true;
    s.deliver_cv.notify_all();
  }
  s.deliverer.join();  // every callback has run
  if (s.failure) {
    return MakeError(*s.failure);
  }
  return status;
}

Log::~Log() {
  if (state_) {
    (void)Close();
  }
}

}  // namespace signet::audit
