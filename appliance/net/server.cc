// Server: the Boost.Beast/Asio part of signet::net. All of Beast lives in this one translation unit
// because it compiles slowly.
//
// Each connection is a Session running on its own strand, so a Session's members are touched only
// by handlers on that strand; the only cross-thread entry points are Deliver (a Responder posting
// the response), BeginStop and ForceClose (posted by Server::Stop).
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>  // before Boost: Boost 1.74's awaitable.hpp uses std::exchange unincluded

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <condition_variable>
#include <future>
#include <list>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <type_traits>

#include "appliance/net/internal/internal.h"
#include "appliance/net/internal/response.h"
#include "appliance/net/net.h"

namespace signet::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
using UnixSocket = asio::local::stream_protocol::socket;
using TcpSocket = asio::ip::tcp::socket;
using TlsStream = asio::ssl::stream<TcpSocket>;

constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr auto kWatchInterval = std::chrono::milliseconds(100);
constexpr auto kAcceptRetry = std::chrono::milliseconds(100);
constexpr std::size_t kTlsFirstRead = 16 * 1024;  // one TLS record
constexpr std::string_view kCrlf = "\r\n";
constexpr std::string_view kLastChunk = "0\r\n\r\n";  // no trailer fields

using internal::BodyChannel;
using internal::ChannelHandle;
using internal::Core;
using internal::ResponseSlot;
using internal::SessionBase;

