#include "primary/primary_metrics.h"

#include <atomic>

#include "common/metrics/status_metrics.h"

namespace blockrepl {

namespace {

// Indexed like nbd::Stats::requests; the label values of `command`.
constexpr const char* kCommandNames[nbd::kNumStatsCommands] = {
    "read", "write", "disc", "flush", "trim", "cache", "write_zeroes", "block_status"};

double Load(const std::atomic<uint64_t>& counter) {
  return static_cast<double>(counter.load(std::memory_order_relaxed));
}

}  // namespace

void AppendPrimaryMetrics(const admin::VolumeStatus& status, const LatencyHistogram& ack_latency,
                          const nbd::Stats& stats, const nbd::Stats& server, MetricSet* out) {
  AppendVolumeStatusMetrics(status, out);
  const std::string& volume = status.name();
  const MetricLabels vol = {{"volume", volume}};
  out->Histogram("replication_ack_latency_seconds",
                 "Write handed to the stream until the secondary acks it applied.", vol,
                 ack_latency.Take());
  for (int cmd = 0; cmd < nbd::kNumStatsCommands; ++cmd) {
    const MetricLabels labels = {{"volume", volume}, {"command", kCommandNames[cmd]}};
    out->Counter("nbd_requests_total", "NBD requests received, by command.", labels,
                 Load(stats.requests[cmd]));
  }
  for (int cmd = 0; cmd < nbd::kNumStatsCommands; ++cmd) {
    const MetricLabels labels = {{"volume", volume}, {"command", kCommandNames[cmd]}};
    out->Counter("nbd_errors_total", "NBD requests answered with an error, by command.", labels,
                 Load(stats.errors[cmd]));
  }
  out->Gauge("nbd_connections", "NBD client connections open now (the agent's NBD server).", vol,
             Load(server.connections_active));
  out->Counter("nbd_connections_total", "NBD client connections accepted (the agent's server).",
               vol, Load(server.connections_total));
  out->Counter("nbd_handshake_failures_total",
               "NBD connections dropped during the handshake (the agent's server).", vol,
               Load(server.handshake_failures));
  out->Counter("nbd_read_bytes_total", "Bytes returned by successful NBD reads.", vol,
               Load(stats.bytes_read));
  out->Counter("nbd_written_bytes_total", "Payload bytes of successful NBD writes.", vol,
               Load(stats.bytes_written));
  out->Histogram("client_write_latency_seconds",
                 "NBD write, write-zeroes and trim latency, request received to reply sent.", vol,
                 stats.write_latency.Take());
  out->Histogram("client_flush_latency_seconds",
                 "NBD flush latency, request received to reply sent.", vol,
                 stats.flush_latency.Take());
}

}  // namespace blockrepl
