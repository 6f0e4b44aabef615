#include "common/range_lock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace blockrepl {
namespace {

TEST(RangeLockTest, DisjointRangesDoNotBlock) {
  RangeLock lock;
  RangeLock::Holder a = lock.Lock(0, 4);
  RangeLock::Holder b = lock.Lock(4, 8);  // would deadlock the test if it blocked
  SUCCEED();
}

TEST(RangeLockTest, OverlappingRangeWaitsForRelease) {
  RangeLock lock;
  auto held = std::make_unique<RangeLock::Holder>(lock.Lock(2, 6));
  std::atomic<bool> acquired{false};
  std::thread waiter([&] {
    RangeLock::Holder h = lock.Lock(5, 7);
    acquired = true;
  });
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(acquired.load());
  held.reset();
  waiter.join();
  EXPECT_TRUE(acquired.load());
}

TEST(RangeLockTest, EmptyRangeStillOrdersAgainstItsChunk) {
  RangeLock lock;
  auto held = std::make_unique<RangeLock::Holder>(lock.Lock(3, 4));
  std::atomic<bool> acquired{false};
  std::thread waiter([&] {
    RangeLock::Holder h = lock.Lock(3, 3);
    acquired = true;
  });
  absl::SleepFor(absl::Milliseconds(30));
  EXPECT_FALSE(acquired.load());
  held.reset();
  waiter.join();
  EXPECT_TRUE(acquired.load());
}

TEST(RangeLockTest, ManyThreadsOnOneChunkAreMutuallyExclusive) {
  RangeLock lock;
  int inside = 0;
  int max_inside = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        RangeLock::Holder h = lock.Lock(10, 12);
        ++inside;
        max_inside = std::max(max_inside, inside);
        --inside;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(max_inside, 1);
}

}  // namespace
}  // namespace blockrepl
