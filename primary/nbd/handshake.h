// The fixed-newstyle NBD handshake, server side: greeting, option haggling
// (EXPORT_NAME, ABORT, LIST, INFO, GO; anything else is NBD_REP_ERR_UNSUP),
// and the choice of export. Everything read from the client is bounded
// before it is allocated. Runs on the connection's own thread; the exports
// are read-only and shared by all connections.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "primary/nbd/nbd_options.h"

namespace blockrepl::nbd {

// Option payloads above this drop the connection: no legitimate option
// (names are at most 4 KiB) comes close.
inline constexpr uint32_t kMaxOptionLength = 64 * 1024;

// Transmission flags advertised for `e` (NBD_INFO_EXPORT and EXPORT_NAME).
uint16_t TransmissionFlags(const Export& e);

// Runs the handshake on connected socket `fd`. Returns the export chosen by
// GO or EXPORT_NAME (the connection then enters transmission), nullptr when
// the client ended negotiation itself (ABORT, or closing between options),
// or an error when the connection must be dropped (protocol violation,
// unknown EXPORT_NAME, I/O failure). `exports` must outlive the result.
absl::StatusOr<const Export*> NegotiateExport(int fd, absl::Span<const Export> exports,
                                              uint32_t max_payload);

// The export `name` selects: "" is the first export (the spec's default
// export); nullptr if there is none.
const Export* FindExport(absl::Span<const Export> exports, std::string_view name);

}  // namespace blockrepl::nbd
