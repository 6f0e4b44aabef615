// Helpers for the agents' command lines (CLI11): size options with
// suffixes and the CLI11-to-exit-code convention (usage errors exit 2).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace blockrepl {

// A CLI11 validator accepting sizes like "64M", "1G", "4096".
CLI::Validator SizeValidator();
// Parses a size already checked by SizeValidator (0 for empty).
uint64_t SizeOrDie(const std::string& text);

// Checks a HOST:PORT listen address ("[v6]:PORT" for IPv6) without binding:
// "" if fine, else what is wrong.
std::string ValidateListenAddress(const std::string& listen);
CLI::Validator ListenAddressValidator();

// Runs app.parse; on error prints CLI11's message and returns the exit code
// to use (0 for --help, 2 for usage errors), else -1.
int ParseOrExitCode(CLI::App& app, int argc, char** argv);

}  // namespace blockrepl
