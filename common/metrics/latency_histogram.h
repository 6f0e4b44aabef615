// LatencyHistogram: a fixed-bucket latency histogram for hot paths. Record()
// is lock-free (relaxed atomic adds), so the NBD workers and the replication
// stream never contend with a scrape; Snapshot() reads the buckets at any time
// (a scrape may see a sample's count before its sum: Prometheus tolerates it).
// Thread-safe. The buckets span 25 us (a page-cache write) to 10 s (a WAN
// stall) so one layout serves client writes and replication acks alike.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace blockrepl {

class LatencyHistogram {
 public:
  // Upper bounds in seconds; a last, implicit bucket is +Inf.
  static constexpr std::array<double, 18> kBounds = {
      0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
      0.025,    0.05,    0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0};

  struct Snapshot {
    std::array<uint64_t, kBounds.size() + 1> cumulative{};  // last = count of all samples
    double sum_seconds = 0;
    uint64_t count() const { return cumulative.back(); }
  };

  void Record(std::chrono::nanoseconds latency);
  // Convenience for callers that measured with steady_clock.
  void RecordSince(std::chrono::steady_clock::time_point start) {
    Record(std::chrono::steady_clock::now() - start);
  }
  Snapshot Take() const;

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> buckets_{};  // per bucket, not cumulative
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace blockrepl
