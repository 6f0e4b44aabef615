// Transmission phase against a real NbdServer: request validation, the
// device calls it makes, error mapping, concurrency and backpressure.
#include "primary/nbd/session.h"

#include <pthread.h>
#include <sys/socket.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/synchronization/notification.h"
#include "absl/synchronization/mutex.h"
#include "common/completion_batch.h"
#include "common/mem_block_device.h"
#include "gtest/gtest.h"
#include "primary/nbd/nbd_server.h"
#include "primary/nbd/nbd_wire.h"
#include "primary/nbd/test_client.h"

namespace blockrepl::nbd {
namespace {

constexpr uint64_t kDevSize = 1 << 20;

// A MemBlockDevice whose Writes can be held until their offset is released,
// and whose Read/Write/Flush can be made to fail with a chosen status.
class GatedDevice : public MemBlockDevice {
 public:
  GatedDevice() : MemBlockDevice(kDevSize) {}

  absl::Status Write(uint64_t offset, absl::Span<const char> data, bool fua) override {
    {
      absl::MutexLock lock(&mu_);
      ++writing_;
      max_writing_ = std::max(max_writing_, writing_);
      auto released = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return !gated_ || released_.count(offset) > 0;
      };
      mu_.Await(absl::Condition(&released));
      --writing_;
      if (!fail_.ok()) return fail_;
    }
    return MemBlockDevice::Write(offset, data, fua);
  }
  absl::Status Read(uint64_t offset, absl::Span<char> out) override {
    if (absl::Status s = failure(); !s.ok()) return s;
    return MemBlockDevice::Read(offset, out);
  }
  absl::Status Flush() override {
    if (absl::Status s = failure(); !s.ok()) return s;
    return MemBlockDevice::Flush();
  }

  void Gate() {
    absl::MutexLock lock(&mu_);
    gated_ = true;
  }
  void Release(uint64_t offset) {
    absl::MutexLock lock(&mu_);
    released_.insert(offset);
  }
  void ReleaseAll() {
    absl::MutexLock lock(&mu_);
    gated_ = false;
  }
  void Fail(absl::Status s) {
    absl::MutexLock lock(&mu_);
    fail_ = std::move(s);
  }
  // Waits (at most 5 s) until `n` writes are inside the device at once.
  bool WaitForWriters(int n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return writing_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(5));
  }
  int max_writing() {
    absl::MutexLock lock(&mu_);
    return max_writing_;
  }

 private:
  absl::Status failure() {
    absl::MutexLock lock(&mu_);
    return fail_;
  }

  absl::Mutex mu_;
  bool gated_ ABSL_GUARDED_BY(mu_) = false;
  std::set<uint64_t> released_ ABSL_GUARDED_BY(mu_);
  int writing_ ABSL_GUARDED_BY(mu_) = 0;
  int max_writing_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status fail_ ABSL_GUARDED_BY(mu_);
};

// Serves `dev` as "vol" on loopback and connects a client that chose it.
void StartServerAndClient(BlockDevice* dev, ServerOptions options,
                          std::unique_ptr<NbdServer>* server, std::unique_ptr<TestClient>* client) {
  options.tcp_listen = "127.0.0.1:0";
  auto started = NbdServer::Start(options, {{"vol", "", dev}});
  ASSERT_TRUE(started.ok()) << started.status();
  *server = std::move(*started);
  auto c = TestClient::Connect((*server)->address());
  ASSERT_TRUE(c.ok()) << c.status();
  *client = std::make_unique<TestClient>(std::move(*c));
  auto go = (*client)->Handshake("vol");
  ASSERT_TRUE(go.ok()) << go.status();
}

// Sends a WRITE of "abcd" at 0 (cookie 7), waits until `inside()` says the
// device has it, sends DISC, lets the write finish with `release()`: the
// write's reply must come before the connection closes.
void ExpectDiscWaitsForTheWriteInFlight(TestClient& client, absl::FunctionRef<bool()> inside,
                                        absl::FunctionRef<void()> release) {
  ASSERT_TRUE(client.SendRequest(kCmdWrite, 0, 7, 0, 4, "abcd").ok());
  ASSERT_TRUE(inside());
  ASSERT_TRUE(client.SendRequest(kCmdDisc, 0, 8, 0, 0).ok());
  release();
  auto reply = client.ReadReply();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->cookie, 7u);
  EXPECT_EQ(reply->error, 0u);
  EXPECT_TRUE(client.WaitForClose());
}

