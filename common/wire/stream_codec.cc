#include "common/wire/stream_codec.h"

#include <grpcpp/support/proto_buffer_reader.h>


#include "absl/strings/str_cat.h"
#include "common/payload_buffers.h"
#include "common/xxh3.h"

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#include <sanitizer/tsan_interface.h>
#define BLOCKREPL_TSAN 1
#endif
#endif

namespace blockrepl {
namespace {

using replication::Op;

// Protobuf wire format (https://protobuf.dev/programming-guides/encoding/).
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };
constexpr uint32_t Tag(uint32_t field, WireType type) { return field << 3 | type; }
constexpr uint32_t kPrimaryHello = 1;  // PrimaryMessage.hello
constexpr uint32_t kPrimaryBatch = 2;  // PrimaryMessage.batch
constexpr uint32_t kBatchOps = 1;      // Batch.ops
constexpr uint32_t kOpData = 5;        // Op.data

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>(value | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

size_t VarintSize(uint64_t value) {
  size_t n = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++n;
  }
  return n;
}

// TSan builds: the thread that drops a slice's last reference (often one of
// gRPC's, when a stream breaks) frees a buffer another thread filled. gRPC
// orders the two with its own atomics, which TSan cannot see in Debian's
// uninstrumented library (see common/sanitizers/tsan_abseil_sync.cc), so the
// free read as a race (a TSan CI run, stream lost mid-resync). These say the
// hand-over; elsewhere they are nothing.
void HandToGrpc(void* owned) {
#ifdef BLOCKREPL_TSAN
  __tsan_release(owned);
#endif
  (void)owned;
}
void TakeBackFromGrpc(void* owned) {
#ifdef BLOCKREPL_TSAN
  __tsan_acquire(owned);
#endif
  (void)owned;
}

// A slice that owns `data` (moved in): freed when gRPC drops its last reference.
grpc::Slice OwningSlice(std::string data) {
  auto* owned = new std::string(std::move(data));
  HandToGrpc(owned);
  return grpc::Slice(owned->data(), owned->size(),
                     [](void* p) {
                       TakeBackFromGrpc(p);
                       delete static_cast<std::string*>(p);
                     },
                     owned);
}

// A slice that owns `data`'s buffer (handed over, not copied).
grpc::Slice OwningSlice(Payload data) {
  const size_t size = data.size();
  char* bytes = data.Release();
  HandToGrpc(bytes);
  grpc_slice slice = grpc_slice_new_with_len(bytes, size, [](void* p, size_t length) {
    TakeBackFromGrpc(p);
    payload_buffers::Free(static_cast<char*>(p), length);
  });
  return grpc::Slice(slice, grpc::Slice::STEAL_REF);
}

// Reads protobuf wire format across the slices of a received buffer.
class SliceReader {
 public:
  explicit SliceReader(const std::vector<grpc::Slice>& slices) : slices_(slices) {
    for (const grpc::Slice& s : slices) size_ += s.size();
  }
  uint64_t pos() const { return pos_; }
  uint64_t size() const { return size_; }

  bool ReadVarint(uint64_t* value) {
    *value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t byte;
      if (!ReadByte(&byte)) return false;
      *value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;  // more than ten bytes
  }
  // Hands `n` bytes to `sink(pointer, length)` piece by piece; false if fewer remain.
  template <typename Sink>
  bool Take(uint64_t n, Sink sink) {
    if (n > size_ - pos_) return false;
    while (n > 0) {
      SkipEmptySlices();
      const grpc::Slice& slice = slices_[index_];
      const size_t k = std::min<uint64_t>(n, slice.size() - offset_);
      sink(reinterpret_cast<const char*>(slice.begin()) + offset_, k);
      offset_ += k;
      pos_ += k;
      n -= k;
    }
    return true;
  }
  bool CopyTo(uint64_t n, std::string* out) {
    return Take(n, [out](const char* p, size_t k) { out->append(p, k); });
  }
  bool Skip(uint64_t n) {
    return Take(n, [](const char*, size_t) {});
  }

 private:
  void SkipEmptySlices() {
    while (index_ < slices_.size() && offset_ == slices_[index_].size()) {
      ++index_;
      offset_ = 0;
    }
  }
  bool ReadByte(uint8_t* byte) {
    SkipEmptySlices();
    if (index_ == slices_.size()) return false;
    *byte = slices_[index_].begin()[offset_++];
    ++pos_;
    return true;
  }

  const std::vector<grpc::Slice>& slices_;
  size_t index_ = 0;   // the slice being read
  size_t offset_ = 0;  // within it
  uint64_t pos_ = 0;
  uint64_t size_ = 0;
};

absl::Status Malformed(const std::string& what, uint64_t at) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed replication message: ", what, " at byte ", at));
}

// Reads a length prefix and checks it fits before `end`.
absl::Status ReadLength(SliceReader& r, uint64_t end, uint64_t* length) {
  if (!r.ReadVarint(length)) return Malformed("truncated length", r.pos());
  if (r.pos() > end || *length > end - r.pos()) {
    return Malformed("length past the end of its message", r.pos());
  }
  return absl::OkStatus();
}

