#include "secondary/replica_service.h"

#include <grpcpp/impl/codegen/method_handler.h>
#include <grpcpp/impl/codegen/rpc_service_method.h>

#include "common/tls/tls_options.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "common/wire/stream_codec.h"
#include "secondary/decompress_batch.h"

namespace blockrepl {

using replication::SecondaryMessage;

ReplicaService::ReplicaService(std::map<std::string, Applier*> appliers,
                               std::map<std::string, std::string> peer_names)
    : appliers_(std::move(appliers)), peer_names_(std::move(peer_names)) {
  // What the generated Replication::Service does, with ByteBuffer for both
  // message types.
  using Handler = grpc::internal::BidiStreamingHandler<ReplicaService, grpc::ByteBuffer,
                                                       grpc::ByteBuffer>;
  AddMethod(new grpc::internal::RpcServiceMethod(
      kReplicationStreamMethod, grpc::internal::RpcMethod::BIDI_STREAMING,
      new Handler(
          [](ReplicaService* service, grpc::ServerContext* context,
             grpc::ServerReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>* stream) {
            return service->Stream(context, stream);
          },
          this)));
}

bool ReplicaService::Claim(const std::string& volume, grpc::ServerContext* context) {
  absl::MutexLock lock(&mu_);
  // Stopping: a primary reconnecting at once must not hold up the shutdown.
  if (stopping_) return false;
  auto it = active_.find(volume);
  if (it != active_.end()) {
    LogInfo("volume '", volume, "': a new primary stream replaces the active one");
    it->second->TryCancel();
    auto free = [this, &volume]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return active_.count(volume) == 0;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&free), absl::Seconds(30))) return false;
  }
  active_[volume] = context;
  return true;
}

void ReplicaService::Release(const std::string& volume, grpc::ServerContext* context) {
  absl::MutexLock lock(&mu_);
  auto it = active_.find(volume);
  if (it != active_.end() && it->second == context) active_.erase(it);
}

absl::Status ReplicaService::SetDisconnected(const std::string& volume, bool disconnected) {
  if (appliers_.find(volume) == appliers_.end()) {
    return absl::NotFoundError(absl::StrCat("no volume named '", volume, "'"));
  }
  absl::MutexLock lock(&mu_);
  if (disconnected) {
    disconnected_.insert(volume);
    auto it = active_.find(volume);
    if (it != active_.end()) it->second->TryCancel();
    LogInfo("volume '", volume, "': disconnected by the operator");
  } else if (disconnected_.erase(volume) > 0) {
    LogInfo("volume '", volume, "': the operator allows the primary to connect again");
  }
  return absl::OkStatus();
}

bool ReplicaService::disconnected(const std::string& volume) const {
  absl::MutexLock lock(&mu_);
  return disconnected_.contains(volume);
}

void ReplicaService::CancelAll() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  for (auto& [volume, context] : active_) context->TryCancel();
}

