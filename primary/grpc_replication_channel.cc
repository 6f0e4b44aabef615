#include "primary/grpc_replication_channel.h"

#include <grpcpp/alarm.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/tls/tls_options.h"
#include "common/wire/stream_codec.h"

namespace blockrepl {
namespace {

using replication::PrimaryMessage;
using replication::SecondaryMessage;

// Which stream's Run this thread is in: a Wake from there needs no kick (Run
// asks for the next message after every event).
thread_local const void* t_running_stream = nullptr;

// One call on a completion queue of its own, driven by one thread: the
// handshake's blocking Send/Receive and Run's event loop both take events
// from that queue on the calling thread, so every operation starts and ends
// there (gRPC's asynchronous API). Other threads only cancel, or kick the
// loop with an alarm (WakeAt: due now, or when a lingering batch is due).
//
// The stream is opened untyped (ByteBuffer both ways, as the generated stub
// would with its message types) so batches go out through the zero-copy
// encoder (common/wire/stream_codec.h) instead of protobuf serialization.
class GrpcReplicationStream : public ReplicationStream {
 public:
  explicit GrpcReplicationStream(grpc::GenericStub* stub) {
    call_ = stub->PrepareCall(&context_, kReplicationStreamMethod, &cq_);
    call_->StartCall(TagFor(kStarted));
    starting_ = true;
  }

