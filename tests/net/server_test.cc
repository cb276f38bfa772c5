// signet::net over Unix sockets: identity, limits, timeouts, async responses, stopping.
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "appliance/net/net.h"
#include "gtest/gtest.h"
#include "tests/net/test_util.h"

namespace signet::net {
namespace {

using namespace std::chrono_literals;
using testing::BodyOf;
using testing::ConnectUnix;
using testing::Curl;
using testing::EchoHandler;
using testing::ReadResponse;
using testing::SendAll;
using testing::ShellQuote;
using testing::StatusOf;
using testing::TempDir;
using testing::WaitFor;
using json = nlohmann::json;

constexpr std::string_view kGet = "GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n";

class UnixServerTest : public ::testing::Test {
 protected:
  std::filesystem::path SocketPath() const { return dir_.path() / "sign.sock"; }

  std::unique_ptr<Server> StartServer(Handler handler, Limits limits = {},
                                      std::function<bool(const Peer&)> accept_peer = {}) {
    ServerOptions options;
    options.limits = limits;
    options.unix_listeners.push_back(
        UnixListenerOptions{.path = SocketPath(), .accept_peer = std::move(accept_peer)});
    auto server = Server::Start(std::move(options), std::move(handler));
    EXPECT_TRUE(server.has_value()) << server.error();
    return server ? std::move(*server) : nullptr;
  }

  std::string CurlArgs(const std::string& target = "/echo") const {
    return "--unix-socket " + ShellQuote(SocketPath().string()) + " " +
           ShellQuote("http://localhost" + target);
  }

  TempDir dir_;
};

TEST_F(UnixServerTest, UnixPeerIdentityMatchesThisProcess) {
  auto server = StartServer(EchoHandler());
  ASSERT_TRUE(server);
  auto r = Curl(CurlArgs("/v1/echo?x=1") + " --data-binary hello -H 'X-Custom: Yes'");
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["method"], "POST");
  EXPECT_EQ(j["target"], "/v1/echo?x=1");
  EXPECT_EQ(j["body"], "hello");
  EXPECT_EQ(j["headers"]["x-custom"], "Yes");  // names lower-cased, values as sent

  const json& peer = j["peer"];
  EXPECT_EQ(peer["kind"], "unix");
  EXPECT_EQ(peer["uid"], getuid());
  EXPECT_EQ(peer["gid"], getgid());
  EXPECT_TRUE(peer["pid"].is_number());  // curl's pid: a child of this process
  EXPECT_EQ(peer["address"], SocketPath().string());
  if (const passwd* pw = getpwuid(getuid())) {
    EXPECT_EQ(peer["user"], pw->pw_name);
    // Groups as the system database lists them for that user (id -G resolves the same way).
    auto id = testing::RunCommand("id -G " + ShellQuote(pw->pw_name));
    ASSERT_EQ(id.exit_code, 0);
    std::set<std::uint32_t> expected;
    std::istringstream in(id.out);
    for (std::uint32_t gid = 0; in >> gid;) {
      expected.insert(gid);
    }
    auto gids = peer["gids"].get<std::vector<std::uint32_t>>();
    EXPECT_EQ(std::set<std::uint32_t>(gids.begin(), gids.end()), expected);
    EXPECT_EQ(peer["groups"].size(), gids.size());
  } else {
    EXPECT_EQ(peer["user"], "");
  }

