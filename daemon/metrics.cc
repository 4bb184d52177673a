#include "daemon/metrics.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "daemon/bundle_cache.h"

namespace sealpost::daemon {
namespace {

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace

void Metrics::Observe(const std::string& listener, const std::string& route, int status,
                      double seconds) {
  std::lock_guard lock(mu_);
  Series& s = series_[{listener, route, status}];
  ++s.count;
  s.sum += seconds;
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) ++s.buckets[i];
  }
}

std::string Metrics::Render(const std::vector<ListenerGauges>& gauges) const {
  std::string out;
  out += "# HELP sealpost_http_requests_total HTTP requests answered.\n";
  out += "# TYPE sealpost_http_requests_total counter\n";
  std::map<std::tuple<std::string, std::string, int>, Series> copy;
  {
    std::lock_guard lock(mu_);
    copy = series_;
  }
  auto labels = [](const std::tuple<std::string, std::string, int>& k) {
    return "listener=\"" + std::get<0>(k) + "\",route=\"" + std::get<1>(k) + "\",status=\"" +
           std::to_string(std::get<2>(k)) + "\"";
  };
  for (const auto& [k, s] : copy) {
    out += "sealpost_http_requests_total{" + labels(k) + "} " + std::to_string(s.count) + "\n";
  }
  out += "# HELP sealpost_http_request_duration_seconds Time from the request's headers to the end of the answer.\n";
  out += "# TYPE sealpost_http_request_duration_seconds histogram\n";
  for (const auto& [k, s] : copy) {
    std::string l = labels(k);
    for (size_t i = 0; i < kBuckets.size(); ++i) {
      out += "sealpost_http_request_duration_seconds_bucket{" + l + ",le=\"" + Num(kBuckets[i]) +
             "\"} " + std::to_string(s.buckets[i]) + "\n";
    }
    out += "sealpost_http_request_duration_seconds_bucket{" + l + ",le=\"+Inf\"} " +
           std::to_string(s.count) + "\n";
    out += "sealpost_http_request_duration_seconds_sum{" + l + "} " + Num(s.sum) + "\n";
    out += "sealpost_http_request_duration_seconds_count{" + l + "} " + std::to_string(s.count) +
           "\n";
  }
  struct Gauge {
    const char* name;
    const char* type;
    const char* help;
    int ListenerGauges::*field;
  };
  const Gauge kGauges[] = {
      {"sealpost_connections_current", "gauge", "Connections being served now.",
       &ListenerGauges::current_connections},
      {"sealpost_connections_max_concurrent", "gauge", "Most connections served at once.",
       &ListenerGauges::max_concurrent_connections},
      {"sealpost_connections_total", "counter", "Connections accepted.",
       &ListenerGauges::total_connections},
      {"sealpost_connections_refused_total", "counter",
       "Connections refused because the queue was full.", &ListenerGauges::refused_connections},
      {"sealpost_connections_queued", "gauge", "Accepted connections waiting for a worker.",
       &ListenerGauges::queued_connections},
      {"sealpost_worker_threads", "gauge", "Worker threads serving connections.",
       &ListenerGauges::current_threads},
  };
  for (const Gauge& g : kGauges) {
    out += std::string("# HELP ") + g.name + " " + g.help + "\n";
    out += std::string("# TYPE ") + g.name + " " + g.type + "\n";
    for (const ListenerGauges& lg : gauges) {
      out += std::string(g.name) + "{listener=\"" + lg.listener + "\"} " +
             std::to_string(lg.*g.field) + "\n";
    }
  }
  return out;
}

namespace {

// Event counters: family -> labels text -> count.
struct Events {
  std::mutex mu;
  std::map<std::string, std::map<std::string, uint64_t>, std::less<>> families;  // guarded by mu
};

Events& TheEvents() {
  static Events* e = [] {
    auto* ev = new Events;
    for (const char* o : {"accepted", "invalid", "refused", "unavailable", "error"}) {
      ev->families["sealpost_submissions_total"][std::string("outcome=\"") + o + "\""] = 0;
    }
    for (const char* d : {"issued", "received"}) {
      ev->families["sealpost_receipts_total"][std::string("direction=\"") + d + "\""] = 0;
    }
    ev->families["sealpost_verifications_total"];
    return ev;
  }();
  return *e;
}

void Add(std::string_view family, const std::string& labels) {
  Events& e = TheEvents();
  std::lock_guard lock(e.mu);
  auto it = e.families.find(family);
  if (it == e.families.end()) return;  // undeclared: a programming error, not counted
  ++it->second[labels];
}

struct Family {
  const char* name;
  const char* help;
};
constexpr Family kFamilies[] = {
    {"sealpost_submissions_total", "Document submissions (POST /api/v1/documents), by outcome."},
    {"sealpost_verifications_total",
     "Signature and bundle verifications, by context, indication and ETSI sub-indication."},
    {"sealpost_receipts_total",
     "Delivery receipts: issued by our inbox for new documents, received for our deliveries."},
};

}  // namespace

std::string LabelValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void CountSubmission(int status) {
  const char* outcome = "error";
  if (status >= 200 && status < 300) outcome = "accepted";
  else if (status == 400 || status == 411 || status == 413 || status == 415) outcome = "invalid";
  else if (status == 403 || status == 409 || status == 422) outcome = "refused";
  else if (status == 503) outcome = "unavailable";
  Add("sealpost_submissions_total", std::string("outcome=\"") + outcome + "\"");
}

