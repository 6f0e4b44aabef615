// replctl: the operator's command-line tool. Talks to an agent's admin
// socket, or (bitmap) reads files offline; one file per command family
// (status_command.*, bitmap_command.*, ...).
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/bitmap_command.h"
#include "cli/connection_command.h"
#include "cli/detail_command.h"
#include "cli/dr_command.h"
#include "cli/resync_command.h"
#include "cli/status_command.h"
#include "cli/verify_command.h"
#include "cli/wait_command.h"
#include "cli/watch_command.h"
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

  CLI::App* detail = app.add_subcommand("detail", "everything about one volume (like mdadm -D)");
  detail->add_flag("--json", json, "the volume's status as one JSON object");
  detail->add_option("--volume", volume, "the volume (default: the agent's only one)");

  double interval = 1.0;
  int count = 0;
  CLI::App* watch = app.add_subcommand("watch", "live status with resync/verify progress bars");
  watch->add_option("--interval", interval, "seconds between refreshes")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  watch->add_option("--count", count, "stop after N refreshes (0: until interrupted)")
      ->check(CLI::NonNegativeNumber);
  watch->add_flag("--json", json, "one JSON object per refresh, one per line");
  watch->add_option("--volume", volume, "only this volume");

  int timeout = 15;
  CLI::App* connect = app.add_subcommand(
      "connect", "let the volume's replication stream come up again (after disconnect)");
  CLI::App* disconnect = app.add_subcommand(
      "disconnect",
      "cut the replication stream and keep it down; the primary marks writes in the bitmap");
  for (CLI::App* c : {connect, disconnect}) {
    c->add_option("--volume", volume, "the volume (default: the agent's only one)");
    c->add_option("--timeout", timeout, "seconds to wait for the new state (0: do not wait)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    c->add_flag("--json", json, "print the volume's status as JSON afterwards");
  }

  double wait_timeout = 0;
  double wait_interval = 0.05;
  CLI::App* wait = app.add_subcommand(
      "wait", "block until the volume is connected and in sync (a resync has finished)");
  wait->add_option("--volume", volume, "the volume (default: the agent's only one)");
  wait->add_option("--timeout", wait_timeout, "give up after this many seconds (0: no limit)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  wait->add_option("--interval", wait_interval, "seconds between status polls")
      ->check(CLI::Range(0.001, 60.0))
      ->capture_default_str();
  wait->add_flag("--json", json, "print the volume's status as JSON once in sync");

  bool repair = false;
  std::string verify_offset = "0", verify_length = "0";
  CLI::App* verify = app.add_subcommand(
      "verify",
      "compare both stores online (chunk checksums through the replication stream); exit 3 if "
      "chunks differ");
  verify->add_option("--volume", volume, "the volume (default: the agent's only one)");
  verify->add_flag("--repair", repair, "flag differing chunks for resync");
  verify->add_option("--offset", verify_offset, "start of the range (default 0)")
      ->check(blockrepl::SizeValidator());
  verify->add_option("--length", verify_length, "length of the range (default: to the end)")
      ->check(blockrepl::SizeValidator());
  verify->add_flag("--json", json, "print the report as JSON");

  CLI::App* bitmap = app.add_subcommand("bitmap", "examine or rescale a write-intent bitmap");
  bitmap->require_subcommand(1);
  std::string bitmap_file, chunk;
  bool bitmap_json = false;
  CLI::App* examine = bitmap->add_subcommand(
      "examine", "print a bitmap file's header and dirty counts (read-only; safe while running)");
  examine->add_option("FILE", bitmap_file, "the bitmap file")->required();
  examine->add_flag("--json", bitmap_json, "one JSON object");
  CLI::App* rescale = bitmap->add_subcommand(
      "rescale",
      "change the bitmap chunk size without losing dirty chunks: online through --admin-socket, "
      "or offline on FILE of a stopped primary");
  rescale->add_option("--chunk", chunk, "new chunk size (power of two, 4K..1G)")
      ->required()
      ->check(blockrepl::BitmapChunkValidator());
  rescale->add_option("FILE", bitmap_file, "offline: the bitmap file of a stopped primary");
  rescale->add_option("--volume", volume, "online: the volume (default: the agent's only one)");

  CLI::App* resync = app.add_subcommand("resync", "control a primary's resync");
  resync->require_subcommand(1);
  bool resync_json = false;
  resync->add_flag("--json", resync_json, "print the result as JSON");
  resync->add_option("--volume", volume, "the volume (default: the agent's only one)");
  CLI::App* pause = resync->add_subcommand("pause", "stop copying flagged chunks (they stay flagged)");
  CLI::App* resume = resync->add_subcommand("resume", "continue copying");
  CLI::App* rate = resync->add_subcommand("rate", "limit resync traffic; 0 = unlimited");
  std::string rate_value;
  rate->add_option("BYTES_PER_S", rate_value, "e.g. 50M")
      ->required()
      ->check(blockrepl::SizeValidator());

  // Disaster recovery (README "Disaster recovery runbook").
  blockrepl::PromoteArgs promote_args;
  CLI::App* promote = app.add_subcommand(
      "promote",
      "serve a replica as a primary (on its repl-secondary): the primary's site is lost, or a "
      "planned swap after `demote` there");
  promote->add_option("VOLUME", promote_args.volume, "the volume")->required();
  promote->add_flag("--force", promote_args.force,
                    "even if the image is inconsistent and no undo log can roll it back");
  promote->add_option("--nbd-listen", promote_args.nbd_listen,
                      "serve on HOST:PORT (default: the volume's --nbd-listen)")
      ->check(blockrepl::ListenAddressValidator());
  promote->add_option("--peer", promote_args.peer,
                      "replicate to this repl-secondary (default: the volume's --peer)");
  promote->add_flag("--json", json, "print the result as JSON");

  bool demote_force = false;
  double demote_timeout = 60;
  CLI::App* demote = app.add_subcommand(
      "demote", "stop serving a promoted volume and make it a replica again (no full copy)");
  demote->add_option("VOLUME", volume, "the volume")->required();
  demote->add_flag("--force", demote_force,
                   "even if the peer does not hold every write (those chunks go to the peer's "
                   "version once it is promoted)");
  demote->add_option("--timeout", demote_timeout, "seconds to wait for the peer to be in sync")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  demote->add_flag("--json", json, "print the result as JSON");

  std::string discard;
  CLI::App* resolve = app.add_subcommand(
      "resolve",
      "after a split brain (both sides wrote on their own): choose whose writes since the split "
      "are overwritten; the next handshake resyncs the chunks either side changed");
  resolve->add_option("VOLUME", volume, "the volume")->required();
  resolve->add_option("--discard", discard,
                      "local: this side's writes are overwritten; remote: the other side's")
      ->required()
      ->check(CLI::IsMember({"local", "remote"}));
  resolve->add_flag("--json", json, "print the result as JSON");

  double switchover_timeout = 60;
  CLI::App* switchover = app.add_subcommand(
      "switchover",
      "planned swap of a healthy pair, on the primary: hold writes, make the secondary "
      "identical, hand the volume over; clients reconnect to the address printed");
  switchover->add_option("VOLUME", volume, "the volume")->required();
  switchover->add_option("--timeout", switchover_timeout,
                         "seconds to wait for the secondary to be in sync (writes wait meanwhile)")
      ->check(CLI::Range(1.0, 3600.0))
      ->capture_default_str();
  switchover->add_flag("--json", json, "print the result as JSON");

  if (int code = blockrepl::ParseOrExitCode(app, argc, argv); code >= 0) return code;
  if (switchover->parsed()) {
    return blockrepl::RunSwitchoverCommand(admin_socket, volume, switchover_timeout, json);
  }
  if (promote->parsed()) return blockrepl::RunPromoteCommand(admin_socket, promote_args, json);
  if (demote->parsed()) {
    return blockrepl::RunDemoteCommand(admin_socket, volume, demote_force, demote_timeout, json);
  }
  if (resolve->parsed()) return blockrepl::RunResolveCommand(admin_socket, volume, discard, json);
  if (status->parsed()) return blockrepl::RunStatusCommand(admin_socket, volume, json);
  if (detail->parsed()) return blockrepl::RunDetailCommand(admin_socket, volume, json);
  if (watch->parsed()) {
    return blockrepl::RunWatchCommand(admin_socket, volume, interval, count, json);
  }
  if (connect->parsed() || disconnect->parsed()) {
    return blockrepl::RunConnectionCommand(admin_socket, volume, connect->parsed(), timeout, json);
  }
  if (wait->parsed()) {
    return blockrepl::RunWaitCommand(admin_socket, volume, wait_timeout, wait_interval, json);
  }
  if (verify->parsed()) {
    return blockrepl::RunVerifyCommand(admin_socket, volume, repair,
                                       blockrepl::SizeOrDie(verify_offset),
                                       blockrepl::SizeOrDie(verify_length), json);
  }
  if (examine->parsed()) return blockrepl::RunBitmapExamine(bitmap_file, bitmap_json);
  if (rescale->parsed()) {
    return bitmap_file.empty() ? blockrepl::RunBitmapRescaleOnline(admin_socket, volume, chunk)
                               : blockrepl::RunBitmapRescale(bitmap_file, chunk);
  }
  if (pause->parsed()) return blockrepl::RunResyncCommand(admin_socket, volume, "pause", 0, resync_json);
  if (resume->parsed()) return blockrepl::RunResyncCommand(admin_socket, volume, "resume", 0, resync_json);
  if (rate->parsed()) {
    return blockrepl::RunResyncCommand(admin_socket, volume, "rate",
                                       blockrepl::SizeOrDie(rate_value), resync_json);
  }
  return 2;
}
