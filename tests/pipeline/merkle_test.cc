// RFC 6962 Merkle trees: published vectors, then every tree size up to 300 against a naive
// transcription of the RFC's recursive definitions.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <bit>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "pipeline/pipeline.h"

namespace signet::pipeline {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// "ok", or the name of the error's code: reads well in a failed EXPECT_EQ.
template <class T>
std::string Outcome(const Result<T>& result) {
  return result ? "ok" : std::string(ErrorCodeName(result.error().code()));
}
std::string Name(ErrorCode code) { return std::string(ErrorCodeName(code)); }

template <class T>
std::string Message(const Result<T>& result) {
  return result ? "" : result.error().message();
}

MerkleHash H(std::string_view hex) {
  MerkleHash hash{};
  const Result<Bytes> bytes = HexDecode(hex);
  if (!bytes || bytes->size() != hash.size()) {
    ADD_FAILURE() << "bad test hash " << hex;
    return hash;
  }
  std::copy(bytes->begin(), bytes->end(), hash.begin());
  return hash;
}

std::vector<MerkleHash> Hs(std::initializer_list<std::string_view> hexes) {
  std::vector<MerkleHash> out;
  for (const std::string_view hex : hexes) {
    out.push_back(H(hex));
  }
  return out;
}

MerkleHash Flipped(MerkleHash hash, std::size_t bit = 3) {
  hash[0] ^= static_cast<std::uint8_t>(1U << bit);
  return hash;
}

// SHA-256 of `bytes` straight from OpenSSL's one-shot API, independent of the code under test.
MerkleHash OneShotSha256(const Bytes& bytes) {
  MerkleHash out{};
  unsigned int length = 0;
  EXPECT_EQ(EVP_Digest(bytes.data(), bytes.size(), out.data(), &length, EVP_sha256(), nullptr), 1);
  return out;
}

MerkleHash RefNodeHash(const MerkleHash& left, const MerkleHash& right) {
  Bytes bytes{0x01};
  bytes.insert(bytes.end(), left.begin(), left.end());
  bytes.insert(bytes.end(), right.begin(), right.end());
  return OneShotSha256(bytes);
}

// ---- Published vectors -------------------------------------------------------------------------
//
// The reference tree of Certificate Transparency: google/certificate-transparency
// cpp/merkletree/merkle_tree_test.cc (kInputs, kSHA256Roots, kSHA256Paths, kSHA256Proofs), repeated
// in transparency-dev/merkle proof/verify_test.go, which adds the 6 -> 7 consistency proof. Both
// number leaves from 1 in their inclusion vectors; the indices below are from 0.

const char* const kEmptyRoot = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const char* const kLeafData[8] = {
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
};

// kRoots[n - 1] is the root of the first n leaves.
const char* const kRoots[8] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

struct InclusionVector {
  std::uint64_t index;
  std::uint64_t size;
  std::vector<MerkleHash> proof;
};

const std::vector<InclusionVector>& InclusionVectors() {
  static const std::vector<InclusionVector> kVectors = {
      {0, 1, {}},
      {0, 8,
       Hs({"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
           "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
           "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"})},
      {5, 8,
       Hs({"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
           "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
           "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"})},
      {2, 3, Hs({"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"})},
      {1, 5,
       Hs({"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
           "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
           "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"})},
  };
  return kVectors;
}

struct ConsistencyVector {
  std::uint64_t old_size;
  std::uint64_t new_size;
  std::vector<MerkleHash> proof;
};

const std::vector<ConsistencyVector>& ConsistencyVectors() {
  static const std::vector<ConsistencyVector> kVectors = {
      {1, 1, {}},
      {1, 8,
       Hs({"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
           "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
           "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"})},
      {6, 8,
       Hs({"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
           "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
           "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"})},
      {2, 5,
       Hs({"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
           "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"})},
      {6, 7,
       Hs({"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
           "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
           "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"})},
  };
  return kVectors;
}

std::vector<MerkleHash> ReferenceLeafHashes(std::size_t count) {
  std::vector<MerkleHash> out;
  for (std::size_t i = 0; i < count; ++i) {
    const Result<Bytes> data = HexDecode(kLeafData[i]);
    EXPECT_TRUE(data);
    out.push_back(LeafHash(*data));
  }
  return out;
}

// ---- A naive reference -------------------------------------------------------------------------

// The RFC 6962 §2.1 definitions, transcribed recursively, with MTH memoized so that checking every
// proof of every tree size up to `leaves.size()` stays fast. Hashes with OpenSSL's one-shot API.
class Reference {
 public:
  explicit Reference(std::vector<MerkleHash> leaves)
      : leaves_(std::move(leaves)), memo_((leaves_.size() + 1) * (leaves_.size() + 1)) {}

  // MTH(D[begin:end]).
  MerkleHash Mth(std::uint64_t begin, std::uint64_t end) {
    const std::uint64_t n = end - begin;
    if (n == 0) {
      return OneShotSha256({});
    }
    if (n == 1) {
      return leaves_[begin];
    }
    std::optional<MerkleHash>& memo = memo_[begin * (leaves_.size() + 1) + end];
    if (!memo) {
      const std::uint64_t k = Split(n);
      memo = RefNodeHash(Mth(begin, begin + k), Mth(begin + k, end));
    }
    return *memo;
  }

