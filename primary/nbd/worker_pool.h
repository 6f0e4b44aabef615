// A fixed set of threads running submitted closures in FIFO order. The NBD
// sessions of one server share it: device calls may block for a long time
// (replication window, synchronous acks), so the pool is sized by how many
// requests may wait at once, not by core count. Thread-safe. Stop() (also
// run by the destructor) finishes every queued task, then joins the threads.
//
// Runs of short tasks: a client at queue depth 32 sends its writes in bursts,
// and each write's reply cost a sendmsg of its own (the largest item of the
// primary's profile, docs/PERFORMANCE.md round 14). A worker that takes a
// `batchable` task while the next queued task is batchable too runs up to
// kMaxRun of them in one CompletionBatch, so the replies they queue leave
// together when the run ends. Only tasks that do not wait for long may be
// batchable (the session marks plain writes, not reads, flushes or FUA), and
// what may still wait inside one (bitmap I/O, the replication window, a range
// lock) sends the held replies first (CompletionBatch::RunDeferredOutside).
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

  // The most tasks one run takes: a reply waits for at most 7 more writes
  // (3-10 us each at 4 KiB), and shares a sendmsg with up to 7 others.
  static constexpr int kMaxRun = 8;

  // Queues `task`; `batchable`: it may share a run (see above). Must not be
  // called after Stop() has begun.
  void Submit(std::function<void()> task, bool batchable = false);

  // Runs what is queued, then joins the threads. Idempotent, but not to be
  // called from two threads at once (NbdServer calls it once, from Stop()).
  void Stop();

 private:
  struct Task {
    std::function<void()> run;
    bool batchable;
  };

  void Loop();
  // Takes the next task if it may join a run; false if there is none or it
  // must run on its own.
  bool TakeBatchable(Task* task);
  bool FrontIsBatchable() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() && queue_.front().batchable;
  }

  std::vector<std::thread> threads_;  // touched only by the constructor and Stop()

  absl::Mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace blockrepl::nbd