std::string Ms(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

template <class Stream>
class Session final : public SessionBase {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

  // `stream_args` construct the Stream (a socket; for TLS, a socket and the ssl::context).
  template <class... StreamArgs>
  Session(std::shared_ptr<Core> core, Peer peer, bool over_limit, StreamArgs&&... stream_args)
      : core_(std::move(core)),
        stream_(std::forward<StreamArgs>(stream_args)...),
        timer_(stream_.get_executor()),
        watch_timer_(stream_.get_executor()),
        peer_(std::move(peer)),
        over_limit_(over_limit) {
    core_->open.fetch_add(1);
  }

  ~Session() override {
    if (!over_limit_) {
      core_->counted.fetch_sub(1);
    }
    core_->open.fetch_sub(1);
    std::lock_guard lock(core_->registry_mu);
    if (registered_) {
      core_->sessions.erase(registry_it_);
    }
    core_->registry_cv.notify_all();
  }

  // Registers the session with the server (so Stop can reach it) and starts it on its strand.
  void Start() {
    {
      std::lock_guard lock(core_->registry_mu);
      registry_it_ = core_->sessions.insert(core_->sessions.end(), weak_from_this());
      registered_ = true;
    }
    asio::dispatch(stream_.get_executor(), [self = Self()] { self->Run(); });
  }

  void Deliver(Response response, ChannelHandle channel) override {
    asio::post(stream_.get_executor(),
               [self = Self(), r = std::move(response), c = std::move(channel)]() mutable {
                 self->OnResponse(std::move(r), std::move(c));
               });
  }
  void Pump() override {
    asio::post(stream_.get_executor(), [self = Self()] { self->SendQueued(); });
  }
  void BeginStop() override {
    asio::post(stream_.get_executor(), [self = Self()] { self->OnBeginStop(); });
  }
  void ForceClose() override {
    asio::post(stream_.get_executor(), [self = Self()] { self->Close(); });
  }

 private:
  enum class State : std::uint8_t {
    kHandshake,
    kIdle,      // between requests, no byte of the next one seen
    kReading,   // a request is arriving
    kAwaiting,  // the Handler has the request
    kWriting,
    kClosing,  // response sent, draining before close
    kClosed,
  };
  enum class TimerAction : std::uint8_t { kClose, kAbortRead };

  std::shared_ptr<Session> Self() { return std::static_pointer_cast<Session>(shared_from_this()); }
  auto& Socket() { return stream_.lowest_layer(); }
  // The byte stream under TLS (or the socket itself): for draining after TLS is done with.
  auto& RawStream() {
    if constexpr (kTls) {
      return stream_.next_layer();
    } else {
      return stream_;
    }
  }

  void ArmTimer(std::chrono::milliseconds after, TimerAction action) {
    std::uint64_t generation = ++timer_generation_;
    timer_.expires_after(after);
    timer_.async_wait([self = Self(), generation, action](error_code ec) {
      if (ec || generation != self->timer_generation_) {
        return;
      }
      if (action == TimerAction::kAbortRead) {
        self->read_timed_out_ = true;
        error_code ignored;
        self->Socket().cancel(ignored);
      } else {
        self->Close();
      }
    });
  }
  void CancelTimer() {
    ++timer_generation_;
    timer_.cancel();
  }

  void Run() {
    if constexpr (kTls) {
      state_ = State::kHandshake;
      ArmTimer(core_->limits.idle_timeout, TimerAction::kClose);
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = Self()](error_code ec) { self->OnHandshake(ec); });
    } else {
      AfterHandshake();
    }
  }

  void OnHandshake(error_code ec) {
    if (state_ == State::kClosed) {
      return;
    }
    if (ec) {
      Close();  // bad or missing client certificate, wrong TLS version, ...: nothing to answer
      return;
    }
    if constexpr (kTls) {
      Result<Peer> tls_peer =
          internal::TlsPeer(SSL_get0_peer_certificate(stream_.native_handle()), peer_.address);
      if (!tls_peer) {
        core_->Report(tls_peer.error().WithContext("TLS peer " + peer_.address));
        Close();
        return;
      }
      peer_ = *std::move(tls_peer);
    }
    AfterHandshake();
  }

  void AfterHandshake() {
    if (over_limit_) {
      SendError(JsonError(503, "too_many_connections",
                          "the server already has max_connections (" +
                              std::to_string(core_->limits.max_connections) +
                              ") open connections; retry later",
                          "max_connections"));
      return;
    }
    WaitForRequest();
  }

  // Waits for the first byte of the next request without a deadline of request_timeout, so an
  // idle keep-alive connection is told apart from a slow request.
  void WaitForRequest() {
    if (core_->stopping.load() || stop_after_response_) {
      Close();
      return;
    }
    if (buffer_.size() > 0) {
      ReadRequest();
      return;
    }
    state_ = State::kIdle;
    ArmTimer(core_->limits.idle_timeout, TimerAction::kClose);
    if constexpr (kTls) {
      // The TLS engine may already hold the request's records (they often arrive with the
      // client's Finished), so the socket need not become readable again: read through TLS.
      stream_.async_read_some(buffer_.prepare(kTlsFirstRead),
                              [self = Self()](error_code ec, std::size_t n) {
                                if (self->state_ != State::kIdle) {
                                  return;
                                }
                                if (ec || self->core_->stopping.load()) {
                                  self->Close();
                                  return;
                                }
                                self->buffer_.commit(n);
                                self->ReadRequest();
                              });
      return;
    }
    Socket().async_wait(asio::socket_base::wait_read, [self = Self()](error_code ec) {
      if (self->state_ != State::kIdle) {
        return;
      }
      if (ec || self->core_->stopping.load()) {
        self->Close();
        return;
      }
      self->ReadRequest();
    });
  }

  void ReadRequest() {
    state_ = State::kReading;
    read_timed_out_ = false;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(core_->limits.max_header_bytes, UINT32_MAX)));
    parser_->body_limit(core_->limits.max_body_bytes);
    ArmTimer(core_->limits.request_timeout, TimerAction::kAbortRead);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = Self()](error_code ec, std::size_t) { self->OnHeader(ec); });
  }

  void OnHeader(error_code ec) {
    if (state_ != State::kReading) {
      return;
    }
    if (ec) {
      OnReadError(ec);
      return;
    }
    if (parser_->get().version() != 11) {
      SendError(JsonError(505, "http_version_not_supported", "only HTTP/1.1 is supported"));
      return;
    }
    auto expect = parser_->get()[http::field::expect];
    if (beast::iequals(expect, "100-continue") && !parser_->is_done()) {
      continue_.emplace(http::status::continue_, 11);
      http::async_write(stream_, *continue_, [self = Self()](error_code write_ec, std::size_t) {
        if (self->state_ != State::kReading) {
          return;
        }
        if (write_ec) {
          self->Close();
          return;
        }
        self->ReadBody();
      });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(stream_, buffer_, *parser_,
                     [self = Self()](error_code ec, std::size_t) { self->OnBody(ec); });
  }

  void OnBody(error_code ec) {
    if (state_ != State::kReading) {
      return;
    }
    if (ec) {
      OnReadError(ec);
      return;
    }
    CancelTimer();
    Dispatch();
  }

  void OnReadError(error_code ec) {
    const Limits& limits = core_->limits;
    if (read_timed_out_) {
      SendError(JsonError(408, "request_timeout",
                          "the request was not received within request_timeout (" +
                              Ms(limits.request_timeout) + ")",
                          "request_timeout"));
    } else if (ec == http::error::header_limit) {
      SendError(JsonError(431, "headers_too_large",
                          "request header larger than max_header_bytes (" +
                              std::to_string(limits.max_header_bytes) + ")",
                          "max_header_bytes"));
    } else if (ec == http::error::body_limit) {
      SendError(JsonError(
          413, "body_too_large",
          "request body larger than max_body_bytes (" + std::to_string(limits.max_body_bytes) + ")",
          "max_body_bytes"));
    } else if (ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
               ec != http::error::end_of_stream && ec != http::error::partial_message) {
      SendError(JsonError(400, "bad_request", "malformed HTTP request: " + ec.message()));
    } else {
      Close();  // the client went away (end of stream, reset, TLS truncation) or we are stopping
    }
  }

  void Dispatch() {
    state_ = State::kAwaiting;
    http::request<http::string_body> message = parser_->release();
    parser_.reset();
    keep_alive_ = message.keep_alive();
    request_id_ = internal::NewRequestId();
    cancelled_ = std::make_shared<std::atomic<bool>>(false);

    Request request;
    request.method = std::string(message.method_string());
    request.target = std::string(message.target());
    for (const auto& field : message) {
      std::string name(field.name_string());
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      request.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    request.body = std::move(message.body());
    request.peer = peer_;
    request.request_id = request_id_;
    request.cancelled = cancelled_;

    auto slot = std::make_shared<ResponseSlot>(weak_from_this(), core_);
    Responder respond = [slot](Response response) { slot->Send(std::move(response)); };
    Watch();
    try {
      core_->handler(std::move(request), respond);
    } catch (const std::exception& e) {
      core_->Report(Error(ErrorCode::kInternal, std::string("request handler threw: ") + e.what()));
      respond(JsonError(500, "internal", "the request handler failed"));
    } catch (...) {
      core_->Report(Error(ErrorCode::kInternal, "request handler threw a non-exception"));
      respond(JsonError(500, "internal", "the request handler failed"));
    }
  }

  // Watches for the client going away while the Handler works. A readable socket is either more
  // data (a pipelined request, a TLS record) or the end of the stream; POLLRDHUP tells them apart
  // without consuming anything.
  void Watch() {
    Socket().async_wait(asio::socket_base::wait_read,
                        [self = Self()](error_code ec) { self->OnWatch(ec); });
  }

  void OnWatch(error_code ec) {
    if (state_ != State::kAwaiting || ec) {
      return;
    }
    pollfd pfd{.fd = Socket().native_handle(), .events = POLLIN | POLLRDHUP, .revents = 0};
    if (poll(&pfd, 1, 0) >= 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
      Close();
      return;
    }
    // Data is waiting and stays readable, so waiting for readability again would spin: poll.
    watch_timer_.expires_after(kWatchInterval);
    watch_timer_.async_wait([self = Self()](error_code timer_ec) { self->OnWatch(timer_ec); });
  }

  void OnResponse(Response response, ChannelHandle channel) {
    if (state_ != State::kAwaiting) {
      return;  // the connection closed meanwhile (dropping `channel` stops its producer)
    }
    error_code ignored;
    Socket().cancel(ignored);  // ends the watch
    watch_timer_.cancel();
    if (channel) {
      channel_ = std::move(channel);
      StartStream(std::move(response), !keep_alive_);
      return;
    }
    Write(std::move(response), !keep_alive_);
  }

  void SendError(Response response) { Write(std::move(response), /*close=*/true); }

  // The head's fields, the same for a whole and a streamed response.
  template <class Message>
  void SetHead(Message& message, const Response& response, bool close) {
    if (request_id_.empty()) {
      request_id_ = internal::NewRequestId();
    }
    const int status = response.status;
    message.version(11);
    message.result(static_cast<unsigned>(status));
    for (auto& [name, value] : response.headers) {
      message.set(name, value);
    }
    message.set(http::field::content_type, response.content_type);
    message.set("X-Request-Id", request_id_);
    if (status == 503) {
      message.set(http::field::retry_after, "1");
    }
    message.keep_alive(!close);
  }

  void Write(Response response, bool close) {
    close = close || stop_after_response_ || core_->stopping.load();
    state_ = State::kWriting;
    if (response.status < 200 || response.status > 599) {
      core_->Report(Error(ErrorCode::kInternal, "request handler answered invalid status " +
                                                    std::to_string(response.status)));
      response = JsonError(500, "internal", "the request handler answered an invalid status");
    }
    response_ = {};
    SetHead(response_, response, close);
    response_.body() = std::move(response.body);
    response_.prepare_payload();
    ArmTimer(core_->limits.request_timeout, TimerAction::kClose);
    http::async_write(stream_, response_, [self = Self(), close](error_code ec, std::size_t) {
      self->OnWritten(ec, close);
    });
  }

  // A streamed response. The head waits for the producer's first piece (or its end), so a
  // producer that fails before writing a byte can still answer with an error of its own
  // (Response::refuse_stream). Then each piece the producer queued since the last write goes out
  // as one chunk, and the last chunk closes the body. request_timeout bounds each write, not the
  // whole body, and does not run while the producer makes the next piece.
  void StartStream(Response response, bool close) {
    stream_close_ = close || stop_after_response_ || core_->stopping.load();
    state_ = State::kWriting;
    if (response.status < 200 || response.status > 599) {
      core_->Report(Error(ErrorCode::kInternal, "request handler answered invalid status " +
                                                    std::to_string(response.status) +
                                                    " for a streamed body (connection cut)"));
      Close();
      return;
    }
    http::response<http::empty_body> head;
    SetHead(head, response, stream_close_);
    head.chunked(true);
    std::ostringstream text;
    text << head.base();
    stream_head_ = std::move(text).str();
    SendQueued();
  }

  void SendQueued() {
    if (state_ != State::kWriting || !channel_ || stream_writing_) {
      return;
    }
    BodyChannel::Taken taken = channel_.get()->Take(Self());
    if (taken.data.empty() && !taken.end) {
      return;  // the producer wakes us (Pump) when it has more or has finished
    }
    if (taken.end && !taken.ok) {
      if (!stream_head_.empty() && taken.refusal) {
        channel_.Reset();  // nothing was sent: the producer's refusal is the whole answer
        Write(std::move(*taken.refusal), stream_close_);
      } else {
        Close();  // no last chunk: the client sees the body is incomplete
      }
      return;
    }
    // Head (the first time), chunk size line, data, CRLF, and the last chunk at the end.
    chunk_ = std::move(taken.data);
    chunk_line_.clear();
    if (!chunk_.empty()) {
      chunk_line_ = ToHex(chunk_.size()) + "\r\n";
    }
    std::vector<asio::const_buffer> out;
    out.push_back(asio::buffer(stream_head_));
    if (!chunk_.empty()) {
      out.push_back(asio::buffer(chunk_line_));
      out.push_back(asio::buffer(chunk_));
      out.push_back(asio::buffer(kCrlf));
    }
    if (taken.end) {
      out.push_back(asio::buffer(kLastChunk));
    }
    stream_writing_ = true;
    ArmTimer(core_->limits.request_timeout, TimerAction::kClose);
    asio::async_write(stream_, out,
                      [self = Self(), n = chunk_.size(), end = taken.end](
                          error_code ec, std::size_t) { self->OnStreamWritten(ec, n, end); });
  }

  void OnStreamWritten(error_code ec, std::size_t sent, bool end) {
    if (state_ != State::kWriting || !channel_) {
      return;
    }
    stream_writing_ = false;
    stream_head_.clear();  // sent
    CancelTimer();
    if (ec) {
      Close();
      return;
    }
    if (end) {
      channel_.Reset();
      chunk_ = {};
      OnWritten(ec, stream_close_);
      return;
    }
    channel_.get()->Sent(sent);
    SendQueued();
  }

  static std::string ToHex(std::size_t n) {
    std::array<char, 2 * sizeof(std::size_t) + 1> buf{};
    auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), n, 16);
    return std::string(buf.data(), end);
  }

  void OnWritten(error_code ec, bool close) {
    if (state_ != State::kWriting) {
      return;
    }
    CancelTimer();
    request_id_.clear();
    cancelled_.reset();
    if (ec) {
      Close();
    } else if (close) {
      LingerClose();
    } else {
      WaitForRequest();
    }
  }

  // Closing a socket with unread input makes the kernel reset the connection, and the client may
  // then lose the response it has not read yet (a 413 while it still sends the body). So: stop
  // sending, read and discard for a moment, then close.
  void LingerClose() {
    state_ = State::kClosing;
    error_code ignored;
    Socket().shutdown(asio::socket_base::shutdown_send, ignored);
    ArmTimer(std::chrono::duration_cast<std::chrono::milliseconds>(kLingerTime),
             TimerAction::kClose);
    Drain();
  }
  void Drain() {
    RawStream().async_read_some(asio::buffer(drain_), [self = Self()](error_code ec, std::size_t) {
      if (self->state_ != State::kClosing) {
        return;
      }
      if (ec) {
        self->Close();
      } else {
        self->Drain();
      }
    });
  }

  void OnBeginStop() {
    stop_after_response_ = true;
    if (state_ == State::kIdle || state_ == State::kHandshake) {
      Close();
    }
  }

  void Close() {
    if (state_ == State::kClosed) {
      return;
    }
    if (state_ == State::kAwaiting && cancelled_) {
      cancelled_->store(true);
    }
    state_ = State::kClosed;
    channel_.Reset();  // a producer still writing learns the body goes nowhere
    CancelTimer();
    watch_timer_.cancel();
    error_code ignored;
    Socket().shutdown(asio::socket_base::shutdown_both, ignored);
    Socket().close(ignored);
  }

  std::shared_ptr<Core> core_;
  Stream stream_;
  asio::steady_timer timer_;
  asio::steady_timer watch_timer_;
  std::uint64_t timer_generation_ = 0;
  Peer peer_;
  const bool over_limit_;
  State state_ = State::kIdle;
  bool read_timed_out_ = false;
  bool keep_alive_ = false;
  bool stop_after_response_ = false;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::empty_body>> continue_;
  http::response<http::string_body> response_;
  // A streamed response: its producer's channel, head, and the chunk being written.
  ChannelHandle channel_;
  std::string stream_head_;  // until sent
  std::string chunk_line_;
  std::string chunk_;
  bool stream_writing_ = false;
  bool stream_close_ = false;
  std::string request_id_;
  std::shared_ptr<std::atomic<bool>> cancelled_;
  std::array<char, 4096> drain_{};
  bool registered_ = false;
  std::list<std::weak_ptr<SessionBase>>::iterator registry_it_;
};

