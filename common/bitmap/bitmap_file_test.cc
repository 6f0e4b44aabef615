#include "common/bitmap/bitmap_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>

#include "common/bitmap/write_intent_bitmap.h"
#include "common/test_temp_dir.h"
#include "common/xxh3.h"

namespace blockrepl {
namespace {

class BitmapFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    path_ = dir_.File("vol.bm");
    header_.volume_uuid = BitmapFile::NewId();
    header_.generation = BitmapFile::NewId();
    header_.volume_size = 8ull << 30;  // 131072 chunks: 5 pages
    header_.chunk_size = 65536;
    header_.daemon_sleep_ms = 5000;
  }
  // Inverts one byte. Writing a fixed value would change nothing one time in
  // 256 where the byte is random (slot B's byte 30 is inside the volume UUID).
  void Corrupt(off_t offset) {
    int fd = open(path_.c_str(), O_RDWR);
    char byte = 0;
    ASSERT_EQ(pread(fd, &byte, 1, offset), 1);
    byte = static_cast<char>(~byte);
    ASSERT_EQ(pwrite(fd, &byte, 1, offset), 1);
    close(fd);
  }
  TempDir dir_;
  std::string path_;
  BitmapHeader header_;
};

TEST_F(BitmapFileTest, CreatedFileReopensWithSameHeaderAndClearBits) {
  ASSERT_TRUE(BitmapFile::Create(path_, header_).ok());
  auto file = BitmapFile::Open(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->header().volume_uuid, header_.volume_uuid);
  EXPECT_EQ((*file)->header().generation, header_.generation);
  EXPECT_EQ((*file)->header().volume_size, header_.volume_size);
  EXPECT_EQ((*file)->header().chunk_size, 65536u);
  EXPECT_EQ((*file)->header().page_count(), 5u);
  for (uint64_t w : (*file)->loaded_bits()) EXPECT_EQ(w, 0u);
  EXPECT_TRUE((*file)->torn_pages().empty());
}

TEST_F(BitmapFileTest, DataHistorySurvivesReopen) {
  DataHistory h = header_.history();
  h.Diverge(BitmapFile::NewId());
  h.Converge();
  h.Diverge(BitmapFile::NewId());
  header_.set_history(h);
  ASSERT_TRUE(BitmapFile::Create(path_, header_).ok());
  auto file = BitmapFile::Open(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->header().version, 2u);
  EXPECT_EQ((*file)->header().generation, h.current);
  EXPECT_EQ((*file)->header().diverged_from, h.diverged_from);
  EXPECT_EQ((*file)->header().older, h.older);
  ASSERT_EQ(h.older.size(), 2u);
}

TEST_F(BitmapFileTest, Version1HeaderLoadsWithNoDivergence) {
  ASSERT_TRUE(BitmapFile::Create(path_, header_).ok());
  // Rewrite both slots as version 1 did: version 1, checksum over 104 bytes.
  int fd = open(path_.c_str(), O_RDWR);
  for (off_t slot : {0, 4096}) {
    char buf[4096];
    ASSERT_EQ(pread(fd, buf, sizeof buf, slot), 4096);
    const uint32_t v1 = 1;
    memcpy(buf + 8, &v1, 4);
    memset(buf + 104, 0, 64);
    const uint64_t sum = XXH3_64bits(buf, 104);
    memcpy(buf + 104, &sum, 8);
    ASSERT_EQ(pwrite(fd, buf, sizeof buf, slot), 4096);
  }
  close(fd);
  auto file = BitmapFile::Open(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->header().version, 1u);
  EXPECT_EQ((*file)->header().generation, header_.generation);
  EXPECT_TRUE((*file)->header().diverged_from.empty());
  EXPECT_TRUE((*file)->header().older.empty());
}

TEST_F(BitmapFileTest, BitsWrittenThroughTheBitmapSurviveReopen) {
  {
    auto file = std::move(BitmapFile::Create(path_, header_)).value();
    WriteIntentBitmap bitmap(header_.volume_size, header_.chunk_size, std::move(file));
    ASSERT_TRUE(bitmap.StartWrite(ChunkRange{7, 9}).ok());
    ASSERT_TRUE(bitmap.StartWrite(ChunkRange{100000, 100001}).ok());
    // Simulated crash: no EndWrite, no clearing.
  }
  auto file = std::move(BitmapFile::Open(path_)).value();
  WriteIntentBitmap bitmap(header_.volume_size, header_.chunk_size, nullptr);
  bitmap.LoadPersistedBits(file->loaded_bits());
  EXPECT_EQ(bitmap.counts().needs_sync_chunks, 3u);
  EXPECT_EQ(bitmap.NextNeedsSync(0), 7u);
  EXPECT_EQ(bitmap.NextNeedsSync(9), 100000u);
}

TEST_F(BitmapFileTest, TornPageLoadsAsAllOnes) {
  ASSERT_TRUE(BitmapFile::Create(path_, header_).ok());
  Corrupt(8192 + 4096 * 2 + 100);  // inside page 2's bits
  auto file = BitmapFile::Open(path_);
  ASSERT_TRUE(file.ok());
  ASSERT_EQ((*file)->torn_pages().size(), 1u);
  EXPECT_EQ((*file)->torn_pages()[0], 2u);
  EXPECT_EQ((*file)->loaded_bits()[2 * kWordsPerPage], ~uint64_t{0});
  EXPECT_EQ((*file)->loaded_bits()[0], 0u);
  // Bits beyond the last chunk stay clear.
  EXPECT_EQ((*file)->loaded_bits().back(), 0u);
}

TEST_F(BitmapFileTest, OneCorruptHeaderSlotFallsBackToTheOther) {
  auto file = std::move(BitmapFile::Create(path_, header_)).value();
  BitmapHeader h = file->header();
  h.state = BitmapHeader::kStateClean;
  ASSERT_TRUE(file->WriteHeader(h).ok());  // goes to slot B
  file.reset();
  Corrupt(4096 + 30);                      // damage slot B
  auto reopened = BitmapFile::Open(path_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->header().state, 0u);  // slot A's older header
}

TEST_F(BitmapFileTest, BothHeadersCorruptIsRefusedNamingTheFile) {
  ASSERT_TRUE(BitmapFile::Create(path_, header_).ok());
  Corrupt(30);
  Corrupt(4096 + 30);
  auto file = BitmapFile::Open(path_);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(file.status().message()).find(path_), std::string::npos);
  EXPECT_NE(std::string(file.status().message()).find("checksum"), std::string::npos);
}

TEST_F(BitmapFileTest, TruncatedFileIsRefused) {
  ASSERT_TRUE(BitmapFile::Create(path_, header_).ok());
  ASSERT_EQ(truncate(path_.c_str(), 8192 + 4096), 0);
  auto file = BitmapFile::Open(path_);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(file.status().message()).find("truncated"), std::string::npos);
}

TEST_F(BitmapFileTest, SecondWriterIsRefusedWhileTheFirstHoldsIt) {
  auto first = BitmapFile::Create(path_, header_);
  ASSERT_TRUE(first.ok());
  auto second = BitmapFile::Open(path_);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(second.status().message()).find("in use"), std::string::npos);
  EXPECT_TRUE(BitmapFile::Open(path_, /*read_only=*/true).ok());  // examine still works
}

TEST_F(BitmapFileTest, CreateRefusesExistingFile) {
  ASSERT_TRUE(BitmapFile::Create(path_, header_).ok());
  EXPECT_EQ(BitmapFile::Create(path_, header_).status().code(), absl::StatusCode::kAlreadyExists);
}

}  // namespace
}  // namespace blockrepl