  // PATH(m, D[n]).
  std::vector<MerkleHash> Path(std::uint64_t m, std::uint64_t n) {
    std::vector<MerkleHash> path;
    Path(m, 0, n, path);
    return path;
  }

  // PROOF(m, D[n]), empty for m == 0 as the API defines it.
  std::vector<MerkleHash> Proof(std::uint64_t m, std::uint64_t n) {
    std::vector<MerkleHash> proof;
    if (m != 0) {
      Subproof(m, 0, n, true, proof);
    }
    return proof;
  }

 private:
  // The largest power of two smaller than n, counted up the slow way.
  static std::uint64_t Split(std::uint64_t n) {
    std::uint64_t k = 1;
    while (k * 2 < n) {
      k *= 2;
    }
    return k;
  }

  // Appends PATH(m, D[begin:end]) to `out`.
  void Path(std::uint64_t m, std::uint64_t begin, std::uint64_t end, std::vector<MerkleHash>& out) {
    const std::uint64_t n = end - begin;
    if (n == 1) {
      return;
    }
    const std::uint64_t k = Split(n);
    if (m < k) {
      Path(m, begin, begin + k, out);
      out.push_back(Mth(begin + k, end));
    } else {
      Path(m - k, begin + k, end, out);
      out.push_back(Mth(begin, begin + k));
    }
  }

  // Appends SUBPROOF(m, D[begin:end], b) to `out`.
  void Subproof(std::uint64_t m, std::uint64_t begin, std::uint64_t end, bool b,
                std::vector<MerkleHash>& out) {
    const std::uint64_t n = end - begin;
    if (m == n) {
      if (!b) {
        out.push_back(Mth(begin, end));
      }
      return;
    }
    const std::uint64_t k = Split(n);
    if (m <= k) {
      Subproof(m, begin, begin + k, b, out);
      out.push_back(Mth(begin + k, end));
    } else {
      Subproof(m - k, begin + k, end, false, out);
      out.push_back(Mth(begin, begin + k));
    }
  }

  std::vector<MerkleHash> leaves_;
  std::vector<std::optional<MerkleHash>> memo_;  // [begin * (size + 1) + end]
};

// A NodeSource over `tree` that fails the test when asked for a node that is not a perfect subtree
// within `size` (all the audit log's store can serve), and records what it is asked for if told to.
class CheckedSource {
 public:
  CheckedSource(const MerkleTree& tree, std::uint64_t size, bool record = false)
      : tree_(tree), size_(size), record_(record) {}

  NodeSource Source() {
    return [this](unsigned level, std::uint64_t index) -> Result<MerkleHash> {
      if (record_) {
        asked_.insert({level, index});
      }
      if (level >= 64 || index >= (size_ >> level)) {
        ADD_FAILURE() << "asked for node (" << level << ", " << index << ") outside size " << size_;
      }
      return tree_.Node(level, index);
    };
  }
  const std::set<std::pair<unsigned, std::uint64_t>>& asked() const { return asked_; }

 private:
  const MerkleTree& tree_;
  std::uint64_t size_;
  bool record_;
  std::set<std::pair<unsigned, std::uint64_t>> asked_;
};

constexpr std::uint64_t kMaxSize = 300;

// Leaves 0..kMaxSize-1, the full tree over them and the reference, built once for all tests.
struct BigTree {
  std::vector<MerkleHash> leaves;
  MerkleTree tree;
  Reference reference;
  std::vector<MerkleHash> roots;  // roots[n]: the reference root of the first n leaves

  static BigTree Make() {
    std::vector<MerkleHash> leaves;
    for (std::uint64_t i = 0; i < kMaxSize; ++i) {
      const Bytes data = {static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i), 's'};
      leaves.push_back(LeafHash(data));
    }
    BigTree big{leaves, MerkleTree(leaves), Reference(leaves), {}};
    for (std::uint64_t n = 0; n <= kMaxSize; ++n) {
      big.roots.push_back(big.reference.Mth(0, n));
    }
    return big;
  }
};

BigTree& Big() {
  static BigTree big = BigTree::Make();
  return big;
}

std::vector<MerkleHash> Prefix(std::uint64_t n) {
  return {Big().leaves.begin(), Big().leaves.begin() + static_cast<std::ptrdiff_t>(n)};
}

// ---- Hashing -----------------------------------------------------------------------------------

TEST(MerkleHashTest, EmptyTreeIsSha256OfNothing) {
  EXPECT_EQ(EmptyTreeHash(), H(kEmptyRoot));
  EXPECT_EQ(TreeHash({}), H(kEmptyRoot));
  EXPECT_EQ(MerkleTree({}).Root(), H(kEmptyRoot));
  EXPECT_EQ(MerkleBuilder().Root(), H(kEmptyRoot));
}

