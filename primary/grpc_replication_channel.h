// gRPC implementation of ReplicationChannel: one long-lived grpc::Channel to
// the secondary (gRPC reconnects it with its own backoff; DropConnection
// replaces it) and a new bidirectional Replication.Stream per Open().
// Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "absl/time/time.h"

#include "common/tls/tls_options.h"
#include "primary/replication_channel.h"

namespace blockrepl {

// `tls` must have passed CheckTlsOptions (plaintext only when allowed).
// gRPC keepalive pings detect a silent dead link within `peer_timeout`.
std::unique_ptr<ReplicationChannel> MakeGrpcReplicationChannel(const std::string& target,
                                                               const TlsOptions& tls,
                                                               absl::Duration peer_timeout);

}  // namespace blockrepl