// Copies one field's value (after its tag) to `out`, or skips it when null.
absl::Status TakeValue(SliceReader& r, uint64_t end, uint32_t type, std::string* out) {
  uint64_t n = 0;
  switch (type) {
    case kVarint: {
      uint64_t v;
      if (!r.ReadVarint(&v)) return Malformed("truncated varint", r.pos());
      if (out != nullptr) AppendVarint(v, out);
      return absl::OkStatus();
    }
    case kFixed64: n = 8; break;
    case kFixed32: n = 4; break;
    case kLengthDelimited: {
      if (absl::Status s = ReadLength(r, end, &n); !s.ok()) return s;
      if (out != nullptr) AppendVarint(n, out);
      break;
    }
    default:
      return Malformed(absl::StrCat("unsupported wire type ", type), r.pos());
  }
  if (r.pos() > end || n > end - r.pos()) {
    return Malformed("field past the end of its message", r.pos());
  }
  return out != nullptr ? (r.CopyTo(n, out) ? absl::OkStatus() : Malformed("truncated", r.pos()))
                        : (r.Skip(n) ? absl::OkStatus() : Malformed("truncated", r.pos()));
}

absl::Status ReadTag(SliceReader& r, uint32_t* field, uint32_t* type) {
  uint64_t tag;
  if (!r.ReadVarint(&tag)) return Malformed("truncated tag", r.pos());
  *field = static_cast<uint32_t>(tag >> 3);
  *type = static_cast<uint32_t>(tag & 7);
  if (*field == 0 || tag >> 32 != 0) return Malformed("invalid field number", r.pos());
  return absl::OkStatus();
}

// One Op in [r.pos(), end): every field but data through protobuf; data as a view.
absl::Status DecodeOp(SliceReader& r, uint64_t end, Op* op, PayloadView* payload) {
  std::string fields;  // the op's other fields, re-encoded for protobuf
  while (r.pos() < end) {
    uint32_t field, type;
    if (absl::Status s = ReadTag(r, &field, &type); !s.ok()) return s;
    if (field == kOpData && type == kLengthDelimited) {
      uint64_t n;
      if (absl::Status s = ReadLength(r, end, &n); !s.ok()) return s;
      payload->pieces.clear();  // a repeated field: the last one wins, as in protobuf
      payload->size = n;
      r.Take(n, [payload](const char* p, size_t k) {
        payload->pieces.push_back(iovec{const_cast<char*>(p), k});
      });
      continue;
    }
    AppendVarint(field << 3 | type, &fields);
    if (absl::Status s = TakeValue(r, end, type, &fields); !s.ok()) return s;
  }
  if (r.pos() != end) return Malformed("op overruns its length", r.pos());
  if (!op->ParseFromString(fields)) return Malformed("op fields protobuf rejects", r.pos());
  return absl::OkStatus();
}

}  // namespace

std::string PayloadView::Flatten() const {
  std::string out;
  out.reserve(size);
  for (const iovec& piece : pieces) out.append(static_cast<const char*>(piece.iov_base), piece.iov_len);
  return out;
}

uint64_t PayloadView::Checksum() const {
  if (pieces.size() == 1) return XXH3_64bits(pieces[0].iov_base, pieces[0].iov_len);
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  for (const iovec& piece : pieces) XXH3_64bits_update(&state, piece.iov_base, piece.iov_len);
  return XXH3_64bits_digest(&state);
}

IncomingBatch IncomingBatch::View(const replication::Batch& batch) {
  IncomingBatch view;
  for (const Op& op : batch.ops()) {
    PayloadView payload;
    if (!op.data().empty()) {
      payload.pieces.push_back(iovec{const_cast<char*>(op.data().data()), op.data().size()});
      payload.size = op.data().size();
    }
    view.payloads_.push_back(std::move(payload));
    Op header = op;
    header.clear_data();
    view.ops_.push_back(std::move(header));
  }
  return view;
}

void IncomingBatch::ReplacePayload(size_t i, std::string data) {
  owned_.push_back(std::move(data));
  const std::string& kept = owned_.back();
  payloads_[i].pieces.clear();
  payloads_[i].size = kept.size();
  if (!kept.empty()) payloads_[i].pieces.push_back(iovec{const_cast<char*>(kept.data()), kept.size()});
}