class SessionTest : public ::testing::Test {
 protected:
  void StartServer(ServerOptions options = {}) {
    if (options.worker_threads == ServerOptions().worker_threads) options.worker_threads = 32;
    StartServerAndClient(&dev_, options, &server_, &client_);
  }
  void SetUp() override { StartServer(); }

  uint32_t Write(uint64_t offset, const std::string& data, uint16_t flags = 0) {
    auto e = client_->Write(offset, data, flags);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *e : 0xffffffff;
  }
  uint32_t Read(uint64_t offset, uint32_t length, std::string* out) {
    auto e = client_->Read(offset, length, out);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *e : 0xffffffff;
  }
  uint32_t Command(uint16_t type, uint16_t flags, uint64_t offset, uint32_t length) {
    auto e = client_->Command(type, flags, offset, length);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *e : 0xffffffff;
  }

  GatedDevice dev_;
  std::unique_ptr<NbdServer> server_;
  std::unique_ptr<TestClient> client_;
};

// Tests that restart the server with other options first drop the default one.
class SessionLimitsTest : public SessionTest {
 protected:
  void SetUp() override {}
};

TEST_F(SessionTest, WriteThenReadReturnsTheData) {
  std::string data(8192, 'a');
  data[100] = 'b';
  EXPECT_EQ(Write(4096, data), 0u);
  std::string back;
  EXPECT_EQ(Read(4096, 8192, &back), 0u);
  EXPECT_EQ(back, data);
  EXPECT_EQ(dev_.Contents().substr(4096, 8192), data);
  EXPECT_EQ(server_->stats().bytes_written.load(), 8192u);
  EXPECT_EQ(server_->stats().bytes_read.load(), 8192u);
  EXPECT_EQ(server_->stats().requests[kCmdWrite].load(), 1u);
  EXPECT_EQ(server_->stats().requests[kCmdRead].load(), 1u);
}

TEST_F(SessionTest, UnalignedByteRangesWork) {
  EXPECT_EQ(Write(kDevSize - 3, "xyz"), 0u);
  std::string back;
  EXPECT_EQ(Read(kDevSize - 5, 5, &back), 0u);
  EXPECT_EQ(back, std::string("\0\0xyz", 5));
}

TEST_F(SessionTest, FuaReachesTheDevice) {
  EXPECT_EQ(Write(0, "abc", kCmdFlagFua), 0u);
  EXPECT_EQ(dev_.fua_count(), 1u);
  EXPECT_EQ(Command(kCmdWriteZeroes, kCmdFlagFua | kCmdFlagNoHole, 0, 512), 0u);
  EXPECT_EQ(dev_.fua_count(), 2u);
}

TEST_F(SessionTest, FlushTrimAndWriteZeroesReachTheDevice) {
  ASSERT_EQ(Write(0, std::string(65536, 'q')), 0u);
  EXPECT_EQ(Command(kCmdFlush, 0, 0, 0), 0u);
  EXPECT_EQ(dev_.flush_count(), 1u);
  EXPECT_EQ(Command(kCmdTrim, 0, 0, 4096), 0u);
  EXPECT_EQ(Command(kCmdWriteZeroes, 0, 8192, 8192), 0u);
  std::string contents = dev_.Contents();
  EXPECT_EQ(contents.substr(0, 4096), std::string(4096, '\0'));
  EXPECT_EQ(contents.substr(4096, 4096), std::string(4096, 'q'));
  EXPECT_EQ(contents.substr(8192, 8192), std::string(8192, '\0'));
  EXPECT_EQ(contents.substr(16384, 4096), std::string(4096, 'q'));
}

TEST_F(SessionTest, ZeroLengthReadAndWriteSucceed) {
  std::string back;
  EXPECT_EQ(Read(0, 0, &back), 0u);
  EXPECT_EQ(Write(kDevSize, ""), 0u);
}

