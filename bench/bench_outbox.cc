// Outbox throughput on a real SQLite file (WAL, synchronous=FULL): durable
// enqueues, lease + complete cycles, and a 128-recipient fan-out, beside the
// anchor of this machine's fsync rate (a create+write+fsync loop).
//   bench_outbox [DIR] [N] [BACKLOG]
//     (default: a temp dir under /tmp, N = 2000, BACKLOG = 10000)
// The backlog part: BACKLOG due jobs for one peer that is not running (every
// attempt fails "connection refused") and 8 for a live peer, in a file of its
// own; 40 polls of the delivery worker's shape (Lease of up to 32 jobs, then
// Failed or Succeeded for each), timed per call.
// The history part (issue 5): Metrics() over HISTORY delivered jobs
// (default 100,000) and 100 queued, against the full count that Metrics()
// ran before schema version 3 on the same file; then PruneDelivered of the
// whole history in batches of 256, timed per batch (what a submission may
// wait for while the prune runs).
//   bench_outbox [DIR] [N] [BACKLOG] [HISTORY]
#include <fcntl.h>
#include <sqlite3.h>
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

// Metrics() and the prune over a long delivered history.
bool History(const std::string& dir, int history) {
  using namespace sealpost::storage;
  OutboxOptions o;
  o.path = dir + "/history.sqlite";
  auto box = Outbox::Open(o);
  if (!box) {
    std::fprintf(stderr, "bench_outbox: %s\n", box.error().ToString().c_str());
    return false;
  }
  // Set-up (not timed): the jobs queued in batches, then marked delivered
  // by one SQL statement (the triggers keep job_counts), as years of
  // Succeeded() would leave them.
  for (int i = 0; i < history;) {
    std::vector<Outbox::NewJob> batch;
    for (int k = 0; k < 5000 && i < history; ++k, ++i) {
      batch.push_back({{"h-" + std::to_string(i), "cd-" + std::to_string(i % 128),
                        Channel::kAppliance},
                       "spool/h-" + std::to_string(i) + ".asice"});
    }
    if (!(*box)->EnqueueBatch(batch)) return false;
  }
  sqlite3* db = nullptr;
  if (sqlite3_open(o.path.c_str(), &db) != SQLITE_OK) return false;
  sqlite3_busy_timeout(db, 10'000);
  if (sqlite3_exec(db,
                   "UPDATE jobs SET state='delivered', delivered_at=enqueued_at - 86400000 "
                   "WHERE state='queued'",
                   nullptr, nullptr, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return false;
  }
  std::vector<Outbox::NewJob> live;
  for (int i = 0; i < 100; ++i) {
    live.push_back({{"q-" + std::to_string(i), "cd-" + std::to_string(i % 16), Channel::kAppliance},
                    "spool/q"});
  }
  if (!(*box)->EnqueueBatch(live)) return false;
  constexpr int kCalls = 20;
  double metrics_s = 0, worst_metrics = 0;
  for (int c = 0; c < kCalls; ++c) {
    auto t0 = Clock::now();
    auto m = (*box)->Metrics();
    double d = Seconds(t0, Clock::now());
    if (!m || m->delivered != history || m->queued != 100) {
      sqlite3_close(db);
      return false;
    }
    metrics_s += d;
    worst_metrics = std::max(worst_metrics, d);
  }
  // The query Metrics() ran before version 3 (a pass over every job).
  const char* old_sql =
      "SELECT COALESCE(SUM(state='queued'), 0), COALESCE(SUM((state='queued' AND "
      "next_attempt_at <= ?1) OR (state='delivering' AND lease_expires_at <= ?1)), 0), "
      "COALESCE(SUM(state='delivering' AND lease_expires_at > ?1), 0), "
      "COALESCE(SUM(state IN ('delivered','read')), 0), COALESCE(SUM(state='refused'), 0), "
      "COALESCE(SUM(state='failed'), 0), MIN(CASE WHEN state='queued' AND next_attempt_at <= ?1 "
      "THEN next_attempt_at WHEN state='delivering' AND lease_expires_at <= ?1 THEN "
      "lease_expires_at END) FROM jobs";
  double old_s = 0;
  for (int c = 0; c < kCalls; ++c) {
    auto t0 = Clock::now();
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, old_sql, -1, &st, nullptr) != SQLITE_OK) break;
    sqlite3_bind_int64(st, 1, INT64_MAX / 2);
    sqlite3_step(st);
    sqlite3_finalize(st);
    old_s += Seconds(t0, Clock::now());
  }
  sqlite3_close(db);
  std::printf("history of %d delivered jobs + 100 queued:\n", history);
  std::printf("  Metrics() (job_counts + index ranges): %8.3f ms mean, %.3f ms worst (%d calls)\n",
              metrics_s * 1e3 / kCalls, worst_metrics * 1e3, kCalls);
  std::printf("  the version-2 full count, same file:   %8.3f ms mean\n", old_s * 1e3 / kCalls);
  // The prune: every delivered job is a day old; batches of 256.
  int pruned = 0, batches = 0;
  double prune_s = 0, worst_batch = 0;
  for (;;) {
    auto t0 = Clock::now();
    auto n = (*box)->PruneDelivered(INT64_MAX / 2, INT64_MAX, 256);
    double d = Seconds(t0, Clock::now());
    if (!n) return false;
    if (*n == 0) break;
    pruned += static_cast<int>(*n);
    ++batches;
    prune_s += d;
    worst_batch = std::max(worst_batch, d);
  }
  std::printf("  PruneDelivered(256) batches:          %8d, %.2f ms mean, %.2f ms worst "
              "(%d jobs, %.0f jobs/s)\n",
              batches, batches ? prune_s * 1e3 / batches : 0.0, worst_batch * 1e3, pruned,
              prune_s > 0 ? pruned / prune_s : 0.0);
  auto t0 = Clock::now();
  auto m = (*box)->Metrics();
  std::printf("  Metrics() after the prune:            %8.3f ms\n", Seconds(t0, Clock::now()) * 1e3);
  return m && m->delivered == 0 && m->queued == 100 && pruned == history;
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
  if (!History(dir, argc > 4 ? std::atoi(argv[4]) : 100000)) return 70;
  if (argc <= 1) std::system(("rm -rf '" + dir + "'").c_str());
  return 0;
}
