// A fixed set of threads running submitted closures in FIFO order. The NBD
// sessions of one server share it: device calls may block for a long time
// (replication window, synchronous acks), so the pool is sized by how many
// requests may wait at once, not by core count. Thread-safe. Stop() (also
// run by the destructor) finishes every queued task, then joins the threads.
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace blockrepl::nbd {

class WorkerPool {
 public:
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task`. Must not be called after Stop() has begun.
  void Submit(std::function<void()> task);

  // Runs what is queued, then joins the threads. Idempotent, but not to be
  // called from two threads at once (NbdServer calls it once, from Stop()).
  void Stop();

 private:
  void Loop();

  std::vector<std::thread> threads_;  // touched only by the constructor and Stop()

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace blockrepl::nbd
