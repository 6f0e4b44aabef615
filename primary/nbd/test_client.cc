#include "primary/nbd/test_client.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "primary/nbd/nbd_wire.h"
#include "primary/nbd/socket_io.h"

namespace blockrepl::nbd {

absl::StatusOr<TestClient> TestClient::Connect(const std::string& address) {
  int fd;
  if (address.find('/') != std::string::npos) {
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {};
    sun.sun_family = AF_UNIX;
    strncpy(sun.sun_path, address.c_str(), sizeof(sun.sun_path) - 1);
    if (connect(fd, reinterpret_cast<struct sockaddr*>(&sun), sizeof(sun)) != 0) {
      close(fd);
      return PosixError(absl::StrCat("connect ", address));
    }
    return TestClient(fd);
  }
  size_t colon = address.rfind(':');
  std::string host = address.substr(0, colon), port = address.substr(colon + 1);
  if (host.size() > 1 && host[0] == '[') host = host.substr(1, host.size() - 2);
  struct addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("resolve ", address));
  }
  fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int rc = connect(fd, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (rc != 0) {
    close(fd);
    return PosixError(absl::StrCat("connect ", address));
  }
  return TestClient(fd);
}

TestClient::~TestClient() {
  if (fd_ >= 0) close(fd_);
}

absl::StatusOr<uint16_t> TestClient::ReadGreeting() {
  char b[18];
  RETURN_IF_ERROR(ReadFull(fd_, absl::MakeSpan(b)));
  if (GetU64(b) != kNbdMagic || GetU64(b + 8) != kIHaveOpt) {
    return absl::DataLossError("bad greeting");
  }
  return GetU16(b + 16);
}

absl::Status TestClient::SendClientFlags(uint32_t flags) {
  char b[4];
  PutU32(b, flags);
  return SendRaw(std::string_view(b, 4));
}

absl::Status TestClient::SendOptionHeader(uint32_t option, uint32_t length) {
  std::string m;
  AppendU64(&m, kIHaveOpt);
  AppendU32(&m, option);
  AppendU32(&m, length);
  return SendRaw(m);
}

absl::Status TestClient::SendOption(uint32_t option, std::string_view data) {
  RETURN_IF_ERROR(SendOptionHeader(option, static_cast<uint32_t>(data.size())));
  return SendRaw(data);
}

absl::StatusOr<OptionReply> TestClient::ReadOptionReply() {
  char b[20];
  RETURN_IF_ERROR(ReadFull(fd_, absl::MakeSpan(b)));
  if (GetU64(b) != kOptReplyMagic) return absl::DataLossError("bad option reply magic");
  OptionReply r;
  r.option = GetU32(b + 8);
  r.type = GetU32(b + 12);
  ASSIGN_OR_RETURN(r.data, ReadBytes(GetU32(b + 16)));
  return r;
}

std::string TestClient::GoPayload(std::string_view name, std::initializer_list<uint16_t> infos) {
  std::string p;
  AppendU32(&p, static_cast<uint32_t>(name.size()));
  p.append(name);
  AppendU16(&p, static_cast<uint16_t>(infos.size()));
  for (uint16_t i : infos) AppendU16(&p, i);
  return p;
}

absl::StatusOr<GoResult> TestClient::Handshake(std::string_view name) {
  ASSIGN_OR_RETURN(uint16_t flags, ReadGreeting());
  if ((flags & kFlagFixedNewstyle) == 0) return absl::DataLossError("not fixed newstyle");
  RETURN_IF_ERROR(SendClientFlags(kClientFixedNewstyle | kClientNoZeroes));
  RETURN_IF_ERROR(SendOption(kOptGo, GoPayload(name, {kInfoBlockSize, kInfoName})));
  GoResult result;
  while (true) {
    ASSIGN_OR_RETURN(OptionReply r, ReadOptionReply());
    if (r.type == kRepAck) return result;
    if (r.type != kRepInfo || r.data.size() < 2) {
      return absl::FailedPreconditionError(absl::StrCat("GO refused: 0x", absl::Hex(r.type)));
    }
    const char* d = r.data.data();
    switch (GetU16(d)) {
      case kInfoExport:
        result.size = GetU64(d + 2);
        result.transmission_flags = GetU16(d + 10);
        break;
      case kInfoBlockSize:
        result.min_block = GetU32(d + 2);
        result.preferred_block = GetU32(d + 6);
        result.max_block = GetU32(d + 10);
        break;
      case kInfoName:
        result.name = r.data.substr(2);
        break;
    }
  }
}

absl::Status TestClient::SendRequest(uint16_t type, uint16_t flags, uint64_t cookie,
                                     uint64_t offset, uint32_t length, std::string_view payload) {
  std::string m;
  AppendU32(&m, kRequestMagic);
  AppendU16(&m, flags);
  AppendU16(&m, type);
  AppendU64(&m, cookie);
  AppendU64(&m, offset);
  AppendU32(&m, length);
  m.append(payload);
  return SendRaw(m);
}

absl::Status TestClient::SendRaw(std::string_view bytes) { return WriteFull(fd_, bytes); }

absl::StatusOr<SimpleReply> TestClient::ReadReply() {
  char b[16];
  RETURN_IF_ERROR(ReadFull(fd_, absl::MakeSpan(b)));
  if (GetU32(b) != kSimpleReplyMagic) return absl::DataLossError("bad reply magic");
  return SimpleReply{GetU32(b + 4), GetU64(b + 8)};
}

absl::StatusOr<std::string> TestClient::ReadBytes(size_t n) {
  std::string s(n, '\0');
  RETURN_IF_ERROR(ReadFull(fd_, absl::MakeSpan(s)));
  return s;
}

absl::StatusOr<uint32_t> TestClient::Read(uint64_t offset, uint32_t length, std::string* out) {
  uint64_t cookie = next_cookie_++;
  RETURN_IF_ERROR(SendRequest(kCmdRead, 0, cookie, offset, length));
  ASSIGN_OR_RETURN(SimpleReply r, ReadReply());
  if (r.cookie != cookie) return absl::DataLossError("cookie mismatch");
  if (r.error == 0) {
    ASSIGN_OR_RETURN(*out, ReadBytes(length));
  }
  return r.error;
}

absl::StatusOr<uint32_t> TestClient::Write(uint64_t offset, std::string_view data, uint16_t flags) {
  uint64_t cookie = next_cookie_++;
  RETURN_IF_ERROR(
      SendRequest(kCmdWrite, flags, cookie, offset, static_cast<uint32_t>(data.size()), data));
  ASSIGN_OR_RETURN(SimpleReply r, ReadReply());
  if (r.cookie != cookie) return absl::DataLossError("cookie mismatch");
  return r.error;
}

absl::StatusOr<uint32_t> TestClient::Command(uint16_t type, uint16_t flags, uint64_t offset,
                                             uint32_t length) {
  uint64_t cookie = next_cookie_++;
  RETURN_IF_ERROR(SendRequest(type, flags, cookie, offset, length));
  ASSIGN_OR_RETURN(SimpleReply r, ReadReply());
  if (r.cookie != cookie) return absl::DataLossError("cookie mismatch");
  return r.error;
}

bool TestClient::WaitForClose() {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    struct pollfd p = {fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return true;
  }
  return false;
}

}  // namespace blockrepl::nbd
