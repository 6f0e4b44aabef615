// Fuzzes the secondary's handling of a replication stream, as ReplicaService runs it minus gRPC:
// the zero-copy decoding of each message (common/wire/stream_codec.h, from a buffer cut into two
// slices at an input-chosen point, so reads across slice boundaries are covered), the Hello check against the replica's identity, then batches (decompression, checksums, op
// validation, barriers, resync begin/done with the undo log, verify) applied to a 1 MiB
// in-memory store, and at the end of the stream a rollback when a resync was cut short. Whatever
// the primary sends, the secondary must refuse it cleanly: no crash, no access outside the
// store, no unbounded allocation.
//
// Input: a sequence of messages, each a 2-byte little-endian length, a byte choosing where to
// cut it into two slices, and that many bytes of a serialized replication.PrimaryMessage. The
// stream ends at the first message that does not decode or is refused, as the real stream does.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "common/log.h"
#include "common/mem_block_device.h"
#include "common/wire/stream_codec.h"
#include "replication.pb.h"
#include "secondary/applier.h"
#include "secondary/decompress_batch.h"
#include "secondary/replica_meta.h"
#include "secondary/undo_log.h"
#include "tests/fuzz/fuzz_temp_dir.h"

namespace {

using namespace blockrepl;

constexpr uint64_t kStoreSize = 1 << 20;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  SilenceLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string meta_path = fuzz::TempDir() + "/replica.meta";
  static const std::string undo_path = fuzz::TempDir() + "/replica.undo";
  std::remove(meta_path.c_str());
  std::remove(undo_path.c_str());

  MemBlockDevice store(kStoreSize);
  ReplicaMeta meta;
  meta.volume = "fuzz";
  meta.size_bytes = kStoreSize;
  auto undo = UndoLog::Open(undo_path, kStoreSize);
  if (!undo.ok()) return 0;
  Applier applier("fuzz", &store, meta_path, meta, std::move(undo).value());

  bool accepted = false;
  size_t at = 0;
  while (at + 3 <= size) {
    const size_t length = data[at] | (size_t{data[at + 1]} << 8);
    const size_t cut = length == 0 ? 0 : data[at + 2] % (length + 1);
    at += 3;
    if (length > size - at) break;
    grpc::Slice pieces[2] = {grpc::Slice(data + at, cut), grpc::Slice(data + at + cut, length - cut)};
    grpc::ByteBuffer buffer(pieces, 2);
    at += length;
    replication::Hello hello;
    IncomingBatch batch;
    bool is_hello = false;
    if (!DecodePrimaryMessage(buffer, &hello, &batch, &is_hello).ok()) break;
    if (!accepted) {  // the first message must be an accepted Hello
      if (!is_hello) break;
      accepted = applier.HandleHello(hello, "fuzz").accepted();
      if (!accepted) break;
      continue;
    }
    if (is_hello) break;
    replication::Ack ack;
    absl::Status status = DecompressBatch(&batch);
    if (status.ok()) status = applier.ApplyBatch(batch, &ack);
    if (!status.ok()) break;
  }
  applier.StreamEnded("fuzz input ended");
  const Applier::Snapshot after = applier.snapshot();
  if (!after.consistent && after.undo_available) {
    (void)applier.RollBackInterruptedResync();  // the primary never came back
  }
  (void)applier.Shutdown();
  return 0;
}
