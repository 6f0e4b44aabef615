#include "secondary/replica_stream.h"

#include <thread>
#include <utility>

#include "common/log.h"
#include "common/thread_name.h"
#include "secondary/applier.h"
#include "secondary/decompress_batch.h"
#include "secondary/replica_service.h"

namespace blockrepl {

using replication::SecondaryMessage;

ReplicaStream::ReplicaStream(ReplicaService* service, grpc::ServerCompletionQueue* cq)
    : service_(service), cq_(cq) {
  service_->StreamCreated();
  {
    absl::MutexLock lock(&mu_);
    operations_ = 1;  // the accept; the done notice counts once accepted (it is not
                      // returned for a stream that never starts)
  }
  context_.AsyncNotifyWhenDone(&done_tag_);
  service_->RequestStream(&context_, &stream_, cq_, &accepted_tag_);
}

void ReplicaStream::OnEvent(Tag::Kind kind, bool ok) {
  switch (kind) {
    case Tag::kAccepted:
      OnAccepted(ok);
      break;
    case Tag::kRead:
      OnReadDone(ok);
      break;
    case Tag::kWritten:
      OnWriteDone(ok);
      break;
    case Tag::kKicked: {
      absl::MutexLock lock(&mu_);
      kick_pending_ = false;
      break;
    }
    case Tag::kFinished:
    case Tag::kDone:
      break;
  }
  if (kind == Tag::kKicked) Pump();
  OperationReturned();
}

void ReplicaStream::OnAccepted(bool ok) {
  if (!ok) {
    // The server is shutting down; nothing was started, nothing to finish.
    absl::MutexLock lock(&mu_);
    ending_ = finished_ = true;
    return;
  }
  new ReplicaStream(service_, cq_);  // the next primary's stream
  {
    absl::MutexLock lock(&mu_);
    operations_++;  // the done notice
  }
  ReadNext();  // the Hello
}

void ReplicaStream::OnReadDone(bool ok) {
  Applier* applier;
  {
    absl::MutexLock lock(&mu_);
    applier = applier_;
  }
  if (!ok) {
    // The primary closed the stream, or it was cancelled (a newer stream of
    // the volume, an operator disconnect, shutdown).
    End(applier == nullptr ? grpc::Status(grpc::CANCELLED, "no handshake") : grpc::Status::OK, "");
    return;
  }
  if (applier != nullptr) {
    if (!DecodeReceived()) return;
    if (WaitsForTheDisk(batch_)) {
      // An fdatasync may take seconds: not on the thread every stream of
      // this secondary is polled by. The next read starts after it, so
      // the stream's order holds.
      {
        absl::MutexLock lock(&mu_);
        operations_++;  // the apply, returned at its end
      }
      std::thread([this, applier] {
        NameThisThread("apply-disk");
        if (ApplyDecoded(applier)) ReadNext();
        OperationReturned();
      }).detach();
      return;
    }
    if (ApplyDecoded(applier)) ReadNext();
    return;
  }
  replication::Hello hello;
  bool is_hello = false;
  absl::Status s = DecodePrimaryMessage(received_, &hello, &batch_, &is_hello);
  if (!s.ok()) return End(grpc::Status(grpc::INVALID_ARGUMENT, std::string(s.message())), "");
  if (!is_hello) {
    return End(grpc::Status(grpc::INVALID_ARGUMENT, "first message must be a Hello"), "");
  }
  // Admission may wait for the volume's previous stream to stop, and that
  // stop needs this polling thread: never wait on it.
  {
    absl::MutexLock lock(&mu_);
    operations_++;  // the admission, returned at its end
  }
  std::thread([this, hello = std::move(hello)]() mutable {
    NameThisThread("repl-admit");
    Admit(std::move(hello));
  }).detach();
}

void ReplicaStream::Admit(replication::Hello hello) {
  ReplicaService::Admission admission = service_->Admit(&context_, hello);
  if (admission.applier == nullptr) {
    if (admission.reply) Send(*admission.reply);
    End(admission.status, "");
  } else {
    {
      absl::MutexLock lock(&mu_);
      applier_ = admission.applier;
      volume_ = admission.volume;
    }
    Send(*admission.reply);  // before any flusher ack: the primary expects the reply first
    admission.applier->SetListener([this](const SecondaryMessage& m) {
      Send(m);
      // A background flush failed: end the stream, the primary resyncs.
      if (m.has_error()) End(grpc::Status(grpc::ABORTED, m.error().message()), m.error().message());
    });
    ReadNext();
  }
  OperationReturned();  // may delete `this`
}

bool ReplicaStream::DecodeReceived() {
  replication::Hello another_hello;
  bool is_hello = false;
  absl::Status status = DecodePrimaryMessage(received_, &another_hello, &batch_, &is_hello);
  if (status.ok() && is_hello) {
    status = absl::InvalidArgumentError("unexpected Hello after the handshake");
  }
  if (status.ok()) return true;
  LogError("volume '", VolumeName(), "': ", status.message());
  End(grpc::Status(grpc::INVALID_ARGUMENT, std::string(status.message())),
      std::string(status.message()));
  return false;
}

bool ReplicaStream::WaitsForTheDisk(const IncomingBatch& batch) {
  for (const replication::Op& op : batch.ops()) {
    switch (op.kind()) {
      case replication::Op::WRITE:
      case replication::Op::TRIM:
      case replication::Op::WRITE_ZEROES:
        continue;  // into the page cache
      case replication::Op::BARRIER:
        if (op.durability_only()) continue;  // the flusher's, in the background
        return true;                          // a client's flush: fdatasync now
      default:
        return true;  // resync (undo log, meta saves), verify (reads), handover
    }
  }
  return false;
}

std::string ReplicaStream::VolumeName() {
  absl::MutexLock lock(&mu_);
  return volume_;
}

bool ReplicaStream::ApplyDecoded(Applier* applier) {
  SecondaryMessage ack_message;
  absl::Status status = DecompressBatch(&batch_);
  if (status.ok()) {
    status = applier->ApplyBatch(batch_, ack_message.mutable_ack());
  } else {
    // Nothing of the batch was applied: ack where we stand.
    const Applier::Snapshot s = applier->snapshot();
    ack_message.mutable_ack()->set_applied_seq(s.applied_seq);
    ack_message.mutable_ack()->set_durable_seq(s.durable_seq);
    LogError("volume '", VolumeName(), "': refusing batch: ", status.message());
  }
  Send(ack_message);
  if (status.ok()) return true;
  // Ack what was applied, then report the failure; the primary marks the
  // rest for resync and reconnects.
  SecondaryMessage error;
  error.mutable_error()->set_message(std::string(status.message()));
  Send(error);
  End(grpc::Status(grpc::ABORTED, std::string(status.message())), std::string(status.message()));
  return false;
}

// Every gRPC operation of a stream starts on the polling thread. Other
// threads (admission, a disk-bound apply, the flusher) change the stream's
// state under mu_ and kick the poller, which starts what is due (Pump).
// Started elsewhere, an operation may complete inside that call, and gRPC's
// core then hands the completion to the poller in a way TSan cannot follow.
namespace {
thread_local bool t_on_the_poller = false;
}  // namespace

void ReplicaStream::MarkThisThreadThePoller() { t_on_the_poller = true; }

void ReplicaStream::Send(const SecondaryMessage& message) {
  grpc::ByteBuffer encoded = EncodeMessage(message);  // outside mu_: the poller takes it per batch
  {
    absl::MutexLock lock(&mu_);
    if (ending_) return;
    unsent_.push_back(std::move(encoded));
  }
  PumpOrKick();
}

void ReplicaStream::End(grpc::Status status, std::string reason) {
  {
    absl::MutexLock lock(&mu_);
    if (ending_) return;
    ending_ = true;
    end_status_ = std::move(status);
    end_reason_ = std::move(reason);
  }
  PumpOrKick();
}

void ReplicaStream::ReadNext() {
  {
    absl::MutexLock lock(&mu_);
    if (ending_) return;
    read_wanted_ = true;
  }
  PumpOrKick();
}

void ReplicaStream::PumpOrKick() {
  if (t_on_the_poller) return Pump();
  {
    absl::MutexLock lock(&mu_);
    if (kick_pending_ || finished_) return;
    kick_pending_ = true;
    operations_++;  // the alarm
    // The previous alarm has fired: its event cleared kick_pending_.
    kick_ = std::make_unique<grpc::Alarm>();
  }
  kick_->Set(cq_, gpr_time_0(GPR_CLOCK_MONOTONIC), &kicked_tag_);
}

void ReplicaStream::Pump() {
  const grpc::ByteBuffer* write = nullptr;
  bool read = false, finish = false;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    if (!writing_ && !unsent_.empty()) {
      writing_ = true;
      operations_++;
      write = &unsent_.front();  // deque elements stay put while others are pushed
    }
    if (read_wanted_ && !ending_) {
      read_wanted_ = false;
      operations_++;
      read = true;
    }
    if (ending_ && !writing_) {  // the queued messages are out: finish
      finished_ = true;
      operations_++;
      finish = true;
      status = end_status_;
    }
  }
  if (write != nullptr) stream_.Write(*write, &written_tag_);
  if (read) stream_.Read(&received_, &read_tag_);
  if (finish) stream_.Finish(status, &finished_tag_);
}

