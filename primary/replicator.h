// Replicator: the primary's end of the replication stream for one volume.
// It numbers operations, keeps the in-flight window (count AND bytes),
// sends ops in batches over one stream, processes cumulative acks, and
// releases bitmap chunks (EndWrite) once the secondary has them durably.
// When the stream breaks it marks every unacknowledged chunk needs-sync and
// reconnects with backoff; the Resyncer then copies exactly those chunks.
//
// Thread-safe. One thread of its own, the manager: it connects, handshakes,
// then drives the live stream's event loop (ReplicationStream::Run), which
// sends batches, handles acks and runs the timers. Writers wake it when they
// queue a batch that may go. Lock order: callers may hold RangeLock ranges
// when calling Submit; under mu_ Replicator calls out only to the live
// stream's Wake and Cancel, which take no lock of ours.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/bitmap/write_intent_bitmap.h"
#include "common/compression.h"
#include "common/metrics/latency_histogram.h"
#include "common/data_history.h"
#include "common/payload.h"
#include "primary/history_keeper.h"
#include "primary/replication_channel.h"
#include "replication.pb.h"

namespace blockrepl {

struct ReplicatorOptions {
  std::string volume;
  uint64_t size_bytes = 0;
  uint32_t chunk_size = 65536;
  std::string generation;       // identity of this primary's data history (when no `history`)
  // The primary's data history, read at each handshake; null in tests: then
  // {generation}, never diverged.
  const HistoryKeeper* history = nullptr;
  std::string volume_uuid;      // identity of the volume ("" for an in-memory bitmap)
  bool replace_replica = false; // --force-full-resync: a replica of another UUID may be replaced
  bool assume_clean = false;    // a brand-new secondary already equals us
  uint64_t max_inflight_writes = 512;
  uint64_t max_inflight_bytes = 64ull << 20;
  // Close an epoch (a durability-only barrier) after this many writes. Each
  // costs the secondary an fdatasync (a journal commit and a disk cache
  // flush), so the age below is the usual bound; 2048 (DRBD's
  // max-epoch-size) was measurably slower at 4 KiB random writes
  // (docs/PERFORMANCE.md).
  uint64_t max_epoch_writes = 65536;
  bool checksum = true;               // send an XXH3-64 of each data payload
  CompressionSpec compression;        // per-op payload compression (--compress)
  // --on-congestion=pull-ahead: once client writes have found the window
  // full for `congestion_timeout` in a row, writes are only marked in the
  // bitmap ("ahead") until the window has drained to half; the resync then
  // brings the secondary up (DRBD's pull-ahead). Async only.
  bool pull_ahead = false;
  absl::Duration congestion_timeout = absl::Seconds(1);
  absl::Duration idle_barrier_delay = absl::Milliseconds(20);
  // Close an epoch at least this often under a steady flush-free load, so
  // durability (and bit clearing) never lags by more than this.
  absl::Duration max_epoch_age = absl::Seconds(2);
  uint64_t max_batch_bytes = 1 << 20;
  int max_batch_ops = 256;
  // A batch of resync chunks only may hold this much instead: the secondary
  // saves each batch's old contents to its undo log with one fdatasync, so
  // fewer, larger batches make a bitmap resync faster (docs/PERFORMANCE.md,
  // round 11). Client writes keep max_batch_bytes: the secondary acks a
  // batch as a whole, and their acks are what sync-mode clients wait for.
  uint64_t max_resync_batch_bytes = 4 << 20;
  // Nagle's rule for the stream: while this many batches are unacknowledged,
  // a batch that is not full (max_batch_ops / max_batch_bytes) waits for an
  // ack. Without it a sender woken for every write sends batches of one or
  // two when cores are scarce (each then costs a message, an ack and a
  // wake-up on both sides); with it, batches grow to what arrives in one
  // round trip. Full batches never wait, so it caps no link's throughput.
  int max_partial_batches_in_flight = 2;
  // Write-behind's batching (--batch-linger; async mode only, where no client
  // waits for an ack): a partial batch of client writes that Nagle's rule
  // would let go waits until this long after its first write was queued, so
  // a batch carries what arrives in that time rather than in one round trip.
  // Fewer, larger messages cost both agents fewer wake-ups per write when
  // cores are scarce. Zero sends at once. Never delays a full batch, a batch
  // with anything but client writes in it (barriers, verifies, resync
  // chunks), any batch while the window is half full, or any batch unless
  // clients have had overlapping writes lately (NoteOverlappingClientWrites).
  absl::Duration batch_linger = absl::ZeroDuration();
  absl::Duration linger_overlap_memory = absl::Milliseconds(100);
  // A partial batch this large is worth a message: it lingers no more. At
  // 64 KiB writes, waiting for a bigger batch only left the secondary idle
  // (PERFORMANCE.md, round 12); per-message costs count at small writes.
  uint64_t linger_batch_bytes = 256 << 10;
  absl::Duration connect_timeout = absl::Seconds(2);
  absl::Duration handshake_timeout = absl::Seconds(10);
  // Dead-peer detection: writes in flight and no ack for this long breaks
  // the stream (then the usual mark-and-resync path), even when the
  // transport looks alive (e.g. the secondary's disk hangs).
  absl::Duration peer_timeout = absl::Seconds(15);
  absl::Duration min_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(5);
  // Tests only: runs in Submit between its lock-free look for a peer and its
  // lock, so a test can bring a peer in at that moment (null in the agents).
  std::function<void()> submit_race_for_test;
};

// Identifies a submitted op. seq 0 means "not replicated" (disconnected).
struct ReplicationTicket {
  uint64_t seq = 0;
  uint64_t connection = 0;
};

class Replicator {
 public:
  enum class ConnectionState { kDisconnected, kConnecting, kConnected };
  enum class WaitFor { kApplied, kDurable };

