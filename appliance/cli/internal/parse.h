// Private to appliance/cli: parsing option values into what the pipeline takes, with messages that
// name the option and say what it accepts.
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_PARSE_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_PARSE_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/base/base.h"
#include "pipeline/pipeline.h"

namespace signet::cli {

// Accepted --chunk-size range: HashOptions' documented 4 KiB to 64 MiB.
inline constexpr std::uint64_t kMinChunkSize = 4 * 1024;
inline constexpr std::uint64_t kMaxChunkSize = 64 * 1024 * 1024;
// Accepted --jobs range; 0 means one worker per core. The hasher refuses more than 256 threads.
inline constexpr unsigned kMaxJobs = 256;

// ParseByteSize parses a whole number of bytes with an optional binary suffix: "65536", "64K",
// "64KiB", "1M", "1MiB", "1G", "1GiB" (K = 1024; case-insensitive; no spaces, signs or fractions).
// Errors: kInvalidArgument (malformed, or over 2^64 - 1).
[[nodiscard]] Result<std::uint64_t> ParseByteSize(std::string_view text);

// ParseChunkSize parses --chunk-size: ParseByteSize within [kMinChunkSize, kMaxChunkSize].
// Errors: kInvalidArgument naming --chunk-size and the range.
[[nodiscard]] Result<std::size_t> ParseChunkSize(std::string_view text);

// ParseCount parses the value of `option`: a whole number from `min` to `max` (digits only).
// Errors: kInvalidArgument "OPTION 'TEXT': expected a number from MIN to MAX".
[[nodiscard]] Result<std::uint64_t> ParseCount(std::string_view text, std::string_view option,
                                               std::uint64_t min, std::uint64_t max);

// ParseJobs parses --jobs: a whole number 0..kMaxJobs. Errors: kInvalidArgument naming --jobs.
[[nodiscard]] Result<unsigned> ParseJobs(std::string_view text);

// ParseAlgorithms parses the values of -a (each may itself be comma-separated, already split by
// the caller or not) into distinct algorithms in first-seen order. Empty input gives sha256.
// Errors: kInvalidArgument naming --algorithm and the accepted names.
[[nodiscard]] Result<std::vector<pipeline::DigestAlgorithm>> ParseAlgorithms(
    std::span<const std::string> values);

// ParseBackend parses --backend. Errors: kInvalidArgument naming --backend.
[[nodiscard]] Result<pipeline::IoBackend> ParseBackend(std::string_view text);

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_PARSE_H_
