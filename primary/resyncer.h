// Resyncer: copies the chunks the bitmap flags as needs-sync to the
// secondary, in chunk order, through the same ordered stream as live writes.
// Each chunk is read under its RangeLock and handed to the stream before the
// lock is released, so a newer write to the chunk always follows the resync
// copy in the stream: a stale chunk can never overwrite a newer write. When
// no chunk is left it sends RESYNC_DONE, after which the secondary's image
// is consistent again. Thread-safe; owns one thread.
//
// With Mode::kChecksum (--resync-mode=checksum, for a full sync where no
// bitmap can be trusted: a lost bitmap file, a new secondary holding an old
// copy) each pass first compares every flagged chunk with the secondary's by
// XXH3 (VERIFY ops in the same stream) and unflags those that match, then
// sends only the rest (resync_checksum_pass.cc).
#pragma once

#include <cstdint>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/bitmap/write_intent_bitmap.h"
#include "common/block_device.h"
#include "common/range_lock.h"
#include "primary/history_keeper.h"
#include "primary/replicator.h"

namespace blockrepl {

class Resyncer {
 public:
  struct Progress {
    bool active = false;
    uint64_t done_bytes = 0;       // current (or last) pass
    uint64_t total_bytes = 0;
    uint64_t done_chunks = 0;      // current (or last) pass
    uint64_t total_chunks = 0;
    uint64_t resynced_chunks_total = 0;  // all passes since start
    uint64_t resynced_bytes_total = 0;  // all passes since start
    uint64_t zero_chunks_total = 0;     // chunks sent as "all zeroes" (no payload)
    double rate_bytes_per_second = 0;
    double eta_seconds = -1;
    bool paused = false;
    uint64_t rate_limit_bytes_per_second = 0;  // 0 = unlimited
    // Mode::kChecksum: chunks found equal on the secondary, so not sent (all passes).
    uint64_t checksum_matched_chunks_total = 0;
    uint64_t checksum_matched_bytes_total = 0;
  };

  enum class Mode { kBitmap, kChecksum };

  Resyncer(BlockDevice* local, WriteIntentBitmap* bitmap, Replicator* replicator,
           RangeLock* range_lock, Mode mode = Mode::kBitmap, HistoryKeeper* history = nullptr);
  ~Resyncer();
  void Start();
  void Stop();
  Progress progress() const;

  // Operator controls (replctl resync pause|resume|rate). A paused resync
  // keeps its chunks flagged; live writes keep replicating meanwhile.
  void SetPaused(bool paused);
  // Bytes per second for resync traffic; 0 = unlimited.
  void SetRateLimit(uint64_t bytes_per_second);

 private:
  void Loop();
  // One walk over the needs-sync chunks on `connection`; false if the
  // connection broke or we are stopping.
  bool RunPass(uint64_t connection);
  bool Stopping() const;
  // Blocks while paused and until the rate limit allows `bytes` more.
  // False if stopping or the connection changed meanwhile.
  bool Throttle(uint64_t bytes, uint64_t connection);
  // Mode::kChecksum, before a pass sends anything: unflags the flagged chunks
  // whose checksum the secondary matches. False if the connection broke or
  // we are stopping (resync_checksum_pass.cc).
  bool UnflagMatchingChunks(uint64_t connection, uint64_t layout);

  // Constant after construction.
  BlockDevice* const local_;
  WriteIntentBitmap* const bitmap_;
  Replicator* const replicator_;
  RangeLock* const range_lock_;
  const Mode mode_;
  // Told when the secondary holds all our data (connected, consistent,
  // nothing flagged), so a divergence ends. May be null.
  HistoryKeeper* const history_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Progress progress_ ABSL_GUARDED_BY(mu_);
  absl::Time pass_start_ ABSL_GUARDED_BY(mu_);
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t rate_limit_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time rate_window_start_ ABSL_GUARDED_BY(mu_);  // restarts on resume / new rate
  uint64_t rate_window_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace blockrepl
