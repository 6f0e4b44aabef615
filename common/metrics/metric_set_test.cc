#include "common/metrics/metric_set.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace blockrepl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricSetTest, SamplesOfOneNameShareAFamilyWithOneHelpAndType) {
  MetricSet set;
  set.Gauge("dirty_chunks", "Dirty chunks.", {{"volume", "a"}}, 3);
  set.Gauge("dirty_chunks", "ignored", {{"volume", "b"}}, 5);
  set.Counter("replicated_writes_total", "Writes.", {{"volume", "a"}}, 7);
  ASSERT_EQ(set.families().size(), 2u);
  const std::string text = set.Serialize();
  EXPECT_THAT(text, HasSubstr("# HELP blockrepl_dirty_chunks Dirty chunks.\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE blockrepl_dirty_chunks gauge\n"));
  EXPECT_THAT(text, HasSubstr("blockrepl_dirty_chunks{volume=\"a\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("blockrepl_dirty_chunks{volume=\"b\"} 5\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE blockrepl_replicated_writes_total counter\n"));
  EXPECT_THAT(text, HasSubstr("blockrepl_replicated_writes_total{volume=\"a\"} 7\n"));
  EXPECT_THAT(text, Not(HasSubstr("ignored")));
}

TEST(MetricSetTest, LabelValuesAreEscaped) {
  MetricSet set;
  set.Gauge("volume_info", "Info.", {{"volume", "we\"ird\\na\nme"}}, 1);
  EXPECT_THAT(set.Serialize(), HasSubstr("volume=\"we\\\"ird\\\\na\\nme\""));
}

TEST(MetricSetTest, HistogramsHaveCumulativeBucketsAnInfBucketSumAndCount) {
  LatencyHistogram h;
  h.Record(std::chrono::microseconds(40));
  h.Record(std::chrono::milliseconds(20));
  MetricSet set;
  set.Histogram("client_write_latency_seconds", "Latency.", {{"volume", "a"}}, h.Take());
  const std::string text = set.Serialize();
  EXPECT_THAT(text, HasSubstr("# TYPE blockrepl_client_write_latency_seconds histogram\n"));
  EXPECT_THAT(text, HasSubstr("blockrepl_client_write_latency_seconds_bucket{volume=\"a\",le=\"2.5e-05\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("blockrepl_client_write_latency_seconds_bucket{volume=\"a\",le=\"5e-05\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("blockrepl_client_write_latency_seconds_bucket{volume=\"a\",le=\"0.025\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("blockrepl_client_write_latency_seconds_bucket{volume=\"a\",le=\"+Inf\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("blockrepl_client_write_latency_seconds_count{volume=\"a\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("blockrepl_client_write_latency_seconds_sum{volume=\"a\"} 0.02004\n"));
}

}  // namespace
}  // namespace blockrepl
