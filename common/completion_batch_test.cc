#include "common/completion_batch.h"

#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace blockrepl {
namespace {

TEST(CompletionBatchTest, DeferredWorkRunsWhenTheBatchEnds) {
  std::string log;
  {
    CompletionBatch batch;
    ASSERT_TRUE(CompletionBatch::Active());
    CompletionBatch::Defer([&] { log += "a"; });
    CompletionBatch::Defer([&] { log += "b"; });
    log += "-";
  }
  EXPECT_EQ(log, "-ab");
  EXPECT_FALSE(CompletionBatch::Active());
}

TEST(CompletionBatchTest, AnInnerBatchLeavesItsWorkToTheOuterOne) {
  std::string log;
  {
    CompletionBatch outer;
    {
      CompletionBatch inner;
      CompletionBatch::Defer([&] { log += "x"; });
    }
    EXPECT_EQ(log, "");
    EXPECT_TRUE(CompletionBatch::Active());
  }
  EXPECT_EQ(log, "x");
}

TEST(CompletionBatchTest, WorkDeferredWhileRunningDeferredWorkRunsInTheSamePass) {
  std::string log;
  {
    CompletionBatch batch;
    CompletionBatch::Defer([&] {
      log += "1";
      CompletionBatch::Defer([&] { log += "2"; });
    });
  }
  EXPECT_EQ(log, "12");
}

// A thread about to wait under a lock (RunDeferredOutside) sends what it holds.
TEST(CompletionBatchTest, RunDeferredOutsideRunsWhatIsHeldAndKeepsTheBatchOpen) {
  std::string log;
  absl::Mutex mu;
  {
    CompletionBatch batch;
    EXPECT_FALSE(CompletionBatch::HasDeferred());
    CompletionBatch::Defer([&] { log += "a"; });
    EXPECT_TRUE(CompletionBatch::HasDeferred());
    mu.Lock();
    EXPECT_TRUE(CompletionBatch::RunDeferredOutside(&mu));  // a thread about to wait
    mu.AssertHeld();
    mu.Unlock();
    EXPECT_EQ(log, "a");
    EXPECT_FALSE(CompletionBatch::HasDeferred());
    EXPECT_TRUE(CompletionBatch::Active());
    CompletionBatch::Defer([&] { log += "b"; });
    log += "-";
  }
  EXPECT_EQ(log, "a-b");  // "a" ran once, "b" at the end
}

TEST(CompletionBatchTest, RunDeferredOutsideFromDeferredWorkDoesNotRecurse) {
  std::string log;
  absl::Mutex mu;
  {
    CompletionBatch batch;
    CompletionBatch::Defer([&] {
      log += "1";
      mu.Lock();
      EXPECT_FALSE(CompletionBatch::RunDeferredOutside(&mu));  // this pass runs what follows
      mu.Unlock();
      log += "2";
    });
    CompletionBatch::Defer([&] { log += "3"; });
  }
  EXPECT_EQ(log, "123");
}

TEST(CompletionBatchTest, RunDeferredOutsideWithoutABatchDoesNothing) {
  absl::Mutex mu;
  EXPECT_FALSE(CompletionBatch::HasDeferred());
  mu.Lock();
  EXPECT_FALSE(CompletionBatch::RunDeferredOutside(&mu));
  mu.Unlock();
  EXPECT_FALSE(CompletionBatch::Active());
}

TEST(CompletionBatchTest, ABatchIsSeenOnlyByItsOwnThread) {
  CompletionBatch batch;
  bool active_elsewhere = true;
  std::thread other([&] { active_elsewhere = CompletionBatch::Active(); });
  other.join();
  EXPECT_FALSE(active_elsewhere);
  EXPECT_TRUE(CompletionBatch::Active());
}

}  // namespace
}  // namespace blockrepl
