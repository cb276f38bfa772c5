// pipeline/internal/reader.h: reading one file's bytes in order, by io_uring or pread. Not public.
//
// Caveats:
// - A reader is owned by one thread and is neither copied nor moved (the io_uring one holds a ring
//   whose buffers the kernel may still be writing into).
// - ReadAll never returns while a read is in flight: on any error it first waits for every
//   submitted read to complete, because until then the kernel owns the buffer.
#ifndef SIGNET_PIPELINE_INTERNAL_READER_H_
#define SIGNET_PIPELINE_INTERNAL_READER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "appliance/base/base.h"

namespace signet::pipeline::internal {

// Called with each chunk, in file order. An error stops the read and is returned by ReadAll.
using ChunkSink = std::function<Status(std::span<const std::uint8_t> chunk)>;

class FileReader {
 public:
  virtual ~FileReader() = default;

  // Reads bytes [0, size) of `fd` in order, passing them to `sink` chunk by chunk. `offload` asks
  // the reader to copy pages on another core when it can (io_uring: IOSQE_ASYNC), worth it when a
  // core would otherwise be idle. Errors: kIo (a read failed), kUnavailable ("changed while
  // hashing": the file ended before `size`), and whatever `sink` returns.
  [[nodiscard]] virtual Status ReadAll(int fd, std::uint64_t size, bool offload,
                                       const ChunkSink& sink) = 0;
};

// A reader using pread(2) into one buffer of `chunk_size` bytes.
std::unique_ptr<FileReader> MakePreadReader(std::size_t chunk_size);

// A reader using an io_uring of `depth` entries with `depth` registered buffers of `chunk_size`
// bytes. Errors: kUnavailable when the kernel refuses io_uring (ENOSYS, EPERM under seccomp, ...),
// with the reason.
[[nodiscard]] Result<std::unique_ptr<FileReader>> MakeUringReader(std::size_t chunk_size,
                                                                  unsigned depth);

// Checks that the kernel lets this process set up an io_uring (a tiny ring, made and dropped).
// Errors: kUnavailable with the reason, as MakeUringReader.
[[nodiscard]] Status ProbeUring();

// The error both readers return when a file is shorter than it was when reading began.
Error ChangedWhileHashing(std::string_view what);

}  // namespace signet::pipeline::internal

#endif  // SIGNET_PIPELINE_INTERNAL_READER_H_
