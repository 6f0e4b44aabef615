#include "primary/nbd/handshake.h"

#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "primary/nbd/nbd_wire.h"
#include "primary/nbd/socket_io.h"

namespace blockrepl::nbd {
namespace {

constexpr size_t kExportNamePadding = 124;  // zeroes after EXPORT_NAME's reply

absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// One negotiation; holds what the client told us in its flags.
class Negotiation {
 public:
  Negotiation(int fd, absl::Span<const Export> exports, uint32_t max_payload)
      : fd_(fd), exports_(exports), max_payload_(max_payload) {}

  absl::StatusOr<const Export*> Run() {
    std::string greeting;
    AppendU64(&greeting, kNbdMagic);
    AppendU64(&greeting, kIHaveOpt);
    AppendU16(&greeting, kFlagFixedNewstyle | kFlagNoZeroes);
    // A peer that leaves before saying anything (a port probe, a liveness
    // check) ended the negotiation; it did not fail it.
    if (!WriteFull(fd_, greeting).ok()) return nullptr;

    char flags_buf[4];
    absl::Status s = ReadFull(fd_, absl::MakeSpan(flags_buf));
    if (IsCleanEof(s)) return nullptr;
    RETURN_IF_ERROR(s);
    uint32_t client_flags = GetU32(flags_buf);
    if ((client_flags & ~kKnownClientFlags) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown client flags 0x", absl::Hex(client_flags)));
    }
    no_zeroes_ = (client_flags & kClientNoZeroes) != 0;

    while (true) {
      char header[16];
      s = ReadFull(fd_, absl::MakeSpan(header));
      if (IsCleanEof(s)) return nullptr;  // client gave up between options
      RETURN_IF_ERROR(s);
      uint64_t magic = GetU64(header);
      uint32_t option = GetU32(header + 8);
      uint32_t length = GetU32(header + 12);
      if (magic != kIHaveOpt) {
        return absl::InvalidArgumentError(absl::StrCat("bad option magic 0x", absl::Hex(magic)));
      }
      if (length > kMaxOptionLength) {
        return absl::InvalidArgumentError(
            absl::StrCat("option ", option, " length ", length, " exceeds ", kMaxOptionLength));
      }
      std::string data(length, '\0');
      RETURN_IF_ERROR(ReadFull(fd_, absl::MakeSpan(data)));

      switch (option) {
        case kOptExportName:
          return HandleExportName(data);
        case kOptAbort:
          // The client may already have closed; an ACK it never reads is fine.
          Reply(option, kRepAck, "").IgnoreError();
          return nullptr;
        case kOptList:
          RETURN_IF_ERROR(HandleList(data));
          break;
        case kOptInfo:
        case kOptGo: {
          ASSIGN_OR_RETURN(const Export* chosen, HandleInfoOrGo(option, data));
          if (option == kOptGo && chosen != nullptr) return chosen;
          break;
        }
        default:
          // STARTTLS, STRUCTURED_REPLY, SET_META_CONTEXT, ...: clients fall
          // back to what we do support.
          RETURN_IF_ERROR(Reply(option, kRepErrUnsup, "option not supported"));
          break;
      }
    }
  }

 private:
  absl::Status Reply(uint32_t option, uint32_t type, std::string_view data) {
    std::string msg;
    msg.reserve(20 + data.size());
    AppendU64(&msg, kOptReplyMagic);
    AppendU32(&msg, option);
    AppendU32(&msg, type);
    AppendU32(&msg, static_cast<uint32_t>(data.size()));
    msg.append(data);
    return WriteFull(fd_, msg);
  }

  absl::StatusOr<const Export*> HandleExportName(const std::string& name) {
    const Export* e = FindExport(exports_, name);
    // No way to report an error in this reply: the spec says close.
    if (e == nullptr) {
      return absl::NotFoundError(absl::StrCat("unknown export '", name, "' (EXPORT_NAME)"));
    }
    std::string msg;
    AppendU64(&msg, e->device->Size());
    AppendU16(&msg, TransmissionFlags(*e));
    if (!no_zeroes_) msg.append(kExportNamePadding, '\0');
    RETURN_IF_ERROR(WriteFull(fd_, msg));
    return e;
  }

