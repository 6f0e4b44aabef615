#include "common/wire/stream_codec.h"

#include <gtest/gtest.h>
#include <google/protobuf/util/message_differencer.h>

#include <random>
#include <string>
#include <vector>

#include "common/xxh3.h"

namespace blockrepl {
namespace {

using google::protobuf::util::MessageDifferencer;
using replication::Op;

std::string Pattern(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

replication::Batch SampleBatch() {
  replication::Batch batch;
  auto add = [&](uint64_t seq, Op::Kind kind, uint64_t offset, std::string data) {
    Op* op = batch.add_ops();
    op->set_seq(seq);
    op->set_kind(kind);
    op->set_offset(offset);
    op->set_length(data.empty() ? 4096 : data.size());
    if (!data.empty()) op->set_data_checksum(XXH3_64bits(data.data(), data.size()));
    op->set_data(std::move(data));
    return op;
  };
  add(1, Op::WRITE, 0, Pattern(1 << 20, 1));        // referenced: its own slice
  add(2, Op::WRITE, 1 << 20, Pattern(100, 2));      // copied into the header slice
  add(3, Op::TRIM, 8192, "");
  add(4, Op::BARRIER, 0, "")->set_durability_only(true);
  add(5, Op::RESYNC, 65536, Pattern(kReferenceBytes, 3));
  Op* verify = add(6, Op::VERIFY, 0, "");
  verify->set_verify_piece(512);
  add(7, Op::WRITE, 0, Pattern(70000, 4))->set_codec(Op::CODEC_LZ4);
  return batch;
}

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// `bytes` cut into slices of the given sizes (the rest in a last slice).
grpc::ByteBuffer Sliced(const std::string& bytes, size_t piece) {
  std::vector<grpc::Slice> slices;
  for (size_t at = 0; at < bytes.size(); at += piece) {
    slices.emplace_back(bytes.data() + at, std::min(piece, bytes.size() - at));
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

// The decoded batch equals `expected` field by field, payloads included.
void ExpectSameBatch(const IncomingBatch& decoded, const replication::Batch& expected) {
  ASSERT_EQ(decoded.size(), static_cast<size_t>(expected.ops_size()));
  for (int i = 0; i < expected.ops_size(); ++i) {
    Op header = expected.ops(i);
    const std::string data = header.data();
    header.clear_data();
    EXPECT_TRUE(MessageDifferencer::Equals(decoded.ops()[i], header)) << "op " << i;
    EXPECT_EQ(decoded.payload(i).size, data.size()) << "op " << i;
    EXPECT_EQ(decoded.payload(i).Flatten(), data) << "op " << i;
    EXPECT_EQ(decoded.payload(i).Checksum(), XXH3_64bits(data.data(), data.size())) << "op " << i;
  }
}

TEST(StreamCodecTest, EncodedBatchIsWhatProtobufParses) {
  const replication::Batch batch = SampleBatch();
  grpc::ByteBuffer buffer = EncodeBatchMessage(batch);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(buffer.Dump(&slices).ok());
  // Headers, the 1 MiB payload, headers (and the 100-byte payload), the 2 KiB payload, headers,
  // the 70 KB payload (last: no tail).
  EXPECT_EQ(slices.size(), 6u);
  // The header pieces are views of one buffer, not an allocation each.
  EXPECT_EQ(slices[2].begin(), slices[0].end());
  replication::PrimaryMessage parsed;
  ASSERT_TRUE(parsed.ParseFromString(Flatten(buffer)));
  ASSERT_TRUE(parsed.has_batch());
  EXPECT_TRUE(MessageDifferencer::Equals(parsed.batch(), batch));
}

TEST(StreamCodecTest, LargePayloadsAreNotCopied) {
  replication::Batch batch;
  Op* op = batch.add_ops();
  op->set_kind(Op::WRITE);
  op->set_data(Pattern(1 << 20, 9));
  const char* payload = op->data().data();  // a moved std::string keeps its heap buffer
  grpc::ByteBuffer buffer = EncodeBatchMessage(std::move(batch));
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(buffer.Dump(&slices).ok());
  ASSERT_EQ(slices.size(), 2u);
  EXPECT_EQ(reinterpret_cast<const char*>(slices[1].begin()), payload);

  IncomingBatch decoded;
  replication::Hello hello;
  bool is_hello = true;
  ASSERT_TRUE(DecodePrimaryMessage(buffer, &hello, &decoded, &is_hello).ok());
  EXPECT_FALSE(is_hello);
  ASSERT_EQ(decoded.size(), 1u);
  ASSERT_EQ(decoded.payload(0).pieces.size(), 1u);
  EXPECT_EQ(decoded.payload(0).pieces[0].iov_base, payload);  // a view into the same bytes
}

// The primary's way: ops without data, their payloads beside them. The bytes
// are those of the same batch with the payloads inside the ops.
TEST(StreamCodecTest, PayloadsBesideTheOpsEncodeAsIfInside) {
  const replication::Batch expected = SampleBatch();
  replication::Batch headers = expected;
  std::vector<Payload> payloads;
  for (int i = 0; i < headers.ops_size(); ++i) {
    // The compressed op keeps its data inside (that is how the primary sends those).
    if (headers.ops(i).codec() != Op::CODEC_NONE) {
      payloads.emplace_back();
      continue;
    }
    payloads.push_back(Payload::CopyOf(headers.ops(i).data()));
    headers.mutable_ops(i)->clear_data();
  }
  const char* big = payloads[0].data();  // the 1 MiB write
  ASSERT_EQ(payloads[0].size(), 1u << 20);
  grpc::ByteBuffer buffer = EncodeBatchMessage(std::move(headers), std::move(payloads));
  EXPECT_EQ(Flatten(buffer), Flatten(EncodeBatchMessage(expected)));
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(buffer.Dump(&slices).ok());
  ASSERT_GE(slices.size(), 2u);
  EXPECT_EQ(reinterpret_cast<const char*>(slices[1].begin()), big) << "the payload was copied";

  IncomingBatch decoded;
  replication::Hello hello;
  bool is_hello = true;
  ASSERT_TRUE(DecodePrimaryMessage(buffer, &hello, &decoded, &is_hello).ok());
  ExpectSameBatch(decoded, expected);
}

TEST(StreamCodecTest, DecodesProtobufBytesCutAnywhere) {
  const replication::Batch batch = SampleBatch();
  replication::PrimaryMessage message;
  *message.mutable_batch() = batch;
  const std::string bytes = message.SerializeAsString();
  for (size_t piece : {size_t{1}, size_t{3}, size_t{7}, size_t{4096}, size_t{65536}, bytes.size()}) {
    IncomingBatch decoded;
    replication::Hello hello;
    bool is_hello = true;
    absl::Status s = DecodePrimaryMessage(Sliced(bytes, piece), &hello, &decoded, &is_hello);
    ASSERT_TRUE(s.ok()) << "slices of " << piece << ": " << s;
    EXPECT_FALSE(is_hello);
    ExpectSameBatch(decoded, batch);
  }
}

TEST(StreamCodecTest, DecodesAHello) {
  replication::PrimaryMessage message;
  message.mutable_hello()->set_volume("vol");
  message.mutable_hello()->set_size_bytes(1 << 30);
  message.mutable_hello()->add_older_generations("g1");
  IncomingBatch batch;
  replication::Hello hello;
  bool is_hello = false;
  ASSERT_TRUE(DecodePrimaryMessage(EncodeMessage(message), &hello, &batch, &is_hello).ok());
  EXPECT_TRUE(is_hello);
  EXPECT_TRUE(MessageDifferencer::Equals(hello, message.hello()));
}

TEST(StreamCodecTest, TruncatedOrGarbageInputIsAnErrorNeverACrash) {
  replication::PrimaryMessage message;
  *message.mutable_batch() = SampleBatch();
  message.mutable_batch()->mutable_ops(0)->set_data(Pattern(3000, 5));  // keep it small
  const std::string bytes = message.SerializeAsString();
  for (size_t cut = 0; cut < bytes.size(); cut += 7) {
    IncomingBatch decoded;
    replication::Hello hello;
    bool is_hello;
    const std::string prefix = bytes.substr(0, cut);
    absl::Status s = DecodePrimaryMessage(Sliced(prefix, 64), &hello, &decoded, &is_hello);
    // Cut inside the batch: its length prefix runs past the end.
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << "cut at " << cut;
  }
  std::mt19937 rng(7);
  for (int round = 0; round < 2000; ++round) {
    std::string garbage = Pattern(rng() % 200, rng());
    IncomingBatch decoded;
    replication::Hello hello;
    bool is_hello;
    absl::Status s = DecodePrimaryMessage(Sliced(garbage, 1 + rng() % 16), &hello, &decoded,
                                          &is_hello);
    replication::PrimaryMessage reference;
    if (s.ok()) {
      // Whatever we accept, protobuf accepts too, with the same ops.
      ASSERT_TRUE(reference.ParseFromString(garbage)) << round;
      if (!is_hello) {
        EXPECT_EQ(decoded.size(), static_cast<size_t>(reference.batch().ops_size()));
      }
    }
  }
}

TEST(StreamCodecTest, ReplacedPayloadIsOwnedByTheBatch) {
  replication::Batch batch;
  Op* op = batch.add_ops();
  op->set_kind(Op::WRITE);
  op->set_data("compressed");
  IncomingBatch incoming = IncomingBatch::View(batch);
  incoming.ReplacePayload(0, std::string(8192, 'x'));
  EXPECT_EQ(incoming.payload(0).size, 8192u);
  EXPECT_EQ(incoming.payload(0).Flatten(), std::string(8192, 'x'));
  EXPECT_TRUE(incoming.ops()[0].data().empty());
}

}  // namespace
}  // namespace blockrepl
