// ReplicaService: the gRPC Replication service of a secondary. One stream
// per volume at a time: a new primary stream for a volume that already has
// one cancels the old stream and waits for it to stop applying before the
// handshake, so writes from a dead connection can never land after the
// resync of the new one. Each stream is a ReplicaStream, driven through
// gRPC's asynchronous API by one polling thread (Start); this class admits
// streams and keeps the one-per-volume rule. The method is
// registered untyped (ByteBuffer) so a batch's payloads are written to the
// store from gRPC's receive buffers (common/wire/stream_codec.h), not copied
// out by protobuf. Thread-safe.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/service_type.h>
#include <grpcpp/support/async_stream.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "replication.pb.h"
#include "secondary/applier.h"

namespace blockrepl {

class ReplicaService final : public grpc::Service {
 public:
  // `appliers` by volume name; not owned, outlive the service. A volume in
  // `peer_names` accepts only a primary whose TLS certificate names it.
  explicit ReplicaService(std::map<std::string, Applier*> appliers,
                          std::map<std::string, std::string> peer_names = {});

  ~ReplicaService() override;  // Stop()s

  // Serves streams from `cq` (ServerBuilder::AddCompletionQueue) on one
  // polling thread. Call once the server is started.
  void Start(grpc::ServerCompletionQueue* cq);
  // Call after the server's Shutdown (which cancels every stream): waits for
  // the streams to go, closes `cq` and joins the thread.
  void Stop();

  // Cancels every active stream and refuses new ones (shutdown).
  void CancelAll();

  // `replctl disconnect|connect` on the secondary: while disconnected the
  // volume's stream is cut and new handshakes are refused with a reason the
  // primary shows its operator. NotFound for an unknown volume.
  absl::Status SetDisconnected(const std::string& volume, bool disconnected);
  bool disconnected(const std::string& volume) const;

 private:
  friend class ReplicaStream;

  // Asks for the next incoming stream; `tag` comes back on `cq`.
  void RequestStream(grpc::ServerContext* context,
                     grpc::ServerAsyncReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>* stream,
                     grpc::ServerCompletionQueue* cq, void* tag);

  // What admitting a Hello decided. Accepted: `applier` is set, the volume is
  // claimed for the stream and `reply` accepts. Refused: `status` says why and
  // `reply`, if set, is the refusal to send first.
  struct Admission {
    Applier* applier = nullptr;
    std::string volume;
    std::optional<replication::SecondaryMessage> reply;
    grpc::Status status;
  };
  // May wait (Claim) for the volume's previous stream to stop: never call it
  // on a gRPC callback thread.
  Admission Admit(grpc::ServerContextBase* context, const replication::Hello& hello);
  // Streams alive (including their admission threads), so the queue closes
  // only after the last one.
  void StreamCreated();
  void StreamDeleted();

  // Makes `context` the only active stream of `volume`; false on timeout.
  bool Claim(const std::string& volume, grpc::ServerContextBase* context);
  void Release(const std::string& volume, grpc::ServerContextBase* context);

  const std::map<std::string, Applier*> appliers_;
  const std::map<std::string, std::string> peer_names_;
  mutable absl::Mutex mu_;
  std::map<std::string, grpc::ServerContextBase*> active_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> disconnected_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // CancelAll ran: refuse new streams
  int live_streams_ ABSL_GUARDED_BY(mu_) = 0;

  grpc::ServerCompletionQueue* cq_ = nullptr;  // set by Start
  std::thread poller_;
};

}  // namespace blockrepl
