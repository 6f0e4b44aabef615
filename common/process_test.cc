#include "common/process.h"

#include <stdlib.h>

#include <string>

#include "gtest/gtest.h"

namespace blockrepl {
namespace {

// Restores an environment variable as the test found it.
class SavedEnv {
 public:
  explicit SavedEnv(const char* name) : name_(name) {
    const char* value = getenv(name);
    if (value != nullptr) saved_ = value;
    had_ = value != nullptr;
  }
  ~SavedEnv() {
    if (had_) {
      setenv(name_, saved_.c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string saved_;
};

TEST(ChooseGrpcPollerTest, PicksPerQueuePollingByDefault) {
  SavedEnv restore("GRPC_POLL_STRATEGY");
  unsetenv("GRPC_POLL_STRATEGY");
  ChooseGrpcPoller();
  ASSERT_NE(getenv("GRPC_POLL_STRATEGY"), nullptr);
  EXPECT_STREQ(getenv("GRPC_POLL_STRATEGY"), "poll");
}

TEST(ChooseGrpcPollerTest, LeavesTheOperatorsChoice) {
  SavedEnv restore("GRPC_POLL_STRATEGY");
  setenv("GRPC_POLL_STRATEGY", "epoll1", 1);
  ChooseGrpcPoller();
  EXPECT_STREQ(getenv("GRPC_POLL_STRATEGY"), "epoll1");
}

TEST(ChooseGrpcReadBuffersTest, TurnsTheChunkedReadsOff) {
  SavedEnv restore("GRPC_EXPERIMENTS");
  unsetenv("GRPC_EXPERIMENTS");
  ChooseGrpcReadBuffers();
  ASSERT_NE(getenv("GRPC_EXPERIMENTS"), nullptr);
  EXPECT_STREQ(getenv("GRPC_EXPERIMENTS"), "-tcp_read_chunks");
}

TEST(ChooseGrpcReadBuffersTest, KeepsTheOperatorsOtherExperiments) {
  SavedEnv restore("GRPC_EXPERIMENTS");
  setenv("GRPC_EXPERIMENTS", "tcp_rcv_lowat", 1);
  ChooseGrpcReadBuffers();
  EXPECT_STREQ(getenv("GRPC_EXPERIMENTS"), "tcp_rcv_lowat,-tcp_read_chunks");
}

TEST(ChooseGrpcReadBuffersTest, LeavesTheOperatorsChoice) {
  SavedEnv restore("GRPC_EXPERIMENTS");
  setenv("GRPC_EXPERIMENTS", "tcp_read_chunks", 1);
  ChooseGrpcReadBuffers();
  EXPECT_STREQ(getenv("GRPC_EXPERIMENTS"), "tcp_read_chunks");
}

}  // namespace
}  // namespace blockrepl
