// The bytes of one write, owned and movable, on their way from the NBD
// socket to the local disk and on to the replication stream.
//
// Not a std::string: C++20 has no way to size a string without zero-filling
// it first, and a 1 MiB write's payload is received straight into this
// buffer, so the fill was pure waste (10% of the primary's CPU at 1 MiB
// writes, docs/PERFORMANCE.md round 3). The buffer is moved, never copied,
// until gRPC frees it after sending (common/wire/stream_codec). Large buffers
// come from their own bounded cache of mappings (common/payload_buffers.h).
#pragma once

#include <cstddef>
#include <cstring>
#include <string_view>
#include <utility>

#include "absl/types/span.h"
#include "common/payload_buffers.h"

namespace blockrepl {

class Payload {
 public:
  Payload() = default;
  Payload(Payload&& other) noexcept
      : bytes_(std::exchange(other.bytes_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  Payload& operator=(Payload&& other) noexcept {
    if (this != &other) {
      payload_buffers::Free(bytes_, size_);
      bytes_ = std::exchange(other.bytes_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~Payload() { payload_buffers::Free(bytes_, size_); }

  // `size` bytes of unspecified content, to be overwritten (e.g. by recv).
  static Payload ForOverwrite(size_t size) {
    Payload p;
    if (size != 0) p.bytes_ = payload_buffers::Allocate(size);
    p.size_ = size;
    return p;
  }
  static Payload CopyOf(std::string_view bytes) {
    Payload p = ForOverwrite(bytes.size());
    if (!bytes.empty()) std::memcpy(p.data(), bytes.data(), bytes.size());
    return p;
  }

  char* data() { return bytes_; }
  const char* data() const { return bytes_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {bytes_, size_}; }
  absl::Span<char> span() { return {bytes_, size_}; }
  absl::Span<const char> span() const { return {bytes_, size_}; }

  // Hands the buffer over, to be freed with payload_buffers::Free(bytes,
  // size) with the size it had; leaves this empty.
  char* Release() {
    size_ = 0;
    return std::exchange(bytes_, nullptr);
  }

 private:
  char* bytes_ = nullptr;  // from payload_buffers::Allocate(size_)
  size_t size_ = 0;
};

}  // namespace blockrepl
