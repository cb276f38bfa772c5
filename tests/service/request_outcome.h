// tests/service/request_outcome.h: what the sign body parser made of a body, as text, so that its
// fast path and its DOM reference path can be compared (request_test, tests/fuzz/request_fuzz).
#ifndef SIGNET_TESTS_SERVICE_REQUEST_OUTCOME_H_
#define SIGNET_TESTS_SERVICE_REQUEST_OUTCOME_H_

#include <string>
#include <string_view>

#include "appliance/service/internal/request.h"

namespace signet::service::internal {

// What ParseSignBody (JSON) and then CheckItems (for `hash`) made of `body`, errors included.
inline std::string SignBodyOutcome(std::string_view body, ParsePath path, hsm::Hash hash) {
  auto parsed = ParseSignBody(body, /*cbor=*/false, path);
  if (!parsed) {
    return "parse error: " + parsed.error().message();
  }
  const SignBody& env = parsed->envelope;
  std::string out = "key=" + env.key + " tool=" + env.tool_name + "/" + env.tool_version +
                    " host=" + env.client_host + " ticket=" + env.ticket +
                    " count=" + std::to_string(env.item_count) + "\n";
  auto items = parsed->CheckItems(hash);
  if (!items) {
    return out + "items error: " + items.error().message();
  }
  for (const SignItem& item : *items) {
    out += "name=" + item.name + " size=" + (item.size ? std::to_string(*item.size) : "-");
    for (const auto& [algorithm, hex] : item.digests) {
      out += " " + algorithm + "=" + hex;
    }
    out += "\n";
  }
  return out;
}

}  // namespace signet::service::internal

#endif  // SIGNET_TESTS_SERVICE_REQUEST_OUTCOME_H_
