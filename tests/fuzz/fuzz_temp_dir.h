// A private scratch directory for a fuzzer process (files the target under test must open by
// path: bitmap files, config files, replica metadata), removed at exit. Under /dev/shm when it
// exists, so the millions of writes and fsyncs of a fuzzing run never reach a disk.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace blockrepl::fuzz {

inline const std::string& TempDir() {
  static const std::string* dir = [] {
    const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string tmpl = std::string(base) + "/blockrepl-fuzz-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    auto* d = new std::string(tmpl);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(TempDir(), ignored);
    });
    return d;
  }();
  return *dir;
}

// Writes `size` bytes to `name` in TempDir(), replacing it; returns the path.
inline std::string WriteTempFile(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = TempDir() + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
  return path;
}

}  // namespace blockrepl::fuzz
