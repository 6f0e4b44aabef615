// Converts protobuf messages to JSON for `replctl --json`. Unlike
// protobuf's own JsonPrinter, 64-bit integers are JSON numbers (scripts
// compare them as numbers) and every field is printed, defaults included.
#pragma once

#include <string>

#include "google/protobuf/message.h"

namespace blockrepl {

std::string MessageToJson(const google::protobuf::Message& message);

}  // namespace blockrepl