TEST(MerkleHashTest, LeafAndNodeHashesArePrefixedSha256) {
  EXPECT_EQ(LeafHash({}), H(kRoots[0]));  // the one-leaf tree over "" is SHA-256(0x00)
  const Bytes data = {'s', 'i', 'g', 'n', 'e', 't'};
  Bytes prefixed = {0x00};
  prefixed.insert(prefixed.end(), data.begin(), data.end());
  EXPECT_EQ(LeafHash(data), OneShotSha256(prefixed));

  const MerkleHash left = LeafHash(data);
  const MerkleHash right = LeafHash({});
  EXPECT_EQ(NodeHash(left, right), RefNodeHash(left, right));
  EXPECT_NE(NodeHash(left, right), NodeHash(right, left));
}

// ---- Published vectors -------------------------------------------------------------------------

TEST(MerkleVectorTest, RootsOfTheReferenceTree) {
  const std::vector<MerkleHash> leaves = ReferenceLeafHashes(8);
  const MerkleTree full(leaves);
  MerkleBuilder builder;
  for (std::uint64_t n = 1; n <= 8; ++n) {
    SCOPED_TRACE("size " + std::to_string(n));
    const std::span<const MerkleHash> prefix(leaves.data(), n);
    builder.Append(leaves[n - 1]);
    EXPECT_EQ(TreeHash(prefix), H(kRoots[n - 1]));
    EXPECT_EQ(MerkleTree({prefix.begin(), prefix.end()}).Root(), H(kRoots[n - 1]));
    EXPECT_EQ(builder.Root(), H(kRoots[n - 1]));
    const Result<MerkleHash> from_nodes = RootFromNodes(n, full.Nodes());
    ASSERT_TRUE(from_nodes) << from_nodes.error();
    EXPECT_EQ(*from_nodes, H(kRoots[n - 1]));
  }
  const Result<MerkleHash> empty = RootFromNodes(0, full.Nodes());
  ASSERT_TRUE(empty);
  EXPECT_EQ(*empty, H(kEmptyRoot));
}

TEST(MerkleVectorTest, InclusionProofsOfTheReferenceTree) {
  const std::vector<MerkleHash> leaves = ReferenceLeafHashes(8);
  const MerkleTree full(leaves);
  for (const InclusionVector& v : InclusionVectors()) {
    SCOPED_TRACE("leaf " + std::to_string(v.index) + " of " + std::to_string(v.size));
    // Proofs for the smaller trees come from the 8-leaf tree's nodes, as a log serves old sizes.
    const Result<std::vector<MerkleHash>> proof = InclusionProof(v.index, v.size, full.Nodes());
    ASSERT_TRUE(proof) << proof.error();
    EXPECT_THAT(*proof, ElementsAreArray(v.proof));
    const MerkleHash root = H(kRoots[v.size - 1]);
    const Status ok = VerifyInclusion(leaves[v.index], v.index, v.size, v.proof, root);
    EXPECT_TRUE(ok) << ok.error();
    EXPECT_EQ(Outcome(VerifyInclusion(Flipped(leaves[v.index]), v.index, v.size, v.proof, root)),
              Name(ErrorCode::kCrypto));
  }
}

TEST(MerkleVectorTest, ConsistencyProofsOfTheReferenceTree) {
  const MerkleTree full(ReferenceLeafHashes(8));
  for (const ConsistencyVector& v : ConsistencyVectors()) {
    SCOPED_TRACE(std::to_string(v.old_size) + " -> " + std::to_string(v.new_size));
    const Result<std::vector<MerkleHash>> proof =
        ConsistencyProof(v.old_size, v.new_size, full.Nodes());
    ASSERT_TRUE(proof) << proof.error();
    EXPECT_THAT(*proof, ElementsAreArray(v.proof));
    const MerkleHash old_root = H(kRoots[v.old_size - 1]);
    const MerkleHash new_root = H(kRoots[v.new_size - 1]);
    const Status ok = VerifyConsistency(v.old_size, v.new_size, old_root, new_root, v.proof);
    EXPECT_TRUE(ok) << ok.error();
    if (v.old_size != v.new_size) {
      EXPECT_EQ(Outcome(VerifyConsistency(v.old_size, v.new_size, new_root, old_root, v.proof)),
                Name(ErrorCode::kCrypto));
    }
  }
  const Result<std::vector<MerkleHash>> from_tree = full.ConsistencyProof(6);
  ASSERT_TRUE(from_tree);
  EXPECT_THAT(*from_tree, ElementsAreArray(ConsistencyVectors()[2].proof));
}

// Which nodes a proof is made of, from transparency-dev/merkle proof/proof_test.go (TestInclusion,
// TestConsistency): the set of perfect subtrees a store must serve. Right-edge ranges that are not
// perfect there ("rehash") are asked for as the perfect subtrees they fold from.
struct NodeSetVector {
  std::uint64_t a;  // leaf index, or old size
  std::uint64_t size;
  std::set<std::pair<unsigned, std::uint64_t>> nodes;
};

