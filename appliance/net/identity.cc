// Peer identity (SO_PEERCRED, client certificates), request ids and the JSON error shape.
#include <grp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "appliance/net/internal/internal.h"

namespace signet::net {

std::optional<std::string_view> Request::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (std::equal(key.begin(), key.end(), name.begin(), name.end(), [](char a, char b) {
          return a == ((b >= 'A' && b <= 'Z') ? static_cast<char>(b - 'A' + 'a') : b);
        })) {
      return value;
    }
  }
  return std::nullopt;
}

Response JsonError(int status, std::string_view code, std::string_view message,
                   std::string_view limit) {
  std::string body =
      "{\"code\":" + internal::JsonString(code) + ",\"message\":" + internal::JsonString(message);
  if (!limit.empty()) {
    body += ",\"limit\":" + internal::JsonString(limit);
  }
  body += "}";
  Response response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

namespace internal {
namespace {

// getpw*_r/getgr*_r want a caller buffer whose needed size is only a hint; grow on ERANGE.
std::string UserName(uid_t uid) {
  std::vector<char> buf(1024);
  for (int attempt = 0; attempt < 8; ++attempt) {
    passwd pw{};
    passwd* found = nullptr;
    int rc = getpwuid_r(uid, &pw, buf.data(), buf.size(), &found);
    if (rc == ERANGE) {
      buf.resize(buf.size() * 4);
      continue;
    }
    return (rc == 0 && found != nullptr) ? std::string(found->pw_name) : std::string();
  }
  return {};
}

std::string GroupName(gid_t gid) {
  std::vector<char> buf(1024);
  for (int attempt = 0; attempt < 8; ++attempt) {
    group gr{};
    group* found = nullptr;
    int rc = getgrgid_r(gid, &gr, buf.data(), buf.size(), &found);
    if (rc == ERANGE) {
      buf.resize(buf.size() * 4);
      continue;
    }
    if (rc == 0 && found != nullptr) {
      return found->gr_name;
    }
    break;
  }
  return std::to_string(gid);
}

std::vector<gid_t> GroupIds(const std::string& user, gid_t primary) {
  if (user.empty()) {
    return {primary};
  }
  int count = 64;
  std::vector<gid_t> gids(count);
  for (int attempt = 0; attempt < 8; ++attempt) {
    int n = count;
    if (getgrouplist(user.c_str(), primary, gids.data(), &n) >= 0) {
      gids.resize(n);
      return gids;
    }
    count = std::max(n, count * 2);  // n holds the needed size on failure
    gids.resize(count);
  }
  return {primary};
}

std::string GeneralName(const GENERAL_NAME* name) {
  auto as_text = [](const ASN1_STRING* s) {
    return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<std::size_t>(ASN1_STRING_length(s)));
  };
  switch (name->type) {
    case GEN_DNS:
      return "DNS:" + as_text(name->d.dNSName);
    case GEN_URI:
      return "URI:" + as_text(name->d.uniformResourceIdentifier);
    case GEN_EMAIL:
      return "email:" + as_text(name->d.rfc822Name);
    case GEN_IPADD: {
      const ASN1_OCTET_STRING* ip = name->d.iPAddress;
      const unsigned char* p = ASN1_STRING_get0_data(ip);
      char text[64] = {};
      if (ASN1_STRING_length(ip) == 4) {
        std::snprintf(text, sizeof(text), "%u.%u.%u.%u", p[0], p[1], p[2], p[3]);
        return std::string("IP:") + text;
      }
      if (ASN1_STRING_length(ip) == 16) {
        std::string out = "IP:";
        for (int i = 0; i < 16; i += 2) {
          std::snprintf(text, sizeof(text), "%s%x", i == 0 ? "" : ":", (p[i] << 8) | p[i + 1]);
          out += text;
        }
        return out;
      }
      return "IP:?";
    }
    default:
      return {};  // other name forms are not identities Signet's policy can name
  }
}

}  // namespace

Result<Peer> UnixPeer(int fd, std::string address) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return MakeError(ErrnoError(errno, "getsockopt(SO_PEERCRED)"));
  }
  Peer peer;
  peer.kind = Peer::Kind::kUnix;
  if (cred.pid > 0) {
    peer.pid = cred.pid;
  }
  peer.uid = cred.uid;
  peer.gid = cred.gid;
  peer.user = UserName(cred.uid);
  for (gid_t gid : GroupIds(peer.user, cred.gid)) {
    peer.gids.push_back(gid);
    peer.groups.push_back(GroupName(gid));
  }
  peer.address = std::move(address);
  return peer;
}

