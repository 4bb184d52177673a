// Prometheus metrics of sealpostd (text exposition format 0.0.4): request
// counts and a latency histogram by listener, route and status, and
// connection gauges of each listener. Labels take route *patterns* (a fixed
// set), never raw paths, so a scanner cannot blow up the series count.
//
// Thread-safety: every method may be called from any thread.
#ifndef SEALPOST_DAEMON_METRICS_H_
#define SEALPOST_DAEMON_METRICS_H_

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "crypto/report.h"

namespace sealpost::daemon {

class BundleCache;  // daemon/bundle_cache.h

struct ListenerGauges {
  std::string listener;  // "peer" or "user"
  int current_connections = 0;
  int max_concurrent_connections = 0;
  int total_connections = 0;
  int refused_connections = 0;
  int queued_connections = 0;
  int current_threads = 0;
};

class Metrics {
 public:
  // Bucket upper bounds in seconds.
  static constexpr std::array<double, 10> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25,  0.5,  1,     2.5,  10};

  void Observe(const std::string& listener, const std::string& route, int status, double seconds);
  // The whole exposition, with the gauges given.
  std::string Render(const std::vector<ListenerGauges>& gauges) const;

 private:
  struct Series {
    uint64_t count = 0;
    double sum = 0;
    std::array<uint64_t, kBuckets.size()> buckets{};
  };
  mutable std::mutex mu_;
  std::map<std::tuple<std::string, std::string, int>, Series> series_;  // guarded by mu_
};

// Process-wide event counters (one sealpostd per process; tests that run
// several engines in one process see their sum). Every family is declared in
// metrics.cc with its HELP, TYPE and the label values known up front, which
// are exposed at 0 before the first event, so a rate() works from the start:
//   sealpost_submissions_total{outcome}  accepted | invalid (400/411/413/415)
//                                        | refused (403/409/422) | unavailable
//                                        (503) | error (other)
//   sealpost_verifications_total{context,indication,sub_indication}
//       context: desk (POST /api/v1/verify), submission (the officers'
//       signature), inbox (a bundle from a peer); sub_indication NONE when
//       the indication has none (PASSED)
//   sealpost_receipts_total{direction}   issued (by our inbox, new documents
//                                        only) | received (verified receipts
//                                        of our deliveries)
// Label values are escaped; families and label sets are bounded (enums).
void CountSubmission(int http_status);
void CountVerification(std::string_view context, crypto::Indication indication,
                       crypto::SubIndication sub_indication);
void CountReceipt(std::string_view direction);
std::string EventMetricsText();

// What the daemon knows of sealpost-signer and its token at a scrape.
struct SignerView {
  // One of kTokenStates: ready (token present, logged in), not_logged_in,
  // absent (no token), signer_unreachable (no answer from the socket).
  std::string token_state;
  uint64_t restarts = 0;  // signer process changes seen (RemoteSigner)
  // Certificate expiry per key (seconds since the epoch), when known.
  std::vector<std::pair<std::string, int64_t>> certificate_not_after;
};
inline constexpr std::array<std::string_view, 4> kTokenStates = {"ready", "not_logged_in", "absent",
                                                                 "signer_unreachable"};
std::string SignerMetricsText(const SignerView& v);

// Archive size: entries (the log's size; absent when the archive is not
// open) and bytes on disk of the repository, from ArchiveBytesCached().
std::string ArchiveMetricsText(std::optional<uint64_t> entries, std::optional<uint64_t> bytes);
// The cache of small bundles (daemon/bundle_cache.h): bytes and entries
// held, its bound, and hits, misses and evictions since the start. `cache`
// null (the exchange not open, or no bundles kept in memory): the families
// without samples.
std::string BundleCacheMetricsText(const BundleCache* cache);
// Bytes of the files under `dir`, recomputed at most every `max_age` seconds
// (a walk of the repository; packs keep the file count small). nullopt when
// the directory cannot be read. Thread-safe.
std::optional<uint64_t> ArchiveBytesCached(const std::string& dir, int max_age_seconds = 60);

// A label value escaped for the exposition format (\\, \", \n).
std::string LabelValue(std::string_view v);

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_METRICS_H_
