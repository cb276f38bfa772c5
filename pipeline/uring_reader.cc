#include <liburing.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "pipeline/internal/reader.h"

namespace signet::pipeline::internal {
namespace {

std::string Strerror(int err) { return std::system_category().message(err); }

Error UnavailableError(int err) {
  return Error(ErrorCode::kUnavailable,
               "io_uring is unavailable: io_uring_queue_init: " + Strerror(err) +
                   (err == EPERM || err == ENOSYS
                        ? " (blocked by seccomp, a container runtime, or kernel.io_uring_disabled)"
                        : ""),
               ErrorDomain::kErrno, err);
}

// UringReader keeps up to `depth` reads of one file in flight: while the caller hashes chunk k,
// chunks k+1 .. k+depth-1 are being read. Buffer i belongs to slot i; a slot is refilled only after
// its chunk has been consumed, so bytes reach the sink in file order.
class UringReader final : public FileReader {
 public:
  UringReader(std::size_t chunk_size, unsigned depth) : chunk_size_(chunk_size), slots_(depth) {}
  UringReader(const UringReader&) = delete;
  UringReader& operator=(const UringReader&) = delete;
  ~UringReader() override {
    if (ring_ready_) {
      io_uring_queue_exit(&ring_);
    }
  }

  Status Init() {
    const unsigned depth = static_cast<unsigned>(slots_.size());
    if (const int ret = io_uring_queue_init(depth, &ring_, 0); ret < 0) {
      return MakeError(UnavailableError(-ret));
    }
    ring_ready_ = true;
    // aligned_alloc wants a size that is a multiple of the alignment.
    const std::size_t bytes = (chunk_size_ * depth + 4095) / 4096 * 4096;
    buffers_.reset(static_cast<std::uint8_t*>(std::aligned_alloc(4096, bytes)));
    if (!buffers_) {
      return MakeError(ErrorCode::kUnavailable, "out of memory for io_uring read buffers");
    }
    std::vector<iovec> iovecs(depth);
    for (unsigned i = 0; i < depth; ++i) {
      iovecs[i] = {Buffer(i), chunk_size_};
    }
    // Registered buffers spare the kernel pinning pages on every read. Refusal (an old kernel's
    // RLIMIT_MEMLOCK) only costs speed, so it is not an error.
    registered_ = io_uring_register_buffers(&ring_, iovecs.data(), depth) == 0;
    return OkStatus();
  }

  Status ReadAll(int fd, std::uint64_t size, bool offload, const ChunkSink& sink) override {
    const std::uint64_t chunks = (size + chunk_size_ - 1) / chunk_size_;
    const std::uint64_t depth = slots_.size();
    fd_ = fd;
    offload_ = offload;
    in_flight_ = 0;
    std::uint64_t next_submit = 0;
    for (; next_submit < chunks && next_submit < depth; ++next_submit) {
      Start(next_submit, size);
    }
    Status status = Submit();
    for (std::uint64_t next_consume = 0; status && next_consume < chunks; ++next_consume) {
      const std::size_t slot = next_consume % depth;
      while (status && !slots_[slot].done) {
        status = Reap();
      }
      if (status) {
        status = sink({Buffer(slot), slots_[slot].length});
      }
      if (status && next_submit < chunks) {
        Start(next_submit++, size);  // the slot just consumed takes the next chunk
        status = Submit();
      }
    }
    // The kernel owns every buffer with a read in flight: wait for all of them, even on error.
    while (in_flight_ > 0) {
      io_uring_cqe* cqe = nullptr;
      const int ret = io_uring_wait_cqe(&ring_, &cqe);
      if (ret == -EINTR) {
        continue;
      }
      if (ret < 0) {
        // Cannot happen with a valid ring; if it does the buffers may still be written to.
        std::abort();
      }
      io_uring_cqe_seen(&ring_, cqe);
      --in_flight_;
    }
    return status;
  }

