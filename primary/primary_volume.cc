#include "primary/primary_volume.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/bitmap/bitmap_rescale.h"
#include "common/fault_injecting_block_device.h"
#include "common/file_block_device.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/thread_name.h"
#include "primary/grpc_replication_channel.h"

namespace blockrepl {
absl::StatusOr<std::unique_ptr<PrimaryVolume>> PrimaryVolume::Create(
    PrimaryVolumeOptions options) {
  std::unique_ptr<PrimaryVolume> v(new PrimaryVolume(std::move(options)));
  const PrimaryVolumeOptions& o = v->options_;
  auto store = FileBlockDevice::Open(o.store_path, o.create_size);
  if (!store.ok()) return store.status();
  v->store_ = MaybeInjectFaults(std::move(store).value(), o.fault_control);
  auto opened = OpenBitmap(o.bitmap, v->store_->Size());
  if (!opened.ok()) return opened.status();
  v->opened_bitmap_ = std::move(opened).value();
  v->bitmap_ = v->opened_bitmap_.bitmap.get();
  v->bitmap_->SetSetAhead(o.bitmap.set_ahead_bytes);
  if (BitmapFile* file = v->opened_bitmap_.file; file != nullptr) {
    // Running: not clean until a clean shutdown says so. This also proves
    // the file is writable before any client write depends on it.
    BitmapHeader header = file->header();
    header.set_history(v->opened_bitmap_.history);
    header.state = 0;
    header.daemon_sleep_ms =
        static_cast<uint32_t>(absl::ToInt64Milliseconds(v->opened_bitmap_.daemon_sleep));
    absl::Status s = file->WriteHeader(header);
    if (!s.ok()) return s;
  }
  LogInfo(v->opened_bitmap_.startup_note);
  v->history_ =
      std::make_unique<HistoryKeeper>(v->opened_bitmap_.history, v->opened_bitmap_.file);
  v->channel_ = MakeGrpcReplicationChannel(o.secondary, o.tls, o.peer_timeout);
  ReplicatorOptions r;
  r.volume = o.volume;
  r.size_bytes = v->store_->Size();
  r.chunk_size = v->bitmap_->chunk_size();
  r.history = v->history_.get();
  if (v->opened_bitmap_.file != nullptr) r.volume_uuid = v->opened_bitmap_.volume_uuid;
  r.replace_replica = o.bitmap.force_full_resync;
  r.assume_clean = o.assume_clean;
  r.max_inflight_writes = o.max_inflight_writes;
  r.max_inflight_bytes = o.max_inflight_bytes;
  r.max_epoch_writes = o.max_epoch_writes;
  r.checksum = o.checksum;
  r.peer_timeout = o.peer_timeout;
  r.compression = o.compression;
  r.pull_ahead = o.pull_ahead;
  r.congestion_timeout = o.congestion_timeout;
  r.batch_linger = o.batch_linger;
  v->replicator_ = std::make_unique<Replicator>(r, v->bitmap_, v->channel_.get());
  v->resyncer_ = std::make_unique<Resyncer>(
      v->store_.get(), v->bitmap_, v->replicator_.get(), &v->range_lock_,
      o.resync_by_checksum ? Resyncer::Mode::kChecksum : Resyncer::Mode::kBitmap,
      v->history_.get());
  v->volume_ = std::make_unique<ReplicatingVolume>(v->store_.get(), v->bitmap_,
                                                   v->replicator_.get(), &v->range_lock_, o.sync,
                                                   v->history_.get());
  v->verifier_ = std::make_unique<Verifier>(v->store_.get(), v->bitmap_, v->replicator_.get(),
                                            &v->range_lock_);
  return v;
}

PrimaryVolume::~PrimaryVolume() { Shutdown(); }

void PrimaryVolume::Start() {
  started_ = true;
  resyncer_->SetRateLimit(options_.resync_rate);
  replicator_->Start();
  resyncer_->Start();
  daemon_ = std::thread([this] {
    NameThisThread("bitmap-daemon");
    ClearingDaemon();
  });
}

void PrimaryVolume::ClearingDaemon() {
  while (!stop_daemon_.WaitForNotificationWithTimeout(opened_bitmap_.daemon_sleep)) {
    absl::Status s = bitmap_->ClearingPass();
    if (!s.ok()) LogError("bitmap clearing: ", s.message());
  }
}

void PrimaryVolume::Shutdown() {
  if (!started_ || shut_down_) return;
  shut_down_ = true;
  resyncer_->Stop();
  // Close the epoch and give the secondary a moment to make it durable, so
  // a cleanly stopped pair restarts with a clean bitmap. (After a HANDOVER
  // nothing may follow it in the stream, and everything is durable already.)
  if (!handed_over_) {
    replicator_->SubmitBarrier();
    if (!replicator_->Drain(absl::Seconds(10))) {
      LogWarning("stopping with writes not yet durable on the secondary; they stay flagged");
    }
  }
  replicator_->Stop();
  stop_daemon_.Notify();
  if (daemon_.joinable()) daemon_.join();
  absl::Status s = bitmap_->ClearAllClearable();
  if (!s.ok()) LogError("bitmap clearing at shutdown: ", s.message());
  if (BitmapFile* file = opened_bitmap_.file; file != nullptr && s.ok()) {
    BitmapHeader header = file->header();
    header.state = BitmapHeader::kStateClean;
    if (bitmap_->counts().bits_set == 0) header.events_cleared = header.events + 1;
    s = file->WriteHeader(header);
    if (!s.ok()) LogError("bitmap header at shutdown: ", s.message());
  }
  s = store_->Flush();
  if (!s.ok()) LogError(s.message());
}

absl::StatusOr<std::string> PrimaryVolume::HandOver(absl::Duration timeout) {
  absl::MutexLock one_at_a_time(&rescale_mu_);
  const std::string new_primary = replicator_->peer_promote_nbd_listen();
  if (new_primary.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the secondary ", replicator_->peer(), " cannot serve volume '", options_.volume,
        "' (not connected, or started without --nbd-listen for it)"));
  }
  // First catch up with client writes still flowing (a resync may take a
  // while); only then hold them back, for no longer than draining the
  // window takes.
  RETURN_IF_ERROR(WaitPeerInSync(timeout));
  // Quiesce as a rescale does: every write already in the pipeline
  // finishes, new ones wait here (and fail once the volume is closed).
  RangeLock::Holder everything = range_lock_.Lock(0, ~uint64_t{0});
  RETURN_IF_ERROR(WaitPeerInSync(std::min(timeout, absl::Seconds(10))));
  ReplicationTicket handover = replicator_->SubmitBarrier(replication::Op::HANDOVER);
  const bool acknowledged = replicator_->Wait(handover, Replicator::WaitFor::kDurable);
  // Past this point the secondary may be serving: never write here again,
  // even when the acknowledgement was lost (two primaries would be worse).
  volume_->Close(absl::StrCat("volume '", options_.volume, "' was handed over to ",
                              new_primary, " (planned switchover): reconnect there"));
  everything.Release();
  handed_over_ = true;  // Shutdown must not send a final barrier after the HANDOVER
  Shutdown();
  if (BitmapFile* file = opened_bitmap_.file; file != nullptr) {
    BitmapHeader header = file->header();
    header.state |= BitmapHeader::kStateHandedOver;
    if (absl::Status s = file->WriteHeader(header); !s.ok()) {
      LogError("switchover: cannot mark the bitmap file handed over: ", s.message(),
               "; do not restart repl-primary on this store");
    }
  }
  {
    absl::MutexLock lock(&handover_mu_);
    handed_over_to_ = new_primary;
  }
  if (!acknowledged) {
    return absl::UnavailableError(absl::StrCat(
        "the HANDOVER was sent but its acknowledgement was lost: this side stopped serving "
        "anyway; check the secondary (`replctl status` there) and `replctl promote` it if it did "
        "not take over"));
  }
  LogInfo("volume '", options_.volume, "' handed over to the secondary; clients reconnect to ",
          new_primary);
  return new_primary;
}

