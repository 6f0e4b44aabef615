#include "common/payload_buffers.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "common/payload.h"

namespace blockrepl::payload_buffers {
namespace {

constexpr size_t kMiB = 1 << 20;

class PayloadBuffersTest : public ::testing::Test {
 protected:
  void SetUp() override { ReleaseCached(); }
  void TearDown() override { ReleaseCached(); }
};

TEST_F(PayloadBuffersTest, AFreedLargeBufferIsReusedForTheNextOfItsSize) {
  const uint64_t misses_before = GetStats().misses_total;
  char* first = Allocate(kMiB);
  std::memset(first, 'a', kMiB);
  Free(first, kMiB);
  EXPECT_EQ(GetStats().cached_bytes, kMiB);
  char* second = Allocate(kMiB);
  EXPECT_EQ(second, first);
  EXPECT_EQ(GetStats().misses_total, misses_before + 1);
  EXPECT_EQ(GetStats().cached_bytes, 0u);
  Free(second, kMiB);
}

TEST_F(PayloadBuffersTest, TheCacheKeepsAtMostItsBoundAndGivesEverythingBackWhenIdle) {
  const Stats before = GetStats();
  std::vector<char*> burst;
  for (int i = 0; i < 40; ++i) {
    burst.push_back(Allocate(kMiB));
    burst.back()[kMiB - 1] = 1;  // written to the end
  }
  EXPECT_EQ(GetStats().pooled_bytes, before.pooled_bytes + 40 * kMiB);
  for (char* buffer : burst) Free(buffer, kMiB);
  const Stats after = GetStats();
  EXPECT_EQ(after.cached_bytes, kCachedBytesMax);
  EXPECT_EQ(after.pooled_bytes, before.pooled_bytes + kCachedBytesMax);
  ReleaseCached();
  EXPECT_EQ(GetStats().cached_bytes, 0u);
  EXPECT_EQ(GetStats().pooled_bytes, before.pooled_bytes);
}

TEST_F(PayloadBuffersTest, AFullCacheMakesRoomForTheSizeNowBeingFreed) {
  constexpr size_t k64K = 64 << 10;
  std::vector<char*> big;
  for (size_t i = 0; i < kCachedBytesMax / kMiB; ++i) big.push_back(Allocate(kMiB));
  for (char* buffer : big) Free(buffer, kMiB);
  ASSERT_EQ(GetStats().cached_bytes, kCachedBytesMax);  // all 1 MiB buffers
  // The workload moves to 64 KiB writes: their buffers are kept, evicting
  // 1 MiB ones, so the next 64 KiB write reuses one instead of mapping.
  char* small = Allocate(k64K);
  Free(small, k64K);
  EXPECT_EQ(GetStats().cached_bytes, kCachedBytesMax - kMiB + k64K);
  const uint64_t misses = GetStats().misses_total;
  char* again = Allocate(k64K);
  EXPECT_EQ(again, small);
  EXPECT_EQ(GetStats().misses_total, misses);
  Free(again, k64K);
  EXPECT_EQ(GetStats().pooled_bytes, GetStats().cached_bytes);
}

TEST_F(PayloadBuffersTest, PageMultiplesBelowTheMappedSizeAreCachedAndAligned) {
  const uint64_t misses = GetStats().misses_total;
  char* first = Allocate(4096);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % 4096, 0u);
  std::memset(first, 'x', 4096);
  Free(first, 4096);
  EXPECT_EQ(GetStats().cached_bytes, 4096u);
  char* second = Allocate(4096);
  EXPECT_EQ(second, first) << "the next 4 KiB write reuses it";
  EXPECT_EQ(GetStats().misses_total, misses + 1);
  Free(second, 4096);
  char* other = Allocate(12288);
  EXPECT_NE(other, first) << "another size class";
  Free(other, 12288);
  EXPECT_EQ(GetStats().cached_bytes, 4096u + 12288u);
  ReleaseCached();
  EXPECT_EQ(GetStats().cached_bytes, 0u);
}

TEST_F(PayloadBuffersTest, OtherSmallSizesAreNotCached) {
  for (size_t size : {size_t{512}, size_t{4095}, size_t{5000}}) {
    char* small = Allocate(size);
    std::memset(small, 'x', size);
    Free(small, size);
    EXPECT_EQ(GetStats().cached_bytes, 0u) << size;
  }
}

TEST_F(PayloadBuffersTest, PayloadsOfEverySizeComeBack) {
  for (size_t size : {size_t{1}, size_t{4096}, size_t{8192}, kMappedMin - 1, kMappedMin,
                      kMiB + 1}) {
    Payload payload = Payload::ForOverwrite(size);
    std::memset(payload.data(), 'p', size);
    Payload moved = std::move(payload);
    EXPECT_TRUE(payload.empty());
    EXPECT_EQ(moved.size(), size);
    Payload assigned = Payload::CopyOf("replaced");
    assigned = std::move(moved);  // frees "replaced"
    EXPECT_EQ(assigned.view(), std::string(size, 'p'));
  }
  // Every pooled one went back to the cache (none is in use now).
  EXPECT_EQ(GetStats().pooled_bytes, GetStats().cached_bytes);
}

}  // namespace
}  // namespace blockrepl::payload_buffers
