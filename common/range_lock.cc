#include "common/range_lock.h"

#include <algorithm>

namespace blockrepl {

bool RangeLock::OverlapsHeld(uint64_t first, uint64_t end) const {
  for (const Held& h : held_) {
    if (first < h.end && h.first < end) return true;
  }
  return false;
}

RangeLock::Holder RangeLock::Lock(uint64_t first, uint64_t end) {
  if (end <= first) end = first + 1;  // an empty range still orders against its chunk
  struct Args {
    RangeLock* self;
    uint64_t first, end;
  } args{this, first, end};
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](Args* a) ABSL_NO_THREAD_SAFETY_ANALYSIS { return !a->self->OverlapsHeld(a->first, a->end); },
      &args));
  const uint64_t id = next_id_++;
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