// Takes a slot toward max_connections, or reports that none is left.
bool TakeConnectionSlot(Core& core) {
  std::size_t n = core.counted.load();
  while (n < core.limits.max_connections) {
    if (core.counted.compare_exchange_weak(n, n + 1)) {
      return true;
    }
  }
  return false;
}

std::string EndpointText(const asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  std::string host = address.to_string();
  if (address.is_v6()) {
    host = "[" + host + "]";
  }
  return host + ":" + std::to_string(endpoint.port());
}

}  // namespace

// ---- Server::Impl -------------------------------------------------------------------------------

class Server::Impl {
 public:
  struct UnixListener {
    UnixListenerOptions options;
    asio::local::stream_protocol::acceptor acceptor;
    asio::steady_timer retry;
    dev_t dev = 0;
    ino_t ino = 0;
  };
  struct TlsListener {
    std::unique_ptr<asio::ssl::context> context;
    asio::ip::tcp::acceptor acceptor;
    asio::steady_timer retry;
    std::uint16_t port = 0;
  };

  Impl(ServerOptions& options, Handler handler)
      : ioc_(static_cast<int>(options.threads)),
        accept_strand_(asio::make_strand(ioc_)),
        work_(asio::make_work_guard(ioc_)),
        core_(std::make_shared<Core>()) {
    core_->limits = options.limits;
    core_->handler = std::move(handler);
    core_->on_error = std::move(options.on_error);
  }

