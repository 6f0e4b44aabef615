// PrimaryVolume: everything the primary agent runs for one volume, wired
// together: local store, write-intent bitmap and its clearing daemon, range
// lock, replicator (stream to the secondary), resyncer, and the
// ReplicatingVolume the NBD frontend serves. Owns all of them and their
// threads. Thread-safe.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "admin.pb.h"
#include "common/bitmap/write_intent_bitmap.h"
#include "common/compression.h"
#include "common/block_device.h"
#include "common/range_lock.h"
#include "common/tls/tls_options.h"
#include "primary/bitmap_setup.h"
#include "primary/history_keeper.h"
#include "primary/replicating_volume.h"
#include "primary/replication_channel.h"
#include "primary/replicator.h"
#include "primary/resyncer.h"
#include "primary/verifier.h"

namespace blockrepl {

struct PrimaryVolumeOptions {
  std::string volume;
  std::string store_path;
  uint64_t create_size = 0;       // create the store file with this size if missing
  std::string fault_control;      // test only: --test-inject-faults FILE (see FaultInjectingBlockDevice)
  std::string secondary;          // HOST:PORT
  BitmapSpec bitmap;
  bool sync = false;
  bool assume_clean = false;
  uint64_t max_inflight_writes = 512;
  uint64_t max_inflight_bytes = 64ull << 20;
  uint64_t max_epoch_writes = 65536;
  uint64_t resync_rate = 0;       // bytes per second, 0 = unlimited
  // --resync-mode=checksum: compare flagged chunks by checksum, send only those that differ.
  bool resync_by_checksum = false;
  TlsOptions tls;                  // how the stream to the secondary is protected
  bool checksum = true;            // XXH3-64 per payload, verified by the secondary
  absl::Duration peer_timeout = absl::Seconds(15);  // dead-peer detection
  CompressionSpec compression;     // --compress
  bool pull_ahead = false;         // --on-congestion=pull-ahead
  absl::Duration congestion_timeout = absl::Seconds(1);
  absl::Duration batch_linger = absl::ZeroDuration();  // --batch-linger (async only)
};

class PrimaryVolume {
 public:
  static absl::StatusOr<std::unique_ptr<PrimaryVolume>> Create(PrimaryVolumeOptions options);
  ~PrimaryVolume();

  // Starts replication, resync and the clearing daemon.
  void Start();
  // Clean stop: waits (bounded) for the secondary to make everything
  // durable, clears what can be cleared, then stops all threads.
  void Shutdown();

  BlockDevice* device() { return volume_.get(); }
  const PrimaryVolumeOptions& options() const { return options_; }
  admin::VolumeStatus Status() const;
  const LatencyHistogram& ack_latency() const { return replicator_->ack_latency(); }

  // Operator controls, reached through the admin socket.
  void PauseResync(bool paused) { resyncer_->SetPaused(paused); }
  void SetResyncRate(uint64_t bytes_per_second) { resyncer_->SetRateLimit(bytes_per_second); }
  // Online bitmap rescale: quiesces writes, waits until nothing is in
  // flight, rewrites the bitmap with `new_chunk_size` chunks.
  absl::StatusOr<admin::RescaleBitmapReply> RescaleBitmap(uint32_t new_chunk_size);
  // `replctl disconnect|connect`: keep the stream down / let it come up.
  void SetOperatorDisconnected(bool disconnected) {
    replicator_->SetOperatorDisconnected(disconnected);
  }
  // `replctl resolve` after a split brain: kPrimary gives up our writes
  // (refused at the handshake: the roles must be swapped), kSecondary the
  // peer's. For the next handshake only.
  void Resolve(DiscardChoice discard) { replicator_->SetResolution(discard); }
  DataHistory history() const { return history_->Get(); }
  // Planned switchover (`replctl switchover`): holds client writes back,
  // waits until the secondary holds everything, hands the volume over
  // (HANDOVER op, durable on the secondary), then closes this side for good:
  // client I/O fails, the bitmap file says "handed over" (repl-primary will
  // not serve it again), replication stops. Returns where the new primary
  // serves clients. On a timeout nothing changed and writes resume.
  absl::StatusOr<std::string> HandOver(absl::Duration timeout);
  // For a demotion or switchover (client writes already stopped): waits up
  // to `timeout` until the secondary is connected, consistent, holds every
  // write durably and nothing is flagged; then records that the history
  // converged. Unavailable (saying what is missing) on timeout.
  absl::Status WaitPeerInSync(absl::Duration timeout);
  // `replctl verify`: compares both stores online (see verifier.h).
  absl::StatusOr<admin::VerifyReply> Verify(const admin::VerifyRequest& request) {
    return verifier_->Run(request);
  }

 private:
  explicit PrimaryVolume(PrimaryVolumeOptions options) : options_(std::move(options)) {}
  void ClearingDaemon();

  const PrimaryVolumeOptions options_;
  std::unique_ptr<BlockDevice> store_;
  OpenedBitmap opened_bitmap_;     // identity, history, and the bitmap file
  WriteIntentBitmap* bitmap_ = nullptr;  // == opened_bitmap_.bitmap
  std::unique_ptr<HistoryKeeper> history_;  // opened_bitmap_.history from here on
  RangeLock range_lock_;
  std::unique_ptr<ReplicationChannel> channel_;
  std::unique_ptr<Replicator> replicator_;
  std::unique_ptr<Resyncer> resyncer_;
  std::unique_ptr<ReplicatingVolume> volume_;
  std::unique_ptr<Verifier> verifier_;
  absl::Notification stop_daemon_;
  std::thread daemon_;
  absl::Mutex rescale_mu_;         // one rescale at a time
  mutable absl::Mutex handover_mu_;
  std::string handed_over_to_ ABSL_GUARDED_BY(handover_mu_);  // set once by HandOver
  bool started_ = false;    // Start() ran: threads exist
  bool handed_over_ = false;  // HandOver sent the HANDOVER (then calls Shutdown)
  bool shut_down_ = false;
};

}  // namespace blockrepl
