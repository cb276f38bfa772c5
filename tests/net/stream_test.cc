// signet::net streamed responses (Response::stream): chunked bodies larger than memory should hold,
// the producer held back by a client that does not read, cut bodies the client can see as cut, and
// producers that never hang when the connection or the server goes away.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "appliance/net/net.h"
#include "gtest/gtest.h"
#include "tests/net/test_util.h"

namespace signet::net {
namespace {

using namespace std::chrono_literals;
using testing::ConnectUnix;
using testing::Curl;
using testing::ReadResponse;
using testing::RunCommand;
using testing::SendAll;
using testing::ShellQuote;
using testing::StatusOf;
using testing::TempDir;
using testing::WaitFor;
using json = nlohmann::json;

constexpr std::size_t kPiece = 64 * 1024;

// Piece `i` of the test body: kPiece bytes of one letter, so order and completeness both show.
std::string Piece(std::size_t i) { return std::string(kPiece, static_cast<char>('a' + i % 26)); }

// Answers every request from a worker thread of its own (a streamed response blocks the thread
// that gives it) with `pieces` pieces, then `end` (an error cuts the body).
class StreamServer {
 public:
  StreamServer(const std::filesystem::path& socket, std::size_t pieces, Status end = OkStatus(),
               Limits limits = {})
      : pieces_(pieces), end_(std::move(end)) {
    ServerOptions options;
    options.limits = limits;
    options.unix_listeners.push_back(UnixListenerOptions{.path = socket});
    auto server = Server::Start(std::move(options), [this](Request request, Responder respond) {
      std::lock_guard lock(mu_);
      workers_.emplace_back([this, request = std::move(request), respond = std::move(respond)] {
        if (request.target == "/small") {
          respond(Response{.body = "{\"small\":true}"});
          return;
        }
        Response response;
        response.content_type = "text/plain";
        response.stream = [this](const BodyWriter& write) -> Status {
          for (std::size_t i = 0; i < pieces_; ++i) {
            if (!write(Piece(i))) {
              refused_.store(true);
              return MakeError(ErrorCode::kUnavailable, "the client went away");
            }
            written_.fetch_add(kPiece);
          }
          return end_;
        };
        respond(std::move(response));
        returned_.store(true);
      });
    });
    EXPECT_TRUE(server.has_value()) << server.error();
    if (server) {
      server_ = std::move(*server);
    }
  }
  ~StreamServer() {
    if (server_) {
      server_->Stop(Deadline::In(2s));
    }
    std::lock_guard lock(mu_);
    for (auto& worker : workers_) {
      worker.join();
    }
  }
  StreamServer(const StreamServer&) = delete;
  StreamServer& operator=(const StreamServer&) = delete;

  Server* server() { return server_.get(); }
  std::size_t written() const { return written_.load(); }
  bool refused() const { return refused_.load(); }    // a write returned false
  bool returned() const { return returned_.load(); }  // the Responder call came back

