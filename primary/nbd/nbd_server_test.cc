// Server lifecycle: option validation, listening on TCP and unix sockets,
// several clients, and a prompt Stop() with clients still connected.
#include "primary/nbd/nbd_server.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include "common/mem_block_device.h"
#include "gtest/gtest.h"
#include "primary/nbd/nbd_wire.h"
#include "primary/nbd/test_client.h"

namespace blockrepl::nbd {
namespace {

ServerOptions TcpOptions() {
  ServerOptions o;
  o.tcp_listen = "127.0.0.1:0";
  o.worker_threads = 4;
  return o;
}

TEST(NbdServerTest, StartRejectsInvalidConfigurations) {
  MemBlockDevice dev(4096);
  ServerOptions both = TcpOptions();
  both.unix_socket = "/tmp/x.sock";
  EXPECT_FALSE(NbdServer::Start(both, {{"a", "", &dev}}).ok());
  ServerOptions none;
  EXPECT_FALSE(NbdServer::Start(none, {{"a", "", &dev}}).ok());
  EXPECT_FALSE(NbdServer::Start(TcpOptions(), {}).ok());
  EXPECT_FALSE(NbdServer::Start(TcpOptions(), {{"a", "", &dev}, {"a", "", &dev}}).ok());
  EXPECT_FALSE(NbdServer::Start(TcpOptions(), {{"a", "", nullptr}}).ok());
  ServerOptions tiny = TcpOptions();
  tiny.max_payload = 100;
  EXPECT_FALSE(NbdServer::Start(tiny, {{"a", "", &dev}}).ok());
  ServerOptions bad_address = TcpOptions();
  bad_address.tcp_listen = "127.0.0.1";
  EXPECT_FALSE(NbdServer::Start(bad_address, {{"a", "", &dev}}).ok());
}

TEST(NbdServerTest, ReportsTheBoundPort) {
  MemBlockDevice dev(4096);
  auto server = NbdServer::Start(TcpOptions(), {{"a", "", &dev}});
  ASSERT_TRUE(server.ok()) << server.status();
  std::string address = (*server)->address();
  EXPECT_EQ(address.rfind("127.0.0.1:", 0), 0u) << address;
  EXPECT_NE(address, "127.0.0.1:0");
}

TEST(NbdServerTest, PreferredBlockSizeIsClampedToAPowerOfTwoWithinMaxPayload) {
  MemBlockDevice dev(1 << 20);
  ServerOptions options = TcpOptions();
  options.max_payload = 1 << 20;
  auto server = NbdServer::Start(
      options, {{"big", "", &dev, 64u << 20}, {"odd", "", &dev, 3000}, {"small", "", &dev, 1}});
  ASSERT_TRUE(server.ok()) << server.status();
  for (auto [name, want] :
       {std::pair<const char*, uint32_t>{"big", 1u << 20}, {"odd", 2048u}, {"small", 512u}}) {
    auto c = TestClient::Connect((*server)->address());
    ASSERT_TRUE(c.ok()) << c.status();
    auto go = c->Handshake(name);
    ASSERT_TRUE(go.ok()) << go.status();
    EXPECT_EQ(go->preferred_block, want) << name;
    EXPECT_EQ(go->max_block, 1u << 20);
  }
}

TEST(NbdServerTest, ServesOverAUnixSocketAndRemovesItOnStop) {
  char dir_template[] = "/tmp/nbd_server_test.XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  std::string path = std::string(dir_template) + "/nbd.sock";
  MemBlockDevice dev(65536);
  ServerOptions options;
  options.unix_socket = path;
  options.worker_threads = 2;
  auto server = NbdServer::Start(options, {{"u", "", &dev}});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->address(), path);
  {
    auto c = TestClient::Connect(path);
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE(c->Handshake("u").ok());
    auto err = c->Write(100, "unix");
    ASSERT_TRUE(err.ok()) << err.status();
    EXPECT_EQ(*err, 0u);
  }
  EXPECT_EQ(dev.Contents().substr(100, 4), "unix");
  // A second server must not steal a live socket.
  EXPECT_FALSE(NbdServer::Start(options, {{"u", "", &dev}}).ok());
  (*server)->Stop();
  struct stat st;
  EXPECT_NE(lstat(path.c_str(), &st), 0);
  // A stale socket file left behind (here: by hand) is replaced.
  auto again = NbdServer::Start(options, {{"u", "", &dev}});
  ASSERT_TRUE(again.ok()) << again.status();
  again->reset();
  std::filesystem::remove_all(dir_template);
}

TEST(NbdServerTest, ConnectionsShareTheDeviceAndAreCounted) {
  MemBlockDevice dev(65536);
  auto server = NbdServer::Start(TcpOptions(), {{"a", "", &dev}});
  ASSERT_TRUE(server.ok()) << server.status();
  auto c1 = TestClient::Connect((*server)->address());
  auto c2 = TestClient::Connect((*server)->address());
  ASSERT_TRUE(c1.ok() && c2.ok());
  ASSERT_TRUE(c1->Handshake("a").ok());
  ASSERT_TRUE(c2->Handshake("a").ok());
  ASSERT_EQ(c1->Write(0, "one").value_or(1), 0u);
  std::string back;
  ASSERT_EQ(c2->Read(0, 3, &back).value_or(1), 0u);
  EXPECT_EQ(back, "one");
  const Stats& stats = (*server)->stats();
  EXPECT_EQ(stats.connections_total.load(), 2u);
  EXPECT_EQ(stats.connections_active.load(), 2u);
  ASSERT_TRUE(c1->SendRequest(kCmdDisc, 0, 1, 0, 0).ok());
  EXPECT_TRUE(c1->WaitForClose());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (stats.connections_active.load() != 1 && std::chrono::steady_clock::now() < deadline) {
    usleep(1000);
  }
  EXPECT_EQ(stats.connections_active.load(), 1u);
  EXPECT_EQ(stats.requests[kCmdDisc].load(), 1u);
}

TEST(NbdServerTest, StopWithConnectedIdleClientsReturnsPromptly) {
  MemBlockDevice dev(65536);
  auto server = NbdServer::Start(TcpOptions(), {{"a", "", &dev}});
  ASSERT_TRUE(server.ok()) << server.status();
  std::vector<TestClient> clients;
  for (int i = 0; i < 3; ++i) {
    auto c = TestClient::Connect((*server)->address());
    ASSERT_TRUE(c.ok()) << c.status();
    clients.push_back(std::move(*c));
  }
  ASSERT_TRUE(clients[0].ReadGreeting().ok());  // idle in the handshake
  ASSERT_TRUE(clients[1].Handshake("a").ok());  // idle in transmission
  ASSERT_TRUE(clients[2].Handshake("a").ok());
  ASSERT_EQ(clients[2].Write(0, "x").value_or(1), 0u);

  auto start = std::chrono::steady_clock::now();
  (*server)->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  for (TestClient& c : clients) EXPECT_TRUE(c.WaitForClose());
  EXPECT_EQ((*server)->stats().connections_active.load(), 0u);
  EXPECT_EQ((*server)->stats().handshake_failures.load(), 0u);  // our own Stop is no failure
  (*server)->Stop();                                            // idempotent
  EXPECT_FALSE(TestClient::Connect((*server)->address()).ok());
}

TEST(NbdServerTest, StopDoesNotHangOnAClientThatNeverReadsItsReplies) {
  MemBlockDevice dev(1 << 20);
  auto server = NbdServer::Start(TcpOptions(), {{"a", "", &dev}});
  ASSERT_TRUE(server.ok()) << server.status();
  auto c = TestClient::Connect((*server)->address());
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->Handshake("a").ok());
  // 64 MiB of replies nobody reads: far more than the socket buffers hold,
  // so a worker ends up blocked in send().
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(c->SendRequest(kCmdRead, 0, i, 0, 1 << 20).ok());
  }
  const Stats& stats = (*server)->stats();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (stats.requests[kCmdRead].load() < 64 && std::chrono::steady_clock::now() < deadline) {
    usleep(1000);
  }
  ASSERT_EQ(stats.requests[kCmdRead].load(), 64u);
  auto start = std::chrono::steady_clock::now();
  (*server)->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

}  // namespace
}  // namespace blockrepl::nbd
