#include "primary/verifier.h"

#include <algorithm>
#include <deque>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "primary/verify_runs.h"

namespace blockrepl {

namespace {
constexpr size_t kMaxListedChunks = 1000;
}  // namespace

struct Verifier::PendingRun {
  ReplicationTicket ticket;
  uint64_t offset = 0;
  uint64_t piece = 0;
  std::vector<uint64_t> local;  // checksum per piece
};

Verifier::Verifier(BlockDevice* local, WriteIntentBitmap* bitmap, Replicator* replicator,
                   RangeLock* range_lock)
    : local_(local), bitmap_(bitmap), replicator_(replicator), range_lock_(range_lock) {}

Verifier::Progress Verifier::progress() const {
  absl::MutexLock lock(&mu_);
  return progress_;
}

absl::Status Verifier::Compare(PendingRun& run, bool repair, admin::VerifyReply* reply) {
  ASSIGN_OR_RETURN(std::vector<uint64_t> remote,
                   replicator_->AwaitVerify(run.ticket, kVerifyAnswerTimeout));
  if (remote.size() != run.local.size()) {
    return absl::InternalError(absl::StrCat("the secondary returned ", remote.size(),
                                            " checksums for ", run.local.size(), " pieces"));
  }
  const uint64_t chunk_size = reply->chunk_size();
  uint64_t last_counted = UINT64_MAX;  // a chunk spanning several pieces counts once
  for (size_t i = 0; i < remote.size(); ++i) {
    if (remote[i] == run.local[i]) continue;
    const uint64_t chunk = (run.offset + i * run.piece) / chunk_size;
    if (chunk == last_counted) continue;
    last_counted = chunk;
    if (bitmap_->NextNeedsSync(chunk) == chunk) {
      reply->set_chunks_skipped(reply->chunks_skipped() + 1);
      continue;
    }
    reply->set_chunks_differing(reply->chunks_differing() + 1);
    if (static_cast<size_t>(reply->differing_chunks_size()) < kMaxListedChunks) {
      reply->add_differing_chunks(chunk);
    }
    if (repair) {
      RETURN_IF_ERROR(bitmap_->MarkNeedsSync(ChunkRange{chunk, chunk + 1}));
      reply->set_chunks_marked(reply->chunks_marked() + 1);
    }
  }
  const uint64_t length = std::min<uint64_t>(run.local.size() * run.piece,
                                             local_->Size() - run.offset);
  reply->set_bytes_compared(reply->bytes_compared() + length);
  absl::MutexLock lock(&mu_);
  progress_.done_chunks = std::min(progress_.total_chunks,
                                   (reply->bytes_compared() + chunk_size - 1) / chunk_size);
  progress_.differing_chunks = reply->chunks_differing();
  return absl::OkStatus();
}

absl::StatusOr<admin::VerifyReply> Verifier::Run(const admin::VerifyRequest& request) {
  const uint64_t size = local_->Size();
  if (request.offset() > size || request.length() > size - request.offset()) {
    return absl::OutOfRangeError(absl::StrCat("verify range ", request.offset(), "+",
                                              request.length(), " is beyond the volume size ",
                                              size));
  }
  {
    absl::MutexLock lock(&mu_);
    if (progress_.active) {
      return absl::FailedPreconditionError("a verify of this volume is already running");
    }
    progress_ = Progress{};
    progress_.active = true;
  }
  struct Done {
    Verifier* v;
    ~Done() {
      absl::MutexLock lock(&v->mu_);
      v->progress_.active = false;
    }
  } done{this};

  const Replicator::Snapshot link = replicator_->snapshot();
  if (link.connection != Replicator::ConnectionState::kConnected) {
    return absl::FailedPreconditionError(
        "not connected to the secondary: verify compares both sides (see replctl status)");
  }
  if (!link.peer_consistent) {
    return absl::FailedPreconditionError(
        "the secondary is inconsistent (a resync is running): verify once the pair is in sync");
  }
  const uint64_t layout = bitmap_->layout_version();
  const uint64_t chunk_size = bitmap_->chunk_size();
  const uint64_t piece = VerifyPieceBytes(chunk_size);
  // Whole chunks: a difference anywhere in one is a reason to resync it.
  const uint64_t start = request.offset() / chunk_size * chunk_size;
  const uint64_t end = request.length() == 0
                           ? size
                           : std::min(size, (request.offset() + request.length() + chunk_size - 1) /
                                                chunk_size * chunk_size);
  admin::VerifyReply reply;
  reply.set_chunk_size(chunk_size);
  {
    absl::MutexLock lock(&mu_);
    progress_.total_chunks = (end - start + chunk_size - 1) / chunk_size;
  }
  const absl::Time began = absl::Now();
  std::deque<PendingRun> pending;
  std::string buffer;
  for (uint64_t offset = start; offset < end;) {
    const uint64_t length = std::min(kVerifyRunBytes, end - offset);
    PendingRun run;
    run.offset = offset;
    run.piece = piece;
    {
      const ChunkRange chunks = bitmap_->ChunksFor(offset, length);
      RangeLock::Holder hold = range_lock_->Lock(chunks.first, chunks.end);
      if (bitmap_->layout_version() != layout) {
        return absl::AbortedError("the bitmap was rescaled during the verify; run it again");
      }
      buffer.resize(length);
      RETURN_IF_ERROR(local_->Read(offset, absl::MakeSpan(buffer)));
      // Queued before the lock is released: no write to these chunks can
      // fall between the local read and the secondary's.
      run.ticket = replicator_->SubmitVerify(offset, length, static_cast<uint32_t>(piece));
    }
    if (run.ticket.seq == 0) {
      return absl::UnavailableError(absl::StrCat(
          "the connection to the secondary was lost during the verify (at byte ", offset, ")"));
    }
    run.local = PieceChecksums(buffer, piece);
    pending.push_back(std::move(run));
    if (pending.size() >= kVerifyRunsInFlight) {
      RETURN_IF_ERROR(Compare(pending.front(), request.repair(), &reply));
      pending.pop_front();
    }
    offset += length;
  }
  while (!pending.empty()) {
    RETURN_IF_ERROR(Compare(pending.front(), request.repair(), &reply));
    pending.pop_front();
  }
  reply.set_chunks_compared(progress().total_chunks);
  reply.set_seconds(absl::ToDoubleSeconds(absl::Now() - began));
  LogInfo("verify: ", reply.chunks_compared(), " chunks compared, ", reply.chunks_differing(),
          " differ", request.repair() ? absl::StrCat(", ", reply.chunks_marked(),
                                                     " flagged for resync")
                                     : std::string(),
          reply.chunks_skipped() > 0 ? absl::StrCat(", ", reply.chunks_skipped(),
                                                    " skipped (awaiting resync)")
                                     : std::string());
  return reply;
}

}  // namespace blockrepl
