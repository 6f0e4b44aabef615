// WriteIntentBitmap: one bit per chunk meaning "this chunk may differ between
// primary and secondary", plus in-memory per-chunk state (writes in flight,
// needs-sync). Semantics follow Linux md's bitmap (see DESIGN.md):
//   - StartWrite sets the bits and returns only once they are durable in the
//     BitmapStore; concurrent writers share one flush (group commit); chunks
//     whose bit is already set and durable cost no bitmap I/O and no wait,
//     even while other bits of their page are being flushed.
//   - EndWrite drops the in-flight count; a write that did not reach the
//     secondary's stable storage marks its chunks needs-sync.
//   - ClearingPass (run by a daemon every daemon_sleep) clears bits of chunks
//     that stayed idle and clean for a whole period (two passes, as md).
//   - Set-ahead (SetSetAhead): a write that must flush a new bit anyway sets
//     the bits of its whole aligned group in the same flush, so writes to the
//     neighbours find their bits durable (DRBD's activity-log extents: coarse
//     gating of writes, while needs-sync, and so a resync after a disconnect,
//     stays per chunk). Only a crash resyncs the neighbours too.
// Thread-safe. Callers order overlapping writes themselves (RangeLock).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/bitmap/bitmap_store.h"

namespace blockrepl {

// A half-open range of chunk indexes [first, end).
struct ChunkRange {
  uint64_t first = 0;
  uint64_t end = 0;
  uint64_t count() const { return end - first; }
  bool empty() const { return end <= first; }
};

class WriteIntentBitmap {
 public:
  struct Counts {
    uint64_t dirty_chunks = 0;     // in flight or needs-sync: may differ right now
    uint64_t needs_sync_chunks = 0;
    uint64_t bits_set = 0;         // includes bits waiting for lazy clearing
    uint64_t dirty_pages = 0;      // pages holding at least one set bit
    uint64_t total_pages = 0;
    uint64_t flushes_total = 0;    // successful flushes to the bitmap file (pages + fdatasync)
  };

  // `chunk_size` must be a power of two >= 4096 (checked by the caller's
  // option parsing; asserted here).
  WriteIntentBitmap(uint64_t volume_size, uint32_t chunk_size, std::unique_ptr<BitmapStore> store);

  uint64_t volume_size() const { return volume_size_; }
  uint32_t chunk_size() const { return chunk_size_.load(); }
  uint64_t chunk_count() const { return chunk_count_.load(); }
  // Bumps when Relayout changes the chunk size: chunk indexes computed
  // before are meaningless after. Callers that computed a ChunkRange before
  // taking their RangeLock re-check it after.
  uint64_t layout_version() const { return layout_version_.load(); }
  std::string store_description() const;

  // Set-ahead group in bytes (0 or one chunk: off). A power of two; groups
  // are aligned. Set before writes start; kept across Relayout (in bytes).
  void SetSetAhead(uint64_t bytes) { set_ahead_bytes_.store(bytes); }

  // Chunks touched by the byte range; `length` 0 touches none.
  ChunkRange ChunksFor(uint64_t offset, uint64_t length) const;
  // The byte range of one chunk (the last chunk may be short).
  uint64_t ChunkOffset(uint64_t chunk) const { return chunk * chunk_size_; }
  uint64_t ChunkLength(uint64_t chunk) const;

  // Startup: adopts bits persisted by an earlier run (kWordsPerPage words
  // per page). Every set bit may differ from the secondary: it becomes
  // needs-sync. No bitmap I/O (the bits are already durable).
  void LoadPersistedBits(const std::vector<uint64_t>& words);

  // Marks the chunks as being written: count++, bit set. Returns after the
  // bits are durable. On a bitmap I/O error nothing may be written: the
  // caller fails the client's request (and must still call EndWrite).
  absl::Status StartWrite(ChunkRange range);
  // The write is finished on both sides (`replicated`) or the secondary will
  // not have it (`!replicated`: the chunks need resync).
  void EndWrite(ChunkRange range, bool replicated);
  // Marks chunks as needing resync without a write in flight (full sync,
  // lost in-flight writes). Persists the bits.
  absl::Status MarkNeedsSync(ChunkRange range);

  // Resync walk: the first chunk >= `from` that needs sync.
  std::optional<uint64_t> NextNeedsSync(uint64_t from) const;
  // Takes one chunk for resync: clears needs-sync and counts the resync as a
  // write in flight (ended with EndWrite). False if it no longer needs sync.
  bool TakeForResync(uint64_t chunk);

  // One step of the lazy clearing daemon; writes the pages it changed.
  absl::Status ClearingPass();
  // Runs clearing until no clearable bit remains (clean shutdown).
  absl::Status ClearAllClearable();