  ~Impl() {
    Stop(Deadline::Never());
    std::lock_guard lock(core_->post_mu);
    core_->closed = true;
  }

  Status AddUnix(UnixListenerOptions options) {
    SIGNET_ASSIGN_OR_RETURN(UniqueFd fd, internal::BindUnixSocket(options, SOMAXCONN));
    auto listener = std::make_unique<UnixListener>(UnixListener{
        .options = std::move(options),
        .acceptor = asio::local::stream_protocol::acceptor(accept_strand_),
        .retry = asio::steady_timer(accept_strand_),
    });
    struct stat st {};
    if (stat(listener->options.path.c_str(), &st) == 0) {
      listener->dev = st.st_dev;
      listener->ino = st.st_ino;
    }
    unix_.push_back(std::move(listener));  // from here on Stop removes the socket file
    error_code ec;
    unix_.back()->acceptor.assign(asio::local::stream_protocol(), fd.get(), ec);
    if (ec) {
      return MakeError(ErrorCode::kIo, "adopt the socket " + unix_.back()->options.path.string() +
                                           ": " + ec.message());
    }
    (void)fd.Release();  // the acceptor owns it now
    return OkStatus();
  }

  Status AddTls(const TlsListenerOptions& options) {
    SIGNET_ASSIGN_OR_RETURN(internal::SslCtx ctx, internal::MakeServerTlsContext(options));
    auto context = std::make_unique<asio::ssl::context>(ctx.release());
    error_code ec;
    auto address = asio::ip::make_address(options.address, ec);
    if (ec) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "TLS listener address \"" + options.address + "\" is not an IP address");
    }
    asio::ip::tcp::endpoint endpoint(address, options.port);
    const std::string where = EndpointText(endpoint);
    asio::ip::tcp::acceptor acceptor(accept_strand_);
    if (acceptor.open(endpoint.protocol(), ec); ec) {
      return MakeError(ErrorCode::kIo, "open a TCP socket for " + where + ": " + ec.message());
    }
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (acceptor.bind(endpoint, ec); ec) {
      if (ec == asio::error::address_in_use) {
        return MakeError(Error(ErrorCode::kUnavailable, "bind " + where + ": address in use",
                               ErrorDomain::kErrno, ec.value()));
      }
      if (ec == asio::error::access_denied) {
        return MakeError(Error(ErrorCode::kPermissionDenied,
                               "bind " + where +
                                   ": permission denied (ports below 1024 need "
                                   "CAP_NET_BIND_SERVICE)",
                               ErrorDomain::kErrno, ec.value()));
      }
      return MakeError(Error(ErrorCode::kIo, "bind " + where + ": " + ec.message(),
                             ErrorDomain::kErrno, ec.value()));
    }
    if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
      return MakeError(ErrorCode::kIo, "listen on " + where + ": " + ec.message());
    }
    std::uint16_t port = acceptor.local_endpoint(ec).port();
    tls_.push_back(std::make_unique<TlsListener>(TlsListener{
        .context = std::move(context),
        .acceptor = std::move(acceptor),
        .retry = asio::steady_timer(accept_strand_),
        .port = port,
    }));
    return OkStatus();
  }

  void Run(unsigned threads) {
    asio::post(accept_strand_, [this] {
      for (auto& listener : unix_) {
        AcceptUnix(*listener);
      }
      for (auto& listener : tls_) {
        AcceptTls(*listener);
      }
    });
    for (unsigned i = 0; i < threads; ++i) {
      threads_.emplace_back([this] {
        (void)::pthread_setname_np(::pthread_self(), "net-io");
        ThreadMain();
      });
    }
  }

  std::uint16_t port(std::size_t index) const {
    return index < tls_.size() ? tls_[index]->port : 0;
  }
  std::size_t open_connections() const { return core_->open.load(); }

  void Stop(Deadline deadline) {
    std::lock_guard stop_lock(stop_mu_);
    if (stopped_) {
      return;
    }
    stopped_ = true;
    core_->stopping.store(true);

    if (threads_.empty()) {
      CloseListeners();
    } else {
      std::promise<void> closed;
      asio::post(accept_strand_, [&] {
        CloseListeners();
        closed.set_value();
      });
      closed.get_future().wait();
    }

    ForEachSession([](SessionBase& s) { s.BeginStop(); });
    if (!WaitForSessions(deadline)) {
      ForEachSession([](SessionBase& s) { s.ForceClose(); });
      (void)WaitForSessions(Deadline::In(std::chrono::seconds(2)));
    }
    work_.reset();
    ioc_.stop();
    for (auto& thread : threads_) {
      thread.join();
    }
    threads_.clear();
  }

 private:
  void ThreadMain() {
    // An I/O thread's entry point: exceptions end here, become an Error, and the thread serves on.
    internal::MarkIoThread();
    for (;;) {
      try {
        ioc_.run();
        return;
      } catch (const std::exception& e) {
        core_->Report(Error(ErrorCode::kInternal, std::string("I/O thread caught: ") + e.what()));
      } catch (...) {
        core_->Report(Error(ErrorCode::kInternal, "I/O thread caught a non-exception"));
      }
    }
  }

  void CloseListeners() {
    error_code ignored;
    for (auto& listener : unix_) {
      listener->acceptor.close(ignored);
      listener->retry.cancel();
      // Remove the socket file only if it is still ours: a successor may have replaced it.
      struct stat st {};
      if (stat(listener->options.path.c_str(), &st) == 0 && st.st_dev == listener->dev &&
          st.st_ino == listener->ino) {
        unlink(listener->options.path.c_str());
      }
    }
    for (auto& listener : tls_) {
      listener->acceptor.close(ignored);
      listener->retry.cancel();
    }
  }

  template <class Fn>
  void ForEachSession(Fn fn) {
    std::vector<std::shared_ptr<SessionBase>> live;
    {
      std::lock_guard lock(core_->registry_mu);
      for (auto& weak : core_->sessions) {
        if (auto session = weak.lock()) {
          live.push_back(std::move(session));
        }
      }
    }
    // Outside the lock: dropping the last reference runs a destructor that takes registry_mu.
    for (auto& session : live) {
      fn(*session);
    }
  }

  [[nodiscard]] bool WaitForSessions(Deadline deadline) {
    std::unique_lock lock(core_->registry_mu);
    auto empty = [&] { return core_->sessions.empty(); };
    if (deadline.IsNever()) {
      core_->registry_cv.wait(lock, empty);
      return true;
    }
    return core_->registry_cv.wait_until(lock, deadline.when(), empty);
  }

  // Accepting failing for lack of descriptors must not spin: back off, then retry.
  template <class Listener, class Again>
  void OnAcceptError(Listener& listener, error_code ec, Again again) {
    if (!listener.acceptor.is_open() || ec == asio::error::operation_aborted) {
      return;
    }
    core_->Report(
        Error(ErrorCode::kUnavailable, "accept: " + ec.message(), ErrorDomain::kErrno, ec.value()));
    listener.retry.expires_after(kAcceptRetry);
    listener.retry.async_wait([again](error_code timer_ec) {
      if (!timer_ec) {
        again();
      }
    });
  }

  void AcceptUnix(UnixListener& listener) {
    listener.acceptor.async_accept(
        asio::make_strand(ioc_), [this, &listener](error_code ec, UnixSocket socket) {
          if (ec) {
            OnAcceptError(listener, ec, [this, &listener] { AcceptUnix(listener); });
            return;
          }
          OnUnixAccepted(listener, std::move(socket));
          AcceptUnix(listener);
        });
  }

  void OnUnixAccepted(UnixListener& listener, UnixSocket socket) {
    Result<Peer> peer = internal::UnixPeer(socket.native_handle(), listener.options.path.string());
    if (!peer) {
      core_->Report(peer.error());
      return;  // closing `socket` disconnects
    }
    if (listener.options.accept_peer) {
      bool accepted = false;
      try {
        accepted = listener.options.accept_peer(*peer);
      } catch (const std::exception& e) {
        core_->Report(Error(ErrorCode::kInternal, std::string("accept_peer threw: ") + e.what()));
      } catch (...) {
        core_->Report(Error(ErrorCode::kInternal, "accept_peer threw a non-exception"));
      }
      if (!accepted) {
        return;  // refused before reading a byte: `socket` closes here
      }
    }
    bool counted = TakeConnectionSlot(*core_);
    auto session =
        std::make_shared<Session<UnixSocket>>(core_, *std::move(peer), !counted, std::move(socket));
    session->Start();
  }

  void AcceptTls(TlsListener& listener) {
    listener.acceptor.async_accept(
        asio::make_strand(ioc_), [this, &listener](error_code ec, TcpSocket socket) {
          if (ec) {
            OnAcceptError(listener, ec, [this, &listener] { AcceptTls(listener); });
            return;
          }
          error_code ignored;
          socket.set_option(asio::ip::tcp::no_delay(true), ignored);
          Peer peer;
          peer.kind = Peer::Kind::kTls;
          auto remote = socket.remote_endpoint(ignored);
          peer.address = ignored ? std::string() : EndpointText(remote);
          bool counted = TakeConnectionSlot(*core_);
          auto session = std::make_shared<Session<TlsStream>>(core_, std::move(peer), !counted,
                                                              std::move(socket), *listener.context);
          session->Start();
          AcceptTls(listener);
        });
  }

  // Declared first, destroyed last: everything below holds handles into it.
  asio::io_context ioc_;
  asio::strand<asio::io_context::executor_type> accept_strand_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::shared_ptr<Core> core_;
  std::vector<std::unique_ptr<UnixListener>> unix_;
  std::vector<std::unique_ptr<TlsListener>> tls_;
  std::vector<std::thread> threads_;
  std::mutex stop_mu_;
  bool stopped_ = false;
};

