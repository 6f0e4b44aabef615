#include "primary/replicator.h"

#include <algorithm>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/completion_batch.h"
#include "common/log.h"
#include "common/thread_name.h"
#include "common/xxh3.h"

namespace blockrepl {

using replication::Op;

const char* ConnectionStateName(Replicator::ConnectionState state) {
  switch (state) {
    case Replicator::ConnectionState::kConnected: return "connected";
    case Replicator::ConnectionState::kConnecting: return "connecting";
    case Replicator::ConnectionState::kDisconnected: return "disconnected";
  }
  return "unknown";
}

namespace {

// A client's write, trim or zeroing, as opposed to resync chunks and control
// ops. Only these may linger in a partial batch (batch_linger): a barrier or
// verify may have a waiter, and resync chunks come in full batches anyway.
bool IsClientWrite(Op::Kind kind) {
  return kind == Op::WRITE || kind == Op::TRIM || kind == Op::WRITE_ZEROES;
}

// A time from SendDueLocked that has come (InfinitePast without a clock read).
bool IsDue(absl::Time due) {
  return due == absl::InfinitePast() || (due != absl::InfiniteFuture() && due <= absl::Now());
}

// An epoch bound we close on our own (size, age, idle): durability for bit
// clearing, no ordering (no client flushed here), so the secondary need not
// stop applying while it syncs.
Op EpochBarrier() {
  Op barrier;
  barrier.set_kind(Op::BARRIER);
  barrier.set_durability_only(true);
  return barrier;
}

}  // namespace

// The live stream's events, forwarded with the connection they belong to.
class Replicator::StreamDriver final : public StreamEvents {
 public:
  StreamDriver(Replicator* replicator, uint64_t connection)
      : replicator_(replicator), connection_(connection) {}
  Next NextMessage(replication::PrimaryMessage* message, std::vector<Payload>* payloads,
                   bool* more_coming, absl::Time* retry_at) override {
    return replicator_->NextBatch(connection_, message, payloads, more_coming, retry_at);
  }
  bool OnMessage(const replication::SecondaryMessage& message) override {
    return replicator_->OnSecondaryMessage(connection_, message);
  }
  bool OnTick() override { return replicator_->OnStreamTick(connection_); }

 private:
  Replicator* const replicator_;
  const uint64_t connection_;
};

Replicator::Replicator(ReplicatorOptions options, WriteIntentBitmap* bitmap,
                       ReplicationChannel* channel)
    : options_(std::move(options)), bitmap_(bitmap), channel_(channel) {}

Replicator::~Replicator() { Stop(); }

void Replicator::Start() {
  manager_ = std::thread([this] {
    NameThisThread("repl-stream");
    ManagerLoop();
  });
}

void Replicator::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (live_stream_ != nullptr) live_stream_->Cancel();
  }
  if (manager_.joinable()) manager_.join();
}

uint64_t Replicator::live_connection() const {
  absl::MutexLock lock(&mu_);
  return live_connection_;
}

uint64_t Replicator::WaitUntilConnected(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return live_connection_ != 0 || stopping_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  return live_connection_;
}

void Replicator::SetError(const std::string& error) {
  absl::MutexLock lock(&mu_);
  if (stats_.last_error != error) LogError(error);
  stats_.last_error = error;
}

void Replicator::SleepInterruptible(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || connect_now_ || operator_disconnected_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&wake), d);
}

void Replicator::SetOperatorDisconnected(bool disconnected) {
  absl::MutexLock lock(&mu_);
  operator_disconnected_ = disconnected;
  stats_.operator_disconnected = disconnected;
  if (disconnected) {
    if (live_connection_ != 0 && !broken_) {
      broken_ = true;
      peer_following_.store(false, std::memory_order_release);
      broken_reason_ = "disconnected by the operator";
      if (live_stream_ != nullptr) live_stream_->Cancel();
    }
  } else {
    connect_now_ = true;
  }
}

void Replicator::SetResolution(DiscardChoice discard) {
  absl::MutexLock lock(&mu_);
  resolution_ = discard;
  stats_.resolution = discard;
  connect_now_ = true;
}

