// Fuzzes the loading of a write-intent bitmap file, the one file whose damage decides between a
// fast resync and a full one: the header slots (magic, version, checksums, sequence numbers,
// geometry, identity) and the pages (torn-page detection). The bytes are written to a file and
// opened twice: read-only, as `replctl bitmap examine` does, and then as the primary does at
// start for a 16 MiB volume (validation against the volume, possibly rewriting the header).
// A damaged file must give an error or a safe result (torn pages load as all dirty); never a
// crash or an access outside the buffers.
//
// Input: byte 0 picks the mode. Even: the rest is the file as is, so almost every mutation stops
// at a checksum. Odd: the header and page checksums are recomputed over the mutated bytes first,
// so mutations reach the geometry and state checks behind them (what a buggy writer, rather than
// a torn write, could leave behind).
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/xxh3.h"

#include "common/bitmap/bitmap_file.h"
#include "common/log.h"
#include "primary/bitmap_setup.h"
#include "tests/fuzz/fuzz_temp_dir.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  blockrepl::SilenceLogs();
  return 0;
}

namespace {

// The on-disk layout of common/bitmap/bitmap_file.cc: two 4 KiB header slots whose first 104
// (version 1) or 152 (version 2, the u32 at offset 8) bytes are covered by an XXH3 stored right
// after them, then 4 KiB page blocks of 4080 bytes of
// bits followed by the XXH3 of those bits and the page index.
constexpr size_t kBlock = 4096, kPageBits = 4080;

void FixChecksums(std::vector<uint8_t>& file) {
  for (size_t slot = 0; slot < 2 * kBlock; slot += kBlock) {
    if (file.size() < slot + 12) break;
    uint32_t version;
    std::memcpy(&version, file.data() + slot + 8, sizeof version);
    const size_t kHeaderChecked = version == 1 ? 104 : 152;
    if (file.size() < slot + kHeaderChecked + 8) break;
    const uint64_t sum = XXH3_64bits(file.data() + slot, kHeaderChecked);
    std::memcpy(file.data() + slot + kHeaderChecked, &sum, 8);
  }
  for (uint64_t i = 0, at = 2 * kBlock; at + kPageBits + 8 <= file.size(); ++i, at += kBlock) {
    XXH3_state_t* state = XXH3_createState();
    XXH3_64bits_reset(state);
    XXH3_64bits_update(state, file.data() + at, kPageBits);
    XXH3_64bits_update(state, &i, sizeof i);
    const uint64_t sum = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    std::memcpy(file.data() + at + kPageBits, &sum, 8);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blockrepl;
  if (size == 0) return 0;
  std::vector<uint8_t> file(data + 1, data + size);
  if (data[0] & 1) FixChecksums(file);
  const std::string path = fuzz::WriteTempFile("bitmap", file.data(), file.size());

  if (auto examined = BitmapFile::Open(path, /*read_only=*/true); examined.ok()) {
    const BitmapFile& file = **examined;
    // What examine prints: every loaded word must be there for the header's geometry.
    uint64_t set = 0;
    for (uint64_t word : file.loaded_bits()) set += __builtin_popcountll(word);
    if (file.loaded_bits().size() < file.header().page_count() * kWordsPerPage) __builtin_trap();
    (void)set;
  }

  BitmapSpec spec;
  spec.path = path;
  spec.chunk_size = 64 << 10;
  auto opened = OpenBitmap(spec, 16 << 20);
  (void)opened;
  return 0;
}
