// FileSizeLimit: RLIMIT_FSIZE for the life of the object, so the kernel
// refuses writes at and beyond `bytes` (EFBIG) and cuts short one that crosses
// it: a failing disk on demand. SIGXFSZ is ignored meanwhile (its default
// would kill the test). Tests only; affects the whole process.
#pragma once

#include <sys/resource.h>

#include <csignal>
#include <cstdint>

namespace blockrepl {

class FileSizeLimit {
 public:
  explicit FileSizeLimit(uint64_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit = saved_;
    limit.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit saved_;
  void (*old_handler_)(int);
};

}  // namespace blockrepl
