#include "secondary/decompress_batch.h"

#include <gtest/gtest.h>

#include <string>

#include "common/compression.h"

namespace blockrepl {
namespace {

using replication::Op;

Op CompressedWrite(uint64_t seq, const std::string& raw) {
  auto spec = ParseCompressionSpec("zstd");
  EXPECT_TRUE(spec.ok());
  std::string packed;
  EXPECT_TRUE(CompressPayload(*spec, raw, &packed));
  Op op;
  op.set_seq(seq);
  op.set_kind(Op::WRITE);
  op.set_length(raw.size());
  op.set_codec(spec->codec);
  op.set_data(packed);
  return op;
}

TEST(DecompressBatchTest, ExpandsCompressedOpsAndClearsTheirCodec) {
  replication::Batch batch;
  const std::string raw(65536, 'z');
  *batch.add_ops() = CompressedWrite(1, raw);
  IncomingBatch incoming = IncomingBatch::View(batch);
  ASSERT_TRUE(DecompressBatch(&incoming).ok());
  EXPECT_EQ(incoming.ops()[0].codec(), Op::CODEC_NONE);
  EXPECT_EQ(incoming.payload(0).Flatten(), raw);
}

TEST(DecompressBatchTest, RefusesABatchThatWouldExpandPastTheStreamLimit) {
  // 65 ops that each really expand to 1 MiB: 65 MiB in all, over the 64 MiB limit. Refused by
  // the claimed lengths before any of it is decompressed.
  replication::Batch batch;
  const Op one = CompressedWrite(1, std::string(1 << 20, '\0'));
  for (int i = 0; i < 65; ++i) {
    Op op = one;
    op.set_seq(i + 1);
    *batch.add_ops() = op;
  }
  IncomingBatch incoming = IncomingBatch::View(batch);
  absl::Status status = DecompressBatch(&incoming);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("expands to more than"), std::string::npos) << status;
  EXPECT_EQ(incoming.ops()[0].codec(), Op::CODEC_ZSTD);  // nothing was expanded

  Op huge = one;
  huge.set_length(~0ull);  // a hostile length must not wrap the running total
  replication::Batch lone;
  *lone.add_ops() = one;
  *lone.add_ops() = huge;
  IncomingBatch lone_incoming = IncomingBatch::View(lone);
  EXPECT_EQ(DecompressBatch(&lone_incoming).code(), absl::StatusCode::kInvalidArgument);
}

TEST(DecompressBatchTest, RangeOpsWithoutPayloadDoNotCount) {
  replication::Batch batch;
  Op trim;
  trim.set_seq(1);
  trim.set_kind(Op::TRIM);
  trim.set_length(1ull << 40);  // a 1 TiB discard carries no bytes
  *batch.add_ops() = trim;
  *batch.add_ops() = CompressedWrite(2, std::string(4096, 'a'));
  IncomingBatch incoming = IncomingBatch::View(batch);
  EXPECT_TRUE(DecompressBatch(&incoming).ok());
}

}  // namespace
}  // namespace blockrepl
