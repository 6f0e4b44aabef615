// RangeLock: mutual exclusion over ranges of chunk indexes. A holder of
// [a, b) excludes every other holder of an overlapping range; disjoint
// ranges proceed in parallel. The replicating volume holds a write's range
// from its local write until it has a place in the replication stream, so
// overlapping writes reach the secondary in the order they hit the local
// disk, and a resync read of a chunk can never be overtaken by a newer write
// to it. Requests are served first come, first served among overlapping
// ranges, so a whole-volume lock (bitmap rescale) cannot be starved by a
// stream of small writes. Thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace blockrepl {

class RangeLock {
 public:
  class Holder;

  // Blocks until [first, end) overlaps no held range, then holds it.
  Holder Lock(uint64_t first, uint64_t end);

  // RAII handle; releases on destruction (movable, not copyable).
  class Holder {
   public:
    Holder(Holder&& other) noexcept : lock_(other.lock_), id_(other.id_) { other.lock_ = nullptr; }
    Holder& operator=(Holder&&) = delete;
    Holder(const Holder&) = delete;
    ~Holder() { Release(); }
    void Release();

   private:
    friend class RangeLock;
    Holder(RangeLock* lock, uint64_t id) : lock_(lock), id_(id) {}
    RangeLock* lock_;
    uint64_t id_;
  };

 private:
  struct Held {
    uint64_t id, first, end;
  };
  // True if [first, end) overlaps a held range or an earlier waiter's.
  bool MustWait(uint64_t ticket, uint64_t first, uint64_t end) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void Unlock(uint64_t id);

  absl::Mutex mu_;
  std::vector<Held> held_ ABSL_GUARDED_BY(mu_);
  std::vector<Held> waiting_ ABSL_GUARDED_BY(mu_);  // id = ticket, in arrival order
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace blockrepl
