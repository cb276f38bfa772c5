// RFC 6962 / RFC 9162 Merkle trees: hashing, proofs from perfect subtrees, verifiers, and the two
// tree holders (MerkleTree keeps every level, MerkleBuilder only the compact range).
//
// A perfect subtree (level, index) covers leaves [index << level, (index + 1) << level). Every
// hash a proof needs is either such a subtree or a right-edge range folded from a few of them, so
// one NodeSource serves the in-memory tree and the audit log's store alike.
#include <openssl/evp.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>

#include "pipeline/internal/evp.h"
#include "pipeline/pipeline.h"

namespace signet::pipeline {
namespace {

constexpr std::uint8_t kLeafPrefix = 0x00;
constexpr std::uint8_t kNodePrefix = 0x01;

// The Merkle hash functions return plain hashes: SHA-256 over bytes in memory fails only when
// OpenSSL cannot allocate a context or has lost its default provider. Nothing can go on after that,
// and handing out a wrong hash to an audit log would be worse than stopping.
[[noreturn]] void DieOnHashFailure(const char* step) {
  const Error error = OpenSslError(std::string("SHA-256 for a Merkle hash: ") + step);
  std::fprintf(stderr, "signet: fatal: %s\n", error.ToString().c_str());
  std::abort();
}

MerkleHash Sha256(std::initializer_list<std::span<const std::uint8_t>> parts) {
  // One context per thread, reused: allocating one per hash costs more than hashing 65 bytes, and
  // a thread-local one keeps these free functions safe to call from any thread.
  thread_local const internal::EvpMdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) {
    DieOnHashFailure("EVP_MD_CTX_new");
  }
  if (EVP_DigestInit_ex2(ctx.get(), internal::Md(DigestAlgorithm::kSha256), nullptr) != 1) {
    DieOnHashFailure("EVP_DigestInit_ex2");
  }
  for (const std::span<const std::uint8_t> part : parts) {
    if (EVP_DigestUpdate(ctx.get(), part.data(), part.size()) != 1) {
      DieOnHashFailure("EVP_DigestUpdate");
    }
  }
  MerkleHash out;
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(ctx.get(), out.data(), &length) != 1 || length != out.size()) {
    DieOnHashFailure("EVP_DigestFinal_ex");
  }
  return out;
}

std::string Str(std::uint64_t n) { return std::to_string(n); }

// Where RFC 6962 splits a tree of n >= 2 leaves: the largest power of two strictly less than n.
std::uint64_t SplitPoint(std::uint64_t n) { return std::bit_floor(n - 1); }

// The hash of leaves [begin, begin + count). `begin` must be a multiple of the smallest power of
// two not below `count`, as it is for every subtree RFC 6962's recursions name: the range is then
// a run of perfect subtrees, one per set bit of `count`, largest first, folded here from the right.
// `node_at(level, index)` returns Result<MerkleHash>.
template <class NodeAt>
Result<MerkleHash> RangeHash(std::uint64_t begin, std::uint64_t count, const NodeAt& node_at) {
  std::uint64_t end = begin + count;
  std::optional<MerkleHash> hash;
  for (std::uint64_t rest = count; rest != 0; rest &= rest - 1) {
    const auto level = static_cast<unsigned>(std::countr_zero(rest));
    end -= std::uint64_t{1} << level;
    SIGNET_ASSIGN_OR_RETURN(const MerkleHash piece, node_at(level, end >> level));
    hash = hash ? NodeHash(piece, *hash) : piece;
  }
  return hash ? *hash : EmptyTreeHash();
}

Status CheckIndex(std::uint64_t index, std::uint64_t size) {
  if (index < size) {
    return OkStatus();
  }
  if (size == 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "leaf index " + Str(index) + " is out of range: the tree is empty");
  }
  return MakeError(ErrorCode::kInvalidArgument, "leaf index " + Str(index) +
                                                    " is out of range for a tree of " + Str(size) +
                                                    " leaves (0 to " + Str(size - 1) + ")");
}

Status CheckSizes(std::uint64_t old_size, std::uint64_t new_size) {
  if (old_size <= new_size) {
    return OkStatus();
  }
  return MakeError(ErrorCode::kInvalidArgument, "old tree size " + Str(old_size) +
                                                    " is larger than new tree size " +
                                                    Str(new_size) + ": a log only grows");
}

Status CheckSource(const NodeSource& nodes) {
  if (nodes) {
    return OkStatus();
  }
  return MakeError(ErrorCode::kInvalidArgument, "no NodeSource given to read Merkle nodes from");
}