absl::Status PrimaryVolume::WaitPeerInSync(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string missing;
  while (true) {
    const Replicator::Snapshot r = replicator_->snapshot();
    const uint64_t flagged = bitmap_->needs_sync_chunks();
    if (r.connection != Replicator::ConnectionState::kConnected) {
      missing = absl::StrCat("the secondary ", replicator_->peer(), " is not connected",
                             r.last_error.empty() ? "" : absl::StrCat(" (", r.last_error, ")"));
    } else if (flagged > 0 || !r.peer_consistent) {
      missing = absl::StrCat("the secondary is still resyncing (", flagged, " chunks flagged)");
    } else {
      replicator_->SubmitBarrier();
      const absl::Duration left = std::max(deadline - absl::Now(), absl::Milliseconds(100));
      if (replicator_->Drain(left)) {
        const Replicator::Snapshot after = replicator_->snapshot();
        if (after.connection == Replicator::ConnectionState::kConnected &&
            after.peer_consistent && bitmap_->needs_sync_chunks() == 0) {
          history_->NoteInSync();
          return absl::OkStatus();
        }
      }
      missing = "writes are still in flight to the secondary";
    }
    if (absl::Now() >= deadline) {
      return absl::UnavailableError(absl::StrCat("not in sync after ",
                                                 absl::FormatDuration(timeout), ": ", missing));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

admin::VolumeStatus PrimaryVolume::Status() const {
  const WriteIntentBitmap::Counts counts = bitmap_->counts();
  const Replicator::Snapshot r = replicator_->snapshot();
  const Resyncer::Progress p = resyncer_->progress();
  admin::VolumeStatus s;
  s.set_name(options_.volume);
  {
    absl::MutexLock lock(&handover_mu_);
    s.set_role(handed_over_to_.empty() ? "primary" : "handed-over");
    s.set_nbd_address(handed_over_to_);
  }
  s.set_connection(ConnectionStateName(r.connection));
  const bool connected = r.connection == Replicator::ConnectionState::kConnected;
  if (connected && (p.active || counts.needs_sync_chunks > 0 || !r.peer_consistent)) {
    s.set_sync_state("resyncing");
  } else if (connected && counts.dirty_chunks == 0 && r.inflight_writes == 0) {
    s.set_sync_state("in_sync");
  } else {
    s.set_sync_state("out_of_sync");
  }
  s.set_inflight_writes(r.inflight_writes);
  s.set_max_inflight_writes(options_.max_inflight_writes);
  s.set_inflight_bytes(r.inflight_bytes);
  s.set_max_inflight_bytes(options_.max_inflight_bytes);
  s.set_peak_inflight_writes(r.peak_inflight_writes);
  s.set_peak_inflight_bytes(r.peak_inflight_bytes);
  s.set_dirty_chunks(counts.dirty_chunks);
  s.set_bitmap_bits_set(counts.bits_set);
  s.set_chunk_size(bitmap_->chunk_size());
  s.set_size_bytes(store_->Size());
  s.set_replicated_bytes_total(r.replicated_bytes_total);
  s.set_replicated_writes_total(r.replicated_writes_total);
  s.set_stream_messages_total(r.batches_sent_total);
  s.set_resync_done_bytes(p.done_bytes);
  s.set_resync_total_bytes(p.total_bytes);
  s.set_resync_done_chunks(p.done_chunks);
  s.set_resync_total_chunks(p.total_chunks);
  s.set_resynced_chunks_total(p.resynced_chunks_total);
  s.set_resync_mode(options_.resync_by_checksum ? "checksum" : "bitmap");
  s.set_resync_checksum_matched_chunks_total(p.checksum_matched_chunks_total);
  s.set_resync_checksum_matched_bytes_total(p.checksum_matched_bytes_total);
  s.set_bitmap_flushes_total(counts.flushes_total);
  s.set_disconnected_by_operator(r.operator_disconnected);
  s.set_compression(DescribeCompression(options_.compression));
  s.set_on_congestion(options_.pull_ahead ? "pull-ahead" : "block");
  s.set_ahead(r.ahead);
  s.set_ahead_writes_total(r.ahead_writes_total);
  s.set_ahead_episodes_total(r.ahead_episodes_total);
  s.set_compression_input_bytes_total(r.compression_input_bytes);
  s.set_compression_output_bytes_total(r.compression_output_bytes);
  const Verifier::Progress verify = verifier_->progress();
  s.set_verify_active(verify.active);
  s.set_verify_done_chunks(verify.done_chunks);
  s.set_verify_total_chunks(verify.total_chunks);
  s.set_verify_differing_chunks(verify.differing_chunks);
  s.set_resynced_bytes_total(p.resynced_bytes_total);
  s.set_resync_rate_bytes_per_second(p.rate_bytes_per_second);
  s.set_resync_eta_seconds(p.eta_seconds);
  s.set_peer(replicator_->peer());
  s.set_mode(options_.sync ? "sync" : "async");
  s.set_store(options_.store_path);
  s.set_bitmap_file(bitmap_->store_description());
  s.set_last_error(r.last_error);
  s.set_store_errors_total(volume_->store_errors());
  s.set_last_store_error(volume_->last_store_error());
  s.set_acked_seq(r.acked_seq);
  s.set_durable_seq(r.durable_seq);
  s.set_sent_seq(r.sent_seq);
  s.set_consistent(r.peer_consistent);
  s.set_connects_total(r.connects_total);
  const DataHistory history = history_->Get();
  s.set_generation(history.current);
  s.set_diverged_from(history.diverged_from);
  s.set_split_brain(r.split_brain);
  s.set_resolution(r.resolution == DiscardChoice::kPrimary     ? "discard-local"
                   : r.resolution == DiscardChoice::kSecondary ? "discard-remote"
                                                               : "");
  s.set_resync_paused(p.paused);
  s.set_resync_rate_limit_bytes_per_second(p.rate_limit_bytes_per_second);
  s.set_volume_uuid(opened_bitmap_.volume_uuid);
  s.set_daemon_sleep_ms(absl::ToInt64Milliseconds(opened_bitmap_.daemon_sleep));
  s.set_bitmap_pages(counts.total_pages);
  s.set_bitmap_dirty_pages(counts.dirty_pages);
  return s;
}

}  // namespace blockrepl

namespace blockrepl {

absl::StatusOr<admin::RescaleBitmapReply> PrimaryVolume::RescaleBitmap(uint32_t new_chunk_size) {
  absl::MutexLock one_at_a_time(&rescale_mu_);
  admin::RescaleBitmapReply reply;
  reply.set_old_chunk_size(bitmap_->chunk_size());
  reply.set_old_bits_set(bitmap_->counts().bits_set);
  reply.set_new_chunk_size(new_chunk_size);
  if (new_chunk_size == bitmap_->chunk_size()) {
    reply.set_new_bits_set(reply.old_bits_set());
    return reply;
  }
  // Quiesce: the whole-volume range waits for every write and resync chunk
  // already in the pipeline and holds back new ones (first come, first
  // served, so a busy volume cannot starve it).
  RangeLock::Holder everything = range_lock_.Lock(0, ~uint64_t{0});
  replicator_->SubmitBarrier();
  if (!replicator_->Drain(absl::Seconds(10))) {
    return absl::UnavailableError(
        "writes still in flight to the secondary after 10 s; bitmap not rescaled, try again");
  }
  BitmapFile* old_file = opened_bitmap_.file;
  BitmapFile* new_file = nullptr;
  auto make_store = [&](uint32_t chunk, const std::vector<uint64_t>& bits)
      -> absl::StatusOr<std::unique_ptr<BitmapStore>> {
    if (old_file == nullptr) return std::unique_ptr<BitmapStore>(new MemoryBitmapStore());
    BitmapHeader header = old_file->header();
    header.chunk_size = chunk;
    // The old descriptor keeps the replaced inode until Relayout drops it.
    auto file = ReplaceBitmapFile(old_file->path(), header, bits);
    if (!file.ok()) return file.status();
    new_file = file->get();
    return std::unique_ptr<BitmapStore>(std::move(file).value());
  };
  absl::Status status = bitmap_->Relayout(new_chunk_size, make_store);
  if (!status.ok()) return status;
  opened_bitmap_.file = new_file;
  if (absl::Status s = history_->SetFile(new_file); !s.ok()) {
    LogError("bitmap rescale: cannot write the data history to the new file: ", s.message());
  }
  reply.set_new_bits_set(bitmap_->counts().bits_set);
  LogInfo("bitmap rescaled online: ", reply.old_chunk_size(), " -> ", new_chunk_size,
          " byte chunks, ", reply.old_bits_set(), " -> ", reply.new_bits_set(), " bits set");
  return reply;
}

}  // namespace blockrepl
