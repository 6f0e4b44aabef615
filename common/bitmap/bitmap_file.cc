#include "common/bitmap/bitmap_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "common/xxh3.h"

namespace blockrepl {
namespace {

constexpr char kMagic[8] = {'B', 'L', 'K', 'R', 'B', 'M', 'P', '\0'};
constexpr uint32_t kPageMagic = 0x67617062;  // "bpag"
constexpr uint64_t kBlock = 4096;
constexpr uint64_t kPagesOffset = 2 * kBlock;
// Bytes covered by the header checksum (the checksum follows them).
constexpr size_t kHeaderCheckedV1 = 104;
constexpr size_t kHeaderCheckedV2 = 152;   // + diverged_from and two older generations
constexpr size_t kDivergedOffset = 104, kOlderOffset = 120, kIdBytes = 16;

template <typename T>
void Put(char* buf, size_t offset, T value) {
  std::memcpy(buf + offset, &value, sizeof(T));  // x86-64 and arm64 are little-endian
}
template <typename T>
T Get(const char* buf, size_t offset) {
  T value;
  std::memcpy(&value, buf + offset, sizeof(T));
  return value;
}

bool IsHexId(const std::string& id) {
  if (id.size() != 32) return false;
  for (char c : id) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// An identifier as 16 bytes; "" (none) as 16 zero bytes.
void PutId(char* buf, size_t offset, const std::string& id) {
  std::string bytes = absl::HexStringToBytes(id);
  std::memcpy(buf + offset, bytes.data(), std::min<size_t>(kIdBytes, bytes.size()));
}
std::string GetId(const char* buf, size_t offset) {
  std::string bytes(buf + offset, kIdBytes);
  if (bytes == std::string(kIdBytes, '\0')) return "";
  return absl::BytesToHexString(bytes);
}

void EncodeHeader(const BitmapHeader& h, char* buf) {
  std::memset(buf, 0, kBlock);
  std::memcpy(buf, kMagic, 8);
  Put<uint32_t>(buf, 8, BitmapHeader::kVersion);  // always written as the newest version
  Put<uint32_t>(buf, 12, static_cast<uint32_t>(kBlock));
  Put<uint64_t>(buf, 16, h.sequence);
  std::string uuid = absl::HexStringToBytes(h.volume_uuid);
  std::string gen = absl::HexStringToBytes(h.generation);
  std::memcpy(buf + 24, uuid.data(), std::min<size_t>(16, uuid.size()));
  std::memcpy(buf + 40, gen.data(), std::min<size_t>(16, gen.size()));
  Put<uint64_t>(buf, 56, h.volume_size);
  Put<uint32_t>(buf, 64, h.chunk_size);
  Put<uint32_t>(buf, 68, h.daemon_sleep_ms);
  Put<uint64_t>(buf, 72, h.events);
  Put<uint64_t>(buf, 80, h.events_cleared);
  Put<uint32_t>(buf, 88, h.state);
  Put<uint32_t>(buf, 92, static_cast<uint32_t>(h.page_count()));
  Put<uint64_t>(buf, 96, 0);  // reserved
  PutId(buf, kDivergedOffset, h.diverged_from);
  for (size_t i = 0; i < h.older.size() && i < 2; ++i) {
    PutId(buf, kOlderOffset + i * kIdBytes, h.older[i]);
  }
  Put<uint64_t>(buf, kHeaderCheckedV2, XXH3_64bits(buf, kHeaderCheckedV2));
}

// Decodes one slot; an error says what is wrong with it.
absl::StatusOr<BitmapHeader> DecodeHeader(const char* buf) {
  if (std::memcmp(buf, kMagic, 8) != 0) return absl::DataLossError("bad magic");
  BitmapHeader h;
  h.version = Get<uint32_t>(buf, 8);
  if (h.version != 1 && h.version != 2) {
    return absl::DataLossError(absl::StrCat("unsupported version ", h.version));
  }
  // Version 1 had no history beyond `generation`: it loads as "nothing
  // written on its own", which is what a version-1 agent assumed.
  const size_t checked = h.version == 1 ? kHeaderCheckedV1 : kHeaderCheckedV2;
  if (Get<uint64_t>(buf, checked) != XXH3_64bits(buf, checked)) {
    return absl::DataLossError("header checksum mismatch");
  }
  if (h.version == 2) {
    h.diverged_from = GetId(buf, kDivergedOffset);
    for (size_t i = 0; i < 2; ++i) {
      std::string id = GetId(buf, kOlderOffset + i * kIdBytes);
      if (!id.empty()) h.older.push_back(std::move(id));
    }
  }
  h.sequence = Get<uint64_t>(buf, 16);
  h.volume_uuid = absl::BytesToHexString(std::string(buf + 24, 16));
  h.generation = absl::BytesToHexString(std::string(buf + 40, 16));
  h.volume_size = Get<uint64_t>(buf, 56);
  h.chunk_size = Get<uint32_t>(buf, 64);
  h.daemon_sleep_ms = Get<uint32_t>(buf, 68);
  h.events = Get<uint64_t>(buf, 72);
  h.events_cleared = Get<uint64_t>(buf, 80);
  h.state = Get<uint32_t>(buf, 88);
  if (h.chunk_size < 4096 || (h.chunk_size & (h.chunk_size - 1)) != 0 || h.volume_size == 0) {
    return absl::DataLossError("invalid chunk size or volume size");
  }
  if (Get<uint32_t>(buf, 92) != h.page_count()) return absl::DataLossError("page count mismatch");
  return h;
}

uint64_t PageChecksum(const char* bits, uint64_t index) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  XXH3_64bits_update(state, bits, kBitmapPageBytes);
  XXH3_64bits_update(state, &index, sizeof(index));
  uint64_t sum = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return sum;
}

absl::Status PwriteAll(int fd, const char* data, size_t size, uint64_t offset,
                       const std::string& path) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = pwrite(fd, data + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError(absl::StrCat("pwrite ", path, " @", offset + done));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// One writer per bitmap file: a second agent (or an offline rescale) on a
// file in use would corrupt it. The lock dies with the process.
absl::Status LockExclusive(int fd, const std::string& path) {
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("bitmap file ", path, " is in use by another process (a running agent?)"));
    }
    return PosixError(absl::StrCat("flock ", path));
  }
  return absl::OkStatus();
}

}  // namespace

