// Fuzzes the agents' configuration files: the parser (sections, keys, comments, quoting, line
// lengths) and then both agents' full command-line contract for every volume it yields, exactly
// as `repl-primary --config FILE` and `repl-secondary --config FILE` read them (the same CLI11
// definitions and validators: sizes, listen addresses, modes, duplicate stores). A bad file must
// give a usage error (exit code 2) with a message; never a crash, a hang or an exception that
// escapes.
#include <cstdint>
#include <string>
#include <vector>

#include "common/config_file.h"
#include "common/log.h"
#include "primary/primary_flags.h"
#include "secondary/secondary_flags.h"
#include "tests/fuzz/fuzz_temp_dir.h"

namespace {

// Runs `parse` as main() would: argv = {program, "--config", path}.
template <typename Options, typename Parse>
void ParseAsAgent(const char* program, const std::string& path, Parse parse) {
  std::string arg0 = program, arg1 = "--config", arg2 = path;
  std::vector<char*> argv = {arg0.data(), arg1.data(), arg2.data(), nullptr};
  Options options;
  const int code = parse(3, argv.data(), &options);
  // -1 (go on) only with at least one volume; otherwise 0 or 2.
  if (code == -1 && options.volumes.empty()) __builtin_trap();
  if (code != -1 && code != 0 && code != 2) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  blockrepl::SilenceLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blockrepl;
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)ParseConfigText("fuzz.conf", text);
  const std::string path = fuzz::WriteTempFile("agent.conf", data, size);
  ParseAsAgent<PrimaryAgentOptions>("repl-primary", path, ParsePrimaryCommandLine);
  ParseAsAgent<SecondaryAgentOptions>("repl-secondary", path, ParseSecondaryCommandLine);
  return 0;
}