grpc::ByteBuffer EncodeBatchMessage(replication::Batch batch, std::vector<Payload> out_of_band) {
  const int count = batch.ops_size();
  out_of_band.resize(count);
  // Each op's data: from the op itself (a string) or from out_of_band (a
  // Payload); at most one of the two is non-empty.
  std::vector<std::string> payloads(count);
  std::vector<uint64_t> op_sizes(count);
  uint64_t batch_size = 0;
  for (int i = 0; i < count; ++i) {
    Op* op = batch.mutable_ops(i);
    payloads[i].swap(*op->mutable_data());
    op->clear_data();
    if (!payloads[i].empty()) out_of_band[i] = Payload();
    const uint64_t p = payloads[i].size() + out_of_band[i].size();
    op_sizes[i] = op->ByteSizeLong() + (p > 0 ? VarintSize(Tag(kOpData, kLengthDelimited)) +
                                                     VarintSize(p) + p
                                               : 0);
    batch_size += VarintSize(Tag(kBatchOps, kLengthDelimited)) + VarintSize(op_sizes[i]) +
                  op_sizes[i];
  }
  // Every header (and every small payload) goes into one string, which one
  // slice owns; the message is pieces of it between the large payloads'
  // slices. A piece of a slice is a reference, not an allocation: a batch of
  // 4 KiB writes costs one allocation per payload instead of five.
  std::string headers;
  std::vector<std::pair<size_t, int>> large;  // (headers' size before it, op) per large payload
  AppendVarint(Tag(kPrimaryBatch, kLengthDelimited), &headers);
  AppendVarint(batch_size, &headers);
  for (int i = 0; i < count; ++i) {
    AppendVarint(Tag(kBatchOps, kLengthDelimited), &headers);
    AppendVarint(op_sizes[i], &headers);
    const Op& op = batch.ops(i);
    const size_t at = headers.size();
    headers.resize(at + op.GetCachedSize());  // ByteSizeLong above cached it
    op.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(headers.data() + at));
    const uint64_t p = payloads[i].size() + out_of_band[i].size();
    if (p == 0) continue;
    AppendVarint(Tag(kOpData, kLengthDelimited), &headers);
    AppendVarint(p, &headers);
    if (p < kReferenceBytes) {
      headers += payloads[i];
      headers += out_of_band[i].view();
      continue;
    }
    large.emplace_back(headers.size(), i);
  }
  const grpc::Slice all_headers = OwningSlice(std::move(headers));
  std::vector<grpc::Slice> slices;
  slices.reserve(2 * large.size() + 1);
  size_t from = 0;
  for (const auto& [until, i] : large) {
    if (until > from) slices.push_back(all_headers.sub(from, until));
    from = until;
    slices.push_back(out_of_band[i].empty() ? OwningSlice(std::move(payloads[i]))
                                            : OwningSlice(std::move(out_of_band[i])));
  }
  if (all_headers.size() > from) slices.push_back(all_headers.sub(from, all_headers.size()));
  return grpc::ByteBuffer(slices.data(), slices.size());
}

grpc::ByteBuffer EncodeMessage(const google::protobuf::MessageLite& message) {
  grpc::Slice slice = OwningSlice(message.SerializeAsString());
  return grpc::ByteBuffer(&slice, 1);
}

bool DecodeMessage(const grpc::ByteBuffer& buffer, google::protobuf::MessageLite* message) {
  grpc::ByteBuffer copy(buffer);  // ProtoBufferReader needs a mutable buffer; this shares slices
  grpc::ProtoBufferReader reader(&copy);
  return message->ParseFromZeroCopyStream(&reader);
}

absl::Status DecodePrimaryMessage(const grpc::ByteBuffer& buffer, replication::Hello* hello,
                                  IncomingBatch* batch, bool* is_hello) {
  *is_hello = false;
  *batch = IncomingBatch{};
  grpc::Status dumped = buffer.Dump(&batch->slices_);
  if (!dumped.ok()) return absl::InternalError(dumped.error_message());
  SliceReader r(batch->slices_);
  bool has_body = false;
  while (r.pos() < r.size()) {
    uint32_t field, type;
    if (absl::Status s = ReadTag(r, &field, &type); !s.ok()) return s;
    if (type == kLengthDelimited && (field == kPrimaryHello || field == kPrimaryBatch)) {
      uint64_t n;
      if (absl::Status s = ReadLength(r, r.size(), &n); !s.ok()) return s;
      const uint64_t end = r.pos() + n;
      has_body = true;
      if (field == kPrimaryHello) {
        std::string bytes;
        r.CopyTo(n, &bytes);
        if (!hello->ParseFromString(bytes)) return Malformed("hello protobuf rejects", r.pos());
        *is_hello = true;
        continue;
      }
      *is_hello = false;
      while (r.pos() < end) {
        uint32_t batch_field, batch_type;
        if (absl::Status s = ReadTag(r, &batch_field, &batch_type); !s.ok()) return s;
        if (batch_field != kBatchOps || batch_type != kLengthDelimited) {
          if (absl::Status s = TakeValue(r, end, batch_type, nullptr); !s.ok()) return s;
          continue;
        }
        uint64_t op_length;
        if (absl::Status s = ReadLength(r, end, &op_length); !s.ok()) return s;
        Op op;
        PayloadView payload;
        if (absl::Status s = DecodeOp(r, r.pos() + op_length, &op, &payload); !s.ok()) return s;
        batch->ops_.push_back(std::move(op));
        batch->payloads_.push_back(std::move(payload));
      }
      if (r.pos() != end) return Malformed("batch overruns its length", r.pos());
      continue;
    }
    // A field this version does not know: skipped, as protobuf would.
    if (absl::Status s = TakeValue(r, r.size(), type, nullptr); !s.ok()) return s;
  }
  if (!has_body) return Malformed("neither a hello nor a batch", r.pos());
  return absl::OkStatus();
}

}  // namespace blockrepl
