#include "cli/detail_command.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/admin_client.h"
#include "cli/json_output.h"
#include "common/units.h"

namespace blockrepl {

namespace {

void Line(std::string* out, const std::string& key, const std::string& value) {
  absl::StrAppendFormat(out, "%20s : %s\n", key, value);
}

std::string Bytes(uint64_t n) { return absl::StrCat(FormatBytes(n), " (", n, " bytes)"); }

std::string Progress(uint64_t done, uint64_t total) {
  return total == 0 ? "0/0"
                    : absl::StrFormat("%d/%d (%.1f%%)", done, total, 100.0 * done / total);
}

}  // namespace

std::string FormatVolumeDetail(const admin::VolumeStatus& v) {
  std::string out;
  const bool primary = v.role() == "primary";
  Line(&out, "Volume", v.name());
  Line(&out, "Role", v.role());
  Line(&out, "Store", absl::StrCat(v.store(), ", ", Bytes(v.size_bytes())));
  if (primary) {
    Line(&out, "Mode", v.mode() == "sync"
                           ? std::string("sync (a write is acknowledged once the secondary has it)")
                           : absl::StrCat("async, window ", v.max_inflight_writes(), " writes / ",
                                          FormatBytes(v.max_inflight_bytes())));
  }
  Line(&out, "Peer", v.peer().empty() ? "-" : v.peer());
  Line(&out, "Connection",
       absl::StrCat(v.connection(), v.disconnected_by_operator() ? " (by the operator)" : "", ", ",
                    v.connects_total(), " streams so far"));
  Line(&out, "Sync state", v.sync_state());
  Line(&out, "Secondary image",
       v.consistent() ? "consistent (a state the primary had at a flush)"
                      : "INCONSISTENT (a resync is incomplete)");
  Line(&out, "Generation", v.generation().empty() ? "-" : v.generation());
  Line(&out, "Diverged from",
       v.diverged_from().empty()
           ? std::string("- (nothing written on its own since it was last in sync)")
           : absl::StrCat(v.diverged_from(), " (written on its own since)"));
  if (v.promoted()) Line(&out, "Promoted", absl::StrCat("yes: served on nbd ", v.nbd_address()));
  if (v.split_brain()) {
    Line(&out, "Split brain",
         "YES: both sides wrote on their own; `replctl resolve VOLUME --discard=local|remote`");
  }
  if (!v.resolution().empty()) Line(&out, "Resolution", v.resolution() + " (next handshake)");
  if (primary) {
    Line(&out, "Volume UUID", v.volume_uuid().empty() ? "-" : v.volume_uuid());
    Line(&out, "Bitmap", absl::StrCat(v.bitmap_file().empty() ? "in memory" : v.bitmap_file(),
                                      ", ", FormatBytes(v.chunk_size()), " chunks, ",
                                      v.bitmap_dirty_pages(), "/", v.bitmap_pages(),
                                      " pages in use"));
    Line(&out, "Daemon sleep", FormatDuration(v.daemon_sleep_ms() / 1000.0));
    Line(&out, "Dirty chunks", absl::StrCat(v.dirty_chunks(), " (",
                                            FormatBytes(v.dirty_chunks() * v.chunk_size()), ")"));
    Line(&out, "Bits set", absl::StrCat(v.bitmap_bits_set(), " (dirty + awaiting lazy clear)"));
    Line(&out, "Bitmap flushes", absl::StrCat(v.bitmap_flushes_total()));
    Line(&out, "Resync", absl::StrCat(
                             v.sync_state() == "resyncing" ? "running" : "idle", ", this pass ",
                             Progress(v.resync_done_chunks(), v.resync_total_chunks()), " chunks, ",
                             FormatBytes(v.resync_done_bytes()), "/",
                             FormatBytes(v.resync_total_bytes())));
    if (v.sync_state() == "resyncing") {
      Line(&out, "Resync speed",
           absl::StrCat(FormatBytes(static_cast<uint64_t>(v.resync_rate_bytes_per_second())),
                        "/s, eta ", FormatDuration(v.resync_eta_seconds())));
    }
    Line(&out, "Resync control",
         absl::StrCat(v.resync_paused() ? "PAUSED" : "running", ", rate limit ",
                      v.resync_rate_limit_bytes_per_second() == 0
                          ? std::string("none")
                          : FormatBytes(v.resync_rate_limit_bytes_per_second()) + "/s"));
    Line(&out, "Resynced in total",
         absl::StrCat(v.resynced_chunks_total(), " chunks, ", FormatBytes(v.resynced_bytes_total())));
    Line(&out, "Resync mode",
         v.resync_mode() != "checksum"
             ? v.resync_mode()
             : absl::StrCat("checksum: ", v.resync_checksum_matched_chunks_total(),
                            " flagged chunks found equal and not sent (",
                            FormatBytes(v.resync_checksum_matched_bytes_total()), ")"));
    Line(&out, "Verify",
         absl::StrCat(v.verify_active() ? "running, " : v.verify_total_chunks() > 0 ? "last: " : "",
                      v.verify_total_chunks() == 0
                          ? std::string("never run")
                          : absl::StrCat(Progress(v.verify_done_chunks(), v.verify_total_chunks()),
                                         " chunks, ", v.verify_differing_chunks(), " differ")));
    Line(&out, "In flight",
         absl::StrCat(v.inflight_writes(), "/", v.max_inflight_writes(), " writes, ",
                      FormatBytes(v.inflight_bytes()), "/", FormatBytes(v.max_inflight_bytes()),
                      " (peak ", v.peak_inflight_writes(), " writes, ",
                      FormatBytes(v.peak_inflight_bytes()), ")"));
    Line(&out, "Replicated", absl::StrCat(v.replicated_writes_total(), " writes, ",
                                          FormatBytes(v.replicated_bytes_total()), " in ",
                                          v.stream_messages_total(), " stream messages"));
    Line(&out, "Sequence", absl::StrCat("sent ", v.sent_seq(), ", applied ", v.acked_seq(),
                                        ", durable ", v.durable_seq()));
  } else {
    Line(&out, "Metadata", v.bitmap_file());
    Line(&out, "Store I/O",
         v.store_io() == "direct"
             ? absl::StrCat("direct (O_DIRECT, io_uring), ", v.direct_writes_total(), " writes")
             : v.store_io());
    Line(&out, "Applied", absl::StrCat(v.replicated_writes_total(), " writes, ",
                                       FormatBytes(v.replicated_bytes_total()), "; resync ",
                                       FormatBytes(v.resynced_bytes_total())));
    Line(&out, "Sequence",
         absl::StrCat("applied ", v.applied_seq(), ", durable ", v.durable_seq()));
    Line(&out, "Undo log", absl::StrCat(FormatBytes(v.undo_log_bytes()),
                                        v.undo_available() ? ", rollback possible" : ""));
  }
  Line(&out, "Last error", v.last_error().empty() ? "-" : v.last_error());
  Line(&out, "Store errors",
       v.store_errors_total() == 0
           ? std::string("0")
           : absl::StrCat(v.store_errors_total(), " (latest: ", v.last_store_error(), ")"));
  return out;
}

int RunDetailCommand(const std::string& admin_socket, const std::string& volume, bool json) {
  AdminClient client(admin_socket);
  admin::VolumeStatus v;
  grpc::Status status = client.GetVolume(volume, &v);
  if (!status.ok()) return client.ReportFailure(status);
  printf("%s", json ? (MessageToJson(v) + "\n").c_str() : FormatVolumeDetail(v).c_str());
  return 0;
}

}  // namespace blockrepl
