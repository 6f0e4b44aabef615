#include "common/bitmap/bitmap_rescale.h"
#include "common/test_temp_dir.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <random>

#include "common/bitmap/bitmap_file.h"

namespace blockrepl {
namespace {

constexpr uint64_t KiB = 1024;

uint64_t Chunks(uint64_t volume, uint64_t chunk) { return (volume + chunk - 1) / chunk; }

// An all-clear bit vector sized as BitmapFile pages it.
std::vector<uint64_t> Empty(uint64_t volume, uint64_t chunk) {
  const uint64_t pages = (Chunks(volume, chunk) + kBitsPerPage - 1) / kBitsPerPage;
  return std::vector<uint64_t>(pages * kWordsPerPage, 0);
}
void Set(std::vector<uint64_t>& w, uint64_t c) { w[c / 64] |= uint64_t{1} << (c % 64); }
bool Get(const std::vector<uint64_t>& w, uint64_t c) { return (w[c / 64] >> (c % 64)) & 1; }

std::vector<uint64_t> SetBits(const std::vector<uint64_t>& w) {
  std::vector<uint64_t> out;
  for (uint64_t c = 0; c < w.size() * 64; ++c) {
    if (Get(w, c)) out.push_back(c);
  }
  return out;
}

TEST(RescaleBitsTest, GrowingOrsTheSubChunksTogether) {
  const uint64_t volume = 256 * KiB;  // 64 x 4K -> 4 x 64K
  std::vector<uint64_t> old = Empty(volume, 4 * KiB);
  Set(old, 1);
  Set(old, 17);
  Set(old, 31);
  std::vector<uint64_t> grown = RescaleBits(old, volume, 4 * KiB, 64 * KiB);
  EXPECT_EQ(grown.size(), kWordsPerPage);
  EXPECT_EQ(SetBits(grown), (std::vector<uint64_t>{0, 1}));
}

TEST(RescaleBitsTest, ShrinkingSpreadsEachBitOverItsSubChunks) {
  const uint64_t volume = 256 * KiB;  // 4 x 64K -> 16 x 16K
  std::vector<uint64_t> old = Empty(volume, 64 * KiB);
  Set(old, 2);
  std::vector<uint64_t> shrunk = RescaleBits(old, volume, 64 * KiB, 16 * KiB);
  EXPECT_EQ(SetBits(shrunk), (std::vector<uint64_t>{8, 9, 10, 11}));
}

TEST(RescaleBitsTest, SameChunkSizeIsIdentity) {
  const uint64_t volume = 8ull << 30;  // 131072 chunks: 5 pages
  std::vector<uint64_t> old = Empty(volume, 64 * KiB);
  for (uint64_t c : {0ull, 63ull, 64ull, 32639ull, 32640ull, 131071ull}) Set(old, c);
  EXPECT_EQ(RescaleBits(old, volume, 64 * KiB, 64 * KiB), old);
}

TEST(RescaleBitsTest, LastPartialChunkIsClippedAtTheVolumeEnd) {
  // 16 full 4K chunks + one 1-byte chunk; in 64K chunks: one full + one short.
  const uint64_t volume = 64 * KiB + 4 * KiB + 1;
  std::vector<uint64_t> old = Empty(volume, 4 * KiB);
  Set(old, 17);  // the last (1-byte) chunk
  EXPECT_EQ(SetBits(RescaleBits(old, volume, 4 * KiB, 64 * KiB)), (std::vector<uint64_t>{1}));

  // Shrinking the short last 64K chunk spreads only over chunks that exist.
  std::vector<uint64_t> big = Empty(volume, 64 * KiB);
  Set(big, 1);
  EXPECT_EQ(SetBits(RescaleBits(big, volume, 64 * KiB, 4 * KiB)),
            (std::vector<uint64_t>{16, 17}));
}

TEST(RescaleBitsTest, BitsPastTheLastChunkAreIgnored) {
  const uint64_t volume = 64 * KiB;  // one 64K chunk, 16 4K chunks
  std::vector<uint64_t> old = Empty(volume, 64 * KiB);
  old[5] = ~uint64_t{0};  // not chunks
  std::vector<uint64_t> shrunk = RescaleBits(old, volume, 64 * KiB, 4 * KiB);
  EXPECT_TRUE(SetBits(shrunk).empty());
}

TEST(RescaleBitsTest, ShrinkThenGrowKeepsEverySetBit) {
  const uint64_t volume = 3ull << 30;  // 49152 chunks of 64K: 2 pages
  std::mt19937_64 rng(20240601);
  std::vector<uint64_t> old = Empty(volume, 64 * KiB);
  for (int i = 0; i < 2000; ++i) Set(old, rng() % Chunks(volume, 64 * KiB));
  std::vector<uint64_t> shrunk = RescaleBits(old, volume, 64 * KiB, 4 * KiB);
  EXPECT_EQ(CountSetBits(shrunk), CountSetBits(old) * 16);
  EXPECT_EQ(RescaleBits(shrunk, volume, 4 * KiB, 64 * KiB), old);
}

// Both chunk sizes are multiples of 4 KiB, so every byte of one 4 KiB block
// has the same old bit and the same new bit: checking each block (the last
// one possibly short) checks every byte offset of the volume.
TEST(RescaleBitsTest, NeverLosesADirtyByteAndSetsNoCleanChunk) {
  const uint64_t seed = 0x5eed0001;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  const uint32_t sizes[] = {4096, 8192, 16384, 65536, 262144, 1u << 20};
  for (int trial = 0; trial < 400; ++trial) {
    const uint64_t volume = 1 + rng() % (8ull << 20);
    const uint32_t old_chunk = sizes[rng() % 6];
    const uint32_t new_chunk = sizes[rng() % 6];
    std::vector<uint64_t> old = Empty(volume, old_chunk);
    const uint64_t old_chunks = Chunks(volume, old_chunk);
    const uint64_t density = rng() % 5;  // 0%, 25%, ... 100%
    for (uint64_t c = 0; c < old_chunks; ++c) {
      if (rng() % 4 < density) Set(old, c);
    }
    std::vector<uint64_t> now = RescaleBits(old, volume, old_chunk, new_chunk);
    const uint64_t new_chunks = Chunks(volume, new_chunk);
    ASSERT_EQ(now.size(), Empty(volume, new_chunk).size());
    std::vector<bool> expected(new_chunks, false);
    for (uint64_t b = 0; b < volume; b += 4096) {
      const bool was = Get(old, b / old_chunk);
      if (was) expected[b / new_chunk] = true;
      ASSERT_TRUE(!was || Get(now, b / new_chunk))
          << "trial " << trial << ": byte " << b << " lost (" << old_chunk << " -> " << new_chunk
          << ", volume " << volume << ")";
    }
    for (uint64_t c = 0; c < now.size() * 64; ++c) {
      const bool want = c < new_chunks && expected[c];
      ASSERT_EQ(Get(now, c), want) << "trial " << trial << ": new chunk " << c << " ("
                                   << old_chunk << " -> " << new_chunk << ", volume " << volume
                                   << ")";
    }
  }
}

TEST(RescaleBitsTest, SixteenTebibyteVolumeRescalesByRunsNotBytes) {
  const uint64_t volume = 16ull << 40;  // 256M chunks of 64K
  std::vector<uint64_t> old = Empty(volume, 64 * KiB);
  std::fill(old.begin(), old.begin() + old.size() / 2, ~uint64_t{0});
  Set(old, Chunks(volume, 64 * KiB) - 1);
  std::vector<uint64_t> grown = RescaleBits(old, volume, 64 * KiB, 1u << 20);
  EXPECT_EQ(grown.size(), Empty(volume, 1u << 20).size());
  // Half the 64K words were full (a bit more than half the chunks, since the
  // vector is padded to whole pages), plus the very last chunk.
  const uint64_t full_64k_chunks = old.size() / 2 * 64;
  EXPECT_EQ(CountSetBits(grown), (full_64k_chunks + 15) / 16 + 1);
}

class RescaleFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    path_ = dir_.File("vol.bm");
    header_.volume_uuid = BitmapFile::NewId();
    header_.generation = BitmapFile::NewId();
    header_.volume_size = 8ull << 30;  // 131072 chunks of 64K: 5 pages
    header_.chunk_size = 65536;
    header_.daemon_sleep_ms = 5000;
  }
  // A file with a few dirty chunks on pages 0, 1 and 4; returns its bits.
  std::vector<uint64_t> MakeFile() {
    auto file = BitmapFile::Create(path_, header_);
    EXPECT_TRUE(file.ok()) << file.status();
    std::vector<uint64_t> bits = Empty(header_.volume_size, header_.chunk_size);
    for (uint64_t c : {3ull, 40000ull, 40001ull, 131071ull}) Set(bits, c);
    std::vector<BitmapPage> pages;
    for (uint64_t p : {0ull, 1ull, 4ull}) {
      auto first = bits.begin() + p * kWordsPerPage;
      pages.push_back(BitmapPage{p, std::vector<uint64_t>(first, first + kWordsPerPage)});
    }
    EXPECT_TRUE((*file)->WritePages(pages).ok());
    return bits;
  }
  TempDir dir_;
  std::string path_;
  BitmapHeader header_;
};