// The length of an inclusion proof, from the tree's shape alone. Below the level where the paths of
// leaf `index` and of the last leaf part, every ancestor has a sibling; above it the path runs
// along the right edge, which has a left sibling only at the set bits left in the index.
std::size_t InclusionProofLength(std::uint64_t index, std::uint64_t size) {
  const auto inner = static_cast<unsigned>(std::bit_width(index ^ (size - 1)));
  const std::uint64_t above = inner >= 64 ? 0 : index >> inner;
  return inner + static_cast<std::size_t>(std::popcount(above));
}

// For 0 < old_size < new_size. The proof is the inclusion proof of the largest perfect subtree
// ending at old_size in the tree of new_size, preceded by that subtree's hash unless it is the
// whole old tree (old_size a power of two), whose hash the verifier has as the old root.
std::size_t ConsistencyProofLength(std::uint64_t old_size, std::uint64_t new_size) {
  const auto level = static_cast<unsigned>(std::countr_zero(old_size));
  const std::uint64_t index = (old_size - 1) >> level;
  const std::uint64_t size = ((new_size - 1) >> level) + 1;
  return (index == 0 ? 0 : 1) + InclusionProofLength(index, size);
}

// RFC 6962 §2.1.1 PATH(m, D[n]), iteratively. The recursion appends each sibling after the deeper
// part of the path, so walking down from the root collects the proof in reverse.
template <class NodeAt>
Result<std::vector<MerkleHash>> BuildInclusionProof(std::uint64_t index, std::uint64_t size,
                                                    const NodeAt& node_at) {
  SIGNET_RETURN_IF_ERROR(CheckIndex(index, size));
  std::vector<MerkleHash> proof;
  proof.reserve(InclusionProofLength(index, size));
  std::uint64_t begin = 0;  // the current subtree is D[begin : begin + size]; m is `index` in it
  while (size > 1) {
    const std::uint64_t k = SplitPoint(size);
    const bool left = index < k;
    SIGNET_ASSIGN_OR_RETURN(MerkleHash sibling, left ? RangeHash(begin + k, size - k, node_at)
                                                     : RangeHash(begin, k, node_at));
    proof.push_back(sibling);
    if (left) {
      size = k;
    } else {
      begin += k;
      index -= k;
      size -= k;
    }
  }
  std::reverse(proof.begin(), proof.end());
  return proof;
}

// RFC 6962 §2.1.2 SUBPROOF(m, D[n], b), iteratively, collected in reverse as above.
template <class NodeAt>
Result<std::vector<MerkleHash>> BuildConsistencyProof(std::uint64_t old_size,
                                                      std::uint64_t new_size,
                                                      const NodeAt& node_at) {
  SIGNET_RETURN_IF_ERROR(CheckSizes(old_size, new_size));
  std::vector<MerkleHash> proof;
  if (old_size == 0 || old_size == new_size) {
    return proof;
  }
  proof.reserve(ConsistencyProofLength(old_size, new_size));
  std::uint64_t begin = 0;   // the current subtree is D[begin : begin + new_size]
  bool old_is_whole = true;  // b: the old tree is the left part of the current subtree
  while (old_size != new_size) {
    const std::uint64_t k = SplitPoint(new_size);
    const bool left = old_size <= k;
    SIGNET_ASSIGN_OR_RETURN(MerkleHash sibling, left ? RangeHash(begin + k, new_size - k, node_at)
                                                     : RangeHash(begin, k, node_at));
    proof.push_back(sibling);
    if (left) {
      new_size = k;
    } else {
      begin += k;
      old_size -= k;
      new_size -= k;
      old_is_whole = false;
    }
  }
  // The subtree both trees share. When it is the whole old tree the verifier holds its hash
  // already (the old root); otherwise the proof must carry it. It is perfect: the loop only stops
  // after a left step onto a power of two.
  if (!old_is_whole) {
    SIGNET_ASSIGN_OR_RETURN(MerkleHash shared, RangeHash(begin, old_size, node_at));
    proof.push_back(shared);
  }
  std::reverse(proof.begin(), proof.end());
  return proof;
}

// RFC 9162's "right-shift fn and sn equally until LSB(fn) is set or fn is 0": skips the levels
// where the right edge of the smaller tree has no sibling.
void SkipLoneLevels(std::uint64_t& fn, std::uint64_t& sn) {
  while ((fn & 1) == 0 && fn != 0) {
    fn >>= 1;
    sn >>= 1;
  }
}

// MerkleTree's nodes, for the proof templates without a std::function in between.
struct TreeNodes {
  const MerkleTree* tree;
  Result<MerkleHash> operator()(unsigned level, std::uint64_t index) const {
    return tree->Node(level, index);
  }
};

}  // namespace

MerkleHash LeafHash(std::span<const std::uint8_t> data) {
  const std::uint8_t prefix[] = {kLeafPrefix};
  return Sha256({prefix, data});
}

MerkleHash NodeHash(const MerkleHash& left, const MerkleHash& right) {
  const std::uint8_t prefix[] = {kNodePrefix};
  return Sha256({prefix, left, right});
}

