// ReplicatingVolume: the primary's write pipeline for one volume, as a
// BlockDevice decorator the NBD frontend serves. For every write:
//   1. lock the write's chunks (overlapping writes and resync reads are
//      ordered the same way locally and in the stream),
//   2. bitmap StartWrite (bit durable before data),
//   3. write the local store,
//   4. hand the op to the Replicator (blocks while the window is full),
//   5. reply: async after 4; sync after the secondary applied it (FUA and
//      FLUSH: made it durable). The *Async forms run 1-4 on the caller's
//      thread and leave the wait of step 5 to the stream's thread.
// Reads go to the local store only. Thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "common/bitmap/write_intent_bitmap.h"
#include "common/block_device.h"
#include "common/range_lock.h"
#include "primary/history_keeper.h"
#include "primary/replicator.h"

namespace blockrepl {

class ReplicatingVolume : public BlockDevice {
 public:
  // `sync`: client replies wait for the secondary (see above).
  // `history` (may be null: tests) learns of every write made while no
  // secondary follows.
  ReplicatingVolume(BlockDevice* local, WriteIntentBitmap* bitmap, Replicator* replicator,
                    RangeLock* range_lock, bool sync, HistoryKeeper* history = nullptr);

  uint64_t Size() const override { return local_->Size(); }
  absl::Status Read(uint64_t offset, absl::Span<char> out) override;
  absl::Status Write(uint64_t offset, absl::Span<const char> data, bool fua) override;
  // The NBD session's path: the payload goes to the stream without a copy.
  absl::Status WriteOwned(uint64_t offset, Payload data, bool fua) override;
  absl::Status Flush() override;
  absl::Status Trim(uint64_t offset, uint64_t length, bool fua) override;
  absl::Status WriteZeroes(uint64_t offset, uint64_t length, bool may_trim, bool fua) override;
  void WriteOwnedAsync(uint64_t offset, Payload data, bool fua, Done done) override;
  void TrimAsync(uint64_t offset, uint64_t length, bool fua, Done done) override;
  void WriteZeroesAsync(uint64_t offset, uint64_t length, bool may_trim, bool fua,
                        Done done) override;

  // Planned switchover: from now on every call fails with `why` (the volume
  // is served elsewhere). Writes waiting for the range lock fail too.
  void Close(const std::string& why);

  // Local store calls that failed (the client got the error), and the latest message.
  uint64_t store_errors() const { return store_errors_.load(std::memory_order_relaxed); }
  std::string last_store_error() const;

 private:
  // Unavailable after Close(), else OK.
  absl::Status CheckOpen() const;
  // Counts a failed local store call; returns `status` unchanged.
  absl::Status NoteStoreError(absl::Status status);
  // Locks the chunks of a byte range under the current bitmap layout.
  RangeLock::Holder LockChunks(uint64_t offset, uint64_t length, ChunkRange* chunks);
  // What a modifying op's reply waits for in sync mode (seq 0: nothing).
  struct AckToAwait {
    ReplicationTicket ticket;
    Replicator::WaitFor what = Replicator::WaitFor::kApplied;
  };
  // Steps 1-4 for any modifying op; `local_op(payload)` performs step 3;
  // `payload` (then moved into the stream) is the data of a WRITE, empty
  // otherwise. Returns what step 5 waits for.
  template <typename LocalOp>
  absl::StatusOr<AckToAwait> Modify(replication::Op::Kind kind, uint64_t offset, uint64_t length,
                                    Payload payload, bool fua, LocalOp local_op);
  // Steps 1-4 for each kind of op (the sync and async forms share them).
  absl::StatusOr<AckToAwait> ModifyWrite(uint64_t offset, Payload data, bool fua);
  absl::StatusOr<AckToAwait> ModifyTrim(uint64_t offset, uint64_t length, bool fua);
  absl::StatusOr<AckToAwait> ModifyZeroes(uint64_t offset, uint64_t length, bool may_trim,
                                          bool fua);
  // Step 5, blocking or through `done`.
  absl::Status AwaitAck(absl::StatusOr<AckToAwait> ack);
  void CompleteOnAck(absl::StatusOr<AckToAwait> ack, Done done);

  // Constant after construction; all pointees are thread-safe.
  BlockDevice* const local_;
  WriteIntentBitmap* const bitmap_;
  Replicator* const replicator_;
  RangeLock* const range_lock_;
  const bool sync_;
  HistoryKeeper* const history_;
  std::atomic<bool> closed_{false};
  std::string closed_reason_ ABSL_GUARDED_BY(error_mu_);

  std::atomic<uint64_t> store_errors_{0};
  // Client writes between entering Modify and handing their op to the
  // stream. One finding another means clients keep several writes in
  // flight, which lets the replicator's batches linger (batch_linger).
  std::atomic<int> writes_in_progress_{0};
  mutable absl::Mutex error_mu_;
  std::string last_store_error_ ABSL_GUARDED_BY(error_mu_);
};

}  // namespace blockrepl
