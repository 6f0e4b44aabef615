#include "cli/verify_command.h"

#include <cstdio>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "cli/admin_client.h"
#include "cli/json_output.h"
#include "cli/progress.h"
#include "common/units.h"

namespace blockrepl {

namespace {

// Redraws one progress line from the agent's status until `finished`.
void ShowProgress(const std::string& admin_socket, const std::string& volume,
                  absl::Notification* finished) {
  AdminClient client(admin_socket);
  bool drawn = false;
  while (!finished->WaitForNotificationWithTimeout(absl::Milliseconds(250))) {
    admin::VolumeStatus v;
    if (!client.GetVolume(volume, &v).ok() || !v.verify_active() || v.verify_total_chunks() == 0) {
      continue;
    }
    const double fraction = static_cast<double>(v.verify_done_chunks()) / v.verify_total_chunks();
    printf("\r%s verify %s %5.1f%% (%lu/%lu chunks), %lu differ ", v.name().c_str(),
           ProgressBar(fraction, 30).c_str(), fraction * 100,
           static_cast<unsigned long>(v.verify_done_chunks()),
           static_cast<unsigned long>(v.verify_total_chunks()),
           static_cast<unsigned long>(v.verify_differing_chunks()));
    fflush(stdout);
    drawn = true;
  }
  if (drawn) printf("\r\033[K");
}

}  // namespace

int RunVerifyCommand(const std::string& admin_socket, const std::string& volume, bool repair,
                     uint64_t offset, uint64_t length, bool json) {
  AdminClient client(admin_socket);
  admin::VerifyRequest request;
  request.set_volume(volume);
  request.set_repair(repair);
  request.set_offset(offset);
  request.set_length(length);
  admin::VerifyReply reply;
  // A whole volume over a WAN takes a while: no short deadline.
  auto context = client.NewContext(7 * 24 * 3600);
  absl::Notification finished;
  std::thread progress;
  if (!json && StdoutIsTerminal()) {
    progress = std::thread([&] { ShowProgress(admin_socket, volume, &finished); });
  }
  grpc::Status status = client.stub()->Verify(context.get(), request, &reply);
  finished.Notify();
  if (progress.joinable()) progress.join();
  if (!status.ok()) return client.ReportFailure(status);

  if (json) {
    printf("%s\n", MessageToJson(reply).c_str());
  } else {
    printf("verify: %lu chunks of %s compared (%s) in %.1f s: %s\n",
           static_cast<unsigned long>(reply.chunks_compared()),
           FormatBytes(reply.chunk_size()).c_str(), FormatBytes(reply.bytes_compared()).c_str(),
           reply.seconds(),
           reply.chunks_differing() == 0
               ? "the stores are equal"
               : absl::StrCat(reply.chunks_differing(), " differ").c_str());
    for (uint64_t chunk : reply.differing_chunks()) {
      printf("  chunk %lu (bytes %lu..%lu) differs\n", static_cast<unsigned long>(chunk),
             static_cast<unsigned long>(chunk * reply.chunk_size()),
             static_cast<unsigned long>((chunk + 1) * reply.chunk_size() - 1));
    }
    if (static_cast<uint64_t>(reply.differing_chunks_size()) < reply.chunks_differing()) {
      printf("  ... (%lu more)\n", static_cast<unsigned long>(reply.chunks_differing() -
                                                              reply.differing_chunks_size()));
    }
    if (reply.chunks_skipped() > 0) {
      printf("  %lu chunks skipped: already flagged for resync\n",
             static_cast<unsigned long>(reply.chunks_skipped()));
    }
    if (reply.chunks_differing() > 0) {
      if (repair) {
        printf("  %lu chunks flagged for resync: watch `replctl status`\n",
               static_cast<unsigned long>(reply.chunks_marked()));
      } else {
        printf("  run `replctl verify --repair` to flag them for resync\n");
      }
    }
  }
  return reply.chunks_differing() == 0 ? 0 : kExitDifferencesFound;
}

}  // namespace blockrepl