void Replicator::ManagerLoop() {
  std::mt19937_64 rng(std::random_device{}());
  absl::Duration backoff = options_.min_backoff;
  while (true) {
    bool parked;
    {
      absl::MutexLock lock(&mu_);
      parked = operator_disconnected_ && !stopping_;
    }
    // The operator's connect then makes a new handshake: how an operator puts
    // a renewed certificate to use (or proves it) without a restart.
    if (parked) channel_->DropConnection();
    {
      absl::MutexLock lock(&mu_);
      if (operator_disconnected_ && !stopping_) {
        state_ = ConnectionState::kDisconnected;
        auto resume = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || !operator_disconnected_;
        };
        mu_.Await(absl::Condition(&resume));
        backoff = options_.min_backoff;
      }
      if (stopping_) break;
      connect_now_ = false;
      state_ = ConnectionState::kConnecting;
    }
    std::unique_ptr<ReplicationStream> stream = Connect();
    if (stream == nullptr) {
      // Exponential backoff with jitter, so a fleet does not reconnect in step.
      std::uniform_real_distribution<double> jitter(0.5, 1.0);
      SleepInterruptible(backoff * jitter(rng));
      backoff = std::min(backoff * 2, options_.max_backoff);
      continue;
    }
    backoff = options_.min_backoff;
    uint64_t connection;
    {
      absl::MutexLock lock(&mu_);
      connection = live_connection_;
    }
    StreamDriver driver(this, connection);
    // Ticks often enough for idle barriers and the peer timeout.
    stream->Run(&driver, std::min({options_.idle_barrier_delay, options_.peer_timeout / 4,
                                   absl::Seconds(1)}));
    MarkBroken(connection, "");  // it ended on its own: FinishReason says why
    std::string reason;
    {
      absl::MutexLock lock(&mu_);
      reason = broken_reason_;
      live_stream_ = nullptr;
    }
    // Fail the window first so clients stop waiting, then tear down.
    ConnectionLost(reason);
    stream->Cancel();
    std::string finish = stream->FinishReason();
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      stopping = stopping_;
    }
    if (!stopping) {
      // We cancel the call before collecting its status, so a transport that
      // died under us (peer gone, keepalive unanswered) reports CANCELLED.
      if (reason.empty() && finish == "CANCELLED") {
        finish = "the stream broke (link down, or no keepalive answer within --peer-timeout)";
      }
      SetError(absl::StrCat("lost connection to secondary ", channel_->peer(), ": ",
                            reason.empty() ? finish : reason));
    }
  }
  absl::MutexLock lock(&mu_);
  peer_following_.store(false, std::memory_order_release);
  state_ = ConnectionState::kDisconnected;
}

