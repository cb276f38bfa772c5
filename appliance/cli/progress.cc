#include "appliance/cli/internal/progress.h"

#include <fmt/format.h>

#include <condition_variable>
#include <exception>
#include <mutex>

namespace signet::cli {
namespace {

constexpr auto kFirstDraw = std::chrono::milliseconds(200);
constexpr auto kRedraw = std::chrono::milliseconds(250);

std::string FormatBytes(double bytes) {
  if (bytes < 1e3) {
    return fmt::format("{:.0f} B", bytes);
  }
  if (bytes < 1e6) {
    return fmt::format("{:.1f} kB", bytes / 1e3);
  }
  if (bytes < 1e9) {
    return fmt::format("{:.1f} MB", bytes / 1e6);
  }
  return fmt::format("{:.2f} GB", bytes / 1e9);
}

std::string FormatDuration(double seconds) {
  auto total = static_cast<std::uint64_t>(seconds + 0.5);
  if (total >= 3600) {
    return fmt::format("{}:{:02}:{:02}", total / 3600, total / 60 % 60, total % 60);
  }
  return fmt::format("{}:{:02}", total / 60, total % 60);
}

}  // namespace

std::string FormatProgress(const ProgressSnapshot& snapshot, std::chrono::nanoseconds elapsed) {
  double seconds = std::chrono::duration<double>(elapsed).count();
  double rate = seconds > 0 ? static_cast<double>(snapshot.bytes_done) / seconds : 0;
  std::string line = "signet: ";
  if (snapshot.files_total > 0) {
    line += fmt::format("{}/{} files, {}/{}", snapshot.files_done, snapshot.files_total,
                        FormatBytes(static_cast<double>(snapshot.bytes_done)),
                        FormatBytes(static_cast<double>(snapshot.bytes_total)));
  } else {
    line += fmt::format("{} files, {}", snapshot.files_done,
                        FormatBytes(static_cast<double>(snapshot.bytes_done)));
  }
  line += fmt::format(", {:.0f} MB/s", rate / 1e6);
  if (snapshot.signatures) {
    line += fmt::format(", {} signed ({:.0f}/s)", *snapshot.signatures,
                        seconds > 0 ? static_cast<double>(*snapshot.signatures) / seconds : 0.0);
  }
  if (snapshot.bytes_total > 0 && rate > 0 && snapshot.bytes_done <= snapshot.bytes_total) {
    double left = static_cast<double>(snapshot.bytes_total - snapshot.bytes_done) / rate;
    line += fmt::format(", ETA {}", FormatDuration(left));
  }
  return line;
}

ProgressMeter::ProgressMeter(Console& console, const pipeline::Hasher& hasher,
                             const std::atomic<std::uint64_t>* signatures)
    : console_(console), hasher_(hasher), signatures_(signatures) {
  if (console_.stderr_is_tty()) {
    thread_ = std::jthread([this](std::stop_token stop) { Loop(std::move(stop)); });
  }
}

ProgressMeter::~ProgressMeter() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
    console_.ClearProgress();
  }
}

void ProgressMeter::Loop(std::stop_token stop) {
  // A thread entry point: nothing may escape it (std::terminate). Progress is a nicety; if drawing
  // fails (out of memory), stop drawing and let the work finish.
  try {
    std::mutex mu;
    std::condition_variable_any wake;
    const auto start = std::chrono::steady_clock::now();
    auto next = start + kFirstDraw;
    std::unique_lock lock(mu);
    for (;;) {
      // Returns true only when stop was requested before `next`.
      if (wake.wait_until(lock, stop, next, [] { return false; }) || stop.stop_requested()) {
        return;
      }
      ProgressSnapshot snapshot;
      snapshot.files_done = hasher_.files_done();
      snapshot.files_total = hasher_.files_total();
      snapshot.bytes_done = hasher_.bytes_hashed();
      snapshot.bytes_total = hasher_.bytes_total();
      if (signatures_ != nullptr) {
        snapshot.signatures = signatures_->load();
      }
      console_.ShowProgress(FormatProgress(snapshot, std::chrono::steady_clock::now() - start));
      next += kRedraw;
    }
  } catch (const std::exception&) {
    return;
  }
}

}  // namespace signet::cli
