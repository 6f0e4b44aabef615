// Verifier: online verify of a connected pair (`replctl verify`). It walks
// the volume in runs of up to 4 MiB; for each run it takes the range lock,
// checksums the local bytes and queues a VERIFY op on the replication stream
// before releasing the lock, so both sides checksum the same point of the
// write history (every earlier write applied, no later one) while clients
// keep writing. Pieces that differ name their chunk; with `repair` those
// chunks are flagged for resync (bit persisted, as after a lost write).
// Chunks already awaiting resync are skipped: they are expected to differ.
// Thread-safe; one verify at a time per volume.
#pragma once

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "admin.pb.h"
#include "common/bitmap/write_intent_bitmap.h"
#include "common/block_device.h"
#include "common/range_lock.h"
#include "primary/replicator.h"

namespace blockrepl {

class Verifier {
 public:
  struct Progress {
    bool active = false;
    uint64_t done_chunks = 0, total_chunks = 0, differing_chunks = 0;
  };

  Verifier(BlockDevice* local, WriteIntentBitmap* bitmap, Replicator* replicator,
           RangeLock* range_lock);

  // Runs to the end of the range. FailedPrecondition when the pair is not
  // connected or another verify runs; Unavailable when the connection drops
  // meanwhile; Aborted when the bitmap is rescaled meanwhile.
  absl::StatusOr<admin::VerifyReply> Run(const admin::VerifyRequest& request);
  Progress progress() const;

 private:
  struct PendingRun;
  absl::Status Compare(PendingRun& run, bool repair, admin::VerifyReply* reply);

  // Constant after construction.
  BlockDevice* const local_;
  WriteIntentBitmap* const bitmap_;
  Replicator* const replicator_;
  RangeLock* const range_lock_;

  mutable absl::Mutex mu_;
  Progress progress_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blockrepl
