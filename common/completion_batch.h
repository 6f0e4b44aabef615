// CompletionBatch: lets a thread that completes many requests in one go
// coalesce what each completion would otherwise do on its own.
//
// The replicator's stream thread finishes every synchronous write a batch ack
// covers (often 30 at once); each finish queues an NBD reply. Sent one by
// one that is 30 sendmsg calls where one would do. Inside a batch, a
// completion defers such work with Defer(); the outermost batch runs what was
// deferred when it ends, on the same thread, in the order deferred.
//
// An NBD worker also runs a few queued writes in one batch (WorkerPool), so
// their replies share a sendmsg. A reply held back must not wait for I/O that
// a later write of the batch may block on: code about to wait under a lock
// calls RunDeferredOutside() first (bitmap persistence, the replication
// window, a range lock).
//
// Owned by one thread: a batch lives on the stack of the thread that made it
// and sees only Defer() calls made on that thread.
#pragma once

#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace blockrepl {

class CompletionBatch {
 public:
  CompletionBatch();
  // Runs the deferred work (the outermost batch only; an inner one leaves it
  // to the outer).
  ~CompletionBatch();
  CompletionBatch(const CompletionBatch&) = delete;
  CompletionBatch& operator=(const CompletionBatch&) = delete;

  // True while a batch is open on this thread.
  static bool Active();
  // Queues `work` for the end of this thread's outermost batch. Requires
  // Active(). Work run at the end may defer more; it runs in the same pass.
  static void Defer(absl::AnyInvocable<void() &&> work);

  // True when this thread's batch holds deferred work (never from inside
  // deferred work: nothing is held for it there).
  static bool HasDeferred();
  // For a thread about to wait while holding `mu`: if its batch holds work,
  // releases `mu`, runs the work (the batch stays open), and takes `mu`
  // again. True if it did (what `mu` guards may have changed meanwhile).
  // Without a batch, and from inside deferred work, it does nothing.
  static bool RunDeferredOutside(absl::Mutex* mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(*mu);

 private:
  void RunDeferred();

  CompletionBatch* const outer_;  // the batch open before this one, if any
  std::vector<absl::AnyInvocable<void() &&>> deferred_;  // outermost batch only
  bool running_deferred_ = false;
};

}  // namespace blockrepl
