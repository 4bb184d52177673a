// Outbox throughput on a real SQLite file (WAL, synchronous=FULL): durable
// enqueues, lease + complete cycles, and a 128-recipient fan-out, beside the
// anchor of this machine's fsync rate (a create+write+fsync loop).
//   bench_outbox [DIR] [N] [BACKLOG]
//     (default: a temp dir under /tmp, N = 2000, BACKLOG = 10000)
// The backlog part: BACKLOG due jobs for one peer that is not running (every
// attempt fails "connection refused") and 8 for a live peer, in a file of its
// own; 40 polls of the delivery worker's shape (Lease of up to 32 jobs, then
// Failed or Succeeded for each), timed per call.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "storage/outbox.h"

namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The anchor: how many small write+fsync rounds per second this disk does.
double FsyncRate(const std::string& dir, int n) {
  std::string path = dir + "/fsync-anchor";
  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
  if (fd < 0) return 0;
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    if (::write(fd, "0123456789abcdef", 16) != 16 || ::fdatasync(fd) != 0) break;
  }
  auto t1 = Clock::now();
  ::close(fd);
  ::unlink(path.c_str());
  return n / Seconds(t0, t1);
}

// A backlog for an absent peer: what each poll of the delivery worker costs.
bool Backlog(const std::string& dir, int backlog) {
  using namespace sealpost::storage;
  OutboxOptions o;
  o.path = dir + "/backlog.sqlite";
  auto box = Outbox::Open(o);
  if (!box) {
    std::fprintf(stderr, "bench_outbox: %s\n", box.error().ToString().c_str());
    return false;
  }
  for (int i = 0; i < backlog;) {
    std::vector<Outbox::NewJob> batch;
    for (int k = 0; k < 500 && i < backlog; ++k, ++i) {
      batch.push_back({{"doc-" + std::to_string(i), "absent", Channel::kAppliance},
                       "spool/doc-" + std::to_string(i) + ".asice"});
    }
    if (!(*box)->EnqueueBatch(batch)) return false;
  }
  std::vector<Outbox::NewJob> live;
  for (int i = 0; i < 8; ++i) {
    live.push_back({{"live-" + std::to_string(i), "present", Channel::kAppliance}, "spool/l"});
  }
  if (!(*box)->EnqueueBatch(live)) return false;
  constexpr int kPolls = 40;
  double lease_s = 0, complete_s = 0, worst_lease = 0;
  int leased = 0, completions = 0, delivered = 0;
  for (int p = 0; p < kPolls; ++p) {
    auto t0 = Clock::now();
    auto jobs = (*box)->Lease(32, "bench");
    auto t1 = Clock::now();
    if (!jobs) return false;
    lease_s += Seconds(t0, t1);
    worst_lease = std::max(worst_lease, Seconds(t0, t1));
    leased += static_cast<int>(jobs->size());
    for (const Job& j : *jobs) {
      auto c0 = Clock::now();
      sealpost::Status s = j.key.recipient == "present"
                     ? (*box)->Succeeded(j, "r")
                     : (*box)->Unreachable(j, "Connection refused");
      complete_s += Seconds(c0, Clock::now());
      if (!s.ok()) return false;
      ++completions;
      if (j.key.recipient == "present") ++delivered;
    }
  }
  std::printf("backlog of %d due jobs for an absent peer + 8 for a live one, %d polls:\n",
              backlog, kPolls);
  std::printf("  Lease(32) per poll:                %8.2f ms mean, %.2f ms worst\n",
              lease_s * 1e3 / kPolls, worst_lease * 1e3);
  std::printf("  jobs leased in all:                %8d (%d of the live peer delivered)\n",
              leased, delivered);
  std::printf("  Failed/Succeeded per job:          %8.2f ms mean (%d calls)\n",
              completions ? complete_s * 1e3 / completions : 0.0, completions);
  std::printf("  outbox time per poll:              %8.2f ms\n",
              (lease_s + complete_s) * 1e3 / kPolls);
  OutboxCounters c = (*box)->Counters();
  std::printf("  Lease calls that wrote:            %8llu of %llu; VM steps per Lease %.0f\n",
              static_cast<unsigned long long>(c.lease_writes),
              static_cast<unsigned long long>(c.leases),
              static_cast<double>(c.lease_rows_read) / static_cast<double>(c.leases));
  return delivered == 8;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sealpost::storage;
  std::string dir;
  if (argc > 1) {
    dir = argv[1];
  } else {
    char tmpl[] = "/tmp/bench_outbox.XXXXXX";
    if (!::mkdtemp(tmpl)) return 70;
    dir = tmpl;
  }
  const int n = argc > 2 ? std::atoi(argv[2]) : 2000;
  OutboxOptions o;
  o.path = dir + "/outbox.sqlite";
  o.max_in_flight_per_recipient = 1 << 20;
  auto box = Outbox::Open(o);
  if (!box) {
    std::fprintf(stderr, "bench_outbox: %s\n", box.error().ToString().c_str());
    return 70;
  }
  const double anchor = FsyncRate(dir, 500);
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    auto r = (*box)->Enqueue({"doc-" + std::to_string(i), "cd-" + std::to_string(i % 128),
                              Channel::kAppliance},
                             "spool/doc-" + std::to_string(i));
    if (!r) return 70;
  }
  auto t1 = Clock::now();
  int done = 0;
  while (done < n) {
    auto jobs = (*box)->Lease(16, "bench");
    if (!jobs || jobs->empty()) return 70;
    for (const Job& j : *jobs) {
      if (!(*box)->Succeeded(j, "r").ok()) return 70;
      ++done;
    }
  }
  auto t2 = Clock::now();
  std::vector<Outbox::NewJob> fanout;
  for (int r = 0; r < 128; ++r) {
    fanout.push_back({{"directive", "cd-" + std::to_string(r), Channel::kAppliance}, "s"});
  }
  if (!(*box)->EnqueueBatch(fanout)) return 70;
  auto jobs = (*box)->Lease(1000, "bench");
  if (!jobs || jobs->size() != 128) return 70;
  auto t3 = Clock::now();
  auto m = (*box)->Metrics();
  auto t4 = Clock::now();
  std::printf("fsync anchor (write+fdatasync):    %8.0f /s\n", anchor);
  std::printf("durable enqueues (1 thread):       %8.0f /s   (%.2fx the fsync anchor)\n",
              n / Seconds(t0, t1), (n / Seconds(t0, t1)) / anchor);
  std::printf("leased+completed (leases of 16):   %8.0f /s\n", n / Seconds(t1, t2));
  std::printf("fan-out: batch of 128 + 1 lease:   %8.1f ms\n", Seconds(t2, t3) * 1000);
  std::printf("metrics query over %d jobs:      %8.2f ms\n", n + 128, Seconds(t3, t4) * 1000);
  if (!m) return 70;
  if (!Backlog(dir, argc > 3 ? std::atoi(argv[3]) : 10000)) return 70;
  if (argc <= 1) std::system(("rm -rf '" + dir + "'").c_str());
  return 0;
}