TEST_F(SessionTest, OutOfRangeWritesAreEnospcAndReadsAreEinval) {
  EXPECT_EQ(Write(kDevSize - 1, "ab"), kErrNoSpc);
  EXPECT_EQ(Command(kCmdWriteZeroes, 0, kDevSize, 1), kErrNoSpc);
  std::string back;
  EXPECT_EQ(Read(kDevSize - 1, 2, &back), kErrInval);
  EXPECT_EQ(Command(kCmdTrim, 0, kDevSize, 4096), kErrInval);
  // offset + length wraps around 2^64.
  EXPECT_EQ(Read(~0ull - 10, 4096, &back), kErrInval);
  EXPECT_EQ(Write(~0ull - 10, std::string(4096, 'w')), kErrNoSpc);
  EXPECT_EQ(server_->stats().errors[kCmdWrite].load(), 2u);
  // The connection is still fine.
  EXPECT_EQ(Write(0, "ok"), 0u);
}

TEST_F(SessionTest, UnknownOrMisplacedFlagsAreEinval) {
  EXPECT_EQ(Write(0, "abc", 0x8000), kErrInval);
  EXPECT_EQ(Write(0, "abc", kCmdFlagNoHole), kErrInval);  // only for WRITE_ZEROES
  EXPECT_EQ(Command(kCmdRead, kCmdFlagDf, 0, 512), kErrInval);
  EXPECT_EQ(Command(kCmdTrim, kCmdFlagFastZero, 0, 512), kErrInval);
  EXPECT_EQ(Command(kCmdWriteZeroes, kCmdFlagFastZero, 0, 512), 0u);
  EXPECT_EQ(Command(kCmdFlush, kCmdFlagFua, 0, 0), 0u);  // FUA is allowed everywhere
  EXPECT_EQ(dev_.Contents().substr(0, 3), std::string(3, '\0'));
}

TEST_F(SessionTest, UnadvertisedAndUnknownCommandsAreEinval) {
  EXPECT_EQ(Command(kCmdCache, 0, 0, 512), kErrInval);
  EXPECT_EQ(Command(kCmdBlockStatus, 0, 0, 512), kErrInval);
  EXPECT_EQ(Command(42, 0, 0, 512), kErrInval);
  EXPECT_EQ(server_->stats().errors[kCmdCache].load(), 1u);
  EXPECT_EQ(Command(kCmdFlush, 0, 0, 0), 0u);
}

TEST_F(SessionTest, DeviceErrorsAreMappedToWireErrors) {
  struct Case {
    absl::Status status;
    uint32_t nbd;
  } cases[] = {
      {absl::ResourceExhaustedError("full"), kErrNoSpc},
      {absl::InvalidArgumentError("bad"), kErrInval},
      {absl::OutOfRangeError("far"), kErrInval},
      {absl::UnimplementedError("no"), kErrNotSup},
      {absl::PermissionDeniedError("ro"), kErrPerm},
      {absl::UnavailableError("volume handed over"), kErrShutdown},
      {absl::InternalError("disk"), kErrIo},
  };
  for (const Case& c : cases) {
    dev_.Fail(c.status);
    EXPECT_EQ(Write(0, "abc"), c.nbd) << c.status;
    EXPECT_EQ(Command(kCmdFlush, 0, 0, 0), c.nbd) << c.status;
    std::string back;
    EXPECT_EQ(Read(0, 4096, &back), c.nbd) << c.status;  // error reply, no data follows
  }
  dev_.Fail(absl::OkStatus());
  std::string back;
  EXPECT_EQ(Read(0, 3, &back), 0u);
}

TEST_F(SessionTest, BadRequestMagicClosesTheConnection) {
  ASSERT_TRUE(client_->SendRaw(std::string(28, '\x55')).ok());
  EXPECT_TRUE(client_->WaitForClose());
}

TEST_F(SessionTest, DiscWaitsForInFlightRepliesThenCloses) {
  dev_.Gate();
  ExpectDiscWaitsForTheWriteInFlight(
      *client_, [&] { return dev_.WaitForWriters(1); }, [&] { dev_.ReleaseAll(); });
  EXPECT_EQ(dev_.Contents().substr(0, 4), "abcd");
}

