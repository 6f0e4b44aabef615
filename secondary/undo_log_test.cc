#include "secondary/undo_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "common/mem_block_device.h"
#include "common/test_temp_dir.h"
#include "common/xxh3.h"

namespace blockrepl {
namespace {

constexpr uint64_t kExtent = UndoLog::kExtentBytes;

class UndoLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    path_ = dir_.File("undo");
    for (uint64_t i = 0; i < kSize; i += 4096) {
      ASSERT_TRUE(store_.Write(i, std::string(4096, 'a' + (i / kExtent) % 26), false).ok());
    }
    original_ = store_.Contents();
  }
  static constexpr uint64_t kSize = 16 * kExtent + 4096;  // last extent is short
  MemBlockDevice store_{kSize};
  TempDir dir_;
  std::string path_, original_;
};

TEST_F(UndoLogTest, RollBackRestoresFirstTouchContents) {
  auto log = std::move(UndoLog::Open(path_, kSize)).value();
  ASSERT_TRUE(log->SaveBeforeOverwrite({{100, 10}, {3 * kExtent, 2 * kExtent}}, &store_).ok());
  EXPECT_EQ(log->saved_extents(), 3u);
  ASSERT_TRUE(store_.Write(100, std::string(10, 'X'), false).ok());
  ASSERT_TRUE(store_.Write(3 * kExtent, std::string(2 * kExtent, 'Y'), false).ok());
  // A second overwrite of a saved extent must not replace its saved copy.
  ASSERT_TRUE(log->SaveBeforeOverwrite({{3 * kExtent, 10}}, &store_).ok());
  EXPECT_EQ(log->saved_extents(), 3u);
  ASSERT_TRUE(store_.Write(3 * kExtent, std::string(10, 'Z'), false).ok());
  ASSERT_TRUE(log->RollBack(&store_).ok());
  EXPECT_EQ(store_.Contents(), original_);
}

TEST_F(UndoLogTest, ReopenKnowsSavedExtentsAndIgnoresTornTail) {
  {
    auto log = std::move(UndoLog::Open(path_, kSize)).value();
    ASSERT_TRUE(log->SaveBeforeOverwrite({{0, 1}, {16 * kExtent, 4096}}, &store_).ok());
  }
  // Simulate a crash mid-append: garbage after the last valid record.
  int fd = open(path_.c_str(), O_WRONLY | O_APPEND);
  ASSERT_EQ(write(fd, "\x75\x6e\x64\x6fjunkjunkjunkjunkjunk", 24), 24);
  close(fd);
  auto log = std::move(UndoLog::Open(path_, kSize)).value();
  EXPECT_EQ(log->saved_extents(), 2u);
  ASSERT_TRUE(store_.Write(16 * kExtent, std::string(4096, 'Q'), false).ok());
  ASSERT_TRUE(log->RollBack(&store_).ok());
  EXPECT_EQ(store_.Contents(), original_);
}

TEST_F(UndoLogTest, ClearForgetsEverything) {
  auto log = std::move(UndoLog::Open(path_, kSize)).value();
  ASSERT_TRUE(log->SaveBeforeOverwrite({{0, kSize}}, &store_).ok());
  EXPECT_EQ(log->saved_extents(), 17u);
  ASSERT_TRUE(log->Clear().ok());
  EXPECT_EQ(log->saved_extents(), 0u);
  EXPECT_EQ(log->size_bytes(), 0u);
}

TEST_F(UndoLogTest, SegmentsStayBlockAligned) {
  auto log = std::move(UndoLog::Open(path_, kSize)).value();
  ASSERT_TRUE(log->SaveBeforeOverwrite({{0, 1}}, &store_).ok());
  ASSERT_TRUE(log->SaveBeforeOverwrite({{16 * kExtent, 1}}, &store_).ok());  // the short one
  EXPECT_EQ(log->size_bytes() % 4096, 0u);
  EXPECT_EQ(std::filesystem::file_size(path_), log->size_bytes());
}

