// Private to appliance/cli: the progress line drawn on a terminal while files are hashed.
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_PROGRESS_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_PROGRESS_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
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
  std::optional<std::uint64_t> signatures;  // files signed so far, when signing
};

// FormatProgress renders one progress line: "signet: 12/20000 files, 1.2/4.3 GB, 850 MB/s, ETA
// 0:04" (sizes and rates in decimal units; rates are averages since the start), with ", 9000
// signed (4500/s)" before the ETA when `signatures` is set.
std::string FormatProgress(const ProgressSnapshot& snapshot, std::chrono::nanoseconds elapsed);

// ProgressMeter draws FormatProgress on the console a few times a second from a thread of its own,
// polling the hasher's counters, until it is destroyed; then it erases the line. When stderr is not
// a terminal it starts no thread and draws nothing. The first line appears only after a short
// delay, so a quick run leaves no flicker. With `signatures`, the line also shows that count.
// `hasher`, `console` and `signatures` must outlive it.
class ProgressMeter {
 public:
  ProgressMeter(Console& console, const pipeline::Hasher& hasher,
                const std::atomic<std::uint64_t>* signatures = nullptr);
  ~ProgressMeter();
  ProgressMeter(const ProgressMeter&) = delete;
  ProgressMeter& operator=(const ProgressMeter&) = delete;

 private:
  void Loop(std::stop_token stop);

  Console& console_;
  const pipeline::Hasher& hasher_;
  const std::atomic<std::uint64_t>* signatures_;
  std::jthread thread_;  // last: it starts after the members it reads
};

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_PROGRESS_H_
