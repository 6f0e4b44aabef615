// The metrics both agents derive from their admin VolumeStatus: one table,
// so `replctl status --json` and /metrics can never disagree. Each sample
// carries a `volume` label; states are exposed as Prometheus state sets
// (one series per possible state, 1 for the current one) plus 0/1 gauges
// for the alert rules that want a single series.
#pragma once

#include "admin.pb.h"
#include "common/metrics/metric_set.h"

namespace blockrepl {

void AppendVolumeStatusMetrics(const admin::VolumeStatus& status, MetricSet* out);

}  // namespace blockrepl