Result<Peer> LocalPeerFor(std::optional<std::uint32_t> uid, std::string_view user_name) {
  // The account's primary group comes from its passwd entry, as login would set it.
  std::vector<char> buf(1024);
  passwd pw{};
  passwd* found = nullptr;
  for (int attempt = 0; attempt < 8; ++attempt) {
    const std::string name(user_name);
    const int rc = uid ? getpwuid_r(*uid, &pw, buf.data(), buf.size(), &found)
                       : getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
    if (rc == ERANGE) {
      buf.resize(buf.size() * 4);
      continue;
    }
    if (rc != 0) {
      return MakeError(ErrnoError(rc, "look up user"));
    }
    break;
  }
  if (found == nullptr) {
    return MakeError(ErrorCode::kNotFound,
                     uid ? "no account has uid " + std::to_string(*uid)
                         : "no account named \"" + std::string(user_name) + "\"");
  }
  Peer peer;
  peer.kind = Peer::Kind::kUnix;
  peer.uid = found->pw_uid;
  peer.gid = found->pw_gid;
  peer.user = found->pw_name;
  for (gid_t gid : GroupIds(peer.user, found->pw_gid)) {
    peer.gids.push_back(gid);
    peer.groups.push_back(GroupName(gid));
  }
  return peer;
}

Result<Peer> TlsPeer(X509* cert, std::string address) {
  if (cert == nullptr) {
    return MakeError(ErrorCode::kCrypto, "the TLS client presented no certificate");
  }
  Peer peer;
  peer.kind = Peer::Kind::kTls;
  peer.address = std::move(address);

  std::unique_ptr<BIO, FnDeleter<&BIO_free>> bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0,
                                 XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
    return MakeError(OpenSslError("format the client certificate's subject"));
  }
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  peer.cert_subject.assign(data, static_cast<std::size_t>(size));

  using GeneralNames = std::unique_ptr<GENERAL_NAMES, FnDeleter<&GENERAL_NAMES_free>>;
  GeneralNames sans(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans.get()); ++i) {
      if (std::string name = GeneralName(sk_GENERAL_NAME_value(sans.get(), i)); !name.empty()) {
        peer.cert_sans.push_back(std::move(name));
      }
    }
  }

  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int md_len = 0;
  if (X509_digest(cert, EVP_sha256(), md.data(), &md_len) != 1) {
    return MakeError(OpenSslError("fingerprint the client certificate"));
  }
  peer.cert_fingerprint = HexEncode(std::span<const std::uint8_t>(md.data(), md_len));
  return peer;
}

std::string NewRequestId() {
  std::array<std::uint8_t, 16> id{};
  if (RAND_bytes(id.data(), static_cast<int>(id.size())) != 1) {
    // The id only correlates logs; a weak one is better than refusing the request.
    ERR_clear_error();
    static std::atomic<std::uint64_t> counter{0};
    std::uint64_t n = counter.fetch_add(1) ^ static_cast<std::uint64_t>(getpid()) << 40;
    std::memcpy(id.data(), &n, sizeof(n));
  }
  return HexEncode(id);
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
      } else if (c < 0x20) {
        char esc[8];
        std::snprintf(esc, sizeof(esc), "\\u%04x", c);
        out += esc;
      } else {
        out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    // Copy a well-formed UTF-8 sequence as is; replace anything else with U+FFFD.
    std::size_t len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 0;
    bool ok = len != 0 && i + len <= s.size();
    for (std::size_t k = 1; ok && k < len; ++k) {
      ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    }
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  out += '"';
  return out;
}

}  // namespace internal

Result<Peer> LocalPeer(std::string_view user) { return internal::LocalPeerFor(std::nullopt, user); }
Result<Peer> LocalPeer(std::uint32_t uid) { return internal::LocalPeerFor(uid, {}); }

}  // namespace signet::net
