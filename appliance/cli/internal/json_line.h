// Private to appliance/cli: the --json output of `signet digest`.
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_JSON_LINE_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_JSON_LINE_H_

#include <string>
#include <string_view>

#include "pipeline/pipeline.h"

namespace signet::cli {

// IsValidUtf8 is true when `text` is well-formed UTF-8 (no overlong forms, surrogates or code
// points above U+10FFFF), the same rule JSON parsers apply.
bool IsValidUtf8(std::string_view text);

// JsonLine renders one outcome as one line of JSON, with "\n":
//   {"path":"a.txt","size":3,"digests":{"sha256":"ba78..."}}
//   {"path":"nope","error":{"code":"not found","message":"..."}}
// A path that is not valid UTF-8 is given with U+FFFD for each bad byte in "path", and exactly in
// "path_hex" (lower-case hex of the raw bytes), so the output is always valid JSON and loses
// nothing. Messages are made valid UTF-8 the same way.
std::string JsonLine(const pipeline::FileOutcome& outcome);

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_JSON_LINE_H_
