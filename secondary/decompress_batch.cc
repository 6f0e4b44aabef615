#include "secondary/decompress_batch.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/compression.h"

namespace blockrepl {

absl::Status DecompressBatch(replication::Batch* batch) {
  uint64_t expanded = 0;
  for (const replication::Op& op : batch->ops()) {
    const uint64_t bytes = ExpandedPayloadBytes(op);
    if (bytes > kMaxRawPayload || (expanded += bytes) > kMaxRawPayload) {
      return absl::InvalidArgumentError(
          absl::StrCat("op seq ", op.seq(), ": the batch expands to more than ", kMaxRawPayload,
                       " bytes of payload"));
    }
  }
  for (replication::Op& op : *batch->mutable_ops()) {
    if (op.codec() == replication::Op::CODEC_NONE) continue;
    auto raw = DecompressPayload(op.codec(), op.data(), op.length(), kMaxRawPayload);
    if (!raw.ok()) {
      return absl::Status(raw.status().code(), absl::StrCat("op seq ", op.seq(), ": ",
                                                            raw.status().message()));
    }
    op.set_data(std::move(raw).value());
    op.set_codec(replication::Op::CODEC_NONE);
  }
  return absl::OkStatus();
}

}  // namespace blockrepl