  ~GrpcReplicationStream() override {
    if (!finished_) {
      context_.TryCancel();
      FinishReason();
    }
    cq_.Shutdown();
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  bool Send(PrimaryMessage message, std::vector<Payload> payloads, bool more_coming) override {
    // The call's start and its writes share one operation slot.
    if (starting_ && !AwaitEvent(kStarted)) return false;
    StartWrite(std::move(message), std::move(payloads), more_coming);
    return AwaitEvent(kWritten);
  }

  bool Receive(SecondaryMessage* message) override {
    StartRead();
    return AwaitEvent(kRead) && DecodeReply(message);
  }

  void Run(StreamEvents* events, absl::Duration tick) override {
    t_running_stream = this;
    tick_ = tick;
    {
      absl::MutexLock lock(&kick_mu_);
      accepting_kicks_ = true;
    }
    bool ending = false, cancelled = false;
    StartRead();
    SetTick();
    ending = !SendWhatIsDue(events);
    while (true) {
      if (ending && !cancelled) {
        // Everything pending comes back (failed or cancelled) before we return.
        cancelled = true;
        context_.TryCancel();
        if (tick_pending_) tick_alarm_->Cancel();
        absl::MutexLock lock(&kick_mu_);
        accepting_kicks_ = false;
      }
      if (ending && NothingPending()) break;
      void* tag;
      bool ok;
      if (!cq_.Next(&tag, &ok)) break;  // not before our destructor shuts it down
      const Event event = NoteReturned(tag);
      switch (event) {
        case kRead: {
          if (!ok || ending) {
            ending = true;
            break;
          }
          SecondaryMessage message;
          if (!DecodeReply(&message) || !events->OnMessage(message)) {
            ending = true;
            break;
          }
          StartRead();
          break;
        }
        case kWritten:
          if (!ok) ending = true;
          break;
        case kTicked:
          if (ok && !ending) {
            if (events->OnTick()) {
              SetTick();
            } else {
              ending = true;
            }
          }
          break;
        case kStarted:
        case kKicked:
        case kFinished:
          break;
      }
      if (!ending && !writing_.load(std::memory_order_relaxed)) {
        ending = !SendWhatIsDue(events);
      }
    }
    t_running_stream = nullptr;
  }

  void WakeAt(absl::Time due) override {
    const bool on_loop = t_running_stream == this;
    const bool now = due == absl::InfinitePast() || due <= absl::Now();
    // Run asks for the next message after every event it handles.
    if (on_loop && now) return;
    // A write in flight asks again when it completes. It clears writing_
    // before it asks (under the replicator's lock), and whoever calls WakeAt
    // changed the replicator's state under that lock first: so either this
    // sees writing_ clear, or the asking sees the change (and gets the due
    // time back from NextMessage).
    if (!on_loop && writing_.load(std::memory_order_relaxed)) return;
    absl::MutexLock lock(&kick_mu_);
    if (!accepting_kicks_) return;
    if (kick_pending_) {
      if (kick_due_ <= due) return;
      // Sooner than the alarm set: cancelling fires it now, and Run asks
      // (early asks are harmless, NextMessage says when to come back).
      kick_->Cancel();
      kick_due_ = absl::InfinitePast();
      return;
    }
    kick_pending_ = true;
    kick_due_ = now ? absl::InfinitePast() : due;
    kick_ = std::make_unique<grpc::Alarm>();  // the previous one has fired: its event was taken
    if (now) {
      kick_->Set(&cq_, gpr_time_0(GPR_CLOCK_MONOTONIC), TagFor(kKicked));
    } else {
      kick_->Set(&cq_, absl::ToChronoTime(due), TagFor(kKicked));
    }
  }

  void Cancel() override { context_.TryCancel(); }

  std::string PeerCertificate() override { return DescribePeerCertificate(context_.auth_context()); }

  std::string FinishReason() override {
    if (finished_) return "";
    finished_ = true;
    grpc::Status status;
    call_->Finish(&status, TagFor(kFinished));
    finishing_ = true;
    AwaitEvent(kFinished);
    if (malformed_reply_) return "the secondary sent a message that does not parse";
    if (status.ok()) return "stream closed by the secondary";
    return status.error_message().empty() ? absl::StrCat("grpc code ", status.error_code())
                                          : status.error_message();
  }

 private:
  enum Event { kStarted = 1, kWritten, kRead, kKicked, kTicked, kFinished };
  static void* TagFor(Event event) { return reinterpret_cast<void*>(static_cast<intptr_t>(event)); }

  void StartWrite(PrimaryMessage message, std::vector<Payload> payloads, bool more_coming) {
    grpc::WriteOptions options;
    // A buffer hint lets gRPC coalesce frames; only when another message is
    // sure to follow at once, never on the last one (it would sit in the buffer).
    if (more_coming) options.set_buffer_hint();
    out_ = message.has_batch()
               ? EncodeBatchMessage(std::move(*message.mutable_batch()), std::move(payloads))
               : EncodeMessage(message);
    writing_.store(true, std::memory_order_relaxed);
    call_->Write(out_, options, TagFor(kWritten));
  }

  void StartRead() {
    reading_ = true;
    call_->Read(&in_, TagFor(kRead));
  }

  void SetTick() {
    tick_pending_ = true;
    tick_alarm_ = std::make_unique<grpc::Alarm>();  // the previous one has fired
    tick_alarm_->Set(&cq_, absl::ToChronoTime(absl::Now() + tick_), TagFor(kTicked));
  }

  // False when the stream is to end.
  bool SendWhatIsDue(StreamEvents* events) {
    PrimaryMessage message;
    std::vector<Payload> payloads;
    bool more_coming = false;
    absl::Time retry_at = absl::InfiniteFuture();
    switch (events->NextMessage(&message, &payloads, &more_coming, &retry_at)) {
      case StreamEvents::Next::kEnd:
        return false;
      case StreamEvents::Next::kIdle:
        if (retry_at != absl::InfiniteFuture()) WakeAt(retry_at);
        return true;
      case StreamEvents::Next::kMessage:
        break;
    }
    StartWrite(std::move(message), std::move(payloads), more_coming);
    return true;
  }

  bool DecodeReply(SecondaryMessage* message) {
    if (DecodeMessage(in_, message)) return true;
    malformed_reply_ = true;
    context_.TryCancel();
    return false;
  }

  // Takes events until `wanted` returns (the handshake: one operation at a
  // time, no kicks or ticks yet); its success.
  bool AwaitEvent(Event wanted) {
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
      if (NoteReturned(tag) == wanted) return ok;
    }
    return false;
  }

  Event NoteReturned(void* tag) {
    const Event event = static_cast<Event>(reinterpret_cast<intptr_t>(tag));
    switch (event) {
      case kStarted: starting_ = false; break;
      case kWritten:
        out_.Clear();  // gRPC holds its own references: the batch's payloads can go
        writing_.store(false, std::memory_order_relaxed);
        break;
      case kRead: reading_ = false; break;
      case kTicked: tick_pending_ = false; break;
      case kFinished: finishing_ = false; break;
      case kKicked: {
        absl::MutexLock lock(&kick_mu_);
        kick_pending_ = false;
        break;
      }
    }
    return event;
  }

