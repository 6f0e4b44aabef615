// `replctl bitmap examine|rescale`: offline tools for a write-intent bitmap
// file, as `mdadm -X` / `mdadm --grow --bitmap-chunk` are for md. Examine
// opens the file read-only (no lock: it works while an agent runs); rescale
// takes the writer lock and so refuses a file in use. Neither talks to an
// agent. Run from replctl's main thread only.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "common/bitmap/bitmap_file.h"

namespace blockrepl {

// mdadm -X style block, one "Label : value" line per fact, ends with '\n'.
std::string FormatBitmapExamine(const BitmapFile& file);
// The same facts as one JSON object (no trailing newline).
std::string BitmapExamineJson(const BitmapFile& file);

// A CLI11 validator for --chunk: a size (ParseSize) that is a power of two
// between 4 KiB and 1 GiB.
CLI::Validator BitmapChunkValidator();

// Run the commands; return the process exit code (0 ok, 1 unusable file).
int RunBitmapExamine(const std::string& path, bool json);
int RunBitmapRescale(const std::string& path, const std::string& chunk);
// Online form: asks the running primary behind `admin_socket` to rescale.
int RunBitmapRescaleOnline(const std::string& admin_socket, const std::string& volume,
                           const std::string& chunk);

}  // namespace blockrepl
