#include "common/fault_injecting_block_device.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <thread>

#include "common/mem_block_device.h"
#include "common/test_temp_dir.h"

namespace blockrepl {
namespace {

using Rule = FaultInjectingBlockDevice::Rule;

TEST(FaultRulesTest, ParsesOpsErrnosAndRanges) {
  std::vector<std::string> problems;
  auto rules = FaultInjectingBlockDevice::ParseRules(
      "# comment\nwrite ENOSPC\n\nread EIO 4096 512   # trailing comment\nall EROFS\n", &problems);
  EXPECT_TRUE(problems.empty());
  ASSERT_EQ(rules.size(), 3u);
  EXPECT_EQ(rules[0].ops, Rule::kWrite);
  EXPECT_EQ(rules[0].error, ENOSPC);
  EXPECT_EQ(rules[0].length, 0u);
  EXPECT_EQ(rules[1].ops, Rule::kRead);
  EXPECT_EQ(rules[1].offset, 4096u);
  EXPECT_EQ(rules[1].length, 512u);
  EXPECT_EQ(rules[2].ops, Rule::kAll);
}

TEST(FaultRulesTest, MalformedLinesAreReportedAndSkipped) {
  std::vector<std::string> problems;
  auto rules = FaultInjectingBlockDevice::ParseRules(
      "write\nsmash EIO\nwrite EAGAIN\nread EIO 1\nread EIO 0 0\nflush EIO\n", &problems);
  EXPECT_EQ(problems.size(), 5u);
  ASSERT_EQ(rules.size(), 1u);
  EXPECT_EQ(rules[0].ops, Rule::kFlush);
}

class FaultInjectingDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    control_ = dir_.File("faults");
    auto inner = std::make_unique<MemBlockDevice>(1 << 20);
    inner_ = inner.get();
    device_ = std::make_unique<FaultInjectingBlockDevice>(std::move(inner), control_);
  }
  // Replaces the control file and waits past the 20 ms recheck interval.
  void SetFaults(const std::string& text) {
    std::ofstream(control_) << text;
    std::this_thread::sleep_for(std::chrono::milliseconds(40));
  }
  std::string ReadInner(uint64_t offset, size_t n) {
    std::string out(n, '\0');
    EXPECT_TRUE(inner_->Read(offset, absl::MakeSpan(out)).ok());
    return out;
  }

  TempDir dir_;
  std::string control_;
  MemBlockDevice* inner_ = nullptr;
  std::unique_ptr<FaultInjectingBlockDevice> device_;
};

TEST_F(FaultInjectingDeviceTest, PassesThroughWithoutAControlFile) {
  const std::string data(4096, 'a');
  ASSERT_TRUE(device_->Write(0, data, false).ok());
  EXPECT_EQ(ReadInner(0, 4096), data);
  EXPECT_EQ(device_->injected(), 0u);
}

TEST_F(FaultInjectingDeviceTest, InjectedWriteFailsWithTheErrnoAndLeavesTheStoreAlone) {
  SetFaults("write ENOSPC\n");
  absl::Status s = device_->Write(0, std::string(4096, 'b'), false);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("injected"), std::string::npos);
  EXPECT_EQ(ReadInner(0, 4096), std::string(4096, '\0'));
  EXPECT_TRUE(device_->Flush().ok());  // only writes were named
  EXPECT_EQ(device_->injected(), 1u);

  SetFaults("");  // cleared: the next write goes through
  EXPECT_TRUE(device_->Write(0, std::string(4096, 'c'), false).ok());
  EXPECT_EQ(ReadInner(0, 1), "c");
}

TEST_F(FaultInjectingDeviceTest, RangedRuleHitsOnlyOverlappingCalls) {
  SetFaults("read EIO 65536 4096\nall EIO 524288 1\n");
  std::string buf(4096, '\0');
  EXPECT_TRUE(device_->Read(61440, absl::MakeSpan(buf)).ok());          // ends where it starts
  EXPECT_FALSE(device_->Read(65536 + 4095, absl::MakeSpan(buf)).ok());  // overlaps by one byte
  EXPECT_TRUE(device_->Write(65536, buf, false).ok());                  // reads only
  EXPECT_FALSE(device_->Trim(520192, 8192, false).ok());                // `all` covers trim
  EXPECT_FALSE(device_->WriteZeroes(524288, 512, true, false).ok());
  EXPECT_EQ(device_->injected(), 3u);
}

}  // namespace
}  // namespace blockrepl
