// Fuzzes the parser of POST /v1/sign bodies, signetd's main untrusted input: no crash, no hang,
// and its fast path (SAX, for bodies of the usual shape) must give exactly what the DOM reference
// path gives, errors included. The CBOR form is parsed too (no crash).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "appliance/service/internal/request.h"
#include "tests/service/request_outcome.h"

namespace {

using signet::service::internal::ParsePath;
using signet::service::internal::ParseSignBody;
using signet::service::internal::SignBodyOutcome;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  // The first byte picks the hash the key would use; the rest is the body.
  const signet::hsm::Hash hash = data[0] % 3 == 0   ? signet::hsm::Hash::kSha256
                                 : data[0] % 3 == 1 ? signet::hsm::Hash::kSha384
                                                    : signet::hsm::Hash::kSha512;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::string fast = SignBodyOutcome(body, ParsePath::kFast, hash);
  const std::string dom = SignBodyOutcome(body, ParsePath::kDom, hash);
  if (fast != dom) {
    std::fprintf(stderr, "fast path: %s\nDOM path: %s\n", fast.c_str(), dom.c_str());
    std::abort();
  }
  if (auto cbor = ParseSignBody(body, /*cbor=*/true); cbor) {
    (void)cbor->CheckItems(hash);
  }
  return 0;
}
