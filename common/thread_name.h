// Names the calling thread, so `top -H`, `perf report --sort comm` and gdb
// tell an agent's threads apart (they would all be "repl-primary").
#pragma once

#include <pthread.h>

#include <string>
#include <string_view>

namespace blockrepl {

// Linux keeps 15 characters; longer names are cut, never refused.
inline void NameThisThread(std::string_view name) {
  std::string cut(name.substr(0, 15));
  pthread_setname_np(pthread_self(), cut.c_str());
}

}  // namespace blockrepl