void CountVerification(std::string_view context, crypto::Indication indication,
                       crypto::SubIndication sub_indication) {
  std::string_view sub = crypto::SubIndicationName(sub_indication);
  Add("sealpost_verifications_total",
      "context=\"" + LabelValue(context) + "\",indication=\"" +
          std::string(crypto::IndicationName(indication)) + "\",sub_indication=\"" +
          (sub.empty() ? std::string("NONE") : std::string(sub)) + "\"");
}

void CountReceipt(std::string_view direction) {
  Add("sealpost_receipts_total", "direction=\"" + LabelValue(direction) + "\"");
}

std::string EventMetricsText() {
  Events& e = TheEvents();
  std::map<std::string, std::map<std::string, uint64_t>, std::less<>> copy;
  {
    std::lock_guard lock(e.mu);
    copy = e.families;
  }
  std::string out;
  for (const Family& f : kFamilies) {
    out += std::string("# HELP ") + f.name + " " + f.help + "\n";
    out += std::string("# TYPE ") + f.name + " counter\n";
    for (const auto& [labels, n] : copy[f.name]) {
      out += std::string(f.name) + "{" + labels + "} " + std::to_string(n) + "\n";
    }
  }
  return out;
}

std::string SignerMetricsText(const SignerView& v) {
  std::string out;
  out += "# HELP sealpost_token_state State of the seal token as sealpost-signer reports it (1 for the current state).\n";
  out += "# TYPE sealpost_token_state gauge\n";
  for (std::string_view s : kTokenStates) {
    out += "sealpost_token_state{state=\"" + std::string(s) + "\"} " +
           (s == v.token_state ? "1" : "0") + "\n";
  }
  out += "# HELP sealpost_signer_restarts_total Times the daemon found a new sealpost-signer process behind the socket.\n";
  out += "# TYPE sealpost_signer_restarts_total counter\n";
  out += "sealpost_signer_restarts_total " + std::to_string(v.restarts) + "\n";
  out += "# HELP sealpost_signer_certificate_not_after_seconds Expiry of each signer key's certificate (Unix time).\n";
  out += "# TYPE sealpost_signer_certificate_not_after_seconds gauge\n";
  for (const auto& [key, t] : v.certificate_not_after) {
    out += "sealpost_signer_certificate_not_after_seconds{key=\"" + LabelValue(key) + "\"} " +
           std::to_string(t) + "\n";
  }
  return out;
}

std::string ArchiveMetricsText(std::optional<uint64_t> entries, std::optional<uint64_t> bytes) {
  std::string out;
  out += "# HELP sealpost_archive_entries Entries in the archive's log.\n";
  out += "# TYPE sealpost_archive_entries gauge\n";
  if (entries) out += "sealpost_archive_entries " + std::to_string(*entries) + "\n";
  out += "# HELP sealpost_archive_bytes Bytes on disk of the archive repository (refreshed at most once a minute).\n";
  out += "# TYPE sealpost_archive_bytes gauge\n";
  if (bytes) out += "sealpost_archive_bytes " + std::to_string(*bytes) + "\n";
  return out;
}

std::string BundleCacheMetricsText(const BundleCache* cache) {
  using Stats = BundleCache::Stats;
  struct Family {
    const char* name;
    const char* type;
    const char* help;
    uint64_t Stats::*value;  // null: the cache's bound
  };
  static constexpr Family kFamilies[] = {
      {"sealpost_bundle_cache_bytes", "gauge", "Bytes of the small bundles kept in memory.",
       &Stats::bytes},
      {"sealpost_bundle_cache_entries", "gauge", "Small bundles kept in memory.", &Stats::entries},
      {"sealpost_bundle_cache_max_bytes", "gauge",
       "Bound on the bytes of bundles kept in memory (bundles.cache_bytes).", nullptr},
      {"sealpost_bundle_cache_hits_total", "counter",
       "Bundles served from memory (deliveries, e-mail, GET .../bundle).", &Stats::hits},
      {"sealpost_bundle_cache_misses_total", "counter",
       "Bundles not in memory, served from their file (made again from the archive if needed).",
       &Stats::misses},
      {"sealpost_bundle_cache_evictions_total", "counter",
       "Bundles dropped from memory to keep within the bound.", &Stats::evictions},
  };
  std::optional<Stats> stats;
  if (cache != nullptr) stats = cache->stats();
  std::string out;
  for (const Family& f : kFamilies) {
    out += std::string("# HELP ") + f.name + " " + f.help + "\n";
    out += std::string("# TYPE ") + f.name + " " + f.type + "\n";
    if (!stats) continue;
    const uint64_t value = f.value != nullptr ? (*stats).*(f.value) : cache->max_bytes();
    out += std::string(f.name) + " " + std::to_string(value) + "\n";
  }
  return out;
}

std::optional<uint64_t> ArchiveBytesCached(const std::string& dir, int max_age_seconds) {
  using Clock = std::chrono::steady_clock;
  static std::mutex mu;
  static std::map<std::string, std::pair<Clock::time_point, std::optional<uint64_t>>> cache;
  std::lock_guard lock(mu);
  auto it = cache.find(dir);
  if (it != cache.end() && Clock::now() - it->second.first < std::chrono::seconds(max_age_seconds)) {
    return it->second.second;
  }
  namespace fs = std::filesystem;
  std::optional<uint64_t> total;
  std::error_code ec;
  if (fs::is_directory(dir, ec)) {
    uint64_t sum = 0;
    for (fs::recursive_directory_iterator i(dir, ec), end; !ec && i != end; i.increment(ec)) {
      std::error_code fec;
      if (i->is_regular_file(fec)) {
        auto n = i->file_size(fec);
        if (!fec) sum += n;
      }
    }
    if (!ec) total = sum;
  }
  cache[dir] = {Clock::now(), total};
  return total;
}

}  // namespace sealpost::daemon
