#include "daemon/startup_scan.h"

#include <algorithm>
#include <chrono>
#include <string>

namespace sealpost::daemon {

namespace {
// As ArchiveReader::ReadManifest.
constexpr size_t kMaxManifestBytes = 8u << 20;
}  // namespace

Status FeedManifests(storage::ArchiveReader& reader, const std::vector<ManifestConsumer*>& consumers,
                     FeedStats* stats) {
  using Clock = std::chrono::steady_clock;
  auto ns = [](Clock::time_point a, Clock::time_point b) {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count());
  };
  FeedStats local;
  FeedStats& st = stats != nullptr ? *stats : local;
  st = FeedStats{};
  const uint64_t size = reader.size();
  uint64_t from = size + 1;
  for (const ManifestConsumer* c : consumers) {
    if (c->covered() > size) {
      return Status::FailedPrecondition(
          "archive state covers " + std::to_string(c->covered()) + " entries, but " +
          reader.dir() + " has " + std::to_string(size));
    }
    from = std::min(from, c->covered() + 1);
  }
  for (uint64_t seq = from; seq <= size; ++seq) {
    const Clock::time_point t0 = Clock::now();
    auto text = reader.ReadEntryFile(seq, "manifest.json");
    if (!text) {
      if (text.error().code() == Code::kNotFound) {
        return Status::DataError(text.error().message());  // a hole in the log
      }
      return text.error();
    }
    const Clock::time_point t1 = Clock::now();
    const std::string source = reader.dir() + ": manifest of entry " + std::to_string(seq);
    if (text->size() > kMaxManifestBytes) return Status::DataError(source + " is too large");
    auto m = storage::ParseManifest(*text, source);
    if (!m) return m.error();
    if (m->seq != seq) return Status::DataError(source + " names seq " + std::to_string(m->seq));
    if (m->origin != reader.origin()) {
      return Status::DataError(source + " names origin \"" + m->origin + "\"");
    }
    const Clock::time_point t2 = Clock::now();
    for (ManifestConsumer* c : consumers) {
      if (c->covered() + 1 != seq) continue;
      if (Status s = c->Consume(seq, *text, *m); !s.ok()) return s;
    }
    const Clock::time_point t3 = Clock::now();
    if (st.first == 0) st.first = seq;
    st.last = seq;
    st.read_ns += ns(t0, t1);
    st.parse_ns += ns(t1, t2);
    st.consume_ns += ns(t2, t3);
  }
  return Status::Ok();
}

}  // namespace sealpost::daemon
