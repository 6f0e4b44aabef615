// ThreadSanitizer builds only (-DBLOCKREPL_SANITIZE=thread): teaches TSan how absl::Mutex,
// absl::CondVar and absl::Notification synchronise.
//
// Why this file exists: we take Abseil from Debian's package, which is not built with
// -fsanitize=thread. Its Mutex is a futex plus atomics inside that uninstrumented library, so TSan
// never sees a lock hand data from one thread to the next and reports every ABSL_GUARDED_BY field
// as a race (hundreds of false reports per test). Abseil built with TSan annotates itself; here we
// do it from outside: this file defines the exported entry points again (the executable's
// definition wins over the shared library's), each calls the real one through dlsym(RTLD_NEXT)
// and adds the happens-before edge with __tsan_release / __tsan_acquire on the mutex's address:
// release before giving the lock up, acquire after getting it. That is all TSan needs to check
// our code; lock-order (deadlock) reports are not modelled.
#if !defined(__SANITIZE_THREAD__) && defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define __SANITIZE_THREAD__ 1
#endif
#endif
#ifndef __SANITIZE_THREAD__
#error "tsan_abseil_sync.cc belongs in -fsanitize=thread builds only"
#endif

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

#define BLOCKREPL_STR2(x) #x
#define BLOCKREPL_STR(x) BLOCKREPL_STR2(x)

// The real function behind an Itanium-mangled Abseil name given without its "_ZN4absl<ns>"
// prefix (Debian puts everything in an inline namespace, e.g. absl::debian3). `K` marks a const
// member function. Aborts when missing: silently not annotating would bring the false reports back.
void* RealSymbol(const char* rest, bool is_const = false) {
  const char* ns = BLOCKREPL_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  std::string name = is_const ? "_ZNK4absl" : "_ZN4absl";
  name += std::to_string(std::strlen(ns)) + ns + rest;
  void* fn = dlsym(RTLD_NEXT, name.c_str());
  if (fn == nullptr) {
    std::fprintf(stderr, "tsan_abseil_sync: %s not found in Abseil\n", name.c_str());
    std::abort();
  }
  return fn;
}

template <typename Fn>
Fn Real(const char* rest, bool is_const = false) {
  return reinterpret_cast<Fn>(RealSymbol(rest, is_const));
}

// A Condition is evaluated by whichever thread holds the mutex at the time: the waiter, or another
// thread inside its Unlock (uninstrumented, after that thread's release annotation). Wrapping it
// so each evaluation acquires before and releases after reading the guarded state keeps those
// reads ordered against the next lock holder's writes.
struct AnnotatedCondition {
  const absl::Condition* condition;
  absl::Mutex* mu;
};
bool EvalAnnotated(AnnotatedCondition* c) {
  __tsan_acquire(c->mu);
  const bool met = c->condition->Eval();
  __tsan_release(c->mu);
  return met;
}

}  // namespace

// Declares `wrapped`, the caller's `cond` with the evaluation annotated as above.
#define BLOCKREPL_ANNOTATED(cond)                      \
  AnnotatedCondition annotated_state{&(cond), this};  \
  const Condition wrapped(&EvalAnnotated, &annotated_state)

