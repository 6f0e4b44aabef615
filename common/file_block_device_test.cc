#include "common/file_block_device.h"
#include "common/test_temp_dir.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace blockrepl {
namespace {

class FileBlockDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    path_ = dir_.File("store.img");
  }
  TempDir dir_;
  std::string path_;
};

TEST_F(FileBlockDeviceTest, CreatesSparseFileOfRequestedSize) {
  auto dev = FileBlockDevice::Open(path_, 1 << 20);
  ASSERT_TRUE(dev.ok()) << dev.status();
  EXPECT_EQ((*dev)->Size(), 1u << 20);
}

TEST_F(FileBlockDeviceTest, RefusesMissingFileWithoutSizeAndSizeMismatch) {
  EXPECT_EQ(FileBlockDevice::Open(path_).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(FileBlockDevice::Open(path_, 1 << 20).ok());
  auto mismatch = FileBlockDevice::Open(path_, 2 << 20);
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(FileBlockDeviceTest, WriteReadTrimZeroesRoundTrip) {
  auto dev = std::move(FileBlockDevice::Open(path_, 1 << 20)).value();
  std::string data(8192, 'x');
  ASSERT_TRUE(dev->Write(4096, data, /*fua=*/true).ok());
  std::string out(8192, 0);
  ASSERT_TRUE(dev->Read(4096, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, data);
  ASSERT_TRUE(dev->Trim(4096, 4096, false).ok());
  ASSERT_TRUE(dev->WriteZeroes(8192, 1000, /*may_trim=*/false, false).ok());
  ASSERT_TRUE(dev->Read(4096, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out.substr(0, 4096 + 1000), std::string(4096 + 1000, 0));
  EXPECT_EQ(out.substr(5096), std::string(8192 - 5096, 'x'));
  EXPECT_TRUE(dev->Flush().ok());
}

TEST_F(FileBlockDeviceTest, ErrorsNameTheFile) {
  auto dev = std::move(FileBlockDevice::Open(path_, 4096)).value();
  std::string out(4096, 0);
  absl::Status s = dev->Read(4096, absl::MakeSpan(out));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find(path_), std::string::npos);
}

}  // namespace
}  // namespace blockrepl
