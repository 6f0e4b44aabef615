#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>

namespace blockrepl {

std::string ProgressBar(double fraction, int width) {
  fraction = std::min(1.0, std::max(0.0, fraction));
  const int filled = static_cast<int>(fraction * width);
  std::string bar = "[";
  for (int i = 0; i < width; ++i) bar += i < filled ? '=' : (i == filled ? '>' : '.');
  return bar + "]";
}

bool StdoutIsTerminal() { return isatty(STDOUT_FILENO) == 1; }

}  // namespace blockrepl
