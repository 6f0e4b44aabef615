#include "secondary/replica_stream.h"

#include <thread>
#include <utility>

#include "common/log.h"
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
    case Tag::kFinished:
    case Tag::kDone:
      break;
  }
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
    if (ApplyReceived()) ReadNext();
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
  std::thread([this, hello = std::move(hello)]() mutable { Admit(std::move(hello)); }).detach();
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

bool ReplicaStream::ApplyReceived() {
  Applier* applier;
  std::string volume;
  {
    absl::MutexLock lock(&mu_);
    applier = applier_;
    volume = volume_;
  }
  replication::Hello another_hello;
  bool is_hello = false;
  absl::Status status = DecodePrimaryMessage(received_, &another_hello, &batch_, &is_hello);
  if (status.ok() && is_hello) {
    status = absl::InvalidArgumentError("unexpected Hello after the handshake");
  }
  if (!status.ok()) {
    LogError("volume '", volume, "': ", status.message());
    End(grpc::Status(grpc::INVALID_ARGUMENT, std::string(status.message())),
        std::string(status.message()));
    return false;
  }
  SecondaryMessage ack_message;
  status = DecompressBatch(&batch_);
  if (status.ok()) {
    status = applier->ApplyBatch(batch_, ack_message.mutable_ack());
  } else {
    // Nothing of the batch was applied: ack where we stand.
    const Applier::Snapshot s = applier->snapshot();
    ack_message.mutable_ack()->set_applied_seq(s.applied_seq);
    ack_message.mutable_ack()->set_durable_seq(s.durable_seq);
    LogError("volume '", volume, "': refusing batch: ", status.message());
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

void ReplicaStream::Send(const SecondaryMessage& message) {
  const grpc::ByteBuffer* start = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (ending_) return;
    unsent_.push_back(EncodeMessage(message));
    if (writing_) return;
    writing_ = true;
    operations_++;
    start = &unsent_.front();  // deque elements stay put while others are pushed
  }
  stream_.Write(*start, &written_tag_);
}

void ReplicaStream::OnWriteDone(bool ok) {
  const grpc::ByteBuffer* next = nullptr;
  bool finish;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    unsent_.pop_front();
    if (!ok) {
      unsent_.clear();
      if (!ending_) {
        ending_ = true;
        end_status_ = grpc::Status(grpc::CANCELLED, "could not send to the primary");
        end_reason_ = "ack write failed";
      }
    }
    if (!unsent_.empty()) {
      next = &unsent_.front();
      operations_++;
    } else {
      writing_ = false;
    }
    finish = TakeFinishLocked();
    status = end_status_;
  }
  if (next != nullptr) stream_.Write(*next, &written_tag_);
  if (finish) StartFinish(status);
}

void ReplicaStream::End(grpc::Status status, std::string reason) {
  bool finish;
  {
    absl::MutexLock lock(&mu_);
    if (ending_) return;
    ending_ = true;
    end_status_ = status;
    end_reason_ = std::move(reason);
    finish = TakeFinishLocked();
  }
  if (finish) StartFinish(status);
}

bool ReplicaStream::TakeFinishLocked() {
  // Not while a Write or Read call is being made: nothing may start after Finish.
  if (!ending_ || writing_ || starting_read_ || finished_) return false;
  finished_ = true;
  operations_++;  // the finish
  return true;
}

void ReplicaStream::StartFinish(const grpc::Status& status) {
  stream_.Finish(status, &finished_tag_);
}

void ReplicaStream::ReadNext() {
  {
    absl::MutexLock lock(&mu_);
    if (ending_) return;
    starting_read_ = true;
    operations_++;
  }
  stream_.Read(&received_, &read_tag_);
  bool finish;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    starting_read_ = false;
    finish = TakeFinishLocked();  // an End that came meanwhile
    status = end_status_;
  }
  if (finish) StartFinish(status);
}

void ReplicaStream::OperationReturned() {
  bool finish = false;
  grpc::Status status;
  Applier* applier;
  std::string volume, reason;
  {
    absl::MutexLock lock(&mu_);
    if (--operations_ > 0) return;
    if (!finished_) {
      // Nothing pending and not finished: the call ended while the stream
      // waited for nothing (cancelled while idle). Finish it; that return
      // comes back here.
      if (!ending_) {
        ending_ = true;
        end_status_ = grpc::Status(grpc::CANCELLED, "cancelled");
      }
      finish = TakeFinishLocked();
      status = end_status_;
    }
    applier = applier_;
    volume = volume_;
    reason = end_reason_;
  }
  if (finish) return StartFinish(status);
  // Every operation has come back: no batch is being applied any more.
  if (applier != nullptr) {
    applier->SetListener(nullptr);  // returns once no flusher call runs: `this` may go
    if (reason.empty() && context_.IsCancelled()) reason = "cancelled";
    applier->StreamEnded(reason);
    service_->Release(volume, &context_);
  }
  ReplicaService* const service = service_;
  delete this;
  service->StreamDeleted();  // last: the service may stop once the count is 0
}

}  // namespace blockrepl