std::unique_ptr<ReplicationStream> Replicator::Connect() {
  auto stream_or = channel_->Open(options_.connect_timeout);
  if (!stream_or.ok()) {
    SetError(std::string(stream_or.status().message()));
    return nullptr;
  }
  std::unique_ptr<ReplicationStream> stream = std::move(stream_or).value();
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return nullptr;
    live_stream_ = stream.get();  // so Stop() can cancel a hung handshake
  }
  replication::PrimaryMessage hello_message;
  replication::Hello* hello = hello_message.mutable_hello();
  hello->set_volume(options_.volume);
  hello->set_size_bytes(options_.size_bytes);
  hello->set_chunk_size(options_.chunk_size);
  const DataHistory history = options_.history != nullptr
                                  ? options_.history->Get()
                                  : DataHistory{options_.generation, "", {}};
  DiscardChoice resolution;
  {
    absl::MutexLock lock(&mu_);
    resolution = resolution_;
  }
  hello->set_generation(history.current);
  hello->set_diverged_from(history.diverged_from);
  for (const std::string& id : history.older) hello->add_older_generations(id);
  hello->set_discard_secondary(resolution == DiscardChoice::kSecondary);
  hello->set_discard_primary(resolution == DiscardChoice::kPrimary);
  hello->set_assume_clean(options_.assume_clean);
  hello->set_volume_uuid(options_.volume_uuid);
  hello->set_replace_replica(options_.replace_replica);
  hello->set_protocol_version(1);

  // A watchdog cancels a handshake the secondary never answers.
  absl::Notification answered;
  std::thread watchdog([&] {
    if (!answered.WaitForNotificationWithTimeout(options_.handshake_timeout)) stream->Cancel();
  });
  replication::SecondaryMessage reply;
  bool ok = stream->Send(std::move(hello_message), {}, false) && stream->Receive(&reply);
  answered.Notify();
  watchdog.join();

  // Finish() may be called once per stream: `finished` says it already was.
  auto fail = [&](const std::string& error, bool finished = false)
      -> std::unique_ptr<ReplicationStream> {
    {
      absl::MutexLock lock(&mu_);
      live_stream_ = nullptr;
    }
    if (!finished) {
      stream->Cancel();
      stream->FinishReason();
    }
    SetError(error);
    return nullptr;
  };
  if (!ok) {
    std::string why = stream->FinishReason();
    return fail(absl::StrCat("handshake with secondary ", channel_->peer(), " failed: ", why),
                /*finished=*/true);
  }
  if (!reply.has_hello_reply()) {
    return fail(absl::StrCat("handshake with secondary ", channel_->peer(),
                             " failed: unexpected first message"));
  }
  const replication::HelloReply& hr = reply.hello_reply();
  if (!hr.accepted()) {
    if (hr.split_brain()) {
      absl::MutexLock lock(&mu_);
      stats_.split_brain = true;
    }
    return fail(absl::StrCat("secondary ", channel_->peer(), " refused: ", hr.error()));
  }

  // Decide what the secondary is missing: the same rule it applied to
  // accept us (common/data_history.h), from the same two histories.
  DataHistory secondary{hr.followed_generation(), hr.diverged_from(),
                        {hr.older_generations().begin(), hr.older_generations().end()}};
  DiscardChoice discard = resolution;
  if (hr.discard_secondary()) discard = DiscardChoice::kSecondary;
  if (hr.discard_primary()) discard = DiscardChoice::kPrimary;
  SyncDecision decision = DecideSync(history, secondary, discard, options_.assume_clean);
  if (hr.full_sync() && decision.kind != SyncDecision::Kind::kFullSync) {
    // e.g. it let us replace it (--force-full-resync)
    decision.kind = SyncDecision::Kind::kFullSync;
    decision.reason = "the secondary takes a full copy";
  }
  if (decision.kind == SyncDecision::Kind::kRefuse) {
    {
      absl::MutexLock lock(&mu_);
      stats_.split_brain = decision.split_brain;
    }
    return fail(absl::StrCat("secondary ", channel_->peer(), ": ", decision.reason));
  }
  const bool full_sync = decision.kind == SyncDecision::Kind::kFullSync;
  if (full_sync) {
    LogInfo(decision.reason, ": full sync of ", options_.size_bytes, " bytes");
    absl::Status s = bitmap_->MarkNeedsSync(ChunkRange{0, bitmap_->chunk_count()});
    if (!s.ok()) return fail(absl::StrCat("cannot mark bitmap for full sync: ", s.message()));
  } else if (hr.own_writes_size() > 0) {
    // Chunks only the secondary changed (it wrote on its own): our copy of
    // them overwrites its. Marked (and persisted) before any live write.
    uint64_t bytes = 0;
    for (const replication::ByteRange& r : hr.own_writes()) {
      if (r.length() == 0 || r.offset() >= options_.size_bytes) continue;
      const uint64_t length = std::min(r.length(), options_.size_bytes - r.offset());
      absl::Status s = bitmap_->MarkNeedsSync(bitmap_->ChunksFor(r.offset(), length));
      if (!s.ok()) return fail(absl::StrCat("cannot mark the secondary's writes: ", s.message()));
      bytes += length;
    }
    LogInfo(decision.reason, ": the secondary wrote ", bytes, " bytes on its own (",
            hr.own_writes_size(), " ranges), resynced from here");
  }

  absl::ReleasableMutexLock lock(&mu_);
  if (stopping_) {
    live_stream_ = nullptr;
    return nullptr;
  }
  // The secondary now follows the generation our hello named. A write that
  // found no peer following during the handshake may have moved our history
  // on since: then the peer would hold our data under a name we left, and the
  // next meeting after a promotion would misread it. Marked following first,
  // then checked (HistoryKeeper::BeforeLocalWrite asks again under its lock),
  // so either we see the new history here or that write did not diverge.
  peer_following_.store(true, std::memory_order_release);
  if (options_.history != nullptr && options_.history->Get() != history) {
    peer_following_.store(false, std::memory_order_release);
    connect_now_ = true;  // at once, with the new history
    lock.Release();
    return fail(absl::StrCat("our data history moved during the handshake with ",
                             channel_->peer(),
                             " (written without a secondary); handshaking again"));
  }
  next_seq_ = std::max(next_seq_, hr.last_applied_seq() + 1);
  stats_.sent_seq = stats_.acked_seq = stats_.durable_seq = next_seq_ - 1;
  stats_.peer_consistent = hr.consistent() && !full_sync;
  stats_.last_error.clear();
  stats_.split_brain = false;
  peer_promote_nbd_listen_ = hr.promote_nbd_listen();
  if (resolution != DiscardChoice::kNone && resolution_ == resolution) {
    resolution_ = DiscardChoice::kNone;  // one-shot: it served this handshake
    stats_.resolution = DiscardChoice::kNone;
  }
  stats_.connects_total++;
  live_connection_ = ++connection_counter_;
  broken_ = false;
  broken_reason_.clear();
  writes_since_barrier_ = 0;
  state_ = ConnectionState::kConnected;
  const std::string certificate = stream->PeerCertificate();
  LogInfo("connected to secondary ", channel_->peer(), " (volume ", options_.volume,
          ", continuing after seq ", hr.last_applied_seq(),
          certificate.empty() ? "" : ", its certificate: ", certificate, ")");
  return stream;
}

