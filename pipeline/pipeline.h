// pipeline/pipeline.h: hashing artifacts where they are, and RFC 6962 Merkle trees.
//
// Caveats:
// - Hasher::Run calls its callback from worker threads, one call at a time (calls are serialized),
//   in completion order, not input order: use FileOutcome::ordinal to restore input order. A slow
//   callback stalls a worker; hand heavy work to another thread. If it throws, the Run stops and
//   the exception propagates out of Run (files not yet delivered are then never delivered).
// - A per-file failure (missing file, FIFO, "changed while hashing", ...) is an outcome with an
//   error, never an exception and never a reason to stop the other files.
// - FIFOs, sockets and devices are refused without being opened for reading, so a FIFO can never
//   block the pipeline.
// - A file's digest is over the bytes read between two checks of its size and mtime; if either
//   changed, or the file grew or shrank while it was read, the outcome is an error ("changed while
//   hashing"), never a digest of a mix of old and new bytes.
// - Read buffers take threads × (read_ahead + 1) × chunk_size bytes, whatever the file sizes; they
//   are kept for the Hasher's lifetime. The list of files found (about 100 bytes each) is the only
//   memory that grows with the input.
// - The one thing the pipeline logs (io_uring refused, falling back to pread) goes to spdlog's
//   default logger, which writes to stdout unless the program points it elsewhere: a tool whose
//   stdout is data (signet digest) must send it to stderr.
// - Merkle hashing is RFC 6962 / RFC 9162: leaf = SHA-256(0x00 ‖ data), node = SHA-256(0x01 ‖
//   left ‖ right), the empty tree hashes to SHA-256(""). A leaf *hash* is never accepted where leaf
//   *data* is meant: LeafHash is the only way to make one from bytes.
// - The Merkle hash functions return plain hashes; if OpenSSL itself fails (out of memory, no
//   provider) they log the OpenSSL error and abort rather than return a wrong hash.
#ifndef SIGNET_PIPELINE_PIPELINE_H_
#define SIGNET_PIPELINE_PIPELINE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/base/base.h"

namespace signet::pipeline {

// ---- Digests -----------------------------------------------------------------------------------

// The digest algorithms Signet computes. MD5 and SHA-1 do not exist here on purpose.
enum class DigestAlgorithm : std::uint8_t { kSha256, kSha384, kSha512, kBlake2b512 };

inline constexpr std::size_t kMaxDigestLength = 64;

// "sha256", "sha384", "sha512", "blake2b512".
std::string_view DigestAlgorithmName(DigestAlgorithm algorithm);
// Digest length in bytes: 32, 48, 64, 64.
std::size_t DigestLength(DigestAlgorithm algorithm);
// Parses a name case-insensitively: "sha256" or "sha-256", "sha384", "sha512", "blake2b512",
// "blake2b-512" or "blake2b". Errors: kInvalidArgument listing the accepted names.
[[nodiscard]] Result<DigestAlgorithm> ParseDigestAlgorithm(std::string_view name);

// Digest is one algorithm's digest of some bytes. Cheap to copy (no allocation).
class Digest {
 public:
  // Errors: kInvalidArgument when `bytes` is not DigestLength(algorithm) long.
  [[nodiscard]] static Result<Digest> Make(DigestAlgorithm algorithm,
                                           std::span<const std::uint8_t> bytes);

  DigestAlgorithm algorithm() const { return algorithm_; }
  std::span<const std::uint8_t> bytes() const { return {bytes_.data(), length_}; }
  std::string Hex() const { return HexEncode(bytes()); }

  friend bool operator==(const Digest& a, const Digest& b) {
    return a.algorithm_ == b.algorithm_ && a.length_ == b.length_ && a.bytes_ == b.bytes_;
  }

 private:
  Digest() = default;

