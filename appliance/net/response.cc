// The Responder's side of signet::net: a response slot per request, and the channel that carries a
// streamed body from the thread producing it to the session sending it (internal/response.h).
#include "appliance/net/internal/response.h"

#include <algorithm>
#include <exception>
#include <utility>

namespace signet::net::internal {
namespace {

thread_local bool t_io_thread = false;

}  // namespace

void MarkIoThread() { t_io_thread = true; }
bool OnIoThread() { return t_io_thread; }

bool BodyChannel::Write(std::string_view piece) {
  std::shared_ptr<SessionBase> wake;
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return closed_ || pending_ < kStreamWindowBytes; });
    if (closed_) {
      return false;
    }
    queued_.append(piece);
    pending_ += piece.size();
    if (!queued_.empty()) {
      wake = std::move(waiting_);
    }
  }
  Wake(std::move(wake));
  return true;
}

void BodyChannel::Finish(bool ok, std::optional<Response> refusal) {
  std::shared_ptr<SessionBase> wake;
  {
    std::lock_guard lock(mu_);
    finished_ = true;
    ok_ = ok;
    refusal_ = std::move(refusal);
    wake = std::move(waiting_);
  }
  Wake(std::move(wake));
}

BodyChannel::Taken BodyChannel::Take(std::shared_ptr<SessionBase> session) {
  std::lock_guard lock(mu_);
  Taken taken;
  taken.data = std::move(queued_);
  queued_.clear();
  taken.end = taken.data.empty() && finished_;
  taken.ok = ok_;
  if (taken.end && !ok_) {
    taken.refusal = std::move(refusal_);
    refusal_.reset();
  }
  if (taken.data.empty() && !finished_ && !closed_) {
    waiting_ = std::move(session);
  }
  return taken;
}

void BodyChannel::Sent(std::size_t n) {
  {
    std::lock_guard lock(mu_);
    pending_ -= std::min(pending_, n);
  }
  cv_.notify_all();
}

void BodyChannel::Close() {
  std::shared_ptr<SessionBase> release;  // dropped after the lock: it may be the last reference
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    release = std::move(waiting_);
  }
  cv_.notify_all();
}

ResponseSlot::~ResponseSlot() {
  Send(JsonError(500, "internal", "the request handler dropped the request without a response"));
}

void ResponseSlot::Send(Response response) {
  if (used_.exchange(true)) {
    return;
  }
  auto stream = std::move(response.stream);
  auto refuse = std::move(response.refuse_stream);
  response.stream = nullptr;
  response.refuse_stream = nullptr;
  if (stream && OnIoThread()) {
    core_->Report(Error(ErrorCode::kInternal,
                        "a streamed response was given on an I/O thread (it would block the "
                        "thread that sends it); answered 500"));
    stream = nullptr;
    response = JsonError(500, "internal", "the request handler failed");
  }
  std::shared_ptr<BodyChannel> channel;
  {
    std::lock_guard lock(core_->post_mu);
    if (core_->closed) {
      return;
    }
    // Posting keeps the session alive, so this local reference is never the last one... except
    // when the posted handler already ran on another thread; SessionBase's destructor takes only
    // registry_mu, never post_mu, so releasing it here is fine.
    std::shared_ptr<SessionBase> session = session_.lock();
    if (!session) {
      return;
    }
    if (stream) {
      channel = std::make_shared<BodyChannel>(core_);
    }
    session->Deliver(std::move(response), ChannelHandle(channel));
  }
  if (!channel) {
    return;
  }
  BodyChannel& out = *channel;
  bool wrote = false;
  const BodyWriter write = [&out, &wrote](std::string_view piece) {
    wrote = wrote || !piece.empty();
    return out.Write(piece);
  };
  std::optional<Error> failed;
  try {
    if (Status produced = stream(write); !produced) {
      failed = produced.error();
    }
  } catch (const std::exception& e) {
    failed = Error(ErrorCode::kInternal, std::string("the body's producer threw: ") + e.what());
    core_->Report(*failed);
  } catch (...) {
    failed = Error(ErrorCode::kInternal, "the body's producer threw a non-exception");
    core_->Report(*failed);
  }
  if (!failed) {
    out.Finish(true, std::nullopt);
    return;
  }
  if (wrote) {
    core_->Report(failed->WithContext("streamed response cut after its first bytes"));
  }
  std::optional<Response> refusal;
  try {
    refusal =
        refuse ? refuse(*failed) : JsonError(500, "internal", "the response could not be produced");
  } catch (...) {
    refusal = JsonError(500, "internal", "the response could not be produced");
  }
  refusal->stream = nullptr;
  refusal->refuse_stream = nullptr;
  out.Finish(false, std::move(refusal));
}

void BodyChannel::Wake(std::shared_ptr<SessionBase> session) {
  if (!session) {
    return;
  }
  std::lock_guard lock(core_->post_mu);
  if (!core_->closed) {
    session->Pump();  // the posted handler holds the session from here
  }
}

}  // namespace signet::net::internal
