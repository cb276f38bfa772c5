#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/info.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <string>

#include "pipeline/internal/evp.h"
#include "pipeline/internal/inputs.h"
#include "pipeline/internal/reader.h"
#include "pipeline/pipeline.h"

namespace signet::pipeline {
namespace {

constexpr std::size_t kMinChunk = 4 << 10;
constexpr std::size_t kMaxChunk = 64 << 20;
constexpr unsigned kMinReadAhead = 2;
constexpr unsigned kMaxReadAhead = 64;
constexpr unsigned kMaxThreads = 256;
constexpr std::uint64_t kMaxReadMemory = 1ull << 30;
// Small files are grouped into units of work so that each costs no task (thread hop) of its own.
constexpr std::size_t kMaxFilesPerUnit = 64;

FileIdentity IdentityOf(const struct stat& st) {
  return FileIdentity{
      static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
      static_cast<std::uint64_t>(st.st_size),
      static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

// A file's outcome waiting to be delivered.
struct Done {
  std::size_t ordinal;
  Result<FileDigest> digest;
};

// Everything one worker thread owns: its readers (and io_uring ring) and its digest contexts.
struct Worker {
  std::unique_ptr<internal::FileReader> preader;  // pread: small files, and all with kPread
  std::unique_ptr<internal::FileReader> uring;    // made at the first large file (kIoUring)
  bool uring_failed = false;
  std::optional<internal::MultiDigest> digest;
  std::optional<Error> broken;  // set when the worker could not be built
  std::vector<Done> done;       // the current unit's outcomes
};

// A unit of work: one large file, or a run of small files in input order.
struct Unit {
  std::size_t first = 0;  // index into the entries
  std::size_t count = 0;
  std::uint64_t bytes = 0;
};

}  // namespace

struct Hasher::State {
  HashOptions options;
  IoBackend backend = IoBackend::kPread;
  unsigned threads = 1;
  tbb::task_arena arena;
  std::atomic<std::uint64_t> bytes_hashed{0};
  std::atomic<std::uint64_t> files_done{0};
  std::atomic<std::uint64_t> bytes_total{0};
  std::atomic<std::uint64_t> files_total{0};
  std::atomic<unsigned> active{0};  // files being hashed right now
  // One per thread that has worked for this Hasher, kept across Runs (rings and buffers included).
  tbb::enumerable_thread_specific<Worker> workers{[this] { return MakeWorker(); }};

  Worker MakeWorker() const;
  internal::FileReader& LargeFileReader(Worker& worker) const;
  Result<FileDigest> HashFile(const internal::InputEntry& entry, Worker& worker);
};

Worker Hasher::State::MakeWorker() const {
  Worker worker;
  worker.preader = internal::MakePreadReader(options.chunk_size);
  auto digest = internal::MultiDigest::Create(options.algorithms);
  if (digest) {
    worker.digest.emplace(std::move(*digest));
  } else {
    worker.broken = digest.error();
  }
  return worker;
}

internal::FileReader& Hasher::State::LargeFileReader(Worker& worker) const {
  if (backend != IoBackend::kIoUring || worker.uring_failed) {
    return *worker.preader;
  }
  if (!worker.uring) {
    // Made lazily: a run of small files never needs a ring or its registered buffers.
    auto reader = internal::MakeUringReader(options.chunk_size, options.read_ahead);
    if (!reader) {
      // The probe in Create succeeded, so this is a resource limit on one more ring; this thread
      // reads with pread rather than failing its files.
      spdlog::warn("hashing: {}; this worker reads with pread", reader.error().message());
      worker.uring_failed = true;
      return *worker.preader;
    }
    worker.uring = std::move(*reader);
  }
  return *worker.uring;
}

Result<FileDigest> Hasher::State::HashFile(const internal::InputEntry& entry, Worker& worker) {
  if (worker.broken) {
    return MakeError(*worker.broken);
  }
  // Only the error paths need the name as a string; most files never fail.
  const auto name = [&entry] { return entry.where.path; };
  // O_NONBLOCK: if the file was swapped for a FIFO since it was listed, opening must not block (and
  // reading it then fails, as does the identity check after).
  const int flags =
      O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (options.follow_symlinks ? 0 : O_NOFOLLOW);
  UniqueFd fd(::openat(entry.where.at_fd(), entry.where.at_name(), flags));
  if (!fd) {
    const int err = errno;
    if (err == ELOOP && !options.follow_symlinks) {
      return MakeError(ErrorCode::kInvalidArgument,
                       name() +
                           " is a symbolic link, and symbolic links are not followed (signet "
                           "digest -L follows them)");
    }
    return MakeError(ErrnoError(err, name()));
  }
  // The identity is the one listing saw; the fstat after reading, on this very descriptor, proves
  // that what was read is that file, unchanged. One stat per file fewer than checking on both sides
  // of the read, and no weaker: a file swapped or modified in between fails the check after.
  // The path is filled in when the outcome is delivered, by moving it out of the entry.
  FileDigest result{{}, entry.seen, {}};
  const std::uint64_t size = entry.seen.size;
  SIGNET_RETURN_IF_ERROR(worker.digest->Reset());
  const auto sink = [&](std::span<const std::uint8_t> chunk) -> Status {
    bytes_hashed.fetch_add(chunk.size(), std::memory_order_relaxed);
    return worker.digest->Update(chunk);
  };
  Status read;
  if (size <= options.chunk_size) {
    read = worker.preader->ReadAll(fd.get(), size, false, sink);
  } else {
    (void)::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    // Offload page copies to the kernel's workers only when a core would otherwise idle.
    const bool offload = active.load(std::memory_order_relaxed) < threads;
    read = LargeFileReader(worker).ReadAll(fd.get(), size, offload, sink);
  }
  struct stat after {};
  if (::fstat(fd.get(), &after) != 0) {
    return MakeError(ErrnoError(errno, name()));
  }
  if (!S_ISREG(after.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     name() + " is " + std::string(internal::FileTypeName(after.st_mode)) +
                         ", not a regular file; only regular files are hashed");
  }
  const FileIdentity now = IdentityOf(after);
  if (now.device != entry.seen.device || now.inode != entry.seen.inode) {
    return MakeError(internal::ChangedWhileHashing("replaced by another file").WithContext(name()));
  }
  if (!read) {
    return MakeError(std::move(read).error().WithContext(name()));
  }
  if (now.size != size) {
    return MakeError(internal::ChangedWhileHashing("size went from " + std::to_string(size) +
                                                   " to " + std::to_string(now.size) + " bytes")
                         .WithContext(name()));
  }
  if (now.mtime_ns != entry.seen.mtime_ns) {
    return MakeError(
        internal::ChangedWhileHashing("modified while it was read").WithContext(name()));
  }
  SIGNET_ASSIGN_OR_RETURN(result.digests, worker.digest->Finish());
  return result;
}

Result<Hasher> Hasher::Create(HashOptions options) {
  auto range_error = [](std::string_view what, std::uint64_t value, std::uint64_t lo,
                        std::uint64_t hi) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string(what) + " " + std::to_string(value) + " is out of range; use " +
                         std::to_string(lo) + " to " + std::to_string(hi));
  };
  if (options.algorithms.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "no digest algorithm asked for");
  }
  for (std::size_t i = 0; i < options.algorithms.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (options.algorithms[i] == options.algorithms[j]) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "digest algorithm " +
                             std::string(DigestAlgorithmName(options.algorithms[i])) +
                             " asked for twice");
      }
    }
  }
  if (options.threads > kMaxThreads) {
    return range_error("threads", options.threads, 1, kMaxThreads);
  }
  if (options.chunk_size < kMinChunk || options.chunk_size > kMaxChunk) {
    return range_error("chunk size", options.chunk_size, kMinChunk, kMaxChunk);
  }
  if (options.read_ahead < kMinReadAhead || options.read_ahead > kMaxReadAhead) {
    return range_error("read-ahead", options.read_ahead, kMinReadAhead, kMaxReadAhead);
  }
  auto state = std::make_unique<State>();
  state->threads = options.threads != 0
                       ? options.threads
                       : static_cast<unsigned>(std::max(1, tbb::info::default_concurrency()));
  const std::uint64_t read_memory =
      std::uint64_t{state->threads} * (options.read_ahead + 1) * options.chunk_size;
  if (read_memory > kMaxReadMemory) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "threads × read-ahead × chunk size is " + std::to_string(read_memory >> 20) +
                         " MiB of read buffers; keep it at most " +
                         std::to_string(kMaxReadMemory >> 20) + " MiB");
  }
  if (options.backend == IoBackend::kPread) {
    state->backend = IoBackend::kPread;
  } else {
    // Probe once: containers often block io_uring with seccomp.
    const Status probe = internal::ProbeUring();
    if (probe) {
      state->backend = IoBackend::kIoUring;
    } else if (options.backend == IoBackend::kIoUring) {
      return MakeError(probe.error());
    } else {
      static std::once_flag once;
      std::call_once(once, [&] {
        spdlog::warn(
            "{}; hashing with pread instead (same digests, less overlap of reading and "
            "hashing)",
            probe.error().message());
      });
      state->backend = IoBackend::kPread;
    }
  }
  state->options = std::move(options);
  state->arena.initialize(static_cast<int>(state->threads));
  return Hasher(std::move(state));
}

