#include "common/compression.h"

#include <random>

#include "gtest/gtest.h"

namespace blockrepl {
namespace {

using replication::Op;

std::string Compressible(size_t n) {
  std::string s;
  while (s.size() < n) s += "blockrepl replicates blocks; ";
  s.resize(n);
  return s;
}

std::string Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

TEST(CompressionTest, ParsesSpecs) {
  EXPECT_EQ(ParseCompressionSpec("none")->codec, Op::CODEC_NONE);
  EXPECT_EQ(ParseCompressionSpec("lz4")->codec, Op::CODEC_LZ4);
  EXPECT_EQ(ParseCompressionSpec("zstd")->level, 1);
  EXPECT_EQ(ParseCompressionSpec("zstd:7")->level, 7);
  for (const char* bad : {"gzip", "zstd:0", "zstd:20", "zstd:x", ""}) {
    EXPECT_FALSE(ParseCompressionSpec(bad).ok()) << bad;
  }
}

TEST(CompressionTest, RoundTripsBothCodecs) {
  for (const char* spec : {"lz4", "zstd:3"}) {
    const CompressionSpec s = *ParseCompressionSpec(spec);
    const std::string raw = Compressible(65536);
    std::string compressed;
    ASSERT_TRUE(CompressPayload(s, raw, &compressed)) << spec;
    EXPECT_LT(compressed.size(), raw.size() / 4) << spec;
    auto back = DecompressPayload(s.codec, compressed, raw.size(), 1 << 20);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, raw) << spec;
  }
}

TEST(CompressionTest, IncompressiblePayloadsTravelRaw) {
  std::string out = "untouched";
  EXPECT_FALSE(CompressPayload(*ParseCompressionSpec("zstd"), Random(4096, 1), &out));
  EXPECT_FALSE(CompressPayload(*ParseCompressionSpec("lz4"), Random(4096, 2), &out));
  EXPECT_EQ(out, "untouched");
}

TEST(CompressionTest, CorruptWrongLengthOrHugePayloadsAreErrors) {
  const CompressionSpec zstd = *ParseCompressionSpec("zstd");
  const std::string raw = Compressible(8192);
  std::string compressed;
  ASSERT_TRUE(CompressPayload(zstd, raw, &compressed));
  std::string corrupt = compressed;
  corrupt[corrupt.size() / 2] ^= 0x5a;
  EXPECT_FALSE(DecompressPayload(Op::CODEC_ZSTD, corrupt, raw.size(), 1 << 20).ok());
  EXPECT_FALSE(DecompressPayload(Op::CODEC_ZSTD, compressed, raw.size() - 1, 1 << 20).ok());
  EXPECT_FALSE(DecompressPayload(Op::CODEC_ZSTD, compressed, 1ull << 40, 1 << 20).ok());
  EXPECT_FALSE(DecompressPayload(Op::CODEC_LZ4, Random(100, 3), 4096, 1 << 20).ok());
  EXPECT_FALSE(DecompressPayload(static_cast<Op::Codec>(9), compressed, raw.size(), 1 << 20).ok());
}

TEST(CompressionTest, AdaptiveCompressorBacksOffOnIncompressibleDataAndRecovers) {
  AdaptiveCompressor compressor(*ParseCompressionSpec("zstd"));
  std::string out;
  for (int i = 0; i < 8; ++i) EXPECT_FALSE(compressor.Compress(Random(4096, i), &out));
  // Backing off: most compressible payloads are not even tried now...
  int compressed = 0;
  for (int i = 0; i < 16; ++i) compressed += compressor.Compress(Compressible(4096), &out);
  EXPECT_GE(compressed, 1);   // ...but a probe finds that compression pays again,
  EXPECT_TRUE(compressor.Compress(Compressible(4096), &out));  // and it stays on.
}

}  // namespace
}  // namespace blockrepl
