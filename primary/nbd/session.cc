#include "primary/nbd/session.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "common/completion_batch.h"
#include "primary/nbd/handshake.h"
#include "primary/nbd/nbd_wire.h"
#include "primary/nbd/request_reader.h"
#include "primary/nbd/socket_io.h"

namespace blockrepl::nbd {
namespace {

bool HasPayload(uint16_t type) { return type == kCmdWrite; }
bool UsesBuffer(uint16_t type) { return type == kCmdRead || type == kCmdWrite; }
bool IsModifying(uint16_t type) {
  return type == kCmdWrite || type == kCmdTrim || type == kCmdWriteZeroes;
}

}  // namespace

Session::Session(int fd, std::string peer, absl::Span<const Export> exports,
                 const ServerOptions& options, WorkerPool* pool, Stats* stats)
    : fd_(fd),
      peer_(std::move(peer)),
      exports_(exports),
      options_(options),
      pool_(pool),
      stats_(stats) {}

Session::~Session() {
  absl::MutexLock lock(&mu_);
  if (!closed_) close(fd_);
}

void Session::Shutdown() {
  stop_requested_.store(true, std::memory_order_relaxed);
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  if (!closed_) shutdown(fd_, SHUT_RD);
}

void Session::ForceShutdown() {
  stop_requested_.store(true, std::memory_order_relaxed);
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  if (!closed_) shutdown(fd_, SHUT_RDWR);
}

void Session::Log(std::string_view message) { LogConnection(peer_, message); }

void Session::Run() {
  absl::StatusOr<const Export*> chosen = NegotiateExport(fd_, exports_, options_.max_payload);
  if (!chosen.ok()) {
    if (!stop_requested_.load(std::memory_order_relaxed)) {
      stats_->handshake_failures.fetch_add(1, std::memory_order_relaxed);
      Log(absl::StrCat("handshake: ", chosen.status().message(), ", closing"));
    }
  } else if (*chosen != nullptr) {
    Transmission(**chosen);
  }

  // Replies of requests still in flight need the socket: close it only
  // after the last one, and under mu_ so Shutdown() never hits a reused fd.
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](Session* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) { return s->in_flight_ == 0; }, this));
  close(fd_);
  closed_ = true;
  done_.store(true, std::memory_order_release);
}

