// nbd-file-server: serves one file (or block device) over NBD with the
// blockrepl NBD frontend. A dev/test tool for checking the frontend against
// real clients (nbdsh, qemu-io, fio, nbd-client) without the replication
// layers. The file-backed BlockDevice below is deliberately minimal.
//
//   nbd-file-server [--tcp HOST:PORT | --unix PATH] [--name NAME] [--threads N] FILE
//
// Runs until SIGINT/SIGTERM, then prints the counters.
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "primary/nbd/nbd_server.h"

namespace blockrepl {
namespace {

// pread/pwrite on a descriptor; fdatasync for Flush and FUA. Thread-safe
// because positional I/O shares no file offset.
class FileBlockDevice : public BlockDevice {
 public:
  FileBlockDevice(int fd, uint64_t size, std::string path)
      : fd_(fd), size_(size), path_(std::move(path)) {}
  ~FileBlockDevice() override { close(fd_); }

  uint64_t Size() const override { return size_; }

  absl::Status Read(uint64_t offset, absl::Span<char> out) override {
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = pread(fd_, out.data() + done, out.size() - done, offset + done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return PosixError(absl::StrCat("pread ", path_, " @", offset + done));
      if (n == 0) {  // a file shorter than it was: reads as zeroes
        memset(out.data() + done, 0, out.size() - done);
        break;
      }
      done += n;
    }
    return absl::OkStatus();
  }

  absl::Status Write(uint64_t offset, absl::Span<const char> data, bool fua) override {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = pwrite(fd_, data.data() + done, data.size() - done, offset + done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return PosixError(absl::StrCat("pwrite ", path_, " @", offset + done));
      done += n;
    }
    return fua ? Flush() : absl::OkStatus();
  }

  absl::Status Flush() override {
    if (fdatasync(fd_) != 0) return PosixError(absl::StrCat("fdatasync ", path_));
    return absl::OkStatus();
  }

  absl::Status Trim(uint64_t offset, uint64_t length, bool fua) override {
    return WriteZeroes(offset, length, /*may_trim=*/true, fua);
  }

  absl::Status WriteZeroes(uint64_t offset, uint64_t length, bool may_trim, bool fua) override {
    int mode = may_trim ? (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) : FALLOC_FL_ZERO_RANGE;
    if (length == 0 || fallocate(fd_, mode, offset, length) == 0) {
      return fua ? Flush() : absl::OkStatus();
    }
    // Filesystems without the fallocate mode: write the zeroes.
    static const std::string kZeroes(1 << 20, '\0');
    while (length > 0) {
      uint64_t piece = std::min<uint64_t>(length, kZeroes.size());
      RETURN_IF_ERROR(Write(offset, absl::Span<const char>(kZeroes.data(), piece), false));
      offset += piece;
      length -= piece;
    }
    return fua ? Flush() : absl::OkStatus();
  }

 private:
  const int fd_;
  const uint64_t size_;
  const std::string path_;
};

int Usage() {
  fprintf(stderr,
          "usage: nbd-file-server [--tcp HOST:PORT | --unix PATH] [--name NAME] "
          "[--threads N] FILE\n");
  return 2;
}

int Main(int argc, char** argv) {
  nbd::ServerOptions options;
  std::string name = "file", path;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    bool has_value = i + 1 < argc;
    if (arg == "--tcp" && has_value) {
      options.tcp_listen = argv[++i];
    } else if (arg == "--unix" && has_value) {
      options.unix_socket = argv[++i];
    } else if (arg == "--name" && has_value) {
      name = argv[++i];
    } else if (arg == "--threads" && has_value) {
      options.worker_threads = atoi(argv[++i]);
    } else if (!arg.empty() && arg[0] != '-' && path.empty()) {
      path = arg;
    } else {
      return Usage();
    }
  }
  if (path.empty()) return Usage();
  if (options.tcp_listen.empty() && options.unix_socket.empty())
    options.tcp_listen = "127.0.0.1:10809";

  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    perror(path.c_str());
    return 1;
  }
  off_t size = lseek(fd, 0, SEEK_END);
  if (size < 0) {
    perror("lseek");
    return 1;
  }
  FileBlockDevice device(fd, static_cast<uint64_t>(size), path);

  // Block the signals before any thread starts so only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = nbd::NbdServer::Start(options, {{name, path, &device}});
  if (!server.ok()) {
    fprintf(stderr, "%s\n", server.status().ToString().c_str());
    return 1;
  }
  printf("serving %s (%lld bytes) as '%s' on %s\n", path.c_str(), static_cast<long long>(size),
         name.c_str(), (*server)->address().c_str());
  fflush(stdout);
  int sig;
  sigwait(&signals, &sig);
  auto stop_start = std::chrono::steady_clock::now();
  (*server)->Stop();
  printf("signal %d: stopped in %lld ms\n", sig,
         static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::steady_clock::now() - stop_start)
                                    .count()));

  const nbd::Stats& s = (*server)->stats();
  static const char* kNames[] = {"read", "write", "disc", "flush", "trim", "cache", "zero", "bs"};
  for (int i = 0; i < nbd::kNumStatsCommands; ++i) {
    if (s.requests[i].load() == 0) continue;
    printf("%s: %llu requests, %llu errors\n", kNames[i],
           static_cast<unsigned long long>(s.requests[i].load()),
           static_cast<unsigned long long>(s.errors[i].load()));
  }
  printf("connections %llu, handshake failures %llu, bytes read %llu, written %llu\n",
         static_cast<unsigned long long>(s.connections_total.load()),
         static_cast<unsigned long long>(s.handshake_failures.load()),
         static_cast<unsigned long long>(s.bytes_read.load()),
         static_cast<unsigned long long>(s.bytes_written.load()));
  return 0;
}

}  // namespace
}  // namespace blockrepl

int main(int argc, char** argv) { return blockrepl::Main(argc, argv); }
