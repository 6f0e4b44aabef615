#include "common/cli_flags.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/units.h"

namespace blockrepl {

CLI::Validator SizeValidator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        auto size = ParseSize(value);
        return size.ok() ? std::string() : std::string(size.status().message());
      },
      "SIZE");
}

std::string ValidateListenAddress(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return "expected HOST:PORT";
  std::string host = listen.substr(0, colon);
  int port = 0;
  if (!absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return "the port must be a number in 0..65535";
  }
  if (host.front() == '[' && host.back() != ']') return "an IPv6 host must be in brackets";
  return "";
}

CLI::Validator ListenAddressValidator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        std::string problem = ValidateListenAddress(value);
        return problem.empty() ? problem : value + ": " + problem;
      },
      "HOST:PORT");
}

uint64_t SizeOrDie(const std::string& text) {
  if (text.empty()) return 0;
  auto size = ParseSize(text);
  return size.ok() ? *size : 0;
}

int ParseOrExitCode(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  return -1;
}

std::string ParseConfigVolume(CLI::App& app, const ConfigFile& file, const ConfigSection& volume,
                              const std::vector<std::string>& agent_wide_keys) {
  auto is_agent_wide = [&](const std::string& key) {
    return std::find(agent_wide_keys.begin(), agent_wide_keys.end(), key) != agent_wide_keys.end();
  };
  for (const ConfigEntry& e : file.agent) {
    if (app.get_option_no_throw("--" + e.key) == nullptr) {
      return absl::StrCat(file.path, ":", e.line, ": unknown key '", e.key, "'");
    }
  }
  for (const ConfigEntry& e : volume.entries) {
    if (app.get_option_no_throw("--" + e.key) == nullptr) {
      return absl::StrCat(file.path, ":", e.line, ": unknown key '", e.key, "'");
    }
    if (is_agent_wide(e.key)) {
      return absl::StrCat(file.path, ":", e.line, ": '", e.key,
                          "' is agent-wide: set it before the first [volume] section");
    }
  }
  std::vector<std::string> args = ConfigArgs(app.get_name(), file, volume);
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    return absl::StrCat(file.path, ", [volume ", volume.volume, "]: ", e.what());
  }
  return "";
}

std::string SharedStoreError(const std::string& path,
                             const std::vector<std::pair<std::string, std::string>>& earlier,
                             const std::string& volume, const std::string& store) {
  for (const auto& [other, other_store] : earlier) {
    if (other_store == store) {
      return absl::StrCat(path, ": volumes '", other, "' and '", volume, "' use the same store ",
                          store);
    }
  }
  return "";
}

int ReportConfigChecked(const std::string& path, const std::vector<std::string>& volumes) {
  printf("%s: OK, %zu volume(s): %s\n", path.c_str(), volumes.size(),
         absl::StrJoin(volumes, ", ").c_str());
  return 0;
}

bool FindConfigArgument(int argc, char** argv, std::string* path, bool* check_only,
                        std::string* usage_error) {
  int at = -1;
  int used = 0;
  for (int i = 1; i < argc && at < 0; ++i) {
    const std::string arg = argv[i];
    for (const std::string flag : {"--config", "--check-config"}) {
      if (arg == flag && i + 1 < argc) {
        *path = argv[i + 1];
        used = 2;
      } else if (absl::StartsWith(arg, flag + "=")) {
        *path = arg.substr(flag.size() + 1);
        used = 1;
      } else {
        continue;
      }
      at = i;
      *check_only = flag == "--check-config";
      break;
    }
  }
  if (at < 0) return false;
  if (argc != 1 + used) {
    *usage_error = absl::StrCat(*check_only ? "--check-config" : "--config",
                                " FILE takes no other arguments: every setting lives in the file");
  }
  return true;
}

}  // namespace blockrepl
