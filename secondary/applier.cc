#include "secondary/applier.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/thread_name.h"
#include "common/xxh3.h"
#include "secondary/direct_write_queue.h"

namespace blockrepl {

using replication::Op;

Applier::Applier(std::string volume, BlockDevice* store, std::string meta_path, ReplicaMeta meta,
                 std::unique_ptr<UndoLog> undo, std::unique_ptr<BitmapFile> own_bitmap)
    : volume_(std::move(volume)),
      store_(store),
      meta_path_(std::move(meta_path)),
      undo_(std::move(undo)) {
  absl::MutexLock lock(&mu_);
  meta_ = std::move(meta);
  AttachOwnBitmap(std::move(own_bitmap));
  stats_.diverged_from = meta_.diverged_from;
  stats_.promoted = meta_.promoted;
  // After meta_: whether a rollback is possible depends on the loaded state.
  RefreshUndoStats();
  stats_.consistent = meta_.consistent;
  stats_.followed_generation = meta_.followed_generation;
  stats_.applied_seq = stats_.durable_seq = meta_.last_applied_seq;
  flusher_ = std::thread([this] {
    NameThisThread("apply-flush");
    FlushLoop();
  });
}

Applier::~Applier() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  flusher_.join();
}

void Applier::FlushLoop() {
  uint64_t flushed_seq = 0;
  while (true) {
    uint64_t target;
    {
      absl::MutexLock lock(&mu_);
      auto work = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || flush_requested_seq_ > std::max(flushed_seq, stats_.durable_seq);
      };
      mu_.Await(absl::Condition(&work));
      if (stopping_) return;
      target = flush_requested_seq_;
    }
    // Everything up to `target` was applied before the request, so one
    // fdatasync covers it, and any later requests that queued meanwhile wait
    // for the next round (group commit).
    absl::Status status = store_->Flush();
    replication::SecondaryMessage message;
    {
      absl::MutexLock lock(&mu_);
      if (status.ok()) {
        stats_.durable_seq = std::max(stats_.durable_seq, target);
        message.mutable_ack()->set_applied_seq(stats_.applied_seq);
        message.mutable_ack()->set_durable_seq(stats_.durable_seq);
      } else {
        NoteStoreError(status);
        if (flush_error_.ok()) {
          flush_error_ = absl::Status(status.code(), absl::StrCat("background flush up to seq ",
                                                                 target, ": ", status.message()));
        }
        stats_.last_error = std::string(flush_error_.message());
        LogError("volume '", volume_, "': ", flush_error_.message());
        message.mutable_error()->set_message(std::string(flush_error_.message()));
        message.mutable_error()->set_seq(target);
      }
    }
    flushed_seq = target;
    absl::MutexLock lock(&listener_mu_);
    if (listener_) listener_(message);
  }
}

void Applier::RefreshUndoStats() {
  stats_.undo_available = !meta_.consistent && meta_.undo_valid && undo_ != nullptr;
  stats_.undo_log_bytes = undo_ != nullptr ? undo_->size_bytes() : 0;
}

absl::Status Applier::BecomeResyncTarget() {
  meta_.consistent = false;
  meta_.undo_valid = undo_ != nullptr;
  if (undo_ != nullptr) RETURN_IF_ERROR(undo_->Clear());
  return SaveMeta();
}

absl::Status Applier::SaveUndo(const IncomingBatch& batch) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const Op& op : batch.ops()) {
    if (op.kind() != Op::BARRIER && op.kind() != Op::RESYNC_DONE && op.kind() != Op::VERIFY &&
        op.kind() != Op::RESYNC_BEGIN && op.length() > 0) {
      ranges.emplace_back(op.offset(), op.length());
    }
  }
  absl::Status s = undo_->SaveBeforeOverwrite(ranges, store_);
  if (!s.ok()) {
    // Losing rollback ability must not stop replication: say so loudly and
    // carry on as a plain (inconsistent) resync target.
    LogError("volume '", volume_, "': undo log failed (", s.message(),
             "); this resync can no longer be rolled back");
    meta_.undo_valid = false;
    undo_->Clear().IgnoreError();
    RETURN_IF_ERROR(SaveMeta());
  }
  return absl::OkStatus();
}

void Applier::NoteStoreError(const absl::Status& status) {
  stats_.store_errors_total++;
  stats_.last_store_error = std::string(status.message());
}