TEST(MerkleVectorTest, InclusionProofsAskForThePublishedNodes) {
  const std::vector<NodeSetVector> vectors = {
      {0, 1, {}},
      {0, 2, {{0, 1}}},
      {1, 2, {{0, 0}}},
      {1, 3, {{0, 0}, {0, 2}}},
      {0, 7, {{0, 1}, {1, 1}, {0, 6}, {1, 2}}},
      {1, 7, {{0, 0}, {1, 1}, {0, 6}, {1, 2}}},
      {2, 7, {{0, 3}, {1, 0}, {0, 6}, {1, 2}}},
      {3, 7, {{0, 2}, {1, 0}, {0, 6}, {1, 2}}},
      {4, 7, {{0, 5}, {0, 6}, {2, 0}}},
      {5, 7, {{0, 4}, {0, 6}, {2, 0}}},
      {6, 7, {{1, 2}, {2, 0}}},
      {2, 4, {{0, 3}, {1, 0}}},
      {3, 5, {{0, 2}, {1, 0}, {0, 4}}},
      {3, 6, {{0, 2}, {1, 0}, {1, 2}}},
      {4, 6, {{0, 5}, {2, 0}}},
      {10, 15, {{0, 11}, {1, 4}, {0, 14}, {1, 6}, {3, 0}}},
      {24, 31, {{0, 25}, {1, 13}, {0, 30}, {1, 14}, {3, 2}, {4, 0}}},
      {81, 95, {{0, 80}, {1, 41}, {2, 21}, {0, 94}, {1, 46}, {2, 22}, {4, 4}, {6, 0}}},
  };
  for (const NodeSetVector& v : vectors) {
    SCOPED_TRACE("leaf " + std::to_string(v.a) + " of " + std::to_string(v.size));
    CheckedSource source(Big().tree, v.size, /*record=*/true);
    const Result<std::vector<MerkleHash>> proof = InclusionProof(v.a, v.size, source.Source());
    ASSERT_TRUE(proof) << proof.error();
    EXPECT_EQ(source.asked(), v.nodes);
  }
}

TEST(MerkleVectorTest, ConsistencyProofsAskForThePublishedNodes) {
  const std::vector<NodeSetVector> vectors = {
      {1, 2, {{0, 1}}},
      {1, 4, {{0, 1}, {1, 1}}},
      {1, 6, {{0, 1}, {1, 1}, {1, 2}}},
      {2, 3, {{0, 2}}},
      {2, 8, {{1, 1}, {2, 1}}},
      {3, 7, {{0, 2}, {0, 3}, {1, 0}, {0, 6}, {1, 2}}},
      {4, 7, {{0, 6}, {1, 2}}},
      {5, 7, {{0, 4}, {0, 5}, {0, 6}, {2, 0}}},
      {6, 7, {{1, 2}, {0, 6}, {2, 0}}},
      {7, 8, {{0, 6}, {0, 7}, {1, 2}, {2, 0}}},
      {1, 1, {}},
      {8, 8, {}},
      {2, 4, {{1, 1}}},
      {3, 5, {{0, 2}, {0, 3}, {1, 0}, {0, 4}}},
      {3, 6, {{0, 2}, {0, 3}, {1, 0}, {1, 2}}},
      {4, 6, {{1, 2}}},
      {1, 7, {{0, 1}, {1, 1}, {0, 6}, {1, 2}}},
      {10, 15, {{1, 4}, {1, 5}, {0, 14}, {1, 6}, {3, 0}}},
      {24, 31, {{3, 2}, {0, 30}, {1, 14}, {2, 6}, {4, 0}}},
      {81, 95, {{0, 80}, {0, 81}, {1, 41}, {2, 21}, {0, 94}, {1, 46}, {2, 22}, {4, 4}, {6, 0}}},
  };
  for (const NodeSetVector& v : vectors) {
    SCOPED_TRACE(std::to_string(v.a) + " -> " + std::to_string(v.size));
    CheckedSource source(Big().tree, v.size, /*record=*/true);
    const Result<std::vector<MerkleHash>> proof = ConsistencyProof(v.a, v.size, source.Source());
    ASSERT_TRUE(proof) << proof.error();
    EXPECT_EQ(source.asked(), v.nodes);
  }
}

// ---- Every size up to kMaxSize against the reference -------------------------------------------

TEST(MerkleBruteForceTest, RootsAtEverySize) {
  MerkleBuilder builder;
  for (std::uint64_t n = 0; n <= kMaxSize; ++n) {
    SCOPED_TRACE("size " + std::to_string(n));
    const std::vector<MerkleHash> prefix = Prefix(n);
    const MerkleHash& want = Big().roots[n];
    EXPECT_EQ(TreeHash(prefix), want);
    const MerkleTree tree(prefix);
    EXPECT_EQ(tree.size(), n);
    EXPECT_EQ(tree.Root(), want);
    EXPECT_EQ(builder.size(), n);
    EXPECT_EQ(builder.Root(), want);
    EXPECT_EQ(builder.compact_range().size(), static_cast<std::size_t>(std::popcount(n)));
    CheckedSource source(Big().tree, n);
    const Result<MerkleHash> from_nodes = RootFromNodes(n, source.Source());
    ASSERT_TRUE(from_nodes) << from_nodes.error();
    EXPECT_EQ(*from_nodes, want);
    if (n < kMaxSize) {
      builder.Append(Big().leaves[n]);
    }
  }
}

