// `signet sign --wait` and `--collect`: asking about held sign requests (internal/sign_wait.h).
#include "appliance/cli/internal/sign_wait.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <thread>

namespace signet::cli {

bool ValidApprovalId(std::string_view id) {
  return !id.empty() && id.size() <= 128 && id != "." && id != ".." &&
         id.find_first_not_of(
             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") ==
             std::string_view::npos;
}

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string StringField(const json& object, const char* name, std::string_view fallback = "") {
  if (!object.is_object() || !object.contains(name) || !object[name].is_string()) {
    return std::string(fallback);
  }
  return DisplayName(object[name].get_ref<const std::string&>());
}

std::size_t ApprovalsGiven(const json& answer) {
  return answer.contains("approvals") && answer["approvals"].is_array() ? answer["approvals"].size()
                                                                        : 0;
}

// One held request while it is waited for.
struct Waiting {
  HeldRequest held;                      // approvals_required is updated from signetd's answers
  std::optional<WaitOutcome> outcome{};  // set once it ended
  std::size_t approvals = 0;             // given so far, as last seen
  bool approved = false;                 // the M-th approval came; signetd is signing
  std::optional<std::size_t> shown_approvals{};
  bool shown_signing = false;
  std::string last_error{};  // the last connection failure, for the timeout message
};

// One poll of `w`, telling `console` (when not null) of new approvals. Returns true when its
// approvals count changed (the back-off restarts).
bool Poll(DaemonClient& client, Waiting& w, Console* console) {
  HeldRequest& held = w.held;
  const std::string id = DisplayName(held.approval_id);
  auto answer = client.Get("/v1/requests/" + held.approval_id);
  if (!answer) {
    w.last_error = answer.error().message();
    return false;
  }
  w.last_error.clear();
  if (answer->status == 404) {
    const json refusal = json::parse(answer->body, nullptr, /*allow_exceptions=*/false);
    w.outcome = WaitOutcome{
        .message = fmt::format("no held request {} on this signetd (HTTP 404 {}): give the ID "
                               "that a \"held for approval\" line of this signetd named",
                               id, StringField(refusal, "code", "not found"))};
    return false;
  }
  if (answer->status != 200) {
    w.outcome = WaitOutcome{
        .message = fmt::format("asking about held request {}: {}", id, DescribeRefusal(*answer))};
    return false;
  }
  json body = json::parse(answer->body, nullptr, /*allow_exceptions=*/false);
  const std::string status = StringField(body, "status");
  if (status == "pending") {
    w.approvals = ApprovalsGiven(body);
    if (body.contains("approvals_required") && body["approvals_required"].is_number_unsigned()) {
      held.approvals_required = body["approvals_required"].get<std::uint64_t>();
    }
    if (console != nullptr && w.shown_approvals != w.approvals) {
      const bool changed = w.shown_approvals.has_value();
      w.shown_approvals = w.approvals;
      console->Error(fmt::format("waiting for approval of {}: {} of {} approvals", id, w.approvals,
                                 held.approvals_required));
      return changed;
    }
    return false;
  }
  if (status == "approved") {
    w.approved = true;
    if (console != nullptr && !w.shown_signing) {
      w.shown_signing = true;
      console->Error(fmt::format("{} approved: signing", id));
      return true;
    }
    return false;
  }
  if (status == "signed") {
    w.outcome = WaitOutcome{.state = WaitOutcome::State::kSigned, .answer = std::move(body)};
  } else if (status == "denied") {
    w.outcome =
        WaitOutcome{.message = fmt::format("denied by {}: {} (held request {})",
                                           StringField(body, "denied_by", "an approver"),
                                           StringField(body, "reason", "no reason given"), id)};
  } else if (status == "expired") {
    w.outcome = WaitOutcome{
        .message = held.approvals_required > 0
                       ? fmt::format("held request {} expired before it had {} approvals; nothing "
                                     "was signed",
                                     id, held.approvals_required)
                       : fmt::format("held request {} expired before it was approved; nothing "
                                     "was signed",
                                     id)};
  } else if (status == "failed") {
    w.outcome =
        WaitOutcome{.message = fmt::format("held request {} was approved but not signed: {} ({})",
                                           id, StringField(body, "message", "no reason given"),
                                           StringField(body, "code", "failed"))};
  } else {
    w.outcome = WaitOutcome{
        .message = fmt::format("signetd's answer about held request {} makes no sense: {}", id,
                               DisplayName(answer->body.substr(0, 200)))};
  }
  return false;
}

}  // namespace

Result<HeldRequest> ParseHeldAnswer(std::string_view body) {
  const json answer = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!answer.is_object() || answer.value("status", std::string()) != "pending" ||
      !answer.contains("approval_id") || !answer["approval_id"].is_string()) {
    return MakeError(ErrorCode::kUnavailable,
                     fmt::format("signetd answered 202 without a pending approval_id: {}",
                                 DisplayName(body.substr(0, 200))));
  }
  HeldRequest held;
  held.approval_id = answer["approval_id"].get<std::string>();
  if (!ValidApprovalId(held.approval_id)) {
    return MakeError(ErrorCode::kUnavailable,
                     fmt::format("signetd's approval_id '{}' is not a plain name",
                                 DisplayName(held.approval_id)));
  }
  held.rule = StringField(answer, "rule", "?");
  if (answer.contains("approvals_required") && answer["approvals_required"].is_number_unsigned()) {
    held.approvals_required = answer["approvals_required"].get<std::uint64_t>();
  }
  return held;
}