TEST_F(RescaleFileTest, RescaledFileKeepsIdentityAndEveryDirtyChunk) {
  const std::vector<uint64_t> bits = MakeFile();
  RescaleResult result;
  ASSERT_TRUE(RescaleBitmapFile(path_, 16384, &result).ok());
  EXPECT_EQ(result.old_chunk, 65536u);
  EXPECT_EQ(result.new_chunk, 16384u);
  EXPECT_EQ(result.old_dirty_chunks, 4u);
  EXPECT_EQ(result.new_dirty_chunks, 16u);
  struct stat st;
  EXPECT_NE(stat((path_ + ".rescale.tmp").c_str(), &st), 0) << "temp file left behind";

  auto file = BitmapFile::Open(path_, /*read_only=*/true);
  ASSERT_TRUE(file.ok()) << file.status();
  const BitmapHeader& h = (*file)->header();
  EXPECT_EQ(h.volume_uuid, header_.volume_uuid);
  EXPECT_EQ(h.generation, header_.generation);
  EXPECT_EQ(h.volume_size, header_.volume_size);
  EXPECT_EQ(h.daemon_sleep_ms, 5000u);
  EXPECT_EQ(h.state, header_.state);
  EXPECT_EQ(h.chunk_size, 16384u);
  EXPECT_EQ(h.page_count(), 17u);
  EXPECT_EQ((*file)->loaded_bits(), RescaleBits(bits, header_.volume_size, 65536, 16384));
  file->reset();

  ASSERT_TRUE(RescaleBitmapFile(path_, 65536, &result).ok());
  EXPECT_EQ(result.new_dirty_chunks, 4u);
  file = BitmapFile::Open(path_, /*read_only=*/true);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->loaded_bits(), bits);
}

