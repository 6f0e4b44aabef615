// ReplicationChannel: how the replicator reaches its secondary, without
// knowing about gRPC. A channel opens streams; a stream carries protobuf
// messages both ways. The gRPC adapter (grpc_replication_channel.*) is the
// production implementation; tests may plug an in-process one.
//
// Thread contract: one thread may call Send while another calls Receive;
// Cancel may be called from any thread and makes both return false.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/payload.h"
#include "replication.pb.h"

namespace blockrepl {

class ReplicationStream {
 public:
  virtual ~ReplicationStream() = default;
  // Blocking send; `more_coming` lets the transport coalesce with the next
  // message. Takes the message so its payloads can go out uncopied; a batch's
  // op i without `data` has `payloads[i]` (if any) as its data. False once the
  // stream is broken.
  virtual bool Send(replication::PrimaryMessage message, std::vector<Payload> payloads,
                    bool more_coming) = 0;
  // Blocking receive; false at end of stream or when broken.
  virtual bool Receive(replication::SecondaryMessage* message) = 0;
  // Aborts the stream; unblocks Send and Receive.
  virtual void Cancel() = 0;
  // Why the stream ended, once Receive returned false ("" if unknown).
  virtual std::string FinishReason() = 0;
};

class ReplicationChannel {
 public:
  virtual ~ReplicationChannel() = default;
  // Waits up to `timeout` for the transport to connect, then opens a stream.
  virtual absl::StatusOr<std::unique_ptr<ReplicationStream>> Open(absl::Duration timeout) = 0;
  virtual std::string peer() const = 0;
};

}  // namespace blockrepl
