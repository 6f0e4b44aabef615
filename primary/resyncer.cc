#include "primary/resyncer.h"

#include <algorithm>
#include <string>

#include "common/log.h"
#include "common/thread_name.h"

namespace blockrepl {

using replication::Op;

Resyncer::Resyncer(BlockDevice* local, WriteIntentBitmap* bitmap, Replicator* replicator,
                   RangeLock* range_lock, Mode mode, HistoryKeeper* history)
    : local_(local), bitmap_(bitmap), replicator_(replicator), range_lock_(range_lock),
      mode_(mode), history_(history) {}

Resyncer::~Resyncer() { Stop(); }

void Resyncer::Start() {
  thread_ = std::thread([this] {
    NameThisThread("resync");
    Loop();
  });
}

void Resyncer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool Resyncer::Stopping() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

void Resyncer::SetPaused(bool paused) {
  absl::MutexLock lock(&mu_);
  if (paused_ && !paused) {
    rate_window_start_ = absl::Now();
    rate_window_bytes_ = 0;
  }
  paused_ = paused;
  LogInfo(paused ? "resync paused by the operator" : "resync resumed by the operator");
}

void Resyncer::SetRateLimit(uint64_t bytes_per_second) {
  absl::MutexLock lock(&mu_);
  rate_limit_ = bytes_per_second;
  rate_window_start_ = absl::Now();
  rate_window_bytes_ = 0;
}

bool Resyncer::Throttle(uint64_t bytes, uint64_t connection) {
  while (true) {
    if (replicator_->live_connection() != connection) return false;
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
    if (paused_) {
      mu_.AwaitWithTimeout(absl::Condition(
          +[](Resyncer* r) ABSL_NO_THREAD_SAFETY_ANALYSIS { return r->stopping_ || !r->paused_; },
          this), absl::Milliseconds(100));
      continue;
    }
    if (rate_limit_ == 0) return true;
    // Token bucket over the window since the rate was set: the next chunk
    // may go once the window's average would not exceed the limit.
    const absl::Time allowed =
        rate_window_start_ + absl::Seconds(static_cast<double>(rate_window_bytes_) / rate_limit_);
    const absl::Time now = absl::Now();
    if (now >= allowed) {
      rate_window_bytes_ += bytes;
      return true;
    }
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), std::min(allowed - now, absl::Milliseconds(100)));
  }
}

Resyncer::Progress Resyncer::progress() const {
  absl::MutexLock lock(&mu_);
  Progress p = progress_;
  p.paused = paused_;
  p.rate_limit_bytes_per_second = rate_limit_;
  if (p.active) {
    double elapsed = absl::ToDoubleSeconds(absl::Now() - pass_start_);
    p.rate_bytes_per_second = elapsed > 0 ? p.done_bytes / elapsed : 0;
    p.eta_seconds = p.rate_bytes_per_second > 0
                        ? (p.total_bytes - std::min(p.done_bytes, p.total_bytes)) /
                              p.rate_bytes_per_second
                        : -1;
  }
  return p;
}

void Resyncer::Loop() {
  uint64_t finished_connection = 0;  // the connection whose resync completed
  while (!Stopping()) {
    const uint64_t connection = replicator_->WaitUntilConnected(absl::Milliseconds(200));
    if (connection == 0) continue;
    bool paused;
    {
      absl::MutexLock lock(&mu_);
      paused = paused_;
    }
    const bool work = !paused && (bitmap_->needs_sync_chunks() > 0 ||
                                  !replicator_->snapshot().peer_consistent);
    if (!work && history_ != nullptr && replicator_->peer_following()) history_->NoteInSync();
    if (!work || connection == finished_connection) {
      // Live writes of a connected pair never create needs-sync chunks; a
      // lost connection does, and then `connection` changes. Poll lightly.
      if (work && bitmap_->needs_sync_chunks() > 0) finished_connection = 0;
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(50));
      continue;
    }
    if (RunPass(connection)) finished_connection = connection;
  }
}

