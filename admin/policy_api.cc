// /v1/policy, /v1/policy/validate, /v1/policy/versions[/N], /v1/policy/explain.
#include "admin/internal/state.h"

namespace signet::admin::internal {

void HandlePolicy(State& /*state*/, Call& call) {
  call.respond(net::JsonError(501, "not_implemented", "not built yet"));
}

}  // namespace signet::admin::internal
