// RFC 6962 Merkle trees: the audit log appends one leaf per record and Merkle batch mode builds a
// tree and every inclusion proof per signed batch, so both must stay far below an HSM signature.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "pipeline/pipeline.h"

namespace signet::pipeline {
namespace {

std::vector<MerkleHash> Leaves(std::int64_t count) {
  std::vector<MerkleHash> out;
  out.reserve(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) {
    const std::uint8_t data[] = {static_cast<std::uint8_t>(i >> 16),
                                 static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)};
    out.push_back(LeafHash(data));
  }
  return out;
}

void BM_LeafHash(benchmark::State& state) {
  const std::vector<std::uint8_t> data(static_cast<std::size_t>(state.range(0)), 0x5a);
  for (auto _ : state) {
    benchmark::DoNotOptimize(LeafHash(data));
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_LeafHash)->Arg(32)->Arg(1024);

void BM_TreeHash(benchmark::State& state) {
  const std::vector<MerkleHash> leaves = Leaves(state.range(0));
  for (auto _ : state) {
    benchmark::DoNotOptimize(TreeHash(leaves));
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));  // leaves per second
}
BENCHMARK(BM_TreeHash)->Arg(4096)->Arg(65536)->Unit(benchmark::kMillisecond);

// A Merkle batch: build the tree, then the proof of every leaf.
void BM_MerkleTreeWithAllInclusionProofs(benchmark::State& state) {
  const std::vector<MerkleHash> leaves = Leaves(state.range(0));
  for (auto _ : state) {
    const MerkleTree tree(leaves);
    for (std::uint64_t i = 0; i < tree.size(); ++i) {
      benchmark::DoNotOptimize(tree.InclusionProof(i));
    }
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_MerkleTreeWithAllInclusionProofs)->Arg(65536)->Unit(benchmark::kMillisecond);

// Proofs alone, from a built tree, to separate their cost from the hashing.
void BM_MerkleTreeInclusionProof(benchmark::State& state) {
  const MerkleTree tree(Leaves(state.range(0)));
  std::uint64_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(tree.InclusionProof(i));
    i = (i + 7919) % tree.size();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MerkleTreeInclusionProof)->Arg(65536);

// The audit log's append: one leaf, its completed subtrees reported to a store.
void BM_MerkleBuilderAppend(benchmark::State& state) {
  const std::vector<MerkleHash> leaves = Leaves(4096);
  MerkleBuilder builder;
  std::uint64_t nodes = 0;
  std::size_t i = 0;
  for (auto _ : state) {
    builder.Append(leaves[i], [&nodes](const MerkleNode&) { ++nodes; });
    i = (i + 1) % leaves.size();
  }
  benchmark::DoNotOptimize(nodes);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MerkleBuilderAppend);

void BM_VerifyInclusion(benchmark::State& state) {
  const MerkleTree tree(Leaves(state.range(0)));
  const std::uint64_t index = tree.size() / 3;
  const std::vector<MerkleHash> proof = *tree.InclusionProof(index);
  const MerkleHash leaf = *tree.Node(0, index);
  const MerkleHash root = tree.Root();
  for (auto _ : state) {
    benchmark::DoNotOptimize(VerifyInclusion(leaf, index, tree.size(), proof, root));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_VerifyInclusion)->Arg(65536);

}  // namespace
}  // namespace signet::pipeline

BENCHMARK_MAIN();