// Tampering multiplies the verifications about twentyfold, so it covers every proof of the trees
// up to 32 leaves and a deterministic sample (1 in 37) of the larger ones: the run stays quick in a
// sanitizer build while every proof of every size is still generated, compared and verified.
bool Tamper(std::uint64_t a, std::uint64_t n) { return n <= 32 || (7 * a + n) % 37 == 0; }

// Checks that no change to the inputs of a valid inclusion proof verifies. The tree size is changed
// only to 2n and n/2: a size with the same path shape (5 -> 6 for leaf 0) verifies, because the
// proof pins the size only through the root (see InclusionProofDoesNotPinTheTreeSize).
void CheckInclusionTampering(std::uint64_t i, std::uint64_t n,
                             const std::vector<MerkleHash>& proof) {
  SCOPED_TRACE("leaf " + std::to_string(i) + " of " + std::to_string(n));
  const MerkleHash& leaf = Big().leaves[i];
  const MerkleHash& root = Big().roots[n];
  for (std::size_t j = 0; j < proof.size(); ++j) {
    std::vector<MerkleHash> wrong = proof;
    wrong[j] = Flipped(wrong[j]);
    EXPECT_EQ(Outcome(VerifyInclusion(leaf, i, n, wrong, root)), Name(ErrorCode::kCrypto)) << j;
  }
  EXPECT_EQ(Outcome(VerifyInclusion(Flipped(leaf), i, n, proof, root)), Name(ErrorCode::kCrypto));
  EXPECT_EQ(Outcome(VerifyInclusion(leaf, i, n, proof, Flipped(root))), Name(ErrorCode::kCrypto));
  for (const std::uint64_t other : {i - 1, i + 1, i ^ 1, i ^ 2, n - 1 - i}) {
    if (other < n && other != i) {
      EXPECT_FALSE(VerifyInclusion(leaf, other, n, proof, root)) << "as leaf " << other;
    }
  }
  EXPECT_FALSE(VerifyInclusion(leaf, i, 2 * n, proof, root));
  if (i < n / 2) {
    EXPECT_FALSE(VerifyInclusion(leaf, i, n / 2, proof, root));
  }
  std::vector<MerkleHash> longer = proof;
  longer.push_back(root);
  EXPECT_EQ(Outcome(VerifyInclusion(leaf, i, n, longer, root)), Name(ErrorCode::kInvalidArgument));
  if (!proof.empty()) {
    const std::span<const MerkleHash> shorter(proof.data(), proof.size() - 1);
    EXPECT_EQ(Outcome(VerifyInclusion(leaf, i, n, shorter, root)),
              Name(ErrorCode::kInvalidArgument));
  }
}

TEST(MerkleBruteForceTest, InclusionProofsOfEveryLeafAtEverySize) {
  for (std::uint64_t n = 1; n <= kMaxSize; ++n) {
    const MerkleTree tree(Prefix(n));
    CheckedSource source(Big().tree, n);
    const NodeSource nodes = source.Source();
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::vector<MerkleHash> want = Big().reference.Path(i, n);
      const Result<std::vector<MerkleHash>> proof = InclusionProof(i, n, nodes);
      ASSERT_TRUE(proof) << proof.error();
      ASSERT_EQ(*proof, want) << "leaf " << i << " of " << n;
      const Result<std::vector<MerkleHash>> from_tree = tree.InclusionProof(i);
      ASSERT_TRUE(from_tree) << from_tree.error();
      ASSERT_EQ(*from_tree, want) << "leaf " << i << " of " << n;
      const Status ok = VerifyInclusion(Big().leaves[i], i, n, want, Big().roots[n]);
      ASSERT_TRUE(ok) << ok.error();
      if (Tamper(i, n)) {
        CheckInclusionTampering(i, n, want);
      }
      if (::testing::Test::HasFailure()) {
        return;  // one broken size says enough; thousands of repeats would bury it
      }
    }
  }
}

