#include "common/cli_flags.h"

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

}  // namespace blockrepl
