#include "appliance/cli/internal/parse.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <limits>

#include "appliance/cli/internal/console.h"

namespace signet::cli {
namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
           return lower(x) == lower(y);
         });
}

// A whole decimal number, digits only. Errors: kInvalidArgument.
Result<std::uint64_t> ParseWhole(std::string_view text, std::string_view what) {
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || !(text[0] >= '0' && text[0] <= '9') || ec == std::errc::invalid_argument ||
      ptr != end) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("{}: '{}' is not a whole number", what, text));
  }
  if (ec == std::errc::result_out_of_range) {
    return MakeError(ErrorCode::kInvalidArgument, fmt::format("{}: '{}' is too large", what, text));
  }
  return value;
}

}  // namespace

Result<std::uint64_t> ParseByteSize(std::string_view text) {
  struct Suffix {
    std::string_view text;
    unsigned shift;
  };
  static constexpr Suffix kSuffixes[] = {{"KiB", 10}, {"K", 10},   {"MiB", 20},
                                         {"M", 20},   {"GiB", 30}, {"G", 30}};
  std::string_view digits = text;
  unsigned shift = 0;
  std::size_t first_letter = text.find_first_not_of("0123456789");
  if (first_letter != std::string_view::npos && first_letter > 0) {
    std::string_view suffix = text.substr(first_letter);
    auto it = std::find_if(std::begin(kSuffixes), std::end(kSuffixes),
                           [&](const Suffix& s) { return EqualsIgnoreCase(s.text, suffix); });
    if (it == std::end(kSuffixes)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       fmt::format("'{}' is not a size: use bytes, or a number with K, M or G "
                                   "(KiB, MiB, GiB)",
                                   text));
    }
    digits = text.substr(0, first_letter);
    shift = it->shift;
  }
  auto value = ParseWhole(digits, "size");
  if (!value) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("'{}' is not a size: use bytes, or a number with K, M or G "
                                 "(KiB, MiB, GiB)",
                                 text));
  }
  if (*value > (std::numeric_limits<std::uint64_t>::max() >> shift)) {
    return MakeError(ErrorCode::kInvalidArgument, fmt::format("size '{}' is too large", text));
  }
  return *value << shift;
}

Result<std::size_t> ParseChunkSize(std::string_view text) {
  auto size = ParseByteSize(text);
  if (!size) {
    return MakeError(std::move(size).error().WithContext("--chunk-size"));
  }
  if (*size < kMinChunkSize || *size > kMaxChunkSize) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("--chunk-size: {} is out of range; use 4KiB ({}) to 64MiB ({})",
                                 text, kMinChunkSize, kMaxChunkSize));
  }
  return static_cast<std::size_t>(*size);
}

Result<std::uint64_t> ParseCount(std::string_view text, std::string_view option, std::uint64_t min,
                                 std::uint64_t max) {
  auto value = ParseWhole(text, option);
  if (!value || *value < min || *value > max) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("{} '{}': expected a number from {} to {}", option,
                                 DisplayName(text), min, max));
  }
  return *value;
}

Result<unsigned> ParseJobs(std::string_view text) {
  auto jobs = ParseWhole(text, "--jobs");
  if (!jobs || *jobs > kMaxJobs) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("--jobs: '{}' is not a number of threads from 0 (one per core) to "
                                 "{}",
                                 text, kMaxJobs));
  }
  return static_cast<unsigned>(*jobs);
}

Result<std::vector<pipeline::DigestAlgorithm>> ParseAlgorithms(
    std::span<const std::string> values) {
  std::vector<pipeline::DigestAlgorithm> algorithms;
  for (const std::string& value : values) {
    std::string_view rest = value;
    for (;;) {
      std::size_t comma = rest.find(',');
      std::string_view name = rest.substr(0, comma);
      auto algorithm = pipeline::ParseDigestAlgorithm(name);
      if (!algorithm) {
        return MakeError(std::move(algorithm).error().WithContext("--algorithm"));
      }
      if (std::find(algorithms.begin(), algorithms.end(), *algorithm) == algorithms.end()) {
        algorithms.push_back(*algorithm);
      }
      if (comma == std::string_view::npos) {
        break;
      }
      rest.remove_prefix(comma + 1);
    }
  }
  if (algorithms.empty()) {
    algorithms.push_back(pipeline::DigestAlgorithm::kSha256);
  }
  return algorithms;
}

Result<pipeline::IoBackend> ParseBackend(std::string_view text) {
  auto backend = pipeline::ParseIoBackend(text);
  if (!backend) {
    return MakeError(std::move(backend).error().WithContext("--backend"));
  }
  return *backend;
}

}  // namespace signet::cli
