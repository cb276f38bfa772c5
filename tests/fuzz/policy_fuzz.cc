// Fuzzes the policy parser (operators' files, and later policy text sent over the admin socket):
// no crash, no hang, and a policy that parses evaluates a request without crashing.
#include <cstdint>
#include <string_view>

#include "appliance/policy/policy.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto policy = signet::policy::Policy::Parse(text, "fuzz.toml");
  if (policy) {
    signet::policy::SignRequest request;
    request.principal.user = "alice";
    request.principal.uid = 1000;
    request.principal.groups = {"ci"};
    request.key = "default";
    request.tool = "signet";
    request.artifact_names = {"dist/a.tar.gz"};
    request.items = 1;
    (void)(*policy)->Evaluate(request);
  }
  return 0;
}
