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
  // By index: deferred work may defer more (the vector may grow under us).
  for (size_t i = 0; i < deferred_.size(); ++i) {
    absl::AnyInvocable<void() &&> work = std::move(deferred_[i]);
    std::move(work)();
  }
  current_batch = nullptr;
}

bool CompletionBatch::Active() { return current_batch != nullptr; }

void CompletionBatch::Defer(absl::AnyInvocable<void() &&> work) {
  assert(current_batch != nullptr);
  current_batch->deferred_.push_back(std::move(work));
}

}  // namespace blockrepl
