// appliance/base/base.h: the vocabulary every Signet module shares.
//
// Caveats:
// - Every function that returns Result or Status is [[nodiscard]]; the build makes ignoring one an
//   error (-Werror=unused-result).
// - An Error's message is for a person: it says what failed and, where it can, what to change. The
//   native code (errno, CK_RV, LMDB rc, OpenSSL error) is for logs and tests, never for branching
//   in callers outside the module that produced it.
// - UniqueFd and SecureBuffer own what they hold: neither is copyable; a moved-from one is empty.
// - SecureBuffer wipes its bytes when it is destroyed, truncated or moved from; a copy taken out of
//   it (into a std::string, a log line, ...) is not protected. Keep secrets inside it.
// - Deadline uses the steady clock: it is immune to wall-clock changes and meaningless across
//   processes.
// - Hex and base64 decoders are strict: they accept exactly one encoding of each byte string and
//   name the offset of the first bad character.
#ifndef SIGNET_APPLIANCE_BASE_BASE_H_
#define SIGNET_APPLIANCE_BASE_BASE_H_

#include <chrono>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <utility>
#include <vector>

namespace signet {

// ---- Errors ------------------------------------------------------------------------------------

// What kind of failure an Error is; callers branch on this, never on messages.
enum class ErrorCode : std::uint8_t {
  kInvalidArgument = 1,  // the input is malformed or out of range; retrying will not help
  kPermissionDenied,     // the caller (or this process) may not do this
  kNotFound,             // a named thing (file, key, token, record) does not exist
  kUnavailable,          // a transient or fail-closed condition: queue full, audit log down
  kDeadlineExceeded,     // the operation did not finish before its deadline
  kIo,                   // the operating system failed a read, write, fsync, ...
  kCrypto,               // OpenSSL failed, or a signature or digest did not verify
  kHsm,                  // the PKCS#11 module returned an error
  kInternal,             // a broken invariant: a bug in Signet
};

// Lower-case name of `code` ("invalid argument"); "unknown" for values outside the enum.
std::string_view ErrorCodeName(ErrorCode code);

// Which numbering an Error's native code belongs to.
enum class ErrorDomain : std::uint8_t {
  kNone,     // no native code
  kErrno,    // errno value
  kPkcs11,   // CK_RV
  kLmdb,     // LMDB return code
  kOpenSsl,  // ERR_get_error() packed code
};

// Error is a code, a message a person can act on, and an optional native code for logs.
class Error {
 public:
  Error(ErrorCode code, std::string message);
  Error(ErrorCode code, std::string message, ErrorDomain domain, std::int64_t native_code);

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  ErrorDomain domain() const { return domain_; }
  std::int64_t native_code() const { return native_code_; }

  // Returns this error with `context` put in front of the message: "context: message".
  [[nodiscard]] Error WithContext(std::string_view context) const&;
  [[nodiscard]] Error WithContext(std::string_view context) &&;

  // "not found: open dist/a.tar: No such file or directory (errno 2)".
  std::string ToString() const;

  friend bool operator==(const Error&, const Error&) = default;