 private:
  struct Slot {
    std::uint64_t offset = 0;
    std::uint32_t length = 0;
    std::uint32_t filled = 0;
    bool done = false;
  };

  std::uint8_t* Buffer(std::size_t slot) const { return buffers_.get() + slot * chunk_size_; }

  void Start(std::uint64_t chunk, std::uint64_t size) {
    const std::size_t slot = chunk % slots_.size();
    const std::uint64_t offset = chunk * chunk_size_;
    slots_[slot] = Slot{
        offset, static_cast<std::uint32_t>(std::min<std::uint64_t>(chunk_size_, size - offset)), 0,
        false};
    Prepare(slot);
  }

  // Queues a read of the rest of `slot`'s chunk (all of it, or what a short read left).
  void Prepare(std::size_t slot) {
    Slot& s = slots_[slot];
    // At most depth reads are ever in flight and each is submitted at once, so an SQE is free.
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    std::uint8_t* dest = Buffer(slot) + s.filled;
    const unsigned length = s.length - s.filled;
    if (registered_) {
      io_uring_prep_read_fixed(sqe, fd_, dest, length, s.offset + s.filled, static_cast<int>(slot));
    } else {
      io_uring_prep_read(sqe, fd_, dest, length, s.offset + s.filled);
    }
    sqe->user_data = slot;
    if (offload_) {
      sqe->flags |= IOSQE_ASYNC;
    }
    ++in_flight_;
  }

  Status Submit() {
    for (;;) {
      const int ret = io_uring_submit(&ring_);
      if (ret >= 0) {
        return OkStatus();
      }
      if (ret != -EINTR && ret != -EAGAIN) {
        return MakeError(ErrnoError(-ret, "io_uring_submit"));
      }
    }
  }

  // Waits for one completion and records it; a short read is queued again for its remainder.
  Status Reap() {
    io_uring_cqe* cqe = nullptr;
    int ret = io_uring_wait_cqe(&ring_, &cqe);
    while (ret == -EINTR) {
      ret = io_uring_wait_cqe(&ring_, &cqe);
    }
    if (ret < 0) {
      return MakeError(ErrnoError(-ret, "io_uring_wait_cqe"));
    }
    const std::size_t slot = cqe->user_data;
    const int res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    --in_flight_;
    Slot& s = slots_[slot];
    if (res == -EINTR || res == -EAGAIN) {
      Prepare(slot);
      return Submit();
    }
    if (res < 0) {
      return MakeError(ErrnoError(-res, "read"));
    }
    if (res == 0) {
      return MakeError(
          ChangedWhileHashing("it ended early, at byte " + std::to_string(s.offset + s.filled)));
    }
    s.filled += static_cast<std::uint32_t>(res);
    if (s.filled < s.length) {
      Prepare(slot);
      return Submit();
    }
    s.done = true;
    return OkStatus();
  }

  std::size_t chunk_size_;
  std::vector<Slot> slots_;
  std::unique_ptr<std::uint8_t, FnDeleter<&std::free>> buffers_;
  io_uring ring_{};
  bool ring_ready_ = false;
  bool registered_ = false;
  // Per ReadAll call.
  int fd_ = -1;
  bool offload_ = false;
  unsigned in_flight_ = 0;
};

}  // namespace

Status ProbeUring() {
  io_uring ring{};
  if (const int ret = io_uring_queue_init(2, &ring, 0); ret < 0) {
    return MakeError(UnavailableError(-ret));
  }
  io_uring_queue_exit(&ring);
  return OkStatus();
}

Result<std::unique_ptr<FileReader>> MakeUringReader(std::size_t chunk_size, unsigned depth) {
  auto reader = std::make_unique<UringReader>(chunk_size, depth);
  SIGNET_RETURN_IF_ERROR(reader->Init());
  return std::unique_ptr<FileReader>(std::move(reader));
}

}  // namespace signet::pipeline::internal