namespace absl {
ABSL_NAMESPACE_BEGIN

// ---- Mutex: acquire after every way of getting it, release before every way of giving it up.
void Mutex::Lock() {
  static const auto real = Real<void (*)(Mutex*)>("5Mutex4LockEv");
  real(this);
  __tsan_acquire(this);
}
void Mutex::ReaderLock() {
  static const auto real = Real<void (*)(Mutex*)>("5Mutex10ReaderLockEv");
  real(this);
  __tsan_acquire(this);
}
bool Mutex::TryLock() {
  static const auto real = Real<bool (*)(Mutex*)>("5Mutex7TryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}
bool Mutex::ReaderTryLock() {
  static const auto real = Real<bool (*)(Mutex*)>("5Mutex13ReaderTryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}
void Mutex::Unlock() {
  static const auto real = Real<void (*)(Mutex*)>("5Mutex6UnlockEv");
  __tsan_release(this);
  real(this);
}
void Mutex::ReaderUnlock() {
  static const auto real = Real<void (*)(Mutex*)>("5Mutex12ReaderUnlockEv");
  __tsan_release(this);
  real(this);
}

// LockWhen* wait for a condition that another thread's Unlock evaluates on our behalf, reading
// the Condition on our stack: release first so that read is ordered after we built it.
void Mutex::LockWhen(const Condition& cond) {
  static const auto real = Real<void (*)(Mutex*, const Condition&)>("5Mutex8LockWhenERKNS0_9ConditionE");
  BLOCKREPL_ANNOTATED(cond);
  __tsan_release(this);
  real(this, wrapped);
  __tsan_acquire(this);
}
void Mutex::ReaderLockWhen(const Condition& cond) {
  static const auto real =
      Real<void (*)(Mutex*, const Condition&)>("5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  BLOCKREPL_ANNOTATED(cond);
  __tsan_release(this);
  real(this, wrapped);
  __tsan_acquire(this);
}
bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Duration)>(
      "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  BLOCKREPL_ANNOTATED(cond);
  __tsan_release(this);
  const bool met = real(this, wrapped, timeout);
  __tsan_acquire(this);
  return met;
}
bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Time)>(
      "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  BLOCKREPL_ANNOTATED(cond);
  __tsan_release(this);
  const bool met = real(this, wrapped, deadline);
  __tsan_acquire(this);
  return met;
}
bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Duration)>(
      "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  BLOCKREPL_ANNOTATED(cond);
  __tsan_release(this);
  const bool met = real(this, wrapped, timeout);
  __tsan_acquire(this);
  return met;
}
bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Time)>(
      "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  BLOCKREPL_ANNOTATED(cond);
  __tsan_release(this);
  const bool met = real(this, wrapped, deadline);
  __tsan_acquire(this);
  return met;
}

// Await* give the lock up while waiting and take it back: release before, acquire after.
void Mutex::Await(const Condition& cond) {
  static const auto real = Real<void (*)(Mutex*, const Condition&)>("5Mutex5AwaitERKNS0_9ConditionE");
  BLOCKREPL_ANNOTATED(cond);
  __tsan_release(this);
  real(this, wrapped);
  __tsan_acquire(this);
}
bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Duration)>(
      "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  BLOCKREPL_ANNOTATED(cond);
  __tsan_release(this);
  const bool met = real(this, wrapped, timeout);
  __tsan_acquire(this);
  return met;
}
bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Time)>(
      "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  BLOCKREPL_ANNOTATED(cond);
  __tsan_release(this);
  const bool met = real(this, wrapped, deadline);
  __tsan_acquire(this);
  return met;
}

// ---- CondVar: Wait gives the mutex up and takes it back; Signal orders the signaller's writes.
void CondVar::Wait(Mutex* mu) {
  static const auto real = Real<void (*)(CondVar*, Mutex*)>("7CondVar4WaitEPNS0_5MutexE");
  __tsan_release(mu);
  real(this, mu);
  __tsan_acquire(mu);
}
bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  static const auto real = Real<bool (*)(CondVar*, Mutex*, Duration)>(
      "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  __tsan_release(mu);
  const bool timed_out = real(this, mu, timeout);
  __tsan_acquire(mu);
  return timed_out;
}
bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  static const auto real = Real<bool (*)(CondVar*, Mutex*, Time)>(
      "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  __tsan_release(mu);
  const bool timed_out = real(this, mu, deadline);
  __tsan_acquire(mu);
  return timed_out;
}

// ---- Notification: HasBeenNotified() is an inline (so instrumented) acquire load of
// notified_yet_; the store is in the library, so release on that address before Notify.
void Notification::Notify() {
  static const auto real = Real<void (*)(Notification*)>("12Notification6NotifyEv");
  __tsan_release(&notified_yet_);
  real(this);
}
void Notification::WaitForNotification() const {
  static const auto real =
      Real<void (*)(const Notification*)>("12Notification19WaitForNotificationEv", true);
  real(this);
  __tsan_acquire(const_cast<std::atomic<bool>*>(&notified_yet_));
}
bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  static const auto real = Real<bool (*)(const Notification*, Duration)>(
      "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE", true);
  const bool notified = real(this, timeout);
  if (notified) __tsan_acquire(const_cast<std::atomic<bool>*>(&notified_yet_));
  return notified;
}
bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  static const auto real = Real<bool (*)(const Notification*, Time)>(
      "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE", true);
  const bool notified = real(this, deadline);
  if (notified) __tsan_acquire(const_cast<std::atomic<bool>*>(&notified_yet_));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl

// TSan's defaults for every binary of a TSan build (TSAN_OPTIONS still overrides them).
// ignore_noninstrumented_modules: uninstrumented libraries (Abseil's own deadlock-detection graph,
// gRPC) call memmove and friends on memory TSan cannot follow; only our code's accesses count.
// report_thread_leaks=0: gRPC's internal threads (e.g. its resolver executor) may still be
// unjoined when a short-lived client such as replctl returns from main. Our own threads are all
// std::thread and never detached, so an unjoined one of ours ends in std::terminate anyway.
extern "C" const char* __tsan_default_options() {
  return "ignore_noninstrumented_modules=1:second_deadlock_stack=1:report_thread_leaks=0";
}