void Replicator::NoteWindowLevelLocked() {
  const bool high = inflight_writes_ * 4 >= options_.max_inflight_writes * 3 ||
                    inflight_bytes_ * 4 >= options_.max_inflight_bytes * 3;
  if (!high) {
    window_high_since_ = absl::InfiniteFuture();
  } else if (window_high_since_ == absl::InfiniteFuture()) {
    window_high_since_ = absl::Now();
  }
}

bool Replicator::PeerTimedOut(uint64_t connection) {
  absl::MutexLock lock(&mu_);
  if (live_connection_ != connection || broken_ || inflight_.empty()) return false;
  const absl::Duration silent = absl::Now() - last_progress_;
  if (silent < options_.peer_timeout) return false;
  broken_ = true;
  peer_following_.store(false, std::memory_order_release);
  broken_reason_ = absl::StrCat("no acknowledgement from the secondary for ",
                                absl::FormatDuration(absl::Trunc(silent, absl::Milliseconds(100))),
                                " with ", inflight_.size(), " ops in flight (--peer-timeout)");
  return true;
}

uint64_t Replicator::EnqueueLocked(Op op, bool counts_in_window, ChunkRange chunks,
                                   Payload payload) {
  const uint64_t seq = next_seq_++;
  if (inflight_.empty()) last_progress_ = absl::Now();
  op.set_seq(seq);
  const uint64_t bytes = op.data().size() + payload.size();
  inflight_.push_back(
      InflightOp{seq, bytes, counts_in_window, chunks, std::chrono::steady_clock::now()});
  if (counts_in_window) {
    inflight_writes_++;
    inflight_bytes_ += bytes;
    NoteWindowLevelLocked();
    stats_.peak_inflight_writes = std::max(stats_.peak_inflight_writes, inflight_writes_);
    stats_.peak_inflight_bytes = std::max(stats_.peak_inflight_bytes, inflight_bytes_);
  }
  send_queue_bytes_ += ExpandedPayloadBytes(op, op.data().size() + payload.size());
  if (send_queue_.empty() && options_.batch_linger > absl::ZeroDuration()) {
    oldest_queued_at_ = absl::Now();
  }
  if (!IsClientWrite(op.kind())) unlingering_queued_++;
  send_queue_.push_back(QueuedOp{std::move(op), std::move(payload)});
  if (live_stream_ != nullptr) {
    const absl::Time due = SendDueLocked();
    if (due != absl::InfiniteFuture()) live_stream_->WakeAt(due);
  }
  return seq;
}

