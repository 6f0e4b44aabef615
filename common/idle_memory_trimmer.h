// Gives the memory an agent kept through a burst back to the kernel once the
// agent has gone quiet.
//
// TuneAllocator (process.h) tells glibc never to trim, because under load
// every buffer returned to the kernel page-faults back in on reuse. The price
// shows after the load changes shape: memory freed by one workload stays
// resident, cut into pieces the next one cannot reuse. A secondary that had
// served 4 KiB and 64 KiB writes peaked at 173 MiB under 1 MiB writes, against
// 53 MiB for a fresh one (docs/PERFORMANCE.md, round 3). After each busy spell,
// once the process has used almost no CPU for a whole period, this calls
// malloc_trim(0), which releases every free page of every arena, and unmaps
// the payload buffers cached for reuse (payload_buffers.h); under load it does
// nothing at all.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace blockrepl {

class IdleMemoryTrimmer {
 public:
  // Every `period`, the process counts as quiet if it used less than
  // `quiet_fraction` of one core's time in it; the first quiet period after a
  // busy one trims (once: an idle process is not trimmed again and again).
  explicit IdleMemoryTrimmer(absl::Duration period = absl::Seconds(1),
                             double quiet_fraction = 0.02);
  ~IdleMemoryTrimmer();  // stops and joins the thread
  IdleMemoryTrimmer(const IdleMemoryTrimmer&) = delete;
  IdleMemoryTrimmer& operator=(const IdleMemoryTrimmer&) = delete;

  uint64_t trims() const { return trims_.load(std::memory_order_relaxed); }

 private:
  void Loop();

  const absl::Duration period_;
  const double quiet_fraction_;
  std::atomic<uint64_t> trims_{0};
  absl::Notification stop_;
  std::thread thread_;  // last: started once the fields above exist
};

}  // namespace blockrepl
