// The replication stream's batches on the wire without copying payloads.
//
// protobuf would copy every data payload twice per hop: into gRPC's send
// buffer when the primary serializes, and out of gRPC's receive buffers into
// a std::string when the secondary parses. At 1 MiB writes those two memcpys
// are a large share of both agents' CPU. This codec writes and reads the same
// bytes as protobuf (`PrimaryMessage{batch}` of replication.proto, so either
// side may still use plain protobuf), but:
//  - EncodeBatchMessage puts each large payload in its own grpc::Slice that
//    owns its buffer (the Payload the NBD request was received into, or the
//    op's std::string; moved, not copied); only the small op headers are
//    serialized;
//  - DecodePrimaryMessage parses the ops' other fields with protobuf and
//    leaves each payload where gRPC received it, as pieces of its slices
//    (PayloadView), which the secondary hands to pwritev.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "common/payload.h"
#include "replication.pb.h"

namespace blockrepl {

// The stream's gRPC method (replication.proto), opened untyped on both sides.
inline constexpr char kReplicationStreamMethod[] = "/blockrepl.replication.Replication/Stream";

// One op's payload as it lies in memory: contiguous pieces, in order.
struct PayloadView {
  absl::InlinedVector<iovec, 2> pieces;
  uint64_t size = 0;

  // The payload as one string (a copy), e.g. to decompress it.
  std::string Flatten() const;
  // XXH3-64 of the payload, the same as over the flattened bytes.
  uint64_t Checksum() const;
};

// A batch as the secondary applies it: `ops[i]` has every field except
// `data`, which is `payloads[i]` (empty for ops without data). The views point
// into `slices_` (gRPC's buffers, kept alive here) or `owned_`.
class IncomingBatch {
 public:
  IncomingBatch() = default;
  IncomingBatch(IncomingBatch&&) = default;
  IncomingBatch& operator=(IncomingBatch&&) = default;

  // A view of a protobuf batch (tests, and peers' messages parsed by
  // protobuf): the payloads stay in `batch`, which must outlive this.
  static IncomingBatch View(const replication::Batch& batch);

  std::vector<replication::Op>& ops() { return ops_; }
  const std::vector<replication::Op>& ops() const { return ops_; }
  const PayloadView& payload(size_t i) const { return payloads_[i]; }
  size_t size() const { return ops_.size(); }

  // Replaces op i's payload with `data` (e.g. decompressed), owned here.
  void ReplacePayload(size_t i, std::string data);

 private:
  friend absl::Status DecodePrimaryMessage(const grpc::ByteBuffer&, replication::Hello*,
                                           IncomingBatch*, bool*);
  std::vector<replication::Op> ops_;
  std::vector<PayloadView> payloads_;
  std::vector<grpc::Slice> slices_;
  std::deque<std::string> owned_;  // a deque: growing it never moves earlier strings
};

// PrimaryMessage{batch}: takes the payloads out of `batch` without copying
// those of at least `kReferenceBytes` (smaller ones are cheaper to copy than
// to give their own slice). An op without `data` takes `payloads[i]` (if
// there is one) as its data: the primary carries write payloads beside the
// ops, never inside them (common/payload.h).
grpc::ByteBuffer EncodeBatchMessage(replication::Batch batch, std::vector<Payload> payloads = {});
inline constexpr size_t kReferenceBytes = 2048;

// Any message, serialized by protobuf into one slice (handshakes, acks).
grpc::ByteBuffer EncodeMessage(const google::protobuf::MessageLite& message);
// The reverse, for small messages (the buffer is copied into one string).
bool DecodeMessage(const grpc::ByteBuffer& buffer, google::protobuf::MessageLite* message);

// Parses a PrimaryMessage: a Hello into `hello` (then `*is_hello` = true) or
// a Batch into `batch`. InvalidArgument for a malformed message (truncated, a
// length past its end, a bad varint, groups) or one with neither; whatever it
// accepts, protobuf would parse to the same ops (unknown fields skipped).
absl::Status DecodePrimaryMessage(const grpc::ByteBuffer& buffer, replication::Hello* hello,
                                  IncomingBatch* batch, bool* is_hello);

}  // namespace blockrepl
