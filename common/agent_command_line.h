// The command-line contract both agents share, written once: flags for one volume, or
// `--config FILE` for several (each [volume] section parsed by the same flag definitions as the
// command line, so the file and the flags cannot drift apart), or `--check-config FILE`, which
// validates like `nginx -t` and exits.
//
// An agent describes itself with a traits struct:
//
//   struct PrimaryAgent {
//     struct Flags { PrimaryAgentOptions agent; PrimaryVolumeOptions volume; ... };
//     static constexpr char kProgram[] = "repl-primary";
//     static constexpr char kDescription[] = "...";
//     static std::vector<std::string> ConfigAgentWideKeys();   // keys before the first [volume]
//     static void Define(CLI::App& app, Flags& f);              // the flag definitions
//     static std::string Finish(Flags& f);                      // checks across flags: "" or error
//     static std::string CheckConfigVolume(const std::string& path, const Flags& f);
//   };
//
// Flags::agent is the agent's options struct (with a `volumes` vector) and Flags::volume one
// volume's options (with `volume` and `store_path`).
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "common/cli_flags.h"
#include "common/config_file.h"

namespace blockrepl {

namespace agent_command_line_internal {

// `--config FILE`: every [volume] section in file order; -1 to go on, else the exit code (2
// after printing the error, which names the file and section).
template <typename Agent, typename AgentOptions>
int ParseConfig(const std::string& path, AgentOptions* out) {
  auto file = LoadConfigFile(path);
  if (!file.ok()) {
    std::fprintf(stderr, "%s: %s\n", Agent::kProgram, std::string(file.status().message()).c_str());
    return 2;
  }
  for (const ConfigSection& section : file->volumes) {
    CLI::App app{Agent::kDescription, Agent::kProgram};
    typename Agent::Flags f;
    Agent::Define(app, f);
    std::string error = ParseConfigVolume(app, *file, section, Agent::ConfigAgentWideKeys());
    if (error.empty()) error = Agent::CheckConfigVolume(path, f);
    if (error.empty()) error = Agent::Finish(f);
    if (error.empty()) {
      std::vector<std::pair<std::string, std::string>> stores;  // volume, store
      for (const auto& v : out->volumes) stores.emplace_back(v.volume, v.store_path);
      error = SharedStoreError(path, stores, f.volume.volume, f.volume.store_path);
    }
    if (!error.empty()) {
      if (error.find(path) == std::string::npos) {
        error = absl::StrCat(path, ", [volume ", section.volume, "]: ", error);
      }
      std::fprintf(stderr, "%s: %s\n", Agent::kProgram, error.c_str());
      return 2;
    }
    // Agent-wide settings come from the keys before the first section, the same in every
    // section's parse; the volumes accumulate.
    auto volumes = std::move(out->volumes);
    *out = f.agent;
    out->volumes = std::move(volumes);
    out->volumes.push_back(f.volume);
  }
  return -1;
}

}  // namespace agent_command_line_internal

// -1 to go on with *out filled; otherwise the exit code (0 after --help or a successful
// --check-config, 2 for a usage or configuration error, already reported on stderr).
template <typename Agent, typename AgentOptions>
int ParseAgentCommandLine(int argc, char** argv, AgentOptions* out) {
  std::string config, usage_error;
  bool check_only = false;
  if (FindConfigArgument(argc, argv, &config, &check_only, &usage_error)) {
    if (!usage_error.empty()) {
      std::fprintf(stderr, "%s: %s\n", Agent::kProgram, usage_error.c_str());
      return 2;
    }
    const int code = agent_command_line_internal::ParseConfig<Agent>(config, out);
    if (code >= 0 || !check_only) return code;
    std::vector<std::string> names;
    for (const auto& v : out->volumes) names.push_back(v.volume);
    return ReportConfigChecked(config, names);
  }
  CLI::App app{Agent::kDescription, Agent::kProgram};
  typename Agent::Flags f;
  Agent::Define(app, f);
  if (int code = ParseOrExitCode(app, argc, argv); code >= 0) return code;
  if (std::string error = Agent::Finish(f); !error.empty()) {
    std::fprintf(stderr, "%s: %s\n", Agent::kProgram, error.c_str());
    return 2;
  }
  *out = f.agent;
  out->volumes = {f.volume};
  return -1;
}

}  // namespace blockrepl
