// Private to appliance/cli: `signet sign`'s side of approvals (admin/API.md, "Approvals"). A
// policy rule with `approvals = M` makes POST /v1/sign answer 202 {"status": "pending",
// "approval_id", ...}: the request is held, nothing is signed. This reads that answer and waits
// for the held request with GET /v1/requests/ID until it is signed, refused or the wait times out.
//
// Caveats:
// - Only the requester (the same principal) may read a held request: wait over a connection made
//   the way the request was sent.
// - A "signed" answer carries the fields of a 200 POST /v1/sign answer; the caller checks and
//   writes it exactly as it would that one.
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_SIGN_WAIT_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_SIGN_WAIT_H_

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/base/base.h"
#include "appliance/cli/internal/console.h"
#include "appliance/cli/internal/daemon_client.h"

namespace signet::cli {

// A sign request signetd holds for approval, as its 202 answer describes it.
struct HeldRequest {
  std::string approval_id;  // checked: 1 to 128 of A-Z a-z 0-9 . _ - (it goes into a URL path)
  std::string rule;
  std::uint64_t approvals_required = 0;
};

// The 202 answer of POST /v1/sign. Errors: kUnavailable (not the documented shape, or an ID that
// cannot go into a URL path).
[[nodiscard]] Result<HeldRequest> ParseHeldAnswer(std::string_view body);

// "ID (rule R needs M approvals)", for messages.
std::string DescribeHeld(const HeldRequest& held);

// How one held request ended.
struct WaitOutcome {
  enum class State { kSigned, kRefused, kTimedOut };
  State state = State::kRefused;
  nlohmann::json answer{};  // kSigned: the answer, to be read as a 200 answer of POST /v1/sign
  std::string message{};    // kRefused, kTimedOut: what happened, naming the ID
};

struct WaitOptions {
  std::chrono::milliseconds timeout{std::chrono::hours(1)};
  // Polls back off from first_delay, doubling, to max_delay; new approvals restart the back-off.
  std::chrono::milliseconds first_delay{500};
  std::chrono::milliseconds max_delay{5000};
};

// Polls GET /v1/requests/ID for each of `held` until it is signed, denied, expired or failed, or
// `options.timeout` has passed; prints "waiting for approval of ID: k of M approvals" on stderr
// whenever k changes. Returns one outcome per held request, in order. A connection failure is
// retried until the timeout (signetd may be restarting); a refusal of the GET (404
// unknown_request, 403 not_yours) ends that request's wait. Blocks the calling thread; uses
// `client` from it alone.
std::vector<WaitOutcome> WaitForApprovals(DaemonClient& client, std::span<const HeldRequest> held,
                                          const WaitOptions& options, Console& console);

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_SIGN_WAIT_H_
