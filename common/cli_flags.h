// Helpers for the agents' command lines (CLI11): size options with
// suffixes and the CLI11-to-exit-code convention (usage errors exit 2).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/config_file.h"

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

// Parses the arguments one volume section of a config file expands to
// (ConfigArgs) with the agent's own flag definitions. Keys that are no flag
// of `app`, and agent-wide keys inside a volume section, are refused with
// FILE:LINE. Returns "" on success, else the one-line error.
std::string ParseConfigVolume(CLI::App& app, const ConfigFile& file, const ConfigSection& volume,
                              const std::vector<std::string>& agent_wide_keys);

// Finds `--config FILE` / `--config=FILE` (or `--check-config`, which only
// validates: *check_only) in argv: true if present (then *path is set, or
// *usage_error when other arguments accompany it).
bool FindConfigArgument(int argc, char** argv, std::string* path, bool* check_only,
                        std::string* usage_error);
// Config files: a volume whose store another volume already uses would be
// written by two pipelines. "" if `store` is not among `earlier` (volume,
// store) pairs, else the error naming both volumes.
std::string SharedStoreError(const std::string& path,
                             const std::vector<std::pair<std::string, std::string>>& earlier,
                             const std::string& volume, const std::string& store);

// `--check-config` succeeded (like `nginx -t`: nothing opened or started):
// prints "FILE: OK, N volume(s): a, b" and returns the exit code 0.
int ReportConfigChecked(const std::string& path, const std::vector<std::string>& volumes);

}  // namespace blockrepl