ReplicationTicket Replicator::Submit(Op::Kind kind, uint64_t offset, uint64_t length,
                                     Payload data, ChunkRange chunks) {
  const uint64_t raw_bytes = data.size();
  // Outside the lock: hashing or compressing a large write must not hold up
  // the stream. The checksum covers the raw payload, so it also catches a
  // codec fault. Only for a write that will travel: without a peer it is only
  // marked (the hash was 7% of a lone primary's CPU at 1 MiB writes), and a
  // peer that appears between here and the lock is rare enough to go back for.
  const bool checksummed = options_.checksum && !data.empty();
  uint64_t checksum = 0;
  Op::Codec codec = Op::CODEC_NONE;
  std::string compressed;  // when set, the op's data instead of `data`
  bool prepared = false;
  auto prepare = [&] {
    if (checksummed) checksum = XXH3_64bits(data.data(), data.size());
    if (options_.compression.codec != Op::CODEC_NONE && !data.empty() &&
        compressor_.Compress(data.view(), &compressed)) {
      data = Payload();
      codec = options_.compression.codec;
    }
    prepared = true;
  };
  if (peer_following()) prepare();
  if (options_.submit_race_for_test) options_.submit_race_for_test();
  // On the wire: what the byte window limits (the raw size until prepared).
  auto wire_bytes = [&] { return codec != Op::CODEC_NONE ? compressed.size() : data.size(); };
  while (true) {
    const uint64_t bytes = wire_bytes();
    absl::ReleasableMutexLock lock(&mu_);
    const uint64_t connection = live_connection_;
    auto room = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (live_connection_ != connection || broken_) return true;
      // A single op larger than the byte window still goes alone.
      return inflight_writes_ < options_.max_inflight_writes &&
             (inflight_bytes_ + bytes <= options_.max_inflight_bytes || inflight_writes_ == 0);
    };
    if (connection != 0 && !room()) {
      // About to wait for room in the window: the NBD replies this thread
      // holds back (a worker's run of writes already done) go first. Every
      // wait below re-checks room().
      CompletionBatch::RunDeferredOutside(&mu_);
    }
    const bool client_write = IsClientWrite(kind);
    bool only_mark = false;
    if (connection != 0 && options_.pull_ahead && client_write) {
      if (ahead_ && inflight_writes_ <= options_.max_inflight_writes / 2 &&
          inflight_bytes_ <= options_.max_inflight_bytes / 2) {
        ahead_ = false;
        stats_.ahead = false;
        LogInfo("volume ", options_.volume, ": the window drained: live writes flow again "
                "(the resync carries what was marked)");
      }
      // Congested = the window has stayed at least 3/4 full for
      // congestion_timeout (a saturated link frees a few slots per ack, so
      // single writers wait only briefly while clients crawl at link speed).
      bool congested = false;
      if (!ahead_) {
        const absl::Time deadline = window_high_since_ + options_.congestion_timeout;
        congested = absl::Now() >= deadline ||
                    (!room() && !mu_.AwaitWithDeadline(absl::Condition(&room), deadline));
      }
      if (congested) {
        ahead_ = true;
        stats_.ahead = true;
        stats_.ahead_episodes_total++;
        LogInfo("volume ", options_.volume, ": the window stayed 3/4 full for ",
                absl::FormatDuration(options_.congestion_timeout),
                ": pulling ahead (writes are only marked until the link catches up)");
      }
      if (ahead_) {
        stats_.ahead_writes_total++;
        only_mark = true;
      }
    } else if (connection != 0) {
      mu_.Await(absl::Condition(&room));
    }
    if (connection != 0 && !only_mark && live_connection_ == connection && !broken_) {
      if (!prepared) {
        // A peer came since the look above: hash (and compress) outside the
        // lock, then take it again. Nothing above changed what this write is.
        lock.Release();
        prepare();
        continue;
      }
      // A live write overtaking chunks that only a resync will bring: the
      // secondary must stop claiming consistency before it applies it.
      if (client_write && stats_.peer_consistent && bitmap_->needs_sync_chunks() > 0) {
        Op begin;
        begin.set_kind(Op::RESYNC_BEGIN);
        EnqueueLocked(std::move(begin), false, ChunkRange{});
        stats_.peer_consistent = false;
        resync_done_seq_ = 0;
      }
      Op op;
      op.set_kind(kind);
      op.set_offset(offset);
      op.set_length(length);
      if (codec != Op::CODEC_NONE) op.set_data(std::move(compressed));
      op.set_codec(codec);
      if (checksummed) op.set_data_checksum(checksum);
      if (options_.compression.codec != Op::CODEC_NONE) {
        stats_.compression_input_bytes += raw_bytes;
        stats_.compression_output_bytes += bytes;
      }
      const uint64_t seq =
          EnqueueLocked(std::move(op), /*counts_in_window=*/true, chunks, std::move(data));
      // The secondary marks its image inconsistent before the first resync
      // chunk lands; it is consistent again once RESYNC_DONE is durable.
      // A RESYNC_DONE queued before this chunk no longer makes it consistent.
      if (kind == Op::RESYNC || kind == Op::RESYNC_ZERO) {
        stats_.peer_consistent = false;
        resync_done_seq_ = 0;
      }
      if (client_write) {
        stats_.replicated_writes_total++;
        stats_.replicated_bytes_total += raw_bytes;
      }
      // Bound an epoch even when the client never flushes, so durability
      // and bit clearing keep up (DRBD's max-epoch-size).
      if (writes_since_barrier_++ == 0) epoch_start_ = absl::Now();
      if (writes_since_barrier_ >= options_.max_epoch_writes ||
          absl::Now() - epoch_start_ >= options_.max_epoch_age) {
        EnqueueLocked(EpochBarrier(), false, ChunkRange{});
        writes_since_barrier_ = 0;
      }
      return ReplicationTicket{seq, connection};
    }
    break;
  }
  // Not connected (or pulling ahead): the secondary will get this chunk from
  // the next resync pass.
  if (!chunks.empty()) bitmap_->EndWrite(chunks, /*replicated=*/false);
  return ReplicationTicket{};
}

