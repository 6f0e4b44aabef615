#include "secondary/direct_write_queue.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <random>
#include <string>

#include "common/test_file_size_limit.h"
#include "common/test_temp_dir.h"

namespace blockrepl {
namespace {

constexpr uint64_t kFileBytes = 4 << 20;

// A file of kFileBytes zeroes and a queue on it; skips where the file system
// (tmpfs before Linux 6.6) or the kernel cannot do direct writes through io_uring.
class DirectWriteQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    path_ = dir_.File("store");
    const int fd = open(path_.c_str(), O_RDWR | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, kFileBytes), 0);
    close(fd);
    model_.assign(kFileBytes, '\0');
  }
  // Opens the queue, or skips the test where it cannot exist.
  bool OpenQueue(DirectWriteQueue::Options options = {}) {
    auto queue = DirectWriteQueue::Open(path_, options);
    if (absl::IsUnimplemented(queue.status())) return false;
    EXPECT_TRUE(queue.ok()) << queue.status();
    if (!queue.ok()) return false;
    queue_ = std::move(queue).value();
    return true;
  }
  // Writes `data` at `offset` through the queue, in pieces of `piece` bytes
  // (as gRPC's receive buffers would hold it), and into the model.
  absl::Status Write(uint64_t offset, const std::string& data, size_t piece = 1 << 30) {
    std::vector<iovec> pieces;
    for (size_t at = 0; at < data.size(); at += piece) {
      pieces.push_back(iovec{const_cast<char*>(data.data() + at), std::min(piece, data.size() - at)});
    }
    model_.replace(offset, data.size(), data);
    return queue_->Write(offset, pieces);
  }
  std::string FileContents() const {
    std::string contents(kFileBytes, '\0');
    const int fd = open(path_.c_str(), O_RDONLY);
    EXPECT_EQ(pread(fd, contents.data(), contents.size(), 0), static_cast<ssize_t>(kFileBytes));
    close(fd);
    return contents;
  }

  TempDir dir_;
  std::string path_;
  std::string model_;
  std::unique_ptr<DirectWriteQueue> queue_;
};

#define OPEN_QUEUE_OR_SKIP(...)                                           \
  if (!OpenQueue(__VA_ARGS__)) GTEST_SKIP() << "no O_DIRECT or io_uring here"

TEST_F(DirectWriteQueueTest, ManyWritesInFlightAllLand) {
  OPEN_QUEUE_OR_SKIP(DirectWriteQueue::Options{.slot_bytes = 64 << 10, .slots = 16});
  std::mt19937_64 random(7);
  // Random 4 KiB writes (more than the slots, so some wait for room), one
  // write of 1 MiB (16 slots' worth) from unaligned pieces of 1000 bytes, and
  // a 12 KiB one.
  for (int i = 0; i < 200; ++i) {
    const uint64_t offset = random() % (kFileBytes / 4096) * 4096;
    ASSERT_TRUE(Write(offset, std::string(4096, static_cast<char>('a' + i % 26))).ok());
  }
  std::string big(1 << 20, '\0');
  for (char& c : big) c = static_cast<char>(random());
  ASSERT_TRUE(Write(2 << 20, big, 1000).ok());
  ASSERT_TRUE(Write(8192, std::string(12288, 'z'), 4095).ok());
  ASSERT_TRUE(queue_->Drain().ok());
  EXPECT_TRUE(queue_->idle());
  EXPECT_EQ(queue_->writes_total(), 200u + 16 + 1);
  EXPECT_TRUE(FileContents() == model_);
}

TEST_F(DirectWriteQueueTest, OverlappingWritesLandInTheOrderGiven) {
  OPEN_QUEUE_OR_SKIP();
  // Each overwrites the one before, partly or wholly: only waiting for the
  // overlapped write keeps the last one on top.
  for (int i = 0; i < 100; ++i) {
    const uint64_t offset = (i % 3) * 4096;
    ASSERT_TRUE(Write(offset, std::string(8192, static_cast<char>('A' + i % 50))).ok());
  }
  ASSERT_TRUE(queue_->Drain().ok());
  EXPECT_TRUE(FileContents() == model_);
}

TEST_F(DirectWriteQueueTest, RefusesUnalignedWrites) {
  OPEN_QUEUE_OR_SKIP();
  EXPECT_TRUE(absl::IsInvalidArgument(Write(512, std::string(4096, 'x'))));
  EXPECT_TRUE(absl::IsInvalidArgument(Write(4096, std::string(1000, 'x'))));
  EXPECT_TRUE(queue_->idle());
  EXPECT_FALSE(DirectWriteQueue::Aligned(0, 0));
  EXPECT_TRUE(DirectWriteQueue::Aligned(8192, 4096));
}

TEST_F(DirectWriteQueueTest, AFailedWriteShowsAtDrainWithItsRangeAndTheRestLand) {
  OPEN_QUEUE_OR_SKIP();
  FileSizeLimit limit(1 << 20);
  ASSERT_TRUE(Write(0, std::string(4096, 'a')).ok());
  ASSERT_TRUE(queue_->Write(3 << 20, {iovec{model_.data(), 4096}}).ok());  // beyond the limit
  ASSERT_TRUE(Write(4096, std::string(4096, 'b')).ok());
  absl::Status drained = queue_->Drain();
  EXPECT_FALSE(drained.ok());
  EXPECT_NE(drained.message().find("direct write of 4096 bytes at 3145728"), std::string::npos)
      << drained;
  EXPECT_TRUE(queue_->idle());
  EXPECT_TRUE(queue_->Drain().ok()) << "a failure is reported once";
  EXPECT_TRUE(FileContents() == model_);
}

TEST_F(DirectWriteQueueTest, AShortWriteIsFinishedOrFailsWhole) {
  OPEN_QUEUE_OR_SKIP();
  FileSizeLimit limit(1 << 20);
  // The kernel writes the first 4 KiB and stops at the limit; the rest
  // cannot be written either, and Drain says so.
  ASSERT_TRUE(queue_->Write((1 << 20) - 4096, {iovec{model_.data(), 8192}}).ok());
  absl::Status drained = queue_->Drain();
  EXPECT_FALSE(drained.ok());
  EXPECT_NE(drained.message().find("8192 bytes at 1044480"), std::string::npos) << drained;
}

}  // namespace
}  // namespace blockrepl