  Counts counts() const;
  // Chunks flagged for resync. Lock-free: the replicator asks on every client
  // write (see Replicator::Submit), under its own lock.
  uint64_t needs_sync_chunks() const { return needs_sync_chunks_.load(std::memory_order_acquire); }

  // Changes the chunk size (online rescale). Requires that no write or
  // resync is in flight (the caller has quiesced and drained), else
  // FailedPrecondition. Bits are ORed when growing and spread when
  // shrinking, needs-sync flags likewise; `make_store` receives the new bits
  // and must persist them (a complete new bitmap file) before returning the
  // store that serves from now on. On error nothing changes.
  using StoreFactory = std::function<absl::StatusOr<std::unique_ptr<BitmapStore>>(
      uint32_t new_chunk, const std::vector<uint64_t>& new_bits)>;
  absl::Status Relayout(uint32_t new_chunk, const StoreFactory& make_store);

 private:
  // Per-chunk in-memory state: low bits count writes in flight.
  static constexpr uint32_t kCountMask = (1u << 28) - 1;
  static constexpr uint32_t kNeedsSync = 1u << 28;
  static constexpr uint32_t kClearPending = 1u << 29;
  // The bit was set in memory and no completed flush has written it yet: a
  // writer to this chunk must wait for one. Tracked per chunk because a page
  // covers 32640 chunks (2 GiB at 64 KiB): waiting for the page's version
  // made every write on it wait for whichever bit was set last, so each
  // first touch of a chunk stalled writes to all the hot ones.
  static constexpr uint32_t kSetUnflushed = 1u << 30;

  bool IsDirty(uint32_t state) const { return (state & kCountMask) != 0 || (state & kNeedsSync); }
  // A set bit may be cleared: its chunk is clean, and no flush still owes
  // the disk its setting (after a failed flush), so a flush that ends later
  // finds each bit it made durable still set.
  bool IsClearable(uint32_t state) const { return !IsDirty(state) && !(state & kSetUnflushed); }
  bool BitIsSet(uint64_t chunk) const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return (bits_[chunk / 64] >> (chunk % 64)) & 1;
  }
  // Sets/clears the on-disk bit and marks its page for the next flush.
  // SetBit: true if the bit was clear.
  bool SetBit(uint64_t chunk) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets the bits of the aligned set-ahead groups around `range` (their
  // chunks stay clean: no write, no needs-sync).
  void SetAheadAround(ChunkRange range) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ClearBit(uint64_t chunk) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateState(uint64_t chunk, uint32_t new_state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Group commit: returns once every bit change up to `version` is durable.
  absl::Status PersistUpTo(uint64_t version) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The version the bitmap must reach before data in `range` may be written:
  // 0 when every bit of it is durable; else its pages' version (at or after
  // the change that set the bit).
  uint64_t RequiredVersion(ChunkRange range) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  // Allocates the per-chunk arrays for the current chunk count.
  void AllocateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const uint64_t volume_size_;
  // Change only in Relayout, with mu_ held and everything quiesced; read
  // lock-free by callers that re-check layout_version_ under their RangeLock.
  std::atomic<uint32_t> chunk_size_;
  std::atomic<uint64_t> chunk_count_;
  std::atomic<uint64_t> layout_version_{0};
  std::atomic<uint64_t> set_ahead_bytes_{0};
  // Replaced only in Relayout (mu_ held, no flush running); otherwise used
  // by one flusher at a time (flushing_) without mu_.
  std::unique_ptr<BitmapStore> store_;

  mutable absl::Mutex mu_;
  std::vector<uint32_t> state_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> bits_ ABSL_GUARDED_BY(mu_);        // the persistent image
  std::vector<uint32_t> page_bits_set_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> page_dirty_ ABSL_GUARDED_BY(mu_);      // changed since the last flush
  std::vector<uint64_t> page_version_ ABSL_GUARDED_BY(mu_); // changed_version_ of its last change
  uint64_t changed_version_ ABSL_GUARDED_BY(mu_) = 0;      // bumps on every bit change
  // Chunks marked kSetUnflushed since the last flush took its snapshot.
  std::vector<uint64_t> unflushed_sets_ ABSL_GUARDED_BY(mu_);
  uint64_t durable_version_ ABSL_GUARDED_BY(mu_) = 0;
  bool flushing_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t dirty_chunks_ ABSL_GUARDED_BY(mu_) = 0;
  // Changed only under mu_ (in UpdateState); atomic so needs_sync_chunks() need not lock.
  std::atomic<uint64_t> needs_sync_chunks_{0};
  uint64_t bits_set_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t flushes_total_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace blockrepl