  bool NothingPending() {
    absl::MutexLock lock(&kick_mu_);
    return !starting_ && !reading_ && !writing_.load(std::memory_order_relaxed) &&
           !tick_pending_ && !finishing_ && !kick_pending_;
  }

  // Declared first, destroyed last: the call's context and operations refer to it.
  grpc::CompletionQueue cq_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;

  // The driving thread's state (the handshake's caller, then Run's).
  grpc::ByteBuffer out_;  // the write in flight (empty when none)
  grpc::ByteBuffer in_;   // the read in flight
  std::unique_ptr<grpc::Alarm> tick_alarm_;
  absl::Duration tick_;
  bool starting_ = false, reading_ = false, tick_pending_ = false, finishing_ = false;
  bool finished_ = false;
  bool malformed_reply_ = false;
  // Written by the driving thread, read by WakeAt on others.
  std::atomic<bool> writing_{false};

  absl::Mutex kick_mu_;
  bool accepting_kicks_ ABSL_GUARDED_BY(kick_mu_) = false;  // Run is running
  bool kick_pending_ ABSL_GUARDED_BY(kick_mu_) = false;     // an alarm is set
  absl::Time kick_due_ ABSL_GUARDED_BY(kick_mu_);           // when it fires
  std::unique_ptr<grpc::Alarm> kick_ ABSL_GUARDED_BY(kick_mu_);
};

class GrpcReplicationChannel : public ReplicationChannel {
 public:
  GrpcReplicationChannel(const std::string& target, const TlsOptions& tls,
                         absl::Duration peer_timeout)
      : target_(target),
        failure_hint_(tls.enabled()
                          ? " (no route, nothing listening, or the TLS handshake failed: check "
                            "the address, the firewall, and that both certificates chain to the "
                            "other side's --tls-ca)"
                          : " (no route, nothing listening, or the secondary requires TLS)") {
    args_.SetMaxReceiveMessageSize(64 << 20);
    args_.SetMaxSendMessageSize(64 << 20);
    // Dead-peer detection on a silent link: ping every third of the peer
    // timeout, give up after another third.
    const int third_ms = static_cast<int>(
        std::max<int64_t>(1000, absl::ToInt64Milliseconds(peer_timeout) / 3));
    args_.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, third_ms);
    args_.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, third_ms);
    args_.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args_.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    args_.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args_.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
    args_.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
    // The connection belongs to this channel alone, so dropping the channel
    // closes it (gRPC's global pool would hand a new channel the old one).
    args_.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    credentials_ = MakeChannelCredentials(tls, &args_);
    channel_ = NewChannel();
  }

  absl::StatusOr<std::unique_ptr<ReplicationStream>> Open(absl::Duration timeout) override {
    std::shared_ptr<grpc::Channel> channel;
    {
      absl::MutexLock lock(&mu_);
      channel = channel_;
    }
    auto deadline = std::chrono::system_clock::now() +
                    std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout));
    if (!channel->WaitForConnected(deadline)) {
      return absl::UnavailableError(
          absl::StrCat("cannot connect to secondary at ", target_, failure_hint_));
    }
    // The call keeps its channel alive; the stub is only needed to start it.
    grpc::GenericStub stub(channel);
    return std::unique_ptr<ReplicationStream>(new GrpcReplicationStream(&stub));
  }

  void DropConnection() override {
    std::shared_ptr<grpc::Channel> channel = NewChannel();
    absl::MutexLock lock(&mu_);
    channel_ = std::move(channel);
  }

  std::string peer() const override { return target_; }

 private:
  std::shared_ptr<grpc::Channel> NewChannel() const {
    return grpc::CreateCustomChannel(target_, credentials_, args_);
  }

  const std::string target_;
  const std::string failure_hint_;  // what "cannot connect" may mean with these credentials
  // Constant after construction.
  grpc::ChannelArguments args_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;

  absl::Mutex mu_;
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<ReplicationChannel> MakeGrpcReplicationChannel(const std::string& target,
                                                               const TlsOptions& tls,
                                                               absl::Duration peer_timeout) {
  return std::make_unique<GrpcReplicationChannel>(target, tls, peer_timeout);
}

}  // namespace blockrepl
