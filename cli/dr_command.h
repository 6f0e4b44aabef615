// Disaster recovery verbs of replctl (README "Disaster recovery runbook"):
//   promote  serve a replica as a primary (on its repl-secondary)
//   demote   make a promoted volume a replica again
//   resolve  after a split brain: whose writes since the split to give up
//   switchover  planned swap of a healthy pair
// Each returns replctl's exit code.
#pragma once

#include <string>

namespace blockrepl {

struct PromoteArgs {
  std::string volume;
  bool force = false;
  std::string nbd_listen;  // "" = the volume's --nbd-listen
  std::string peer;        // "" = the volume's --peer
};
int RunPromoteCommand(const std::string& admin_socket, const PromoteArgs& args, bool json);

int RunDemoteCommand(const std::string& admin_socket, const std::string& volume, bool force,
                     double timeout_seconds, bool json);

// `discard` is "local" or "remote".
int RunResolveCommand(const std::string& admin_socket, const std::string& volume,
                      const std::string& discard, bool json);

// On the primary's agent: drain, hand the volume to the secondary, print
// where clients reconnect.
int RunSwitchoverCommand(const std::string& admin_socket, const std::string& volume,
                         double timeout_seconds, bool json);

}  // namespace blockrepl
