#include "common/fault_injecting_block_device.h"

#include <cerrno>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/string_view.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace blockrepl {
namespace {

constexpr absl::Duration kRecheckEvery = absl::Milliseconds(20);

int OpsFromName(absl::string_view name) {
  using R = FaultInjectingBlockDevice::Rule;
  if (name == "read") return R::kRead;
  if (name == "write") return R::kWrite;
  if (name == "flush") return R::kFlush;
  if (name == "trim") return R::kTrim;
  if (name == "zeroes") return R::kZeroes;
  if (name == "all") return R::kAll;
  return 0;
}

int ErrnoFromName(absl::string_view name) {
  if (name == "EIO") return EIO;
  if (name == "ENOSPC") return ENOSPC;
  if (name == "EROFS") return EROFS;
  if (name == "EDQUOT") return EDQUOT;
  return 0;
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "";
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

FaultInjectingBlockDevice::FaultInjectingBlockDevice(std::unique_ptr<BlockDevice> inner,
                                                     std::string control_path)
    : inner_(std::move(inner)), control_path_(std::move(control_path)) {}

std::vector<FaultInjectingBlockDevice::Rule> FaultInjectingBlockDevice::ParseRules(
    const std::string& text, std::vector<std::string>* problems) {
  std::vector<Rule> rules;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = line.substr(0, line.find('#'));
    std::vector<absl::string_view> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (words.empty()) continue;
    Rule rule;
    rule.ops = OpsFromName(words[0]);
    rule.error = words.size() >= 2 ? ErrnoFromName(words[1]) : 0;
    const bool ranged = words.size() == 4;
    if (rule.ops == 0 || rule.error == 0 || (words.size() != 2 && !ranged) ||
        (ranged && (!absl::SimpleAtoi(words[2], &rule.offset) ||
                    !absl::SimpleAtoi(words[3], &rule.length) || rule.length == 0))) {
      problems->push_back(absl::StrCat("line ", line_number, ": '", line,
                                       "' is not 'OP ERRNO [OFFSET LENGTH]'"));
      continue;
    }
    rules.push_back(rule);
  }
  return rules;
}

void FaultInjectingBlockDevice::ReloadIfChanged() {
  const absl::Time now = absl::Now();
  if (now < next_check_) return;
  next_check_ = now + kRecheckEvery;
  std::string text = ReadWholeFile(control_path_);
  if (text == loaded_text_) return;
  std::vector<std::string> problems;
  rules_ = ParseRules(text, &problems);
  loaded_text_ = std::move(text);
  for (const std::string& p : problems) LogWarning("fault injection: ", control_path_, ": ", p);
  LogWarning("fault injection: ", rules_.size(), " rule(s) now in force from ", control_path_);
}

absl::Status FaultInjectingBlockDevice::Check(Rule::Op op, uint64_t offset, uint64_t length,
                                              const char* what) {
  absl::MutexLock lock(&mu_);
  ReloadIfChanged();
  for (const Rule& r : rules_) {
    if ((r.ops & op) == 0) continue;
    const bool whole = r.length == 0 || op == Rule::kFlush;
    if (!whole && (offset >= r.offset + r.length || offset + length <= r.offset)) continue;
    ++injected_;
    return ErrnoToStatus(r.error, absl::StrCat(what, " at offset ", offset, " (injected fault)"));
  }
  return absl::OkStatus();
}

uint64_t FaultInjectingBlockDevice::injected() const {
  absl::MutexLock lock(&mu_);
  return injected_;
}

absl::Status FaultInjectingBlockDevice::Read(uint64_t offset, absl::Span<char> out) {
  RETURN_IF_ERROR(Check(Rule::kRead, offset, out.size(), "read"));
  return inner_->Read(offset, out);
}

absl::Status FaultInjectingBlockDevice::Write(uint64_t offset, absl::Span<const char> data,
                                              bool fua) {
  RETURN_IF_ERROR(Check(Rule::kWrite, offset, data.size(), "write"));
  return inner_->Write(offset, data, fua);
}

absl::Status FaultInjectingBlockDevice::WritePieces(uint64_t offset,
                                                    absl::Span<const iovec> pieces, bool fua) {
  uint64_t length = 0;
  for (const iovec& piece : pieces) length += piece.iov_len;
  RETURN_IF_ERROR(Check(Rule::kWrite, offset, length, "write"));
  return inner_->WritePieces(offset, pieces, fua);
}

absl::Status FaultInjectingBlockDevice::Flush() {
  RETURN_IF_ERROR(Check(Rule::kFlush, 0, 0, "flush"));
  return inner_->Flush();
}

absl::Status FaultInjectingBlockDevice::Trim(uint64_t offset, uint64_t length, bool fua) {
  RETURN_IF_ERROR(Check(Rule::kTrim, offset, length, "trim"));
  return inner_->Trim(offset, length, fua);
}

absl::Status FaultInjectingBlockDevice::WriteZeroes(uint64_t offset, uint64_t length,
                                                    bool may_trim, bool fua) {
  RETURN_IF_ERROR(Check(Rule::kZeroes, offset, length, "write zeroes"));
  return inner_->WriteZeroes(offset, length, may_trim, fua);
}

std::unique_ptr<BlockDevice> MaybeInjectFaults(std::unique_ptr<BlockDevice> store,
                                               const std::string& control_path) {
  if (control_path.empty()) return store;
  LogWarning("TEST ONLY: the store's I/O can be failed on command through ", control_path,
             " (--test-inject-faults); never use this in production");
  return std::make_unique<FaultInjectingBlockDevice>(std::move(store), control_path);
}

}  // namespace blockrepl