  struct Snapshot {
    ConnectionState connection = ConnectionState::kDisconnected;
    uint64_t inflight_writes = 0, inflight_bytes = 0;
    uint64_t peak_inflight_writes = 0, peak_inflight_bytes = 0;
    uint64_t awaiting_durable = 0;
    uint64_t sent_seq = 0, acked_seq = 0, durable_seq = 0;
    uint64_t replicated_writes_total = 0, replicated_bytes_total = 0;
    uint64_t connects_total = 0;
    uint64_t batches_sent_total = 0;     // stream messages carrying ops
    bool peer_consistent = false;
    bool operator_disconnected = false;
    bool ahead = false;                  // pull-ahead: live writes only marked now
    uint64_t ahead_writes_total = 0;     // client writes marked instead of sent
    uint64_t ahead_episodes_total = 0;
    // --compress: payload bytes before and after compression (all payloads,
    // including those sent raw because they did not compress).
    uint64_t compression_input_bytes = 0, compression_output_bytes = 0;
    std::string last_error;
    bool split_brain = false;            // the last handshake was refused as a split brain
    DiscardChoice resolution = DiscardChoice::kNone;  // `replctl resolve`, not used yet
  };

  Replicator(ReplicatorOptions options, WriteIntentBitmap* bitmap, ReplicationChannel* channel);
  ~Replicator();

  void Start();
  // Stops reconnecting and breaks the stream; unacknowledged chunks are
  // marked needs-sync. Idempotent.
  void Stop();

  // A client write found another one still on its way to the stream:
  // clients keep several writes in flight, so partial batches may linger
  // (batch_linger) for the next linger_overlap_memory. A client that waits for each
  // write (queue depth 1) would only wait longer for its own writes, and the
  // cores it leaves idle make its next wake-ups dearer on a VM (PERFORMANCE.md,
  // round 12). Lock-free.
  void NoteOverlappingClientWrites() {
    // At queue depth 32 nearly every write calls this: storing only when the
    // last note is a millisecond old keeps the writers on both cores from
    // passing the cache line back and forth.
    const int64_t now = absl::ToUnixNanos(absl::Now());
    if (now - last_overlap_ns_.load(std::memory_order_relaxed) > 1'000'000) {
      last_overlap_ns_.store(now, std::memory_order_relaxed);
    }
  }

  // Hands a data op to the stream, blocking while the window is full. The
  // Replicator calls bitmap->EndWrite(chunks, ...) for it exactly once:
  // immediately (not replicated) when disconnected, else on the durable ack
  // or when the stream breaks.
  ReplicationTicket Submit(replication::Op::Kind kind, uint64_t offset, uint64_t length,
                           Payload data, ChunkRange chunks);
  // Closes the current epoch: everything submitted before is made durable
  // on the secondary before anything after is applied.
  ReplicationTicket SubmitBarrier(replication::Op::Kind kind = replication::Op::BARRIER);
  // Blocks until the op is applied/durable on the secondary (true) or the
  // stream it was sent on broke (false).
  bool Wait(const ReplicationTicket& ticket, WaitFor what);
  // The same without a waiting thread: `reached(bool)` runs once, with what
  // Wait would return: at once on the calling thread if that is known now,
  // else on the stream's thread inside a CompletionBatch (the completions of
  // one ack are coalesced) or on the thread that finds the stream broken.
  // `reached` must not block and must not call back into the Replicator's
  // waits. Sync-mode NBD writes complete this way: a thread blocked per
  // write costs a wake-up per write where an ack covers a whole batch.
  using Reached = absl::AnyInvocable<void(bool) &&>;
  void WhenReached(const ReplicationTicket& ticket, WaitFor what, Reached reached);
  // Waits until nothing is in flight and everything is durable.
  bool Drain(absl::Duration timeout);

