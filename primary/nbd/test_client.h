// TestClient: a deliberately small, blocking NBD client for the unit tests.
// It speaks only what the tests need and lets them send malformed things
// (bad magic, oversized options, unknown flags) on purpose. Owned by one
// test thread; not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace blockrepl::nbd {

struct OptionReply {
  uint32_t option = 0;
  uint32_t type = 0;
  std::string data;
};

struct SimpleReply {
  uint32_t error = 0;
  uint64_t cookie = 0;
};

struct GoResult {
  uint64_t size = 0;
  uint16_t transmission_flags = 0;
  uint32_t min_block = 0, preferred_block = 0, max_block = 0;  // 0 = not sent
  std::string name;                                            // if NBD_INFO_NAME came back
};

class TestClient {
 public:
  // `address` is "HOST:PORT" or a unix socket path (contains '/').
  static absl::StatusOr<TestClient> Connect(const std::string& address);
  // A client on an already connected socket (e.g. one end of a socketpair).
  static TestClient Adopt(int fd) { return TestClient(fd); }
  TestClient(TestClient&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  TestClient& operator=(TestClient&&) = delete;
  ~TestClient();

  // Handshake pieces.
  absl::StatusOr<uint16_t> ReadGreeting();  // returns the server's handshake flags
  absl::Status SendClientFlags(uint32_t flags);
  absl::Status SendOption(uint32_t option, std::string_view data);
  // Sends an option header claiming `length` bytes without sending them.
  absl::Status SendOptionHeader(uint32_t option, uint32_t length);
  absl::StatusOr<OptionReply> ReadOptionReply();
  // Greeting + flags (FIXED_NEWSTYLE|NO_ZEROES) + GO `name`, asking for
  // NBD_INFO_BLOCK_SIZE and NBD_INFO_NAME; fails unless the server ACKs.
  absl::StatusOr<GoResult> Handshake(std::string_view name = "");
  static std::string GoPayload(std::string_view name, std::initializer_list<uint16_t> infos);

  // Transmission.
  absl::Status SendRequest(uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset,
                           uint32_t length, std::string_view payload = {});
  absl::Status SendRaw(std::string_view bytes);
  absl::StatusOr<SimpleReply> ReadReply();
  absl::StatusOr<std::string> ReadBytes(size_t n);

  // One request, one reply (cookie checked). Returns the NBD error.
  absl::StatusOr<uint32_t> Read(uint64_t offset, uint32_t length, std::string* out);
  absl::StatusOr<uint32_t> Write(uint64_t offset, std::string_view data, uint16_t flags = 0);
  absl::StatusOr<uint32_t> Command(uint16_t type, uint16_t flags, uint64_t offset, uint32_t length);

  // True if the server closes the connection within 5 s (EOF or reset);
  // any bytes it sends first are skipped.
  bool WaitForClose();

  int fd() const { return fd_; }

 private:
  explicit TestClient(int fd) : fd_(fd) {}
  int fd_;
  uint64_t next_cookie_ = 1000;
};

}  // namespace blockrepl::nbd