// ---- Server -------------------------------------------------------------------------------------

Result<std::unique_ptr<Server>> Server::Start(ServerOptions options, Handler handler) {
  if (options.threads < 1 || options.threads > 64) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "threads must be between 1 and 64, not " + std::to_string(options.threads));
  }
  if (options.unix_listeners.empty() && options.tls_listeners.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "the server needs at least one listener");
  }
  if (!handler) {
    return MakeError(ErrorCode::kInvalidArgument, "the server needs a request handler");
  }
  const Limits& limits = options.limits;
  if (limits.max_connections == 0 || limits.max_header_bytes == 0 ||
      limits.idle_timeout.count() <= 0 || limits.request_timeout.count() <= 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "limits max_connections, max_header_bytes, idle_timeout and request_timeout "
                     "must be positive");
  }
  try {
    auto impl = std::make_unique<Impl>(options, std::move(handler));
    // On any error `impl` is destroyed, which closes what was bound and removes socket files.
    for (auto& unix_options : options.unix_listeners) {
      SIGNET_RETURN_IF_ERROR(impl->AddUnix(std::move(unix_options)));
    }
    for (const auto& tls_options : options.tls_listeners) {
      SIGNET_RETURN_IF_ERROR(impl->AddTls(tls_options));
    }
    impl->Run(options.threads);
    return std::make_unique<Server>(std::move(impl));
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, std::string("starting the server: ") + e.what());
  }
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

std::uint16_t Server::bound_tcp_port(std::size_t index) const { return impl_->port(index); }
void Server::Stop(Deadline deadline) { impl_->Stop(deadline); }
std::size_t Server::open_connections() const { return impl_->open_connections(); }

}  // namespace signet::net
