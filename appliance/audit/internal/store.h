// appliance/audit/internal/store.h: the LMDB layout of the audit log. Private to signet::audit.
//
// One environment, five named databases (all keys big-endian, so LMDB's byte order is numeric):
//   records      seq (8 bytes)                 → canonical record bytes        (MDB_APPEND)
//   nodes        last leaf (8) ‖ level (1)     → 32-byte hash of perfect subtree (MDB_APPEND)
//                The subtree at (level, index) covers leaves [index << level, (index+1) << level);
//                its last leaf is ((index + 1) << level) - 1, so keys grow in append order.
//   checkpoints  tree size (8)                 → signed note text
//   digests      algorithm ‖ ':' ‖ raw digest  → seq (8), MDB_DUPSORT | MDB_DUPFIXED
//   meta         "format" → "1"; "tree" → size (8) ‖ root (32) ‖ compact range (32 each);
//                "origin" → origin line
//
// Caveats: one Store per directory per process. Writes happen only on the log's writer thread.
// Read views are short: hold one only while reading a bounded amount (a page of an export).
#ifndef SIGNET_APPLIANCE_AUDIT_INTERNAL_STORE_H_
#define SIGNET_APPLIANCE_AUDIT_INTERNAL_STORE_H_

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/audit/audit.h"
#include "appliance/base/base.h"
#include "pipeline/pipeline.h"

namespace signet::audit::internal {

// The tree as last committed.
struct TreeMeta {
  std::uint64_t size = 0;
  pipeline::MerkleHash root{};
  std::vector<pipeline::MerkleHash> compact_range;
};

// One entry for the digest index: record `seq` holds `digest` (raw bytes) under `algorithm`.
struct DigestIndexEntry {
  std::string_view algorithm;
  std::span<const std::uint8_t> digest;
  std::uint64_t seq = 0;
};

class Store;

// A read transaction. Move-only; ends when destroyed. Holds the store's resize lock (shared).
class ReadView {
 public:
  ReadView(ReadView&&) noexcept;
  ReadView& operator=(ReadView&&) noexcept;
  ~ReadView();

  // Errors: kNotFound (no record `seq`), kIo (LMDB).
  [[nodiscard]] Result<std::string> Record(std::uint64_t seq) const;
  // The perfect subtree (level, index). Errors: kNotFound, kIo, kInternal (a value of wrong size).
  [[nodiscard]] Result<pipeline::MerkleHash> Node(unsigned level, std::uint64_t index) const;
  // A NodeSource over this view (valid while the view lives).
  pipeline::NodeSource Nodes() const;
  [[nodiscard]] Result<TreeMeta> Tree() const;
  // The signed checkpoint with the largest size, if any.
  [[nodiscard]] Result<std::optional<std::string>> LatestCheckpoint() const;
  // How many signed checkpoints are stored.
  [[nodiscard]] Result<std::uint64_t> CheckpointCount() const;
  // The sequence numbers of records with this digest (algorithm name, raw bytes), ascending.
  [[nodiscard]] Result<std::vector<std::uint64_t>> SeqsForDigest(
      std::string_view algorithm, std::span<const std::uint8_t> digest) const;
  // The smallest seq < size whose record's time_us >= time_us (size when there is none); binary
  // search, relying on times never decreasing along the log.
  [[nodiscard]] Result<std::uint64_t> FirstSeqAtOrAfter(std::int64_t time_us,
                                                        std::uint64_t size) const;

  struct Impl;

 private:
  friend class Store;
  explicit ReadView(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// True when `error` is LMDB's MDB_MAP_FULL.
bool IsMapFull(const Error& error);

// The LMDB environment. Thread-safe: Read() from any thread; BeginWrite() on one thread at a time.
class Store {
 public:
  // Opens (creating `dir` with mode 0700 and the databases when missing) with durable settings,
  // checks the format version and clears stale reader slots. Errors: kInvalidArgument (a newer or
  // unknown format), kPermissionDenied, kIo.
  [[nodiscard]] static Result<std::unique_ptr<Store>> Open(const std::filesystem::path& dir,
                                                           std::size_t map_size,
                                                           std::size_t max_map_size);
  // Opens an existing log for reading only, alongside a process that may be writing it. Errors:
  // kNotFound (not an audit log), kInvalidArgument (format), kPermissionDenied, kIo.
  [[nodiscard]] static Result<std::unique_ptr<Store>> OpenReadOnly(
      const std::filesystem::path& dir);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  [[nodiscard]] Result<ReadView> Read() const;

  // A write transaction. Move-only; aborted when destroyed uncommitted.
  class Write {
   public:
    Write(Write&&) noexcept;
    Write& operator=(Write&&) noexcept;
    ~Write();
    [[nodiscard]] Status PutRecord(std::uint64_t seq, std::string_view bytes);
    [[nodiscard]] Status PutNode(const pipeline::MerkleNode& node);
    // Indexes each entry's digest under its algorithm as held by record `seq`. Entries may come in
    // any order: they are put in the index's key order through one cursor, so each leaf page is
    // found once from the page before instead of from the root for every entry. Errors:
    // kInvalidArgument (a key over 256 bytes), LMDB's.
    [[nodiscard]] Status PutDigests(std::span<const DigestIndexEntry> entries);
    [[nodiscard]] Status PutTree(const TreeMeta& tree);
    [[nodiscard]] Status PutCheckpoint(std::uint64_t size, std::string_view note);
    // Commits (fsync'd). Consumes the transaction: the handle is freed even when commit fails.
    [[nodiscard]] Status Commit() &&;

    struct Impl;

   private:
    friend class Store;
    explicit Write(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
  };
  // Starts a write transaction, first growing the map (doubling, up to the maximum) when more than
  // 80% of it is used. Errors: kUnavailable ("the audit map is full: ... max_map_size ...") when
  // the map is at its maximum and more than 95% used; kIo.
  [[nodiscard]] Result<Write> BeginWrite();
  // Doubles the map (up to the maximum) after a transaction met MDB_MAP_FULL; false when it is
  // already at the maximum. Call with no write transaction open. Errors: kIo.
  [[nodiscard]] Result<bool> Grow();
  // mdb_reader_check: clears slots of dead readers; returns how many.
  [[nodiscard]] Result<int> CheckReaders();
  std::size_t map_size() const;
  std::size_t map_used() const;

  struct Impl;

 private:
  explicit Store(std::unique_ptr<Impl> impl);
  static Result<std::unique_ptr<Store>> OpenEnv(const std::filesystem::path& dir,
                                                std::size_t map_size, std::size_t max_map_size,
                                                bool read_only);
  std::unique_ptr<Impl> impl_;
};

}  // namespace signet::audit::internal

#endif  // SIGNET_APPLIANCE_AUDIT_INTERNAL_STORE_H_
