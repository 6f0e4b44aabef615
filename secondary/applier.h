// Applier: the secondary's side of the replication protocol for one volume.
// It validates the handshake against its volume identity, then applies ops
// in sequence order: data writes, trims, zeroes, resync chunks; at a
// barrier it fsyncs before applying anything later, so the image is always
// a state the primary's disk was in at some flush. During a resync the image
// is marked inconsistent (persisted before the first resync chunk lands)
// until RESYNC_DONE. Never serves reads to clients.
// Thread-safe; the ReplicaService feeds it one stream at a time.
#pragma once

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/block_device.h"
#include "replication.pb.h"
#include "secondary/replica_meta.h"
#include "secondary/undo_log.h"

namespace blockrepl {

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
  };

  // `meta` is the loaded (or fresh) metadata; it is saved to `meta_path`.
  // `undo` (may be null: no rollback support) records what resyncs overwrite.
  Applier(std::string volume, BlockDevice* store, std::string meta_path, ReplicaMeta meta,
          std::unique_ptr<UndoLog> undo = nullptr);

  // Checks a primary's Hello; on acceptance records the history the image
  // now follows. Never writes the store.
  replication::HelloReply HandleHello(const replication::Hello& hello, const std::string& peer);
  // Applies a batch in order; fills `ack` with what is applied/durable now.
  // A non-OK status ends the stream (bad input or an I/O error).
  absl::Status ApplyBatch(const replication::Batch& batch, replication::Ack* ack);
  // The stream ended: persist the last applied seq.
  void StreamEnded(const std::string& reason);
  // Flushes the store and saves metadata (clean shutdown).
  absl::Status Shutdown();
  // The primary is gone mid-resync: restores the image to the consistent
  // state it had when the resync began, using the undo log. Afterwards the
  // image follows no primary history, so any primary does a full sync.
  absl::Status RollBackInterruptedResync();

  Snapshot snapshot() const;
  const std::string& volume() const { return volume_; }
  uint64_t size() const { return store_->Size(); }

 private:
  absl::Status ValidateOp(const replication::Op& op, uint64_t previous_seq) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status ApplyOp(const replication::Op& op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // VERIFY: checksums the range as it is now, after every earlier op.
  absl::Status Checksum(const replication::Op& op, replication::Ack* ack)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SaveMeta() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts a failed store call (status, detail, /metrics: store_errors_total).
  void NoteStoreError(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Before a batch lands on an inconsistent image with a valid undo log,
  // saves the old contents of everything it will overwrite.
  absl::Status SaveUndo(const replication::Batch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefreshUndoStats() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

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
};

}  // namespace blockrepl
