#include "secondary/decompress_batch.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/compression.h"

namespace blockrepl {

absl::Status DecompressBatch(IncomingBatch* batch) {
  uint64_t expanded = 0;
  for (size_t i = 0; i < batch->size(); ++i) {
    const replication::Op& op = batch->ops()[i];
    const uint64_t bytes = ExpandedPayloadBytes(op, batch->payload(i).size);
    if (bytes > kMaxRawPayload || (expanded += bytes) > kMaxRawPayload) {
      return absl::InvalidArgumentError(
          absl::StrCat("op seq ", op.seq(), ": the batch expands to more than ", kMaxRawPayload,
                       " bytes of payload"));
    }
  }
  for (size_t i = 0; i < batch->size(); ++i) {
    replication::Op& op = batch->ops()[i];
    if (op.codec() == replication::Op::CODEC_NONE) continue;
    auto raw = DecompressPayload(op.codec(), batch->payload(i).Flatten(), op.length(),
                                 kMaxRawPayload);
    if (!raw.ok()) {
      return absl::Status(raw.status().code(), absl::StrCat("op seq ", op.seq(), ": ",
                                                            raw.status().message()));
    }
    batch->ReplacePayload(i, std::move(raw).value());
    op.set_codec(replication::Op::CODEC_NONE);
  }
  return absl::OkStatus();
}

}  // namespace blockrepl
