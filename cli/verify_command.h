// `replctl verify`: online comparison of both stores of a connected pair,
// run by the primary (see primary/verifier.h). Shows a progress bar on a
// terminal. Exit codes: 0 the stores are equal, 3 chunks differ (flagged
// for resync with --repair), 1 the verify could not run, 2 usage.
#pragma once

#include <cstdint>
#include <string>

namespace blockrepl {

inline constexpr int kExitDifferencesFound = 3;

int RunVerifyCommand(const std::string& admin_socket, const std::string& volume, bool repair,
                     uint64_t offset, uint64_t length, bool json);

}  // namespace blockrepl
