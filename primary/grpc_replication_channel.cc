#include "primary/grpc_replication_channel.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/rpc_method.h>
#include <grpcpp/impl/codegen/sync_stream.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/wire/stream_codec.h"

namespace blockrepl {
namespace {

using replication::PrimaryMessage;
using replication::SecondaryMessage;

// The stream is opened untyped (ByteBuffer both ways, as the generated stub
// would with its message types) so batches go out through the zero-copy
// encoder (common/wire/stream_codec.h) instead of protobuf serialization.
class GrpcReplicationStream : public ReplicationStream {
 public:
  GrpcReplicationStream(grpc::ChannelInterface* channel, const grpc::internal::RpcMethod& method) {
    stream_.reset(grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::
                      Create(channel, method, &context_));
  }

  bool Send(PrimaryMessage message, std::vector<Payload> payloads, bool more_coming) override {
    grpc::WriteOptions options;
    // A buffer hint lets gRPC coalesce frames; only when another message is
    // already queued, never on the last one (it would sit in the buffer).
    if (more_coming) options.set_buffer_hint();
    grpc::ByteBuffer buffer = message.has_batch()
                                  ? EncodeBatchMessage(std::move(*message.mutable_batch()), std::move(payloads))
                                  : EncodeMessage(message);
    return stream_->Write(buffer, options);
  }

  bool Receive(SecondaryMessage* message) override {
    grpc::ByteBuffer buffer;
    if (!stream_->Read(&buffer)) return false;
    if (DecodeMessage(buffer, message)) return true;
    malformed_reply_ = true;  // Receive runs on one thread only; FinishReason after it
    context_.TryCancel();
    return false;
  }

  void Cancel() override { context_.TryCancel(); }

  std::string FinishReason() override {
    grpc::Status status = stream_->Finish();
    if (malformed_reply_) return "the secondary sent a message that does not parse";
    if (status.ok()) return "stream closed by the secondary";
    return status.error_message().empty() ? absl::StrCat("grpc code ", status.error_code())
                                          : status.error_message();
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream_;
  bool malformed_reply_ = false;
};

class GrpcReplicationChannel : public ReplicationChannel {
 public:
  GrpcReplicationChannel(const std::string& target, const TlsOptions& tls,
                         absl::Duration peer_timeout)
      : target_(target),
        failure_hint_(tls.enabled()
                          ? " (no route, nothing listening, or the TLS handshake failed: check "
                            "the address, the firewall, and that both certificates chain to the "
                            "other side's --tls-ca)"
                          : " (no route, nothing listening, or the secondary requires TLS)") {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    // Dead-peer detection on a silent link: ping every third of the peer
    // timeout, give up after another third.
    const int third_ms = static_cast<int>(
        std::max<int64_t>(1000, absl::ToInt64Milliseconds(peer_timeout) / 3));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, third_ms);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, third_ms);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
    std::shared_ptr<grpc::ChannelCredentials> credentials = MakeChannelCredentials(tls, &args);
    channel_ = grpc::CreateCustomChannel(target, credentials, args);
    method_ = std::make_unique<grpc::internal::RpcMethod>(
        kReplicationStreamMethod, grpc::internal::RpcMethod::BIDI_STREAMING, channel_);
  }

  absl::StatusOr<std::unique_ptr<ReplicationStream>> Open(absl::Duration timeout) override {
    auto deadline = std::chrono::system_clock::now() +
                    std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout));
    if (!channel_->WaitForConnected(deadline)) {
      return absl::UnavailableError(
          absl::StrCat("cannot connect to secondary at ", target_, failure_hint_));
    }
    return std::unique_ptr<ReplicationStream>(new GrpcReplicationStream(channel_.get(), *method_));
  }

  std::string peer() const override { return target_; }

 private:
  const std::string target_;
  const std::string failure_hint_;  // what "cannot connect" may mean with these credentials
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::internal::RpcMethod> method_;  // Replication.Stream
};

}  // namespace

std::unique_ptr<ReplicationChannel> MakeGrpcReplicationChannel(const std::string& target,
                                                               const TlsOptions& tls,
                                                               absl::Duration peer_timeout) {
  return std::make_unique<GrpcReplicationChannel>(target, tls, peer_timeout);
}

}  // namespace blockrepl