 private:
  ErrorCode code_;
  ErrorDomain domain_ = ErrorDomain::kNone;
  std::int64_t native_code_ = 0;
  std::string message_;
};

std::ostream& operator<<(std::ostream& os, const Error& error);

// Result<T> holds a T or an Error. Status is Result<void>.
template <class T>
using Result = tl::expected<T, Error>;
using Status = Result<void>;

// MakeError builds the unexpected value that a Result-returning function returns on failure.
[[nodiscard]] inline tl::unexpected<Error> MakeError(ErrorCode code, std::string message) {
  return tl::unexpected<Error>(Error(code, std::move(message)));
}
[[nodiscard]] inline tl::unexpected<Error> MakeError(Error error) {
  return tl::unexpected<Error>(std::move(error));
}

// OkStatus is the success value of a Status.
[[nodiscard]] inline Status OkStatus() { return {}; }

// ErrnoError turns an errno value into an Error whose message is "what: strerror(err)" and whose
// code fits it (ENOENT: kNotFound, EACCES/EPERM: kPermissionDenied, ETIMEDOUT: kDeadlineExceeded,
// EAGAIN/EBUSY/ENOSPC/EMFILE/ENFILE: kUnavailable, EINVAL: kInvalidArgument, otherwise kIo).
[[nodiscard]] Error ErrnoError(int err, std::string_view what);

// OpenSslError drains this thread's OpenSSL error queue into a kCrypto Error "what: reason; ...",
// with the first packed error code as native code. Call it on the thread where OpenSSL failed.
[[nodiscard]] Error OpenSslError(std::string what);

// SIGNET_RETURN_IF_ERROR(expr): if the Status/Result `expr` failed, return its error.
#define SIGNET_RETURN_IF_ERROR(expr)                              \
  do {                                                            \
    if (auto signet_status_ = (expr); !signet_status_) {          \
      return ::tl::unexpected(std::move(signet_status_).error()); \
    }                                                             \
  } while (false)

#define SIGNET_CONCAT_INNER_(a, b) a##b
#define SIGNET_CONCAT_(a, b) SIGNET_CONCAT_INNER_(a, b)
// SIGNET_ASSIGN_OR_RETURN(lhs, expr): evaluate the Result `expr`; on failure return its error,
// otherwise move its value into `lhs` (a declaration such as `auto x` or an existing variable).
#define SIGNET_ASSIGN_OR_RETURN(lhs, expr) \
  SIGNET_ASSIGN_OR_RETURN_IMPL_(SIGNET_CONCAT_(signet_result_, __LINE__), lhs, expr)
#define SIGNET_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp) {                                         \
    return ::tl::unexpected(std::move(tmp).error());  \
  }                                                   \
  lhs = std::move(tmp).value()

// ---- Bytes -------------------------------------------------------------------------------------

using Bytes = std::vector<std::uint8_t>;

// AsBytes views the characters of `s` as bytes (no copy).
inline std::span<const std::uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// ---- RAII over C handles ---------------------------------------------------------------------

// FnDeleter lets std::unique_ptr free a C handle with the library's own function:
//   using EvpMdCtx = std::unique_ptr<EVP_MD_CTX, FnDeleter<&EVP_MD_CTX_free>>;
template <auto kFree>
struct FnDeleter {
  template <class T>
  void operator()(T* p) const {
    kFree(p);
  }
};

// ---- UniqueFd ----------------------------------------------------------------------------------

// UniqueFd owns a file descriptor and closes it when destroyed. Move-only; not thread-safe.
class UniqueFd {
 public:
  UniqueFd() = default;
  // Takes ownership of `fd` (-1 means empty).
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }

  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing: the caller now owns the returned descriptor.
  [[nodiscard]] int Release() { return std::exchange(fd_, -1); }
  // Closes the held descriptor (ignoring errors) and takes ownership of `fd`.
  void Reset(int fd = -1);
  // Closes the held descriptor and reports close(2)'s error, which matters after writes (NFS,
  // quota). The descriptor is released either way. Closing an empty UniqueFd is OK.
  [[nodiscard]] Status Close();

 private:
  int fd_ = -1;
};

// ---- SecureBuffer ------------------------------------------------------------------------------

// SecureBuffer holds secret bytes (a PIN) in pages of their own that are excluded from core dumps,
// optionally locked in RAM, and wiped with OPENSSL_cleanse when the buffer is destroyed, truncated
// or moved from. Move-only; not thread-safe.
class SecureBuffer {
 public:
  enum class Lock : std::uint8_t {
    kNone,        // do not mlock
    kBestEffort,  // mlock, and carry on unlocked if the limit (RLIMIT_MEMLOCK) refuses
    kRequired,    // mlock or fail with kUnavailable
  };

  // An empty buffer: size 0, nothing allocated.
  SecureBuffer() = default;
  ~SecureBuffer();
  SecureBuffer(SecureBuffer&& other) noexcept;
  SecureBuffer& operator=(SecureBuffer&& other) noexcept;
  SecureBuffer(const SecureBuffer&) = delete;
  SecureBuffer& operator=(const SecureBuffer&) = delete;

  // Allocates `size` zeroed bytes. Errors: kUnavailable (out of memory, or mlock refused with
  // Lock::kRequired), kInvalidArgument (size over 1 MiB: secrets are small).
  [[nodiscard]] static Result<SecureBuffer> Allocate(std::size_t size,
                                                     Lock lock = Lock::kBestEffort);
  // Allocates a buffer holding a copy of `bytes`. Errors as Allocate.
  [[nodiscard]] static Result<SecureBuffer> CopyOf(std::span<const std::uint8_t> bytes,
                                                   Lock lock = Lock::kBestEffort);

