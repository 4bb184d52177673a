#include "daemon/metrics.h"

#include <cstdio>

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

}  // namespace sealpost::daemon
