#include <openssl/err.h>

#include <cerrno>
#include <cstdio>
#include <system_error>

#include "appliance/base/base.h"

namespace signet {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid argument";
    case ErrorCode::kPermissionDenied:
      return "permission denied";
    case ErrorCode::kNotFound:
      return "not found";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kDeadlineExceeded:
      return "deadline exceeded";
    case ErrorCode::kIo:
      return "i/o error";
    case ErrorCode::kCrypto:
      return "crypto error";
    case ErrorCode::kHsm:
      return "hsm error";
    case ErrorCode::kInternal:
      return "internal error";
  }
  return "unknown";
}

namespace {

std::string_view DomainLabel(ErrorDomain domain) {
  switch (domain) {
    case ErrorDomain::kErrno:
      return "errno";
    case ErrorDomain::kPkcs11:
      return "CK_RV";
    case ErrorDomain::kLmdb:
      return "lmdb rc";
    case ErrorDomain::kOpenSsl:
      return "openssl";
    case ErrorDomain::kNone:
      break;
  }
  return "";
}

}  // namespace

Error::Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

Error::Error(ErrorCode code, std::string message, ErrorDomain domain, std::int64_t native_code)
    : code_(code), domain_(domain), native_code_(native_code), message_(std::move(message)) {}

Error Error::WithContext(std::string_view context) const& {
  Error copy = *this;
  return std::move(copy).WithContext(context);
}

Error Error::WithContext(std::string_view context) && {
  std::string message;
  message.reserve(context.size() + 2 + message_.size());
  message.append(context).append(": ").append(message_);
  message_ = std::move(message);
  return std::move(*this);
}

std::string Error::ToString() const {
  std::string out(ErrorCodeName(code_));
  out.append(": ").append(message_);
  if (domain_ != ErrorDomain::kNone) {
    // CK_RV and OpenSSL codes read best in hex, errno and LMDB codes in decimal.
    char native[32];
    const bool hex = domain_ == ErrorDomain::kPkcs11 || domain_ == ErrorDomain::kOpenSsl;
    std::snprintf(native, sizeof native, hex ? "0x%llx" : "%lld",
                  static_cast<long long>(native_code_));
    out.append(" (").append(DomainLabel(domain_)).append(" ").append(native).append(")");
  }
  return out;
}

std::ostream& operator<<(std::ostream& os, const Error& error) { return os << error.ToString(); }

Error ErrnoError(int err, std::string_view what) {
  ErrorCode code = ErrorCode::kIo;
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      code = ErrorCode::kNotFound;
      break;
    case EACCES:
    case EPERM:
    case EROFS:
      code = ErrorCode::kPermissionDenied;
      break;
    case ETIMEDOUT:
      code = ErrorCode::kDeadlineExceeded;
      break;
    case EAGAIN:
    case EBUSY:
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
    case ENOMEM:
      code = ErrorCode::kUnavailable;
      break;
    case EINVAL:
    case ENAMETOOLONG:
    case ELOOP:
    case EISDIR:
      code = ErrorCode::kInvalidArgument;
      break;
    default:
      break;
  }
  std::string message(what);
  message.append(": ").append(std::system_category().message(err));
  return Error(code, std::move(message), ErrorDomain::kErrno, err);
}

Error OpenSslError(std::string what) {
  const unsigned long first = ERR_peek_error();
  std::string reasons;
  while (const unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    reasons.append(reasons.empty() ? "" : "; ").append(buf);
  }
  if (!reasons.empty()) {
    what.append(": ").append(reasons);
  }
  return Error(ErrorCode::kCrypto, std::move(what), ErrorDomain::kOpenSsl,
               static_cast<std::int64_t>(first));
}

}  // namespace signet
