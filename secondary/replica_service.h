// ReplicaService: the gRPC Replication service of a secondary. One stream
// per volume at a time: a new primary stream for a volume that already has
// one cancels the old stream and waits for it to stop applying before the
// handshake, so writes from a dead connection can never land after the
// resync of the new one. Each stream runs on a gRPC server thread: read a
// batch, apply it, ack. Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "replication.grpc.pb.h"
#include "secondary/applier.h"

namespace blockrepl {

class ReplicaService final : public replication::Replication::Service {
 public:
  // `appliers` by volume name; not owned, outlive the service.
  explicit ReplicaService(std::map<std::string, Applier*> appliers);

  grpc::Status Stream(grpc::ServerContext* context,
                      grpc::ServerReaderWriter<replication::SecondaryMessage,
                                               replication::PrimaryMessage>* stream) override;

  // Cancels every active stream (shutdown).
  void CancelAll();

 private:
  // Makes `context` the only active stream of `volume`; false on timeout.
  bool Claim(const std::string& volume, grpc::ServerContext* context);
  void Release(const std::string& volume, grpc::ServerContext* context);

  const std::map<std::string, Applier*> appliers_;
  absl::Mutex mu_;
  std::map<std::string, grpc::ServerContext*> active_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blockrepl