ReplicationTicket Replicator::SubmitBarrier(Op::Kind kind) {
  absl::MutexLock lock(&mu_);
  if (live_connection_ == 0 || broken_) return ReplicationTicket{};
  Op barrier;
  barrier.set_kind(kind);
  const uint64_t seq = EnqueueLocked(std::move(barrier), false, ChunkRange{});
  writes_since_barrier_ = 0;
  if (kind == Op::RESYNC_DONE) resync_done_seq_ = seq;
  return ReplicationTicket{seq, live_connection_};
}

bool Replicator::Wait(const ReplicationTicket& ticket, WaitFor what) {
  if (ticket.seq == 0) return false;
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (live_connection_ != ticket.connection) return true;
    return (what == WaitFor::kApplied ? stats_.acked_seq : stats_.durable_seq) >= ticket.seq;
  };
  mu_.Await(absl::Condition(&done));
  return live_connection_ == ticket.connection &&
         (what == WaitFor::kApplied ? stats_.acked_seq : stats_.durable_seq) >= ticket.seq;
}

void Replicator::WhenReached(const ReplicationTicket& ticket, WaitFor what, Reached reached) {
  if (ticket.seq == 0) return std::move(reached)(false);
  {
    absl::MutexLock lock(&mu_);
    if (live_connection_ == ticket.connection) {
      const uint64_t done_seq = what == WaitFor::kApplied ? stats_.acked_seq : stats_.durable_seq;
      if (done_seq < ticket.seq) {
        Waiters& waiters = what == WaitFor::kApplied ? applied_waiters_ : durable_waiters_;
        waiters.emplace(ticket.seq, std::move(reached));
        return;
      }
    }
  }
  // As Wait: reached, or that stream is gone (a newer one never acks it).
  std::move(reached)(Wait(ticket, what));
}

void Replicator::TakeReachedLocked(Waiters& waiters, uint64_t seq, std::vector<Reached>& out) {
  auto end = waiters.upper_bound(seq);
  for (auto it = waiters.begin(); it != end; ++it) out.push_back(std::move(it->second));
  waiters.erase(waiters.begin(), end);
}

void Replicator::RunReached(std::vector<Reached>& reached, bool outcome) {
  if (reached.empty()) return;
  CompletionBatch batch;
  for (Reached& callback : reached) std::move(callback)(outcome);
  reached.clear();
}

ReplicationTicket Replicator::SubmitVerify(uint64_t offset, uint64_t length, uint32_t piece) {
  absl::MutexLock lock(&mu_);
  if (live_connection_ == 0 || broken_) return ReplicationTicket{};
  Op verify;
  verify.set_kind(Op::VERIFY);
  verify.set_offset(offset);
  verify.set_length(length);
  verify.set_verify_piece(piece);
  const uint64_t seq = EnqueueLocked(std::move(verify), false, ChunkRange{});
  return ReplicationTicket{seq, live_connection_};
}

absl::StatusOr<std::vector<uint64_t>> Replicator::AwaitVerify(const ReplicationTicket& ticket,
                                                              absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return live_connection_ != ticket.connection || broken_ ||
           verify_results_.contains(ticket.seq);
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  auto it = verify_results_.find(ticket.seq);
  if (it != verify_results_.end()) {
    std::vector<uint64_t> checksums = std::move(it->second);
    verify_results_.erase(it);
    return checksums;
  }
  if (live_connection_ != ticket.connection || broken_) {
    return absl::UnavailableError("the connection to the secondary was lost during the verify");
  }
  return absl::DeadlineExceededError(
      absl::StrCat("the secondary did not answer a verify within ", absl::FormatDuration(timeout)));
}

bool Replicator::Drain(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return (live_connection_ == 0 || (inflight_.empty() && awaiting_durable_.empty())) &&
           releases_pending_ == 0;
  };
  mu_.AwaitWithTimeout(absl::Condition(&drained), timeout);
  return inflight_.empty() && awaiting_durable_.empty() && releases_pending_ == 0;
}

