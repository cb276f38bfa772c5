// GET /v1/audit/records, /v1/audit/export, /v1/audit/checkpoint, /v1/audit/consistency.
#include "admin/internal/state.h"

namespace signet::admin::internal {

void HandleAudit(State& /*state*/, Call& call) {
  call.respond(net::JsonError(501, "not_implemented", "the audit endpoints are not built yet"));
}

}  // namespace signet::admin::internal
