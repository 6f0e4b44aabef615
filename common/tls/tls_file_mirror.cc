#include "common/tls/tls_file_mirror.h"

#include <sys/mman.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/thread_name.h"

namespace blockrepl {
namespace {

constexpr absl::Duration kWatchPeriod = absl::Seconds(1);

std::string FdPath(int fd) { return absl::StrCat("/proc/self/fd/", fd); }

// A memory file holding `bytes`, or -1.
int MemoryFileWith(const std::string& bytes) {
  const int fd = memfd_create("blockrepl-tls", MFD_CLOEXEC);
  if (fd < 0) return -1;
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      close(fd);
      return -1;
    }
    done += static_cast<size_t>(n);
  }
  return fd;
}

bool ReadWhole(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream bytes;
  bytes << in.rdbuf();
  *out = bytes.str();
  return static_cast<bool>(in) || in.eof();
}

// What the watcher compares to notice a changed file (a rename gives a new inode).
using FileStamp = std::tuple<ino_t, off_t, int64_t, int64_t>;
FileStamp StampOf(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return {0, -1, 0, 0};
  return {st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
}

class Mirror {
 public:
  explicit Mirror(TlsOptions files) : files_(std::move(files)) {}

  // Checks and publishes the files' current contents; the error if they do
  // not pass (then what was published before stays).
  absl::Status Refresh() {
    absl::MutexLock lock(&mu_);
    const std::array<const std::string*, 3> paths = {&files_.cert, &files_.key, &files_.ca};
    std::array<FileStamp, 3> stamps;
    std::array<int, 3> fresh = {-1, -1, -1};
    auto close_fresh = [&] {
      for (int& fd : fresh) {
        if (fd >= 0) close(fd);
        fd = -1;
      }
    };
    for (size_t i = 0; i < 3; ++i) stamps[i] = StampOf(*paths[i]);
    // A set that fails is reported once per change, not every second.
    stamps_ = stamps;
    for (size_t i = 0; i < 3; ++i) {
      std::string bytes;
      if (!ReadWhole(*paths[i], &bytes)) {
        close_fresh();
        return absl::NotFoundError(absl::StrCat("cannot read ", *paths[i]));
      }
      fresh[i] = MemoryFileWith(bytes);
      if (fresh[i] < 0) {
        close_fresh();
        return absl::InternalError("cannot create a memory file for the TLS files");
      }
    }
    // The very bytes that will be published pass the same check as at start.
    const TlsOptions candidate = AtFds(fresh);
    absl::Status checked = CheckTlsFiles(candidate);
    if (!checked.ok()) {
      close_fresh();
      // The check names the memory files; say which of the operator's it means.
      return absl::Status(checked.code(), Describe(std::string(checked.message()), candidate));
    }
    if (published_[0] < 0) {
      published_ = fresh;  // the first set: its numbers become the paths
      return absl::OkStatus();
    }
    for (size_t i = 0; i < 3; ++i) {
      // Atomic: a reader sees the old file or the new. dup3, not dup2, keeps
      // the descriptor close-on-exec.
      const bool swapped = dup3(fresh[i], published_[i], O_CLOEXEC) >= 0;
      close(fresh[i]);
      if (!swapped) {
        return absl::InternalError(absl::StrCat("cannot swap in the new TLS files: ",
                                                strerror(errno)));
      }
    }
    return absl::OkStatus();
  }

  TlsOptions PublishedPaths() {
    absl::MutexLock lock(&mu_);
    return AtFds(published_);
  }

  void StartWatching() {
    std::thread([this] {
      NameThisThread("tls-watch");
      while (true) {
        absl::SleepFor(kWatchPeriod);
        if (!Changed()) continue;
        if (absl::Status s = Refresh(); !s.ok()) {
          LogError("TLS files changed but were not taken (the previous certificates stay in "
                   "use): ", s.message());
        } else {
          LogInfo("TLS files ", files_.cert, " reloaded: new connections use them");
        }
      }
    }).detach();  // a mirror lives as long as the process
  }

 private:
  // These options with their files at the memory files `fds` (cert, key, ca).
  TlsOptions AtFds(const std::array<int, 3>& fds) const {
    TlsOptions out = files_;
    out.cert = FdPath(fds[0]);
    out.key = FdPath(fds[1]);
    out.ca = FdPath(fds[2]);
    return out;
  }

  bool Changed() {
    absl::MutexLock lock(&mu_);
    return stamps_ != std::array<FileStamp, 3>{StampOf(files_.cert), StampOf(files_.key),
                                               StampOf(files_.ca)};
  }

  // The check's message with the memory files' paths named as the operator's.
  std::string Describe(std::string message, const TlsOptions& candidate) {
    std::array<std::pair<const std::string*, const std::string*>, 3> names = {
        std::pair{&candidate.cert, &files_.cert}, std::pair{&candidate.key, &files_.key},
        std::pair{&candidate.ca, &files_.ca}};
    // Longest first: /proc/self/fd/1 is a prefix of /proc/self/fd/12.
    std::sort(names.begin(), names.end(),
              [](const auto& a, const auto& b) { return a.first->size() > b.first->size(); });
    for (const auto& [memory, original] : names) {
      for (size_t at = message.find(*memory); at != std::string::npos;
           at = message.find(*memory, at + original->size())) {
        message.replace(at, memory->size(), *original);
      }
    }
    return message;
  }

  const TlsOptions files_;
  absl::Mutex mu_;
  std::array<int, 3> published_ ABSL_GUARDED_BY(mu_) = {-1, -1, -1};
  std::array<FileStamp, 3> stamps_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<TlsOptions> MirrorTlsFiles(const TlsOptions& tls) {
  if (!tls.enabled()) return tls;
  static absl::Mutex registry_mu;
  static auto* registry = new std::map<std::tuple<std::string, std::string, std::string>,
                                       std::unique_ptr<Mirror>>();
  absl::MutexLock lock(&registry_mu);
  auto& mirror = (*registry)[{tls.cert, tls.key, tls.ca}];
  if (mirror == nullptr) {
    auto fresh = std::make_unique<Mirror>(tls);
    if (absl::Status s = fresh->Refresh(); !s.ok()) return s;
    fresh->StartWatching();
    mirror = std::move(fresh);
  }
  TlsOptions out = mirror->PublishedPaths();
  out.peer_name = tls.peer_name;
  out.insecure = tls.insecure;
  return out;
}

}  // namespace blockrepl
