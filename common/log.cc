#include "common/log.h"

#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include "absl/strings/str_format.h"

namespace blockrepl {
namespace {
std::string& ProgramName() {
  static std::string* name = new std::string("blockrepl");
  return *name;
}
std::atomic<bool> silenced{false};
}  // namespace

void SilenceLogs() { silenced.store(true, std::memory_order_relaxed); }

void SetLogProgramName(std::string_view name) { ProgramName() = std::string(name); }

void LogLine(LogLevel level, std::string_view message) {
  if (silenced.load(std::memory_order_relaxed)) return;
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  struct tm tm;
  localtime_r(&tv.tv_sec, &tm);
  const char* tag = level == LogLevel::kInfo ? "" : level == LogLevel::kWarning ? "warning: " : "error: ";
  std::string line = absl::StrFormat("%04d-%02d-%02d %02d:%02d:%02d.%03d %s: %s%s\n",
                                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                                     tm.tm_min, tm.tm_sec, static_cast<int>(tv.tv_usec / 1000),
                                     ProgramName(), tag, std::string(message));
  ssize_t ignored = write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace blockrepl
