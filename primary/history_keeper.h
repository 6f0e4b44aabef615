// HistoryKeeper: the primary's data history (common/data_history.h), kept
// in memory and in its bitmap file's header. It moves at two moments:
//  - the first local write while no peer follows us: a new `current`, and
//    `diverged_from` remembers the point the bitmap counts from. Persisted
//    before that write touches the store, so a crash cannot hide that this
//    side wrote alone (which is what turns a later meeting into a split
//    brain instead of a silent overwrite);
//  - the peer is in sync with our `current` again: the divergence ends.
// Thread-safe.
#pragma once

#include <atomic>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/bitmap/bitmap_file.h"
#include "common/data_history.h"

namespace blockrepl {

class HistoryKeeper {
 public:
  // `file` may be null (bitmap in memory): the history then lives only here.
  HistoryKeeper(DataHistory history, BitmapFile* file)
      : history_(std::move(history)), file_(file), diverged_(history_.diverged()) {}

  DataHistory Get() const;
  // Called before every local write, inside the write's range lock.
  // `peer_following()`: a secondary is connected and receives our writes.
  // Asked again under our lock before diverging, so a handshake that marks
  // the peer following and then checks Get() (Replicator::Connect) either
  // sees this divergence or makes this write not diverge: never a peer
  // told one generation while we moved on to another.
  absl::Status BeforeLocalWrite(absl::FunctionRef<bool()> peer_following) {
    if (diverged_.load(std::memory_order_acquire) || peer_following()) return absl::OkStatus();
    return Diverge(peer_following);
  }
  // The secondary holds our `current` (connected, consistent, nothing
  // flagged): nothing is ours alone any more.
  void NoteInSync();
  // Online bitmap rescale replaced the file: keep writing the new one.
  absl::Status SetFile(BitmapFile* file);

 private:
  absl::Status Diverge(absl::FunctionRef<bool()> peer_following);
  absl::Status PersistLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  DataHistory history_ ABSL_GUARDED_BY(mu_);
  BitmapFile* file_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> diverged_;  // == history_.diverged(), read without the lock
};

}  // namespace blockrepl
