// Option haggling against a real NbdServer on 127.0.0.1:0.
#include "primary/nbd/handshake.h"

#include <memory>

#include "common/mem_block_device.h"
#include "gtest/gtest.h"
#include "primary/nbd/nbd_server.h"
#include "primary/nbd/nbd_wire.h"
#include "primary/nbd/test_client.h"

namespace blockrepl::nbd {
namespace {

class HandshakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.tcp_listen = "127.0.0.1:0";
    options.worker_threads = 4;
    std::vector<Export> exports = {
        {"vol0", "first volume", &dev0_, 65536, true},
        {"vol1", "", &dev1_, 4096, false},
    };
    auto server = NbdServer::Start(options, std::move(exports));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  TestClient Connect() {
    auto c = TestClient::Connect(server_->address());
    EXPECT_TRUE(c.ok()) << c.status();
    return std::move(*c);
  }

  // Greeting and client flags, leaving the connection in option haggling.
  TestClient ConnectToOptions(uint32_t client_flags = kClientFixedNewstyle | kClientNoZeroes) {
    TestClient c = Connect();
    auto flags = c.ReadGreeting();
    EXPECT_TRUE(flags.ok()) << flags.status();
    EXPECT_TRUE(c.SendClientFlags(client_flags).ok());
    return c;
  }

  MemBlockDevice dev0_{1 << 20};
  MemBlockDevice dev1_{8192};
  std::unique_ptr<NbdServer> server_;
};

TEST_F(HandshakeTest, GreetingAdvertisesFixedNewstyleAndNoZeroes) {
  TestClient c = Connect();
  auto flags = c.ReadGreeting();
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_EQ(*flags, kFlagFixedNewstyle | kFlagNoZeroes);
}

TEST_F(HandshakeTest, GoReportsSizeFlagsBlockSizesAndName) {
  TestClient c = Connect();
  auto go = c.Handshake("vol0");
  ASSERT_TRUE(go.ok()) << go.status();
  EXPECT_EQ(go->size, 1u << 20);
  EXPECT_EQ(go->transmission_flags, kTxHasFlags | kTxSendFlush | kTxSendFua | kTxSendTrim |
                                        kTxSendWriteZeroes | kTxCanMultiConn);
  EXPECT_EQ(go->min_block, 1u);
  EXPECT_EQ(go->preferred_block, 65536u);
  EXPECT_EQ(go->max_block, 32u << 20);
  EXPECT_EQ(go->name, "vol0");
  // Transmission works right after the ACK.
  auto err = c.Command(kCmdFlush, 0, 0, 0);
  ASSERT_TRUE(err.ok()) << err.status();
  EXPECT_EQ(*err, 0u);
}

TEST_F(HandshakeTest, MultiConnIsAdvertisedOnlyWhenTheExportAllowsIt) {
  TestClient c = Connect();
  auto go = c.Handshake("vol1");
  ASSERT_TRUE(go.ok()) << go.status();
  EXPECT_EQ(go->size, 8192u);
  EXPECT_EQ(go->transmission_flags & kTxCanMultiConn, 0);
}

TEST_F(HandshakeTest, EmptyNameSelectsTheFirstExport) {
  TestClient c = Connect();
  auto go = c.Handshake("");
  ASSERT_TRUE(go.ok()) << go.status();
  EXPECT_EQ(go->size, 1u << 20);
  EXPECT_EQ(go->name, "vol0");
}

TEST_F(HandshakeTest, GoWithoutInfoRequestsStillSendsInfoExport) {
  TestClient c = ConnectToOptions();
  ASSERT_TRUE(c.SendOption(kOptGo, TestClient::GoPayload("vol1", {})).ok());
  auto r = c.ReadOptionReply();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->type, kRepInfo);
  ASSERT_EQ(r->data.size(), 12u);
  EXPECT_EQ(GetU16(r->data.data()), kInfoExport);
  r = c.ReadOptionReply();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->type, kRepAck);
  EXPECT_EQ(r->option, kOptGo);
}

TEST_F(HandshakeTest, InfoDoesNotEnterTransmission) {
  TestClient c = ConnectToOptions();
  ASSERT_TRUE(c.SendOption(kOptInfo, TestClient::GoPayload("vol0", {kInfoDescription})).ok());
  std::string description;
  while (true) {
    auto r = c.ReadOptionReply();
    ASSERT_TRUE(r.ok()) << r.status();
    if (r->type == kRepAck) break;
    ASSERT_EQ(r->type, kRepInfo);
    if (GetU16(r->data.data()) == kInfoDescription) description = r->data.substr(2);
  }
  EXPECT_EQ(description, "first volume");
  // Still haggling: a LIST is answered.
  ASSERT_TRUE(c.SendOption(kOptList, "").ok());
  auto r = c.ReadOptionReply();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->type, kRepServer);
}

TEST_F(HandshakeTest, ListRepliesOneServerPerExportThenAck) {
  TestClient c = ConnectToOptions();
  ASSERT_TRUE(c.SendOption(kOptList, "").ok());
  std::vector<std::string> names;
  while (true) {
    auto r = c.ReadOptionReply();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->option, kOptList);
    if (r->type == kRepAck) break;
    ASSERT_EQ(r->type, kRepServer);
    ASSERT_GE(r->data.size(), 4u);
    uint32_t len = GetU32(r->data.data());
    names.push_back(r->data.substr(4, len));
    if (names.size() == 1) {
      EXPECT_EQ(r->data.substr(4 + len), "first volume");
    }
  }
  EXPECT_EQ(names, (std::vector<std::string>{"vol0", "vol1"}));
}

