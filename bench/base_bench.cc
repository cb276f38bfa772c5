// Hex and base64 throughput: these run on every signature and digest the daemon answers with.
#include <benchmark/benchmark.h>

#include <random>

#include "appliance/base/base.h"

namespace signet {
namespace {

Bytes RandomBytes(std::size_t n) {
  std::mt19937_64 rng(1);
  Bytes out(n);
  for (auto& b : out) {
    b = static_cast<std::uint8_t>(rng());
  }
  return out;
}

void BM_HexEncode(benchmark::State& state) {
  const Bytes data = RandomBytes(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    benchmark::DoNotOptimize(HexEncode(data));
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_HexEncode)->Arg(32)->Arg(4096);

void BM_HexDecode(benchmark::State& state) {
  const std::string hex = HexEncode(RandomBytes(static_cast<std::size_t>(state.range(0))));
  for (auto _ : state) {
    benchmark::DoNotOptimize(HexDecode(hex));
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_HexDecode)->Arg(32)->Arg(4096);

void BM_Base64Encode(benchmark::State& state) {
  const Bytes data = RandomBytes(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    benchmark::DoNotOptimize(Base64Encode(data));
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Base64Encode)->Arg(72)->Arg(4096);

void BM_Base64Decode(benchmark::State& state) {
  const std::string text = Base64Encode(RandomBytes(static_cast<std::size_t>(state.range(0))));
  for (auto _ : state) {
    benchmark::DoNotOptimize(Base64Decode(text));
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Base64Decode)->Arg(72)->Arg(4096);

}  // namespace
}  // namespace signet

BENCHMARK_MAIN();
