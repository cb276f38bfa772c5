// Helpers for net_test: temp dirs, running curl/openssl, raw Unix-socket clients, an echo handler.
#ifndef SIGNET_TESTS_NET_TEST_UTIL_H_
#define SIGNET_TESTS_NET_TEST_UTIL_H_

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "appliance/base/base.h"
#include "appliance/net/net.h"

namespace signet::net::testing {

// TempDir is a fresh directory under /tmp (short, for sun_path), removed with its contents.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
};
// Runs `command` with /bin/sh, capturing stdout (stderr goes to the test log).
CommandResult RunCommand(const std::string& command);
// Quotes `s` for /bin/sh.
std::string ShellQuote(const std::string& s);

struct HttpResult {
  int exit_code = -1;  // curl's exit status
  int status = 0;      // HTTP status (0 when no response)
  std::string body;
  std::string headers;  // raw response header block(s)
};
// Runs curl with `args` (already quoted), e.g. "--unix-socket /tmp/x/s.sock http://localhost/".
HttpResult Curl(const std::string& args);

// Raw client side of a Unix socket.
UniqueFd ConnectUnix(const std::filesystem::path& path);
bool SendAll(int fd, std::string_view data);
// Reads until the peer closes, `timeout` passes, or (when `one_response`) a full response with
// Content-Length has arrived. `closed` reports whether EOF/reset was seen.
std::string ReadResponse(int fd, std::chrono::milliseconds timeout, bool one_response = true,
                         bool* closed = nullptr);
// The status code of a raw "HTTP/1.1 NNN ..." response, or 0.
int StatusOf(const std::string& raw_response);
// The body of a raw response (after the blank line).
std::string BodyOf(const std::string& raw_response);

// Polls `predicate` every 10 ms until it holds (true) or `timeout` passes (false): tests wait for
// a condition rather than sleep a fixed time.
bool WaitFor(const std::function<bool()>& predicate, std::chrono::milliseconds timeout);

// EchoHandler answers 200 with
// {"method","target","headers":{...},"body","request_id","peer":{...}}.
Handler EchoHandler();
std::string PeerJson(const Peer& peer);

}  // namespace signet::net::testing

#endif  // SIGNET_TESTS_NET_TEST_UTIL_H_
