// What gRPC's certificate watcher reads: checked copies of the operator's TLS
// files, never the files themselves.
//
// gRPC re-reads its certificate files every second so a renewal needs no
// restart (FileWatcherCertificateProvider). It takes whatever it reads: a key
// file caught half-written (an editor or `echo > key` truncates it first)
// gives it an empty key, and gRPC 1.51 then aborts the process on an
// assertion when it rebuilds its TLS context (a TSan CI run caught an agent
// dying that way in test_tls). So gRPC reads memory files
// (memfd, as /proc/self/fd/N) that only ever hold a set that passed
// CheckTlsFiles: a watcher thread re-reads the operator's files once a
// second, checks the new set in fresh memory files, and swaps it in with one
// dup3 per file; gRPC's own once-a-second re-read then takes it up, so a
// renewal is in use for new handshakes within about two seconds. A broken
// set is logged and the previous one stays in use.
// Thread-safe; mirrors live as long as the process (gRPC reads them until it
// exits).
#pragma once

#include "absl/status/statusor.h"
#include "common/tls/tls_options.h"

namespace blockrepl {

// `tls` with its cert/key/ca paths replaced by the mirror's, for
// MakeChannelCredentials/MakeServerCredentials. The first call for a set of
// files checks them (the error names the file) and starts their watcher;
// later calls for the same files share it. Plaintext options are returned
// unchanged.
absl::StatusOr<TlsOptions> MirrorTlsFiles(const TlsOptions& tls);

}  // namespace blockrepl
