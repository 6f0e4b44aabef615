#include "primary/fake_replication_channel.h"

#include <algorithm>

namespace blockrepl {

class FakeReplicationChannel::Stream : public ReplicationStream {
 public:
  explicit Stream(FakeReplicationChannel* channel) : c_(channel) {}

  bool Send(replication::PrimaryMessage message, std::vector<Payload> payloads,
            bool more_coming) override {
    if (message.has_hello()) {
      std::function<void(const replication::Hello&)> hook;
      {
        absl::MutexLock lock(&c_->mu_);
        hook = c_->on_hello_;
      }
      if (hook) hook(message.hello());  // outside our lock: it may call into the primary
    }
    absl::MutexLock lock(&c_->mu_);
    if (c_->broken_) return false;
    if (message.has_hello()) {
      c_->hellos_.push_back(message.hello());
      replication::SecondaryMessage reply;
      *reply.mutable_hello_reply() = c_->hello_reply_;
      c_->to_primary_.push_back(reply);
      return true;
    }
    ++c_->batches_;
    c_->more_coming_.push_back(more_coming);
    for (int i = 0; i < message.batch().ops_size(); ++i) {
      replication::Op op = message.batch().ops(i);
      if (i < static_cast<int>(payloads.size()) && !payloads[i].empty()) {
        op.set_data(std::string(payloads[i].view()));
      }
      c_->received_.push_back(std::move(op));
    }
    return true;
  }

  bool Receive(replication::SecondaryMessage* message) override {
    absl::MutexLock lock(&c_->mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(c_->mu_) {
      return c_->broken_ || !c_->to_primary_.empty();
    };
    c_->mu_.Await(absl::Condition(&ready));
    if (c_->to_primary_.empty()) return false;
    *message = c_->to_primary_.front();
    c_->to_primary_.pop_front();
    return true;
  }

  // The same loop as the gRPC stream's, with the channel's lock and queue
  // standing in for the completion queue.
  void Run(StreamEvents* events, absl::Duration tick) override {
    absl::Time next_tick = absl::Now() + tick;
    while (true) {
      std::deque<replication::SecondaryMessage> arrived;
      {
        absl::MutexLock lock(&c_->mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(c_->mu_) {
          return c_->broken_ || !c_->to_primary_.empty() || c_->woken_;
        };
        c_->mu_.AwaitWithDeadline(absl::Condition(&ready), std::min(next_tick, c_->wake_at_));
        if (c_->broken_) return;
        c_->woken_ = false;
        // NextMessage below gives the time again while a batch still lingers.
        c_->wake_at_ = absl::InfiniteFuture();
        arrived.swap(c_->to_primary_);
      }
      for (const replication::SecondaryMessage& message : arrived) {
        if (!events->OnMessage(message)) return;
      }
      if (absl::Now() >= next_tick) {
        if (!events->OnTick()) return;
        next_tick = absl::Now() + tick;
      }
      {
        absl::MutexLock lock(&c_->mu_);
        if (c_->held_) continue;  // HoldSending: HoldSending(false) wakes us
      }
      while (true) {
        replication::PrimaryMessage message;
        std::vector<Payload> payloads;
        bool more_coming = false;
        absl::Time retry_at = absl::InfiniteFuture();
        const StreamEvents::Next next =
            events->NextMessage(&message, &payloads, &more_coming, &retry_at);
        if (next == StreamEvents::Next::kEnd) return;
        if (next == StreamEvents::Next::kIdle) {
          WakeAt(retry_at);
          break;
        }
        if (!Send(std::move(message), std::move(payloads), more_coming)) return;
      }
    }
  }

  void WakeAt(absl::Time due) override {
    absl::MutexLock lock(&c_->mu_);
    if (due <= absl::Now()) {
      c_->woken_ = true;
    } else {
      c_->wake_at_ = std::min(c_->wake_at_, due);
    }
  }

  void Cancel() override {
    absl::MutexLock lock(&c_->mu_);
    c_->broken_ = true;
  }
  std::string FinishReason() override { return "fake stream ended"; }

 private:
  FakeReplicationChannel* c_;
};

absl::StatusOr<std::unique_ptr<ReplicationStream>> FakeReplicationChannel::Open(
    absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (!reachable_) return absl::UnavailableError("fake secondary unreachable");
  broken_ = false;
  woken_ = false;
  received_.clear();
  more_coming_.clear();
  batches_ = 0;
  to_primary_.clear();
  ++streams_;
  return std::unique_ptr<ReplicationStream>(new Stream(this));
}

void FakeReplicationChannel::SetHelloReply(replication::HelloReply reply) {
  absl::MutexLock lock(&mu_);
  hello_reply_ = std::move(reply);
}

void FakeReplicationChannel::OnHello(std::function<void(const replication::Hello&)> hook) {
  absl::MutexLock lock(&mu_);
  on_hello_ = std::move(hook);
}

std::vector<replication::Hello> FakeReplicationChannel::hellos() {
  absl::MutexLock lock(&mu_);
  return hellos_;
}

void FakeReplicationChannel::SetReachable(bool reachable) {
  absl::MutexLock lock(&mu_);
  reachable_ = reachable;
}

std::vector<replication::Op> FakeReplicationChannel::ReceivedOps() {
  absl::MutexLock lock(&mu_);
  return received_;
}

int FakeReplicationChannel::batches_received() {
  absl::MutexLock lock(&mu_);
  return batches_;
}

bool FakeReplicationChannel::WaitForOps(size_t n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return received_.size() >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

std::vector<bool> FakeReplicationChannel::more_coming_flags() {
  absl::MutexLock lock(&mu_);
  return more_coming_;
}

void FakeReplicationChannel::HoldSending(bool hold) {
  absl::MutexLock lock(&mu_);
  held_ = hold;
  woken_ = true;
}

void FakeReplicationChannel::Ack(uint64_t applied, uint64_t durable) {
  absl::MutexLock lock(&mu_);
  replication::SecondaryMessage m;
  m.mutable_ack()->set_applied_seq(applied);
  m.mutable_ack()->set_durable_seq(durable);
  to_primary_.push_back(m);
}

void FakeReplicationChannel::Break() {
  absl::MutexLock lock(&mu_);
  broken_ = true;
}

int FakeReplicationChannel::streams_opened() {
  absl::MutexLock lock(&mu_);
  return streams_;
}

int FakeReplicationChannel::connections_dropped() {
  absl::MutexLock lock(&mu_);
  return connections_dropped_;
}

void FakeReplicationChannel::DropConnection() {
  absl::MutexLock lock(&mu_);
  connections_dropped_++;
}

}  // namespace blockrepl