Hasher::Hasher(std::unique_ptr<State> state) : state_(std::move(state)) {}
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;
Hasher::~Hasher() = default;

RunStats Hasher::Run(std::span<const std::filesystem::path> paths, const OutcomeCallback& on_file) {
  State& s = *state_;
  s.bytes_hashed = 0;
  s.files_done = 0;
  s.bytes_total = 0;
  s.files_total = 0;
  std::vector<internal::InputEntry> entries =
      internal::ExpandInputs(paths, s.options.recursive, s.options.follow_symlinks, s.arena);

  RunStats stats;
  std::mutex deliver_mu;  // serializes on_file and guards stats
  // Delivers a unit's outcomes under one lock: with thousands of small files, a lock per file
  // makes the workers queue behind each other.
  const auto deliver = [&](std::span<Done> done) {
    std::lock_guard lock(deliver_mu);
    for (Done& d : done) {
      if (d.digest) {
        ++stats.files_ok;
        stats.bytes += d.digest->size();
      } else {
        ++stats.files_failed;
      }
      s.files_done.fetch_add(1, std::memory_order_relaxed);
      // Each entry is delivered once and its path is not read after, so it moves to the outcome.
      std::string path = std::move(entries[d.ordinal].where.path);
      if (d.digest) {
        d.digest->path = path;
      }
      on_file(FileOutcome{d.ordinal, std::move(path), std::move(d.digest)});
    }
  };

  // Units: each large file alone, small files in runs of input order. Largest first, so that a
  // huge file starts early instead of leaving one core busy alone at the end.
  std::vector<Unit> units;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].error) {
      continue;
    }
    const std::uint64_t size = entries[i].seen.size;
    total += size;
    const bool large = size > s.options.chunk_size;
    Unit* last = units.empty() ? nullptr : &units.back();
    const bool extend = !large && last != nullptr && last->first + last->count == i &&
                        last->count < kMaxFilesPerUnit &&
                        entries[last->first].seen.size <= s.options.chunk_size &&
                        last->bytes + size <= 8 * s.options.chunk_size;
    if (extend) {
      ++last->count;
      last->bytes += size;
    } else {
      units.push_back(Unit{i, 1, size});
    }
  }
  std::stable_sort(units.begin(), units.end(),
                   [](const Unit& a, const Unit& b) { return a.bytes > b.bytes; });
  s.bytes_total = total;
  s.files_total = entries.size();

  std::vector<Done> refused;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].error) {
      refused.push_back(Done{i, MakeError(*entries[i].error)});
    }
  }
  deliver(refused);

  s.arena.execute([&] {
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, units.size(), 1),
        [&](const tbb::blocked_range<std::size_t>& range) {
          Worker& worker = s.workers.local();
          for (std::size_t u = range.begin(); u != range.end(); ++u) {
            worker.done.clear();
            for (std::size_t i = units[u].first; i < units[u].first + units[u].count; ++i) {
              s.active.fetch_add(1, std::memory_order_relaxed);
              Result<FileDigest> digest = [&]() -> Result<FileDigest> {
                try {
                  return s.HashFile(entries[i], worker);
                } catch (const std::exception& e) {
                  return MakeError(ErrorCode::kInternal, entries[i].where.path + ": " + e.what());
                }
              }();
              s.active.fetch_sub(1, std::memory_order_relaxed);
              worker.done.push_back(Done{i, std::move(digest)});
            }
            deliver(worker.done);
          }
        },
        tbb::simple_partitioner());
  });
  return stats;
}

IoBackend Hasher::backend() const { return state_->backend; }
std::uint64_t Hasher::bytes_hashed() const { return state_->bytes_hashed.load(); }
std::uint64_t Hasher::files_done() const { return state_->files_done.load(); }
std::uint64_t Hasher::bytes_total() const { return state_->bytes_total.load(); }
std::uint64_t Hasher::files_total() const { return state_->files_total.load(); }

std::string_view IoBackendName(IoBackend backend) {
  switch (backend) {
    case IoBackend::kAuto:
      return "auto";
    case IoBackend::kIoUring:
      return "io_uring";
    case IoBackend::kPread:
      return "pread";
  }
  return "unknown";
}

Result<IoBackend> ParseIoBackend(std::string_view name) {
  if (name == "auto") {
    return IoBackend::kAuto;
  }
  if (name == "io_uring" || name == "io-uring" || name == "uring") {
    return IoBackend::kIoUring;
  }
  if (name == "pread") {
    return IoBackend::kPread;
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown I/O backend '" + std::string(name) + "'; use auto, io_uring or pread");
}

}  // namespace signet::pipeline
