// In-process ReplicationChannel for tests: the test plays the secondary.
// It answers the handshake automatically (configurable), records every op
// the primary sends, and lets the test inject acks or break the stream.
// Thread-safe.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "primary/replication_channel.h"

namespace blockrepl {

class FakeReplicationChannel : public ReplicationChannel {
 public:
  absl::StatusOr<std::unique_ptr<ReplicationStream>> Open(absl::Duration timeout) override;
  std::string peer() const override { return "fake-secondary"; }

  // Handshake answer for the next streams.
  void SetHelloReply(replication::HelloReply reply);
  void SetReachable(bool reachable);
  // Runs `hook` when a hello arrives, before it is answered (e.g. a client
  // write racing the handshake).
  void OnHello(std::function<void(const replication::Hello&)> hook);
  // Every hello received, oldest first.
  std::vector<replication::Hello> hellos();
  // Ops received on the live stream, in order.
  std::vector<replication::Op> ReceivedOps();
  // Batch messages received on the live stream.
  int batches_received();
  // Each batch's `more_coming` (the sender asked to hold it for coalescing).
  std::vector<bool> more_coming_flags();
  // While held, the live stream takes nothing to send (ops queue up).
  void HoldSending(bool hold);
  // Waits until at least `n` ops were received.
  bool WaitForOps(size_t n, absl::Duration timeout);
  void Ack(uint64_t applied, uint64_t durable);
  // Breaks the live stream as a dying secondary would.
  void Break();
  int streams_opened();
  // DropConnection calls (a new transport connection for the next Open).
  int connections_dropped();
  void DropConnection() override;

 private:
  class Stream;
  absl::Mutex mu_;
  bool reachable_ ABSL_GUARDED_BY(mu_) = true;
  replication::HelloReply hello_reply_ ABSL_GUARDED_BY(mu_);
  std::function<void(const replication::Hello&)> on_hello_ ABSL_GUARDED_BY(mu_);
  std::vector<replication::Hello> hellos_ ABSL_GUARDED_BY(mu_);
  std::vector<replication::Op> received_ ABSL_GUARDED_BY(mu_);
  int batches_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<bool> more_coming_ ABSL_GUARDED_BY(mu_);
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<replication::SecondaryMessage> to_primary_ ABSL_GUARDED_BY(mu_);
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  int connections_dropped_ ABSL_GUARDED_BY(mu_) = 0;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;  // the live stream's Wake
  absl::Time wake_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();  // its WakeAt, if later
  int streams_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace blockrepl