std::string BitmapFile::NewId() {
  std::random_device random;
  return absl::StrFormat("%08x%08x%08x%08x", random(), random(), random(), random());
}

BitmapFile::~BitmapFile() { close(fd_); }

absl::StatusOr<std::unique_ptr<BitmapFile>> BitmapFile::Create(const std::string& path,
                                                               BitmapHeader header) {
  if (!IsHexId(header.volume_uuid) || !IsHexId(header.generation) ||
      (!header.diverged_from.empty() && !IsHexId(header.diverged_from))) {
    return absl::InvalidArgumentError("bitmap identifiers must be 32 hex digits");
  }
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return PosixError(absl::StrCat("create bitmap file ", path));
  std::unique_ptr<BitmapFile> file(new BitmapFile(path, fd, false));
  RETURN_IF_ERROR(LockExclusive(fd, path));
  // Allocate every block now, so a full file system shows up here and not
  // as a failed bit flush in front of a client's write.
  const uint64_t size = kPagesOffset + header.page_count() * kBlock;
  int err = posix_fallocate(fd, 0, static_cast<off_t>(size));
  if (err != 0) {
    unlink(path.c_str());
    return ErrnoToStatus(err, absl::StrCat("allocate bitmap file ", path));
  }
  std::vector<BitmapPage> pages;
  for (uint64_t i = 0; i < header.page_count(); ++i) {
    pages.push_back(BitmapPage{i, std::vector<uint64_t>(kWordsPerPage, 0)});
  }
  absl::Status s = file->WritePages(pages);
  header.sequence = 0;
  header.events = 0;
  if (s.ok()) s = file->WriteHeader(header);
  if (!s.ok()) {
    unlink(path.c_str());
    return s;
  }
  file->loaded_bits_.assign(header.page_count() * kWordsPerPage, 0);
  return file;
}

absl::StatusOr<std::unique_ptr<BitmapFile>> BitmapFile::Open(const std::string& path,
                                                             bool read_only) {
  int fd = open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) return PosixError(absl::StrCat("open bitmap file ", path));
  std::unique_ptr<BitmapFile> file(new BitmapFile(path, fd, read_only));
  if (!read_only) RETURN_IF_ERROR(LockExclusive(fd, path));
  std::vector<char> slots(2 * kBlock);
  ssize_t n = pread(fd, slots.data(), slots.size(), 0);
  if (n < 0) return PosixError(absl::StrCat("read bitmap file ", path));
  if (static_cast<size_t>(n) < slots.size()) {
    return absl::DataLossError(absl::StrCat("bitmap file ", path, " is truncated (", n,
                                            " bytes, the header alone needs ", slots.size(), ")"));
  }
  absl::StatusOr<BitmapHeader> a = DecodeHeader(slots.data());
  absl::StatusOr<BitmapHeader> b = DecodeHeader(slots.data() + kBlock);
  if (!a.ok() && !b.ok()) {
    return absl::DataLossError(absl::StrCat("bitmap file ", path,
                                            " has no valid header: slot A: ", a.status().message(),
                                            "; slot B: ", b.status().message()));
  }
  const bool use_a = a.ok() && (!b.ok() || a->sequence >= b->sequence);
  file->header_ = use_a ? *a : *b;
  file->next_slot_ = use_a ? 1 : 0;
  struct stat st;
  if (fstat(fd, &st) != 0) return PosixError(absl::StrCat("fstat ", path));
  const uint64_t needed = kPagesOffset + file->header_.page_count() * kBlock;
  if (static_cast<uint64_t>(st.st_size) < needed) {
    return absl::DataLossError(absl::StrCat("bitmap file ", path, " is truncated: ", st.st_size,
                                            " bytes, its header needs ", needed));
  }
  RETURN_IF_ERROR(file->LoadPages());
  return file;
}

