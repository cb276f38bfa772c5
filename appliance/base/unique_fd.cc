#include <unistd.h>

#include <cerrno>

#include "appliance/base/base.h"

namespace signet {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    Reset(other.Release());
  }
  return *this;
}

void UniqueFd::Reset(int fd) {
  // close(2) is not retried on EINTR: on Linux the descriptor is gone either way, and a retry could
  // close a descriptor another thread just opened.
  if (fd_ >= 0 && fd_ != fd) {
    ::close(fd_);
  }
  fd_ = fd;
}

Status UniqueFd::Close() {
  if (fd_ < 0) {
    return OkStatus();
  }
  const int fd = Release();
  if (::close(fd) != 0 && errno != EINTR) {
    return MakeError(ErrnoError(errno, "close"));
  }
  return OkStatus();
}

}  // namespace signet
