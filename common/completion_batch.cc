#include "common/completion_batch.h"

#include <cassert>
#include <utility>

namespace blockrepl {
namespace {

thread_local CompletionBatch* current_batch = nullptr;

}  // namespace

CompletionBatch::CompletionBatch() : outer_(current_batch) {
  if (outer_ == nullptr) current_batch = this;
}

CompletionBatch::~CompletionBatch() {
  if (outer_ != nullptr) return;
  RunDeferred();
  current_batch = nullptr;
}

void CompletionBatch::RunDeferred() {
  if (running_deferred_) return;  // deferred work about to block: the pass in progress goes on
  running_deferred_ = true;
  // By index: deferred work may defer more (the vector may grow under us).
  for (size_t i = 0; i < deferred_.size(); ++i) {
    absl::AnyInvocable<void() &&> work = std::move(deferred_[i]);
    std::move(work)();
  }
  deferred_.clear();
  running_deferred_ = false;
}

bool CompletionBatch::HasDeferred() {
  return current_batch != nullptr && !current_batch->running_deferred_ &&
         !current_batch->deferred_.empty();
}

bool CompletionBatch::RunDeferredOutside(absl::Mutex* mu) {
  if (!HasDeferred()) return false;
  mu->Unlock();  // deferred work takes other locks (an NBD session's)
  current_batch->RunDeferred();
  mu->Lock();
  return true;
}

bool CompletionBatch::Active() { return current_batch != nullptr; }

void CompletionBatch::Defer(absl::AnyInvocable<void() &&> work) {
  assert(current_batch != nullptr);
  current_batch->deferred_.push_back(std::move(work));
}

}  // namespace blockrepl