// A crash in the middle of appending a segment: its header may be on disk
// with only part of its data, or its data damaged. It and what follows are
// ignored; the segments before it still roll back.
TEST_F(UndoLogTest, TornOrDamagedSegmentIsIgnored) {
  for (bool truncate : {true, false}) {
    SCOPED_TRACE(truncate ? "truncated" : "damaged");
    std::filesystem::remove(path_);
    uint64_t first_segment_end;
    {
      auto log = std::move(UndoLog::Open(path_, kSize)).value();
      ASSERT_TRUE(log->SaveBeforeOverwrite({{0, 2 * kExtent}}, &store_).ok());
      first_segment_end = log->size_bytes();
      ASSERT_TRUE(log->SaveBeforeOverwrite({{5 * kExtent, 3 * kExtent}}, &store_).ok());
    }
    if (truncate) {
      std::filesystem::resize_file(path_, first_segment_end + 4096 + kExtent + 100);
    } else {
      int fd = open(path_.c_str(), O_WRONLY);
      ASSERT_EQ(pwrite(fd, "!", 1, static_cast<off_t>(first_segment_end + 4096 + 2 * kExtent)), 1);
      close(fd);
    }
    auto log = std::move(UndoLog::Open(path_, kSize)).value();
    EXPECT_EQ(log->saved_extents(), 2u);
    EXPECT_EQ(log->size_bytes(), first_segment_end);
    ASSERT_TRUE(store_.Write(0, std::string(2 * kExtent, 'X'), false).ok());
    ASSERT_TRUE(log->RollBack(&store_).ok());
    EXPECT_EQ(store_.Contents(), original_);
  }
}

TEST_F(UndoLogTest, DamageAfterOpeningFailsTheRollBack) {
  auto log = std::move(UndoLog::Open(path_, kSize)).value();
  ASSERT_TRUE(log->SaveBeforeOverwrite({{0, kExtent}}, &store_).ok());
  int fd = open(path_.c_str(), O_WRONLY);
  ASSERT_EQ(pwrite(fd, "!", 1, 4096 + 10), 1);
  close(fd);
  absl::Status status = log->RollBack(&store_);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
}

// One call with more extents than a segment holds writes several segments.
TEST(UndoLogLargeTest, ManyExtentsInOneCall) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  constexpr uint64_t kBig = 100 * kExtent;
  MemBlockDevice store(kBig);
  for (uint64_t i = 0; i < kBig; i += kExtent) {
    ASSERT_TRUE(store.Write(i, std::string(kExtent, static_cast<char>('0' + i / kExtent % 64)),
                            false).ok());
  }
  const std::string original = store.Contents();
  {
    auto log = std::move(UndoLog::Open(dir.File("undo"), kBig)).value();
    ASSERT_TRUE(log->SaveBeforeOverwrite({{0, kBig}}, &store).ok());
    EXPECT_EQ(log->saved_extents(), 100u);
  }
  ASSERT_TRUE(store.Write(0, std::string(kBig, 'Z'), false).ok());
  auto log = std::move(UndoLog::Open(dir.File("undo"), kBig)).value();
  EXPECT_EQ(log->saved_extents(), 100u);
  ASSERT_TRUE(log->RollBack(&store).ok());
  EXPECT_EQ(store.Contents(), original);
}

// A log written by a build before format 2 (24-byte-header records) still
// loads and rolls back, and is appended to in its own format until cleared.
TEST_F(UndoLogTest, ReadsAndExtendsFormatOneLogs) {
  {
    int fd = open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    for (uint64_t offset : {uint64_t{0}, 16 * kExtent}) {
      const uint32_t length = static_cast<uint32_t>(std::min(kExtent, kSize - offset));
      std::string record(24 + length, '\0');
      ASSERT_TRUE(store_.Read(offset, absl::MakeSpan(record.data() + 24, length)).ok());
      const uint32_t magic = 0x6f646e75;
      const uint64_t checksum = XXH3_64bits_withSeed(record.data() + 24, length, offset);
      std::memcpy(record.data(), &magic, 4);
      std::memcpy(record.data() + 4, &length, 4);
      std::memcpy(record.data() + 8, &offset, 8);
      std::memcpy(record.data() + 16, &checksum, 8);
      ASSERT_EQ(write(fd, record.data(), record.size()), static_cast<ssize_t>(record.size()));
    }
    close(fd);
  }
  auto log = std::move(UndoLog::Open(path_, kSize)).value();
  EXPECT_EQ(log->saved_extents(), 2u);
  ASSERT_TRUE(log->SaveBeforeOverwrite({{4 * kExtent, 10}}, &store_).ok());
  EXPECT_EQ(log->size_bytes(), std::filesystem::file_size(path_));
  ASSERT_TRUE(store_.Write(0, std::string(kExtent, 'X'), false).ok());
  ASSERT_TRUE(store_.Write(4 * kExtent, std::string(10, 'Y'), false).ok());
  ASSERT_TRUE(store_.Write(16 * kExtent, std::string(4096, 'Z'), false).ok());
  {
    auto reopened = std::move(UndoLog::Open(path_, kSize)).value();
    EXPECT_EQ(reopened->saved_extents(), 3u);
    ASSERT_TRUE(reopened->RollBack(&store_).ok());
  }
  EXPECT_EQ(store_.Contents(), original_);
  ASSERT_TRUE(log->Clear().ok());
  ASSERT_TRUE(log->SaveBeforeOverwrite({{0, 1}}, &store_).ok());
  EXPECT_EQ(log->size_bytes() % 4096, 0u);  // format 2 again
}

