// Private to appliance/cli: running the hasher and getting its outcomes back in input order.
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_ORDERED_RUN_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_ORDERED_RUN_H_

#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>

#include "appliance/cli/internal/console.h"
#include "pipeline/pipeline.h"

namespace signet::cli {

// Reorderer turns outcomes that arrive in completion order into calls of `emit` in ordinal order
// (0, 1, 2, ... without gaps). An outcome that arrives early waits in a buffer until every lower
// ordinal has been emitted: memory grows with how far ahead the fastest files run, which is at
// most the number of inputs. Not thread-safe: the hasher serializes its callbacks.
class Reorderer {
 public:
  using Emit = std::function<void(pipeline::FileOutcome)>;
  explicit Reorderer(Emit emit) : emit_(std::move(emit)) {}

  void Add(pipeline::FileOutcome outcome);
  // Outcomes still held back: non-zero after the run only if an ordinal never arrived (a hasher
  // bug); Flush emits them anyway, in order, rather than dropping them.
  std::size_t pending() const { return waiting_; }
  void Flush();

  std::uint64_t next_ordinal() const { return next_; }

 private:
  Emit emit_;
  std::uint64_t next_ = 0;
  std::deque<std::optional<pipeline::FileOutcome>> window_;  // window_[i] is ordinal next_ + i
  std::size_t waiting_ = 0;
};

// RunInOrder runs `hasher` over `paths`, calling `emit` once per outcome in input order, with a
// progress line on the console while it runs (only when stderr is a terminal). `emit` runs on the
// hasher's threads, one call at a time. Returns the run's statistics.
pipeline::RunStats RunInOrder(pipeline::Hasher& hasher,
                              std::span<const std::filesystem::path> paths, Console& console,
                              const Reorderer::Emit& emit);

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_ORDERED_RUN_H_