  // Queues a VERIFY of [offset, offset+length) in `piece`-byte pieces
  // behind every op submitted before it; seq 0 when not connected.
  ReplicationTicket SubmitVerify(uint64_t offset, uint64_t length, uint32_t piece);
  // The secondary's checksums for a SubmitVerify ticket. Unavailable if the
  // stream broke first, DeadlineExceeded after `timeout`.
  absl::StatusOr<std::vector<uint64_t>> AwaitVerify(const ReplicationTicket& ticket,
                                                   absl::Duration timeout);

  // Operator control (`replctl disconnect|connect`): while disconnected the
  // stream stays down and writes are only marked in the bitmap. Connecting
  // retries at once instead of after the backoff.
  void SetOperatorDisconnected(bool disconnected);

  // `replctl resolve`: applies to the next handshake only (kNone cancels),
  // which starts at once.
  void SetResolution(DiscardChoice discard);
  // A secondary is connected and receives our writes (lock-free, for the
  // write path: a write while this is false makes the history diverge).
  bool peer_following() const { return peer_following_.load(std::memory_order_acquire); }

  // The live connection's id, 0 when not connected.
  uint64_t live_connection() const;
  // Blocks up to `timeout` for a live connection; returns its id or 0.
  uint64_t WaitUntilConnected(absl::Duration timeout);
  Snapshot snapshot() const;
  std::string peer() const { return channel_->peer(); }
  // Where the connected secondary would serve the volume if promoted (its
  // --nbd-listen, from the handshake); "" when not connected or none.
  std::string peer_promote_nbd_listen() const {
    absl::MutexLock lock(&mu_);
    return live_connection_ != 0 ? peer_promote_nbd_listen_ : std::string();
  }
  // Time from handing a write (or resync chunk) to the stream until the
  // secondary acks it as applied: the WAN round trip plus queueing.
  const LatencyHistogram& ack_latency() const { return ack_latency_; }

 private:
  struct InflightOp {
    uint64_t seq;
    uint64_t bytes;
    bool counts_in_window;
    ChunkRange chunks;
    std::chrono::steady_clock::time_point enqueued;  // for the ack latency histogram
  };

  class StreamDriver;  // our side of a live stream's event loop (StreamEvents)

  void ManagerLoop();
  // Connects and handshakes; returns the stream or nullptr (error recorded).
  std::unique_ptr<ReplicationStream> Connect();
  // The live stream's events, on the manager thread (see StreamEvents).
  StreamEvents::Next NextBatch(uint64_t connection, replication::PrimaryMessage* message,
                               std::vector<Payload>* payloads, bool* more_coming,
                               absl::Time* retry_at);
  bool OnSecondaryMessage(uint64_t connection, const replication::SecondaryMessage& message);
  bool OnStreamTick(uint64_t connection);
  // When the next batch may go: InfinitePast (now) when a full one is
  // waiting, or Nagle's rule lets a partial one go and it need not linger;
  // the end of its linger (batch_linger) when it is to wait for more writes;
  // InfiniteFuture when nothing is queued or Nagle's rule holds it for an ack.
  absl::Time SendDueLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool SendReadyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True (and the connection marked broken) when `connection` has had ops in
  // flight without any ack for longer than the peer timeout.
  bool PeerTimedOut(uint64_t connection);
  // Keeps window_high_since_ up to date after the window's fill changed.
  void NoteWindowLevelLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleAck(const replication::Ack& ack);
  // Takes the WhenReached callbacks of `waiters` whose seq is <= `seq`.
  using Waiters = std::multimap<uint64_t, Reached>;
  static void TakeReachedLocked(Waiters& waiters, uint64_t seq, std::vector<Reached>& out);
  // Runs callbacks taken from the waiters, outside mu_, in one batch.
  static void RunReached(std::vector<Reached>& reached, bool outcome);
  // Fails everything in flight: its chunks become needs-sync.
  void ConnectionLost(const std::string& reason);
  void MarkBroken(uint64_t connection, const std::string& reason);
  void SetError(const std::string& error);
  // Appends an op to the send queue and wakes the stream if a batch may go.
  // Requires a live connection.
  uint64_t EnqueueLocked(replication::Op op, bool counts_in_window, ChunkRange chunks,
                         Payload payload = {})
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SleepInterruptible(absl::Duration d);

