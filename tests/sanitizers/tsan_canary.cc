// Canary for the TSan build: proves the Abseil shim (common/sanitizers/tsan_abseil_sync.cc) lets
// TSan see real races and does not hide them. Two threads bump a counter 10000 times each:
//   tsan_canary guarded   both under one absl::Mutex (and a Notification, a CondVar, an Await):
//                         must run clean;
//   tsan_canary racy      one of them skips the lock: TSan must report a data race.
// Without the shim `guarded` reports races; with an over-eager shim `racy` would not.
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

void Bump(Shared& s, bool take_lock) {
  for (int i = 0; i < 10000; ++i) {
    if (take_lock) {
      absl::MutexLock lock(&s.mu);
      ++s.counter;
    } else {
      ++s.counter;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool racy = argc > 1 && std::strcmp(argv[1], "racy") == 0;
  Shared s;
  absl::Notification started;
  std::thread other([&] {
    started.WaitForNotification();
    Bump(s, /*take_lock=*/true);
    absl::MutexLock lock(&s.mu);
    ++s.turns;
    s.turn_changed.SignalAll();
  });
  started.Notify();
  Bump(s, /*take_lock=*/!racy);
  {
    absl::MutexLock lock(&s.mu);
    while (s.turns == 0) s.turn_changed.Wait(&s.mu);
    s.mu.Await(absl::Condition(+[](int* turns) { return *turns == 1; }, &s.turns));
  }
  other.join();
  std::printf("counter=%ld\n", s.counter);
  return 0;
}
