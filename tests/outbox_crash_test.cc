// The outbox under concurrency and crashes, on real SQLite files:
//  - two threads, each with its own connection to one file, lease and
//    complete jobs at the same time: no job is ever held by two leases;
//  - a child process enqueues, leases and completes in a loop and reports
//    every acknowledged enqueue on a pipe; the parent kills it with SIGKILL at
//    a random moment, reopens the file and checks that every acknowledged
//    enqueue is there and the file is consistent. Repeated on one file.
#include "storage/outbox.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/test_pki.h"

namespace sealpost::storage {
namespace {

using sealpost::testing::TempDir;

OutboxOptions Options(const std::string& path) {
  OutboxOptions o;
  o.path = path;
  o.max_in_flight_per_recipient = 3;
  o.lease_millis = 600'000;  // no lease expires during these tests
  o.backoff_base_millis = 0;
  o.backoff_cap_millis = 0;
  o.max_attempts = 1000;
  return o;
}

TEST(OutboxConcurrencyTest, TwoThreadsLeasingConcurrentlyNeverShareAJob) {
  TempDir tmp;
  const std::string path = tmp.file("outbox.sqlite");
  constexpr int kRecipients = 8;
  constexpr int kDocs = 25;
  {
    auto box = Outbox::Open(Options(path));
    ASSERT_TRUE(box.has_value()) << box.error().ToString();
    for (int d = 0; d < kDocs; ++d) {
      for (int r = 0; r < kRecipients; ++r) {
        ASSERT_TRUE((*box)
                        ->Enqueue({"doc-" + std::to_string(d), "cd-" + std::to_string(r),
                                   Channel::kAppliance},
                                  "p")
                        .has_value());
      }
    }
  }
  std::mutex mu;
  std::map<int64_t, int> held;       // job id -> leases currently held (must stay <= 1)
  std::map<std::string, int> inflight;  // recipient -> leases held
  std::map<int64_t, int> delivered;  // job id -> successful completions
  std::atomic<bool> violation{false};
  std::string violation_text;
  auto worker = [&](int n) {
    auto box = Outbox::Open(Options(path));  // one connection per thread
    if (!box.has_value()) {
      std::lock_guard<std::mutex> lock(mu);
      violation = true;
      violation_text = box.error().ToString();
      return;
    }
    std::mt19937 rng(n);
    int idle = 0;
    while (idle < 3) {
      auto jobs = (*box)->Lease(4, "worker-" + std::to_string(n));
      if (!jobs.has_value()) {
        std::lock_guard<std::mutex> lock(mu);
        violation = true;
        violation_text = jobs.error().ToString();
        return;
      }
      if (jobs->empty()) {
        ++idle;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      idle = 0;
      {
        std::lock_guard<std::mutex> lock(mu);
        for (const Job& j : *jobs) {
          if (++held[j.id] > 1) {
            violation = true;
            violation_text = "job " + std::to_string(j.id) + " leased twice";
          }
          if (++inflight[j.key.recipient] > 3) {
            violation = true;
            violation_text = "more than 3 in flight for " + j.key.recipient;
          }
        }
      }
      for (const Job& j : *jobs) {
        // Release our bookkeeping first: once completed, the other thread may
        // legitimately lease the job again (after a retryable failure).
        {
          std::lock_guard<std::mutex> lock(mu);
          --held[j.id];
          --inflight[j.key.recipient];
        }
        bool fail = std::uniform_int_distribution<int>(0, 3)(rng) == 0;
        Status s = fail ? (*box)->Failed(j, "flaky", true) : (*box)->Succeeded(j, "r");
        if (!s.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          violation = true;
          violation_text = s.ToString();
          return;
        }
        if (!fail) {
          std::lock_guard<std::mutex> lock(mu);
          delivered[j.id]++;
        }
      }
    }
  };
  std::thread a(worker, 1);
  std::thread b(worker, 2);
  a.join();
  b.join();
  ASSERT_FALSE(violation.load()) << violation_text;
  EXPECT_EQ(delivered.size(), static_cast<size_t>(kDocs * kRecipients));
  for (const auto& [id, n] : delivered) EXPECT_EQ(n, 1) << "job " << id;
  auto box = Outbox::Open(Options(path));
  ASSERT_TRUE(box.has_value());
  auto m = (*box)->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->delivered, kDocs * kRecipients);
  EXPECT_EQ(m->queued + m->delivering, 0);
  EXPECT_TRUE((*box)->CheckConsistency().ok());
}

// In the child: enqueue, lease and complete forever; report each enqueue
// that returned as "E <doc>" on the pipe.
[[noreturn]] void ChildWorkForever(const std::string& path, int fd, int run) {
  auto box = Outbox::Open(Options(path));
  if (!box.has_value()) {
    std::fprintf(stderr, "child: %s\n", box.error().ToString().c_str());
    _exit(3);
  }
  if (::write(fd, "ready\n", 6) != 6) _exit(4);
  std::mt19937 rng(run);
  for (int i = 0;; ++i) {
    std::string doc = "run" + std::to_string(run) + "-doc" + std::to_string(i);
    auto r = (*box)->Enqueue({doc, "cd-" + std::to_string(i % 5), Channel::kAppliance},
                             "spool/" + doc);
    if (!r.has_value() || !*r) _exit(5);
    std::string line = "E " + doc + "\n";
    if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(6);
    if (i % 2 == 0) {
      auto jobs = (*box)->Lease(3, "child");
      if (!jobs.has_value()) _exit(7);
      for (const Job& j : *jobs) {
        int what = std::uniform_int_distribution<int>(0, 3)(rng);
        Status s = Status::Ok();
        if (what == 0) s = (*box)->Failed(j, "unreachable", true);
        if (what == 1) s = (*box)->Succeeded(j, "receipt");
        if (what == 2) s = (*box)->MarkRead(j.key, 1);
        // what == 3: left leased, as a crashed worker would.
        if (!s.ok()) _exit(8);
      }
    }
  }
}

TEST(OutboxCrashTest, KilledMidUpdateLosesNoAcknowledgedEnqueue) {
  TempDir tmp;
  const std::string path = tmp.file("outbox.sqlite");
  {
    auto box = Outbox::Open(Options(path));
    ASSERT_TRUE(box.has_value()) << box.error().ToString();
  }
  std::set<std::string> acknowledged;
  std::mt19937 rng(4242);
  constexpr int kRuns = 12;
  int runs_with_acks = 0;
  for (int run = 0; run < kRuns; ++run) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      ChildWorkForever(path, fds[1], run);
    }
    ::close(fds[1]);
    FILE* in = ::fdopen(fds[0], "r");
    char line[256];
    ASSERT_NE(std::fgets(line, sizeof line, in), nullptr) << "child did not start (run " << run
                                                          << ")";
    ASSERT_STREQ(line, "ready\n");
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(5, 300)(rng)));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited by itself with " << WEXITSTATUS(status);
    int got = 0;
    while (std::fgets(line, sizeof line, in) != nullptr) {
      std::string l(line);
      if (l.size() < 3 || l.back() != '\n' || l.rfind("E ", 0) != 0) continue;  // cut by the kill
      acknowledged.insert(l.substr(2, l.size() - 3));
      ++got;
    }
    std::fclose(in);
    if (got > 0) ++runs_with_acks;

    auto box = Outbox::Open(Options(path));
    ASSERT_TRUE(box.has_value()) << "run " << run << ": " << box.error().ToString();
    Status consistent = (*box)->CheckConsistency();
    ASSERT_TRUE(consistent.ok()) << "run " << run << ": " << consistent.ToString();
    for (const std::string& doc : acknowledged) {
      auto states = (*box)->States(doc);
      ASSERT_TRUE(states.has_value()) << states.error().ToString();
      ASSERT_EQ(states->size(), 1u) << "run " << run << ": acknowledged " << doc << " lost";
    }
  }
  EXPECT_GT(runs_with_acks, kRuns / 2);
  EXPECT_GT(acknowledged.size(), 50u);
  // The jobs the dead children left leased are taken again once their
  // leases run out (here: at once, by a clock past the lease).
  struct LateClock final : OutboxClock {
    int64_t NowMillis() override {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count() +
             700'000;
    }
  } late;
  OutboxOptions o = Options(path);
  o.clock = &late;
  o.max_in_flight_per_recipient = 1000000;
  auto box = Outbox::Open(o);
  ASSERT_TRUE(box.has_value());
  auto jobs = (*box)->Lease(1000000, "after-crash");
  ASSERT_TRUE(jobs.has_value());
  auto m = (*box)->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->queued, 0);
  EXPECT_EQ(m->delivering, static_cast<int64_t>(jobs->size()));
  EXPECT_TRUE((*box)->CheckConsistency().ok());
}

}  // namespace
}  // namespace sealpost::storage
