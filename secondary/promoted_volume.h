// PromotedVolume: a replica's store served as a primary by repl-secondary
// after `replctl promote` (disaster recovery). It is the primary agent's own
// machinery (PrimaryVolume: bitmap, replicator, resync; NbdServer with the
// same NBD flags) over the same store, with the volume's bitmap file
// carrying the identity and data history the replica had, so the old
// primary can later fail back by bitmap. Thread-safe; owned by HostedVolume.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "admin.pb.h"
#include "common/tls/tls_options.h"
#include "primary/nbd/nbd_server.h"
#include "primary/primary_volume.h"
#include "secondary/replica_meta.h"
#include "secondary/secondary_flags.h"

namespace blockrepl {

class PromotedVolume {
 public:
  // Writes the bitmap file's header from `meta` (identity, history; the
  // bits it holds are kept, a missing file is created with all bits clear),
  // then serves the store on meta.promoted_nbd_listen and replicates to
  // meta.promoted_peer. `tls` is the agent's: the same certificate serves
  // as client certificate towards the peer.
  static absl::StatusOr<std::unique_ptr<PromotedVolume>> Start(const SecondaryVolumeOptions& o,
                                                               const ReplicaMeta& meta,
                                                               const TlsOptions& tls,
                                                               double peer_timeout_s);
  ~PromotedVolume();

  PrimaryVolume* volume() { return volume_.get(); }
  std::string nbd_address() const { return nbd_->address(); }
  admin::VolumeStatus Status() const;

  // Stops serving clients (requests in flight finish), waits up to
  // `timeout` for the peer to hold everything, then stops the volume. If
  // the peer is not in sync and !force, serves clients again and fails.
  absl::StatusOr<admin::DemoteReply> StopForDemotion(bool force, absl::Duration timeout);
  // Planned switchover: stops serving clients, hands the volume to the peer
  // (PrimaryVolume::HandOver) and stops it. Returns the new primary's NBD
  // address. If the peer never got it (timeout), serves clients again.
  absl::StatusOr<std::string> HandOver(absl::Duration timeout);

 private:
  PromotedVolume() = default;
  absl::Status StartNbd(const std::string& listen);

  std::unique_ptr<PrimaryVolume> volume_;
  std::unique_ptr<nbd::Stats> nbd_stats_;
  std::unique_ptr<nbd::NbdServer> nbd_;
};

}  // namespace blockrepl
