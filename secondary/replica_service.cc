#include "secondary/replica_service.h"

#include <grpcpp/impl/codegen/rpc_service_method.h>

#include "common/tls/tls_options.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "common/thread_name.h"
#include "common/wire/stream_codec.h"
#include "secondary/replica_stream.h"

namespace blockrepl {

ReplicaService::ReplicaService(std::map<std::string, Applier*> appliers,
                               std::map<std::string, std::string> peer_names)
    : appliers_(std::move(appliers)), peer_names_(std::move(peer_names)) {
  // What a generated service does for an asynchronous method, with
  // ByteBuffer for both message types (the batches are decoded by
  // common/wire/stream_codec.h).
  AddMethod(new grpc::internal::RpcServiceMethod(
      kReplicationStreamMethod, grpc::internal::RpcMethod::BIDI_STREAMING, nullptr));
  MarkMethodAsync(0);
}

void ReplicaService::Start(grpc::ServerCompletionQueue* cq) {
  cq_ = cq;
  new ReplicaStream(this, cq_);  // waits for the first primary
  poller_ = std::thread([this] {
    NameThisThread("repl-stream");
    ReplicaStream::MarkThisThreadThePoller();
    void* tag;
    bool ok;
    while (cq_->Next(&tag, &ok)) {
      auto* t = static_cast<ReplicaStream::Tag*>(tag);
      t->stream->OnEvent(t->kind, ok);
    }
  });
}

void ReplicaService::Stop() {
  if (!poller_.joinable()) return;
  {
    // A live stream may still start operations (an admission's reply, a
    // flusher's ack), and starting one on a closed queue aborts the process.
    // The server's shutdown has cancelled every call, so each stream is on
    // its way out on the still-running poller.
    absl::MutexLock lock(&mu_);
    auto gone = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_streams_ == 0; };
    mu_.Await(absl::Condition(&gone));
  }
  cq_->Shutdown();  // nothing is pending: Next returns false at once
  poller_.join();
}

void ReplicaService::RequestStream(
    grpc::ServerContext* context,
    grpc::ServerAsyncReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>* stream,
    grpc::ServerCompletionQueue* cq, void* tag) {
  RequestAsyncBidiStreaming(0, context, stream, cq, cq, tag);
}

ReplicaService::~ReplicaService() { Stop(); }

void ReplicaService::StreamCreated() {
  absl::MutexLock lock(&mu_);
  live_streams_++;
}

void ReplicaService::StreamDeleted() {
  absl::MutexLock lock(&mu_);
  live_streams_--;
}

bool ReplicaService::Claim(const std::string& volume, grpc::ServerContextBase* context) {
  absl::MutexLock lock(&mu_);
  // Stopping: a primary reconnecting at once must not hold up the shutdown.
  if (stopping_) return false;
  auto it = active_.find(volume);
  if (it != active_.end()) {
    LogInfo("volume '", volume, "': a new primary stream replaces the active one");
    it->second->TryCancel();
    auto free = [this, &volume]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return active_.count(volume) == 0 || stopping_;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&free), absl::Seconds(30)) || stopping_) {
      return false;
    }
  }
  active_[volume] = context;
  return true;
}

void ReplicaService::Release(const std::string& volume, grpc::ServerContextBase* context) {
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

ReplicaService::Admission ReplicaService::Admit(grpc::ServerContextBase* context,
                                                const replication::Hello& hello) {
  Admission admission;
  admission.volume = hello.volume();
  const std::string& volume = admission.volume;
  auto refuse = [&admission](grpc::StatusCode code, const std::string& error) {
    admission.reply.emplace();
    admission.reply->mutable_hello_reply()->set_accepted(false);
    admission.reply->mutable_hello_reply()->set_error(error);
    admission.status = grpc::Status(code, error);
    return std::move(admission);
  };
  auto it = appliers_.find(volume);
  if (it == appliers_.end()) {
    // Refuse in-band so the primary can show the reason to its operator.
    std::string known;
    for (const auto& [name, applier] : appliers_) absl::StrAppend(&known, known.empty() ? "" : ", ", "'", name, "'");
    std::string error = absl::StrCat("volume mismatch: primary sends volume '", volume,
                                     "', this secondary replicates volume ", known);
    LogError("refused primary ", context->peer(), ": ", error);
    return refuse(grpc::FAILED_PRECONDITION, error);
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
      return refuse(grpc::PERMISSION_DENIED, error);
    }
  }
  if (disconnected(volume)) {
    return refuse(grpc::FAILED_PRECONDITION,
                  absl::StrCat("the secondary's operator disconnected volume '", volume,
                               "' (replctl connect on the secondary lets it resume)"));
  }
  // Validate before claiming: a wrong primary must not kick out the right one.
  if (hello.size_bytes() != applier->size()) {
    admission.reply.emplace();
    *admission.reply->mutable_hello_reply() = applier->HandleHello(hello, context->peer());
    admission.status =
        grpc::Status(grpc::FAILED_PRECONDITION, admission.reply->hello_reply().error());
    return admission;
  }
  if (!Claim(volume, context)) {
    admission.status = grpc::Status(
        grpc::UNAVAILABLE,
        "the secondary is stopping, or its previous stream of this volume did not stop");
    return admission;
  }
  admission.reply.emplace();
  *admission.reply->mutable_hello_reply() = applier->HandleHello(hello, context->peer());
  if (!admission.reply->hello_reply().accepted()) {
    Release(volume, context);
    admission.status =
        grpc::Status(grpc::FAILED_PRECONDITION, admission.reply->hello_reply().error());
    return admission;
  }
  // Which certificate it was, not only its name: after a renewal both the old
  // and the new one name the primary, and the operator wants to see the new.
  const std::string certificate = DescribePeerCertificate(context->auth_context());
  if (!certificate.empty()) {
    LogInfo("volume '", volume, "': primary ", context->peer(), " presented certificate ",
            certificate);
  }
  admission.applier = applier;
  return admission;
}

}  // namespace blockrepl
