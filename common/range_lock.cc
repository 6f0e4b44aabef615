#include "common/range_lock.h"

#include <algorithm>

#include "common/completion_batch.h"

namespace blockrepl {

bool RangeLock::MustWait(uint64_t ticket, uint64_t first, uint64_t end) const {
  for (const Held& h : held_) {
    if (first < h.end && h.first < end) return true;
  }
  for (const Held& w : waiting_) {
    if (w.id >= ticket) break;
    if (first < w.end && w.first < end) return true;
  }
  return false;
}

RangeLock::Holder RangeLock::Lock(uint64_t first, uint64_t end) {
  if (end <= first) end = first + 1;  // an empty range still orders against its chunk
  absl::MutexLock lock(&mu_);
  const uint64_t id = next_id_++;
  struct Args {
    RangeLock* self;
    uint64_t id, first, end;
  } args{this, id, first, end};
  if (MustWait(id, first, end)) {
    waiting_.push_back(Held{id, first, end});
    // About to wait for another write: replies this thread holds back go
    // first. Queued in waiting_, the place is kept meanwhile.
    CompletionBatch::RunDeferredOutside(&mu_);
    mu_.Await(absl::Condition(
        +[](Args* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return !a->self->MustWait(a->id, a->first, a->end);
        },
        &args));
    waiting_.erase(std::find_if(waiting_.begin(), waiting_.end(),
                                [id](const Held& w) { return w.id == id; }));
  }
  held_.push_back(Held{id, first, end});
  return Holder(this, id);
}

void RangeLock::Unlock(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = std::find_if(held_.begin(), held_.end(), [id](const Held& h) { return h.id == id; });
  if (it != held_.end()) {
    *it = held_.back();
    held_.pop_back();
  }
}

void RangeLock::Holder::Release() {
  if (lock_ != nullptr) {
    lock_->Unlock(id_);
    lock_ = nullptr;
  }
}

}  // namespace blockrepl