// Checks that no change to the inputs of a valid consistency proof (0 < m < n) verifies.
void CheckConsistencyTampering(std::uint64_t m, std::uint64_t n,
                               const std::vector<MerkleHash>& proof) {
  SCOPED_TRACE(std::to_string(m) + " -> " + std::to_string(n));
  const MerkleHash& old_root = Big().roots[m];
  const MerkleHash& new_root = Big().roots[n];
  const std::string crypto = Name(ErrorCode::kCrypto);
  for (std::size_t j = 0; j < proof.size(); ++j) {
    std::vector<MerkleHash> wrong = proof;
    wrong[j] = Flipped(wrong[j], 4);
    EXPECT_EQ(Outcome(VerifyConsistency(m, n, old_root, new_root, wrong)), crypto) << j;
  }
  EXPECT_EQ(Outcome(VerifyConsistency(m, n, Flipped(old_root), new_root, proof)), crypto);
  EXPECT_EQ(Outcome(VerifyConsistency(m, n, old_root, Flipped(new_root), proof)), crypto);
  EXPECT_EQ(Outcome(VerifyConsistency(m, n, new_root, old_root, proof)), crypto);
  for (const std::uint64_t other : {m - 1, m + 1, m ^ 2}) {
    if (other > 0 && other < n && other != m) {
      EXPECT_FALSE(VerifyConsistency(other, n, old_root, new_root, proof)) << "from " << other;
    }
  }
  EXPECT_FALSE(VerifyConsistency(m, 2 * n, old_root, new_root, proof));
  if (m < n / 2) {
    EXPECT_FALSE(VerifyConsistency(m, n / 2, old_root, new_root, proof));
  }
  std::vector<MerkleHash> longer = proof;
  longer.insert(longer.begin(), proof.front());
  const std::string invalid = Name(ErrorCode::kInvalidArgument);
  EXPECT_EQ(Outcome(VerifyConsistency(m, n, old_root, new_root, longer)), invalid);
  const std::span<const MerkleHash> shorter(proof.data(), proof.size() - 1);
  EXPECT_EQ(Outcome(VerifyConsistency(m, n, old_root, new_root, shorter)), invalid);
}

TEST(MerkleBruteForceTest, ConsistencyProofsOfEveryPairOfSizes) {
  for (std::uint64_t n = 0; n <= kMaxSize; ++n) {
    const MerkleTree tree(Prefix(n));
    CheckedSource source(Big().tree, n);
    const NodeSource nodes = source.Source();
    for (std::uint64_t m = 0; m <= n; ++m) {
      const std::vector<MerkleHash> want = Big().reference.Proof(m, n);
      const Result<std::vector<MerkleHash>> proof = ConsistencyProof(m, n, nodes);
      ASSERT_TRUE(proof) << proof.error();
      ASSERT_EQ(*proof, want) << m << " -> " << n;
      const Result<std::vector<MerkleHash>> from_tree = tree.ConsistencyProof(m);
      ASSERT_TRUE(from_tree) << from_tree.error();
      ASSERT_EQ(*from_tree, want) << m << " -> " << n;
      const Status ok = VerifyConsistency(m, n, Big().roots[m], Big().roots[n], want);
      ASSERT_TRUE(ok) << ok.error();
      if (m == 0 || m == n) {
        ASSERT_THAT(want, IsEmpty()) << m << " -> " << n;
      } else if (Tamper(m, n)) {
        CheckConsistencyTampering(m, n, want);
      }
      if (::testing::Test::HasFailure()) {
        return;
      }
    }
  }
}

TEST(MerkleProofTest, InclusionProofDoesNotPinTheTreeSize) {
  // Leaf 0 sits at the same depth, with all siblings on its right, in trees of 5 and 6 leaves: the
  // proof for size 5 also "verifies" for size 6 against the size-5 root. A verifier must take the
  // size from the same signed checkpoint as the root, never from the party handing out proofs.
  const Result<std::vector<MerkleHash>> proof = InclusionProof(0, 5, Big().tree.Nodes());
  ASSERT_TRUE(proof);
  EXPECT_TRUE(VerifyInclusion(Big().leaves[0], 0, 6, *proof, Big().roots[5]));
  EXPECT_FALSE(VerifyInclusion(Big().leaves[0], 0, 6, *proof, Big().roots[6]));
}

// ---- MerkleTree and MerkleBuilder ---------------------------------------------------------------

TEST(MerkleTreeTest, KeepsOnlyCompleteNodes) {
  const MerkleTree tree(Prefix(5));
  for (const auto& [level, index] :
       std::vector<std::pair<unsigned, std::uint64_t>>{{0, 0}, {0, 4}, {1, 0}, {1, 1}, {2, 0}}) {
    const Result<MerkleHash> node = tree.Node(level, index);
    ASSERT_TRUE(node) << node.error();
    EXPECT_EQ(*node, Big().reference.Mth(index << level, (index + 1) << level));
  }
  for (const auto& [level, index] : std::vector<std::pair<unsigned, std::uint64_t>>{
           {0, 5}, {1, 2}, {2, 1}, {3, 0}, {64, 0}, {1000, 0}}) {
    const Result<MerkleHash> node = tree.Node(level, index);
    EXPECT_EQ(Outcome(node), Name(ErrorCode::kInvalidArgument)) << level << ", " << index;
  }
  EXPECT_THAT(Message(tree.Node(1, 2)), HasSubstr("level 1 has 2 complete nodes"));
}

// Appends leaves builder.size() .. to - 1; returns what each append reported, in order.
std::vector<std::vector<MerkleNode>> AppendAll(MerkleBuilder& builder, std::uint64_t to) {
  std::vector<std::vector<MerkleNode>> reports;
  for (std::uint64_t i = builder.size(); i < to; ++i) {
    std::vector<MerkleNode>& report = reports.emplace_back();
    builder.Append(Big().leaves[i], [&report](const MerkleNode& node) { report.push_back(node); });
  }
  return reports;
}

