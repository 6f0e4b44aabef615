#include "common/idle_memory_trimmer.h"

#include <malloc.h>
#include <sys/resource.h>

#include "common/payload_buffers.h"
#include "common/thread_name.h"

namespace blockrepl {
namespace {

// User + system CPU time of the whole process.
absl::Duration ProcessCpuTime() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return absl::DurationFromTimeval(usage.ru_utime) + absl::DurationFromTimeval(usage.ru_stime);
}

}  // namespace

IdleMemoryTrimmer::IdleMemoryTrimmer(absl::Duration period, double quiet_fraction)
    : period_(period), quiet_fraction_(quiet_fraction), thread_([this] { Loop(); }) {}

IdleMemoryTrimmer::~IdleMemoryTrimmer() {
  stop_.Notify();
  thread_.join();
}

void IdleMemoryTrimmer::Loop() {
  NameThisThread("memory-trim");
  absl::Duration before = ProcessCpuTime();
  bool trimmed_since_busy = true;  // a fresh process has nothing to give back
  while (!stop_.WaitForNotificationWithTimeout(period_)) {
    const absl::Duration now = ProcessCpuTime();
    const bool quiet = now - before < period_ * quiet_fraction_;
    before = now;
    if (!quiet) {
      trimmed_since_busy = false;
      continue;
    }
    if (trimmed_since_busy) continue;
    malloc_trim(0);
    payload_buffers::ReleaseCached();
    trims_.fetch_add(1, std::memory_order_relaxed);
    trimmed_since_busy = true;
    before = ProcessCpuTime();  // the trim's own CPU is not activity
  }
}

}  // namespace blockrepl