// Whatever the file holds (a damaged disk, another program's file at the
// path), opening it never crashes and never claims an extent that was not
// saved intact: each one it loads rolls back to the saved contents.
TEST_F(UndoLogTest, DamagedLogsLoadOnlyIntactExtents) {
  {
    auto log = std::move(UndoLog::Open(path_, kSize)).value();
    ASSERT_TRUE(log->SaveBeforeOverwrite({{0, 3 * kExtent}}, &store_).ok());
    ASSERT_TRUE(log->SaveBeforeOverwrite({{8 * kExtent, kSize - 8 * kExtent}}, &store_).ok());
  }
  std::string valid;
  {
    std::ifstream in(path_, std::ios::binary);
    valid.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::mt19937_64 rng(42);
  for (int round = 0; round < 200; ++round) {
    std::string damaged = valid;
    const int flips = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < flips; ++i) {
      // Mostly the header blocks, where the lengths and counts are.
      const uint64_t at = rng() % 2 == 0 ? rng() % 64 + (rng() % 2) * (4096 + 3 * 65536)
                                         : rng() % damaged.size();
      damaged[at % damaged.size()] = static_cast<char>(rng());
    }
    if (rng() % 4 == 0) damaged.resize(rng() % damaged.size());
    {
      std::ofstream out(path_, std::ios::binary | std::ios::trunc);
      out.write(damaged.data(), static_cast<std::streamsize>(damaged.size()));
    }
    auto log = UndoLog::Open(path_, kSize);
    ASSERT_TRUE(log.ok()) << log.status();
    EXPECT_LE((*log)->saved_extents(), 12u);  // 3 + 9 were saved
    MemBlockDevice scratch(kSize);
    ASSERT_TRUE(scratch.Write(0, std::string(kSize, '#'), false).ok());
    ASSERT_TRUE((*log)->RollBack(&scratch).ok());
    const std::string rolled = scratch.Contents();
    for (uint64_t e = 0; e * kExtent < kSize; ++e) {
      const uint64_t len = std::min(kExtent, kSize - e * kExtent);
      const std::string got = rolled.substr(e * kExtent, len);
      if (got != std::string(len, '#')) EXPECT_EQ(got, original_.substr(e * kExtent, len)) << e;
    }
  }
}

// tmpfs: before Linux 6.6 it refuses O_DIRECT and the log goes through the
// page cache in the same format (that fallback is exercised only on such
// kernels); since, it takes O_DIRECT. Works either way.
TEST(UndoLogTmpfsTest, WorksOnTmpfs) {
  if (!std::filesystem::is_directory("/dev/shm")) GTEST_SKIP() << "no /dev/shm";
  const std::string path = "/dev/shm/blockrepl-undo-test-" + std::to_string(getpid());
  MemBlockDevice store(4 * kExtent);
  ASSERT_TRUE(store.Write(0, std::string(4 * kExtent, 'a'), false).ok());
  {
    auto log = std::move(UndoLog::Open(path, 4 * kExtent)).value();
    ASSERT_TRUE(log->SaveBeforeOverwrite({{kExtent, 2 * kExtent}}, &store).ok());
    ASSERT_TRUE(store.Write(kExtent, std::string(2 * kExtent, 'b'), false).ok());
  }
  auto log = std::move(UndoLog::Open(path, 4 * kExtent)).value();
  EXPECT_EQ(log->saved_extents(), 2u);
  ASSERT_TRUE(log->RollBack(&store).ok());
  EXPECT_EQ(store.Contents(), std::string(4 * kExtent, 'a'));
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace blockrepl
