// appliance/net/internal/response.h: what a Server's sessions share with the responses they
// are given: the Core, the session interface, the Responder's slot, and the channel a streamed
// body (Response::stream) flows through from its producer's thread to the session. No Boost here:
// server.cc holds the sessions themselves.
#ifndef SIGNET_APPLIANCE_NET_INTERNAL_RESPONSE_H_
#define SIGNET_APPLIANCE_NET_INTERNAL_RESPONSE_H_

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "appliance/base/base.h"
#include "appliance/net/net.h"

namespace signet::net::internal {

class SessionBase;

// Core is what sessions and responders share with the Server; it outlives the Server when a
// Responder is kept past it.
struct Core {
  Limits limits;
  Handler handler;
  std::function<void(const Error&)> on_error;
  std::atomic<std::size_t> counted{0};  // connections counting toward max_connections
  std::atomic<std::size_t> open{0};     // all connections
  std::atomic<bool> stopping{false};

  std::mutex registry_mu;
  std::condition_variable registry_cv;
  std::list<std::weak_ptr<SessionBase>> sessions;

  // Guards posting to the io_context from outside it: once `closed`, the io_context may be gone.
  std::mutex post_mu;
  bool closed = false;

  void Report(const Error& error) const {
    if (on_error) {
      try {
        on_error(error);
      } catch (...) {  // a logger failing must not take the I/O thread down
      }
    }
  }
};

// Marks the calling thread as one of a Server's I/O threads (each calls it once). A streamed
// response given on such a thread would block the thread that has to send it.
void MarkIoThread();
bool OnIoThread();

// BodyChannel carries a streamed body from the producer (the thread that called the Responder) to
// the session that sends it. The producer appends pieces; the session takes everything queued,
// sends it as one chunk, and reports it sent, which frees the window for the producer. While the
// session waits for the producer, no I/O of its own keeps it alive: the channel does, until the
// producer wakes it or the channel closes.
class BodyChannel {
 public:
  struct Taken {
    std::string data;
    bool end = false;  // the producer has finished (`ok` says how) and nothing more is queued
    bool ok = true;
    std::optional<Response> refusal{};  // when !ok: the answer if nothing was sent yet
  };

  explicit BodyChannel(std::shared_ptr<Core> core) : core_(std::move(core)) {}

  // Producer side. False once the session cannot send any more.
  bool Write(std::string_view piece);
  void Finish(bool ok, std::optional<Response> refusal);

  // Session side (its strand). Takes what is queued; when nothing is and the producer has not
  // finished, the channel keeps `session` until the next Write or Finish wakes it
  // (SessionBase::Pump).
  Taken Take(std::shared_ptr<SessionBase> session);
  void Sent(std::size_t n);
  // The session is gone or cannot send any more: the producer's next Write returns false.
  void Close();

 private:
  void Wake(std::shared_ptr<SessionBase> session);

  std::shared_ptr<Core> core_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string queued_;
  std::size_t pending_ = 0;                 // queued or being sent
  std::shared_ptr<SessionBase> waiting_{};  // the session, while it waits for the producer
  bool finished_ = false;
  bool ok_ = true;
  std::optional<Response> refusal_{};
  bool closed_ = false;
};

// ChannelHandle closes its channel when dropped, so a producer never waits for a session that is
// gone, whichever way it went (closed, destroyed, or its posted handler discarded at Stop).
class ChannelHandle {
 public:
  ChannelHandle() = default;
  explicit ChannelHandle(std::shared_ptr<BodyChannel> channel) : channel_(std::move(channel)) {}
  ChannelHandle(ChannelHandle&& other) noexcept = default;
  ChannelHandle& operator=(ChannelHandle&& other) noexcept {
    Reset();
    channel_ = std::move(other.channel_);
    return *this;
  }
  ~ChannelHandle() { Reset(); }
  ChannelHandle(const ChannelHandle&) = delete;
  ChannelHandle& operator=(const ChannelHandle&) = delete;

  BodyChannel* get() const { return channel_.get(); }
  explicit operator bool() const { return channel_ != nullptr; }
  void Reset() {
    if (channel_) {
      channel_->Close();
      channel_.reset();
    }
  }

 private:
  std::shared_ptr<BodyChannel> channel_;
};

class SessionBase : public std::enable_shared_from_this<SessionBase> {
 public:
  virtual ~SessionBase() = default;
  // Each of these posts to the session's strand; safe from any thread. `channel` is set for a
  // streamed response.
  virtual void Deliver(Response response, ChannelHandle channel) = 0;
  virtual void Pump() = 0;  // a streamed body has more to send, or has ended
  virtual void BeginStop() = 0;
  virtual void ForceClose() = 0;
};

// ResponseSlot is shared by all copies of one Responder; the first Send wins.
class ResponseSlot {
 public:
  ResponseSlot(std::weak_ptr<SessionBase> session, std::shared_ptr<Core> core)
      : session_(std::move(session)), core_(std::move(core)) {}
  ~ResponseSlot();
  ResponseSlot(const ResponseSlot&) = delete;
  ResponseSlot& operator=(const ResponseSlot&) = delete;

  void Send(Response response);

 private:
  std::weak_ptr<SessionBase> session_;
  std::shared_ptr<Core> core_;
  std::atomic<bool> used_{false};
};

}  // namespace signet::net::internal

#endif  // SIGNET_APPLIANCE_NET_INTERNAL_RESPONSE_H_