TEST_F(SessionTest, StopLetsRequestsInFlightFinishAndReply) {
  dev_.Gate();
  ASSERT_TRUE(client_->SendRequest(kCmdWrite, 0, 5, 0, 4, "last").ok());
  ASSERT_TRUE(dev_.WaitForWriters(1));
  std::thread stopper([this] { server_->Stop(); });
  // Once the listener is gone Stop() is under way (it shuts sessions next).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (TestClient::Connect(server_->address()).ok() &&
         std::chrono::steady_clock::now() < deadline) {
  }
  dev_.ReleaseAll();
  auto reply = client_->ReadReply();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->cookie, 5u);
  EXPECT_EQ(reply->error, 0u);
  EXPECT_TRUE(client_->WaitForClose());
  stopper.join();
  EXPECT_EQ(dev_.Contents().substr(0, 4), "last");
}

TEST_F(SessionTest, ConcurrentRequestsCompleteOutOfOrder) {
  constexpr int kRequests = 16;
  dev_.Gate();
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(
        client_->SendRequest(kCmdWrite, 0, i, i * 4096, 4096, std::string(4096, 'a' + i)).ok());
  }
  ASSERT_TRUE(dev_.WaitForWriters(kRequests));  // all of them inside the device at once
  for (int i = kRequests - 1; i >= 0; --i) {
    dev_.Release(i * 4096);
    auto reply = client_->ReadReply();
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->cookie, static_cast<uint64_t>(i));
    EXPECT_EQ(reply->error, 0u);
  }
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_EQ(dev_.Contents()[i * 4096], 'a' + i);
  }
}

// Replies sent by one thread for several requests (batched) must still keep
// each header with its own data: a pipeline of reads and writes, each READ's
// data checked against its cookie.
TEST_F(SessionTest, PipelinedRepliesKeepEachHeaderWithItsData) {
  constexpr int kSlots = 64;
  constexpr uint32_t kSlotBytes = 4096;
  for (int i = 0; i < kSlots; ++i) {
    ASSERT_EQ(Write(i * kSlotBytes, std::string(kSlotBytes, static_cast<char>('A' + i % 50))), 0u);
  }
  constexpr int kRounds = 8;
  for (int round = 0; round < kRounds; ++round) {
    for (int i = 0; i < kSlots; ++i) {
      // Even cookies read slot i, odd ones write the second half of the device.
      ASSERT_TRUE(client_->SendRequest(kCmdRead, 0, 2 * i, i * kSlotBytes, kSlotBytes).ok());
      ASSERT_TRUE(client_
                      ->SendRequest(kCmdWrite, 0, 2 * i + 1, kDevSize / 2 + i * kSlotBytes,
                                    kSlotBytes, std::string(kSlotBytes, 'w'))
                      .ok());
    }
    std::set<uint64_t> seen;
    for (int n = 0; n < 2 * kSlots; ++n) {
      auto reply = client_->ReadReply();
      ASSERT_TRUE(reply.ok()) << reply.status();
      ASSERT_EQ(reply->error, 0u);
      ASSERT_TRUE(seen.insert(reply->cookie).second) << "cookie " << reply->cookie << " twice";
      if (reply->cookie % 2 == 0) {
        auto data = client_->ReadBytes(kSlotBytes);
        ASSERT_TRUE(data.ok()) << data.status();
        const int slot = static_cast<int>(reply->cookie / 2);
        ASSERT_EQ(*data, std::string(kSlotBytes, static_cast<char>('A' + slot % 50)))
            << "slot " << slot;
      }
    }
  }
}

// A device whose modifying calls complete later, from another thread, the
// way the replicating volume's sync mode completes them from the stream's
// thread when an ack arrives: the write is done at once, its completion parked until released.
class ParkingDevice : public MemBlockDevice {
 public:
  ParkingDevice() : MemBlockDevice(kDevSize) {}

