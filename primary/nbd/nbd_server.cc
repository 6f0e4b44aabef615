#include "primary/nbd/nbd_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "common/thread_name.h"
#include "primary/nbd/socket_io.h"

namespace blockrepl::nbd {
namespace {

constexpr uint32_t kMinPayload = 512;
constexpr uint32_t kMaxPayloadLimit = 1u << 30;
constexpr size_t kMaxExportName = 4096;  // the spec's string limit
// How long Stop() lets sessions deliver the replies of finished requests.
constexpr absl::Duration kStopGrace = absl::Seconds(2);

uint32_t FloorPow2(uint32_t v) {
  uint32_t p = 1;
  while (p <= v / 2) p *= 2;
  return p;
}

absl::Status ValidateOptions(const ServerOptions& o, std::vector<Export>& exports) {
  if (o.tcp_listen.empty() == o.unix_socket.empty()) {
    return absl::InvalidArgumentError("nbd: exactly one of tcp_listen and unix_socket must be set");
  }
  if (o.max_payload < kMinPayload || o.max_payload > kMaxPayloadLimit) {
    return absl::InvalidArgumentError(absl::StrCat("nbd: max_payload ", o.max_payload, " outside [",
                                                   kMinPayload, ", ", kMaxPayloadLimit, "]"));
  }
  if (o.worker_threads < 1 || o.max_requests_per_connection < 1 ||
      o.max_buffered_bytes_per_connection < 1) {
    return absl::InvalidArgumentError(
        "nbd: worker_threads, max_requests_per_connection and "
        "max_buffered_bytes_per_connection must be positive");
  }
  if (exports.empty()) return absl::InvalidArgumentError("nbd: no exports");
  std::set<std::string> names;
  for (Export& e : exports) {
    if (e.device == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("nbd: export '", e.name, "' has no device"));
    }
    if (e.name.size() > kMaxExportName || e.description.size() > kMaxExportName) {
      return absl::InvalidArgumentError(
          absl::StrCat("nbd: export '", e.name.substr(0, 64), "...' name or description too long"));
    }
    if (!names.insert(e.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("nbd: duplicate export '", e.name, "'"));
    }
    // The spec wants a power of two in [max(min, 512), max payload].
    uint32_t preferred = FloorPow2(std::max<uint32_t>(e.preferred_block_size, kMinPayload));
    e.preferred_block_size = std::min(preferred, FloorPow2(o.max_payload));
  }
  return absl::OkStatus();
}

std::string SockaddrString(const struct sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET6) {
    auto* sin6 = reinterpret_cast<const struct sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
    return absl::StrCat("[", host, "]:", ntohs(sin6->sin6_port));
  }
  auto* sin = reinterpret_cast<const struct sockaddr_in*>(&ss);
  inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
  return absl::StrCat(host, ":", ntohs(sin->sin_port));
}

}  // namespace

absl::StatusOr<std::unique_ptr<NbdServer>> NbdServer::Start(const ServerOptions& options,
                                                            std::vector<Export> exports) {
  RETURN_IF_ERROR(ValidateOptions(options, exports));
  std::unique_ptr<NbdServer> server(new NbdServer(options, std::move(exports)));
  RETURN_IF_ERROR(server->Listen());
  server->accept_thread_ = std::thread([s = server.get()] {
    NameThisThread("nbd-accept");
    s->AcceptLoop();
  });
  return server;
}

NbdServer::NbdServer(const ServerOptions& options, std::vector<Export> exports)
    : options_(options), exports_(std::move(exports)), pool_(options.worker_threads) {}

NbdServer::~NbdServer() { Stop(); }

