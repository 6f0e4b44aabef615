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

void AppendPrimaryMetrics(const admin::VolumeStatus& status, const LatencyHistogram& ack_latency,
                          const nbd::Stats& nbd_stats, MetricSet* out);

}  // namespace blockrepl
