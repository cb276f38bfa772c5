// Principals (who asks) and the patterns rules name them by; also the small enum names.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

#include "appliance/policy/internal/text.h"
#include "appliance/policy/policy.h"

namespace signet::policy {
namespace {

constexpr std::string_view kUserPrefix = "user:";
constexpr std::string_view kUidPrefix = "uid:";
constexpr std::string_view kGroupPrefix = "group:";
constexpr std::string_view kSubjectPrefix = "cert-subject:";
constexpr std::string_view kFingerprintPrefix = "cert-fingerprint:";

std::optional<std::uint32_t> ParseUid(std::string_view text) {
  std::uint32_t uid = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, uid);
  // (uid_t)-1 is "no uid" to the kernel: no peer ever has it.
  if (text.empty() || ec != std::errc() || ptr != end || uid == UINT32_MAX) {
    return std::nullopt;
  }
  return uid;
}

// Lower-case hex without ':' separators; empty when `text` holds anything else.
std::string NormalizeFingerprint(std::string_view text) {
  std::string hex;
  hex.reserve(text.size());
  for (const char c : text) {
    if (c == ':') {
      continue;
    }
    if (std::isxdigit(static_cast<unsigned char>(c)) == 0) {
      return {};
    }
    hex += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return hex;
}

// User and group names: whatever the system allows, minus what is surely a typo or an attack on
// log lines.
Status CheckName(std::string_view what, std::string_view value) {
  if (value.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, std::string(what) + " name is empty");
  }
  if (value.front() == ' ' || value.back() == ' ') {
    return MakeError(
        ErrorCode::kInvalidArgument,
        std::string(what) + " name " + internal::Quoted(value) + " starts or ends with a space");
  }
  for (const char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      return MakeError(
          ErrorCode::kInvalidArgument,
          std::string(what) + " name " + internal::Quoted(value) + " holds a control character");
    }
  }
  return OkStatus();
}

}  // namespace

std::string PrincipalName(const Principal& principal) {
  if (!principal.user.empty()) {
    return std::string(kUserPrefix) + principal.user;
  }
  if (principal.uid.has_value()) {
    return std::string(kUidPrefix) + std::to_string(*principal.uid);
  }
  if (!principal.cert_subject.empty()) {
    return std::string(kSubjectPrefix) + principal.cert_subject;
  }
  if (!principal.cert_fingerprint.empty()) {
    return std::string(kFingerprintPrefix) + principal.cert_fingerprint;
  }
  return "anonymous";
}

Result<PrincipalPattern> PrincipalPattern::Parse(std::string_view text) {
  PrincipalPattern pattern;
  std::string_view value;
  if (text.starts_with(kUserPrefix)) {
    pattern.kind = Kind::kUser;
    value = text.substr(kUserPrefix.size());
    SIGNET_RETURN_IF_ERROR(CheckName("user", value));
  } else if (text.starts_with(kUidPrefix)) {
    pattern.kind = Kind::kUid;
    value = text.substr(kUidPrefix.size());
    if (!ParseUid(value).has_value()) {
      return MakeError(
          ErrorCode::kInvalidArgument,
          "uid " + internal::Quoted(value) + " is not a decimal number from 0 to 4294967294");
    }
  } else if (text.starts_with(kGroupPrefix)) {
    pattern.kind = Kind::kGroup;
    value = text.substr(kGroupPrefix.size());
    SIGNET_RETURN_IF_ERROR(CheckName("group", value));
  } else if (text.starts_with(kSubjectPrefix)) {
    pattern.kind = Kind::kCertSubject;
    value = text.substr(kSubjectPrefix.size());
    if (value.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "cert-subject pattern is empty");
    }
    if (Status glob = internal::CheckGlob(value); !glob) {
      return MakeError(
          ErrorCode::kInvalidArgument,
          "cert-subject pattern " + internal::Quoted(value) + ": " + glob.error().message());
    }
  } else if (text.starts_with(kFingerprintPrefix)) {
    pattern.kind = Kind::kCertFingerprint;
    std::string hex = NormalizeFingerprint(text.substr(kFingerprintPrefix.size()));
    if (hex.size() != 64) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "cert-fingerprint " +
                           internal::Quoted(text.substr(kFingerprintPrefix.size())) +
                           " is not a SHA-256 fingerprint (64 hex digits, ':' allowed)");
    }
    pattern.value = std::move(hex);
    return pattern;
  } else {
    return MakeError(ErrorCode::kInvalidArgument,
                     "principal " + internal::Quoted(text) +
                         " has no known kind: write user:NAME, uid:N, group:NAME, "
                         "cert-subject:PATTERN or cert-fingerprint:HEX");
  }
  pattern.value = std::string(value);
  return pattern;
}

std::string PrincipalPattern::ToString() const {
  switch (kind) {
    case Kind::kUser:
      return std::string(kUserPrefix) + value;
    case Kind::kUid:
      return std::string(kUidPrefix) + value;
    case Kind::kGroup:
      return std::string(kGroupPrefix) + value;
    case Kind::kCertSubject:
      return std::string(kSubjectPrefix) + value;
    case Kind::kCertFingerprint:
      return std::string(kFingerprintPrefix) + value;
  }
  return value;
}

bool PrincipalPattern::Matches(const Principal& principal) const {
  switch (kind) {
    case Kind::kUser:
      return !principal.user.empty() && principal.user == value;
    case Kind::kUid: {
      const std::optional<std::uint32_t> uid = ParseUid(value);
      return uid.has_value() && principal.uid == uid;
    }
    case Kind::kGroup:
      return std::find(principal.groups.begin(), principal.groups.end(), value) !=
             principal.groups.end();
    case Kind::kCertSubject:
      return !principal.cert_subject.empty() &&
             internal::GlobMatch(value, principal.cert_subject, internal::GlobSyntax::kSubject);
    case Kind::kCertFingerprint:
      return !principal.cert_fingerprint.empty() &&
             NormalizeFingerprint(principal.cert_fingerprint) == value;
  }
  return false;
}

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kAdmin:
      return "admin";
    case Role::kApprover:
      return "approver";
    case Role::kAuditor:
      return "auditor";
  }
  return "unknown";
}

Result<Role> ParseRole(std::string_view name) {
  for (const Role role : {Role::kAdmin, Role::kApprover, Role::kAuditor}) {
    if (name == RoleName(role)) {
      return role;
    }
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown role " + internal::Quoted(name) + " (roles: admin, approver, auditor)");
}

std::string_view DecisionName(Decision decision) {
  switch (decision) {
    case Decision::kAllow:
      return "allow";
    case Decision::kDeny:
      return "deny";
    case Decision::kNeedsApproval:
      return "needs-approval";
  }
  return "unknown";
}

}  // namespace signet::policy
