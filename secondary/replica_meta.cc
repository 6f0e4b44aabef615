#include "secondary/replica_meta.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace blockrepl {
namespace {

// A 0/1 value; false for anything else.
bool ParseFlag(const std::string& value, bool* out) {
  *out = value == "1";
  return value == "0" || value == "1";
}

}  // namespace

absl::StatusOr<ReplicaMeta> ReplicaMeta::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, " does not exist"));
    return PosixError(absl::StrCat("open ", path));
  }
  ReplicaMeta meta;
  std::string line;
  bool has_magic = false;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.empty() || line[0] == '#') continue;
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    const std::string& key = kv.first;
    const std::string& value = kv.second;
    bool ok = true;
    if (key == "format") {
      has_magic = value == "blockrepl-replica-meta-v1";
      ok = has_magic;
    } else if (key == "volume") {
      meta.volume = value;
    } else if (key == "size_bytes") {
      ok = absl::SimpleAtoi(value, &meta.size_bytes);
    } else if (key == "followed_generation") {
      meta.followed_generation = value;
    } else if (key == "consistent") {
      ok = ParseFlag(value, &meta.consistent);
    } else if (key == "undo_valid") {
      ok = ParseFlag(value, &meta.undo_valid);
    } else if (key == "volume_uuid") {
      meta.volume_uuid = value;
    } else if (key == "diverged_from") {
      meta.diverged_from = value;
    } else if (key == "older_generations") {
      meta.older_generations = value;
    } else if (key == "chunk_size") {
      ok = absl::SimpleAtoi(value, &meta.chunk_size);
    } else if (key == "promoted") {
      ok = ParseFlag(value, &meta.promoted);
    } else if (key == "promoted_nbd_listen") {
      meta.promoted_nbd_listen = value;
    } else if (key == "promoted_peer") {
      meta.promoted_peer = value;
    } else if (key == "last_applied_seq") {
      ok = absl::SimpleAtoi(value, &meta.last_applied_seq);
    }  // unknown keys: written by a newer version, ignored
    if (!ok) {
      return absl::DataLossError(
          absl::StrCat(path, ":", line_number, ": invalid value for '", key, "'"));
    }
  }
  if (!has_magic) {
    return absl::DataLossError(
        absl::StrCat(path, ": not a blockrepl replica metadata file (no format line)"));
  }
  return meta;
}

DataHistory ReplicaMeta::history() const {
  DataHistory h{followed_generation, diverged_from, {}};
  h.SetOlderList(older_generations);
  return h;
}

void ReplicaMeta::set_history(const DataHistory& h) {
  followed_generation = h.current;
  diverged_from = h.diverged_from;
  older_generations = h.OlderList();
}

absl::Status ReplicaMeta::Save(const std::string& path) const {
  const std::string text = absl::StrCat(
      "format=blockrepl-replica-meta-v1\n", "volume=", volume, "\n", "size_bytes=", size_bytes,
      "\n", "followed_generation=", followed_generation, "\n", "consistent=", consistent ? 1 : 0,
      "\n", "last_applied_seq=", last_applied_seq, "\n", "undo_valid=", undo_valid ? 1 : 0, "\n",
      "volume_uuid=", volume_uuid, "\n", "diverged_from=", diverged_from, "\n",
      "older_generations=", older_generations, "\n", "chunk_size=", chunk_size, "\n",
      "promoted=", promoted ? 1 : 0, "\n", "promoted_nbd_listen=", promoted_nbd_listen, "\n",
      "promoted_peer=", promoted_peer, "\n");
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return PosixError(absl::StrCat("open ", tmp));
  ssize_t n = write(fd, text.data(), text.size());
  if (n != static_cast<ssize_t>(text.size()) || fsync(fd) != 0) {
    absl::Status s = PosixError(absl::StrCat("write ", tmp));
    close(fd);
    return s;
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) return PosixError(absl::StrCat("rename ", tmp));
  std::string dir = path.substr(0, path.find_last_of('/') == std::string::npos
                                       ? 0
                                       : path.find_last_of('/'));
  if (dir.empty()) dir = path.find('/') == 0 ? "/" : ".";
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return absl::OkStatus();
}

}  // namespace blockrepl
