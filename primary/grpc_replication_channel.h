// gRPC implementation of ReplicationChannel: one long-lived grpc::Channel to
// the secondary (gRPC reconnects it with its own backoff) and a new
// bidirectional Replication.Stream per Open(). Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "primary/replication_channel.h"

namespace blockrepl {

std::unique_ptr<ReplicationChannel> MakeGrpcReplicationChannel(const std::string& target);

}  // namespace blockrepl
