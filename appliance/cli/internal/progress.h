// Private to appliance/cli: the progress line drawn on a terminal while files are hashed.
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_PROGRESS_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "appliance/cli/internal/console.h"
#include "pipeline/pipeline.h"

namespace signet::cli {

// What the hasher has done so far. Totals are 0 until the hasher has expanded its inputs.
struct ProgressSnapshot {
  std::uint64_t files_done = 0;
  std::uint64_t files_total = 0;
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
};

// FormatProgress renders one progress line: "signet: 12/20000 files, 1.2/4.3 GB, 850 MB/s, ETA
// 0:04" (sizes and rates in decimal units; rate is the average since the start).
std::string FormatProgress(const ProgressSnapshot& snapshot, std::chrono::nanoseconds elapsed);

// ProgressMeter draws FormatProgress on the console a few times a second from a thread of its own,
// polling the hasher's counters, until it is destroyed; then it erases the line. When stderr is not
// a terminal it starts no thread and draws nothing. The first line appears only after a short
// delay, so a quick run leaves no flicker. `hasher` and `console` must outlive it.
class ProgressMeter {
 public:
  ProgressMeter(Console& console, const pipeline::Hasher& hasher);
  ~ProgressMeter();
  ProgressMeter(const ProgressMeter&) = delete;
  ProgressMeter& operator=(const ProgressMeter&) = delete;

 private:
  void Loop(std::stop_token stop);

  Console& console_;
  const pipeline::Hasher& hasher_;
  std::jthread thread_;  // last: it starts after the members it reads
};

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_PROGRESS_H_
