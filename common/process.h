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
// Makes gRPC poll each completion queue's own descriptors ("poll") instead of
// one process-wide epoll set ("epoll1", its default on Linux), unless the
// operator set GRPC_POLL_STRATEGY. With one shared set, whichever gRPC thread
// happens to be polling (often one of the admin server's idle threads) reads
// the replication stream's socket and must then wake the thread waiting for
// that message: an extra wake-up per ack, the dearest step of a small write on
// these machines. Measured: 4 KiB QD 32 async +11%, CPU per GiB -12%
// (docs/PERFORMANCE.md, round 6). Call before the first gRPC object is made.
void ChooseGrpcPoller();
// Turns off gRPC 1.51's "tcp_read_chunks" experiment (on by default there)
// through GRPC_EXPERIMENTS, unless the operator's GRPC_EXPERIMENTS names it.
// With it, each socket read lands in a list of 64 KiB buffers sized to gRPC's
// guess of the next read, and a message keeps every buffer it touches; the
// secondary then held about twice the replication window at 1 MiB writes
// (peak RSS 112-136 MiB with a 64 MiB window). Without it, one buffer per read:
// 56-60 MiB, same throughput (docs/PERFORMANCE.md, round 8). Call before the
// first gRPC object is made.
void ChooseGrpcReadBuffers();

}  // namespace blockrepl
