#include "daemon/startup.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdio>

#include "base/log.h"
#include "storage/reader.h"

namespace sealpost::daemon {

namespace {
std::string Ms(uint64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(ns) / 1e6);
  return buf;
}
}  // namespace

Result<std::unique_ptr<StartupScans>> ScanArchiveAtStart(const std::string& archive_dir,
                                                         const std::string& union_id) {
  auto out = std::make_unique<StartupScans>();
  out->sent = std::make_shared<SentDocumentsScan>(union_id);
  out->leaves = std::make_shared<LeafHashesScan>();
  out->inbox = std::make_shared<ReceivedDocumentsScan>(union_id);
  out->delivery = std::make_unique<DeliveryIndex>();
  struct stat st {};
  if (::stat((archive_dir + "/HEAD").c_str(), &st) != 0) return out;  // no archive yet
  using Clock = std::chrono::steady_clock;
  const Clock::time_point t0 = Clock::now();
  auto reader = storage::ArchiveReader::Open(archive_dir);
  if (!reader) return Err(reader.error().WithContext("start-up pass"));
  out->open_ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
  out->entries = (*reader)->size();
  Status s = FeedManifests(**reader,
                           {&out->policy, out->sent.get(), out->leaves.get(), out->inbox.get(),
                            out->delivery.get()},
                           &out->feed);
  if (!s.ok()) return Err(s.WithContext("start-up pass"));
  Log(LogLevel::kInfo, "archive read at start-up (one pass)",
      "entries=" + std::to_string(out->entries) + " open_ms=" + Ms(out->open_ns) +
          " read_ms=" + Ms(out->feed.read_ns) + " parse_ms=" + Ms(out->feed.parse_ns) +
          " consume_ms=" + Ms(out->feed.consume_ns));
  return out;
}

}  // namespace sealpost::daemon