  // The request id is in the body and in X-Request-Id.
  std::string id = j["request_id"];
  EXPECT_EQ(id.size(), 32u);
  EXPECT_NE(r.headers.find("X-Request-Id: " + id), std::string::npos) << r.headers;
}

TEST_F(UnixServerTest, SocketFileHasMode0660) {
  auto server = StartServer(EchoHandler());
  ASSERT_TRUE(server);
  struct stat st {};
  ASSERT_EQ(stat(SocketPath().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  server->Stop(Deadline::In(5s));
  EXPECT_FALSE(std::filesystem::exists(SocketPath())) << "Stop removes its socket file";
}

TEST_F(UnixServerTest, BodyOverLimitIs413NamingTheLimit) {
  auto server = StartServer(EchoHandler(), Limits{.max_body_bytes = 1024});
  ASSERT_TRUE(server);
  std::string file = (dir_.path() / "big").string();
  std::ofstream(file) << std::string(5000, 'a');
  auto r = Curl(CurlArgs() + " --data-binary @" + ShellQuote(file));
  EXPECT_EQ(r.status, 413) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["code"], "body_too_large");
  EXPECT_EQ(j["limit"], "max_body_bytes");
  EXPECT_EQ(j["message"], "request body larger than max_body_bytes (1024)");

  // Chunked bodies have no Content-Length to check up front; the limit still holds.
  UniqueFd fd = ConnectUnix(SocketPath());
  ASSERT_TRUE(fd);
  std::string chunk = "800\r\n" + std::string(0x800, 'b') + "\r\n";
  ASSERT_TRUE(SendAll(fd.get(),
                      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk));
  std::string raw = ReadResponse(fd.get(), 5s);
  EXPECT_EQ(StatusOf(raw), 413) << raw;

  // A body exactly at the limit is fine.
  std::ofstream(file, std::ios::trunc) << std::string(1024, 'a');
  EXPECT_EQ(Curl(CurlArgs() + " --data-binary @" + ShellQuote(file)).status, 200);
}

TEST_F(UnixServerTest, HeadersOverLimitAre431) {
  auto server = StartServer(EchoHandler(), Limits{.max_header_bytes = 1024});
  ASSERT_TRUE(server);
  auto r = Curl(CurlArgs() + " -H " + ShellQuote("X-Big: " + std::string(2000, 'h')));
  EXPECT_EQ(r.status, 431) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["code"], "headers_too_large");
  EXPECT_EQ(j["limit"], "max_header_bytes");
  EXPECT_EQ(Curl(CurlArgs()).status, 200);
}

TEST_F(UnixServerTest, SlowClientGets408) {
  auto server = StartServer(EchoHandler(), Limits{.request_timeout = 300ms});
  ASSERT_TRUE(server);
  UniqueFd fd = ConnectUnix(SocketPath());
  ASSERT_TRUE(fd);
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(SendAll(fd.get(), "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"));
  std::string raw = ReadResponse(fd.get(), 5s);
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(StatusOf(raw), 408) << raw;
  EXPECT_GE(elapsed, 250ms);
  json j = json::parse(BodyOf(raw));
  EXPECT_EQ(j["code"], "request_timeout");
  EXPECT_EQ(j["limit"], "request_timeout");
}

TEST_F(UnixServerTest, IdleConnectionClosesSilently) {
  auto server = StartServer(EchoHandler(), Limits{.idle_timeout = 200ms});
  ASSERT_TRUE(server);
  UniqueFd fd = ConnectUnix(SocketPath());
  ASSERT_TRUE(fd);
  bool closed = false;
  std::string raw = ReadResponse(fd.get(), 5s, /*one_response=*/false, &closed);
  EXPECT_TRUE(closed);
  EXPECT_EQ(raw, "");
}

TEST_F(UnixServerTest, OverMaxConnectionsIs503) {
  auto server = StartServer(EchoHandler(), Limits{.max_connections = 2});
  ASSERT_TRUE(server);
  UniqueFd a = ConnectUnix(SocketPath());
  UniqueFd b = ConnectUnix(SocketPath());
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(WaitFor([&] { return server->open_connections() == 2; }, 5s));
  UniqueFd c = ConnectUnix(SocketPath());
  ASSERT_TRUE(c);
  std::string raw = ReadResponse(c.get(), 5s);
  EXPECT_EQ(StatusOf(raw), 503) << raw;
  json j = json::parse(BodyOf(raw));
  EXPECT_EQ(j["code"], "too_many_connections");
  EXPECT_EQ(j["limit"], "max_connections");

  // The first two are still served; once one leaves, a new client gets in.
  ASSERT_TRUE(SendAll(a.get(), kGet));
  EXPECT_EQ(StatusOf(ReadResponse(a.get(), 5s)), 200);
  b.Reset();
  c.Reset();
  ASSERT_TRUE(WaitFor([&] { return server->open_connections() == 1; }, 5s));
  EXPECT_EQ(Curl(CurlArgs()).status, 200);
}

TEST_F(UnixServerTest, MalformedRequestIs400) {
  auto server = StartServer(EchoHandler());
  ASSERT_TRUE(server);
  UniqueFd fd = ConnectUnix(SocketPath());
  ASSERT_TRUE(fd);
  ASSERT_TRUE(SendAll(fd.get(), "THIS IS NOT HTTP\r\n\r\n"));
  std::string raw = ReadResponse(fd.get(), 5s);
  EXPECT_EQ(StatusOf(raw), 400) << raw;
  EXPECT_EQ(json::parse(BodyOf(raw))["code"], "bad_request");
}

TEST_F(UnixServerTest, Http10Is505) {
  auto server = StartServer(EchoHandler());
  ASSERT_TRUE(server);
  UniqueFd fd = ConnectUnix(SocketPath());
  ASSERT_TRUE(SendAll(fd.get(), "GET / HTTP/1.0\r\n\r\n"));
  std::string raw = ReadResponse(fd.get(), 5s);
  EXPECT_EQ(StatusOf(raw), 505) << raw;
}

TEST_F(UnixServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  std::atomic<int> calls{0};
  auto server = StartServer([&](Request request, Responder respond) {
    ++calls;
    respond(Response{.body = "{\"target\":\"" + request.target + "\"}"});
  });
  ASSERT_TRUE(server);
  UniqueFd fd = ConnectUnix(SocketPath());
  ASSERT_TRUE(fd);
  ASSERT_TRUE(SendAll(fd.get(), "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string first = ReadResponse(fd.get(), 5s);
  EXPECT_EQ(StatusOf(first), 200);
  EXPECT_EQ(json::parse(BodyOf(first))["target"], "/one");
  ASSERT_TRUE(SendAll(fd.get(), "GET /two HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string second = ReadResponse(fd.get(), 5s);
  EXPECT_EQ(StatusOf(second), 200);
  EXPECT_EQ(json::parse(BodyOf(second))["target"], "/two");
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(server->open_connections(), 1u);
}

TEST_F(UnixServerTest, ExpectContinueIsHonoured) {
  auto server = StartServer(EchoHandler());
  ASSERT_TRUE(server);
  auto start = std::chrono::steady_clock::now();
  auto r = Curl(CurlArgs() + " -H 'Expect: 100-continue' --data-binary hello");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["body"], "hello");
  // curl waits 1 s for "100 Continue" before sending anyway; we answer at once.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 900ms);
}

TEST_F(UnixServerTest, RespondLaterFromAnotherThread) {
  std::vector<std::thread> workers;
  std::mutex mu;
  auto server = StartServer([&](Request request, Responder respond) {
    std::lock_guard lock(mu);
    workers.emplace_back([request = std::move(request), respond = std::move(respond)] {
      std::this_thread::sleep_for(200ms);
      respond(Response{.status = 201, .body = "{\"late\":\"" + request.body + "\"}"});
      respond(Response{.status = 500});  // only the first call counts
    });
  });
  ASSERT_TRUE(server);
  auto r = Curl(CurlArgs() + " --data-binary x");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(json::parse(r.body)["late"], "x");
  std::lock_guard lock(mu);
  for (auto& t : workers) {
    t.join();
  }
}

TEST_F(UnixServerTest, ClientGoneBeforeRespondIsSafeAndVisible) {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Responder> pending;
  std::shared_ptr<const std::atomic<bool>> cancelled;
  auto server = StartServer([&](Request request, Responder respond) {
    std::lock_guard lock(mu);
    if (request.target == "/hold") {
      pending = std::move(respond);
      cancelled = request.cancelled;
      cv.notify_all();
    } else {
      respond(Response{.body = "{}"});
    }
  });
  ASSERT_TRUE(server);
  {
    UniqueFd fd = ConnectUnix(SocketPath());
    ASSERT_TRUE(SendAll(fd.get(), "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return pending.has_value(); }));
    EXPECT_FALSE(cancelled->load());
  }  // the client disconnects here
  EXPECT_TRUE(WaitFor([&] { return cancelled->load(); }, 5s)) << "cancelled never became true";
  EXPECT_TRUE(WaitFor([&] { return server->open_connections() == 0; }, 5s));
  (*pending)(Response{.body = "{\"too\":\"late\"}"});  // dropped, safely
  pending.reset();
  EXPECT_EQ(Curl(CurlArgs("/other")).status, 200);
}

TEST_F(UnixServerTest, RespondAfterServerDestroyedIsSafe) {
  std::optional<Responder> pending;
  std::promise<void> got;
  auto server = StartServer([&](Request, Responder respond) {
    pending = std::move(respond);
    got.set_value();
  });
  ASSERT_TRUE(server);
  UniqueFd fd = ConnectUnix(SocketPath());
  ASSERT_TRUE(SendAll(fd.get(), kGet));
  ASSERT_EQ(got.get_future().wait_for(5s), std::future_status::ready);
  server->Stop(Deadline::In(100ms));  // the request is still unanswered at the deadline
  server.reset();
  (*pending)(Response{.body = "{}"});
  pending.reset();
}

TEST_F(UnixServerTest, DroppedResponderAnswers500) {
  auto server = StartServer([](Request, Responder) {});
  ASSERT_TRUE(server);
  auto r = Curl(CurlArgs());
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(json::parse(r.body)["code"], "internal");
}

TEST_F(UnixServerTest, ThrowingHandlerAnswers500) {
  auto server = StartServer([](Request, Responder) { throw std::runtime_error("boom"); });
  ASSERT_TRUE(server);
  auto r = Curl(CurlArgs());
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(json::parse(r.body)["code"], "internal");
  EXPECT_EQ(r.body.find("boom"), std::string::npos) << "internals stay in the logs";
}

TEST_F(UnixServerTest, RefusedPeerIsDisconnectedBeforeAnyByteIsRead) {
  std::mutex mu;
  std::vector<Peer> refused;
  std::atomic<int> handled{0};
  auto server = StartServer(
      [&](Request, Responder respond) {
        ++handled;
        respond(Response{.body = "{}"});
      },
      Limits{},
      [&](const Peer& peer) {
        std::lock_guard lock(mu);
        refused.push_back(peer);
        return false;
      });
  ASSERT_TRUE(server);
  UniqueFd fd = ConnectUnix(SocketPath());
  ASSERT_TRUE(fd);
  (void)SendAll(fd.get(), kGet);
  bool closed = false;
  std::string raw = ReadResponse(fd.get(), 5s, /*one_response=*/false, &closed);
  EXPECT_TRUE(closed);
  EXPECT_EQ(raw, "");
  EXPECT_EQ(handled.load(), 0);
  std::lock_guard lock(mu);
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].uid, getuid());
  EXPECT_EQ(refused[0].gid, getgid());
  ASSERT_TRUE(refused[0].pid.has_value());
  EXPECT_EQ(*refused[0].pid, getpid());
}

TEST_F(UnixServerTest, StaleSocketIsReplacedLiveOneRefused) {
  {  // a socket file left behind by a dead process
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, SocketPath().c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
  }
  ASSERT_TRUE(std::filesystem::is_socket(SocketPath()));
  auto server = StartServer(EchoHandler());
  ASSERT_TRUE(server);
  EXPECT_EQ(Curl(CurlArgs()).status, 200);

  ServerOptions again;
  again.unix_listeners.push_back(UnixListenerOptions{.path = SocketPath()});
  auto second = Server::Start(std::move(again), EchoHandler());
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(
      second.error().message().find("another signetd is listening on " + SocketPath().string()),
      std::string::npos)
      << second.error();
  EXPECT_EQ(Curl(CurlArgs()).status, 200) << "the live server keeps its socket";
}

TEST_F(UnixServerTest, PathThatIsNotASocketIsRefused) {
  std::ofstream(SocketPath()) << "precious";
  ServerOptions options;
  options.unix_listeners.push_back(UnixListenerOptions{.path = SocketPath()});
  auto server = Server::Start(std::move(options), EchoHandler());
  ASSERT_FALSE(server.has_value());
  EXPECT_EQ(server.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(server.error().message().find("not a socket"), std::string::npos) << server.error();
  std::ifstream in(SocketPath());
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
}

TEST_F(UnixServerTest, PathTooLongNamesTheLimit) {
  ServerOptions options;
  options.unix_listeners.push_back(
      UnixListenerOptions{.path = dir_.path() / (std::string(120, 'a') + ".sock")});
  auto server = Server::Start(std::move(options), EchoHandler());
  ASSERT_FALSE(server.has_value());
  EXPECT_EQ(server.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(server.error().message().find("107 bytes (sun_path)"), std::string::npos)
      << server.error();
}

TEST_F(UnixServerTest, MissingDirectoryIsNotFound) {
  ServerOptions options;
  options.unix_listeners.push_back(UnixListenerOptions{.path = dir_.path() / "no/sign.sock"});
  auto server = Server::Start(std::move(options), EchoHandler());
  ASSERT_FALSE(server.has_value());
  EXPECT_EQ(server.error().code(), ErrorCode::kNotFound) << server.error();
}

TEST_F(UnixServerTest, StopLetsInFlightRequestFinish) {
  std::promise<void> got;
  std::thread worker;
  auto server = StartServer([&](Request, Responder respond) {
    worker = std::thread([respond = std::move(respond)] {
      std::this_thread::sleep_for(300ms);
      respond(Response{.body = "{\"done\":true}"});
    });
    got.set_value();
  });
  ASSERT_TRUE(server);
  UniqueFd busy = ConnectUnix(SocketPath());
  UniqueFd idle = ConnectUnix(SocketPath());
  ASSERT_TRUE(busy && idle);
  ASSERT_TRUE(SendAll(busy.get(), kGet));
  ASSERT_EQ(got.get_future().wait_for(5s), std::future_status::ready);

  auto start = std::chrono::steady_clock::now();
  server->Stop(Deadline::In(5s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
  std::string raw = ReadResponse(busy.get(), 5s);
  EXPECT_EQ(StatusOf(raw), 200) << raw;
  EXPECT_NE(raw.find("Connection: close"), std::string::npos) << raw;
  bool closed = false;
  EXPECT_EQ(ReadResponse(idle.get(), 5s, false, &closed), "");
  EXPECT_TRUE(closed);
  EXPECT_FALSE(ConnectUnix(SocketPath())) << "no longer accepting";
  worker.join();
}

TEST_F(UnixServerTest, GroupAndModeOptionsApply) {
  ServerOptions options;
  options.unix_listeners.push_back(
      UnixListenerOptions{.path = SocketPath(), .mode = 0600, .group = getgid()});
  auto server = Server::Start(std::move(options), EchoHandler());
  ASSERT_TRUE(server.has_value()) << server.error();
  struct stat st {};
  ASSERT_EQ(stat(SocketPath().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_gid, getgid());
}

}  // namespace
}  // namespace signet::net
