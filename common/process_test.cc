#include "common/process.h"

#include <stdlib.h>

#include <string>

#include "gtest/gtest.h"

namespace blockrepl {
namespace {

// Restores GRPC_POLL_STRATEGY as the test found it.
class PollStrategyEnv {
 public:
  PollStrategyEnv() {
    const char* value = getenv("GRPC_POLL_STRATEGY");
    if (value != nullptr) saved_ = value;
    had_ = value != nullptr;
  }
  ~PollStrategyEnv() {
    if (had_) {
      setenv("GRPC_POLL_STRATEGY", saved_.c_str(), 1);
    } else {
      unsetenv("GRPC_POLL_STRATEGY");
    }
  }

 private:
  bool had_ = false;
  std::string saved_;
};

TEST(ChooseGrpcPollerTest, PicksPerQueuePollingByDefault) {
  PollStrategyEnv restore;
  unsetenv("GRPC_POLL_STRATEGY");
  ChooseGrpcPoller();
  ASSERT_NE(getenv("GRPC_POLL_STRATEGY"), nullptr);
  EXPECT_STREQ(getenv("GRPC_POLL_STRATEGY"), "poll");
}

TEST(ChooseGrpcPollerTest, LeavesTheOperatorsChoice) {
  PollStrategyEnv restore;
  setenv("GRPC_POLL_STRATEGY", "epoll1", 1);
  ChooseGrpcPoller();
  EXPECT_STREQ(getenv("GRPC_POLL_STRATEGY"), "epoll1");
}

}  // namespace
}  // namespace blockrepl
