// Progress display helpers for replctl: a text bar, and whether stdout is a
// terminal (bars and in-place redraws only then; plain lines for pipes/logs).
#pragma once

#include <string>

namespace blockrepl {

// "[=====>..............]" for `fraction` in [0, 1].
std::string ProgressBar(double fraction, int width);
bool StdoutIsTerminal();

}  // namespace blockrepl
