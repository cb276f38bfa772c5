// `signet digest PATH...`: hash files and print their digests in argument order.
#include <fmt/format.h>

#include <string>

#include "appliance/cli/cli.h"
#include "appliance/cli/internal/checksum_format.h"
#include "appliance/cli/internal/digest.h"
#include "appliance/cli/internal/json_line.h"
#include "appliance/cli/internal/ordered_run.h"

namespace signet::cli {

int RunHash(const DigestSettings& settings, Console& console) {
  auto hasher = MakeHasher(settings.hash);
  if (!hasher) {
    return ReportSetupError(console, hasher.error());
  }
  const bool tagged = settings.tag || settings.hash.algorithms.size() > 1;
  bool any_failed = false;
  std::string text;  // reused: one outcome's lines

  auto emit = [&](pipeline::FileOutcome outcome) {
    // Without -r there is exactly one outcome per argument, in order: print the argument exactly as
    // given (as sha256sum does), whatever the hasher made of its spelling.
    if (!settings.hash.recursive && outcome.ordinal < settings.paths.size()) {
      outcome.path = settings.paths[outcome.ordinal].native();
    }
    const std::string& name = outcome.path;
    if (!outcome.digest) {
      any_failed = true;
      ReportFileError(console, name, outcome.digest.error());
      if (settings.json) {
        console.Out(JsonLine(outcome));
      }
      return;
    }
    if (settings.json) {
      console.Out(JsonLine(outcome));
      return;
    }
    text.clear();
    for (const pipeline::Digest& digest : outcome.digest->digests) {
      if (tagged) {
        AppendTaggedLine(text, digest.algorithm(), digest.Hex(), name);
      } else {
        AppendGnuLine(text, digest.Hex(), name);
      }
    }
    console.Out(text);
  };
  pipeline::RunStats stats = RunInOrder(*hasher, settings.paths, console, emit);

  if (auto flushed = console.Flush(); !flushed) {
    console.Error(flushed.error().message());
    return kExitFailed;
  }
  return any_failed || stats.files_failed > 0 ? kExitFailed : kExitOk;
}

}  // namespace signet::cli