  DigestAlgorithm algorithm_ = DigestAlgorithm::kSha256;
  std::uint8_t length_ = 0;
  std::array<std::uint8_t, kMaxDigestLength> bytes_{};
};

// DigestBytes digests in-memory bytes. Errors: kCrypto (OpenSSL failed).
[[nodiscard]] Result<Digest> DigestBytes(DigestAlgorithm algorithm,
                                         std::span<const std::uint8_t> bytes);

// ---- Hashing files -----------------------------------------------------------------------------

// How files are read.
enum class IoBackend : std::uint8_t {
  kAuto,     // io_uring when the kernel allows it, otherwise pread (said once in the log)
  kIoUring,  // io_uring only; Hasher::Create fails when it is unavailable
  kPread,    // plain pread(2)
};
std::string_view IoBackendName(IoBackend backend);  // "auto", "io_uring", "pread"
// Parses "auto", "io_uring" (or "io-uring", "uring"), "pread". Errors: kInvalidArgument.
[[nodiscard]] Result<IoBackend> ParseIoBackend(std::string_view name);

struct HashOptions {
  std::vector<DigestAlgorithm> algorithms{DigestAlgorithm::kSha256};  // computed in one pass
  unsigned threads = 0;              // worker threads; 0 means one per core
  std::size_t chunk_size = 1 << 20;  // bytes per read: 4 KiB to 64 MiB
  unsigned read_ahead = 4;           // reads in flight per file (io_uring): 2 to 64
  IoBackend backend = IoBackend::kAuto;
  bool recursive = false;        // descend into directories (entries in byte order of names)
  bool follow_symlinks = false;  // false: a symlink given or found is refused, not followed
};

// What a file was when reading began; a change of any of it while reading is an error.
struct FileIdentity {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;  // modification time, ns since the Unix epoch

  friend bool operator==(const FileIdentity&, const FileIdentity&) = default;
};

struct FileDigest {
  std::string path;  // as named, or as the walk of a named directory made it (dir/name)
  FileIdentity identity;
  std::vector<Digest> digests;  // in the order of HashOptions::algorithms

  std::uint64_t size() const { return identity.size; }
};

// One file's outcome. `ordinal` numbers every file (and every refused input) in input order, with
// directory entries in sorted order, from 0 without gaps, so a caller can print in input order.
struct FileOutcome {
  std::uint64_t ordinal = 0;
  std::string path;
  Result<FileDigest> digest;
};

using OutcomeCallback = std::function<void(FileOutcome outcome)>;

struct RunStats {
  std::uint64_t files_ok = 0;
  std::uint64_t files_failed = 0;
  std::uint64_t bytes = 0;  // bytes hashed in files that succeeded
};

// Hasher hashes files in parallel (oneTBB across files; each file's bytes in order, read through
// io_uring with several chunks in flight, or pread). One Hasher may Run many times, one Run at a
// time; bytes_hashed() and files_done() may be read from any thread while it runs.
class Hasher {
 public:
  // Validates `options` and picks the I/O backend. Errors: kInvalidArgument (an option out of
  // range, naming it and its range), kUnavailable (IoBackend::kIoUring asked for and refused by
  // the kernel: the error says why, e.g. seccomp).
  [[nodiscard]] static Result<Hasher> Create(HashOptions options);

  Hasher(Hasher&&) noexcept;
  Hasher& operator=(Hasher&&) noexcept;
  ~Hasher();

  // Hashes every file named by `paths` (and, with `recursive`, every file under the directories
  // among them), calling `on_file` once per file as soon as it is done (small files are hashed in
  // groups of up to 64 and delivered when their group is done). Returns when all are done.
  RunStats Run(std::span<const std::filesystem::path> paths, const OutcomeCallback& on_file);

  // The backend in use: kIoUring or kPread (never kAuto).
  IoBackend backend() const;
  // Progress of the current (or last) Run: bytes hashed so far, including files still in
  // progress, and files finished (ok or failed). The totals are 0 until the inputs have been
  // expanded (directories walked, sizes seen), then fixed for the Run.
  std::uint64_t bytes_hashed() const;
  std::uint64_t files_done() const;
  std::uint64_t bytes_total() const;
  std::uint64_t files_total() const;

 private:
  struct State;
  explicit Hasher(std::unique_ptr<State> state);

