// Fuzzes the loading of a write-intent bitmap file, the one file whose damage decides between a
// fast resync and a full one: the header slots (magic, version, checksums, sequence numbers,
// geometry, identity) and the pages (torn-page detection). The bytes are written to a file and
// opened twice: read-only, as `replctl bitmap examine` does, and then as the primary does at
// start for a 16 MiB volume (validation against the volume, possibly rewriting the header).
// A damaged file must give an error or a safe result (torn pages load as all dirty); never a
// crash or an access outside the buffers.
#include <cstdint>
#include <string>

#include "common/bitmap/bitmap_file.h"
#include "common/log.h"
#include "primary/bitmap_setup.h"
#include "tests/fuzz/fuzz_temp_dir.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  blockrepl::SilenceLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blockrepl;
  const std::string path = fuzz::WriteTempFile("bitmap", data, size);

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