  void WriteOwnedAsync(uint64_t offset, Payload data, bool fua, Done done) override {
    Park(Write(offset, data.span(), fua), std::move(done));
  }
  void TrimAsync(uint64_t offset, uint64_t length, bool fua, Done done) override {
    Park(Trim(offset, length, fua), std::move(done));
  }
  void WriteZeroesAsync(uint64_t offset, uint64_t length, bool may_trim, bool fua,
                        Done done) override {
    Park(WriteZeroes(offset, length, may_trim, fua), std::move(done));
  }

  bool WaitForParked(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return parked_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(5));
  }
  // Completes every parked call on a thread of its own, in one batch.
  void CompleteAllFromAnotherThread() {
    std::vector<std::pair<absl::Status, Done>> parked;
    {
      absl::MutexLock lock(&mu_);
      parked.swap(parked_);
    }
    std::thread completer([&] {
      CompletionBatch batch;
      for (auto& [status, done] : parked) std::move(done)(status);
    });
    completer.join();
  }

 private:
  void Park(absl::Status status, Done done) {
    absl::MutexLock lock(&mu_);
    parked_.emplace_back(std::move(status), std::move(done));
  }

  absl::Mutex mu_;
  std::vector<std::pair<absl::Status, Done>> parked_ ABSL_GUARDED_BY(mu_);
};

class AsyncCompletionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.worker_threads = 2;  // fewer than the requests parked below
    StartServerAndClient(&dev_, options, &server_, &client_);
  }

  ParkingDevice dev_;
  std::unique_ptr<NbdServer> server_;
  std::unique_ptr<TestClient> client_;
};

// Requests whose completion waits elsewhere hold no pool thread: with two
// workers and eight parked writes, a READ still gets its answer; the parked
// ones are answered, each with its own cookie, once a batch completes them.
TEST_F(AsyncCompletionTest, ParkedWritesHoldNoWorkerAndReplyWhenCompleted) {
  constexpr int kWrites = 8;
  for (int i = 0; i < kWrites; ++i) {
    const uint16_t type = i == 6 ? kCmdTrim : i == 7 ? kCmdWriteZeroes : kCmdWrite;
    const std::string payload = type == kCmdWrite ? std::string(512, 'a' + i) : "";
    ASSERT_TRUE(client_->SendRequest(type, 0, i, i * 512, 512, payload).ok());
  }
  ASSERT_TRUE(dev_.WaitForParked(kWrites));
  std::string data;
  auto read = client_->Read(0, 512, &data);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, 0u);
  EXPECT_EQ(data, std::string(512, 'a'));  // written before the completion

  dev_.CompleteAllFromAnotherThread();
  std::set<uint64_t> cookies;
  for (int i = 0; i < kWrites; ++i) {
    auto reply = client_->ReadReply();
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->error, 0u);
    cookies.insert(reply->cookie);
  }
  EXPECT_EQ(cookies.size(), static_cast<size_t>(kWrites));
  EXPECT_EQ(*cookies.rbegin(), static_cast<uint64_t>(kWrites - 1));
}

// A parked request keeps the session open: DISC waits for its reply.
TEST_F(AsyncCompletionTest, DiscWaitsForParkedCompletions) {
  ExpectDiscWaitsForTheWriteInFlight(
      *client_, [&] { return dev_.WaitForParked(1); },
      [&] { dev_.CompleteAllFromAnotherThread(); });
}