  std::span<std::uint8_t> bytes() { return {data_, size_}; }
  std::span<const std::uint8_t> bytes() const { return {data_, size_}; }
  // The bytes as characters, for APIs that take a PIN as text. Do not copy it out.
  std::string_view view() const { return {reinterpret_cast<const char*>(data_), size_}; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // True when the pages are locked in RAM.
  bool locked() const { return locked_; }

  // Overwrites every byte with zeros; the size stays.
  void Wipe();
  // Shrinks to `new_size` bytes (no-op when not smaller) and wipes the bytes cut off.
  void Truncate(std::size_t new_size);

 private:
  void Free();

  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t mapped_ = 0;  // bytes mapped (whole pages); 0 when nothing is mapped
  bool locked_ = false;
};

// ReadSecretFile reads a small secret (a PIN) from `path` into a SecureBuffer, dropping one
// trailing "\n" or "\r\n". Refuses, with a message saying what to change: a file that is not a
// regular file, is readable or writable by others (chmod o-rwx), is larger than `max_size` bytes,
// or is empty. Errors: kNotFound, kPermissionDenied, kInvalidArgument, kIo.
[[nodiscard]] Result<SecureBuffer> ReadSecretFile(const std::filesystem::path& path,
                                                  std::size_t max_size = 256);

// ---- Deadline ----------------------------------------------------------------------------------

// Deadline is a point on the steady clock by which an operation must finish, or Never. Cheap to
// copy; compares and orders by time (Never is later than every time).
class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  // A deadline that never expires.
  static Deadline Never() { return Deadline(Clock::time_point::max()); }
  // A deadline `timeout` from now; saturates at Never, a negative timeout is already expired.
  static Deadline In(Clock::duration timeout);
  static Deadline In(Clock::duration timeout, Clock::time_point now);
  // A deadline at `when`.
  static Deadline At(Clock::time_point when) { return Deadline(when); }

  bool IsNever() const { return when_ == Clock::time_point::max(); }
  Clock::time_point when() const { return when_; }

  bool Expired() const { return Expired(Clock::now()); }
  bool Expired(Clock::time_point now) const { return !IsNever() && now >= when_; }

  // Time left: zero once expired, Clock::duration::max() for Never.
  Clock::duration Remaining() const { return Remaining(Clock::now()); }
  Clock::duration Remaining(Clock::time_point now) const;

  // Time left in whole milliseconds for poll(2)/epoll_wait(2): -1 for Never, rounded up (so a
  // waiter never wakes before the deadline and spins), at most INT_MAX.
  int PollTimeoutMs() const { return PollTimeoutMs(Clock::now()); }
  int PollTimeoutMs(Clock::time_point now) const;

  // The earlier of two deadlines.
  static Deadline Earliest(Deadline a, Deadline b) { return a.when_ <= b.when_ ? a : b; }

  friend auto operator<=>(const Deadline&, const Deadline&) = default;

 private:
  explicit Deadline(Clock::time_point when) : when_(when) {}

  Clock::time_point when_;
};

// ---- Hex and base64 ----------------------------------------------------------------------------

// HexEncode returns lower-case hex, two digits per byte; AppendHex appends the same to `out`.
std::string HexEncode(std::span<const std::uint8_t> bytes);
void AppendHex(std::string& out, std::span<const std::uint8_t> bytes);
// HexDecode accepts upper- or lower-case digits, nothing else (no spaces, no "0x").
// Errors: kInvalidArgument naming an odd length or the offset of the first bad character.
[[nodiscard]] Result<Bytes> HexDecode(std::string_view hex);

// Base64Encode returns standard base64 (RFC 4648 §4) with '=' padding; AppendBase64 appends the
// same to `out`.
std::string Base64Encode(std::span<const std::uint8_t> bytes);
void AppendBase64(std::string& out, std::span<const std::uint8_t> bytes);
// Base64Decode accepts only canonical padded standard base64: length a multiple of 4, padding only
// at the end, zero bits after the last byte, no whitespace or URL-safe characters.
// Errors: kInvalidArgument naming what is wrong and where.
[[nodiscard]] Result<Bytes> Base64Decode(std::string_view text);

}  // namespace signet

#endif  // SIGNET_APPLIANCE_BASE_BASE_H_
