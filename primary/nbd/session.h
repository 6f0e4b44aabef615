// One NBD client connection: handshake, then the transmission loop
// (read through one receive buffer, RequestReader -> validate -> device
// call on the shared worker pool -> reply).
// Run() owns the socket's read side and is called once, on the session's
// own thread; requests execute concurrently on the pool and reply out of
// order (one thread at a time writes replies, taking along those queued
// meanwhile: see SendReply). Modifying requests complete through the
// device's asynchronous calls, so a request waiting for the secondary holds
// no pool thread. Shutdown()/ForceShutdown() may be called from any
// thread and make Run() return once the requests in flight have finished.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "common/payload.h"
#include "primary/nbd/nbd_options.h"
#include "primary/nbd/nbd_wire.h"
#include "primary/nbd/worker_pool.h"

namespace blockrepl::nbd {

class Session {
 public:
  // Takes ownership of the connected socket `fd`. `exports`, `options`,
  // `pool` and `stats` must outlive the session.
  Session(int fd, std::string peer, absl::Span<const Export> exports, const ServerOptions& options,
          WorkerPool* pool, Stats* stats);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Handshake and transmission until DISC, EOF, a fatal protocol error or
  // Shutdown(); waits for in-flight requests, then closes the socket.
  void Run();

  // Stops reading (shutdown(SHUT_RD) unblocks Run()'s recv); requests in
  // flight still finish and send their replies. Idempotent.
  void Shutdown();
  // Also stops writing, for a peer that does not read its replies. Idempotent.
  void ForceShutdown();

  // True once Run() has returned (the thread may be joined without waiting).
  bool done() const { return done_.load(std::memory_order_acquire); }

 private:
  struct Request {
    uint16_t flags = 0;
    uint16_t type = 0;
    uint64_t cookie = 0;
    uint64_t offset = 0;
    uint32_t length = 0;
    // A WRITE's payload, received straight into it and handed to the device
    // (and on to the replication stream) uncopied.
    Payload data;
    std::chrono::steady_clock::time_point received;  // header and payload in
  };

  void Transmission(const Export& e);
  // NBD error (0 if valid) for a request's type, flags and range.
  uint32_t Validate(const Export& e, const Request& r) const;
  // Blocks until the request fits under the per-connection limits and then
  // accounts for it. False if the session is shutting down. `*alone`: every
  // other request of this connection had its reply queued already.
  bool Admit(uint64_t buffered_bytes, bool* alone);
  // Starts the device call; Finish() runs when it completes (for a
  // modifying request possibly later, on another thread).
  void Execute(const Export& e, std::shared_ptr<Request> r);
  // Replies, counts and releases the request's place in flight.
  void Finish(const Export& e, Request& r, const absl::Status& status,
              std::unique_ptr<char[]> read_buffer = nullptr);
  // Queues a simple reply (`data`: `length` bytes, only for a successful
  // READ) and sends it, with every reply queued meanwhile, unless another
  // thread is already sending: that one takes it along. At QD 32 replies
  // bunch, and one sendmsg (one wake-up of the client) then carries several.
  // Inside a CompletionBatch (an ack completing many writes) the sending
  // waits for the batch's end, so the whole batch goes in one sendmsg.
  // The READ's `length` stays counted in buffered_bytes_ until it is sent.
  void SendReply(uint64_t cookie, uint32_t error, std::unique_ptr<char[]> data = nullptr,
                 uint32_t length = 0);
  // Sends queued replies until none is left, then gives up sending_ (which
  // the caller holds) and returns true. With `dont_wait`, returns false
  // instead of waiting for a full socket, keeping sending_ and what is left
  // in unsent_ for the next call.
  bool SendQueuedReplies(bool dont_wait);
  // Puts `batch` on the wire from byte `*offset` on and advances it; with
  // `dont_wait` only as far as the socket takes now (kSocketFull if that
  // was not all of it).
  struct PendingReply;
  enum class SendResult { kSent, kSocketFull, kFailed };
  SendResult SendBatch(std::vector<PendingReply>& batch, bool dont_wait, uint64_t* offset);
  void Log(std::string_view message);
  // Where request counters of export `e` go.
  Stats* StatsFor(const Export& e) const { return e.stats != nullptr ? e.stats : stats_; }

  // Constant after construction.
  const int fd_;
  const std::string peer_;
  const absl::Span<const Export> exports_;
  const ServerOptions& options_;
  WorkerPool* const pool_;
  Stats* const stats_;

  std::atomic<bool> done_{false};
  // Admitted requests whose reply is not queued yet: the queue depth the
  // client sees. Dropped before the reply goes out (in_flight_ only after
  // it), so a client at queue depth 1 never finds its previous request
  // still counted.
  std::atomic<int> unanswered_{0};
  std::atomic<bool> logged_device_error_{false};
  // Mirrors stopping_ for the logging decisions that must not take mu_.
  std::atomic<bool> stop_requested_{false};

  struct PendingReply {
    char header[kSimpleReplySize];
    std::unique_ptr<char[]> data;
    uint32_t length = 0;
  };
  // Replies waiting for the thread that is sending (`sending_`). Only that
  // thread writes to the socket, so header and data stay together on the wire.
  absl::Mutex write_mu_;                            // never held together with mu_
  std::vector<PendingReply> replies_ ABSL_GUARDED_BY(write_mu_);
  bool sending_ ABSL_GUARDED_BY(write_mu_) = false;
  bool broken_ ABSL_GUARDED_BY(write_mu_) = false;  // a send failed; drop the rest
  // Owned by the thread holding sending_: a batch taken off replies_ and
  // sent up to unsent_offset_ bytes (a completion thread left the rest).
  std::vector<PendingReply> unsent_;
  uint64_t unsent_offset_ = 0;

  // State below is protected by mu_.
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;  // fd_ closed: Shutdown() must not touch it
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t buffered_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace blockrepl::nbd
