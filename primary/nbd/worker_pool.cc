#include "primary/nbd/worker_pool.h"

#include <cassert>
#include <utility>

#include "common/completion_batch.h"
#include "common/thread_name.h"

namespace blockrepl::nbd {

WorkerPool::WorkerPool(int threads) {
  if (threads < 1) threads = 1;
  threads_.reserve(threads);
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] {
      NameThisThread("nbd-worker");
      Loop();
    });
}

WorkerPool::~WorkerPool() { Stop(); }

void WorkerPool::Submit(std::function<void()> task, bool batchable) {
  absl::MutexLock lock(&mu_);
  assert(!stopping_);
  queue_.push_back(Task{std::move(task), batchable});
}

bool WorkerPool::TakeBatchable(Task* task) {
  absl::MutexLock lock(&mu_);
  if (!FrontIsBatchable()) return false;
  *task = std::move(queue_.front());
  queue_.pop_front();
  return true;
}

void WorkerPool::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void WorkerPool::Loop() {
  while (true) {
    Task task;
    bool run_on = false;  // the next task may join this one's run
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](WorkerPool* p)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) { return p->stopping_ || !p->queue_.empty(); },
          this));
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
      run_on = task.batchable && FrontIsBatchable();
    }
    // Never under mu_: tasks block on devices and sockets.
    if (!run_on) {
      task.run();
      continue;
    }
    CompletionBatch batch;  // the run's replies go when it ends
    task.run();
    for (int taken = 1; taken < kMaxRun && TakeBatchable(&task); ++taken) task.run();
  }
}

}  // namespace blockrepl::nbd
