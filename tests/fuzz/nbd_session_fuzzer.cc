// Fuzzes an NBD client connection end to end: the handshake (options, GO/INFO/EXPORT_NAME/
// LIST/ABORT, structured replies refused...) and the transmission loop (request headers, payload
// lengths, flags, ranges), running the real nbd::Session over a socketpair against a 1 MiB
// in-memory export. The server must never crash, hang, or touch memory outside the export,
// whatever the client sends.
//
// Input: byte 0 picks the starting point. Even: the input is the whole client side from the
// first byte after the server's greeting (client flags, then options). Odd: a valid handshake
// (fixed newstyle, OPT_GO for the default export) is sent first and the rest of the input is the
// transmission phase, so mutations spend their time on request parsing.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/mem_block_device.h"
#include "primary/nbd/nbd_options.h"
#include "primary/nbd/nbd_wire.h"
#include "primary/nbd/session.h"
#include "primary/nbd/worker_pool.h"

namespace {

using namespace blockrepl;
using namespace blockrepl::nbd;

constexpr uint64_t kExportSize = 1 << 20;

// Client flags (FIXED_NEWSTYLE | NO_ZEROES), then NBD_OPT_GO for the default export "" with no
// information requests.
std::string ValidHandshake() {
  std::string s;
  AppendU32(&s, 3);
  AppendU64(&s, 0x49484156454F5054ull);  // "IHAVEOPT"
  AppendU32(&s, 7);                       // NBD_OPT_GO
  AppendU32(&s, 6);                       // length: name length (4) + name "" + 0 info requests (2)
  AppendU32(&s, 0);
  AppendU16(&s, 0);
  return s;
}

// Everything the server sends is read and dropped, so it never blocks on a full socket.
void Drain(int fd) {
  char buf[64 << 10];
  while (read(fd, buf, sizeof buf) > 0) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  SilenceLogs();
  signal(SIGPIPE, SIG_IGN);  // the server may close first; a write must fail, not kill us
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static MemBlockDevice* device = new MemBlockDevice(kExportSize);
  static WorkerPool* pool = new WorkerPool(4);
  static ServerOptions* options = [] {
    auto* o = new ServerOptions;
    o->max_payload = 256 << 10;  // small, so a fuzzed length hits the cap rather than RAM
    o->max_requests_per_connection = 16;
    o->max_buffered_bytes_per_connection = 1 << 20;
    return o;
  }();
  static std::vector<Export>* exports = [] {
    auto* v = new std::vector<Export>(1);
    (*v)[0].name = "fuzz";
    (*v)[0].device = device;
    return v;
  }();
  static Stats* stats = new Stats;

  std::string client;
  if (data[0] & 1) client = ValidHandshake();
  client.append(reinterpret_cast<const char*>(data + 1), size - 1);

  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return 0;
  // The client: sends its bytes, then half-closes (EOF after the last one) and reads replies.
  std::thread client_thread([fd = fds[1], &client] {
    size_t sent = 0;
    while (sent < client.size()) {
      ssize_t n = write(fd, client.data() + sent, client.size() - sent);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    shutdown(fd, SHUT_WR);
  });
  std::thread drain_thread(Drain, fds[1]);
  {
    Session session(fds[0], "fuzz", *exports, *options, pool, stats);
    session.Run();  // returns at EOF, DISC or the first fatal protocol error
  }
  client_thread.join();
  drain_thread.join();
  close(fds[1]);
  return 0;
}