 private:
  std::size_t pieces_;
  Status end_;
  std::unique_ptr<Server> server_;
  std::mutex mu_;
  std::vector<std::thread> workers_;
  std::atomic<std::size_t> written_{0};
  std::atomic<bool> refused_{false};
  std::atomic<bool> returned_{false};
};

class StreamTest : public ::testing::Test {
 protected:
  std::filesystem::path SocketPath() const { return dir_.path() / "s.sock"; }
  std::string Url(const std::string& target = "/stream") const {
    return "--unix-socket " + ShellQuote(SocketPath().string()) + " " +
           ShellQuote("http://localhost" + target);
  }
  TempDir dir_;
};

TEST_F(StreamTest, LargeBodyArrivesWholeAndInOrderChunked) {
  constexpr std::size_t kPieces = 1024;  // 64 MiB: 64 times the window
  StreamServer server(SocketPath(), kPieces);
  ASSERT_TRUE(server.server());
  const std::filesystem::path out = dir_.path() / "body";
  const std::filesystem::path headers = dir_.path() / "headers";
  auto run = RunCommand("curl -sS --max-time 60 -D " + ShellQuote(headers.string()) + " -o " +
                        ShellQuote(out.string()) + " " + Url());
  ASSERT_EQ(run.exit_code, 0);
  ASSERT_EQ(std::filesystem::file_size(out), kPieces * kPiece);
  std::ifstream in(out, std::ios::binary);
  std::string piece(kPiece, '\0');
  for (std::size_t i = 0; i < kPieces; ++i) {
    ASSERT_TRUE(in.read(piece.data(), static_cast<std::streamsize>(kPiece)));
    ASSERT_EQ(piece, Piece(i)) << "piece " << i;
  }
  std::ifstream head_file(headers);
  std::string head((std::istreambuf_iterator<char>(head_file)), std::istreambuf_iterator<char>());
  EXPECT_NE(head.find("Transfer-Encoding: chunked"), std::string::npos) << head;
  EXPECT_EQ(head.find("Content-Length"), std::string::npos) << head;
  EXPECT_NE(head.find("X-Request-Id: "), std::string::npos) << head;
  EXPECT_TRUE(WaitFor([&] { return server.returned(); }, 5s));
}

TEST_F(StreamTest, AClientThatDoesNotReadHoldsTheProducerBack) {
  constexpr std::size_t kPieces = 4096;  // 256 MiB if nothing held it back
  StreamServer server(SocketPath(), kPieces);
  ASSERT_TRUE(server.server());
  UniqueFd fd = ConnectUnix(SocketPath());
  ASSERT_TRUE(fd);
  ASSERT_TRUE(SendAll(fd.get(), "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
  // The producer writes until the window and the socket buffers are full, then waits.
  ASSERT_TRUE(WaitFor([&] { return server.written() > 0; }, 5s));
  std::size_t before = 0;
  do {
    before = server.written();
    std::this_thread::sleep_for(300ms);
  } while (server.written() != before);
  EXPECT_LT(server.written(), 16u * 1024 * 1024)
      << "the producer ran ahead of a client that reads nothing";
  EXPECT_FALSE(server.returned());
  // The client goes away: the producer's next write says so, and the Responder call returns.
  fd.Reset();
  EXPECT_TRUE(WaitFor([&] { return server.returned(); }, 10s));
  EXPECT_TRUE(server.refused());
  EXPECT_TRUE(WaitFor([&] { return server.server()->open_connections() == 0; }, 5s));
}

TEST_F(StreamTest, AStalledClientIsCutAfterRequestTimeoutAndTheProducerStops) {
  Limits limits;
  limits.request_timeout = 500ms;
  StreamServer server(SocketPath(), 4096, OkStatus(), limits);
  ASSERT_TRUE(server.server());
  UniqueFd fd = ConnectUnix(SocketPath());
  ASSERT_TRUE(fd);
  ASSERT_TRUE(SendAll(fd.get(), "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(WaitFor([&] { return server.returned(); }, 10s))
      << "a stalled client kept the producer waiting past request_timeout";
  EXPECT_TRUE(server.refused());
}

TEST_F(StreamTest, AProducerErrorCutsTheBodySoTheClientSeesItIncomplete) {
  StreamServer server(SocketPath(), 8, MakeError(ErrorCode::kIo, "disk gone"));
  ASSERT_TRUE(server.server());
  auto r = Curl(Url());
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.exit_code, 0) << "curl took a cut body for a whole one";
  EXPECT_LE(r.body.size(), 8 * kPiece);
}

TEST_F(StreamTest, AProducerThatFailsBeforeItsFirstByteAnswersItsOwnRefusal) {
  std::vector<std::thread> workers;
  std::mutex mu;
  ServerOptions options;
  options.unix_listeners.push_back(UnixListenerOptions{.path = SocketPath()});
  auto server = Server::Start(std::move(options), [&](Request request, Responder respond) {
    std::lock_guard lock(mu);
    workers.emplace_back([request = std::move(request), respond = std::move(respond)] {
      Response response;
      const bool refuse = request.target == "/refuse";
      response.stream = [refuse](const BodyWriter&) -> Status {
        if (refuse) {
          return MakeError(ErrorCode::kInvalidArgument, "from_seq is past the end");
        }
        return OkStatus();  // an empty body
      };
      response.refuse_stream = [](const Error& error) {
        return JsonError(400, "invalid_argument", error.message());
      };
      respond(std::move(response));
    });
  });
  ASSERT_TRUE(server.has_value()) << server.error();
  auto refused = Curl(Url("/refuse"));
  EXPECT_EQ(refused.exit_code, 0);
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(json::parse(refused.body)["message"], "from_seq is past the end");
  EXPECT_NE(refused.headers.find("Content-Length"), std::string::npos) << refused.headers;

  auto empty = Curl(Url("/empty"));
  EXPECT_EQ(empty.exit_code, 0);
  EXPECT_EQ(empty.status, 200);
  EXPECT_EQ(empty.body, "");
  EXPECT_NE(empty.headers.find("Transfer-Encoding: chunked"), std::string::npos) << empty.headers;
  (*server)->Stop(Deadline::In(2s));
  std::lock_guard lock(mu);
  for (auto& worker : workers) {
    worker.join();
  }
}

TEST_F(StreamTest, TheConnectionServesTheNextRequestAfterAStream) {
  StreamServer server(SocketPath(), 40);
  ASSERT_TRUE(server.server());
  const std::filesystem::path out = dir_.path() / "body";
  // One curl, two URLs: curl reuses the connection when the first response ended cleanly.
  auto run = RunCommand("curl -sS -v --max-time 30 -o " + ShellQuote(out.string()) + " " + Url() +
                        " -o " + ShellQuote((dir_.path() / "small").string()) + " " +
                        ShellQuote("http://localhost/small") + " 2>" +
                        ShellQuote((dir_.path() / "log").string()));
  ASSERT_EQ(run.exit_code, 0);
  EXPECT_EQ(std::filesystem::file_size(out), 40 * kPiece);
  std::ifstream small(dir_.path() / "small");
  EXPECT_EQ(json::parse(small)["small"], true);
  std::ifstream log_file(dir_.path() / "log");
  std::string log((std::istreambuf_iterator<char>(log_file)), std::istreambuf_iterator<char>());
  EXPECT_NE(log.find("Re-using existing connection"), std::string::npos) << log;
}

TEST_F(StreamTest, AStreamGivenOnTheIoThreadIs500) {
  std::vector<Error> reported;
  std::mutex mu;
  ServerOptions options;
  options.unix_listeners.push_back(UnixListenerOptions{.path = SocketPath()});
  options.on_error = [&](const Error& error) {
    std::lock_guard lock(mu);
    reported.push_back(error);
  };
  auto server = Server::Start(std::move(options), [](Request, Responder respond) {
    Response response;
    response.stream = [](const BodyWriter& write) -> Status {
      write("never");
      return OkStatus();
    };
    respond(std::move(response));
  });
  ASSERT_TRUE(server.has_value()) << server.error();
  auto r = Curl(Url());
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(json::parse(r.body)["code"], "internal");
  std::lock_guard lock(mu);
  ASSERT_EQ(reported.size(), 1u);
  EXPECT_NE(reported[0].message().find("I/O thread"), std::string::npos) << reported[0];
}

TEST_F(StreamTest, StopCutsAStreamTheClientDoesNotReadAndFreesTheProducer) {
  StreamServer server(SocketPath(), 4096);
  ASSERT_TRUE(server.server());
  UniqueFd fd = ConnectUnix(SocketPath());
  ASSERT_TRUE(fd);
  ASSERT_TRUE(SendAll(fd.get(), "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(WaitFor([&] { return server.written() > 0; }, 5s));
  const auto start = std::chrono::steady_clock::now();
  server.server()->Stop(Deadline::In(300ms));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
  EXPECT_TRUE(WaitFor([&] { return server.returned(); }, 5s));
  EXPECT_TRUE(server.refused());
  bool closed = false;
  std::string raw = ReadResponse(fd.get(), 5s, /*one_response=*/false, &closed);
  EXPECT_EQ(StatusOf(raw), 200);
  EXPECT_TRUE(closed);
  EXPECT_EQ(raw.find("\r\n0\r\n\r\n"), std::string::npos) << "a cut body must not end as whole";
}

}  // namespace
}  // namespace signet::net