TEST(MerkleBuilderTest, OnNodeReportsTheLeafAndEveryCompletedSubtree) {
  MerkleBuilder builder;
  const std::vector<std::vector<MerkleNode>> reports = AppendAll(builder, kMaxSize);
  std::size_t reported = 0;
  for (std::uint64_t i = 0; i < kMaxSize; ++i) {
    SCOPED_TRACE("append " + std::to_string(i));
    const std::vector<MerkleNode>& report = reports[i];
    // One node per trailing set bit of the old size, plus the leaf.
    ASSERT_EQ(report.size(), static_cast<std::size_t>(std::countr_one(i)) + 1);
    for (std::size_t k = 0; k < report.size(); ++k) {
      EXPECT_EQ(report[k].level, k);
      EXPECT_EQ(report[k].index, i >> k);
      const Result<MerkleHash> node = Big().tree.Node(report[k].level, report[k].index);
      ASSERT_TRUE(node) << node.error();
      EXPECT_EQ(report[k].hash, *node);
    }
    reported += report.size();
  }
  // Together the reports are every node of the tree, each once: all a store needs.
  std::size_t complete = 0;
  for (unsigned level = 0; Big().tree.Node(level, 0); ++level) {
    complete += static_cast<std::size_t>(kMaxSize >> level);
  }
  EXPECT_EQ(reported, complete);
}

TEST(MerkleBuilderTest, ResumeFromTheCompactRangeContinuesTheSameTree) {
  MerkleBuilder scratch;
  std::vector<std::vector<MerkleHash>> ranges;
  for (std::uint64_t n = 0; n <= kMaxSize; ++n) {
    ranges.emplace_back(scratch.compact_range().begin(), scratch.compact_range().end());
    if (n < kMaxSize) {
      scratch.Append(Big().leaves[n]);
    }
  }
  MerkleBuilder reference;
  const std::vector<std::vector<MerkleNode>> want = AppendAll(reference, kMaxSize);
  for (std::uint64_t start = 0; start <= kMaxSize; ++start) {
    SCOPED_TRACE("resumed at " + std::to_string(start));
    Result<MerkleBuilder> resumed = MerkleBuilder::Resume(start, ranges[start]);
    ASSERT_TRUE(resumed) << resumed.error();
    EXPECT_EQ(resumed->size(), start);
    EXPECT_EQ(resumed->Root(), Big().roots[start]);
    for (std::uint64_t i = start; i < kMaxSize; ++i) {
      std::vector<MerkleNode> report;
      resumed->Append(Big().leaves[i],
                      [&report](const MerkleNode& node) { report.push_back(node); });
      ASSERT_EQ(resumed->Root(), Big().roots[i + 1]) << "after leaf " << i;
      ASSERT_EQ(report.size(), want[i].size()) << "after leaf " << i;
      for (std::size_t k = 0; k < report.size(); ++k) {
        EXPECT_EQ(report[k].level, want[i][k].level);
        EXPECT_EQ(report[k].index, want[i][k].index);
        EXPECT_EQ(report[k].hash, want[i][k].hash);
      }
    }
  }
}

TEST(MerkleBuilderTest, CompactRangeIsTheRightEdgeLargestFirst) {
  MerkleBuilder builder;
  AppendAll(builder, 299);  // 299 = 256 + 32 + 8 + 2 + 1
  const std::vector<MerkleHash> want = {*Big().tree.Node(8, 0), *Big().tree.Node(5, 8),
                                        *Big().tree.Node(3, 36), *Big().tree.Node(1, 148),
                                        *Big().tree.Node(0, 298)};
  EXPECT_THAT(builder.compact_range(), ElementsAreArray(want));
}

// ---- Errors ------------------------------------------------------------------------------------

TEST(MerkleErrorTest, ProofRequestsOutOfRange) {
  const NodeSource nodes = Big().tree.Nodes();
  const std::string invalid = Name(ErrorCode::kInvalidArgument);
  EXPECT_EQ(Outcome(InclusionProof(5, 5, nodes)), invalid);
  EXPECT_THAT(Message(InclusionProof(5, 5, nodes)), HasSubstr("0 to 4"));
  EXPECT_EQ(Outcome(InclusionProof(0, 0, nodes)), invalid);
  EXPECT_EQ(Outcome(Big().tree.InclusionProof(kMaxSize)), invalid);
  EXPECT_EQ(Outcome(ConsistencyProof(6, 5, nodes)), invalid);
  EXPECT_THAT(Message(ConsistencyProof(6, 5, nodes)), HasSubstr("6 is larger than"));
  EXPECT_EQ(Outcome(Big().tree.ConsistencyProof(kMaxSize + 1)), invalid);
  EXPECT_EQ(Outcome(InclusionProof(0, 1, NodeSource())), invalid);
  EXPECT_EQ(Outcome(RootFromNodes(1, NodeSource())), invalid);
}