MerkleHash EmptyTreeHash() {
  static const MerkleHash kEmpty = Sha256({});
  return kEmpty;
}

MerkleHash TreeHash(std::span<const MerkleHash> leaf_hashes) {
  // Through the builder: O(n) hashes in O(log n) memory, with no copy of the leaves.
  MerkleBuilder builder;
  for (const MerkleHash& leaf : leaf_hashes) {
    builder.Append(leaf);
  }
  return builder.Root();
}

Result<MerkleHash> RootFromNodes(std::uint64_t size, const NodeSource& nodes) {
  SIGNET_RETURN_IF_ERROR(CheckSource(nodes));
  return RangeHash(0, size, nodes);
}

Result<std::vector<MerkleHash>> InclusionProof(std::uint64_t index, std::uint64_t size,
                                               const NodeSource& nodes) {
  SIGNET_RETURN_IF_ERROR(CheckSource(nodes));
  return BuildInclusionProof(index, size, nodes);
}

Result<std::vector<MerkleHash>> ConsistencyProof(std::uint64_t old_size, std::uint64_t new_size,
                                                 const NodeSource& nodes) {
  SIGNET_RETURN_IF_ERROR(CheckSource(nodes));
  return BuildConsistencyProof(old_size, new_size, nodes);
}

Status VerifyInclusion(const MerkleHash& leaf_hash, std::uint64_t index, std::uint64_t size,
                       std::span<const MerkleHash> proof, const MerkleHash& root) {
  SIGNET_RETURN_IF_ERROR(CheckIndex(index, size));
  // Checked up front, so a short or long proof is reported as such rather than as a wrong root.
  if (const std::size_t want = InclusionProofLength(index, size); proof.size() != want) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "an inclusion proof for leaf " + Str(index) + " in a tree of " + Str(size) +
                         " leaves has " + Str(want) + " hashes, got " + Str(proof.size()));
  }
  // RFC 9162 §2.1.3.2. Its in-loop "if sn is 0, fail" cannot trigger after the length check.
  std::uint64_t fn = index;
  std::uint64_t sn = size - 1;
  MerkleHash r = leaf_hash;
  for (const MerkleHash& p : proof) {
    if ((fn & 1) == 1 || fn == sn) {
      r = NodeHash(p, r);
      SkipLoneLevels(fn, sn);
    } else {
      r = NodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0 || r != root) {
    return MakeError(ErrorCode::kCrypto, "inclusion proof does not lead to the root: leaf " +
                                             Str(index) + " of " + Str(size) + " gives root " +
                                             HexEncode(r) + ", expected " + HexEncode(root));
  }
  return OkStatus();
}

namespace {

// VerifyConsistency for the sizes where the proof is empty by definition.
Status VerifyTrivialConsistency(std::uint64_t old_size, std::uint64_t new_size,
                                const MerkleHash& old_root, const MerkleHash& new_root,
                                std::span<const MerkleHash> proof) {
  if (!proof.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a consistency proof from tree size " + Str(old_size) + " to " +
                         Str(new_size) + " is empty, got " + Str(proof.size()) + " hashes");
  }
  // The empty tree is a prefix of every tree, but only under its own root.
  if (old_size == 0 && old_root != EmptyTreeHash()) {
    return MakeError(ErrorCode::kCrypto, "old root " + HexEncode(old_root) +
                                             " is not the root of the empty tree, " +
                                             HexEncode(EmptyTreeHash()));
  }
  if (old_size == new_size && old_root != new_root) {
    return MakeError(ErrorCode::kCrypto, "two trees of " + Str(new_size) +
                                             " leaves have different roots: " +
                                             HexEncode(old_root) + " and " + HexEncode(new_root));
  }
  return OkStatus();
}

}  // namespace

