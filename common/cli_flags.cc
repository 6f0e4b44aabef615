#include "common/cli_flags.h"

#include "absl/strings/numbers.h"
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

}  // namespace blockrepl
