#include "secondary/undo_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "common/mem_block_device.h"
#include "common/test_temp_dir.h"

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

}  // namespace
}  // namespace blockrepl