Status VerifyConsistency(std::uint64_t old_size, std::uint64_t new_size, const MerkleHash& old_root,
                         const MerkleHash& new_root, std::span<const MerkleHash> proof) {
  SIGNET_RETURN_IF_ERROR(CheckSizes(old_size, new_size));
  if (old_size == 0 || old_size == new_size) {
    return VerifyTrivialConsistency(old_size, new_size, old_root, new_root, proof);
  }
  if (const std::size_t want = ConsistencyProofLength(old_size, new_size); proof.size() != want) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a consistency proof from tree size " + Str(old_size) + " to " +
                         Str(new_size) + " has " + Str(want) + " hashes, got " + Str(proof.size()));
  }
  // RFC 9162 §2.1.4.2, its in-loop check of sn made moot by the length check as above. When
  // old_size is a power of two, the old root starts the path (step 2).
  const bool seed_is_old_root = std::has_single_bit(old_size);
  MerkleHash fr = seed_is_old_root ? old_root : proof.front();
  MerkleHash sr = fr;
  std::uint64_t fn = old_size - 1;
  std::uint64_t sn = new_size - 1;
  while ((fn & 1) == 1) {
    fn >>= 1;
    sn >>= 1;
  }
  for (const MerkleHash& c : proof.subspan(seed_is_old_root ? 0 : 1)) {
    if ((fn & 1) == 1 || fn == sn) {
      fr = NodeHash(c, fr);
      sr = NodeHash(c, sr);
      SkipLoneLevels(fn, sn);
    } else {
      sr = NodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  const std::string sizes = "from tree size " + Str(old_size) + " to " + Str(new_size);
  if (sn != 0 || fr != old_root) {
    return MakeError(ErrorCode::kCrypto, "consistency proof " + sizes +
                                             " does not lead to the old root: it gives " +
                                             HexEncode(fr) + ", expected " + HexEncode(old_root));
  }
  if (sr != new_root) {
    return MakeError(ErrorCode::kCrypto, "consistency proof " + sizes +
                                             " does not lead to the new root: it gives " +
                                             HexEncode(sr) + ", expected " + HexEncode(new_root));
  }
  return OkStatus();
}

// ---- MerkleTree --------------------------------------------------------------------------------

MerkleTree::MerkleTree(std::vector<MerkleHash> leaf_hashes) {
  levels_.reserve(static_cast<std::size_t>(std::bit_width(leaf_hashes.size())) + 1);
  levels_.push_back(std::move(leaf_hashes));
  while (levels_.back().size() >= 2) {
    const std::vector<MerkleHash>& below = levels_.back();
    // Only complete pairs: a lone last node is not a perfect subtree one level up.
    std::vector<MerkleHash> above(below.size() / 2);
    for (std::size_t i = 0; i < above.size(); ++i) {
      above[i] = NodeHash(below[2 * i], below[2 * i + 1]);
    }
    levels_.push_back(std::move(above));
  }
}

std::uint64_t MerkleTree::size() const { return levels_.empty() ? 0 : levels_.front().size(); }

MerkleHash MerkleTree::Root() const {
  // Every piece of the root's range is a complete node of levels_, so no lookup can fail.
  return *RangeHash(0, size(), TreeNodes{this});
}

Result<MerkleHash> MerkleTree::Node(unsigned level, std::uint64_t index) const {
  const std::size_t count = level < levels_.size() ? levels_[level].size() : 0;
  if (index >= count) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "Merkle node (level " + Str(level) + ", index " + Str(index) +
                         ") is not a complete subtree of this tree of " + Str(size()) +
                         " leaves: level " + Str(level) + " has " + Str(count) + " complete nodes");
  }
  return levels_[level][index];
}

NodeSource MerkleTree::Nodes() const { return TreeNodes{this}; }

Result<std::vector<MerkleHash>> MerkleTree::InclusionProof(std::uint64_t index) const {
  return BuildInclusionProof(index, size(), TreeNodes{this});
}

Result<std::vector<MerkleHash>> MerkleTree::ConsistencyProof(std::uint64_t old_size) const {
  return BuildConsistencyProof(old_size, size(), TreeNodes{this});
}

// ---- MerkleBuilder -----------------------------------------------------------------------------

Result<MerkleBuilder> MerkleBuilder::Resume(std::uint64_t size,
                                            std::vector<MerkleHash> compact_range) {
  const auto want = static_cast<std::size_t>(std::popcount(size));
  if (compact_range.size() != want) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the compact range of a tree of " + Str(size) + " leaves has " + Str(want) +
                         " hashes (one per set bit of the size), got " + Str(compact_range.size()));
  }
  MerkleBuilder builder;
  builder.size_ = size;
  builder.range_ = std::move(compact_range);
  return builder;
}

void MerkleBuilder::Append(const MerkleHash& leaf_hash,
                           const std::function<void(const MerkleNode&)>& on_node) {
  MerkleNode node{.level = 0, .index = size_, .hash = leaf_hash};
  if (on_node) {
    on_node(node);
  }
  // Each trailing set bit of the old size is a right-edge subtree as large as `node`: merging them
  // smallest first completes the new perfect subtrees in increasing level.
  for (std::uint64_t rest = size_; (rest & 1) == 1; rest >>= 1) {
    node.hash = NodeHash(range_.back(), node.hash);
    range_.pop_back();
    ++node.level;
    node.index >>= 1;
    if (on_node) {
      on_node(node);
    }
  }
  range_.push_back(node.hash);
  ++size_;
}

MerkleHash MerkleBuilder::Root() const {
  if (range_.empty()) {
    return EmptyTreeHash();
  }
  MerkleHash hash = range_.back();
  for (auto it = range_.rbegin() + 1; it != range_.rend(); ++it) {
    hash = NodeHash(*it, hash);
  }
  return hash;
}

}  // namespace signet::pipeline