void Session::Transmission(const Export& e) {
  RequestReader reader(fd_);
  bool previous_alone = false;
  while (true) {
    char header[kRequestHeaderSize];
    absl::Status s = reader.ReadHeader(absl::MakeSpan(header));
    if (!s.ok()) {
      // EOF without DISC is how many clients leave; Stop() is ours.
      if (!IsCleanEof(s) && !stop_requested_.load(std::memory_order_relaxed)) {
        Log(absl::StrCat("reading request: ", s.message(), ", closing"));
      }
      return;
    }
    uint32_t magic = GetU32(header);
    if (magic != kRequestMagic) {
      Log(absl::StrCat("bad request magic 0x", absl::Hex(magic), ", closing"));
      return;
    }
    auto req = std::make_shared<Request>();
    req->flags = GetU16(header + 4);
    req->type = GetU16(header + 6);
    req->cookie = GetU64(header + 8);
    req->offset = GetU64(header + 16);
    req->length = GetU32(header + 24);
    if (req->type < kNumStatsCommands) {
      StatsFor(e)->requests[req->type].fetch_add(1, std::memory_order_relaxed);
    }
    if (req->type == kCmdDisc) return;  // Run() waits for in-flight replies

    uint32_t error = Validate(e, *req);
    if (error != 0 && HasPayload(req->type)) {
      // The payload follows the header whatever we think of it: consume it
      // in bounded pieces to stay in sync, never buffer it.
      s = reader.Discard(req->length);
      if (!s.ok()) {
        if (!stop_requested_.load(std::memory_order_relaxed)) {
          Log(absl::StrCat("discarding refused write payload: ", s.message(), ", closing"));
        }
        return;
      }
    }
    if (error != 0 || (UsesBuffer(req->type) && req->length == 0)) {
      if (error != 0 && req->type < kNumStatsCommands) {
        StatsFor(e)->errors[req->type].fetch_add(1, std::memory_order_relaxed);
      }
      SendReply(req->cookie, error);
      continue;
    }

    uint64_t buffered = UsesBuffer(req->type) ? req->length : 0;
    bool alone = false;
    if (!Admit(buffered, &alone)) return;
    if (HasPayload(req->type)) {
      req->data = Payload::ForOverwrite(req->length);
      s = reader.ReadPayload(req->data.span());
      if (!s.ok()) {
        if (!stop_requested_.load(std::memory_order_relaxed)) {
          Log(absl::StrCat("reading write payload: ", s.message(), ", closing"));
        }
        unanswered_.fetch_sub(1, std::memory_order_acq_rel);
        absl::MutexLock lock(&mu_);
        --in_flight_;
        buffered_bytes_ -= buffered;
        return;
      }
    }
    req->received = std::chrono::steady_clock::now();
    // A client at queue depth 1 gets its writes run on this thread: handing
    // one to a worker costs a wake-up per request, the largest single cost
    // of a small write on a shared VM (docs/PERFORMANCE.md, round 5). Queue
    // depth 1 means: nothing else of this connection in flight, for this
    // request and the one before (at QD 32 the queue runs dry now and then,
    // and running a refill's first write here stalls the rest: -17%), and
    // no next request waiting in the socket (pipelined requests, FUA ones
    // above all, must reach the workers in parallel, not one by one here).
    const bool queue_depth_one = alone && previous_alone && !reader.HasPendingInput();
    previous_alone = alone;
    if (queue_depth_one && IsModifying(req->type)) {
      Execute(e, std::move(req));
    } else {
      // Plain writes may share a worker's run and its replies' sendmsg
      // (WorkerPool); reads, flushes, FUA, trims and zeroes wait on the disk.
      const bool batchable = req->type == kCmdWrite && (req->flags & kCmdFlagFua) == 0;
      pool_->Submit([this, &e, req = std::move(req)]() mutable { Execute(e, std::move(req)); },
                    batchable);
    }
  }
}

uint32_t Session::Validate(const Export& e, const Request& r) const {
  uint16_t allowed_flags = kCmdFlagFua;  // FUA is accepted on every command, per spec
  switch (r.type) {
    case kCmdRead:
    case kCmdWrite:
    case kCmdFlush:
    case kCmdTrim:
      break;
    case kCmdWriteZeroes:
      allowed_flags |= kCmdFlagNoHole | kCmdFlagFastZero;
      break;
    default:
      return kErrInval;  // CACHE, BLOCK_STATUS (not advertised) and unknown types
  }
  if ((r.flags & ~allowed_flags) != 0) return kErrInval;
  if (UsesBuffer(r.type) && r.length > options_.max_payload) return kErrInval;
  if (r.type == kCmdFlush) return 0;  // offset and length are meaningless
  uint64_t size = e.device->Size();
  uint64_t end = r.offset + r.length;
  if (end < r.offset || end > size) {
    return (r.type == kCmdWrite || r.type == kCmdWriteZeroes) ? kErrNoSpc : kErrInval;
  }
  return 0;
}

bool Session::Admit(uint64_t buffered_bytes, bool* alone) {
  struct Args {
    Session* s;
    uint64_t need;
  } args{this, buffered_bytes};
  absl::MutexLock lock(&mu_);
  // One request bigger than the byte budget may still run alone.
  mu_.Await(absl::Condition(
      +[](Args* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        Session* s = a->s;
        if (s->stopping_) return true;
        if (s->in_flight_ >= s->options_.max_requests_per_connection) return false;
        return s->buffered_bytes_ == 0 ||
               s->buffered_bytes_ + a->need <= s->options_.max_buffered_bytes_per_connection;
      },
      &args));
  if (stopping_) return false;
  *alone = unanswered_.fetch_add(1, std::memory_order_acq_rel) == 0;
  ++in_flight_;
  buffered_bytes_ += buffered_bytes;
  return true;
}

