#include <climits>

#include "appliance/base/base.h"

namespace signet {

Deadline Deadline::In(Clock::duration timeout) { return In(timeout, Clock::now()); }

Deadline Deadline::In(Clock::duration timeout, Clock::time_point now) {
  // Saturate instead of overflowing: a huge timeout means Never, a huge negative one the distant
  // past. Both comparisons are arranged so that they cannot overflow themselves.
  const Clock::duration since_epoch = now.time_since_epoch();
  if (timeout > Clock::duration::zero() && since_epoch >= Clock::duration::max() - timeout) {
    return Never();
  }
  if (timeout < Clock::duration::zero() && since_epoch < Clock::duration::min() - timeout) {
    return Deadline(Clock::time_point::min());
  }
  return Deadline(now + timeout);
}

Deadline::Clock::duration Deadline::Remaining(Clock::time_point now) const {
  if (IsNever()) {
    return Clock::duration::max();
  }
  if (now >= when_) {
    return Clock::duration::zero();
  }
  return when_ - now;
}

int Deadline::PollTimeoutMs(Clock::time_point now) const {
  if (IsNever()) {
    return -1;
  }
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(Remaining(now)).count();
  return left >= INT_MAX ? INT_MAX : static_cast<int>(left);
}

}  // namespace signet
