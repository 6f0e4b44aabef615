#include "common/metrics/latency_histogram.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace blockrepl {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

TEST(LatencyHistogramTest, SamplesLandInTheFirstBucketWhoseBoundIsNotBelowThem) {
  LatencyHistogram h;
  h.Record(microseconds(10));   // <= 25 us
  h.Record(microseconds(25));   // == 25 us: Prometheus buckets are "le"
  h.Record(microseconds(26));   // <= 50 us
  h.Record(milliseconds(3));    // <= 5 ms
  h.Record(std::chrono::seconds(60));  // +Inf only
  const LatencyHistogram::Snapshot s = h.Take();
  EXPECT_EQ(s.cumulative[0], 2u);
  EXPECT_EQ(s.cumulative[1], 3u);
  EXPECT_EQ(s.cumulative[6], 3u);  // <= 2.5 ms
  EXPECT_EQ(s.cumulative[7], 4u);  // <= 5 ms
  EXPECT_EQ(s.cumulative[LatencyHistogram::kBounds.size() - 1], 4u);  // <= 10 s
  EXPECT_EQ(s.count(), 5u);
  EXPECT_NEAR(s.sum_seconds, 60.003061, 1e-9);
}

TEST(LatencyHistogramTest, NegativeDurationsCountAsZero) {
  LatencyHistogram h;
  h.Record(std::chrono::nanoseconds(-5));
  EXPECT_EQ(h.Take().cumulative[0], 1u);
  EXPECT_EQ(h.Take().sum_seconds, 0);
}

TEST(LatencyHistogramTest, ConcurrentRecordsAreAllCounted) {
  LatencyHistogram h;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&h, t] {
      for (int i = 0; i < 10000; ++i) h.Record(microseconds(t * 1000 + i % 7));
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(h.Take().count(), 40000u);
}

}  // namespace
}  // namespace blockrepl
