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
#include <string>
#include <tuple>
#include <vector>

namespace sealpost::daemon {

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

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_METRICS_H_
