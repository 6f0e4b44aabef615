#pragma once

// XXH3, the one hash the agents use (payload checksums, verify passes, the
// bitmap file's page sums, the undo log). Include this, not <xxhash.h>.
//
// Why: Debian builds libxxhash for baseline x86-64, so its plain XXH3_64bits
// runs the SSE2 kernel: 3.5 GB/s on the bench host, which made the payload
// checksum 13% of the primary's CPU at 1 MiB writes. The same library exports
// XXH3_*_dispatch entry points that pick AVX2 or AVX-512 at run time (55 GB/s
// there), and <xxh_x86dispatch.h> maps the XXH3 names onto them. The hash
// values are the same; only the kernel differs.

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack: no allocation per stream
#include <xxhash.h>

#if defined(__x86_64__)
#include <xxh_x86dispatch.h>
#endif
