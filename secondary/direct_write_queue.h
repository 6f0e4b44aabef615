// DirectWriteQueue: the replica's aligned writes, sent to its store with
// O_DIRECT through io_uring, several at once (`repl-secondary
// --store-io=direct`; the default writes through the page cache).
//
// Why a replica may want it: nobody reads a replica while it is one, so its
// page cache is pure cost. A buffered write was 60% of the secondary's
// samples at 4 KiB (ext4's large folios make every 4 KiB write walk a
// folio's buffer heads), the flusher's fdatasync then wrote it all back, and
// kernel threads did the rest of the writeback on the same cores. Direct,
// at 4 KiB the secondary spent 36-56% of the CPU per GiB (round 15 of
// docs/PERFORMANCE.md), and it keeps no dirty memory.
//
// Why it is not the default: a direct write waits for the disk, and the
// applier acks a batch only once its writes have landed. With a 1 GiB image
// in a machine of 24 GiB the page cache is a RAM disk, so on this benchmark
// host buffered won on throughput: 4 KiB QD 32 by 6-39%, 1 MiB writes (one
// per batch, nothing to overlap) by 36-70%, where the secondary's own CPU per
// GiB even rose (a slot copy and a device kick per 128 KiB, against
// writeback that kernel threads do for a buffered write). Overlapping one
// batch's writes with the next batch (acks that follow the completions)
// would be the way to make it pay at 1 MiB.
//
// The queue keeps up to `slots` writes in flight and the caller drains it
// once per batch. Payloads arrive in gRPC's receive buffers at any address,
// so each is copied into an aligned slot of its own first (one copy, as the
// page cache made).
//
// Ordering: writes in flight may land in any order, so a write that
// overlaps one still in flight first waits for every write in flight. The
// caller drains before anything that must come after its writes: a flush,
// a trim, an unaligned (buffered) write, a read, an ack that says "applied".
// A direct write needs no more than an fdatasync of any descriptor of the
// file to be durable (it flushes the device's cache).
//
// Not thread-safe: one caller at a time (the applier calls it under its lock).
#pragma once

#include <liburing.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace blockrepl {

class DirectWriteQueue {
 public:
  // Offsets, lengths and buffers of direct writes are multiples of this:
  // every logical block size up to 4 KiB.
  static constexpr uint64_t kAlignment = 4096;

  struct Options {
    size_t slot_bytes = 128 << 10;  // a longer write goes as several
    size_t slots = 64;              // writes in flight at most
  };

  // Opens `path` again with O_DIRECT and sets up a ring. Unimplemented when
  // the file system refuses O_DIRECT (tmpfs before Linux 6.6) or the kernel
  // has no io_uring (`--store-io=direct` then refuses to start).
  static absl::StatusOr<std::unique_ptr<DirectWriteQueue>> Open(const std::string& path,
                                                               Options options);
  static absl::StatusOr<std::unique_ptr<DirectWriteQueue>> Open(const std::string& path) {
    return Open(path, Options());
  }
  ~DirectWriteQueue();  // waits for the writes in flight

  DirectWriteQueue(const DirectWriteQueue&) = delete;
  DirectWriteQueue& operator=(const DirectWriteQueue&) = delete;

  static bool Aligned(uint64_t offset, uint64_t length) {
    return offset % kAlignment == 0 && length % kAlignment == 0 && length > 0;
  }

  // Copies the concatenated `pieces` (Aligned(offset, their total length))
  // into slots and starts their writes at `offset`. Returns once they are
  // started; a failure of one shows at the next Drain (or here, when a
  // failed write is found while making room).
  absl::Status Write(uint64_t offset, absl::Span<const iovec> pieces);

  // Starts what is queued and waits for every write in flight. Returns the
  // first failure since the last Drain (every write has ended either way).
  absl::Status Drain();

  bool idle() const { return in_flight_ == 0 && unsubmitted_ == 0; }
  uint64_t writes_total() const { return writes_total_; }

 private:
  struct Slot {
    uint64_t offset = 0;
    uint32_t length = 0;
    bool busy = false;
  };

  DirectWriteQueue(int fd, Options options, char* buffers);
  char* SlotBuffer(size_t slot) { return buffers_ + slot * options_.slot_bytes; }
  bool OverlapsInFlight(uint64_t offset, uint64_t length) const;
  // Submits queued writes, blocks until `wait_for` of them have completed
  // (0: not at all), and reaps every completion there is.
  absl::Status SubmitAndReap(size_t wait_for);
  void Complete(size_t slot, int result);

  const int fd_;
  const Options options_;
  char* const buffers_;  // slots * slot_bytes, page-aligned (mmap)
  io_uring ring_;
  bool ring_ready_ = false;  // ring_ set up (Open's last step)
  std::vector<Slot> slots_;
  std::vector<size_t> free_slots_;
  size_t in_flight_ = 0;    // started or queued, not yet completed
  size_t unsubmitted_ = 0;  // queued in the ring, not yet submitted
  uint64_t writes_total_ = 0;
  absl::Status error_;  // the first failure since the last Drain
};

}  // namespace blockrepl
