// Agent configuration files: one file per agent, several volumes per agent,
// as an alternative to the command line. The keys are the long flag names
// without "--", so the file and the flags share one contract and one
// validator (each volume's keys are parsed by the same CLI definition):
//
//   # repl-primary configuration
//   admin-socket = /run/blockrepl/primary.sock      <- agent-wide keys first
//   nbd-listen = 0.0.0.0:10809
//
//   [volume db]                                      <- then one section per volume
//   store = /dev/vg0/db
//   secondary = dr-site.example.net:7700
//   sync = true                                      <- flags take true/false
//
// Whole-line comments start with '#' or ';'. Thread-compatible value type.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace blockrepl {

struct ConfigEntry {
  std::string key;
  std::string value;
  int line = 0;
};

struct ConfigSection {
  std::string volume;
  int line = 0;
  std::vector<ConfigEntry> entries;
};

struct ConfigFile {
  std::string path;
  std::vector<ConfigEntry> agent;       // keys before the first section
  std::vector<ConfigSection> volumes;   // in file order, names unique
};

// Reads and parses FILE; errors name the file and line ("FILE:12: ...").
absl::StatusOr<ConfigFile> LoadConfigFile(const std::string& path);
absl::StatusOr<ConfigFile> ParseConfigText(const std::string& path, const std::string& text);

// "--key=value" arguments for the agent keys, `--volume=NAME` and the
// section's keys, in that order (program name first).
std::vector<std::string> ConfigArgs(const std::string& program, const ConfigFile& file,
                                    const ConfigSection& volume);

}  // namespace blockrepl
