// Resyncer::UnflagMatchingChunks: the first half of a --resync-mode=checksum
// pass. Walks the flagged chunks in runs of up to 4 MiB of consecutive
// chunks; for each run it takes the range lock, checksums the local bytes and
// queues a VERIFY op, so the secondary checksums the same point of the write
// history. The lock is kept until the answer is in and made durable: a chunk
// is unflagged only if both sides held the same bytes and nothing could have
// changed it in between (a local write failing meanwhile would re-flag it, so
// it must wait). A durable barrier after the VERIFY makes sure the bytes the
// secondary checksummed are on its stable storage, not only in its page
// cache. Chunks that differ stay flagged for the send loop of the same pass.
#include <algorithm>
#include <deque>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "primary/resyncer.h"
#include "primary/verify_runs.h"

namespace blockrepl {
namespace {

struct Run {
  Run(RangeLock::Holder h) : hold(std::move(h)) {}
  RangeLock::Holder hold;  // chunks [first, end) stay locked until decided
  uint64_t first = 0, end = 0;
  uint64_t offset = 0, piece = 0;
  ReplicationTicket ticket;
  std::vector<uint64_t> local;  // XXH3 per piece
};

}  // namespace

bool Resyncer::UnflagMatchingChunks(uint64_t connection, uint64_t layout) {
  const uint64_t chunk_size = bitmap_->chunk_size();
  const uint64_t piece = VerifyPieceBytes(chunk_size);
  const uint64_t run_chunks = std::max<uint64_t>(1, kVerifyRunBytes / chunk_size);
  uint64_t compared = 0, matched = 0;
  std::deque<Run> pending;
  std::string buffer;

  // Decides the oldest run: unflags the chunks whose every piece matched.
  auto decide = [&]() -> bool {
    Run& run = pending.front();
    absl::StatusOr<std::vector<uint64_t>> remote = replicator_->AwaitVerify(run.ticket, kVerifyAnswerTimeout);
    if (!remote.ok() || remote->size() != run.local.size()) return false;
    // Durable already when the barrier of an earlier run came after this VERIFY; else one
    // barrier now (it covers the runs queued behind this one too).
    const bool durable = replicator_->snapshot().durable_seq >= run.ticket.seq;
    if (!replicator_->Wait(durable ? run.ticket : replicator_->SubmitBarrier(),
                           Replicator::WaitFor::kDurable)) {
      return false;
    }
    uint64_t run_matched = 0, run_matched_bytes = 0;
    for (uint64_t chunk = run.first; chunk < run.end; ++chunk) {
      const uint64_t from = (bitmap_->ChunkOffset(chunk) - run.offset) / run.piece;
      const uint64_t to = from + (bitmap_->ChunkLength(chunk) + run.piece - 1) / run.piece;
      if (!std::equal(run.local.begin() + from, run.local.begin() + to, remote->begin() + from)) {
        continue;  // differs: stays flagged for the send loop
      }
      // Equal and durable on both sides: the same bookkeeping as a resync
      // copy the secondary acknowledged durable.
      if (bitmap_->TakeForResync(chunk)) {
        bitmap_->EndWrite(ChunkRange{chunk, chunk + 1}, /*replicated=*/true);
        ++run_matched;
        run_matched_bytes += bitmap_->ChunkLength(chunk);
      }
    }
    compared += run.end - run.first;
    matched += run_matched;
    pending.pop_front();  // releases the range lock
    absl::MutexLock lock(&mu_);
    progress_.done_chunks += run_matched;
    progress_.done_bytes += run_matched_bytes;
    progress_.checksum_matched_chunks_total += run_matched;
    progress_.checksum_matched_bytes_total += run_matched_bytes;
    return true;
  };

  uint64_t cursor = 0;
  while (true) {
    if (Stopping() || replicator_->live_connection() != connection) return false;
    std::optional<uint64_t> next = bitmap_->NextNeedsSync(cursor);
    if (!next.has_value()) break;
    // A pause holds the comparison too. The rate limit counts bytes sent, and a comparison
    // sends only checksums, so it is charged nothing here.
    if (!Throttle(0, connection)) return false;
    uint64_t first = *next, end = first + 1;
    while (end - first < run_chunks && end < bitmap_->chunk_count() &&
           bitmap_->NextNeedsSync(end) == end) {
      ++end;
    }
    cursor = end;
    Run run(range_lock_->Lock(first, end));
    if (bitmap_->layout_version() != layout) return false;
    run.first = first;
    run.end = end;
    run.offset = bitmap_->ChunkOffset(first);
    run.piece = piece;
    const uint64_t length = bitmap_->ChunkOffset(end - 1) + bitmap_->ChunkLength(end - 1) - run.offset;
    buffer.resize(length);
    if (absl::Status s = local_->Read(run.offset, absl::MakeSpan(buffer)); !s.ok()) {
      LogError("resync (checksum): read failed: ", s.message(), "; those chunks will be sent");
      continue;  // they stay flagged; the send loop retries the read
    }
    run.local = PieceChecksums(buffer, piece);
    run.ticket = replicator_->SubmitVerify(run.offset, length, static_cast<uint32_t>(piece));
    if (run.ticket.seq == 0) return false;
    pending.push_back(std::move(run));
    if (pending.size() >= kVerifyRunsInFlight && !decide()) return false;
  }
  while (!pending.empty()) {
    if (!decide()) return false;
  }
  LogInfo("resync (checksum): ", matched, " of ", compared,
          " flagged chunks already equal on the secondary; ", compared - matched, " to send");
  return true;
}

}  // namespace blockrepl