absl::Status Applier::SaveMeta() {
  meta_.last_applied_seq = stats_.durable_seq;
  return meta_.Save(meta_path_);
}

replication::HelloReply Applier::HandleHello(const replication::Hello& hello,
                                             const std::string& peer) {
  replication::HelloReply reply;
  absl::MutexLock lock(&mu_);
  reply.set_size_bytes(store_->Size());
  // Runs under mu_ (the lock above); the annotation lets -Wthread-safety see that.
  auto refuse = [&](const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    reply.set_accepted(false);
    reply.set_error(why);
    stats_.last_error = absl::StrCat("refused primary ", peer, ": ", why);
    LogError(stats_.last_error);
    return reply;
  };
  if (hello.volume() != volume_) {
    return refuse(absl::StrCat("volume mismatch: primary sends volume '", hello.volume(),
                               "', this secondary replicates volume '", volume_, "'"));
  }
  if (hello.size_bytes() != store_->Size()) {
    return refuse(absl::StrCat("size mismatch for volume '", volume_, "': primary has ",
                               hello.size_bytes(), " bytes, secondary store has ", store_->Size(),
                               " bytes"));
  }
  if (hello.generation().empty()) return refuse("primary sent no generation identifier");
  // Identity: a replica belongs to one volume (UUID). A valid certificate
  // and the right name are not enough to overwrite it with another one.
  if (!meta_.volume_uuid.empty() && !hello.volume_uuid().empty() &&
      hello.volume_uuid() != meta_.volume_uuid && !hello.replace_replica()) {
    return refuse(absl::StrCat(
        "wrong volume: this replica of '", volume_, "' belongs to volume UUID ",
        meta_.volume_uuid, ", the primary's is ", hello.volume_uuid(),
        " (another volume, or a re-created bitmap file); start the primary with "
        "--force-full-resync to overwrite this replica with its data"));
  }

  if (meta_.promoted) {
    return refuse(absl::StrCat(
        "volume '", volume_, "' was promoted: this agent serves it as a primary (NBD ",
        meta_.promoted_nbd_listen, "). Two primaries writing would be a split brain; to make it "
        "a replica again run `replctl demote ", volume_, "` here"));
  }
  // What the primary's stream must bring: the rule both sides apply
  // (common/data_history.h) to the two histories and the operator's choice.
  const DataHistory primary{hello.generation(), hello.diverged_from(),
                            {hello.older_generations().begin(), hello.older_generations().end()}};
  DataHistory mine = meta_.history();
  DiscardChoice discard = DiscardChoice::kNone;
  if (hello.discard_secondary()) discard = DiscardChoice::kSecondary;
  if (hello.discard_primary()) discard = DiscardChoice::kPrimary;
  if (resolution_ != DiscardChoice::kNone) discard = resolution_;
  const bool new_identity =
      !hello.volume_uuid().empty() && hello.volume_uuid() != meta_.volume_uuid;
  SyncDecision decision = DecideSync(primary, mine, discard, hello.assume_clean());
  if (new_identity && !meta_.volume_uuid.empty()) {
    // The operator replaces this replica (checked above): whatever it held.
    decision.kind = SyncDecision::Kind::kFullSync;
    decision.reason = "the primary replaces this replica";
  }
  reply.set_diverged_from(mine.diverged_from);
  for (const std::string& id : mine.older) reply.add_older_generations(id);
  reply.set_discard_secondary(resolution_ == DiscardChoice::kSecondary);
  reply.set_discard_primary(resolution_ == DiscardChoice::kPrimary);
  reply.set_followed_generation(meta_.followed_generation);
  reply.set_promote_nbd_listen(promote_nbd_listen_);
  if (decision.kind == SyncDecision::Kind::kRefuse) {
    stats_.split_brain = decision.split_brain;
    reply.set_split_brain(decision.split_brain);
    return refuse(decision.reason);
  }
  const bool full_sync = decision.kind == SyncDecision::Kind::kFullSync;
  reply.set_full_sync(full_sync);
  for (const replication::ByteRange& r : OwnWrites()) *reply.add_own_writes() = r;

  reply.set_accepted(true);
  reply.set_last_applied_seq(stats_.applied_seq);
  reply.set_consistent(meta_.consistent);
  if (new_identity) {
    if (!meta_.volume_uuid.empty()) {
      LogInfo("volume '", volume_, "': re-paired from volume UUID ", meta_.volume_uuid, " to ",
              hello.volume_uuid(), " (the primary asked to replace this replica)");
    }
    meta_.volume_uuid = hello.volume_uuid();
  }
  const bool chunk_changed = hello.chunk_size() != 0 && hello.chunk_size() != meta_.chunk_size;
  if (chunk_changed) meta_.chunk_size = hello.chunk_size();  // for a later promotion's bitmap
  const bool had_own_writes = mine.diverged() || reply.own_writes_size() > 0;
  if (hello.generation() != meta_.followed_generation || new_identity || mine.diverged() ||
      chunk_changed) {
    mine.Follow(hello.generation());
    meta_.set_history(mine);
    if (full_sync) {
      // Another history: the old image is worth nothing to this primary,
      // so no undo log (it would copy the whole disk).
      meta_.consistent = false;
      meta_.undo_valid = false;
    } else if (had_own_writes && meta_.consistent) {
      // Our own writes are about to be overwritten chunk by chunk: until
      // RESYNC_DONE the image is neither our state nor the primary's.
      absl::Status s = BecomeResyncTarget();
      if (!s.ok()) return refuse(absl::StrCat("cannot start the undo log: ", s.message()));
    }
    absl::Status s = SaveMeta();
    if (!s.ok()) return refuse(absl::StrCat("cannot save metadata: ", s.message()));
  }
  if (resolution_ != DiscardChoice::kNone) {
    LogInfo("volume '", volume_, "': the operator's resolution served this handshake (",
            decision.reason, ")");
    resolution_ = DiscardChoice::kNone;
    stats_.resolution = DiscardChoice::kNone;
  }
  stats_.split_brain = false;
  stats_.diverged_from = meta_.diverged_from;
  reply.set_consistent(meta_.consistent);  // as it is now (about to be overwritten: false)
  stats_.connected = true;
  stats_.peer = peer;
  stats_.streams_total++;
  stats_.last_error.clear();
  stats_.consistent = meta_.consistent;
  stats_.followed_generation = meta_.followed_generation;
  RefreshUndoStats();
  LogInfo("accepted primary ", peer, " for volume '", volume_, "'",
          full_sync ? " (full sync follows)" : "",
          reply.own_writes_size() > 0
              ? absl::StrCat(" (", reply.own_writes_size(), " ranges written here on our own "
                             "will be overwritten by its resync)")
              : "");
  return reply;
}

