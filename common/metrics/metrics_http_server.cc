#include "common/metrics/metrics_http_server.h"

#include <CivetServer.h>

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/cli_flags.h"
#include "common/log.h"

namespace blockrepl {

namespace {

// civetweb's log callback has no user pointer: the first message of a start
// goes here (one start at a time), later ones (client errors) are dropped.
absl::Mutex civet_start_mu;
absl::Mutex civet_log_mu;
std::string* civet_first_error ABSL_GUARDED_BY(civet_log_mu) = nullptr;

void ClearCivetError() {
  absl::MutexLock lock(&civet_log_mu);
  delete civet_first_error;
  civet_first_error = nullptr;
}

std::string TakeCivetError() {
  absl::MutexLock lock(&civet_log_mu);
  return civet_first_error == nullptr ? "" : *civet_first_error;
}

void SendText(mg_connection* conn, int code, const char* reason, const std::string& content_type,
              const std::string& body, bool head_only) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            code, reason, content_type.c_str(), body.size());
  if (!head_only) mg_write(conn, body.data(), body.size());
}

// Refuses every method that could change something: the endpoint is read-only.
class ReadOnlyHandler : public CivetHandler {
 public:
  bool handlePost(CivetServer*, mg_connection* conn) override { return Refuse(conn); }
  bool handlePut(CivetServer*, mg_connection* conn) override { return Refuse(conn); }
  bool handleDelete(CivetServer*, mg_connection* conn) override { return Refuse(conn); }
  bool handlePatch(CivetServer*, mg_connection* conn) override { return Refuse(conn); }
  bool handleOptions(CivetServer*, mg_connection* conn) override { return Refuse(conn); }

 private:
  static bool Refuse(mg_connection* conn) {
    SendText(conn, 405, "Method Not Allowed", "text/plain; charset=utf-8",
             "read-only endpoint: only GET and HEAD\n", false);
    return true;
  }
};

class MetricsHandler : public ReadOnlyHandler {
 public:
  explicit MetricsHandler(MetricsHttpServer::CollectFn collect) : collect_(std::move(collect)) {}
  bool handleGet(CivetServer*, mg_connection* conn) override { return Serve(conn, false); }
  bool handleHead(CivetServer*, mg_connection* conn) override { return Serve(conn, true); }

 private:
  bool Serve(mg_connection* conn, bool head_only) {
    MetricSet set;
    collect_(&set);
    SendText(conn, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", set.Serialize(),
             head_only);
    return true;
  }
  const MetricsHttpServer::CollectFn collect_;
};

class HealthHandler : public ReadOnlyHandler {
 public:
  explicit HealthHandler(MetricsHttpServer::HealthFn health) : health_(std::move(health)) {}
  bool handleGet(CivetServer*, mg_connection* conn) override { return Serve(conn, false); }
  bool handleHead(CivetServer*, mg_connection* conn) override { return Serve(conn, true); }

 private:
  bool Serve(mg_connection* conn, bool head_only) {
    absl::Status status = health_();
    if (status.ok()) {
      SendText(conn, 200, "OK", "text/plain; charset=utf-8", "ok\n", head_only);
    } else {
      SendText(conn, 503, "Service Unavailable", "text/plain; charset=utf-8",
               absl::StrCat(status.message(), "\n"), head_only);
    }
    return true;
  }
  const MetricsHttpServer::HealthFn health_;
};

// Any other path: 404 with a hint (GET) or 405 (anything else).
class NotFoundHandler : public ReadOnlyHandler {
 public:
  bool handleGet(CivetServer*, mg_connection* conn) override {
    SendText(conn, 404, "Not Found", "text/plain; charset=utf-8",
             "blockrepl agent: see /metrics and /healthz\n", false);
    return true;
  }
};

class CivetMetricsServer : public MetricsHttpServer {
 public:
  CivetMetricsServer(CollectFn collect, HealthFn health)
      : metrics_(std::move(collect)), health_(std::move(health)) {}
  ~CivetMetricsServer() override {
    if (server_ != nullptr) server_->close();  // joins civetweb's threads
  }

  absl::Status Listen(const std::string& listen_port) {
    // civetweb reports through this callback. Its first message while
    // starting says what failed (e.g. "cannot bind to ...: Address already in
    // use"): keep it for our one-line error instead of printing it.
    static const CivetCallbacks callbacks = [] {
      CivetCallbacks c;
      c.log_message = [](const mg_connection*, const char* message) {
        absl::MutexLock lock(&civet_log_mu);
        if (civet_first_error == nullptr) civet_first_error = new std::string(message);
        return 1;
      };
      return c;
    }();
    std::vector<std::string> options = {
        "listening_ports", listen_port, "num_threads", "2", "request_timeout_ms", "10000",
        "enable_keep_alive", "no"};
    absl::MutexLock one_start_at_a_time(&civet_start_mu);
    ClearCivetError();
    try {
      server_ = std::make_unique<CivetServer>(options, &callbacks);
    } catch (const CivetException& e) {
      std::string reason = TakeCivetError();
      return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen_port, ": ",
                                                 reason.empty() ? e.what() : reason));
    }
    ClearCivetError();
    server_->addHandler("/metrics", &metrics_);
    server_->addHandler("/healthz", &health_);
    server_->addHandler("/", &not_found_);
    const std::vector<int> ports = server_->getListeningPorts();
    port_ = ports.empty() ? 0 : ports.front();
    return absl::OkStatus();
  }

  int port() const override { return port_; }

 private:
  MetricsHandler metrics_;
  HealthHandler health_;
  NotFoundHandler not_found_;
  std::unique_ptr<CivetServer> server_;
  int port_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& listen, CollectFn collect, HealthFn health) {
  if (std::string problem = ValidateListenAddress(listen); !problem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--metrics-listen=", listen, ": ", problem));
  }
  std::string civet_port = listen;
  if (absl::StartsWith(listen, "localhost:")) {
    civet_port = absl::StrCat("127.0.0.1", listen.substr(listen.rfind(':')));
  }
  auto server = std::make_unique<CivetMetricsServer>(std::move(collect), std::move(health));
  if (absl::Status s = server->Listen(civet_port); !s.ok()) return s;
  return std::unique_ptr<MetricsHttpServer>(std::move(server));
}

}  // namespace blockrepl