// A completion thread (the replicator's stream thread, handling an ack) never waits for a
// client that does not read: when the socket is full, it leaves the reply
// to a worker and returns. The session runs on one end of a socketpair
// whose send buffer the test fills itself.
TEST(CompletionThreadTest, AFullSocketDoesNotBlockTheCompletionThread) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ParkingDevice dev;
  Stats stats;
  WorkerPool pool(2);
  ServerOptions options;
  std::vector<Export> exports = {{"vol", "", &dev}};
  Session session(sv[0], "test", exports, options, &pool, &stats);
  std::thread runner([&] { session.Run(); });
  TestClient client = TestClient::Adopt(sv[1]);
  ASSERT_TRUE(client.Handshake("vol").ok());
  ASSERT_TRUE(client.SendRequest(kCmdWrite, 0, 9, 0, 4, "abcd").ok());
  ASSERT_TRUE(dev.WaitForParked(1));

  // The session's socket is full: nothing the server sends now fits.
  const std::string filler(4096, 'f');
  uint64_t filled = 0;
  while (true) {
    ssize_t n = send(sv[0], filler.data(), filler.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) break;
    filled += static_cast<uint64_t>(n);
  }
  ASSERT_GT(filled, 0u);
  absl::Notification completed;
  std::thread completer([&] {
    dev.CompleteAllFromAnotherThread();
    completed.Notify();
  });
  EXPECT_TRUE(completed.WaitForNotificationWithTimeout(absl::Seconds(5)));

  // Once the client reads, the reply follows the filler, whole.
  auto skipped = client.ReadBytes(filled);
  ASSERT_TRUE(skipped.ok()) << skipped.status();
  auto reply = client.ReadReply();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->cookie, 9u);
  EXPECT_EQ(reply->error, 0u);
  completer.join();
  ASSERT_TRUE(client.SendRequest(kCmdDisc, 0, 10, 0, 0).ok());
  runner.join();
}

// Records which thread ran each write (by offset).
class ThreadRecordingDevice : public MemBlockDevice {
 public:
  ThreadRecordingDevice() : MemBlockDevice(kDevSize) {}
  absl::Status Write(uint64_t offset, absl::Span<const char> data, bool fua) override {
    char name[16] = {};
    pthread_getname_np(pthread_self(), name, sizeof(name));
    {
      absl::MutexLock lock(&mu_);
      thread_of_[offset] = name;
    }
    return MemBlockDevice::Write(offset, data, fua);
  }
  std::string ThreadOf(uint64_t offset) {
    absl::MutexLock lock(&mu_);
    return thread_of_[offset];
  }

 private:
  absl::Mutex mu_;
  std::map<uint64_t, std::string> thread_of_ ABSL_GUARDED_BY(mu_);
};

// At queue depth 1 the session's reader runs writes itself (no hand-off to
// a worker); requests already waiting behind one go to the workers.
TEST(QueueDepthOneTest, LoneWritesRunOnTheReaderPipelinedOnesOnWorkers) {
  ThreadRecordingDevice dev;
  std::unique_ptr<NbdServer> server;
  std::unique_ptr<TestClient> client;
  ASSERT_NO_FATAL_FAILURE(StartServerAndClient(&dev, ServerOptions(), &server, &client));
  constexpr uint64_t kSequential = 4;
  for (uint64_t i = 0; i < kSequential; ++i) {
    auto error = client->Write(i * 512, std::string(512, 's'));
    ASSERT_TRUE(error.ok() && *error == 0);
  }
  // The first has no history of being alone; the rest are queue depth 1.
  EXPECT_EQ(dev.ThreadOf(0), "nbd-worker");
  for (uint64_t i = 1; i < kSequential; ++i) EXPECT_EQ(dev.ThreadOf(i * 512), "nbd-session");

  // Eight writes in one send: all but the last find the next one waiting.
  constexpr int kPipelined = 8;
  constexpr uint64_t kBase = 64 << 10;
  std::string burst;
  for (int i = 0; i < kPipelined; ++i) {
    char header[kRequestHeaderSize];
    PutU32(header, kRequestMagic);
    PutU16(header + 4, 0);
    PutU16(header + 6, kCmdWrite);
    PutU64(header + 8, 100 + i);
    PutU64(header + 16, kBase + i * 512);
    PutU32(header + 24, 512);
    burst.append(header, sizeof(header));
    burst.append(512, 'p');
  }
  ASSERT_TRUE(client->SendRaw(burst).ok());
  for (int i = 0; i < kPipelined; ++i) {
    auto reply = client->ReadReply();
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->error, 0u);
  }
  for (int i = 0; i < kPipelined - 1; ++i) {
    EXPECT_EQ(dev.ThreadOf(kBase + i * 512), "nbd-worker") << "write " << i;
  }
  EXPECT_EQ(dev.Contents().substr(kBase, kPipelined * 512), std::string(kPipelined * 512, 'p'));
}