absl::Status Applier::ValidateOp(const Op& op, const PayloadView& payload,
                                 uint64_t previous_seq) const {
  if (op.seq() <= previous_seq) {
    return absl::InvalidArgumentError(absl::StrCat("op seq ", op.seq(),
                                                   " is not after seq ", previous_seq));
  }
  const uint64_t size = store_->Size();
  if (handover_pending_) {
    return absl::InvalidArgumentError(
        absl::StrCat("op seq ", op.seq(), " after HANDOVER: this volume is the primary now"));
  }
  switch (op.kind()) {
    case Op::BARRIER:
    case Op::RESYNC_DONE:
      return absl::OkStatus();
    case Op::HANDOVER:
      if (!meta_.consistent) {
        return absl::FailedPreconditionError(absl::StrCat(
            "op seq ", op.seq(), ": HANDOVER to an inconsistent image (a resync is running)"));
      }
      if (promote_nbd_listen_.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "op seq ", op.seq(), ": HANDOVER, but volume '", volume_,
            "' has no --nbd-listen here to serve clients on"));
      }
      return absl::OkStatus();
    case Op::RESYNC_BEGIN:
      if (payload.size != 0 || op.length() != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("op seq ", op.seq(), ": RESYNC_BEGIN carries no range or data"));
      }
      return absl::OkStatus();
    case Op::WRITE:
    case Op::RESYNC:
      if (payload.size != op.length()) {
        return absl::InvalidArgumentError(absl::StrCat("op seq ", op.seq(), ": length ",
                                                       op.length(), " but ", payload.size,
                                                       " bytes of data"));
      }
      if (op.has_data_checksum() && payload.Checksum() != op.data_checksum()) {
        return absl::DataLossError(absl::StrCat(
            "op seq ", op.seq(), " (", op.length(), " bytes at ", op.offset(),
            "): data checksum mismatch, corrupted in transit; nothing of this batch applied"));
      }
      break;
    case Op::TRIM:
    case Op::WRITE_ZEROES:
    case Op::RESYNC_ZERO:
      if (payload.size != 0) {
        return absl::InvalidArgumentError(absl::StrCat("op seq ", op.seq(), ": unexpected data"));
      }
      break;
    case Op::VERIFY:
      // Bounded so one op cannot make us read (or answer) without limit.
      if (payload.size != 0 || op.verify_piece() == 0 || op.length() == 0 ||
          op.length() > kMaxVerifyBytes || op.length() / op.verify_piece() > kMaxVerifyPieces) {
        return absl::InvalidArgumentError(absl::StrCat(
            "op seq ", op.seq(), ": verify of ", op.length(), " bytes in pieces of ",
            op.verify_piece(), " is malformed (at most ", kMaxVerifyBytes, " bytes and ",
            kMaxVerifyPieces, " pieces)"));
      }
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("op seq ", op.seq(), ": unknown kind ",
                                                     static_cast<int>(op.kind())));
  }
  if (op.offset() > size || op.length() > size - op.offset()) {
    return absl::OutOfRangeError(absl::StrCat("op seq ", op.seq(), ": range ", op.offset(), "+",
                                              op.length(), " is beyond the volume size ", size));
  }
  return absl::OkStatus();
}

