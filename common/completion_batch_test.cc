#include "common/completion_batch.h"

#include <string>
#include <thread>

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

TEST(CompletionBatchTest, RunDeferredNowRunsWhatIsHeldAndKeepsTheBatchOpen) {
  std::string log;
  {
    CompletionBatch batch;
    EXPECT_FALSE(CompletionBatch::HasDeferred());
    CompletionBatch::Defer([&] { log += "a"; });
    EXPECT_TRUE(CompletionBatch::HasDeferred());
    CompletionBatch::RunDeferredNow();  // a thread about to wait
    EXPECT_EQ(log, "a");
    EXPECT_FALSE(CompletionBatch::HasDeferred());
    EXPECT_TRUE(CompletionBatch::Active());
    CompletionBatch::Defer([&] { log += "b"; });
    log += "-";
  }
  EXPECT_EQ(log, "a-b");  // "a" ran once, "b" at the end
}

TEST(CompletionBatchTest, RunDeferredNowFromDeferredWorkDoesNotRecurse) {
  std::string log;
  {
    CompletionBatch batch;
    CompletionBatch::Defer([&] {
      log += "1";
      CompletionBatch::RunDeferredNow();  // no-op: this pass runs what follows
      log += "2";
    });
    CompletionBatch::Defer([&] { log += "3"; });
  }
  EXPECT_EQ(log, "123");
}

TEST(CompletionBatchTest, RunDeferredNowWithoutABatchDoesNothing) {
  EXPECT_FALSE(CompletionBatch::HasDeferred());
  CompletionBatch::RunDeferredNow();
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
