#include "common/config_file.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace blockrepl {

absl::StatusOr<ConfigFile> ParseConfigText(const std::string& path, const std::string& text) {
  ConfigFile file;
  file.path = path;
  std::set<std::string> names;
  int number = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++number;
    absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    auto where = [&] { return absl::StrCat(path, ":", number, ": "); };
    if (line[0] == '[') {
      if (line.back() != ']') return absl::InvalidArgumentError(absl::StrCat(where(), "unclosed '['"));
      absl::string_view inside = absl::StripAsciiWhitespace(line.substr(1, line.size() - 2));
      if (!absl::ConsumePrefix(&inside, "volume") || inside.empty() ||
          !absl::ascii_isspace(inside[0])) {
        return absl::InvalidArgumentError(
            absl::StrCat(where(), "expected a section [volume NAME], got ", line));
      }
      std::string name(absl::StripAsciiWhitespace(inside));
      if (!names.insert(name).second) {
        return absl::InvalidArgumentError(absl::StrCat(where(), "volume '", name, "' appears twice"));
      }
      file.volumes.push_back(ConfigSection{name, number, {}});
      continue;
    }
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(where(), "expected KEY = VALUE, got ", line));
    }
    ConfigEntry entry{std::string(absl::StripAsciiWhitespace(line.substr(0, eq))),
                      std::string(absl::StripAsciiWhitespace(line.substr(eq + 1))), number};
    if (entry.key.empty() || entry.key[0] == '-') {
      return absl::InvalidArgumentError(
          absl::StrCat(where(), "bad key '", entry.key, "' (write flag names without --)"));
    }
    if (entry.key == "volume" || entry.key == "config") {
      return absl::InvalidArgumentError(absl::StrCat(
          where(), "'", entry.key, "' cannot be set here (volumes are [volume NAME] sections)"));
    }
    (file.volumes.empty() ? file.agent : file.volumes.back().entries).push_back(std::move(entry));
  }
  if (file.volumes.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no [volume NAME] section: nothing to serve"));
  }
  return file;
}

absl::StatusOr<ConfigFile> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  std::stringstream text;
  text << in.rdbuf();
  return ParseConfigText(path, text.str());
}

std::vector<std::string> ConfigArgs(const std::string& program, const ConfigFile& file,
                                    const ConfigSection& volume) {
  std::vector<std::string> args = {program};
  for (const ConfigEntry& e : file.agent) args.push_back(absl::StrCat("--", e.key, "=", e.value));
  args.push_back(absl::StrCat("--volume=", volume.volume));
  for (const ConfigEntry& e : volume.entries) args.push_back(absl::StrCat("--", e.key, "=", e.value));
  return args;
}

}  // namespace blockrepl
