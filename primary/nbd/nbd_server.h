// NbdServer: listens on one TCP or unix socket and serves the given exports
// over NBD (fixed newstyle, simple replies). Each connection gets a reader
// thread running a Session; device calls run on a shared WorkerPool.
// Thread-safe. Stop() (also run by the destructor) closes the listener,
// shuts every connection down, waits for device calls already started to
// return, and joins all threads. The BlockDevices must outlive the server.
#pragma once

#include <list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "primary/nbd/nbd_options.h"
#include "primary/nbd/session.h"
#include "primary/nbd/worker_pool.h"

namespace blockrepl::nbd {

class NbdServer {
 public:
  // Validates the options, binds and starts accepting. `exports` must be
  // non-empty with distinct names and non-null devices.
  static absl::StatusOr<std::unique_ptr<NbdServer>> Start(const ServerOptions& options,
                                                          std::vector<Export> exports);
  ~NbdServer();
  NbdServer(const NbdServer&) = delete;
  NbdServer& operator=(const NbdServer&) = delete;

  // Idempotent; returns when every connection is closed and every thread joined.
  void Stop();

  // "127.0.0.1:PORT" / "[::1]:PORT" as actually bound, or the unix socket path.
  std::string address() const { return address_; }

  const Stats& stats() const { return stats_; }

 private:
  struct Connection {
    std::unique_ptr<Session> session;
    std::thread thread;
  };

  NbdServer(const ServerOptions& options, std::vector<Export> exports);
  absl::Status Listen();
  void AcceptLoop();
  // Moves connections whose session has returned to `finished`; the caller
  // joins their threads after releasing mu_ (each thread takes mu_ as its
  // last step, so joining under mu_ would deadlock).
  void TakeFinished(std::list<Connection>* finished) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after Start().
  const ServerOptions options_;
  const std::vector<Export> exports_;
  std::string address_;
  int listen_fd_ = -1;
  bool unix_bound_ = false;  // we created the socket file, so Stop() removes it
  int wake_fd_ = -1;         // eventfd: makes the accept loop's poll return on Stop()

  Stats stats_;
  WorkerPool pool_;
  std::thread accept_thread_;

  absl::Mutex stop_mu_;  // serialises Stop() callers; taken before mu_
  bool stopped_ ABSL_GUARDED_BY(stop_mu_) = false;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::list<Connection> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blockrepl::nbd
