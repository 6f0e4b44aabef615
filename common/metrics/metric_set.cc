#include "common/metrics/metric_set.h"

#include <sstream>

#include "prometheus/text_serializer.h"

namespace blockrepl {

namespace {
constexpr char kPrefix[] = "blockrepl_";
}  // namespace

prometheus::ClientMetric& MetricSet::Add(const std::string& name, const std::string& help,
                                         prometheus::MetricType type, const MetricLabels& labels) {
  const std::string full = kPrefix + name;
  auto [it, inserted] = index_.try_emplace(full, families_.size());
  if (inserted) {
    prometheus::MetricFamily family;
    family.name = full;
    family.help = help;
    family.type = type;
    families_.push_back(std::move(family));
  }
  prometheus::ClientMetric& metric = families_[it->second].metric.emplace_back();
  for (const auto& [label, value] : labels) metric.label.push_back({label, value});
  return metric;
}

void MetricSet::Gauge(const std::string& name, const std::string& help,
                      const MetricLabels& labels, double value) {
  Add(name, help, prometheus::MetricType::Gauge, labels).gauge.value = value;
}

void MetricSet::Counter(const std::string& name, const std::string& help,
                        const MetricLabels& labels, double value) {
  Add(name, help, prometheus::MetricType::Counter, labels).counter.value = value;
}

void MetricSet::Histogram(const std::string& name, const std::string& help,
                          const MetricLabels& labels, const LatencyHistogram::Snapshot& snapshot) {
  prometheus::ClientMetric& metric = Add(name, help, prometheus::MetricType::Histogram, labels);
  metric.histogram.sample_count = snapshot.count();
  metric.histogram.sample_sum = snapshot.sum_seconds;
  for (size_t i = 0; i < LatencyHistogram::kBounds.size(); ++i) {
    metric.histogram.bucket.push_back({snapshot.cumulative[i], LatencyHistogram::kBounds[i]});
  }
  // The serializer adds the +Inf bucket from sample_count.
}

std::string MetricSet::Serialize() const {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families_);
  return out.str();
}

}  // namespace blockrepl