bool Resyncer::RunPass(uint64_t connection) {
  const uint64_t chunk_size = bitmap_->chunk_size();
  {
    absl::MutexLock lock(&mu_);
    progress_.active = true;
    progress_.done_bytes = 0;
    progress_.total_chunks = bitmap_->needs_sync_chunks();
    progress_.total_bytes = progress_.total_chunks * chunk_size;
    progress_.done_chunks = 0;
    pass_start_ = absl::Now();
    rate_window_start_ = pass_start_;
    rate_window_bytes_ = 0;
  }
  LogInfo("resync started: ", bitmap_->needs_sync_chunks(), " chunks");
  auto finish = [&](bool completed) {
    absl::MutexLock lock(&mu_);
    progress_.active = false;
    if (completed) {
      progress_.total_bytes = progress_.done_bytes;
      progress_.total_chunks = progress_.done_chunks;
    }
    return completed;
  };
  uint64_t cursor = 0;
  const uint64_t layout = bitmap_->layout_version();
  if (mode_ == Mode::kChecksum && !UnflagMatchingChunks(connection, layout)) return finish(false);
  while (true) {
    if (Stopping() || replicator_->live_connection() != connection) return finish(false);
    std::optional<uint64_t> next = bitmap_->NextNeedsSync(cursor);
    if (!next.has_value()) {
      if (bitmap_->needs_sync_chunks() == 0) break;
      cursor = 0;  // flagged behind the cursor meanwhile: walk again
      continue;
    }
    const uint64_t chunk = *next;
    if (!Throttle(bitmap_->ChunkLength(chunk), connection)) return finish(false);
    cursor = chunk + 1;
    RangeLock::Holder hold = range_lock_->Lock(chunk, chunk + 1);
    // A rescale while we waited renumbers the chunks: start a new pass.
    if (bitmap_->layout_version() != layout) return finish(false);
    if (!bitmap_->TakeForResync(chunk)) continue;
    const uint64_t offset = bitmap_->ChunkOffset(chunk);
    const uint64_t length = bitmap_->ChunkLength(chunk);
    // A new buffer per chunk: it goes to the stream with the op, uncopied.
    Payload buffer = Payload::ForOverwrite(length);
    absl::Status status = local_->Read(offset, buffer.span());
    if (!status.ok()) {
      bitmap_->EndWrite(ChunkRange{chunk, chunk + 1}, /*replicated=*/false);
      LogError("resync read failed: ", status.message(), "; retrying later");
      hold.Release();
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Seconds(1));
      progress_.active = false;
      return false;
    }
    // Sparse and freshly created volumes are mostly zeroes: send those
    // chunks without payload.
    const std::string_view bytes = buffer.view();
    const bool zero = std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
    ReplicationTicket ticket =
        replicator_->Submit(zero ? Op::RESYNC_ZERO : Op::RESYNC, offset, length,
                            zero ? Payload() : std::move(buffer), ChunkRange{chunk, chunk + 1});
    hold.Release();
    if (ticket.seq == 0) return finish(false);
    absl::MutexLock lock(&mu_);
    progress_.done_bytes += length;
    progress_.resynced_bytes_total += length;
    progress_.done_chunks++;
    progress_.resynced_chunks_total++;
    // Chunks flagged after the pass began (a write to a chunk already sent)
    // are walked too: the total grows rather than the bar passing 100%.
    progress_.total_chunks = std::max(progress_.total_chunks, progress_.done_chunks);
    if (zero) progress_.zero_chunks_total++;
    progress_.total_bytes = std::max(progress_.total_bytes, progress_.done_bytes);
  }
  ReplicationTicket done = replicator_->SubmitBarrier(Op::RESYNC_DONE);
  if (done.seq == 0) return finish(false);
  const Progress p = progress();
  LogInfo("resync pass complete: ", p.done_bytes, " bytes handed to the stream");
  return finish(true);
}

}  // namespace blockrepl
