#include "appliance/cli/internal/ordered_run.h"

#include <mutex>

#include "appliance/cli/internal/progress.h"

namespace signet::cli {

void Reorderer::Add(pipeline::FileOutcome outcome) {
  if (outcome.ordinal < next_) {
    // A duplicate ordinal would be a hasher bug; emit rather than lose it.
    emit_(std::move(outcome));
    return;
  }
  std::uint64_t offset = outcome.ordinal - next_;
  if (offset == 0) {
    emit_(std::move(outcome));
    ++next_;
    if (!window_.empty()) {
      window_.pop_front();
    }
    while (!window_.empty() && window_.front().has_value()) {
      emit_(std::move(*window_.front()));
      window_.pop_front();
      --waiting_;
      ++next_;
    }
    return;
  }
  if (window_.size() <= offset) {
    window_.resize(offset + 1);
  }
  if (!window_[offset].has_value()) {
    ++waiting_;
  }
  window_[offset] = std::move(outcome);
}

void Reorderer::Flush() {
  for (auto& slot : window_) {
    if (slot.has_value()) {
      emit_(std::move(*slot));
    }
  }
  window_.clear();
  waiting_ = 0;
}

pipeline::RunStats RunInOrder(pipeline::Hasher& hasher,
                              std::span<const std::filesystem::path> paths, Console& console,
                              const Reorderer::Emit& emit) {
  Reorderer reorderer(emit);
  // The hasher serializes callbacks; the mutex makes the hand-over between its worker threads
  // explicit rather than relying on how it serializes them.
  std::mutex mu;
  pipeline::RunStats stats;
  {
    ProgressMeter progress(console, hasher);
    stats = hasher.Run(paths, [&](pipeline::FileOutcome outcome) {
      std::lock_guard lock(mu);
      reorderer.Add(std::move(outcome));
    });
  }
  reorderer.Flush();
  return stats;
}

}  // namespace signet::cli