std::string DescribeHeld(const HeldRequest& held) {
  return fmt::format("{} (rule {} needs {} approval{})", DisplayName(held.approval_id), held.rule,
                     held.approvals_required, held.approvals_required == 1 ? "" : "s");
}

std::vector<WaitOutcome> WaitForApprovals(DaemonClient& client, std::span<const HeldRequest> held,
                                          const WaitOptions& options, Console& console) {
  std::vector<Waiting> waiting;
  for (const HeldRequest& h : held) {
    waiting.push_back(Waiting{.held = h});
  }
  const Clock::time_point deadline = Clock::now() + options.timeout;
  std::chrono::milliseconds delay = options.first_delay;
  for (;;) {
    bool progress = false;
    bool open = false;
    for (Waiting& w : waiting) {
      if (!w.outcome) {
        progress = Poll(client, w, &console) || progress;
        open = open || !w.outcome;
      }
    }
    const Clock::time_point now = Clock::now();
    if (!open || now >= deadline) {
      break;
    }
    delay = progress ? options.first_delay : delay;
    std::this_thread::sleep_for(std::min<Clock::duration>(delay, deadline - now));
    delay = std::min(delay * 2, options.max_delay);
  }
  std::vector<WaitOutcome> outcomes;
  for (Waiting& w : waiting) {
    if (w.outcome) {
      outcomes.push_back(std::move(*w.outcome));
      continue;
    }
    const std::string id = DisplayName(w.held.approval_id);
    std::string message = fmt::format(
        "held request {} is still pending after {} s: nothing was written. Once it is approved, "
        "collect its signatures with `signet sign --collect {} [--wait] ... FILES` (the same "
        "--key and FILES)",
        id, std::chrono::duration_cast<std::chrono::seconds>(options.timeout).count(), id);
    if (!w.last_error.empty()) {
      message += " (the last poll failed: " + w.last_error + ")";
    }
    outcomes.push_back(
        WaitOutcome{.state = WaitOutcome::State::kTimedOut, .message = std::move(message)});
  }
  return outcomes;
}

WaitOutcome CheckHeld(DaemonClient& client, const HeldRequest& held) {
  Waiting w{.held = held};
  Poll(client, w, nullptr);
  if (w.outcome) {
    return std::move(*w.outcome);
  }
  const std::string id = DisplayName(held.approval_id);
  if (!w.last_error.empty()) {
    return WaitOutcome{.message =
                           fmt::format("asking about held request {}: {}", id, w.last_error)};
  }
  return WaitOutcome{.state = WaitOutcome::State::kPending,
                     .message = w.approved ? fmt::format("{} (approved: signetd is signing it)", id)
                                           : fmt::format("{} ({} of {} approvals)", id, w.approvals,
                                                         w.held.approvals_required),
                     .approved = w.approved};
}

}  // namespace signet::cli
