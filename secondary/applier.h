// Applier: the secondary's side of the replication protocol for one volume.
// It validates the handshake against its volume identity, then applies ops
// in sequence order: data writes, trims, zeroes, resync chunks; at a
// ordering barrier (a client's flush) it fsyncs before applying anything
// later, so the image is always a state the primary's disk was in at some
// flush. Epoch bounds the primary closes on its own order nothing: a flusher
// thread makes them durable in the background while later ops are applied,
// and reports them to the primary through the listener. During a resync the image
// is marked inconsistent (persisted before the first resync chunk lands)
// until RESYNC_DONE. Never serves reads to clients.
// Thread-safe; the ReplicaService feeds it one stream at a time.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/bitmap/bitmap_file.h"
#include "common/block_device.h"
#include "common/data_history.h"
#include "common/wire/stream_codec.h"
#include "replication.pb.h"
#include "secondary/replica_meta.h"
#include "secondary/undo_log.h"

namespace blockrepl {

class DirectWriteQueue;  // secondary/direct_write_queue.h

class Applier {
 public:
  // Limits of one VERIFY op (the primary sends at most 4 MiB per op).
  static constexpr uint64_t kMaxVerifyBytes = 64ull << 20;
  static constexpr uint64_t kMaxVerifyPieces = 16384;

  struct Snapshot {
    bool connected = false;
    std::string peer;
    bool consistent = true;
    bool resyncing = false;
    std::string followed_generation;
    uint64_t applied_seq = 0, durable_seq = 0;
    uint64_t applied_writes_total = 0, applied_bytes_total = 0, resync_bytes_total = 0;
    uint64_t streams_total = 0;
    std::string last_error;
    uint64_t store_errors_total = 0;  // store I/O failures while applying (see VolumeStatus)
    std::string last_store_error;
    bool undo_available = false;
    uint64_t undo_log_bytes = 0;
    std::string diverged_from;          // this image's own writes count from here ("" = none)
    uint64_t own_write_chunks = 0;      // chunks its own bitmap flags
    bool split_brain = false;           // the last Hello was refused as a split brain
    DiscardChoice resolution = DiscardChoice::kNone;
    bool promoted = false;
    bool direct_writes = false;       // aligned writes bypass the page cache (from direct_)
    uint64_t direct_writes_total = 0;  // writes the direct queue started (from direct_)
  };

  // `meta` is the loaded (or fresh) metadata; it is saved to `meta_path`.
  // `undo` (may be null: no rollback support) records what resyncs overwrite.
  // `own_bitmap` (may be null): the bitmap file of this store's time as a
  // primary (promoted, or the old primary failing back): the chunks it wrote
  // that its peer may lack, reported at the handshake and cleared once a
  // resync has overwritten them.
  Applier(std::string volume, BlockDevice* store, std::string meta_path, ReplicaMeta meta,
          std::unique_ptr<UndoLog> undo = nullptr, std::unique_ptr<BitmapFile> own_bitmap = nullptr);
  ~Applier();

  // Messages for the primary that do not answer a batch: the ack of a
  // background flush (durable_seq moved on) or the error of a failed one
  // (the stream must end). Called from the flusher thread, never under mu_;
  // Set(nullptr) returns once no call is running, so the stream it writes to
  // may then go away.
  using Listener = std::function<void(const replication::SecondaryMessage&)>;
  void SetListener(Listener listener) {
    absl::MutexLock lock(&listener_mu_);
    listener_ = std::move(listener);
  }

  // From now on aligned data writes go to the store through `direct`
  // (O_DIRECT, several in flight, drained before every other op and before
  // each ack) instead of the store's page cache. Set before the first stream.
  void UseDirectWrites(std::unique_ptr<DirectWriteQueue> direct);

  // Checks a primary's Hello; on acceptance records the history the image
  // now follows. Never writes the store.
  replication::HelloReply HandleHello(const replication::Hello& hello, const std::string& peer);
  // Applies a batch in order; fills `ack` with what is applied/durable now.
  // A non-OK status ends the stream (bad input or an I/O error). Payloads
  // are written from where they lie (the stream's receive buffers).
  absl::Status ApplyBatch(const IncomingBatch& batch, replication::Ack* ack);
  // The same for a protobuf batch (tests).
  absl::Status ApplyBatch(const replication::Batch& batch, replication::Ack* ack) {
    return ApplyBatch(IncomingBatch::View(batch), ack);
  }
  // The stream ended: persist the last applied seq.
  void StreamEnded(const std::string& reason);
  // Flushes the store and saves metadata (clean shutdown).
  absl::Status Shutdown();
  // The primary is gone mid-resync: restores the image to the consistent
  // state it had when the resync began, using the undo log. Afterwards the
  // image follows no primary history, so any primary does a full sync.
  absl::Status RollBackInterruptedResync();

  // `replctl resolve` here: kSecondary gives up this replica's own writes,
  // kPrimary the connecting primary's. For the next handshake only.
  void SetResolution(DiscardChoice discard);