TEST_F(RescaleFileTest, FileInUseIsRefusedAndLeftAlone) {
  MakeFile();
  auto agent = BitmapFile::Open(path_);  // holds the writer lock, as a running agent does
  ASSERT_TRUE(agent.ok()) << agent.status();
  absl::Status s = RescaleBitmapFile(path_, 16384);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(std::string(s.message()).find("in use"), std::string::npos) << s;
  EXPECT_NE(std::string(s.message()).find(path_), std::string::npos) << s;
  agent->reset();
  auto file = BitmapFile::Open(path_, /*read_only=*/true);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ((*file)->header().chunk_size, 65536u);
}

TEST_F(RescaleFileTest, TornPageIsCarriedOverAsAllDirty) {
  MakeFile();
  int fd = open(path_.c_str(), O_RDWR);
  char byte = 0;
  ASSERT_EQ(pread(fd, &byte, 1, 8192 + 2 * 4096 + 100), 1);  // page 2
  byte = static_cast<char>(~byte);  // inverted: always a change
  ASSERT_EQ(pwrite(fd, &byte, 1, 8192 + 2 * 4096 + 100), 1);
  close(fd);
  RescaleResult result;
  ASSERT_TRUE(RescaleBitmapFile(path_, 131072, &result).ok());
  EXPECT_EQ(result.old_dirty_chunks, 4u + kBitsPerPage);
  auto file = BitmapFile::Open(path_, /*read_only=*/true);
  ASSERT_TRUE(file.ok());
  EXPECT_TRUE((*file)->torn_pages().empty());
  // Old page 2 = 64K chunks [65280, 97920) = 128K chunks [32640, 48960).
  for (uint64_t c = 32640; c < 48960; ++c) ASSERT_TRUE(Get((*file)->loaded_bits(), c)) << c;
}

TEST_F(RescaleFileTest, InvalidChunkSizeIsRefusedBeforeTouchingTheFile) {
  MakeFile();
  EXPECT_EQ(RescaleBitmapFile(path_, 6000).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RescaleBitmapFile(path_, 2048).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RescaleBitmapFile(path_, 1u << 31).code(), absl::StatusCode::kInvalidArgument);
  auto file = BitmapFile::Open(path_, /*read_only=*/true);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ((*file)->header().chunk_size, 65536u);
}

TEST_F(RescaleFileTest, LeftoverTempFileFromACrashedRescaleIsReplaced) {
  const std::vector<uint64_t> bits = MakeFile();
  int fd = open((path_ + ".rescale.tmp").c_str(), O_WRONLY | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "junk", 4), 4);
  close(fd);
  ASSERT_TRUE(RescaleBitmapFile(path_, 32768).ok());
  auto file = BitmapFile::Open(path_, /*read_only=*/true);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->loaded_bits(), RescaleBits(bits, header_.volume_size, 65536, 32768));
}

TEST_F(RescaleFileTest, MissingFileIsReportedByName) {
  absl::Status s = RescaleBitmapFile(path_, 16384);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(std::string(s.message()).find(path_), std::string::npos) << s;
}

}  // namespace
}  // namespace blockrepl
