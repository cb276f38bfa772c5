#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include "appliance/base/base.h"

namespace signet {
namespace {

constexpr std::size_t kMaxSecretSize = 1 << 20;

std::size_t PageSize() {
  static const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

}  // namespace

SecureBuffer::~SecureBuffer() { Free(); }

SecureBuffer::SecureBuffer(SecureBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapped_(std::exchange(other.mapped_, 0)),
      locked_(std::exchange(other.locked_, false)) {}

SecureBuffer& SecureBuffer::operator=(SecureBuffer&& other) noexcept {
  if (this != &other) {
    Free();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_ = std::exchange(other.mapped_, 0);
    locked_ = std::exchange(other.locked_, false);
  }
  return *this;
}

Result<SecureBuffer> SecureBuffer::Allocate(std::size_t size, Lock lock) {
  if (size > kMaxSecretSize) {
    return MakeError(ErrorCode::kInvalidArgument, "secure buffer of " + std::to_string(size) +
                                                      " bytes refused: secrets are at " + "most " +
                                                      std::to_string(kMaxSecretSize) + " bytes");
  }
  SecureBuffer buffer;
  if (size == 0) {
    return buffer;
  }
  const std::size_t page = PageSize();
  const std::size_t mapped = (size + page - 1) / page * page;
  void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return MakeError(ErrnoError(errno, "mmap for a secure buffer").WithContext("out of memory?"));
  }
  buffer.data_ = static_cast<std::uint8_t*>(p);
  buffer.size_ = size;
  buffer.mapped_ = mapped;
  // Keep the secret out of core dumps, and out of children after fork(). Both are best effort:
  // older kernels lack MADV_WIPEONFORK, and neither failure exposes the bytes by itself.
  (void)::madvise(p, mapped, MADV_DONTDUMP);
  (void)::madvise(p, mapped, MADV_WIPEONFORK);
  if (lock != Lock::kNone) {
    if (::mlock(p, mapped) == 0) {
      buffer.locked_ = true;
    } else if (lock == Lock::kRequired) {
      const int err = errno;
      return MakeError(
          Error(ErrorCode::kUnavailable,
                "mlock of a " + std::to_string(mapped) +
                    "-byte secure buffer failed: " + std::system_category().message(err) +
                    " (raise RLIMIT_MEMLOCK, e.g. LimitMEMLOCK= in the systemd unit)",
                ErrorDomain::kErrno, err));
    }
  }
  return buffer;
}

Result<SecureBuffer> SecureBuffer::CopyOf(std::span<const std::uint8_t> bytes, Lock lock) {
  SIGNET_ASSIGN_OR_RETURN(SecureBuffer buffer, Allocate(bytes.size(), lock));
  if (!bytes.empty()) {
    std::memcpy(buffer.data_, bytes.data(), bytes.size());
  }
  return buffer;
}

void SecureBuffer::Wipe() {
  if (data_ != nullptr) {
    OPENSSL_cleanse(data_, size_);
  }
}

void SecureBuffer::Truncate(std::size_t new_size) {
  if (new_size >= size_) {
    return;
  }
  OPENSSL_cleanse(data_ + new_size, size_ - new_size);
  size_ = new_size;
}

void SecureBuffer::Free() {
  if (data_ == nullptr) {
    return;
  }
  // Wipe the whole mapping, not just size_: Truncate already wiped the tail, but be certain.
  OPENSSL_cleanse(data_, mapped_);
  if (locked_) {
    (void)::munlock(data_, mapped_);
  }
  (void)::munmap(data_, mapped_);
  data_ = nullptr;
  size_ = 0;
  mapped_ = 0;
  locked_ = false;
}

Result<SecureBuffer> ReadSecretFile(const std::filesystem::path& path, std::size_t max_size) {
  const std::string name = path.string();
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) {
    return MakeError(ErrnoError(errno, "open secret file " + name));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return MakeError(ErrnoError(errno, "stat secret file " + name));
  }
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument, "secret file " + name + " is not a regular file");
  }
  if ((st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
    return MakeError(
        ErrorCode::kPermissionDenied,
        "secret file " + name + " is accessible to other users; run: chmod o-rwx " + name);
  }
  // Read one byte more than allowed, to tell "exactly max_size" from "too large".
  SIGNET_ASSIGN_OR_RETURN(SecureBuffer buffer, SecureBuffer::Allocate(max_size + 1));
  std::size_t filled = 0;
  while (filled < buffer.size()) {
    const ssize_t n = ::read(fd.get(), buffer.bytes().data() + filled, buffer.size() - filled);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return MakeError(ErrnoError(errno, "read secret file " + name));
    }
    if (n == 0) {
      break;
    }
    filled += static_cast<std::size_t>(n);
  }
  if (filled > max_size) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "secret file " + name + " is larger than " + std::to_string(max_size) +
                         " bytes; it should hold only the secret and at most one newline");
  }
  buffer.Truncate(filled);
  if (filled > 0 && buffer.bytes()[filled - 1] == '\n') {
    --filled;
    if (filled > 0 && buffer.bytes()[filled - 1] == '\r') {
      --filled;
    }
  }
  buffer.Truncate(filled);
  if (buffer.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "secret file " + name + " is empty");
  }
  return buffer;
}

}  // namespace signet
