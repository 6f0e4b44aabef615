#include "primary/replicating_volume.h"

#include "absl/cleanup/cleanup.h"

#include "common/status_macros.h"

namespace blockrepl {

using replication::Op;

ReplicatingVolume::ReplicatingVolume(BlockDevice* local, WriteIntentBitmap* bitmap,
                                     Replicator* replicator, RangeLock* range_lock, bool sync,
                                     HistoryKeeper* history)
    : local_(local), bitmap_(bitmap), replicator_(replicator), range_lock_(range_lock),
      sync_(sync), history_(history) {}

void ReplicatingVolume::Close(const std::string& why) {
  absl::MutexLock lock(&error_mu_);
  closed_reason_ = why;
  closed_.store(true, std::memory_order_release);
}

absl::Status ReplicatingVolume::CheckOpen() const {
  if (!closed_.load(std::memory_order_acquire)) return absl::OkStatus();
  absl::MutexLock lock(&error_mu_);
  return absl::UnavailableError(closed_reason_);
}

absl::Status ReplicatingVolume::Read(uint64_t offset, absl::Span<char> out) {
  RETURN_IF_ERROR(CheckOpen());
  absl::Status status = local_->Read(offset, out);
  return status.ok() ? status : NoteStoreError(std::move(status));
}

absl::Status ReplicatingVolume::NoteStoreError(absl::Status status) {
  store_errors_.fetch_add(1, std::memory_order_relaxed);
  absl::MutexLock lock(&error_mu_);
  last_store_error_ = std::string(status.message());
  return status;
}

std::string ReplicatingVolume::last_store_error() const {
  absl::MutexLock lock(&error_mu_);
  return last_store_error_;
}

RangeLock::Holder ReplicatingVolume::LockChunks(uint64_t offset, uint64_t length,
                                                ChunkRange* chunks) {
  while (true) {
    const uint64_t layout = bitmap_->layout_version();
    *chunks = bitmap_->ChunksFor(offset, length);
    RangeLock::Holder hold = range_lock_->Lock(chunks->first, chunks->end);
    // A bitmap rescale may have run while we waited: our chunk indexes would
    // then name other bytes. Recompute under the new layout.
    if (bitmap_->layout_version() == layout) return hold;
  }
}

template <typename LocalOp>
absl::StatusOr<ReplicatingVolume::AckToAwait> ReplicatingVolume::Modify(
    Op::Kind kind, uint64_t offset, uint64_t length, Payload payload, bool fua,
    LocalOp local_op) {
  if (length == 0) return AckToAwait{};
  if (writes_in_progress_.fetch_add(1, std::memory_order_relaxed) > 0) {
    replicator_->NoteOverlappingClientWrites();
  }
  absl::Cleanup done_in_progress = [this] {
    writes_in_progress_.fetch_sub(1, std::memory_order_relaxed);
  };
  ChunkRange chunks;
  RangeLock::Holder hold = LockChunks(offset, length, &chunks);
  RETURN_IF_ERROR(CheckOpen());  // after the wait: a switchover may have run meanwhile
  if (history_ != nullptr) {
    // Before the bit and the data: a crash must not leave a write made
    // alone without the record that this side wrote alone.
    absl::Status s =
        history_->BeforeLocalWrite([this] { return replicator_->peer_following(); });
    if (!s.ok()) return NoteStoreError(std::move(s));
  }
  absl::Status status = bitmap_->StartWrite(chunks);
  if (!status.ok()) {
    // Nothing was written: the chunks are no dirtier than before.
    bitmap_->EndWrite(chunks, /*replicated=*/true);
    return status;
  }
  status = local_op(payload);
  if (!status.ok()) {
    // The local range may be partly written: let resync carry whatever it
    // now holds to the secondary.
    bitmap_->EndWrite(chunks, /*replicated=*/false);
    return NoteStoreError(std::move(status));
  }
  ReplicationTicket ticket = replicator_->Submit(kind, offset, length, std::move(payload), chunks);
  hold.Release();
  if (!sync_ || ticket.seq == 0) return AckToAwait{};
  // If the secondary drops meanwhile, the write stays correct locally and
  // flagged in the bitmap (as DRBD does when the peer disconnects).
  if (fua) return AckToAwait{replicator_->SubmitBarrier(), Replicator::WaitFor::kDurable};
  return AckToAwait{ticket, Replicator::WaitFor::kApplied};
}

absl::Status ReplicatingVolume::AwaitAck(absl::StatusOr<AckToAwait> ack) {
  if (!ack.ok()) return ack.status();
  if (ack->ticket.seq != 0) replicator_->Wait(ack->ticket, ack->what);
  return absl::OkStatus();
}

void ReplicatingVolume::CompleteOnAck(absl::StatusOr<AckToAwait> ack, Done done) {
  if (!ack.ok()) return std::move(done)(ack.status());
  if (ack->ticket.seq == 0) return std::move(done)(absl::OkStatus());
  // Reached or not, the write is good locally (see Modify).
  replicator_->WhenReached(ack->ticket, ack->what, [done = std::move(done)](bool) mutable {
    std::move(done)(absl::OkStatus());
  });
}

absl::Status ReplicatingVolume::Write(uint64_t offset, absl::Span<const char> data, bool fua) {
  return WriteOwned(offset, Payload::CopyOf({data.data(), data.size()}), fua);
}

absl::StatusOr<ReplicatingVolume::AckToAwait> ReplicatingVolume::ModifyWrite(
    uint64_t offset, Payload data, bool fua) {
  const uint64_t length = data.size();
  return Modify(Op::WRITE, offset, length, std::move(data), fua, [&](const Payload& payload) {
    return local_->Write(offset, payload.span(), fua);
  });
}

absl::StatusOr<ReplicatingVolume::AckToAwait> ReplicatingVolume::ModifyTrim(
    uint64_t offset, uint64_t length, bool fua) {
  return Modify(Op::TRIM, offset, length, Payload(), fua,
                [&](const Payload&) { return local_->Trim(offset, length, fua); });
}

// The secondary always punches or zeroes the same way (see applier), so
// both stores read back zeroes whatever `may_trim` chose here.
absl::StatusOr<ReplicatingVolume::AckToAwait> ReplicatingVolume::ModifyZeroes(
    uint64_t offset, uint64_t length, bool may_trim, bool fua) {
  return Modify(Op::WRITE_ZEROES, offset, length, Payload(), fua, [&](const Payload&) {
    return local_->WriteZeroes(offset, length, may_trim, fua);
  });
}

absl::Status ReplicatingVolume::WriteOwned(uint64_t offset, Payload data, bool fua) {
  return AwaitAck(ModifyWrite(offset, std::move(data), fua));
}

void ReplicatingVolume::WriteOwnedAsync(uint64_t offset, Payload data, bool fua, Done done) {
  CompleteOnAck(ModifyWrite(offset, std::move(data), fua), std::move(done));
}

absl::Status ReplicatingVolume::Trim(uint64_t offset, uint64_t length, bool fua) {
  return AwaitAck(ModifyTrim(offset, length, fua));
}

void ReplicatingVolume::TrimAsync(uint64_t offset, uint64_t length, bool fua, Done done) {
  CompleteOnAck(ModifyTrim(offset, length, fua), std::move(done));
}

absl::Status ReplicatingVolume::WriteZeroes(uint64_t offset, uint64_t length, bool may_trim,
                                            bool fua) {
  return AwaitAck(ModifyZeroes(offset, length, may_trim, fua));
}

void ReplicatingVolume::WriteZeroesAsync(uint64_t offset, uint64_t length, bool may_trim,
                                         bool fua, Done done) {
  CompleteOnAck(ModifyZeroes(offset, length, may_trim, fua), std::move(done));
}

absl::Status ReplicatingVolume::Flush() {
  // Every write replied before this flush was already handed to the stream,
  // so the barrier orders after all of them.
  RETURN_IF_ERROR(CheckOpen());
  absl::Status status = local_->Flush();
  if (!status.ok()) return NoteStoreError(std::move(status));
  ReplicationTicket barrier = replicator_->SubmitBarrier();
  if (sync_) replicator_->Wait(barrier, Replicator::WaitFor::kDurable);
  return absl::OkStatus();
}

}  // namespace blockrepl