absl::Status Applier::Checksum(const Op& op, replication::Ack* ack) {
  replication::VerifyResult* result = ack->add_verify_results();
  result->set_seq(op.seq());
  verify_buffer_.resize(op.length());
  RETURN_IF_ERROR(store_->Read(op.offset(), absl::MakeSpan(verify_buffer_)));
  for (uint64_t at = 0; at < op.length(); at += op.verify_piece()) {
    const uint64_t n = std::min<uint64_t>(op.verify_piece(), op.length() - at);
    result->add_checksums(XXH3_64bits(verify_buffer_.data() + at, n));
  }
  return absl::OkStatus();
}

bool Applier::IsDirectWrite(const Op& op) const {
  return direct_ != nullptr && (op.kind() == Op::WRITE || op.kind() == Op::RESYNC) &&
         DirectWriteQueue::Aligned(op.offset(), op.length());
}

void Applier::UseDirectWrites(std::unique_ptr<DirectWriteQueue> direct) {
  absl::MutexLock lock(&mu_);
  direct_ = std::move(direct);
}

absl::Status Applier::DrainDirectWrites() {
  return direct_ != nullptr ? direct_->Drain() : absl::OkStatus();
}

absl::Status Applier::ApplyOp(const Op& op, const PayloadView& payload) {
  switch (op.kind()) {
    case Op::WRITE:
    case Op::RESYNC:
      return store_->WritePieces(op.offset(), payload.pieces, /*fua=*/false);
    case Op::TRIM:
      return store_->Trim(op.offset(), op.length(), /*fua=*/false);
    case Op::WRITE_ZEROES:
    case Op::RESYNC_ZERO:
      // Punching holes keeps a sparse replica sparse; either way it reads
      // back as zeroes, like the primary.
      return store_->WriteZeroes(op.offset(), op.length(), /*may_trim=*/true, /*fua=*/false);
    case Op::BARRIER:
      if (op.durability_only()) {
        flush_requested_seq_ = op.seq();  // the flusher takes it from here
        return absl::OkStatus();
      }
      return store_->Flush();
    case Op::RESYNC_BEGIN:
      return absl::OkStatus();  // ApplyBatch marked the image inconsistent already
    case Op::HANDOVER:
      // Everything before is durable once the flush returns; from the saved
      // meta on, this store is the volume's primary (also after a crash).
      RETURN_IF_ERROR(store_->Flush());
      stats_.durable_seq = op.seq();
      meta_.promoted = true;
      meta_.promoted_nbd_listen = promote_nbd_listen_;
      meta_.promoted_peer = promote_peer_;
      RETURN_IF_ERROR(SaveMeta());
      handover_pending_ = true;
      stats_.promoted = true;
      LogInfo("volume '", volume_, "': HANDOVER from the primary (planned switchover): this side "
              "serves it on ", promote_nbd_listen_, " once the old primary's stream ends");
      return absl::OkStatus();
    case Op::RESYNC_DONE: {
      RETURN_IF_ERROR(store_->Flush());
      meta_.consistent = true;
      meta_.undo_valid = false;
      stats_.durable_seq = op.seq();
      RETURN_IF_ERROR(SaveMeta());
      // The resync overwrote whatever we wrote on our own (the primary took
      // those ranges from the handshake): nothing is ours alone any more.
      RETURN_IF_ERROR(ClearOwnWrites());
      // Consistent again: the old contents are no longer needed.
      return undo_ != nullptr ? undo_->Clear() : absl::OkStatus();
    }
    default:
      return absl::InternalError("unreachable");
  }
}

