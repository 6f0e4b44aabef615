// RequestReader over a socketpair: what the client sent comes out in the
// same order and sizes whichever way it was split between buffer and socket.
#include "primary/nbd/request_reader.h"

#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "primary/nbd/socket_io.h"

namespace blockrepl::nbd {
namespace {

class RequestReaderTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds_), 0); }
  void TearDown() override {
    close(fds_[0]);
    if (fds_[1] >= 0) close(fds_[1]);
  }
  void Send(const std::string& bytes) { ASSERT_TRUE(WriteFull(fds_[1], bytes).ok()); }
  void CloseClient() {
    close(fds_[1]);
    fds_[1] = -1;
  }
  static std::string Pattern(size_t n, char seed) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 7 + i / 251);
    return s;
  }
  // A payload (ReadPayload); Header() reads a request's header.
  std::string ReadString(RequestReader& reader, size_t n) {
    std::string out(n, '\0');
    absl::Status s = reader.ReadPayload(absl::MakeSpan(out.data(), n));
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }
  std::string Header(RequestReader& reader) {
    std::string out(28, '\0');
    absl::Status s = reader.ReadHeader(absl::MakeSpan(out.data(), out.size()));
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  int fds_[2] = {-1, -1};
};

TEST_F(RequestReaderTest, OneReceiveServesManyPipelinedRequests) {
  const std::string a = Pattern(28, 'a'), b = Pattern(4096, 'b'), c = Pattern(28, 'c'),
                    d = Pattern(100, 'd');
  Send(a + b + c + d);
  RequestReader reader(fds_[0], 64 * 1024);
  EXPECT_EQ(Header(reader), a);
  // All of it came in with the first receive: the rest is served from memory.
  EXPECT_EQ(reader.buffered(), b.size() + c.size() + d.size());
  EXPECT_TRUE(reader.HasPendingInput());
  EXPECT_EQ(ReadString(reader, 4096), b);
  EXPECT_EQ(Header(reader), c);
  EXPECT_EQ(ReadString(reader, 100), d);
  EXPECT_EQ(reader.buffered(), 0u);
  EXPECT_FALSE(reader.HasPendingInput());
}

TEST_F(RequestReaderTest, APayloadLargerThanBufferAndSocketArrivesWhole) {
  // Bigger than the buffer, and bigger than the socket holds at once: a
  // writer thread feeds it while the reader takes the buffered head and
  // receives the rest. (That the rest skips the buffer is what the next
  // test can see: no read-ahead around large payloads.)
  const std::string header = Pattern(28, 'h');
  const std::string payload = Pattern(3 * 1024 * 1024 + 5, 'p');
  const std::string next = Pattern(28, 'n');
  std::thread writer([&] { Send(header + payload + next); });
  RequestReader reader(fds_[0], 16 * 1024);
  EXPECT_EQ(Header(reader), header);
  EXPECT_EQ(ReadString(reader, payload.size()), payload);
  EXPECT_EQ(Header(reader), next);
  writer.join();
}

TEST_F(RequestReaderTest, AfterALargePayloadHeadersAreReadWithoutReadingAhead) {
  const std::string large = Pattern(64 * 1024, 'l');
  std::thread writer([&] {
    Send(Pattern(28, '1') + large + Pattern(28, '2') + large + Pattern(28, '3'));
  });
  RequestReader reader(fds_[0], 64 * 1024);
  EXPECT_EQ(Header(reader), Pattern(28, '1'));
  EXPECT_EQ(ReadString(reader, large.size()), large);
  // The next payload stays in the socket, to be received straight into place.
  EXPECT_EQ(Header(reader), Pattern(28, '2'));
  EXPECT_EQ(reader.buffered(), 0u);
  EXPECT_EQ(ReadString(reader, large.size()), large);
  EXPECT_EQ(Header(reader), Pattern(28, '3'));
  EXPECT_EQ(reader.buffered(), 0u);
  writer.join();
  // A small payload turns reading ahead back on.
  Send(Pattern(512, 's') + Pattern(28, '4') + Pattern(28, '5'));
  EXPECT_EQ(ReadString(reader, 512), Pattern(512, 's'));
  EXPECT_EQ(reader.buffered(), 56u);
  EXPECT_EQ(Header(reader), Pattern(28, '4'));
  EXPECT_EQ(reader.buffered(), 28u);
  EXPECT_EQ(Header(reader), Pattern(28, '5'));
}

TEST_F(RequestReaderTest, SmallReadsSpanningReceivesAreJoined) {
  RequestReader reader(fds_[0], 1024);
  std::thread writer([&] {
    // Piece by piece, so each read may need several receives.
    for (int i = 0; i < 400; ++i) Send(Pattern(13, static_cast<char>(i)));
  });
  std::string all;
  for (int i = 0; i < 400; ++i) all += Pattern(13, static_cast<char>(i));
  std::string got;
  for (int i = 0; i < 100; ++i) {
    got += Header(reader);
    got += ReadString(reader, 24);
  }
  EXPECT_EQ(got, all);
  writer.join();
}

TEST_F(RequestReaderTest, DiscardDropsBufferedAndUnreceivedBytes) {
  const std::string refused = Pattern(200 * 1024, 'r');
  const std::string next = Pattern(28, 'n');
  std::thread writer([&] { Send(Pattern(28, 'h') + refused + next); });
  RequestReader reader(fds_[0], 8 * 1024);
  Header(reader);
  ASSERT_TRUE(reader.Discard(refused.size()).ok());
  EXPECT_EQ(Header(reader), next);
  writer.join();

  // Entirely from the buffer.
  Send(Pattern(50, 'x') + next);
  ASSERT_TRUE(reader.Discard(50).ok());
  EXPECT_EQ(Header(reader), next);
}

TEST_F(RequestReaderTest, EndOfStreamBetweenRequestsIsClean) {
  Send(Pattern(28, 'a'));
  CloseClient();
  RequestReader reader(fds_[0]);
  Header(reader);
  char header[28];
  absl::Status s = reader.ReadHeader(absl::MakeSpan(header));
  EXPECT_TRUE(IsCleanEof(s)) << s;
}

TEST_F(RequestReaderTest, EndOfStreamInsideARequestIsDataLoss) {
  Send(Pattern(20, 'a'));
  CloseClient();
  RequestReader reader(fds_[0]);
  char header[28];
  absl::Status s = reader.ReadHeader(absl::MakeSpan(header));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
}

TEST_F(RequestReaderTest, EndOfStreamInsideALargePayloadIsDataLoss) {
  Send(Pattern(28 + 1000, 'a'));
  CloseClient();
  RequestReader reader(fds_[0], 4096);
  Header(reader);
  std::string payload(1024 * 1024, '\0');
  absl::Status s = reader.ReadPayload(absl::MakeSpan(payload.data(), payload.size()));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
}

TEST_F(RequestReaderTest, EndOfStreamInsideADiscardIsDataLoss) {
  Send(Pattern(100, 'a'));
  CloseClient();
  RequestReader reader(fds_[0], 64);
  EXPECT_EQ(reader.Discard(5000).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace blockrepl::nbd
