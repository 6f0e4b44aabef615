// ReplicaService: the gRPC Replication service of a secondary. One stream
// per volume at a time: a new primary stream for a volume that already has
// one cancels the old stream and waits for it to stop applying before the
// handshake, so writes from a dead connection can never land after the
// resync of the new one. Each stream runs on a gRPC server thread: read a
// batch, apply it, ack. The method is registered untyped (ByteBuffer) so a
// batch's payloads are written to the store from gRPC's receive buffers
// (common/wire/stream_codec.h), not copied out by protobuf. Thread-safe.
#pragma once

#include <map>
#include <set>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/service_type.h>
#include <grpcpp/impl/codegen/sync_stream.h>

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

  // Replication.Stream (replication.proto): one primary's stream.
  grpc::Status Stream(grpc::ServerContext* context,
                      grpc::ServerReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>* stream);

  // Cancels every active stream and refuses new ones (shutdown).
  void CancelAll();

  // `replctl disconnect|connect` on the secondary: while disconnected the
  // volume's stream is cut and new handshakes are refused with a reason the
  // primary shows its operator. NotFound for an unknown volume.
  absl::Status SetDisconnected(const std::string& volume, bool disconnected);
  bool disconnected(const std::string& volume) const;

 private:
  // Makes `context` the only active stream of `volume`; false on timeout.
  bool Claim(const std::string& volume, grpc::ServerContext* context);
  void Release(const std::string& volume, grpc::ServerContext* context);

  const std::map<std::string, Applier*> appliers_;
  const std::map<std::string, std::string> peer_names_;
  mutable absl::Mutex mu_;
  std::map<std::string, grpc::ServerContext*> active_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> disconnected_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // CancelAll ran: refuse new streams
};

}  // namespace blockrepl