  absl::Status HandleList(const std::string& data) {
    if (!data.empty()) return Reply(kOptList, kRepErrInvalid, "LIST takes no data");
    for (const Export& e : exports_) {
      std::string entry;
      AppendU32(&entry, static_cast<uint32_t>(e.name.size()));
      entry += e.name;
      entry += e.description;
      RETURN_IF_ERROR(Reply(kOptList, kRepServer, entry));
    }
    return Reply(kOptList, kRepAck, "");
  }

  // Returns the export for a successful GO, nullptr after INFO or an error
  // reply (negotiation continues), or an error status to drop the connection.
  absl::StatusOr<const Export*> HandleInfoOrGo(uint32_t option, const std::string& data) {
    // u32 name length, name, u16 count, count * u16 info type.
    if (data.size() < 6) {
      RETURN_IF_ERROR(Reply(option, kRepErrInvalid, "option too short"));
      return nullptr;
    }
    uint64_t name_len = GetU32(data.data());
    if (4 + name_len + 2 > data.size()) {
      RETURN_IF_ERROR(Reply(option, kRepErrInvalid, "name length exceeds option"));
      return nullptr;
    }
    std::string_view name(data.data() + 4, name_len);
    uint16_t count = GetU16(data.data() + 4 + name_len);
    if (4 + name_len + 2 + 2ull * count != data.size()) {
      RETURN_IF_ERROR(Reply(option, kRepErrInvalid, "info request count mismatch"));
      return nullptr;
    }
    bool want_name = false, want_description = false, want_block_size = false;
    for (uint16_t i = 0; i < count; ++i) {
      switch (GetU16(data.data() + 4 + name_len + 2 + 2 * i)) {
        case kInfoName:
          want_name = true;
          break;
        case kInfoDescription:
          want_description = true;
          break;
        case kInfoBlockSize:
          want_block_size = true;
          break;
        default:
          break;  // unknown info requests are ignored, per spec
      }
    }
    const Export* e = FindExport(exports_, name);
    if (e == nullptr) {
      RETURN_IF_ERROR(
          Reply(option, kRepErrUnknown, absl::StrCat("unknown export '", AbslView(name), "'")));
      return nullptr;
    }

    std::string info;
    AppendU16(&info, kInfoExport);
    AppendU64(&info, e->device->Size());
    AppendU16(&info, TransmissionFlags(*e));
    RETURN_IF_ERROR(Reply(option, kRepInfo, info));
    if (want_name) {
      info.clear();
      AppendU16(&info, kInfoName);
      info += e->name;
      RETURN_IF_ERROR(Reply(option, kRepInfo, info));
    }
    if (want_description) {
      info.clear();
      AppendU16(&info, kInfoDescription);
      info += e->description;
      RETURN_IF_ERROR(Reply(option, kRepInfo, info));
    }
    if (want_block_size) {
      info.clear();
      AppendU16(&info, kInfoBlockSize);
      AppendU32(&info, 1);  // any byte range works; alignment only helps speed
      AppendU32(&info, e->preferred_block_size);
      AppendU32(&info, max_payload_);
      RETURN_IF_ERROR(Reply(option, kRepInfo, info));
    }
    RETURN_IF_ERROR(Reply(option, kRepAck, ""));
    return e;
  }

  const int fd_;
  const absl::Span<const Export> exports_;
  const uint32_t max_payload_;
  bool no_zeroes_ = false;
};

}  // namespace

uint16_t TransmissionFlags(const Export& e) {
  uint16_t flags = kTxHasFlags | kTxSendFlush | kTxSendFua | kTxSendTrim | kTxSendWriteZeroes;
  if (e.can_multi_conn) flags |= kTxCanMultiConn;
  return flags;
}

const Export* FindExport(absl::Span<const Export> exports, std::string_view name) {
  if (exports.empty()) return nullptr;
  if (name.empty()) return &exports[0];
  for (const Export& e : exports) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

absl::StatusOr<const Export*> NegotiateExport(int fd, absl::Span<const Export> exports,
                                              uint32_t max_payload) {
  return Negotiation(fd, exports, max_payload).Run();
}

}  // namespace blockrepl::nbd
