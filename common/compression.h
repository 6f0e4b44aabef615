// Payload compression for the replication stream (--compress=none|zstd[:LEVEL]|lz4).
// The primary compresses each op's payload on its own (no shared dictionary,
// so any op can be decoded alone and a lost batch costs nothing to the next)
// and keeps the raw bytes when compression does not pay. The secondary
// decompresses into a bounded buffer before it checks and applies anything.
// Value types and free functions; thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "replication.pb.h"

namespace blockrepl {

struct CompressionSpec {
  replication::Op::Codec codec = replication::Op::CODEC_NONE;
  int level = 1;  // zstd only
};

// "none", "lz4", "zstd" or "zstd:LEVEL" (1..19).
absl::StatusOr<CompressionSpec> ParseCompressionSpec(const std::string& text);
std::string DescribeCompression(const CompressionSpec& spec);

// Compresses `raw` into `*out`; false (out untouched) when the result would
// not be at least 1/4 smaller: barely compressible data then travels as is.
bool CompressPayload(const CompressionSpec& spec, std::string_view raw, std::string* out);

// CompressPayload that stops trying on incompressible streams: after 8
// payloads in a row that did not compress it only probes 1 in 16, until one
// compresses again. So incompressible data costs almost no CPU, and
// compressible data still gets compressed soon after it appears.
// Thread-safe (relaxed atomics: the heuristic tolerates races).
class AdaptiveCompressor {
 public:
  explicit AdaptiveCompressor(CompressionSpec spec) : spec_(spec) {}
  bool Compress(std::string_view raw, std::string* out);
  const CompressionSpec& spec() const { return spec_; }

 private:
  static constexpr int kMissesBeforeBackoff = 8;
  static constexpr uint64_t kProbeEvery = 16;
  const CompressionSpec spec_;
  std::atomic<int> misses_{0};
  std::atomic<uint64_t> skipped_{0};
};

// The payload bytes `op` stands for once expanded: `length` for a compressed op, else the size
// of its data (0 for TRIM, WRITE_ZEROES and the other ops without data). The primary caps a
// batch's expanded bytes and the secondary refuses batches far above that cap, so a compressed
// batch can never make the secondary allocate much more than the stream's message limit.
// `data_bytes`: the size of the op's payload as it travels (op.data(), the Payload queued
// beside it on the primary, or its received view on the secondary).
inline uint64_t ExpandedPayloadBytes(const replication::Op& op, uint64_t data_bytes) {
  return op.codec() == replication::Op::CODEC_NONE ? data_bytes : op.length();
}

// Decodes `compressed` (one op's payload) that must expand to exactly
// `raw_length` bytes, at most `max_raw_length`: a corrupt or hostile payload
// is an error, never a crash or an unbounded allocation.
absl::StatusOr<std::string> DecompressPayload(replication::Op::Codec codec,
                                              const std::string& compressed, uint64_t raw_length,
                                              uint64_t max_raw_length);

}  // namespace blockrepl