TEST_F(HandshakeTest, GoForUnknownExportRepliesErrUnknownAndContinues) {
  TestClient c = ConnectToOptions();
  ASSERT_TRUE(c.SendOption(kOptGo, TestClient::GoPayload("nope", {})).ok());
  auto r = c.ReadOptionReply();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->type, kRepErrUnknown);
  ASSERT_TRUE(c.SendOption(kOptGo, TestClient::GoPayload("vol1", {})).ok());
  r = c.ReadOptionReply();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->type, kRepInfo);
}

TEST_F(HandshakeTest, MalformedGoRepliesErrInvalid) {
  TestClient c = ConnectToOptions();
  std::string payload = TestClient::GoPayload("vol0", {kInfoBlockSize});
  payload.push_back('x');  // one byte more than the info count says
  ASSERT_TRUE(c.SendOption(kOptGo, payload).ok());
  auto r = c.ReadOptionReply();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->type, kRepErrInvalid);
  ASSERT_TRUE(c.SendOption(kOptGo, std::string("\0\0\0\xff\0\0", 6)).ok());  // name overruns
  r = c.ReadOptionReply();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->type, kRepErrInvalid);
}

TEST_F(HandshakeTest, UnsupportedOptionsGetErrUnsupAndTheSessionContinues) {
  TestClient c = ConnectToOptions();
  for (uint32_t option : {kOptStructuredReply, kOptStartTls, kOptSetMetaContext, 999u}) {
    ASSERT_TRUE(c.SendOption(option, std::string(100, 'z')).ok());
    auto r = c.ReadOptionReply();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->option, option);
    EXPECT_EQ(r->type, kRepErrUnsup);
  }
  ASSERT_TRUE(c.SendOption(kOptGo, TestClient::GoPayload("vol0", {})).ok());
  auto r = c.ReadOptionReply();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->type, kRepInfo);
}

TEST_F(HandshakeTest, OversizedOptionDropsTheConnection) {
  TestClient c = ConnectToOptions();
  ASSERT_TRUE(c.SendOptionHeader(kOptStructuredReply, kMaxOptionLength + 1).ok());
  EXPECT_TRUE(c.WaitForClose());
  EXPECT_EQ(server_->stats().handshake_failures.load(), 1u);
}

TEST_F(HandshakeTest, UnknownClientFlagsDropTheConnection) {
  TestClient c = ConnectToOptions(kClientFixedNewstyle | 0x80);
  EXPECT_TRUE(c.WaitForClose());
}

TEST_F(HandshakeTest, AbortIsAcknowledgedThenClosed) {
  TestClient c = ConnectToOptions();
  ASSERT_TRUE(c.SendOption(kOptAbort, "").ok());
  auto r = c.ReadOptionReply();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->type, kRepAck);
  EXPECT_TRUE(c.WaitForClose());
  EXPECT_EQ(server_->stats().handshake_failures.load(), 0u);
}

TEST_F(HandshakeTest, ExportNameWithNoZeroesSendsSizeAndFlagsOnly) {
  TestClient c = ConnectToOptions(kClientFixedNewstyle | kClientNoZeroes);
  ASSERT_TRUE(c.SendOption(kOptExportName, "vol1").ok());
  auto reply = c.ReadBytes(10);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(GetU64(reply->data()), 8192u);
  EXPECT_NE(GetU16(reply->data() + 8) & kTxHasFlags, 0);
  // The very next bytes are a reply to our request, not padding.
  auto err = c.Command(kCmdFlush, 0, 0, 0);
  ASSERT_TRUE(err.ok()) << err.status();
  EXPECT_EQ(*err, 0u);
}

TEST_F(HandshakeTest, ExportNameWithoutNoZeroesSendsPadding) {
  TestClient c = ConnectToOptions(kClientFixedNewstyle);
  ASSERT_TRUE(c.SendOption(kOptExportName, "vol0").ok());
  auto reply = c.ReadBytes(10 + 124);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(GetU64(reply->data()), 1u << 20);
  EXPECT_EQ(reply->substr(10), std::string(124, '\0'));
  auto err = c.Command(kCmdFlush, 0, 0, 0);
  ASSERT_TRUE(err.ok()) << err.status();
  EXPECT_EQ(*err, 0u);
}

TEST_F(HandshakeTest, ExportNameForUnknownExportClosesTheConnection) {
  TestClient c = ConnectToOptions();
  ASSERT_TRUE(c.SendOption(kOptExportName, "nope").ok());
  EXPECT_TRUE(c.WaitForClose());
}

TEST_F(HandshakeTest, BadOptionMagicDropsTheConnection) {
  TestClient c = ConnectToOptions();
  ASSERT_TRUE(c.SendRaw(std::string(16, 'X')).ok());
  EXPECT_TRUE(c.WaitForClose());
}

TEST(FindExportTest, EmptyNameIsTheDefaultExport) {
  MemBlockDevice d(512);
  std::vector<Export> exports = {{"a", "", &d}, {"b", "", &d}};
  EXPECT_EQ(FindExport(exports, ""), &exports[0]);
  EXPECT_EQ(FindExport(exports, "b"), &exports[1]);
  EXPECT_EQ(FindExport(exports, "c"), nullptr);
  EXPECT_EQ(FindExport({}, ""), nullptr);
}

}  // namespace
}  // namespace blockrepl::nbd
