// Private to appliance/cli: `signet sign`'s side of approvals (admin/API.md, "Approvals"). A
// policy rule with `approvals = M` makes POST /v1/sign answer 202 {"status": "pending",
// "approval_id", ...}: the request is held, nothing is signed. This reads that answer and waits
// for the held request with GET /v1/requests/ID until it is signed, refused or the wait times out.
// `signet sign --collect ID` asks about (or waits for) a request held by an earlier run: it hashes
// the FILES again, matches them to the "signed" answer by name (PlanCollect) and checks every raw
// signature against the file's digest as it is now (CheckCollectedSignature), so a file changed
// since the request was made is refused, not given a signature over its old contents.
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
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "appliance/base/base.h"
#include "appliance/cli/internal/console.h"
#include "appliance/cli/internal/daemon_client.h"
#include "pipeline/pipeline.h"

namespace signet::cli {

// Whether `id` can name a held request: 1 to 128 of A-Z a-z 0-9 . _ - (not "." or ".."), so that
// it can go into a URL path.
bool ValidApprovalId(std::string_view id);

// A sign request signetd holds for approval, as its 202 answer describes it.
struct HeldRequest {
  std::string approval_id{};  // checked: 1 to 128 of A-Z a-z 0-9 . _ - (it goes into a URL path)
  std::string rule{};
  std::uint64_t approvals_required = 0;
};

// The 202 answer of POST /v1/sign. Errors: kUnavailable (not the documented shape, or an ID that
// cannot go into a URL path).
[[nodiscard]] Result<HeldRequest> ParseHeldAnswer(std::string_view body);

// "ID (rule R needs M approvals)", for messages.
std::string DescribeHeld(const HeldRequest& held);

// How one held request ended.
struct WaitOutcome {
  // kPending: CheckHeld only (WaitForApprovals waits until the end or times out).
  enum class State { kSigned, kRefused, kTimedOut, kPending };
  State state = State::kRefused;
  nlohmann::json answer{};  // kSigned: the answer, to be read as a 200 answer of POST /v1/sign
  // kRefused, kTimedOut: what happened, naming the ID; kPending: "ID (k of M approvals)".
  std::string message{};
  // kPending: every approval is in and signetd is signing it (moments, not a person, away).
  bool approved = false;
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

// Asks once about `held` (GET /v1/requests/ID), without waiting: kSigned; kPending while it
// waits for approvals or is being signed; kRefused when it was denied, expired or failed, when
// signetd refuses the GET (404: no such request; 403 not_yours: made by another principal) or
// cannot be reached. Uses `client` from the calling thread.
WaitOutcome CheckHeld(DaemonClient& client, const HeldRequest& held);

// The public key of a raw-format key: checks the raw signatures signetd makes over digests
// (ECDSA: DER; RSA PKCS#1 v1.5 or PSS with salt = hash length). Copyable; thread-safe.
struct RawKey {
  std::string hash_name;  // "sha256", ...
  // Checks `signature` over `digest`. Errors: kCrypto (it does not match: another digest, another
  // key or not a signature at all), kInternal (a digest of the wrong length, OpenSSL failed).
  std::function<Status(std::span<const std::uint8_t> digest,
                       std::span<const std::uint8_t> signature)>
      verify;
};

// From signetd's description of a key (GET /v1/keys/NAME): its "public_key_pem", "scheme"
// ("ECDSA", "RSA PKCS#1 v1.5", "RSA-PSS") and hash. Errors: kInvalidArgument (not a public key, a
// scheme this client cannot check, or a key that does not fit the scheme).
[[nodiscard]] Result<RawKey> MakeRawKey(std::string_view public_key_pem, std::string_view scheme,
                                        pipeline::DigestAlgorithm hash);

// Checks the raw signature signetd made for a file against `digest_hex`, the file's digest now.
// Returns why it is refused ("the signature does not match the file as it is now ...: it changed
// since it was sent for signing"), or nullopt when it verifies.
std::optional<std::string> CheckCollectedSignature(const RawKey& key, std::string_view digest_hex,
                                                   std::span<const std::uint8_t> signature);

// What `signet sign --collect` asks about: the held request, the key named on the command line
// (the answer must be for that key), and whether to wait.
struct CollectRequest {
  HeldRequest held;
  std::string key;
  std::string key_fingerprint;
  bool wait = false;
  std::chrono::milliseconds wait_timeout{std::chrono::hours(1)};
};

// The files `signet sign --collect` hashed, as sign would have sent them.
struct CollectFiles {
  std::vector<std::string> names;  // distinct, in the order they were hashed
  // For each of `names`, why sign would not have sent it (its signature exists without --force,
  // its name is unusable), or nullopt. Such a file missing from the answer is refused for that
  // reason, not counted as a mismatch.
  std::vector<std::optional<std::string>> refused;
  std::set<std::string> unreadable;  // files that could not be hashed (already reported)
};

// What to do with the files: write `reply` (the "signed" answer with only the items of `write`,
// in the same order) for the files `write` names (indices into CollectFiles::names), and report
// each of `unwritten` with its message; `held` when the request is still pending (those files
// are held, not failed).
struct CollectPlan {
  nlohmann::json reply{};
  std::vector<std::size_t> write{};
  std::vector<std::pair<std::size_t, std::string>> unwritten{};
  bool held = false;
};

// Asks signetd about `request.held` (CheckHeld, or WaitForApprovals with `request.wait`) and,
// when it is signed, matches `files` to its items by name: every file must be answered and every
// answered name must be one of the files (a file that could not be read excepted), else nothing
// is written and the differences are named. Prints what concerns the request as a whole on
// `console` (pending, timed out, a mismatch); per-file messages are left to the caller. Uses
// `client` from the calling thread.
CollectPlan PlanCollect(DaemonClient& client, const CollectRequest& request,
                        const CollectFiles& files, Console& console);

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_SIGN_WAIT_H_