absl::Status NbdServer::Listen() {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return PosixError("nbd: eventfd");

  if (!options_.unix_socket.empty()) {
    const std::string& path = options_.unix_socket;
    struct sockaddr_un sun = {};
    sun.sun_family = AF_UNIX;
    if (path.size() >= sizeof(sun.sun_path)) {
      return absl::InvalidArgumentError(absl::StrCat("nbd: unix socket path too long: ", path));
    }
    memcpy(sun.sun_path, path.data(), path.size());
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (listen_fd_ < 0) return PosixError("nbd: socket");
    // A socket file left by a dead server is replaced; a live one is not stolen.
    struct stat st;
    if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      bool live =
          probe >= 0 && connect(probe, reinterpret_cast<struct sockaddr*>(&sun), sizeof(sun)) == 0;
      if (probe >= 0) close(probe);
      if (live) return absl::AlreadyExistsError(absl::StrCat("nbd: ", path, " is in use"));
      unlink(path.c_str());
    }
    if (bind(listen_fd_, reinterpret_cast<struct sockaddr*>(&sun), sizeof(sun)) != 0) {
      return PosixError(absl::StrCat("nbd: bind ", path));
    }
    unix_bound_ = true;
    if (listen(listen_fd_, SOMAXCONN) != 0) return PosixError(absl::StrCat("nbd: listen ", path));
    address_ = path;
    return absl::OkStatus();
  }

  // "HOST:PORT", "[V6]:PORT", ":PORT" (any address).
  const std::string& spec = options_.tcp_listen;
  std::string host, port;
  if (!spec.empty() && spec[0] == '[') {
    size_t close_bracket = spec.find("]:");
    if (close_bracket == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("nbd: bad listen address ", spec));
    }
    host = spec.substr(1, close_bracket - 1);
    port = spec.substr(close_bracket + 2);
  } else {
    size_t colon = spec.rfind(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("nbd: listen address needs :PORT: ", spec));
    }
    host = spec.substr(0, colon);
    port = spec.substr(colon + 1);
  }
  struct addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  struct addrinfo* res = nullptr;
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat("nbd: resolve ", spec, ": ", gai_strerror(rc)));
  }
  absl::Status last = absl::UnavailableError(absl::StrCat("nbd: no address for ", spec));
  for (struct addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      last = PosixError("nbd: socket");
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
      last = PosixError(absl::StrCat("nbd: bind/listen ", spec));
      close(fd);
      continue;
    }
    listen_fd_ = fd;
    break;
  }
  freeaddrinfo(res);
  if (listen_fd_ < 0) return last;
  struct sockaddr_storage ss = {};
  socklen_t len = sizeof(ss);
  if (getsockname(listen_fd_, reinterpret_cast<struct sockaddr*>(&ss), &len) != 0) {
    return PosixError("nbd: getsockname");
  }
  address_ = SockaddrString(ss);
  return absl::OkStatus();
}

void NbdServer::AcceptLoop() {
  bool tcp = options_.unix_socket.empty();
  uint64_t unix_serial = 0;
  int backoff_ms = -1;  // poll forever unless accept is starved of resources
  while (true) {
    struct pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    // While backing off, wait on the wake fd only.
    int n = poll(fds, backoff_ms < 0 ? 2 : 1, backoff_ms);
    if (n < 0 && errno != EINTR) {
      LogConnection(address_, absl::StrCat("poll: ", strerror(errno), ", not accepting any more"));
      return;
    }
    if (fds[0].revents != 0) return;  // Stop()
    backoff_ms = -1;
    if (n <= 0 || fds[1].revents == 0) continue;

    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        LogConnection(address_, absl::StrCat("accept: ", strerror(err), ", retrying in 100ms"));
        backoff_ms = 100;
      }
      continue;  // EAGAIN, ECONNABORTED, EINTR: the next poll sorts it out
    }
    std::string peer;
    if (tcp) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
      peer = PeerName(fd);
    } else {
      peer = absl::StrCat(address_, "#", ++unix_serial);
    }

    std::list<Connection> finished;
    absl::ReleasableMutexLock lock(&mu_);
    TakeFinished(&finished);
    if (stopping_) {
      lock.Release();
      close(fd);
      for (Connection& c : finished) c.thread.join();
      return;
    }
    stats_.connections_total.fetch_add(1, std::memory_order_relaxed);
    stats_.connections_active.fetch_add(1, std::memory_order_relaxed);
    Connection& c = connections_.emplace_back();
    c.session = std::make_unique<Session>(fd, std::move(peer), exports_, options_, &pool_, &stats_);
    c.thread = std::thread([this, s = c.session.get()] {
      NameThisThread("nbd-session");
      s->Run();
      stats_.connections_active.fetch_sub(1, std::memory_order_relaxed);
      absl::MutexLock lock(&mu_);  // lets Stop() re-check its wait condition
    });
    lock.Release();
    for (Connection& c : finished) c.thread.join();
  }
}

void NbdServer::TakeFinished(std::list<Connection>* finished) {
  for (auto it = connections_.begin(); it != connections_.end();) {
    auto next = std::next(it);
    // Run() has returned; the thread is about to exit.
    if (it->session->done()) finished->splice(finished->end(), connections_, it);
    it = next;
  }
}

void NbdServer::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (wake_fd_ >= 0) {
    uint64_t one = 1;
    ssize_t ignored = write(wake_fd_, &one, sizeof(one));
    (void)ignored;
  }
  if (accept_thread_.joinable()) accept_thread_.join();
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    if (unix_bound_) unlink(options_.unix_socket.c_str());
  }

  // No new connections can appear now. Sessions stop reading, finish the
  // requests in flight (the pool still runs), send their replies and close;
  // a peer that does not read its replies gets kStopGrace, then a hard close.
  // Device calls cannot be interrupted: Stop() waits for them regardless.
  std::list<Connection> connections;
  {
    absl::MutexLock lock(&mu_);
    for (Connection& c : connections_) c.session->Shutdown();
    connections.swap(connections_);
    auto all_done = [&connections] {
      for (const Connection& c : connections) {
        if (!c.session->done()) return false;
      }
      return true;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&all_done), kStopGrace)) {
      for (Connection& c : connections) c.session->ForceShutdown();
    }
  }
  for (Connection& c : connections) c.thread.join();
  connections.clear();
  pool_.Stop();
  if (wake_fd_ >= 0) close(wake_fd_);
}

}  // namespace blockrepl::nbd