absl::Status Applier::ApplyBatch(const IncomingBatch& batch, replication::Ack* ack) {
  absl::MutexLock lock(&mu_);
  // Validate the whole batch before touching anything (the undo log reads
  // the ranges too): a malformed batch is refused without side effects.
  // A failed background flush refuses everything after it: the primary
  // must resync what that flush covered.
  absl::Status status = flush_error_;
  bool has_resync = false;
  uint64_t previous_seq = stats_.applied_seq;
  for (size_t i = 0; i < batch.size(); ++i) {
    const Op& op = batch.ops()[i];
    if (status.ok()) status = ValidateOp(op, batch.payload(i), previous_seq);
    if (!status.ok()) break;
    previous_seq = op.seq();
    has_resync |= op.kind() == Op::RESYNC || op.kind() == Op::RESYNC_ZERO ||
                  op.kind() == Op::RESYNC_BEGIN;
  }
  if (!status.ok()) {
    stats_.last_error = std::string(status.message());
    LogError("volume '", volume_, "': refusing batch: ", status.message());
    ack->set_applied_seq(stats_.applied_seq);
    ack->set_durable_seq(stats_.durable_seq);
    return status;
  }
  if (has_resync && meta_.consistent) status = BecomeResyncTarget();
  if (status.ok() && !meta_.consistent && meta_.undo_valid && undo_ != nullptr) {
    status = SaveUndo(batch);
    if (!status.ok()) NoteStoreError(status);
  }
  // Direct writes still in flight have not landed: until the queue is
  // drained, "applied" may only say `drained_seq`.
  uint64_t drained_seq = stats_.applied_seq;
  auto direct_writes_failed = [&](const absl::Status& failure, const std::string& where)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        NoteStoreError(failure);
        stats_.applied_seq = drained_seq;
        return absl::Status(failure.code(), absl::StrCat("the writes after op seq ", drained_seq,
                                                         where, ": ", failure.message()));
      };
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!status.ok()) break;
    const Op& op = batch.ops()[i];
    const bool is_resync = op.kind() == Op::RESYNC || op.kind() == Op::RESYNC_ZERO;
    const bool direct = IsDirectWrite(op);
    if (!direct) {
      // Every other op comes after the writes before it, as on the primary.
      status = DrainDirectWrites();
      if (!status.ok()) {
        status = direct_writes_failed(status, absl::StrCat(" (before op seq ", op.seq(), ")"));
        break;
      }
      drained_seq = stats_.applied_seq;
    }
    if (direct) {
      status = direct_->Write(op.offset(), batch.payload(i).pieces);
    } else {
      status = op.kind() == Op::VERIFY ? Checksum(op, ack) : ApplyOp(op, batch.payload(i));
    }
    if (!status.ok()) {
      NoteStoreError(status);  // ValidateOp passed, so this is the store failing (EIO, ENOSPC...)
      status = absl::Status(status.code(), absl::StrCat("applying op seq ", op.seq(), ": ",
                                                       status.message()));
      if (direct) stats_.applied_seq = drained_seq;  // its earlier writes may have failed too
      break;
    }
    stats_.applied_seq = op.seq();
    if (!direct) drained_seq = op.seq();
    if ((op.kind() == Op::BARRIER && !op.durability_only()) || op.kind() == Op::RESYNC_DONE ||
        op.kind() == Op::HANDOVER) {
      stats_.durable_seq = op.seq();  // flushed inline: everything before it too
    }
    if (op.kind() == Op::WRITE || op.kind() == Op::TRIM || op.kind() == Op::WRITE_ZEROES) {
      stats_.applied_writes_total++;
      stats_.applied_bytes_total += batch.payload(i).size;
    }
    if (is_resync) stats_.resync_bytes_total += op.length();
  }
  // The ack says "applied": every direct write of the batch has landed.
  absl::Status drained = DrainDirectWrites();
  if (!drained.ok() && status.ok()) status = direct_writes_failed(drained, "");
  stats_.consistent = meta_.consistent;
  stats_.resyncing = !meta_.consistent;
  RefreshUndoStats();
  ack->set_applied_seq(stats_.applied_seq);
  ack->set_durable_seq(stats_.durable_seq);
  if (!status.ok()) {
    stats_.last_error = std::string(status.message());
    LogError("volume '", volume_, "': ", status.message());
  }
  return status;
}

