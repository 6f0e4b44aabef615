#include "primary/nbd/worker_pool.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/completion_batch.h"

namespace blockrepl::nbd {
namespace {

// One worker, held busy while the test queues what it wants the worker to
// find queued; `log` records tasks ("t3") and their deferred replies ("d3").
class WorkerPoolRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_.Submit([this] { release_.WaitForNotification(); });
  }
  // A task that logs itself and, inside a batch, defers a "reply".
  void SubmitLogging(int id, bool batchable) {
    pool_.Submit(
        [this, id] {
          Append(absl::StrCat("t", id, CompletionBatch::Active() ? "" : "(alone)"));
          if (CompletionBatch::Active()) {
            CompletionBatch::Defer([this, id] { Append(absl::StrCat("d", id)); });
          }
        },
        batchable);
  }
  std::string RunAndLog() {
    absl::Notification done;
    pool_.Submit([&] { done.Notify(); });
    release_.Notify();
    done.WaitForNotification();
    absl::MutexLock lock(&mu_);
    return log_;
  }
  void Append(const std::string& s) {
    absl::MutexLock lock(&mu_);
    log_ += s + " ";
  }

  absl::Notification release_;
  WorkerPool pool_{1};
  absl::Mutex mu_;
  std::string log_ ABSL_GUARDED_BY(mu_);
};

TEST_F(WorkerPoolRunTest, QueuedBatchableTasksShareOneBatch) {
  for (int id = 1; id <= 3; ++id) SubmitLogging(id, /*batchable=*/true);
  EXPECT_EQ(RunAndLog(), "t1 t2 t3 d1 d2 d3 ");
}

TEST_F(WorkerPoolRunTest, ATaskThatIsNotBatchableEndsTheRunAndRunsAlone) {
  SubmitLogging(1, true);
  SubmitLogging(2, true);
  SubmitLogging(3, /*batchable=*/false);  // a read, a flush: its wait delays no reply
  SubmitLogging(4, true);
  EXPECT_EQ(RunAndLog(), "t1 t2 d1 d2 t3(alone) t4(alone) ");
}

TEST_F(WorkerPoolRunTest, ARunTakesAtMostMaxRunTasks) {
  constexpr int kMax = WorkerPool::kMaxRun;
  for (int id = 1; id <= kMax + 2; ++id) SubmitLogging(id, true);
  // A full run and its replies, then the last two as a run of their own.
  std::string expected;
  for (int id = 1; id <= kMax; ++id) absl::StrAppend(&expected, "t", id, " ");
  for (int id = 1; id <= kMax; ++id) absl::StrAppend(&expected, "d", id, " ");
  absl::StrAppend(&expected, "t", kMax + 1, " t", kMax + 2, " d", kMax + 1, " d", kMax + 2, " ");
  EXPECT_EQ(RunAndLog(), expected);
}

TEST_F(WorkerPoolRunTest, ABatchableTaskWithNothingQueuedBehindItRunsAlone) {
  SubmitLogging(1, true);  // at queue depth 1 its reply goes at once
  EXPECT_EQ(RunAndLog(), "t1(alone) ");
}

TEST(WorkerPoolTest, StopRunsEveryQueuedTask) {
  int ran = 0;
  {
    WorkerPool pool(2);
    absl::Mutex mu;
    for (int i = 0; i < 100; ++i) {
      pool.Submit(
          [&] {
            absl::MutexLock lock(&mu);
            ++ran;
          },
          i % 2 == 0);
    }
    pool.Stop();
  }
  EXPECT_EQ(ran, 100);
}

}  // namespace
}  // namespace blockrepl::nbd