void Session::Execute(const Export& e, std::shared_ptr<Request> req) {
  Request& r = *req;
  BlockDevice* dev = e.device;
  const bool fua = (r.flags & kCmdFlagFua) != 0;
  // The request stays alive in the completion until Finish has run.
  auto finish_later = [&] {
    return [this, &e, req](absl::Status status) { Finish(e, *req, status); };
  };
  switch (r.type) {
    case kCmdRead: {
      // Filled by the device, never zeroed first (Admit counted it).
      std::unique_ptr<char[]> read_buffer(new char[r.length]);
      absl::Status status = dev->Read(r.offset, absl::Span<char>(read_buffer.get(), r.length));
      Finish(e, r, status, std::move(read_buffer));
      return;
    }
    case kCmdWrite:
      dev->WriteOwnedAsync(r.offset, std::move(r.data), fua, finish_later());
      return;
    case kCmdFlush:
      Finish(e, r, dev->Flush());
      return;
    case kCmdTrim:
      dev->TrimAsync(r.offset, r.length, fua, finish_later());
      return;
    case kCmdWriteZeroes:
      dev->WriteZeroesAsync(r.offset, r.length, (r.flags & kCmdFlagNoHole) == 0, fua,
                            finish_later());
      return;
  }
}

void Session::Finish(const Export& e, Request& r, const absl::Status& status,
                     std::unique_ptr<char[]> read_buffer) {
  uint32_t error = NbdErrorFromStatus(status);
  if (error != 0) {
    StatsFor(e)->errors[r.type].fetch_add(1, std::memory_order_relaxed);
    // One line per connection, not per request: a failing disk fails a lot.
    if (!logged_device_error_.exchange(true)) {
      Log(absl::StrCat("device error (further ones on this connection not logged): ",
                       status.ToString()));
    }
  } else if (r.type == kCmdRead) {
    StatsFor(e)->bytes_read.fetch_add(r.length, std::memory_order_relaxed);
  } else if (r.type == kCmdWrite) {
    StatsFor(e)->bytes_written.fetch_add(r.length, std::memory_order_relaxed);
  }
  // With simple replies a failed READ carries no data; the buffer was read
  // in full before replying, so the error is always expressible. A READ's
  // data goes with its reply, which releases its buffered bytes once sent.
  uint64_t release_bytes = r.type == kCmdWrite ? r.length : 0;
  unanswered_.fetch_sub(1, std::memory_order_acq_rel);
  if (error == 0 && r.type == kCmdRead) {
    SendReply(r.cookie, error, std::move(read_buffer), r.length);
  } else {
    if (r.type == kCmdRead) release_bytes = r.length;
    SendReply(r.cookie, error);
  }
  if (r.type == kCmdWrite || r.type == kCmdWriteZeroes || r.type == kCmdTrim) {
    StatsFor(e)->write_latency.RecordSince(r.received);
  } else if (r.type == kCmdFlush) {
    StatsFor(e)->flush_latency.RecordSince(r.received);
  }

  read_buffer.reset();  // release the memory before admitting more
  r.data = Payload();
  absl::MutexLock lock(&mu_);
  --in_flight_;
  buffered_bytes_ -= release_bytes;
}

void Session::SendReply(uint64_t cookie, uint32_t error, std::unique_ptr<char[]> data,
                        uint32_t length) {
  {
    absl::MutexLock lock(&write_mu_);
    PendingReply& reply = replies_.emplace_back();
    PutU32(reply.header, kSimpleReplyMagic);
    PutU32(reply.header + 4, error);
    PutU64(reply.header + 8, cookie);
    reply.data = std::move(data);
    reply.length = length;
    if (sending_) return;  // the sending thread takes it along
    sending_ = true;
  }
  if (CompletionBatch::Active()) {
    // Replies of the batch's other completions join ours. The session must
    // outlive the deferred send: hold a place in flight until it has run.
    {
      absl::MutexLock lock(&mu_);
      ++in_flight_;
    }
    CompletionBatch::Defer([this] {
      // A completion thread (the replicator's stream thread, handling an ack) must not wait
      // for a client that does not read its replies: it sends what the
      // socket takes now, and a worker finishes the rest.
      if (!SendQueuedReplies(/*dont_wait=*/true)) {
        pool_->Submit([this] {
          SendQueuedReplies(/*dont_wait=*/false);
          absl::MutexLock lock(&mu_);
          --in_flight_;
        });
        return;
      }
      absl::MutexLock lock(&mu_);
      --in_flight_;
    });
    return;
  }
  SendQueuedReplies(/*dont_wait=*/false);
}

