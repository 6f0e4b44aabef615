#include "secondary/promoted_volume.h"

#include <sys/stat.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/bitmap/bitmap_file.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace blockrepl {
namespace {

constexpr uint32_t kDefaultChunk = 65536;

// The bitmap the promoted volume opens: this replica's identity and
// history in its header, whatever bits it already holds kept.
absl::Status PrepareBitmapFile(const std::string& path, const ReplicaMeta& meta,
                               uint64_t volume_size) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0 && errno == ENOENT) {
    BitmapHeader header;
    header.volume_uuid = meta.volume_uuid;
    header.set_history(meta.history());
    header.volume_size = volume_size;
    header.chunk_size = meta.chunk_size != 0 ? meta.chunk_size : kDefaultChunk;
    header.daemon_sleep_ms = 5000;
    header.state = BitmapHeader::kStateClean;
    return BitmapFile::Create(path, header).status();
  }
  ASSIGN_OR_RETURN(std::unique_ptr<BitmapFile> file, BitmapFile::Open(path));
  BitmapHeader header = file->header();
  if (header.volume_uuid != meta.volume_uuid) {
    return absl::FailedPreconditionError(
        absl::StrCat("bitmap file ", path, " belongs to volume UUID ", header.volume_uuid,
                     ", this replica to ", meta.volume_uuid, ": move it away to promote"));
  }
  header.set_history(meta.history());
  // Handed over in an earlier switchover: it is this volume's primary again.
  header.state &= ~BitmapHeader::kStateHandedOver;
  return file->WriteHeader(header);
}

}  // namespace

absl::StatusOr<std::unique_ptr<PromotedVolume>> PromotedVolume::Start(
    const SecondaryVolumeOptions& o, const ReplicaMeta& meta, const TlsOptions& tls,
    double peer_timeout_s) {
  if (meta.promoted_nbd_listen.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("volume '", o.volume, "': no NBD address to serve it on: start "
                     "repl-secondary with --nbd-listen, or pass --nbd-listen to promote"));
  }
  std::unique_ptr<PromotedVolume> v(new PromotedVolume());
  RETURN_IF_ERROR(PrepareBitmapFile(o.bitmap_path, meta, meta.size_bytes));

  PrimaryVolumeOptions p;
  p.volume = o.volume;
  p.store_path = o.store_path;
  p.fault_control = o.fault_control;
  // No peer yet: an address nothing listens on keeps it disconnected (and
  // every write flagged) until the operator configures one.
  p.secondary = meta.promoted_peer.empty() ? "127.0.0.1:1" : meta.promoted_peer;
  p.bitmap.path = o.bitmap_path;
  p.tls = tls;
  p.tls.peer_name = o.peer_name;
  p.peer_timeout = absl::Seconds(peer_timeout_s);
  ASSIGN_OR_RETURN(v->volume_, PrimaryVolume::Create(p));
  v->volume_->Start();
  RETURN_IF_ERROR(v->StartNbd(meta.promoted_nbd_listen));
  LogInfo("volume '", o.volume, "' PROMOTED: served as a primary on nbd://", v->nbd_address(),
          "/", o.volume, ", data generation ", v->volume_->history().current,
          meta.promoted_peer.empty() ? ", no peer yet (every write stays flagged)"
                                     : absl::StrCat(", replicating to ", meta.promoted_peer));
  return v;
}

PromotedVolume::~PromotedVolume() {
  if (nbd_) nbd_->Stop();
  nbd_.reset();
  if (volume_) volume_->Shutdown();
}

absl::Status PromotedVolume::StartNbd(const std::string& listen) {
  if (nbd_stats_ == nullptr) nbd_stats_ = std::make_unique<nbd::Stats>();
  nbd::ServerOptions options;
  options.tcp_listen = listen;
  nbd::Export exp;
  exp.name = volume_->options().volume;
  exp.description = absl::StrCat("blockrepl volume ", exp.name, " (promoted replica)");
  exp.device = volume_->device();
  exp.stats = nbd_stats_.get();
  exp.preferred_block_size = 4096;
  ASSIGN_OR_RETURN(nbd_, nbd::NbdServer::Start(options, {exp}));
  return absl::OkStatus();
}

admin::VolumeStatus PromotedVolume::Status() const {
  admin::VolumeStatus s = volume_->Status();
  s.set_promoted(true);
  s.set_nbd_address(nbd_ != nullptr ? nbd_->address() : "");
  return s;
}

absl::StatusOr<admin::DemoteReply> PromotedVolume::StopForDemotion(bool force,
                                                                  absl::Duration timeout) {
  const std::string address = nbd_->address();
  nbd_->Stop();  // no client write after this one
  nbd_.reset();
  admin::DemoteReply reply;
  absl::Status in_sync = volume_->WaitPeerInSync(timeout);
  reply.set_peer_in_sync(in_sync.ok());
  if (!in_sync.ok()) {
    reply.set_unsynced_chunks(volume_->Status().dirty_chunks());
    if (!force) {
      absl::Status restarted = StartNbd(address);
      return absl::FailedPreconditionError(absl::StrCat(
          in_sync.message(), ". Not demoted: ",
          restarted.ok() ? "clients may reconnect to " + address
                         : absl::StrCat("and serving again failed: ", restarted.message()),
          ". --force demotes anyway: the chunks the peer lacks stay flagged, and the peer's "
          "data wins them when it is promoted"));
    }
    LogWarning("demoting with the peer not in sync (", in_sync.message(), "), --force");
  }
  volume_->Shutdown();
  volume_.reset();  // closes the store and the bitmap file
  return reply;
}

absl::StatusOr<std::string> PromotedVolume::HandOver(absl::Duration timeout) {
  const std::string address = nbd_->address();
  nbd_->Stop();  // clients are told by the disconnect; they reconnect to the new primary
  nbd_.reset();
  auto new_primary = volume_->HandOver(timeout);
  if (!new_primary.ok() && volume_->Status().role() != "handed-over") {
    absl::Status restarted = StartNbd(address);
    return absl::Status(new_primary.status().code(),
                        absl::StrCat(new_primary.status().message(), "; still the primary",
                                     restarted.ok() ? "" : absl::StrCat(
                                         " but serving again failed: ", restarted.message())));
  }
  volume_.reset();  // stopped by HandOver; closes the store and the bitmap file
  return new_primary;
}

}  // namespace blockrepl
