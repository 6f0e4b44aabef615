// Process-level helpers shared by the agents' main() functions: signal
// handling (block termination signals in every thread, wait for them in
// main) and allocator tuning. Call BlockTerminationSignals() before starting
// any thread so no other thread receives them.
#pragma once

#include <functional>

namespace blockrepl {

void BlockTerminationSignals();
// Returns the signal number (SIGTERM, SIGINT) that asked us to stop. Each
// SIGHUP meanwhile runs `on_hangup` (e.g. re-check certificates) and waits on.
int WaitForTerminationSignal(const std::function<void()>& on_hangup = {});
// glibc returns gRPC's freed receive buffers to the kernel, so each new one
// page-faults; keeping them cached doubles large-message throughput
// (measured, see TOOLING.md). Also caps malloc arenas at two, so memory
// freed on another thread than it was allocated does not pile up per arena.
// What is kept through a burst goes back once the process is idle
// (IdleMemoryTrimmer, idle_memory_trimmer.h).
void TuneAllocator();

}  // namespace blockrepl
