// The primary's /metrics probe: the volume status table (status_metrics.h),
// the replication ack latency, and the NBD frontend's requests and errors by
// command, connections, bytes and client latency histograms. Reads only
// relaxed atomics and snapshots: a scrape never blocks a request.
#pragma once

#include "admin.pb.h"
#include "common/metrics/latency_histogram.h"
#include "common/metrics/metric_set.h"
#include "primary/nbd/nbd_options.h"

namespace blockrepl {

// `volume_nbd` holds the volume's request counters; `server_nbd` the NBD
// server's connection counters (shared by the agent's volumes).
void AppendPrimaryMetrics(const admin::VolumeStatus& status, const LatencyHistogram& ack_latency,
                          const nbd::Stats& volume_nbd, const nbd::Stats& server_nbd,
                          MetricSet* out);

}  // namespace blockrepl
