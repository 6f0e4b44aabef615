// Expands the --compress payloads of a replication batch in place, before the applier checks
// anything: the first step of the secondary's handling of every batch (ReplicaService, and the
// replica_stream fuzzer, which feeds the same path without gRPC).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "common/wire/stream_codec.h"

namespace blockrepl {

// The most payload one batch may expand to: the stream's message limit. A primary sends at most
// 1 MiB per batch (counted expanded) plus one op of at most 32 MiB (the NBD payload limit).
inline constexpr uint64_t kMaxRawPayload = 64ull << 20;

// Each op with a codec gets its data decompressed (to exactly op.length() bytes) and its codec
// cleared. Refused before anything is allocated: a batch whose ops claim more than
// kMaxRawPayload bytes in all. An error names the op; the batch is then partly expanded and must
// not be applied.
absl::Status DecompressBatch(IncomingBatch* batch);

}  // namespace blockrepl
