#include "cli/bitmap_command.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/admin_client.h"
#include "common/bitmap/bitmap_rescale.h"
#include "common/units.h"

namespace blockrepl {
namespace {

// The facts both output forms print, computed once from the loaded file.
struct Summary {
  uint64_t chunks = 0;
  uint64_t dirty_chunks = 0;
  uint64_t pages = 0;
  uint64_t dirty_pages = 0;
  bool clean = false;
  const char* state_key = "";   // JSON
  const char* state_text = "";  // people
};

Summary Summarize(const BitmapFile& file) {
  const BitmapHeader& h = file.header();
  const std::vector<uint64_t>& bits = file.loaded_bits();
  Summary s;
  s.chunks = h.chunk_count();
  s.pages = h.page_count();
  s.dirty_chunks = CountSetBits(bits);
  for (uint64_t p = 0; p < s.pages; ++p) {
    for (uint64_t w = p * kWordsPerPage; w < (p + 1) * kWordsPerPage && w < bits.size(); ++w) {
      if (bits[w] != 0) {
        ++s.dirty_pages;
        break;
      }
    }
  }
  s.clean = (h.state & BitmapHeader::kStateClean) != 0;
  if (h.state & BitmapHeader::kStateStale) {
    s.state_key = "stale";
    s.state_text = "Stale: full resync required";
  } else if (s.clean) {
    s.state_key = "clean";
    s.state_text = "OK (clean shutdown)";
  } else {
    s.state_key = "running";
    s.state_text = "Running or crashed (not cleanly stopped)";
  }
  return s;
}

// "64 KiB" for the exact powers of two chunk sizes are; FormatBytes otherwise.
std::string ExactBytes(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB"};
  int unit = 0;
  while (unit < 3 && bytes >= 1024 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++unit;
  }
  return unit == 0 ? FormatBytes(bytes) : absl::StrCat(bytes, " ", kUnits[unit]);
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      absl::StrAppendFormat(&out, "\\u%04x", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out + "\"";
}

int Fail(const absl::Status& status) {
  fprintf(stderr, "replctl: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace

std::string FormatBitmapExamine(const BitmapFile& file) {
  const BitmapHeader& h = file.header();
  const Summary s = Summarize(file);
  std::string out;
  auto line = [&out](const char* label, const std::string& value) {
    absl::StrAppendFormat(&out, "%16s : %s\n", label, value);
  };
  line("Filename", file.path());
  line("Magic", "BLKRBMP");
  line("Version", absl::StrCat(h.version));
  line("Volume UUID", h.volume_uuid);
  line("Generation", h.generation);
  line("Diverged From", h.diverged_from.empty() ? std::string("- (nothing written on its own)")
                                                : h.diverged_from);
  line("Older", h.older.empty() ? std::string("-") : absl::StrJoin(h.older, ", "));
  line("Events", absl::StrCat(h.events));
  line("Events Cleared", absl::StrCat(h.events_cleared));
  line("State", s.state_text);
  line("Chunksize", absl::StrFormat("%s (%d bytes)", ExactBytes(h.chunk_size), h.chunk_size));
  line("Daemon", absl::StrFormat("%gs flush period", h.daemon_sleep_ms / 1000.0));
  line("Sync Size", absl::StrFormat("%s (%d bytes)", FormatBytes(h.volume_size), h.volume_size));
  const double percent = s.chunks == 0 ? 0.0 : 100.0 * s.dirty_chunks / s.chunks;
  line("Bitmap", absl::StrFormat("%d bits (chunks), %d dirty (%.1f%%), %d/%d pages with set bits",
                                 s.chunks, s.dirty_chunks, percent, s.dirty_pages, s.pages));
  line("Damaged pages",
       file.torn_pages().empty()
           ? std::string("none")
           : absl::StrCat(absl::StrJoin(file.torn_pages(), ", "),
                          " (checksum failed: read as all dirty)"));
  return out;
}

std::string BitmapExamineJson(const BitmapFile& file) {
  const BitmapHeader& h = file.header();
  const Summary s = Summarize(file);
  return absl::StrCat(
      "{\"file\":", JsonString(file.path()), ",\"version\":", h.version,
      ",\"volume_uuid\":", JsonString(h.volume_uuid), ",\"generation\":", JsonString(h.generation),
      ",\"diverged_from\":", JsonString(h.diverged_from), ",\"older_generations\":[",
      absl::StrJoin(h.older, ",", [](std::string* out, const std::string& id) {
        out->append(JsonString(id));
      }),
      "]",
      ",\"events\":", h.events, ",\"events_cleared\":", h.events_cleared,
      ",\"state\":", JsonString(s.state_key), ",\"clean\":", s.clean ? "true" : "false",
      ",\"chunk_size\":", h.chunk_size, ",\"daemon_sleep_ms\":", h.daemon_sleep_ms,
      ",\"volume_size\":", h.volume_size, ",\"chunks\":", s.chunks,
      ",\"dirty_chunks\":", s.dirty_chunks, ",\"pages\":", s.pages,
      ",\"dirty_pages\":", s.dirty_pages, ",\"damaged_pages\":[",
      absl::StrJoin(file.torn_pages(), ","), "]}");
}

CLI::Validator BitmapChunkValidator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        auto size = ParseSize(value);
        if (!size.ok()) return std::string(size.status().message());
        if (!IsValidBitmapChunk(*size)) {
          return absl::StrCat("chunk size ", value, " must be a power of two between 4K and 1G");
        }
        return std::string();
      },
      "BYTES");
}

int RunBitmapExamine(const std::string& path, bool json) {
  auto file = BitmapFile::Open(path, /*read_only=*/true);
  if (!file.ok()) return Fail(file.status());
  if (json) {
    printf("%s\n", BitmapExamineJson(**file).c_str());
  } else {
    printf("%s", FormatBitmapExamine(**file).c_str());
  }
  return 0;
}

int RunBitmapRescale(const std::string& path, const std::string& chunk) {
  auto size = ParseSize(chunk);  // already checked by BitmapChunkValidator
  if (!size.ok() || !IsValidBitmapChunk(*size)) {
    fprintf(stderr, "replctl: --chunk %s must be a power of two between 4K and 1G\n",
            chunk.c_str());
    return 2;
  }
  RescaleResult r;
  absl::Status s = RescaleBitmapFile(path, static_cast<uint32_t>(*size), &r);
  if (!s.ok()) return Fail(s);
  printf("%s: %u -> %u byte chunks, %llu -> %llu dirty chunks\n", path.c_str(), r.old_chunk,
         r.new_chunk, static_cast<unsigned long long>(r.old_dirty_chunks),
         static_cast<unsigned long long>(r.new_dirty_chunks));
  return 0;
}

int RunBitmapRescaleOnline(const std::string& admin_socket, const std::string& volume,
                           const std::string& chunk) {
  auto size = ParseSize(chunk);
  if (!size.ok()) {
    fprintf(stderr, "replctl: %s\n", std::string(size.status().message()).c_str());
    return 2;
  }
  AdminClient client(admin_socket);
  admin::RescaleBitmapRequest request;
  request.set_volume(volume);
  request.set_chunk_size(*size);
  admin::RescaleBitmapReply reply;
  // Quiescing waits for in-flight writes to become durable: allow for it.
  auto context = client.NewContext(/*timeout_seconds=*/30);
  grpc::Status status = client.stub()->RescaleBitmap(context.get(), request, &reply);
  if (!status.ok()) return client.ReportFailure(status);
  printf("%s: %llu -> %llu byte chunks, %llu -> %llu bits set\n",
         volume.empty() ? "bitmap" : volume.c_str(),
         static_cast<unsigned long long>(reply.old_chunk_size()),
         static_cast<unsigned long long>(reply.new_chunk_size()),
         static_cast<unsigned long long>(reply.old_bits_set()),
         static_cast<unsigned long long>(reply.new_bits_set()));
  return 0;
}

}  // namespace blockrepl
