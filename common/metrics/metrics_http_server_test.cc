#include "common/metrics/metrics_http_server.h"

#include "common/cli_flags.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace blockrepl {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A port nobody listens on right now (the kernel picks it; we close it again).
int PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// One HTTP/1.0 exchange; returns the whole response (headers and body).
std::string Http(int port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "connect failed";
  }
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) response.append(buf, n);
  close(fd);
  return response;
}

class MetricsHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = PickFreePort();
    auto server = MetricsHttpServer::Start(
        "127.0.0.1:" + std::to_string(port_),
        [this](MetricSet* set) {
          set->Counter("scrapes_total", "Scrapes.", {{"volume", "v"}}, ++scrapes_);
        },
        [this] { return healthy_ ? absl::OkStatus() : absl::UnavailableError("volume v stopped"); });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
  }

  int port_ = 0;
  std::atomic<int> scrapes_{0};
  std::atomic<bool> healthy_{true};
  std::unique_ptr<MetricsHttpServer> server_;
};

TEST_F(MetricsHttpServerTest, MetricsAreCollectedAtEachScrape) {
  std::string first = Http(port_, "GET /metrics HTTP/1.0\r\n\r\n");
  EXPECT_THAT(first, StartsWith("HTTP/1.1 200 OK"));
  EXPECT_THAT(first, HasSubstr("Content-Type: text/plain; version=0.0.4"));
  EXPECT_THAT(first, HasSubstr("blockrepl_scrapes_total{volume=\"v\"} 1\n"));
  EXPECT_THAT(Http(port_, "GET /metrics HTTP/1.0\r\n\r\n"),
              HasSubstr("blockrepl_scrapes_total{volume=\"v\"} 2\n"));
}

TEST_F(MetricsHttpServerTest, HealthzReportsTheAgentsHealth) {
  EXPECT_THAT(Http(port_, "GET /healthz HTTP/1.0\r\n\r\n"), StartsWith("HTTP/1.1 200 OK"));
  healthy_ = false;
  std::string sick = Http(port_, "GET /healthz HTTP/1.0\r\n\r\n");
  EXPECT_THAT(sick, StartsWith("HTTP/1.1 503"));
  EXPECT_THAT(sick, HasSubstr("volume v stopped"));
}

TEST_F(MetricsHttpServerTest, TheEndpointIsReadOnly) {
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH"}) {
    std::string reply = Http(port_, std::string(method) +
                                        " /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    EXPECT_THAT(reply, StartsWith("HTTP/1.1 405")) << method;
  }
  EXPECT_EQ(scrapes_, 0);
  EXPECT_THAT(Http(port_, "GET /admin HTTP/1.0\r\n\r\n"), StartsWith("HTTP/1.1 404"));
}

TEST(MetricsHttpServerStartTest, ABusyPortIsAClearError) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string listen_on = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  auto server = MetricsHttpServer::Start(listen_on, [](MetricSet*) {}, [] { return absl::OkStatus(); });
  close(fd);
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()), HasSubstr(listen_on));
}

TEST(MetricsHttpServerStartTest, MalformedAddressesAreRefused) {
  for (const char* bad : {"9100", "host:", "host:99999", "[::1:80"}) {
    EXPECT_FALSE(ValidateListenAddress(bad).empty()) << bad;
  }
  EXPECT_EQ(ValidateListenAddress("127.0.0.1:9100"), "");
  EXPECT_EQ(ValidateListenAddress("[::1]:9100"), "");
}

}  // namespace
}  // namespace blockrepl
