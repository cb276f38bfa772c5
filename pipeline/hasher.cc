// Hasher: placeholder while the real pipeline is written; every file fails with kInternal.
#include "pipeline/pipeline.h"

namespace signet::pipeline {

struct Hasher::State {
  HashOptions options;
};

Result<Hasher> Hasher::Create(HashOptions options) {
  return Hasher(std::make_unique<State>(State{std::move(options)}));
}
Hasher::Hasher(std::unique_ptr<State> state) : state_(std::move(state)) {}
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;
Hasher::~Hasher() = default;

RunStats Hasher::Run(std::span<const std::filesystem::path> paths, const OutcomeCallback& on_file) {
  RunStats stats;
  std::uint64_t ordinal = 0;
  for (const auto& path : paths) {
    on_file(FileOutcome{ordinal++, path, MakeError(ErrorCode::kInternal, "not implemented yet")});
    ++stats.files_failed;
  }
  return stats;
}

IoBackend Hasher::backend() const { return IoBackend::kPread; }
std::uint64_t Hasher::bytes_hashed() const { return 0; }
std::uint64_t Hasher::files_done() const { return 0; }
std::uint64_t Hasher::bytes_total() const { return 0; }
std::uint64_t Hasher::files_total() const { return 0; }

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
