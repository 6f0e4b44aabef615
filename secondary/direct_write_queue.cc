#include "secondary/direct_write_queue.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace blockrepl {
namespace {

// Queued writes are submitted in groups of this many (one io_uring_enter),
// or at once when a write fills a slot (a large write goes out whole).
constexpr size_t kSubmitGroup = 8;

}  // namespace

absl::StatusOr<std::unique_ptr<DirectWriteQueue>> DirectWriteQueue::Open(const std::string& path,
                                                                         Options options) {
  if (options.slots == 0 || options.slot_bytes == 0 || options.slot_bytes % kAlignment != 0 ||
      options.slot_bytes > (1u << 30)) {
    return absl::InvalidArgumentError("direct write queue: slots and slot size must be > 0, the "
                                      "size a multiple of 4 KiB");
  }
  const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_DIRECT);
  if (fd < 0) {
    if (errno == EINVAL) {
      return absl::UnimplementedError(absl::StrCat(path, ": the file system refuses O_DIRECT"));
    }
    return PosixError(absl::StrCat("open ", path, " with O_DIRECT"));
  }
  const size_t bytes = options.slots * options.slot_bytes;
  void* buffers = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buffers == MAP_FAILED) {
    absl::Status s = PosixError("mmap the direct write buffers");
    close(fd);
    return s;
  }
  auto queue = std::unique_ptr<DirectWriteQueue>(
      new DirectWriteQueue(fd, options, static_cast<char*>(buffers)));
  unsigned flags = 0;
#ifdef IORING_SETUP_COOP_TASKRUN
  // Completions are only looked at when we enter the ring anyway: no need
  // for the kernel to interrupt the applier to post them.
  flags |= IORING_SETUP_COOP_TASKRUN;
#endif
  int rc = io_uring_queue_init(static_cast<unsigned>(options.slots), &queue->ring_, flags);
  if (rc == -EINVAL && flags != 0) {
    rc = io_uring_queue_init(static_cast<unsigned>(options.slots), &queue->ring_, 0);
  }
  if (rc < 0) {
    return absl::UnimplementedError(
        absl::StrCat("io_uring is not available here: ", std::strerror(-rc)));
  }
  queue->ring_ready_ = true;
  return queue;
}

DirectWriteQueue::DirectWriteQueue(int fd, Options options, char* buffers)
    : fd_(fd), options_(options), buffers_(buffers), slots_(options.slots) {
  std::memset(&ring_, 0, sizeof(ring_));
  free_slots_.reserve(options.slots);
  for (size_t i = options.slots; i > 0; --i) free_slots_.push_back(i - 1);
}

DirectWriteQueue::~DirectWriteQueue() {
  if (ring_ready_) {
    Drain().IgnoreError();  // a failure was (or will never be) reported by the caller's Drain
    io_uring_queue_exit(&ring_);
  }
  munmap(buffers_, options_.slots * options_.slot_bytes);
  close(fd_);
}

bool DirectWriteQueue::OverlapsInFlight(uint64_t offset, uint64_t length) const {
  if (in_flight_ == 0) return false;
  for (const Slot& slot : slots_) {
    if (slot.busy && slot.offset < offset + length && offset < slot.offset + slot.length) {
      return true;
    }
  }
  return false;
}

void DirectWriteQueue::Complete(size_t slot_index, int result) {
  Slot& slot = slots_[slot_index];
  // A short direct write (the device or file system stopped part way) is
  // finished synchronously from where it stopped; a second failure is final.
  uint64_t done = result > 0 ? static_cast<uint64_t>(result) : 0;
  while (result >= 0 && done < slot.length) {
    const ssize_t n = pwrite(fd_, SlotBuffer(slot_index) + done, slot.length - done,
                             static_cast<off_t>(slot.offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      result = n < 0 ? -errno : -EIO;
      break;
    }
    done += static_cast<uint64_t>(n);
  }
  if (result < 0 && error_.ok()) {
    error_ = ErrnoToStatus(-result, absl::StrCat("direct write of ", slot.length, " bytes at ",
                                               slot.offset));
  }
  slot.busy = false;
  free_slots_.push_back(slot_index);
  in_flight_--;
}

absl::Status DirectWriteQueue::SubmitAndReap(size_t wait_for) {
  if (unsubmitted_ > 0) {
    int rc;
    do {
      rc = io_uring_submit(&ring_);
    } while (rc == -EINTR);
    if (rc < 0) return ErrnoToStatus(-rc, "io_uring_submit");
    unsubmitted_ -= std::min<size_t>(unsubmitted_, static_cast<size_t>(rc));
  }
  io_uring_cqe* cqe = nullptr;
  if (wait_for > 0) {
    int rc;
    do {
      rc = io_uring_wait_cqe_nr(&ring_, &cqe, static_cast<unsigned>(wait_for));
    } while (rc == -EINTR);
    if (rc < 0) return ErrnoToStatus(-rc, "io_uring_wait_cqe");
  }
  while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
    Complete(static_cast<size_t>(io_uring_cqe_get_data64(cqe)), cqe->res);
    io_uring_cqe_seen(&ring_, cqe);
  }
  return absl::OkStatus();
}

absl::Status DirectWriteQueue::Write(uint64_t offset, absl::Span<const iovec> pieces) {
  uint64_t length = 0;
  for (const iovec& piece : pieces) length += piece.iov_len;
  if (!Aligned(offset, length)) {
    return absl::InvalidArgumentError(absl::StrCat("direct write of ", length, " bytes at ",
                                                   offset, " is not 4 KiB aligned"));
  }
  if (OverlapsInFlight(offset, length)) RETURN_IF_ERROR(Drain());
  size_t piece = 0, piece_at = 0;  // where the copy continues in `pieces`
  for (uint64_t at = 0; at < length;) {
    while (free_slots_.empty()) RETURN_IF_ERROR(SubmitAndReap(/*wait_for=*/1));
    const size_t slot_index = free_slots_.back();
    free_slots_.pop_back();
    const uint64_t n = std::min<uint64_t>(options_.slot_bytes, length - at);
    char* buffer = SlotBuffer(slot_index);
    for (uint64_t copied = 0; copied < n;) {
      const iovec& from = pieces[piece];
      const size_t take = std::min<size_t>(from.iov_len - piece_at, n - copied);
      std::memcpy(buffer + copied, static_cast<const char*>(from.iov_base) + piece_at, take);
      copied += take;
      piece_at += take;
      if (piece_at == from.iov_len) {
        piece++;
        piece_at = 0;
      }
    }
    slots_[slot_index] = Slot{offset + at, static_cast<uint32_t>(n), true};
    // The ring has a submission entry per slot, and a slot is free only once
    // its entry was consumed, so there is always one here.
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    io_uring_prep_write(sqe, fd_, buffer, static_cast<unsigned>(n), offset + at);
    io_uring_sqe_set_data64(sqe, slot_index);
    in_flight_++;
    unsubmitted_++;
    writes_total_++;
    at += n;
  }
  if (unsubmitted_ >= kSubmitGroup || length >= options_.slot_bytes) {
    RETURN_IF_ERROR(SubmitAndReap(/*wait_for=*/0));
  }
  return absl::OkStatus();
}

absl::Status DirectWriteQueue::Drain() {
  absl::Status status;
  // All at once: one wake-up, not one per write.
  while (in_flight_ > 0 && status.ok()) status = SubmitAndReap(/*wait_for=*/in_flight_);
  if (status.ok()) status = error_;
  error_ = absl::OkStatus();
  return status;
}

}  // namespace blockrepl
