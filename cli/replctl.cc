// replctl: the operator's command-line tool. Talks to an agent's admin
// socket; one function per command family (status_command.*, ...).
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/status_command.h"
#include "common/cli_flags.h"

int main(int argc, char** argv) {
  CLI::App app{"replctl: inspect and drive blockrepl agents"};
  app.require_subcommand(1);
  std::string admin_socket = "/run/blockrepl/admin.sock";
  app.add_option("--admin-socket", admin_socket, "the agent's admin socket")
      ->envname("BLOCKREPL_ADMIN_SOCKET")
      ->capture_default_str();

  bool json = false;
  std::string volume;
  CLI::App* status = app.add_subcommand("status", "show replication status of every volume");
  status->add_flag("--json", json, "one JSON object with a \"volumes\" array");
  status->add_option("--volume", volume, "only this volume");

  if (int code = blockrepl::ParseOrExitCode(app, argc, argv); code >= 0) return code;
  if (status->parsed()) return blockrepl::RunStatusCommand(admin_socket, volume, json);
  return 2;
}
