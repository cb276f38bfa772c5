// `signet digest --check FILE`: verify a checksum file the way `sha256sum -c` does, hashing every
// listed file in one parallel run.
#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "appliance/cli/cli.h"
#include "appliance/cli/internal/checksum_file.h"
#include "appliance/cli/internal/checksum_format.h"
#include "appliance/cli/internal/digest.h"
#include "appliance/cli/internal/ordered_run.h"

namespace signet::cli {
namespace {

// "1 line is" / "2 lines are": the wording coreutils uses in its warnings.
std::string Counted(std::uint64_t n, std::string_view one, std::string_view many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

// The hashed files, one per distinct path, and which of them each listed line refers to.
struct CheckPlan {
  std::vector<std::filesystem::path> paths;  // distinct, in order of first mention
  std::vector<std::size_t> path_of_entry;    // entries[i] refers to paths[path_of_entry[i]]
  std::vector<pipeline::DigestAlgorithm> algorithms;  // distinct, in order of first mention
};

CheckPlan Plan(const std::vector<ChecksumEntry>& entries) {
  CheckPlan plan;
  std::unordered_map<std::string_view, std::size_t> index;
  plan.path_of_entry.reserve(entries.size());
  for (const ChecksumEntry& entry : entries) {
    auto [it, inserted] = index.try_emplace(entry.path, plan.paths.size());
    if (inserted) {
      plan.paths.emplace_back(entry.path);
    }
    plan.path_of_entry.push_back(it->second);
    if (std::find(plan.algorithms.begin(), plan.algorithms.end(), entry.algorithm) ==
        plan.algorithms.end()) {
      plan.algorithms.push_back(entry.algorithm);
    }
  }
  return plan;
}

}  // namespace

int RunCheck(const DigestSettings& settings, Console& console) {
  const std::string& file_name = *settings.check_file;
  const std::string shown = file_name == "-" ? "standard input" : DisplayName(file_name);

  std::vector<pipeline::DigestAlgorithm> allowed;
  if (settings.algorithms_given) {
    allowed = settings.hash.algorithms;
  }
  ChecksumParser parser(allowed);
  auto listed = ReadChecksumFile(file_name, parser);
  if (!listed) {
    console.Error(listed.error().message());
    return kExitFailed;
  }
  const std::vector<ChecksumEntry>& entries = listed->entries;
  if (entries.empty()) {
    console.Error(fmt::format("{}: no properly formatted checksum lines found", shown));
    return kExitFailed;
  }

  CheckPlan plan = Plan(entries);
  pipeline::HashOptions options = settings.hash;
  options.algorithms = plan.algorithms;
  options.recursive = false;
  auto hasher = MakeHasher(options);
  if (!hasher) {
    return ReportSetupError(console, hasher.error());
  }

  // Outcomes arrive in path order; lines are printed in file order as soon as the path each one
  // names is done (a path named again later was hashed once, earlier).
  std::vector<std::optional<Result<pipeline::FileDigest>>> results(plan.paths.size());
  std::size_t next_entry = 0;
  std::uint64_t mismatched = 0;
  std::uint64_t unreadable = 0;
  std::string text;
  auto print_ready = [&] {
    text.clear();
    for (; next_entry < entries.size(); ++next_entry) {
      const ChecksumEntry& entry = entries[next_entry];
      const auto& result = results[plan.path_of_entry[next_entry]];
      if (!result) {
        break;
      }
      if (!*result) {
        // As sha256sum: the reason on stderr first, then the verdict (so `2>&1` reads well).
        console.Out(text);
        text.clear();
        ReportFileError(console, entry.path, result->error());
        ++unreadable;
        AppendCheckedName(text, entry.path);
        text += ": FAILED open or read\n";
        continue;
      }
      AppendCheckedName(text, entry.path);
      const auto& digests = (*result)->digests;
      auto digest = std::find_if(digests.begin(), digests.end(), [&](const pipeline::Digest& d) {
        return d.algorithm() == entry.algorithm;
      });
      bool match =
          digest != digests.end() &&
          std::ranges::equal(digest->bytes(), std::span<const std::uint8_t>(entry.expected));
      if (!match) {
        ++mismatched;
      }
      text += match ? ": OK\n" : ": FAILED\n";
    }
    console.Out(text);
  };
  RunInOrder(*hasher, plan.paths, console, [&](pipeline::FileOutcome outcome) {
    if (outcome.ordinal < results.size()) {
      results[outcome.ordinal] = std::move(outcome.digest);
    }
    print_ready();
  });
  // Only a hasher that skipped an ordinal leaves lines unprinted; say so rather than pass them.
  for (auto& result : results) {
    if (!result) {
      result = MakeError(ErrorCode::kInternal, "the hasher reported no outcome for this file");
    }
  }
  print_ready();

  if (listed->improper_lines > 0) {
    console.Error(fmt::format("WARNING: {} improperly formatted",
                              Counted(listed->improper_lines, "line is", "lines are")));
  }
  if (unreadable > 0) {
    console.Error(fmt::format("WARNING: {} could not be read",
                              Counted(unreadable, "listed file", "listed files")));
  }
  if (mismatched > 0) {
    console.Error(fmt::format("WARNING: {} did NOT match",
                              Counted(mismatched, "computed checksum", "computed checksums")));
  }
  if (auto flushed = console.Flush(); !flushed) {
    console.Error(flushed.error().message());
    return kExitFailed;
  }
  return mismatched > 0 || unreadable > 0 ? kExitFailed : kExitOk;
}

}  // namespace signet::cli
