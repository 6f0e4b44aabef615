// Canary for the TSan build: proves the Abseil shim (common/sanitizers/tsan_abseil_sync.cc) lets
// TSan see real races and does not hide them. Deterministic, whatever the scheduling:
//   1. main sets the counter under the mutex, then Notify()s the other thread;
//   2. the other thread bumps the counter under the mutex, then raises a *relaxed* atomic flag,
//      which orders nothing for TSan;
//   3. main spins on that flag and bumps the counter again:
//        tsan_canary guarded   under the mutex: ordered through it, must run clean;
//        tsan_canary racy      without it: nothing orders it after step 2, TSan must report it.
// Then both wait on each other through a CondVar and Await, which must not report anything.
// Without the shim `guarded` reports races; with an over-eager shim `racy` would not.
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace {

struct Shared {
  absl::Mutex mu;
  absl::CondVar turn_changed;
  long counter = 0;  // guarded by mu, except where `racy` breaks the rule on purpose
  int turns = 0;     // guarded by mu
};

// Static storage on purpose: TSan (LLVM 14) does not report this pattern on main's stack.
Shared s;

}  // namespace

int main(int argc, char** argv) {
  const bool racy = argc > 1 && std::strcmp(argv[1], "racy") == 0;
  absl::Notification go;
  std::atomic<bool> bumped{false};
  std::thread other([&] {
    go.WaitForNotification();
    {
      absl::MutexLock lock(&s.mu);
      ++s.counter;
      ++s.turns;
      s.turn_changed.SignalAll();
    }
    bumped.store(true, std::memory_order_relaxed);  // no happens-before for TSan
  });
  {
    absl::MutexLock lock(&s.mu);
    s.counter = 100;
  }
  go.Notify();
  while (!bumped.load(std::memory_order_relaxed)) std::this_thread::yield();
  if (racy) {
    ++s.counter;  // the race TSan must report
  } else {
    absl::MutexLock lock(&s.mu);
    ++s.counter;
  }
  {
    absl::MutexLock lock(&s.mu);
    while (s.turns == 0) s.turn_changed.Wait(&s.mu);
    s.mu.Await(absl::Condition(+[](int* turns) { return *turns == 1; }, &s.turns));
  }
  other.join();
  absl::MutexLock lock(&s.mu);
  std::printf("counter=%ld\n", s.counter);
  return 0;
}
