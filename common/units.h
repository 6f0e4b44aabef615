// Parsing and printing of byte sizes ("64M", "1G", "65536") for flags,
// config and status output. Suffixes are binary (K = 1024), as in mdadm/dd.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace blockrepl {

// Accepts a decimal number with an optional K/M/G/T suffix (optionally
// followed by "iB" or "B"). Rejects negatives, garbage and overflow.
absl::StatusOr<uint64_t> ParseSize(std::string_view text);

// "64.0 MiB", "512 B": for humans, never parsed back.
std::string FormatBytes(uint64_t bytes);

// "1h02m", "45s": for ETAs.
std::string FormatDuration(double seconds);

}  // namespace blockrepl