  // Constant after construction.
  const ReplicatorOptions options_;
  WriteIntentBitmap* const bitmap_;
  ReplicationChannel* const channel_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  ConnectionState state_ ABSL_GUARDED_BY(mu_) = ConnectionState::kDisconnected;
  uint64_t connection_counter_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t live_connection_ ABSL_GUARDED_BY(mu_) = 0;   // 0 = none
  bool broken_ ABSL_GUARDED_BY(mu_) = false;             // the live stream failed
  std::string broken_reason_ ABSL_GUARDED_BY(mu_);
  ReplicationStream* live_stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  // An op and, beside it, its uncompressed payload (compressed ones are in
  // the op): the payload goes to gRPC as it came from the NBD socket.
  struct QueuedOp {
    replication::Op op;
    Payload payload;
  };
  std::deque<QueuedOp> send_queue_ ABSL_GUARDED_BY(mu_);
  uint64_t send_queue_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // expanded, as batches count them
  // batch_linger: when the queue last went from empty to not, and how many
  // queued ops are not client writes (any of them sends the batch at once).
  absl::Time oldest_queued_at_ ABSL_GUARDED_BY(mu_);
  uint64_t unlingering_queued_ ABSL_GUARDED_BY(mu_) = 0;
  // Last seq of each batch sent and not yet applied (max_partial_batches_in_flight).
  std::deque<uint64_t> unacked_batches_ ABSL_GUARDED_BY(mu_);
  absl::Time last_send_ ABSL_GUARDED_BY(mu_);  // idle barriers count from here
  std::deque<InflightOp> inflight_ ABSL_GUARDED_BY(mu_);         // sent/queued, not applied
  std::deque<InflightOp> awaiting_durable_ ABSL_GUARDED_BY(mu_); // applied, not durable
  // Chunk ranges taken off the queues whose bitmap counts are being released
  // outside mu_ (the bitmap has its own lock). Drain waits for these too, or a
  // rescale could see a count that is about to drop.
  uint64_t releases_pending_ ABSL_GUARDED_BY(mu_) = 0;
  // When the secondary last acked something, or the window last went from
  // empty to non-empty (the peer timeout counts from there).
  absl::Time last_progress_ ABSL_GUARDED_BY(mu_);
  // WhenReached callbacks of the live connection by seq, until the acks
  // reach them or the connection is lost.
  Waiters applied_waiters_ ABSL_GUARDED_BY(mu_);
  Waiters durable_waiters_ ABSL_GUARDED_BY(mu_);
  // VERIFY results by seq, until AwaitVerify takes them.
  absl::flat_hash_map<uint64_t, std::vector<uint64_t>> verify_results_ ABSL_GUARDED_BY(mu_);
  bool operator_disconnected_ ABSL_GUARDED_BY(mu_) = false;
  DiscardChoice resolution_ ABSL_GUARDED_BY(mu_) = DiscardChoice::kNone;
  std::string peer_promote_nbd_listen_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> peer_following_{false};
  bool ahead_ ABSL_GUARDED_BY(mu_) = false;  // pull-ahead in effect (see ReplicatorOptions)
  // Since when the window has been at least 3/4 full without a break
  // (pull-ahead's congestion signal); InfiniteFuture when it is not.
  absl::Time window_high_since_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool connect_now_ ABSL_GUARDED_BY(mu_) = false;  // cut the reconnect backoff short
  uint64_t inflight_writes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t inflight_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t writes_since_barrier_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time epoch_start_ ABSL_GUARDED_BY(mu_);  // when the first unbarriered write went in
  uint64_t resync_done_seq_ ABSL_GUARDED_BY(mu_) = 0;
  Snapshot stats_ ABSL_GUARDED_BY(mu_);  // counters and seqs reported by snapshot()

  LatencyHistogram ack_latency_;  // lock-free
  std::atomic<int64_t> last_overlap_ns_{0};  // NoteOverlappingClientWrites (Unix ns)
  AdaptiveCompressor compressor_{options_.compression};  // thread-safe

  std::thread manager_;
};

const char* ConnectionStateName(Replicator::ConnectionState state);

}  // namespace blockrepl