void Applier::StreamEnded(const std::string& reason) {
  std::function<void()> promote;
  {
    absl::MutexLock lock(&mu_);
    StreamEndedLocked(reason);
    if (handover_pending_) {
      handover_pending_ = false;
      promote = on_handover_;
    }
  }
  if (promote) promote();
}

void Applier::StreamEndedLocked(const std::string& reason) {
  stats_.connected = false;
  // A failed background flush ended this stream; the next primary resyncs
  // what it covered (it never saw those writes durable).
  flush_error_ = absl::OkStatus();
  // Only durable ops count after a crash; save what we know now.
  absl::Status s = store_->Flush();
  if (s.ok()) {
    stats_.durable_seq = stats_.applied_seq;
    s = SaveMeta();
  }
  if (!s.ok()) LogError("volume '", volume_, "': ", s.message());
  LogInfo("stream from ", stats_.peer, " ended", reason.empty() ? "" : ": ", reason);
}

absl::Status Applier::Shutdown() {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(store_->Flush());
  stats_.durable_seq = stats_.applied_seq;
  return SaveMeta();
}

absl::Status Applier::RollBackInterruptedResync() {
  absl::MutexLock lock(&mu_);
  return RollBackLocked();
}

absl::Status Applier::RollBackLocked() {
  if (meta_.consistent) {
    return absl::FailedPreconditionError(
        absl::StrCat("volume '", volume_, "' is consistent: there is no interrupted resync"));
  }
  if (!meta_.undo_valid || undo_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "volume '", volume_, "' was interrupted during a full sync: no undo log covers it, "
        "the image cannot be made consistent (wait for the primary to finish the sync)"));
  }
  RETURN_IF_ERROR(undo_->RollBack(store_));
  LogInfo("volume '", volume_, "': rolled back ", undo_->saved_extents(),
          " extents to the state before the interrupted resync");
  meta_.consistent = true;
  meta_.undo_valid = false;
  // The image is an older state of the history than the primary's bitmap
  // assumes: no primary may take it for a bitmap resync.
  meta_.followed_generation = absl::StrCat("rolled-back-", meta_.followed_generation);
  RETURN_IF_ERROR(SaveMeta());
  RETURN_IF_ERROR(undo_->Clear());
  stats_.consistent = true;
  stats_.followed_generation = meta_.followed_generation;
  RefreshUndoStats();
  return absl::OkStatus();
}

void Applier::SetResolution(DiscardChoice discard) {
  absl::MutexLock lock(&mu_);
  resolution_ = discard;
  stats_.resolution = discard;
}

absl::StatusOr<ReplicaMeta> Applier::Promote(bool force, const std::string& nbd_listen,
                                             const std::string& peer, bool* rolled_back) {
  absl::MutexLock lock(&mu_);
  *rolled_back = false;
  if (meta_.promoted) {
    return absl::FailedPreconditionError(
        absl::StrCat("volume '", volume_, "' is already promoted (NBD ", meta_.promoted_nbd_listen,
                     ")"));
  }
  if (stats_.connected) {
    return absl::FailedPreconditionError(absl::StrCat(
        "volume '", volume_, "' still receives a primary's stream (", stats_.peer,
        "): promoting it now would make two primaries. Stop or disconnect that primary first "
        "(`replctl disconnect` there); if its site is gone, wait for --peer-timeout to drop it"));
  }
  if (!meta_.consistent) {
    if (meta_.undo_valid && undo_ != nullptr) {
      RETURN_IF_ERROR(RollBackLocked());
      *rolled_back = true;
    } else if (!force) {
      return absl::FailedPreconditionError(absl::StrCat(
          "volume '", volume_, "' is inconsistent: a full sync was interrupted and no undo log "
          "covers it, so the image is not a state the primary ever had. Promote anyway with "
          "--force (expect file system damage; check it before use)"));
    }
  }
  if (meta_.volume_uuid.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("volume '", volume_, "' was never paired with a primary: nothing to promote"));
  }
  // A history the promoted bitmap can name: a rolled-back or forced image
  // starts a new one (its peer will need a full sync, never a wrong merge).
  DataHistory history = meta_.history();
  if (!meta_.consistent || history.current.size() != 32 ||
      history.current.find_first_not_of("0123456789abcdef") != std::string::npos) {
    history.Follow(BitmapFile::NewId());
    meta_.set_history(history);
  }
  own_bitmap_.reset();  // the promoted volume opens it (one writer per file)
  meta_.consistent = true;
  meta_.undo_valid = false;
  meta_.promoted = true;
  meta_.promoted_nbd_listen = nbd_listen;
  meta_.promoted_peer = peer;
  RETURN_IF_ERROR(SaveMeta());
  stats_.promoted = true;
  stats_.consistent = true;
  stats_.followed_generation = meta_.followed_generation;
  RefreshUndoStats();
  return meta_;
}