// A READ's buffer counts against the byte budget until its reply is sent;
// the budget is given back then, so reads beyond it still complete.
TEST_F(SessionLimitsTest, ReadRepliesGiveTheirBufferedBytesBack) {
  ServerOptions options;
  options.max_buffered_bytes_per_connection = 8192;
  StartServer(options);
  ASSERT_EQ(Write(0, std::string(4096, 'r')), 0u);
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(client_->SendRequest(kCmdRead, 0, i, 0, 4096).ok());
  }
  for (int i = 0; i < 40; ++i) {
    auto reply = client_->ReadReply();
    ASSERT_TRUE(reply.ok()) << reply.status();
    ASSERT_EQ(reply->error, 0u);
    auto data = client_->ReadBytes(4096);
    ASSERT_TRUE(data.ok()) << data.status();
    EXPECT_EQ(*data, std::string(4096, 'r'));
  }
}

TEST_F(SessionLimitsTest, OversizedWriteIsRefusedWithoutBufferingAndTheConnectionStaysUsable) {
  ServerOptions options;
  options.max_payload = 4096;
  StartServer(options);
  EXPECT_EQ(Write(0, std::string(1 << 20, 'x')), kErrInval);  // 256x the cap, consumed
  EXPECT_EQ(dev_.Contents().substr(0, 1), std::string(1, '\0'));
  std::string back;
  EXPECT_EQ(Read(0, 8192, &back), kErrInval);
  EXPECT_EQ(Write(0, std::string(4096, 'y')), 0u);
  EXPECT_EQ(Read(0, 4096, &back), 0u);
  EXPECT_EQ(back, std::string(4096, 'y'));
  EXPECT_EQ(Command(kCmdTrim, 0, 0, 65536), 0u);  // no payload: the cap does not apply
}

TEST_F(SessionLimitsTest, ReaderStopsAtTheInFlightLimit) {
  ServerOptions options;
  options.max_requests_per_connection = 4;
  StartServer(options);
  dev_.Gate();
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(client_->SendRequest(kCmdWrite, 0, i, i * 512, 512, std::string(512, 'z')).ok());
  }
  ASSERT_TRUE(dev_.WaitForWriters(4));
  dev_.ReleaseAll();
  std::set<uint64_t> cookies;
  for (int i = 0; i < 10; ++i) {
    auto reply = client_->ReadReply();
    ASSERT_TRUE(reply.ok()) << reply.status();
    cookies.insert(reply->cookie);
  }
  EXPECT_EQ(cookies.size(), 10u);
  EXPECT_EQ(dev_.max_writing(), 4);
}

TEST_F(SessionLimitsTest, ReaderStopsAtTheBufferedBytesLimit) {
  ServerOptions options;
  options.max_buffered_bytes_per_connection = 8192;
  StartServer(options);
  dev_.Gate();
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(client_->SendRequest(kCmdWrite, 0, i, i * 4096, 4096, std::string(4096, 'z')).ok());
  }
  ASSERT_TRUE(dev_.WaitForWriters(2));
  dev_.ReleaseAll();
  for (int i = 0; i < 6; ++i) {
    auto reply = client_->ReadReply();
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->error, 0u);
  }
  EXPECT_EQ(dev_.max_writing(), 2);
}

TEST(NbdErrorFromStatusTest, UsesWireValuesNotHostErrno) {
  EXPECT_EQ(NbdErrorFromStatus(absl::OkStatus()), 0u);
  EXPECT_EQ(NbdErrorFromStatus(absl::ResourceExhaustedError("")), 28u);
  EXPECT_EQ(NbdErrorFromStatus(absl::InvalidArgumentError("")), 22u);
  EXPECT_EQ(NbdErrorFromStatus(absl::OutOfRangeError("")), 22u);
  EXPECT_EQ(NbdErrorFromStatus(absl::UnimplementedError("")), 95u);
  EXPECT_EQ(NbdErrorFromStatus(absl::PermissionDeniedError("")), 1u);
  EXPECT_EQ(NbdErrorFromStatus(absl::UnavailableError("handed over")), 108u);  // ESHUTDOWN
  EXPECT_EQ(NbdErrorFromStatus(absl::DataLossError("")), 5u);
}

}  // namespace
}  // namespace blockrepl::nbd