  std::unique_ptr<State> state_;
};

// ---- RFC 6962 Merkle trees ---------------------------------------------------------------------

using MerkleHash = std::array<std::uint8_t, 32>;

// SHA-256(0x00 ‖ data): the hash of a leaf whose content is `data`.
MerkleHash LeafHash(std::span<const std::uint8_t> data);
// SHA-256(0x01 ‖ left ‖ right).
MerkleHash NodeHash(const MerkleHash& left, const MerkleHash& right);
// SHA-256(""): the root of the empty tree.
MerkleHash EmptyTreeHash();

// The root of the tree whose leaves have the given leaf hashes (RFC 6962 §2.1 MTH).
MerkleHash TreeHash(std::span<const MerkleHash> leaf_hashes);

// A perfect subtree: 2^level leaves, covering leaves [index << level, (index + 1) << level).
struct MerkleNode {
  unsigned level = 0;
  std::uint64_t index = 0;
  MerkleHash hash{};
};

// NodeSource returns the hash of the perfect subtree at (level, index). Proof functions ask only
// for perfect subtrees that lie entirely within the tree size they were given. It may fail (e.g. a
// storage error); the failure is passed on.
using NodeSource = std::function<Result<MerkleHash>(unsigned level, std::uint64_t index)>;

// Root of the tree of `size` leaves, from perfect subtrees. Errors: those of `nodes`.
[[nodiscard]] Result<MerkleHash> RootFromNodes(std::uint64_t size, const NodeSource& nodes);

// RFC 6962 §2.1.1 inclusion proof (audit path) for leaf `index` in the tree of `size` leaves.
// Errors: kInvalidArgument (index >= size), those of `nodes`.
[[nodiscard]] Result<std::vector<MerkleHash>> InclusionProof(std::uint64_t index,
                                                             std::uint64_t size,
                                                             const NodeSource& nodes);
// RFC 6962 §2.1.2 consistency proof between the trees of `old_size` and `new_size` leaves.
// Errors: kInvalidArgument (old_size > new_size), those of `nodes`. Empty when old_size is 0 or
// equals new_size.
[[nodiscard]] Result<std::vector<MerkleHash>> ConsistencyProof(std::uint64_t old_size,
                                                               std::uint64_t new_size,
                                                               const NodeSource& nodes);

// RFC 9162 §2.1.3.2: checks that `leaf_hash` is leaf `index` of the tree of `size` leaves whose
// root is `root`. Errors: kInvalidArgument (index >= size, or a proof of the wrong length),
// kCrypto ("inclusion proof does not lead to the root").
// WARNING: a proof does not pin the tree size (a proof for leaf 0 of 5 leaves also passes as size 6
// against the same root); take `size` from the same signed checkpoint as `root`.
[[nodiscard]] Status VerifyInclusion(const MerkleHash& leaf_hash, std::uint64_t index,
                                     std::uint64_t size, std::span<const MerkleHash> proof,
                                     const MerkleHash& root);
// RFC 9162 §2.1.4.2: checks that the tree of `old_size` leaves with root `old_root` is a prefix of
// the tree of `new_size` leaves with root `new_root`. Errors: kInvalidArgument (old_size >
// new_size, a proof of the wrong length), kCrypto (the proof does not match a root). With
// old_size 0, old_root must be EmptyTreeHash() and the proof empty.
[[nodiscard]] Status VerifyConsistency(std::uint64_t old_size, std::uint64_t new_size,
                                       const MerkleHash& old_root, const MerkleHash& new_root,
                                       std::span<const MerkleHash> proof);

// MerkleTree keeps every level of a tree in memory (about 2 × 32 bytes per leaf), for building all
// the proofs of a batch in O(log n) each. Immutable; safe to share between threads.
class MerkleTree {
 public:
  explicit MerkleTree(std::vector<MerkleHash> leaf_hashes);

  std::uint64_t size() const;
  MerkleHash Root() const;
  // The perfect subtree at (level, index). Errors: kInvalidArgument when it is not within the tree.
  [[nodiscard]] Result<MerkleHash> Node(unsigned level, std::uint64_t index) const;
  // A NodeSource over this tree: valid while the tree lives and is not moved.
  NodeSource Nodes() const;
  [[nodiscard]] Result<std::vector<MerkleHash>> InclusionProof(std::uint64_t index) const;
  [[nodiscard]] Result<std::vector<MerkleHash>> ConsistencyProof(std::uint64_t old_size) const;

 private:
  std::vector<std::vector<MerkleHash>> levels_;  // levels_[k][i]: perfect subtree (k, i)
};

// MerkleBuilder appends leaves one at a time with O(log n) memory: it keeps only the compact range
// (the perfect subtrees along the right edge, largest first). Not thread-safe.
class MerkleBuilder {
 public:
  MerkleBuilder() = default;
  // Resumes a tree of `size` leaves from its compact range (as returned by compact_range()), so a
  // stored log reopens without re-hashing its leaves. Errors: kInvalidArgument when the number of
  // hashes does not match `size` (one per set bit).
  [[nodiscard]] static Result<MerkleBuilder> Resume(std::uint64_t size,
                                                    std::vector<MerkleHash> compact_range);

  // Appends a leaf hash. `on_node`, when given, is called for the leaf (level 0) and then for every
  // perfect subtree the append completes, in increasing level: what a store needs to keep to serve
  // proofs later.
  void Append(const MerkleHash& leaf_hash,
              const std::function<void(const MerkleNode&)>& on_node = nullptr);

  std::uint64_t size() const { return size_; }
  // The root of the tree of size() leaves.
  MerkleHash Root() const;
  std::span<const MerkleHash> compact_range() const { return range_; }

 private:
  std::uint64_t size_ = 0;
  std::vector<MerkleHash> range_;
};

}  // namespace signet::pipeline

#endif  // SIGNET_PIPELINE_PIPELINE_H_