grpc::Status ReplicaService::Stream(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>* stream) {
  grpc::ByteBuffer received;
  if (!stream->Read(&received)) return grpc::Status(grpc::CANCELLED, "no handshake");
  replication::Hello hello;
  IncomingBatch batch;
  bool is_hello = false;
  if (absl::Status s = DecodePrimaryMessage(received, &hello, &batch, &is_hello); !s.ok()) {
    return grpc::Status(grpc::INVALID_ARGUMENT, std::string(s.message()));
  }
  if (!is_hello) return grpc::Status(grpc::INVALID_ARGUMENT, "first message must be a Hello");
  const std::string volume = hello.volume();
  auto it = appliers_.find(volume);
  SecondaryMessage reply;
  if (it == appliers_.end()) {
    // Refuse in-band so the primary can show the reason to its operator.
    std::string known;
    for (const auto& [name, applier] : appliers_) absl::StrAppend(&known, known.empty() ? "" : ", ", "'", name, "'");
    std::string error = absl::StrCat("volume mismatch: primary sends volume '", volume,
                                     "', this secondary replicates volume ", known);
    LogError("refused primary ", context->peer(), ": ", error);
    reply.mutable_hello_reply()->set_accepted(false);
    reply.mutable_hello_reply()->set_error(error);
    stream->Write(EncodeMessage(reply));
    return grpc::Status(grpc::FAILED_PRECONDITION, error);
  }
  Applier* applier = it->second;
  auto required = peer_names_.find(volume);
  if (required != peer_names_.end() && !required->second.empty()) {
    std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
    if (auth == nullptr || !auth->IsPeerAuthenticated() ||
        !PeerCertificateNames(*auth, required->second)) {
      std::string error = absl::StrCat("wrong peer: volume '", volume,
                                       "' accepts only a primary whose certificate names '",
                                       required->second, "' (--peer-name)");
      LogError("refused primary ", context->peer(), ": ", error);
      reply.mutable_hello_reply()->set_accepted(false);
      reply.mutable_hello_reply()->set_error(error);
      stream->Write(EncodeMessage(reply));
      return grpc::Status(grpc::PERMISSION_DENIED, error);
    }
  }
  if (disconnected(volume)) {
    std::string error = absl::StrCat("the secondary's operator disconnected volume '", volume,
                                     "' (replctl connect on the secondary lets it resume)");
    reply.mutable_hello_reply()->set_accepted(false);
    reply.mutable_hello_reply()->set_error(error);
    stream->Write(EncodeMessage(reply));
    return grpc::Status(grpc::FAILED_PRECONDITION, error);
  }
  // Validate before claiming: a wrong primary must not kick out the right one.
  if (hello.size_bytes() != applier->size()) {
    *reply.mutable_hello_reply() = applier->HandleHello(hello, context->peer());
    stream->Write(EncodeMessage(reply));
    return grpc::Status(grpc::FAILED_PRECONDITION, reply.hello_reply().error());
  }
  if (!Claim(volume, context)) {
    return grpc::Status(grpc::UNAVAILABLE,
                        "the secondary is stopping, or its previous stream of this volume did not stop");
  }
  *reply.mutable_hello_reply() = applier->HandleHello(hello, context->peer());
  if (!reply.hello_reply().accepted()) {
    stream->Write(EncodeMessage(reply));
    Release(volume, context);
    return grpc::Status(grpc::FAILED_PRECONDITION, reply.hello_reply().error());
  }
  if (!stream->Write(EncodeMessage(reply))) {
    applier->StreamEnded("could not send handshake reply");
    Release(volume, context);
    return grpc::Status(grpc::CANCELLED, "could not send handshake reply");
  }

  // Two writers from here on: this thread (batch acks) and the applier's
  // flusher (background durability acks), one stream Write at a time.
  absl::Mutex write_mu;
  auto write = [&](const SecondaryMessage& m) {
    absl::MutexLock lock(&write_mu);
    return stream->Write(EncodeMessage(m));
  };
  applier->SetListener([&](const SecondaryMessage& m) {
    write(m);
    // A background flush failed: end the stream, the primary resyncs.
    if (m.has_error()) context->TryCancel();
  });

  grpc::Status result = grpc::Status::OK;
  std::string reason;
  while (stream->Read(&received)) {
    replication::Hello another_hello;
    absl::Status status = DecodePrimaryMessage(received, &another_hello, &batch, &is_hello);
    if (status.ok() && is_hello) {
      status = absl::InvalidArgumentError("unexpected Hello after the handshake");
    }
    if (!status.ok()) {
      reason = std::string(status.message());
      result = grpc::Status(grpc::INVALID_ARGUMENT, reason);
      LogError("volume '", volume, "': ", reason);
      break;
    }
    SecondaryMessage ack_message;
    status = DecompressBatch(&batch);
    if (status.ok()) {
      status = applier->ApplyBatch(batch, ack_message.mutable_ack());
    } else {
      // Nothing of the batch was applied: ack where we stand.
      const Applier::Snapshot s = applier->snapshot();
      ack_message.mutable_ack()->set_applied_seq(s.applied_seq);
      ack_message.mutable_ack()->set_durable_seq(s.durable_seq);
      LogError("volume '", volume, "': refusing batch: ", status.message());
    }
    if (!status.ok()) {
      // Ack what was applied, then report the failure; the primary marks
      // the rest for resync and reconnects.
      write(ack_message);
      SecondaryMessage error;
      error.mutable_error()->set_message(std::string(status.message()));
      write(error);
      reason = std::string(status.message());
      result = grpc::Status(grpc::ABORTED, reason);
      break;
    }
    if (!write(ack_message)) {
      reason = "ack write failed";
      break;
    }
  }
  applier->SetListener(nullptr);  // before `stream` goes away
  if (context->IsCancelled() && reason.empty()) reason = "cancelled";
  applier->StreamEnded(reason);
  Release(volume, context);
  return result;
}

}  // namespace blockrepl
