#include "common/range_lock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/completion_batch.h"

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

// An NBD worker running several writes in one CompletionBatch holds their
// replies back; before it waits for another write's range, they go.
TEST(RangeLockTest, HeldRepliesGoBeforeTheWait) {
  RangeLock lock;
  RangeLock::Holder held = lock.Lock(0, 4);
  std::atomic<bool> sent{false}, locked{false};
  std::thread waiter([&] {
    CompletionBatch batch;
    CompletionBatch::Defer([&] { sent = true; });
    RangeLock::Holder mine = lock.Lock(2, 6);
    locked = true;
  });
  for (int i = 0; i < 500 && !sent; ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_TRUE(sent.load());     // ran while the range was still held...
  EXPECT_FALSE(locked.load());  // ...and the waiter still waits
  held.Release();
  waiter.join();
  EXPECT_TRUE(locked.load());
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

TEST(RangeLockTest, WaitingWideLockIsNotOvertakenByLaterSmallLocks) {
  RangeLock lock;
  auto small = std::make_unique<RangeLock::Holder>(lock.Lock(5, 6));
  std::atomic<int> order{0};
  std::atomic<int> wide_pos{0}, late_pos{0};
  std::thread wide([&] {
    RangeLock::Holder h = lock.Lock(0, ~uint64_t{0});
    wide_pos = ++order;
  });
  absl::SleepFor(absl::Milliseconds(30));  // let the wide lock queue up
  std::thread late([&] {
    RangeLock::Holder h = lock.Lock(100, 101);  // disjoint from the held one
    late_pos = ++order;
  });
  absl::SleepFor(absl::Milliseconds(30));
  EXPECT_EQ(late_pos.load(), 0);  // queued behind the wide waiter
  small.reset();
  wide.join();
  late.join();
  EXPECT_EQ(wide_pos.load(), 1);
  EXPECT_EQ(late_pos.load(), 2);
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