void ReplicaStream::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    unsent_.pop_front();
    writing_ = false;
    if (!ok) {
      unsent_.clear();
      if (!ending_) {
        ending_ = true;
        end_status_ = grpc::Status(grpc::CANCELLED, "could not send to the primary");
        end_reason_ = "ack write failed";
      }
    }
  }
  Pump();
}

void ReplicaStream::OperationReturned() {
  bool hold = false;
  Applier* applier;
  std::string volume, reason;
  {
    absl::MutexLock lock(&mu_);
    if (--operations_ > 0) return;
    if (!finished_) {
      // Nothing pending and not finished: the call ended while the stream
      // waited for nothing (cancelled while idle). Finish it; hold the
      // stream until the finish is started (by a pump), then drop the hold.
      if (!ending_) {
        ending_ = true;
        end_status_ = grpc::Status(grpc::CANCELLED, "cancelled");
      }
      operations_++;
      hold = true;
    }
    applier = applier_;
    volume = volume_;
    reason = end_reason_;
  }
  if (hold) {
    PumpOrKick();
    return OperationReturned();
  }
  // Every operation has come back: no batch is being applied any more.
  if (applier == nullptr) return Delete();
  if (reason.empty() && context_.IsCancelled()) reason = "cancelled";
  // The applier's goodbye flushes the store: off the polling thread.
  std::thread([this, applier, volume, reason] {
    NameThisThread("repl-goodbye");
    applier->SetListener(nullptr);  // returns once no flusher call runs: `this` may go
    applier->StreamEnded(reason);
    service_->Release(volume, &context_);
    Delete();
  }).detach();
}

void ReplicaStream::Delete() {
  ReplicaService* const service = service_;
  delete this;
  service->StreamDeleted();  // last: the service may stop once the count is 0
}

}  // namespace blockrepl
