#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "pipeline/internal/reader.h"

namespace signet::pipeline::internal {

Error ChangedWhileHashing(std::string_view what) {
  return Error(ErrorCode::kUnavailable, "changed while hashing (" + std::string(what) +
                                            "); hash it again when it is stable");
}

namespace {

class PreadReader final : public FileReader {
 public:
  explicit PreadReader(std::size_t chunk_size)
      : chunk_size_(chunk_size),
        buffer_(static_cast<std::uint8_t*>(std::aligned_alloc(4096, RoundUp(chunk_size)))) {}

  Status ReadAll(int fd, std::uint64_t size, bool /*offload*/, const ChunkSink& sink) override {
    if (!buffer_) {
      return MakeError(ErrorCode::kUnavailable, "out of memory for a read buffer");
    }
    std::uint64_t offset = 0;
    while (offset < size) {
      const std::size_t want =
          static_cast<std::size_t>(std::min<std::uint64_t>(chunk_size_, size - offset));
      const ssize_t n = ::pread(fd, buffer_.get(), want, static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return MakeError(ErrnoError(errno, "read"));
      }
      if (n == 0) {
        return MakeError(ChangedWhileHashing("it ended early, at byte " + std::to_string(offset) +
                                             " of " + std::to_string(size)));
      }
      SIGNET_RETURN_IF_ERROR(sink({buffer_.get(), static_cast<std::size_t>(n)}));
      offset += static_cast<std::uint64_t>(n);
    }
    return OkStatus();
  }

 private:
  static std::size_t RoundUp(std::size_t n) { return (n + 4095) / 4096 * 4096; }

  std::size_t chunk_size_;
  std::unique_ptr<std::uint8_t, FnDeleter<&std::free>> buffer_;
};

}  // namespace

std::unique_ptr<FileReader> MakePreadReader(std::size_t chunk_size) {
  return std::make_unique<PreadReader>(chunk_size);
}

}  // namespace signet::pipeline::internal
