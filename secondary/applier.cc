#include "secondary/applier.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "xxhash.h"

namespace blockrepl {

using replication::Op;

Applier::Applier(std::string volume, BlockDevice* store, std::string meta_path, ReplicaMeta meta,
                 std::unique_ptr<UndoLog> undo)
    : volume_(std::move(volume)),
      store_(store),
      meta_path_(std::move(meta_path)),
      undo_(std::move(undo)) {
  absl::MutexLock lock(&mu_);
  meta_ = std::move(meta);
  // After meta_: whether a rollback is possible depends on the loaded state.
  RefreshUndoStats();
  stats_.consistent = meta_.consistent;
  stats_.followed_generation = meta_.followed_generation;
  stats_.applied_seq = stats_.durable_seq = meta_.last_applied_seq;
}

void Applier::RefreshUndoStats() {
  stats_.undo_available = !meta_.consistent && meta_.undo_valid && undo_ != nullptr;
  stats_.undo_log_bytes = undo_ != nullptr ? undo_->size_bytes() : 0;
}

absl::Status Applier::SaveUndo(const replication::Batch& batch) {
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

  reply.set_accepted(true);
  reply.set_last_applied_seq(stats_.applied_seq);
  reply.set_followed_generation(meta_.followed_generation);
  reply.set_consistent(meta_.consistent);
  // The same rule the primary applies: another history means a full sync,
  // which makes this image a resync target from now on.
  const bool full_sync = hello.generation() != meta_.followed_generation &&
                         !(meta_.followed_generation.empty() && hello.assume_clean());
  const bool new_identity =
      !hello.volume_uuid().empty() && hello.volume_uuid() != meta_.volume_uuid;
  if (new_identity) {
    if (!meta_.volume_uuid.empty()) {
      LogInfo("volume '", volume_, "': re-paired from volume UUID ", meta_.volume_uuid, " to ",
              hello.volume_uuid(), " (the primary asked to replace this replica)");
    }
    meta_.volume_uuid = hello.volume_uuid();
  }
  if (hello.generation() != meta_.followed_generation || new_identity) {
    meta_.followed_generation = hello.generation();
    if (full_sync) {
      // Another history: the old image is worth nothing to this primary,
      // so no undo log (it would copy the whole disk).
      meta_.consistent = false;
      meta_.undo_valid = false;
    }
    absl::Status s = SaveMeta();
    if (!s.ok()) return refuse(absl::StrCat("cannot save metadata: ", s.message()));
  }
  stats_.connected = true;
  stats_.peer = peer;
  stats_.streams_total++;
  stats_.last_error.clear();
  stats_.consistent = meta_.consistent;
  stats_.followed_generation = meta_.followed_generation;
  RefreshUndoStats();
  LogInfo("accepted primary ", peer, " for volume '", volume_, "'",
          full_sync ? " (full sync follows)" : "");
  return reply;
}

absl::Status Applier::ValidateOp(const Op& op, uint64_t previous_seq) const {
  if (op.seq() <= previous_seq) {
    return absl::InvalidArgumentError(absl::StrCat("op seq ", op.seq(),
                                                   " is not after seq ", previous_seq));
  }
  const uint64_t size = store_->Size();
  switch (op.kind()) {
    case Op::BARRIER:
    case Op::RESYNC_DONE:
      return absl::OkStatus();
    case Op::RESYNC_BEGIN:
      if (!op.data().empty() || op.length() != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("op seq ", op.seq(), ": RESYNC_BEGIN carries no range or data"));
      }
      return absl::OkStatus();
    case Op::WRITE:
    case Op::RESYNC:
      if (op.data().size() != op.length()) {
        return absl::InvalidArgumentError(absl::StrCat("op seq ", op.seq(), ": length ",
                                                       op.length(), " but ", op.data().size(),
                                                       " bytes of data"));
      }
      if (op.has_data_checksum() &&
          XXH3_64bits(op.data().data(), op.data().size()) != op.data_checksum()) {
        return absl::DataLossError(absl::StrCat(
            "op seq ", op.seq(), " (", op.length(), " bytes at ", op.offset(),
            "): data checksum mismatch, corrupted in transit; nothing of this batch applied"));
      }
      break;
    case Op::TRIM:
    case Op::WRITE_ZEROES:
    case Op::RESYNC_ZERO:
      if (!op.data().empty()) {
        return absl::InvalidArgumentError(absl::StrCat("op seq ", op.seq(), ": unexpected data"));
      }
      break;
    case Op::VERIFY:
      // Bounded so one op cannot make us read (or answer) without limit.
      if (!op.data().empty() || op.verify_piece() == 0 || op.length() == 0 ||
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

absl::Status Applier::ApplyOp(const Op& op) {
  switch (op.kind()) {
    case Op::WRITE:
      return store_->Write(op.offset(), op.data(), /*fua=*/false);
    case Op::TRIM:
      return store_->Trim(op.offset(), op.length(), /*fua=*/false);
    case Op::WRITE_ZEROES:
    case Op::RESYNC_ZERO:
      // Punching holes keeps a sparse replica sparse; either way it reads
      // back as zeroes, like the primary.
      return store_->WriteZeroes(op.offset(), op.length(), /*may_trim=*/true, /*fua=*/false);
    case Op::RESYNC:
      return store_->Write(op.offset(), op.data(), /*fua=*/false);
    case Op::BARRIER:
      return store_->Flush();
    case Op::RESYNC_BEGIN:
      return absl::OkStatus();  // ApplyBatch marked the image inconsistent already
    case Op::RESYNC_DONE: {
      RETURN_IF_ERROR(store_->Flush());
      meta_.consistent = true;
      meta_.undo_valid = false;
      stats_.durable_seq = op.seq();
      RETURN_IF_ERROR(SaveMeta());
      // Consistent again: the old contents are no longer needed.
      return undo_ != nullptr ? undo_->Clear() : absl::OkStatus();
    }
    default:
      return absl::InternalError("unreachable");
  }
}

absl::Status Applier::ApplyBatch(const replication::Batch& batch, replication::Ack* ack) {
  absl::MutexLock lock(&mu_);
  // Validate the whole batch before touching anything (the undo log reads
  // the ranges too): a malformed batch is refused without side effects.
  absl::Status status;
  bool has_resync = false;
  uint64_t previous_seq = stats_.applied_seq;
  for (const Op& op : batch.ops()) {
    status = ValidateOp(op, previous_seq);
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
  if (has_resync && meta_.consistent) {
    // From here until RESYNC_DONE the image mixes old and new chunks:
    // record that (and start a fresh undo log) before the first one lands.
    meta_.consistent = false;
    meta_.undo_valid = undo_ != nullptr;
    if (undo_ != nullptr) status = undo_->Clear();
    if (status.ok()) status = SaveMeta();
  }
  if (status.ok() && !meta_.consistent && meta_.undo_valid && undo_ != nullptr) {
    status = SaveUndo(batch);
    if (!status.ok()) NoteStoreError(status);
  }
  for (const Op& op : batch.ops()) {
    if (!status.ok()) break;
    const bool is_resync = op.kind() == Op::RESYNC || op.kind() == Op::RESYNC_ZERO;
    status = op.kind() == Op::VERIFY ? Checksum(op, ack) : ApplyOp(op);
    if (!status.ok()) {
      NoteStoreError(status);  // ValidateOp passed, so this is the store failing (EIO, ENOSPC...)
      status = absl::Status(status.code(), absl::StrCat("applying op seq ", op.seq(), ": ",
                                                       status.message()));
      break;
    }
    stats_.applied_seq = op.seq();
    if (op.kind() == Op::BARRIER || op.kind() == Op::RESYNC_DONE) stats_.durable_seq = op.seq();
    if (op.kind() == Op::WRITE || op.kind() == Op::TRIM || op.kind() == Op::WRITE_ZEROES) {
      stats_.applied_writes_total++;
      stats_.applied_bytes_total += op.data().size();
    }
    if (is_resync) stats_.resync_bytes_total += op.length();
  }
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
  absl::MutexLock lock(&mu_);
  stats_.connected = false;
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

Applier::Snapshot Applier::snapshot() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace blockrepl