TEST(MerkleErrorTest, NodeSourceFailuresArePassedOn) {
  const NodeSource broken = [](unsigned, std::uint64_t) -> Result<MerkleHash> {
    return MakeError(ErrorCode::kIo, "disk on fire");
  };
  EXPECT_EQ(Outcome(RootFromNodes(3, broken)), Name(ErrorCode::kIo));
  EXPECT_EQ(Outcome(InclusionProof(1, 3, broken)), Name(ErrorCode::kIo));
  EXPECT_EQ(Outcome(ConsistencyProof(1, 3, broken)), Name(ErrorCode::kIo));
  EXPECT_THAT(Message(ConsistencyProof(1, 3, broken)), HasSubstr("disk on fire"));
  // Sizes that need no node never ask.
  EXPECT_TRUE(RootFromNodes(0, broken));
  EXPECT_TRUE(InclusionProof(0, 1, broken));
  EXPECT_TRUE(ConsistencyProof(0, 3, broken));
  EXPECT_TRUE(ConsistencyProof(3, 3, broken));
}

TEST(MerkleErrorTest, VerifyInclusionRejectsBadShapes) {
  const MerkleHash& leaf = Big().leaves[1];
  const MerkleHash& root = Big().roots[5];
  const Result<std::vector<MerkleHash>> proof = InclusionProof(1, 5, Big().tree.Nodes());
  ASSERT_TRUE(proof);
  const std::string invalid = Name(ErrorCode::kInvalidArgument);
  EXPECT_EQ(Outcome(VerifyInclusion(leaf, 5, 5, *proof, root)), invalid);
  EXPECT_EQ(Outcome(VerifyInclusion(leaf, 0, 0, {}, EmptyTreeHash())), invalid);
  EXPECT_EQ(Outcome(VerifyInclusion(leaf, 1, 5, {}, root)), invalid);
  EXPECT_THAT(Message(VerifyInclusion(leaf, 1, 5, {}, root)), HasSubstr("has 3 hashes, got 0"));
  const Status wrong_leaf = VerifyInclusion(Big().leaves[2], 1, 5, *proof, root);
  EXPECT_EQ(Outcome(wrong_leaf), Name(ErrorCode::kCrypto));
  EXPECT_THAT(Message(wrong_leaf), HasSubstr("does not lead to the root"));
  // A one-leaf tree: the leaf is the root, the proof is empty.
  EXPECT_TRUE(VerifyInclusion(leaf, 0, 1, {}, leaf));
  EXPECT_EQ(Outcome(VerifyInclusion(leaf, 0, 1, {}, root)), Name(ErrorCode::kCrypto));
}

TEST(MerkleErrorTest, VerifyConsistencyRejectsBadShapes) {
  const std::vector<MerkleHash>& roots = Big().roots;
  const std::string invalid = Name(ErrorCode::kInvalidArgument);
  const std::string crypto = Name(ErrorCode::kCrypto);
  EXPECT_EQ(Outcome(VerifyConsistency(6, 5, roots[6], roots[5], {})), invalid);
  EXPECT_EQ(Outcome(VerifyConsistency(2, 5, roots[2], roots[5], {})), invalid);
  EXPECT_THAT(Message(VerifyConsistency(2, 5, roots[2], roots[5], {})),
              HasSubstr("has 2 hashes, got 0"));
  // Equal sizes: no proof, and the roots must be equal.
  EXPECT_TRUE(VerifyConsistency(5, 5, roots[5], roots[5], {}));
  EXPECT_EQ(Outcome(VerifyConsistency(5, 5, roots[5], roots[4], {})), crypto);
  const MerkleHash extra[] = {roots[5]};
  EXPECT_EQ(Outcome(VerifyConsistency(5, 5, roots[5], roots[5], extra)), invalid);
  // From the empty tree: no proof, and the old root must be the empty tree's.
  EXPECT_TRUE(VerifyConsistency(0, 5, EmptyTreeHash(), roots[5], {}));
  EXPECT_TRUE(VerifyConsistency(0, 0, EmptyTreeHash(), EmptyTreeHash(), {}));
  EXPECT_EQ(Outcome(VerifyConsistency(0, 5, roots[1], roots[5], {})), crypto);
  EXPECT_EQ(Outcome(VerifyConsistency(0, 5, EmptyTreeHash(), roots[5], extra)), invalid);
}

TEST(MerkleErrorTest, ResumeChecksTheRangeLength) {
  const std::string invalid = Name(ErrorCode::kInvalidArgument);
  const MerkleHash h = Big().leaves[0];
  EXPECT_EQ(Outcome(MerkleBuilder::Resume(5, {h})), invalid);
  EXPECT_EQ(Outcome(MerkleBuilder::Resume(5, {h, h, h})), invalid);
  EXPECT_EQ(Outcome(MerkleBuilder::Resume(0, {h})), invalid);
  EXPECT_THAT(Message(MerkleBuilder::Resume(5, {h})), HasSubstr("has 2 hashes"));
  EXPECT_TRUE(MerkleBuilder::Resume(0, {}));
  EXPECT_TRUE(MerkleBuilder::Resume(5, {h, h}));
}

}  // namespace
}  // namespace signet::pipeline