  // Promotion (`replctl promote`): refuses while a primary is connected or
  // the image is inconsistent (rolled back first when an undo log covers
  // it; `force` takes it as it is). On success the meta says `promoted`,
  // every later Hello is refused, and the own bitmap file is closed so the
  // promoted volume can open it. Returns the meta as saved.
  absl::StatusOr<ReplicaMeta> Promote(bool force, const std::string& nbd_listen,
                                      const std::string& peer, bool* rolled_back);
  // Planned switchover: where this replica serves the volume when a HANDOVER
  // makes it the primary, where it then replicates to, and what runs the
  // promotion once the old primary's stream has ended (not under any lock
  // of the Applier).
  void SetPromotion(std::string nbd_listen, std::string peer,
                    std::function<void()> on_handover) {
    absl::MutexLock lock(&mu_);
    promote_nbd_listen_ = std::move(nbd_listen);
    promote_peer_ = std::move(peer);
    on_handover_ = std::move(on_handover);
  }
  // A volume promoted before a restart: its bitmap file belongs to the
  // promoted volume (one writer per file).
  void ReleaseOwnBitmap() {
    absl::MutexLock lock(&mu_);
    own_bitmap_.reset();
  }
  // Demotion: a replica again, following `history` (the promoted volume's,
  // as it stopped), its own writes in `own_bitmap`.
  absl::Status Demote(const DataHistory& history, std::unique_ptr<BitmapFile> own_bitmap);

  Snapshot snapshot() const;
  ReplicaMeta meta() const {
    absl::MutexLock lock(&mu_);
    return meta_;
  }
  const std::string& volume() const { return volume_; }
  uint64_t size() const { return store_->Size(); }

 private:
  absl::Status ValidateOp(const replication::Op& op, const PayloadView& payload,
                          uint64_t previous_seq) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status ApplyOp(const replication::Op& op, const PayloadView& payload)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `op` goes through direct_ (it only writes, and is aligned):
  // ApplyBatch sends those there, everything else to ApplyOp.
  bool IsDirectWrite(const replication::Op& op) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Waits for the direct writes in flight; their first failure.
  absl::Status DrainDirectWrites() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The flusher thread: syncs the store up to the latest durability-only
  // barrier, outside mu_, then publishes durable_seq and tells the listener.
  void FlushLoop();
  // VERIFY: checksums the range as it is now, after every earlier op.
  absl::Status Checksum(const replication::Op& op, replication::Ack* ack)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SaveMeta() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts a failed store call (status, detail, /metrics: store_errors_total).
  void NoteStoreError(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Before a batch lands on an inconsistent image with a valid undo log,
  // saves the old contents of everything it will overwrite.
  absl::Status SaveUndo(const IncomingBatch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefreshUndoStats() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The image is about to mix old and new chunks: persist "inconsistent"
  // and start a fresh undo log before the first one lands.
  absl::Status BecomeResyncTarget() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Own bitmap: the chunks it flags, as byte ranges; clearing them.
  std::vector<replication::ByteRange> OwnWrites() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status ClearOwnWrites() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RollBackLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StreamEndedLocked(const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AttachOwnBitmap(std::unique_ptr<BitmapFile> own_bitmap) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const std::string volume_;
  BlockDevice* const store_;
  const std::string meta_path_;
  const std::unique_ptr<UndoLog> undo_;  // used under mu_

  // One stream applies at a time, so holding mu_ across store I/O only ever
  // delays status readers, never another writer.
  mutable absl::Mutex mu_;
  ReplicaMeta meta_ ABSL_GUARDED_BY(mu_);
  std::string verify_buffer_ ABSL_GUARDED_BY(mu_);
  Snapshot stats_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<BitmapFile> own_bitmap_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<DirectWriteQueue> direct_ ABSL_GUARDED_BY(mu_);  // null: all through store_
  bool own_writes_pending_ ABSL_GUARDED_BY(mu_) = false;  // own_bitmap_ has bits set
  DiscardChoice resolution_ ABSL_GUARDED_BY(mu_) = DiscardChoice::kNone;
  std::string promote_nbd_listen_ ABSL_GUARDED_BY(mu_);
  std::string promote_peer_ ABSL_GUARDED_BY(mu_);
  std::function<void()> on_handover_ ABSL_GUARDED_BY(mu_);
  bool handover_pending_ ABSL_GUARDED_BY(mu_) = false;  // HANDOVER applied, stream not ended
  // Background durability: the latest durability-only barrier applied, and
  // the first failure of a background flush (refuses every later batch of
  // the stream, since a write it covered may not be on disk; reset when the
  // stream ends).
  uint64_t flush_requested_seq_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status flush_error_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Held while the listener runs (a blocking stream write), never together
  // with mu_.
  absl::Mutex listener_mu_;
  Listener listener_ ABSL_GUARDED_BY(listener_mu_);

  std::thread flusher_;  // last: starts after everything above is built
};

}  // namespace blockrepl