bool Session::SendQueuedReplies(bool dont_wait) {
  // Send until nothing is left: replies queued while a batch was on its
  // way go in the next one. The requests of queued replies may have left
  // in_flight_ already, ours has not: Run() cannot close the socket meanwhile.
  while (true) {
    bool broken;
    {
      absl::MutexLock lock(&write_mu_);
      if (unsent_.empty()) {  // else: the rest a completion thread left us
        if (replies_.empty()) {
          sending_ = false;
          return true;
        }
        unsent_.swap(replies_);
        unsent_offset_ = 0;
      }
      broken = broken_;
    }
    // After a failed send the rest are dropped: the client sees the connection close.
    const SendResult result =
        broken ? SendResult::kFailed : SendBatch(unsent_, dont_wait, &unsent_offset_);
    if (result == SendResult::kSocketFull) return false;
    const bool sent = result == SendResult::kSent;
    uint64_t read_bytes = 0;
    for (const PendingReply& reply : unsent_) read_bytes += reply.length;
    unsent_.clear();
    if (read_bytes != 0) {
      absl::MutexLock lock(&mu_);
      buffered_bytes_ -= read_bytes;
    }
    if (!sent) {
      absl::MutexLock lock(&write_mu_);
      broken_ = true;
    }
  }
}

Session::SendResult Session::SendBatch(std::vector<PendingReply>& batch, bool dont_wait,
                                       uint64_t* offset) {
  // sendmsg takes at most IOV_MAX (1024) pieces: two per reply. Inline room
  // for a queue depth of 32 keeps the common case off the heap.
  constexpr size_t kRepliesPerCall = 512;
  absl::InlinedVector<struct iovec, 64> iov;
  uint64_t start = 0;  // batch offset where the next piece added begins
  for (size_t first = 0; first < batch.size(); first += kRepliesPerCall) {
    iov.clear();
    const uint64_t call_start = start;
    uint64_t skip = *offset > start ? *offset - start : 0;  // already on the wire
    auto add = [&](char* data, uint64_t length) {
      start += length;
      if (skip >= length) {
        skip -= length;
        return;
      }
      iov.push_back({data + skip, length - skip});
      skip = 0;
    };
    for (size_t i = first; i < std::min(batch.size(), first + kRepliesPerCall); ++i) {
      add(batch[i].header, kSimpleReplySize);
      if (batch[i].length != 0) add(batch[i].data.get(), batch[i].length);
    }
    if (iov.empty()) continue;
    const uint64_t first_byte = std::max(*offset, call_start);  // of this call
    absl::StatusOr<uint64_t> sent = Writev(fd_, iov.data(), static_cast<int>(iov.size()), dont_wait);
    if (!sent.ok()) {
      if (!stop_requested_.load(std::memory_order_relaxed)) {
        Log(absl::StrCat("sending reply: ", sent.status().message(), ", closing"));
      }
      // Wake the reader: nothing more can be answered on this connection.
      // fd_ is still open: Run() closes it only after in_flight_ drops to 0.
      shutdown(fd_, SHUT_RDWR);
      return SendResult::kFailed;
    }
    *offset = first_byte + *sent;
    if (*offset < start) return SendResult::kSocketFull;  // only with dont_wait
  }
  return SendResult::kSent;
}

}  // namespace blockrepl::nbd
