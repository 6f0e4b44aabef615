// Minimal leveled logging to stderr: one line per event, prefixed with a
// timestamp and the program name. Debian's Abseil has no absl/log, and the
// agents log rarely (state changes, errors), so this stays deliberately small.
// Thread-safe: each line is written with a single write(2).
#pragma once

#include <string_view>

#include "absl/strings/str_cat.h"

namespace blockrepl {

enum class LogLevel { kInfo, kWarning, kError };

void SetLogProgramName(std::string_view name);
// Drops every line from now on (fuzzers: millions of refused inputs, each logged, would drown
// the one report that matters).
void SilenceLogs();
void LogLine(LogLevel level, std::string_view message);

template <typename... Args>
void LogInfo(const Args&... args) {
  LogLine(LogLevel::kInfo, absl::StrCat(args...));
}
template <typename... Args>
void LogWarning(const Args&... args) {
  LogLine(LogLevel::kWarning, absl::StrCat(args...));
}
template <typename... Args>
void LogError(const Args&... args) {
  LogLine(LogLevel::kError, absl::StrCat(args...));
}

}  // namespace blockrepl