absl::Time Replicator::SendDueLocked() const {
  if (send_queue_.empty()) return absl::InfiniteFuture();
  if (send_queue_.size() >= static_cast<size_t>(options_.max_batch_ops) ||
      send_queue_bytes_ >= options_.max_batch_bytes) {
    return absl::InfinitePast();  // full batches never wait
  }
  if (unacked_batches_.size() >= static_cast<size_t>(options_.max_partial_batches_in_flight)) {
    return absl::InfiniteFuture();  // Nagle's rule: the next ack asks again
  }
  // Half the window queued or unacknowledged: clients may soon block on it,
  // and what is queued makes a good batch already.
  const bool window_filling = inflight_writes_ * 2 >= options_.max_inflight_writes ||
                              inflight_bytes_ * 2 >= options_.max_inflight_bytes;
  if (options_.batch_linger <= absl::ZeroDuration() || unlingering_queued_ > 0 ||
      window_filling || send_queue_bytes_ >= options_.linger_batch_bytes) {
    return absl::InfinitePast();
  }
  const absl::Time last_overlap =
      absl::FromUnixNanos(last_overlap_ns_.load(std::memory_order_relaxed));
  if (absl::Now() - last_overlap > options_.linger_overlap_memory) return absl::InfinitePast();
  return oldest_queued_at_ + options_.batch_linger;
}

bool Replicator::SendReadyLocked() const { return IsDue(SendDueLocked()); }

StreamEvents::Next Replicator::NextBatch(uint64_t connection,
                                         replication::PrimaryMessage* message,
                                         std::vector<Payload>* payloads, bool* more_coming,
                                         absl::Time* retry_at) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || broken_ || live_connection_ != connection) return StreamEvents::Next::kEnd;
  const absl::Time due = SendDueLocked();
  if (!IsDue(due)) {
    if (due != absl::InfiniteFuture()) *retry_at = due;  // a lingering batch
    return StreamEvents::Next::kIdle;
  }
  replication::Batch* batch = message->mutable_batch();
  // Counted expanded (not compressed) so the secondary never holds more than about
  // max_batch_bytes of payload per batch after decompression.
  uint64_t batch_bytes = 0;
  bool resync_only = true;  // the larger limit holds while the batch has only resync chunks
  auto expanded = [](const QueuedOp& q) {
    return ExpandedPayloadBytes(q.op, q.op.data().size() + q.payload.size());
  };
  while (!send_queue_.empty() && batch->ops_size() < options_.max_batch_ops) {
    const Op::Kind kind = send_queue_.front().op.kind();
    resync_only = resync_only && (kind == Op::RESYNC || kind == Op::RESYNC_ZERO);
    const uint64_t limit = resync_only ? options_.max_resync_batch_bytes : options_.max_batch_bytes;
    const uint64_t op_bytes = expanded(send_queue_.front());
    if (batch_bytes > 0 && batch_bytes + op_bytes > limit) break;
    batch_bytes += op_bytes;
    send_queue_bytes_ -= op_bytes;
    if (!IsClientWrite(kind)) unlingering_queued_--;
    *batch->add_ops() = std::move(send_queue_.front().op);
    payloads->push_back(std::move(send_queue_.front().payload));
    send_queue_.pop_front();
  }
  stats_.sent_seq = batch->ops(batch->ops_size() - 1).seq();
  stats_.batches_sent_total++;
  unacked_batches_.push_back(stats_.sent_seq);
  last_send_ = absl::Now();
  // Only when the next batch may go at once: a message held for coalescing
  // while Nagle's rule holds the next back would wait for an ack it cannot get.
  *more_coming = SendReadyLocked();
  return StreamEvents::Next::kMessage;
}

bool Replicator::OnStreamTick(uint64_t connection) {
  if (PeerTimedOut(connection)) return false;
  absl::MutexLock lock(&mu_);
  if (stopping_ || broken_ || live_connection_ != connection) return false;
  // Idle with writes not yet covered by a barrier: close the epoch so the
  // secondary makes them durable and their bits can clear. Not when writes
  // are queued behind unacked batches (Nagle's rule): the next ack sends
  // them, and that is not idleness.
  if (writes_since_barrier_ > 0 && send_queue_.empty() &&
      absl::Now() - last_send_ >= options_.idle_barrier_delay) {
    EnqueueLocked(EpochBarrier(), false, ChunkRange{});
    writes_since_barrier_ = 0;
  }
  return true;
}

bool Replicator::OnSecondaryMessage(uint64_t connection,
                                    const replication::SecondaryMessage& message) {
  if (message.has_ack()) {
    HandleAck(message.ack());
    return true;
  }
  if (message.has_error()) {
    MarkBroken(connection, absl::StrCat("secondary reported: ", message.error().message()));
  } else {
    MarkBroken(connection, "unexpected message from secondary");
  }
  return false;
}