absl::Status Applier::Demote(const DataHistory& history, std::unique_ptr<BitmapFile> own_bitmap) {
  absl::MutexLock lock(&mu_);
  meta_.set_history(history);
  meta_.promoted = false;
  meta_.consistent = true;
  meta_.undo_valid = false;
  RETURN_IF_ERROR(SaveMeta());
  AttachOwnBitmap(std::move(own_bitmap));
  stats_.promoted = false;
  stats_.consistent = true;
  stats_.followed_generation = meta_.followed_generation;
  stats_.diverged_from = meta_.diverged_from;
  RefreshUndoStats();
  return absl::OkStatus();
}

void Applier::AttachOwnBitmap(std::unique_ptr<BitmapFile> own_bitmap) {
  own_bitmap_ = std::move(own_bitmap);
  stats_.own_write_chunks = 0;
  if (own_bitmap_ != nullptr) {
    for (uint64_t w : own_bitmap_->loaded_bits()) stats_.own_write_chunks += __builtin_popcountll(w);
  }
  own_writes_pending_ = stats_.own_write_chunks > 0;
}

std::vector<replication::ByteRange> Applier::OwnWrites() const {
  std::vector<replication::ByteRange> ranges;
  if (own_bitmap_ == nullptr || !own_writes_pending_) return ranges;
  const uint64_t chunk = own_bitmap_->header().chunk_size;
  const uint64_t size = store_->Size();
  const std::vector<uint64_t>& words = own_bitmap_->loaded_bits();
  // Bits run across pages without gaps: word w of page p covers chunks
  // (p * kWordsPerPage + w) * 64 ... (kBitsPerPage is a multiple of 64).
  for (uint64_t w = 0; w < words.size(); ++w) {
    if (words[w] == 0) continue;
    for (int b = 0; b < 64; ++b) {
      if (!((words[w] >> b) & 1)) continue;
      const uint64_t offset = (w * 64 + b) * chunk;
      if (offset >= size) break;
      const uint64_t length = std::min(chunk, size - offset);
      if (!ranges.empty() && ranges.back().offset() + ranges.back().length() == offset) {
        ranges.back().set_length(ranges.back().length() + length);
      } else {
        replication::ByteRange r;
        r.set_offset(offset);
        r.set_length(length);
        ranges.push_back(r);
      }
    }
  }
  return ranges;
}

absl::Status Applier::ClearOwnWrites() {
  if (own_bitmap_ == nullptr || !own_writes_pending_) return absl::OkStatus();
  std::vector<BitmapPage> pages;
  for (uint64_t i = 0; i < own_bitmap_->header().page_count(); ++i) {
    pages.push_back(BitmapPage{i, std::vector<uint64_t>(kWordsPerPage, 0)});
  }
  RETURN_IF_ERROR(own_bitmap_->WritePages(pages));
  own_writes_pending_ = false;
  stats_.own_write_chunks = 0;
  LogInfo("volume '", volume_, "': the resync overwrote the chunks written here on our own; "
          "cleared ", own_bitmap_->path());
  return absl::OkStatus();
}

Applier::Snapshot Applier::snapshot() const {
  absl::MutexLock lock(&mu_);
  Snapshot s = stats_;
  s.direct_writes = direct_ != nullptr;
  s.direct_writes_total = direct_ != nullptr ? direct_->writes_total() : 0;
  return s;
}

}  // namespace blockrepl
