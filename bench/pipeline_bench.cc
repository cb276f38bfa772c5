// Hashing throughput: digests per algorithm and chunk size in memory, and the whole pipeline
// (listing, reading, hashing) over generated file sets with each I/O backend.
//
// The file sets live in a scratch directory (SIGNET_BENCH_DIR, default /var/tmp) and are removed at
// exit. Their pages are warmed before timing: this measures hashing and the read path, not a disk.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "pipeline/pipeline.h"

namespace signet::pipeline {
namespace {

namespace fs = std::filesystem;

std::string RandomBytes(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    const std::uint64_t v = rng();
    std::memcpy(out.data() + i, &v, 8);
  }
  return out;
}

constexpr DigestAlgorithm kAlgorithms[] = {DigestAlgorithm::kSha256, DigestAlgorithm::kSha384,
                                           DigestAlgorithm::kSha512, DigestAlgorithm::kBlake2b512};

void BM_Digest(benchmark::State& state) {
  const auto algorithm = kAlgorithms[state.range(0)];
  const std::string data = RandomBytes(static_cast<std::size_t>(state.range(1)), 1);
  for (auto _ : state) {
    benchmark::DoNotOptimize(DigestBytes(algorithm, AsBytes(data)));
  }
  state.SetBytesProcessed(state.iterations() * state.range(1));
  state.SetLabel(std::string(DigestAlgorithmName(algorithm)));
}
BENCHMARK(BM_Digest)->ArgsProduct({{0, 1, 2, 3}, {4 << 10, 64 << 10, 1 << 20}});

// A generated set of files, made once per process.
struct FileSet {
  std::vector<fs::path> paths;
  std::uint64_t bytes = 0;
};

class Scratch {
 public:
  Scratch() {
    const char* base = std::getenv("SIGNET_BENCH_DIR");
    std::string tmpl = std::string(base != nullptr ? base : "/var/tmp") + "/signet-bench-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    dir_ = tmpl;
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  const FileSet& Get(int which) {
    FileSet& set = sets_[which];
    if (which == 3 && set.paths.empty()) {
      // Mixed: the small set, the medium set four times, and the large file LAST, so that hashing
      // in input order would leave one core idle while the other hashes the large file alone.
      // With largest-work-first scheduling this takes about as long as the large file by itself.
      for (int part : {0, 1, 1, 1, 1, 2}) {
        const FileSet& other = Get(part);
        set.paths.insert(set.paths.end(), other.paths.begin(), other.paths.end());
        set.bytes += other.bytes;
      }
      return set;
    }
    if (set.paths.empty()) {
      static constexpr struct {
        const char* name;
        int count;
        std::size_t size;
      } kSets[] = {{"small", 2000, 4 << 10}, {"medium", 64, 1 << 20}, {"large", 1, 256 << 20}};
      const auto& spec = kSets[which];
      const std::string content = RandomBytes(spec.size, static_cast<unsigned>(which));
      for (int i = 0; i < spec.count; ++i) {
        const fs::path p = dir_ / spec.name / std::to_string(i);
        fs::create_directories(p.parent_path());
        std::ofstream(p, std::ios::binary)
            .write(content.data(), static_cast<std::streamsize>(content.size()));
        set.paths.push_back(p);
        set.bytes += spec.size;
      }
    }
    return set;
  }

 private:
  fs::path dir_;
  FileSet sets_[4];
};

Scratch& GetScratch() {
  static Scratch scratch;
  return scratch;
}

void BM_Pipeline(benchmark::State& state) {
  const FileSet& set = GetScratch().Get(static_cast<int>(state.range(0)));
  HashOptions options;
  options.backend = state.range(1) == 0 ? IoBackend::kPread : IoBackend::kIoUring;
  auto hasher = Hasher::Create(options);
  if (!hasher) {
    state.SkipWithError(hasher.error().ToString().c_str());
    return;
  }
  std::uint64_t failed = 0;
  hasher->Run(set.paths, [](FileOutcome) {});  // warm the page cache
  for (auto _ : state) {
    failed += hasher->Run(set.paths, [](FileOutcome) {}).files_failed;
  }
  if (failed != 0) {
    state.SkipWithError("some files failed to hash");
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * set.bytes));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * set.paths.size()));
  state.SetLabel(std::string(IoBackendName(options.backend)));
}
// Sets: 0 = 2000 × 4 KiB, 1 = 64 × 1 MiB, 2 = 1 × 256 MiB, 3 = mixed (0, 1 four times, then 2
// last: compare its time with set 2's); backends: 0 = pread, 1 = io_uring.
BENCHMARK(BM_Pipeline)
    ->ArgsProduct({{0, 1, 2, 3}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace signet::pipeline

BENCHMARK_MAIN();
