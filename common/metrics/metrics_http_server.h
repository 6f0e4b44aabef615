// MetricsHttpServer: the read-only HTTP endpoint of an agent,
// `--metrics-listen=HOST:PORT`: GET /metrics (Prometheus text format, built
// fresh from the agent's probes at each scrape) and GET /healthz (200 "ok",
// or 503 with the reason). Every other method is refused with 405: nothing
// can be changed through this port. Serves on civetweb's own threads (two),
// which call `collect` and `health` concurrently with the agent: both must be
// thread-safe. Stopping (destruction) waits for scrapes in progress.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/metrics/metric_set.h"

namespace blockrepl {

class MetricsHttpServer {
 public:
  using CollectFn = std::function<void(MetricSet*)>;
  using HealthFn = std::function<absl::Status()>;

  // `listen` is "HOST:PORT" with an IPv4 address, "[IPv6]" or "localhost";
  // port 0 picks a free port (see port()).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& listen,
                                                                  CollectFn collect,
                                                                  HealthFn health);
  virtual ~MetricsHttpServer() = default;
  virtual int port() const = 0;
};

}  // namespace blockrepl
