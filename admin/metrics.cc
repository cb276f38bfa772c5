// GET /metrics: the Prometheus text exposition.
#include "admin/internal/state.h"

namespace signet::admin::internal {

std::string RenderMetrics(State& /*state*/) { return ""; }

}  // namespace signet::admin::internal
