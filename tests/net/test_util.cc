#include "tests/net/test_util.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

namespace signet::net::testing {

TempDir::TempDir() {
  std::string templ = "/tmp/signet-net-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    return result;
  }
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) {
    result.out.append(buf.data(), n);
  }
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

HttpResult Curl(const std::string& args) {
  TempDir dir;
  std::string headers_file = (dir.path() / "headers").string();
  CommandResult run =
      RunCommand("curl -sS --max-time 20 -D " + headers_file + " -w '\\n%{http_code}' " + args);
  HttpResult result;
  result.exit_code = run.exit_code;
  std::size_t nl = run.out.rfind('\n');
  if (nl != std::string::npos) {
    result.status = std::atoi(run.out.c_str() + nl + 1);
    result.body = run.out.substr(0, nl);
  }
  if (FILE* f = std::fopen(headers_file.c_str(), "r")) {
    std::array<char, 4096> buf{};
    std::size_t n = 0;
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) {
      result.headers.append(buf.data(), n);
    }
    std::fclose(f);
  }
  return result;
}

UniqueFd ConnectUnix(const std::filesystem::path& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return UniqueFd();
  }
  return fd;
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

namespace {
bool HasFullResponse(const std::string& data) {
  std::size_t end = data.find("\r\n\r\n");
  if (end == std::string::npos) {
    return false;
  }
  std::string head = data.substr(0, end);
  for (char& c : head) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  std::size_t cl = head.find("content-length:");
  std::size_t length =
      cl == std::string::npos ? 0 : std::strtoul(head.c_str() + cl + 15, nullptr, 10);
  return data.size() >= end + 4 + length;
}
}  // namespace

std::string ReadResponse(int fd, std::chrono::milliseconds timeout, bool one_response,
                         bool* closed) {
  std::string data;
  Deadline deadline = Deadline::In(timeout);
  if (closed != nullptr) {
    *closed = false;
  }
  while (!deadline.Expired()) {
    if (one_response && HasFullResponse(data)) {
      break;
    }
    pollfd pfd{.fd = fd, .events = POLLIN, .revents = 0};
    if (poll(&pfd, 1, deadline.PollTimeoutMs()) <= 0) {
      continue;
    }
    std::array<char, 4096> buf{};
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (closed != nullptr) {
        *closed = true;
      }
      break;
    }
    data.append(buf.data(), static_cast<std::size_t>(n));
  }
  return data;
}

int StatusOf(const std::string& raw) {
  if (raw.rfind("HTTP/1.1 ", 0) != 0) {
    return 0;
  }
  return std::atoi(raw.c_str() + 9);
}

std::string BodyOf(const std::string& raw) {
  std::size_t end = raw.find("\r\n\r\n");
  return end == std::string::npos ? std::string() : raw.substr(end + 4);
}

std::string PeerJson(const Peer& peer) {
  nlohmann::json j;
  j["kind"] = peer.kind == Peer::Kind::kUnix ? "unix" : "tls";
  j["pid"] = peer.pid ? nlohmann::json(*peer.pid) : nlohmann::json(nullptr);
  j["uid"] = peer.uid;
  j["gid"] = peer.gid;
  j["user"] = peer.user;
  j["gids"] = peer.gids;
  j["groups"] = peer.groups;
  j["cert_subject"] = peer.cert_subject;
  j["cert_sans"] = peer.cert_sans;
  j["cert_fingerprint"] = peer.cert_fingerprint;
  j["address"] = peer.address;
  return j.dump();
}

bool WaitFor(const std::function<bool()>& predicate, std::chrono::milliseconds timeout) {
  const Deadline deadline = Deadline::In(timeout);
  while (!predicate()) {
    if (deadline.Expired()) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

Handler EchoHandler() {
  return [](Request request, Responder respond) {
    nlohmann::json j;
    j["method"] = request.method;
    j["target"] = request.target;
    nlohmann::json headers = nlohmann::json::object();
    for (const auto& [name, value] : request.headers) {
      headers[name] = value;
    }
    j["headers"] = headers;
    j["body"] = request.body;
    j["request_id"] = request.request_id;
    j["peer"] = nlohmann::json::parse(PeerJson(request.peer));
    respond(Response{
        .status = 200, .content_type = "application/json", .body = j.dump(), .headers = {}});
  };
}

}  // namespace signet::net::testing