absl::Status BitmapFile::LoadPages() {
  const uint64_t pages = header_.page_count();
  loaded_bits_.assign(pages * kWordsPerPage, 0);
  std::vector<char> block(kBlock);
  for (uint64_t i = 0; i < pages; ++i) {
    ssize_t n = pread(fd_, block.data(), kBlock, static_cast<off_t>(kPagesOffset + i * kBlock));
    if (n != static_cast<ssize_t>(kBlock)) {
      return PosixError(absl::StrCat("read bitmap file ", path_, " page ", i));
    }
    const bool valid = Get<uint64_t>(block.data(), kBitmapPageBytes) ==
                           PageChecksum(block.data(), i) &&
                       Get<uint32_t>(block.data(), kBitmapPageBytes + 8) == i &&
                       Get<uint32_t>(block.data(), kBitmapPageBytes + 12) == kPageMagic;
    uint64_t* words = loaded_bits_.data() + i * kWordsPerPage;
    if (valid) {
      std::memcpy(words, block.data(), kBitmapPageBytes);
    } else {
      // Torn or damaged: assume every chunk of the page may differ.
      torn_pages_.push_back(i);
      for (uint64_t w = 0; w < kWordsPerPage; ++w) words[w] = ~uint64_t{0};
    }
  }
  // Bits past the last chunk must stay clear (they are not chunks).
  const uint64_t chunks = header_.chunk_count();
  for (uint64_t c = chunks; c < pages * kBitsPerPage; ++c) {
    loaded_bits_[c / 64] &= ~(uint64_t{1} << (c % 64));
  }
  return absl::OkStatus();
}

absl::Status BitmapFile::RenameOver(const std::string& new_path) {
  if (rename(path_.c_str(), new_path.c_str()) != 0) {
    return PosixError(absl::StrCat("rename ", path_, " to ", new_path));
  }
  path_ = new_path;
  const size_t slash = new_path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : new_path.substr(0, slash);
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return PosixError(absl::StrCat("open directory ", dir));
  const bool synced = fsync(dfd) == 0;
  close(dfd);
  if (!synced) return PosixError(absl::StrCat("fsync directory ", dir));
  return absl::OkStatus();
}

absl::Status BitmapFile::WriteHeader(BitmapHeader header) {
  if (read_only_) return absl::FailedPreconditionError("bitmap file opened read-only");
  header.sequence = header_.sequence + 1;
  header.events = header_.events + 1;
  if (header_.volume_uuid.empty()) header.sequence = 1;  // first write of a new file
  std::vector<char> block(kBlock);
  EncodeHeader(header, block.data());
  RETURN_IF_ERROR(PwriteAll(fd_, block.data(), kBlock, next_slot_ * kBlock, path_));
  if (fdatasync(fd_) != 0) return PosixError(absl::StrCat("fdatasync ", path_));
  header_ = header;
  next_slot_ = 1 - next_slot_;
  return absl::OkStatus();
}

absl::Status BitmapFile::WritePages(const std::vector<BitmapPage>& pages) {
  if (read_only_) return absl::FailedPreconditionError("bitmap file opened read-only");
  if (pages.empty()) return absl::OkStatus();
  std::vector<char> block(kBlock);
  for (const BitmapPage& page : pages) {
    std::memcpy(block.data(), page.words.data(), kBitmapPageBytes);
    Put<uint64_t>(block.data(), kBitmapPageBytes, PageChecksum(block.data(), page.index));
    Put<uint32_t>(block.data(), kBitmapPageBytes + 8, static_cast<uint32_t>(page.index));
    Put<uint32_t>(block.data(), kBitmapPageBytes + 12, kPageMagic);
    RETURN_IF_ERROR(PwriteAll(fd_, block.data(), kBlock, kPagesOffset + page.index * kBlock, path_));
  }
  if (fdatasync(fd_) != 0) return PosixError(absl::StrCat("fdatasync ", path_));
  return absl::OkStatus();
}

}  // namespace blockrepl
