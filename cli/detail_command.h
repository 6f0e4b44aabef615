// `replctl detail`: everything an agent knows about one volume, one fact
// per line (as `mdadm --detail`), or the full status as one JSON object.
#pragma once

#include <string>

#include "admin.pb.h"

namespace blockrepl {

std::string FormatVolumeDetail(const admin::VolumeStatus& v);
int RunDetailCommand(const std::string& admin_socket, const std::string& volume, bool json);

}  // namespace blockrepl