void Replicator::HandleAck(const replication::Ack& ack) {
  std::vector<ChunkRange> durable_chunks;
  std::vector<Reached> reached;
  {
    absl::MutexLock lock(&mu_);
    while (!unacked_batches_.empty() && unacked_batches_.front() <= ack.applied_seq()) {
      unacked_batches_.pop_front();
    }
    while (!inflight_.empty() && inflight_.front().seq <= ack.applied_seq()) {
      InflightOp op = inflight_.front();
      inflight_.pop_front();
      if (op.counts_in_window) {
        ack_latency_.RecordSince(op.enqueued);
        inflight_writes_--;
        inflight_bytes_ -= op.bytes;
        NoteWindowLevelLocked();
      }
      if (!op.chunks.empty()) awaiting_durable_.push_back(op);
    }
    for (const replication::VerifyResult& result : ack.verify_results()) {
      verify_results_[result.seq()].assign(result.checksums().begin(), result.checksums().end());
    }
    while (!awaiting_durable_.empty() && awaiting_durable_.front().seq <= ack.durable_seq()) {
      durable_chunks.push_back(awaiting_durable_.front().chunks);
      awaiting_durable_.pop_front();
    }
    if (ack.applied_seq() > stats_.acked_seq || !durable_chunks.empty()) {
      last_progress_ = absl::Now();
    }
    stats_.acked_seq = std::max(stats_.acked_seq, ack.applied_seq());
    TakeReachedLocked(applied_waiters_, stats_.acked_seq, reached);
    releases_pending_ += durable_chunks.size();
  }
  // Only durable writes release their bits: a power loss on the secondary
  // cannot then leave a chunk the bitmap forgot (DRBD's barrier ack rule).
  // Released before durable_seq is published, so whoever waits for
  // durability also sees the bitmap settled.
  for (const ChunkRange& chunks : durable_chunks) bitmap_->EndWrite(chunks, /*replicated=*/true);
  absl::ReleasableMutexLock lock(&mu_);
  releases_pending_ -= durable_chunks.size();
  stats_.durable_seq = std::max(stats_.durable_seq, ack.durable_seq());
  if (resync_done_seq_ != 0 && stats_.durable_seq >= resync_done_seq_) {
    stats_.peer_consistent = true;
    resync_done_seq_ = 0;
  }
  TakeReachedLocked(durable_waiters_, stats_.durable_seq, reached);
  lock.Release();
  RunReached(reached, true);
}

void Replicator::MarkBroken(uint64_t connection, const std::string& reason) {
  absl::MutexLock lock(&mu_);
  if (live_connection_ != connection || broken_) return;
  broken_ = true;
  peer_following_.store(false, std::memory_order_release);
  broken_reason_ = reason;
  // Ends the stream's event loop even with a write stuck in flow control.
  if (live_stream_ != nullptr) live_stream_->Cancel();
}

void Replicator::ConnectionLost(const std::string& reason) {
  std::vector<ChunkRange> lost;
  std::vector<Reached> unreached;
  {
    absl::MutexLock lock(&mu_);
    for (const InflightOp& op : inflight_) {
      if (!op.chunks.empty()) lost.push_back(op.chunks);
    }
    for (const InflightOp& op : awaiting_durable_) lost.push_back(op.chunks);
    inflight_.clear();
    awaiting_durable_.clear();
    send_queue_.clear();
    send_queue_bytes_ = 0;
    unlingering_queued_ = 0;
    unacked_batches_.clear();
    verify_results_.clear();
    TakeReachedLocked(applied_waiters_, UINT64_MAX, unreached);
    TakeReachedLocked(durable_waiters_, UINT64_MAX, unreached);
    window_high_since_ = absl::InfiniteFuture();
    ahead_ = false;
    stats_.ahead = false;
    inflight_writes_ = 0;
    inflight_bytes_ = 0;
    live_connection_ = 0;
    peer_following_.store(false, std::memory_order_release);
    resync_done_seq_ = 0;
    stats_.peer_consistent = false;
    state_ = stopping_ ? ConnectionState::kDisconnected : ConnectionState::kConnecting;
    releases_pending_ += lost.size();
  }
  for (const ChunkRange& chunks : lost) bitmap_->EndWrite(chunks, /*replicated=*/false);
  {
    absl::MutexLock lock(&mu_);
    releases_pending_ -= lost.size();
  }
  // After the bits: a sync write completed now is flagged for resync.
  RunReached(unreached, false);
}

Replicator::Snapshot Replicator::snapshot() const {
  absl::MutexLock lock(&mu_);
  Snapshot s = stats_;
  s.connection = state_;
  s.inflight_writes = inflight_writes_;
  s.inflight_bytes = inflight_bytes_;
  s.awaiting_durable = awaiting_durable_.size();
  return s;
}

}  // namespace blockrepl
