// MetricSet: the metric families of one scrape, built fresh by each agent's
// probes (see status_metrics.h) and serialized in the Prometheus text format.
// Samples with the same name join one family, whose HELP and type come from
// the first sample; every name gets the "blockrepl_" prefix here, so probes
// name only what they measure. Thread-compatible: one scrape owns one set.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/metrics/latency_histogram.h"
#include "prometheus/metric_family.h"

namespace blockrepl {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class MetricSet {
 public:
  void Gauge(const std::string& name, const std::string& help, const MetricLabels& labels,
             double value);
  // `name` must end in "_total" (Prometheus convention for counters).
  void Counter(const std::string& name, const std::string& help, const MetricLabels& labels,
               double value);
  void Histogram(const std::string& name, const std::string& help, const MetricLabels& labels,
                 const LatencyHistogram::Snapshot& snapshot);

  const std::vector<prometheus::MetricFamily>& families() const { return families_; }
  // The Prometheus text exposition format (version 0.0.4).
  std::string Serialize() const;

 private:
  prometheus::ClientMetric& Add(const std::string& name, const std::string& help,
                                prometheus::MetricType type, const MetricLabels& labels);

  std::vector<prometheus::MetricFamily> families_;
  absl::flat_hash_map<std::string, size_t> index_;  // full name -> families_ index
};

}  // namespace blockrepl
