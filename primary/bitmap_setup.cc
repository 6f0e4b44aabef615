#include "primary/bitmap_setup.h"

#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace blockrepl {
namespace {

// Creates a fresh file: new identity, all bits clear, and a new history (a
// secondary that followed anything else gets a full sync).
absl::StatusOr<OpenedBitmap> CreateNew(const BitmapSpec& spec, uint64_t volume_size,
                                       const std::string& note) {
  BitmapHeader header;
  header.volume_uuid = BitmapFile::NewId();
  header.generation = BitmapFile::NewId();
  header.volume_size = volume_size;
  header.chunk_size = spec.chunk_size;
  header.daemon_sleep_ms = static_cast<uint32_t>(absl::ToInt64Milliseconds(spec.daemon_sleep));
  auto file = BitmapFile::Create(spec.path, header);
  if (!file.ok()) return file.status();
  OpenedBitmap opened;
  opened.file = file->get();
  opened.volume_uuid = header.volume_uuid;
  opened.history = header.history();
  opened.daemon_sleep = spec.daemon_sleep;
  opened.startup_note = note;
  opened.bitmap = std::make_unique<WriteIntentBitmap>(volume_size, spec.chunk_size,
                                                      std::move(file).value());
  return opened;
}

// Why an existing file cannot serve this volume ("" if it can).
std::string Mismatch(const BitmapSpec& spec, const BitmapHeader& h, uint64_t volume_size) {
  if (h.volume_size != volume_size) {
    return absl::StrCat("it describes a volume of ", h.volume_size, " bytes, the store has ",
                        volume_size, " bytes");
  }
  if (spec.chunk_size_given && h.chunk_size != spec.chunk_size) {
    return absl::StrCat("it has ", h.chunk_size, "-byte chunks, --bitmap asks for ",
                        spec.chunk_size, " (change it with `replctl bitmap rescale`)");
  }
  return "";
}

}  // namespace

absl::StatusOr<OpenedBitmap> OpenBitmap(const BitmapSpec& spec, uint64_t volume_size) {
  if (spec.path.empty()) {
    OpenedBitmap opened;
    // Bits in memory vanish with the process: every run is a new history.
    opened.volume_uuid = BitmapFile::NewId();
    opened.history.current = BitmapFile::NewId();
    opened.daemon_sleep = spec.daemon_sleep;
    opened.bitmap = std::make_unique<WriteIntentBitmap>(volume_size, spec.chunk_size, nullptr);
    opened.startup_note = "bitmap in memory: a restart means a full resync";
    return opened;
  }
  struct stat st;
  if (stat(spec.path.c_str(), &st) != 0 && errno == ENOENT) {
    return CreateNew(spec, volume_size, absl::StrCat("created bitmap file ", spec.path));
  }
  auto file_or = BitmapFile::Open(spec.path);
  std::string problem;
  if (!file_or.ok() && !absl::IsDataLoss(file_or.status())) {
    // In use by another agent, unreadable, ...: nothing an operator flag
    // may override (replacing a file a live agent writes would lose bits).
    return file_or.status();
  }
  if (!file_or.ok()) {
    problem = std::string(file_or.status().message());
  } else if (std::string why = Mismatch(spec, (*file_or)->header(), volume_size); !why.empty()) {
    problem = absl::StrCat("bitmap file ", spec.path, " does not fit this volume: ", why);
  }
  if (!problem.empty()) {
    if (!spec.force_full_resync) {
      return absl::FailedPreconditionError(absl::StrCat(
          problem, ". Nothing was written. To start over with a full resync, run again with "
          "--force-full-resync (the file is replaced)."));
    }
    file_or = absl::UnknownError("replaced");  // closes the old file
    if (unlink(spec.path.c_str()) != 0) {
      return absl::InternalError(absl::StrCat("cannot remove ", spec.path, ": ", strerror(errno)));
    }
    return CreateNew(spec, volume_size,
                     absl::StrCat("replaced bitmap file ", spec.path, " (", problem,
                                  "): full resync"));
  }
  std::unique_ptr<BitmapFile> file = std::move(file_or).value();
  const BitmapHeader header = file->header();
  if ((header.state & BitmapHeader::kStateHandedOver) && !spec.force_full_resync) {
    return absl::FailedPreconditionError(absl::StrCat(
        "bitmap file ", spec.path, ": this store was handed over to its secondary in a planned "
        "switchover (`replctl switchover`), which serves the volume now. Run repl-secondary on "
        "this store with --bitmap=", spec.path, " to make it that primary's replica (README: "
        "\"Disaster recovery runbook\"). Nothing was written."));
  }
  OpenedBitmap opened;
  opened.file = file.get();
  opened.volume_uuid = header.volume_uuid;
  opened.history = header.history();
  opened.daemon_sleep = spec.daemon_sleep_given ? spec.daemon_sleep
                                                : absl::Milliseconds(header.daemon_sleep_ms);
  std::vector<uint64_t> bits = file->loaded_bits();
  const size_t torn = file->torn_pages().size();
  const bool stale = header.state & BitmapHeader::kStateStale;
  const bool clean = header.state & BitmapHeader::kStateClean;
  opened.bitmap = std::make_unique<WriteIntentBitmap>(volume_size, header.chunk_size,
                                                      std::move(file));
  opened.bitmap->LoadPersistedBits(bits);
  if (stale || spec.force_full_resync) {
    // The bits cannot be trusted (or the operator says so): a new history
    // makes the secondary take a full copy, never silently nothing.
    opened.history.Follow(BitmapFile::NewId());
    opened.bitmap->MarkNeedsSync(ChunkRange{0, opened.bitmap->chunk_count()}).IgnoreError();
  }
  opened.startup_note = absl::StrCat(
      "bitmap file ", spec.path, ": ", opened.bitmap->counts().needs_sync_chunks,
      " chunks flagged for resync", clean ? " (clean shutdown)" : " (after a crash)",
      torn > 0 ? absl::StrCat(", ", torn, " damaged page(s) treated as fully dirty") : "",
      stale ? ", marked stale: full resync" : "",
      spec.force_full_resync ? ", --force-full-resync: full resync" : "");
  return opened;
}

}  // namespace blockrepl
