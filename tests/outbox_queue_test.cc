// The outbox (storage/outbox.h) on a real SQLite file: idempotent enqueue,
// leases with a per-recipient cap and expiry, backoff with full jitter
// (fake clock and random source), final states, attempts, per-recipient
// states, metrics, and reopening the file (a restart).
#include "storage/outbox.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "tests/support/test_pki.h"

namespace sealpost::storage {
namespace {

using sealpost::testing::TempDir;

class FakeClock final : public OutboxClock {
 public:
  int64_t NowMillis() override { return now; }
  int64_t now = 1'800'000'000'000;
};

// Returns max * num / den (0/1: no delay, 1/1: the whole window) and records
// the windows it was asked for.
class FakeRandom final : public OutboxRandom {
 public:
  uint64_t UniformUpTo(uint64_t max) override {
    windows.push_back(max);
    return num == den ? max : max / den * num;
  }
  void SetFraction(uint64_t n, uint64_t d) {
    num = n;
    den = d;
  }
  uint64_t num = 1;
  uint64_t den = 1;
  std::vector<uint64_t> windows;
};

JobKey Key(const std::string& doc, const std::string& recipient,
           Channel channel = Channel::kAppliance) {
  return JobKey{doc, recipient, channel};
}

class OutboxTest : public ::testing::Test {
 protected:
  OutboxOptions Options() {
    OutboxOptions o;
    o.path = tmp_.file("outbox.sqlite");
    o.max_in_flight_per_recipient = 2;
    o.lease_millis = 30'000;
    o.backoff_base_millis = 1'000;
    o.backoff_cap_millis = 60'000;
    o.max_attempts = 5;
    o.clock = &clock_;
    o.random = &random_;
    return o;
  }

  std::unique_ptr<Outbox> OpenOutbox() {
    auto o = Outbox::Open(Options());
    EXPECT_TRUE(o.has_value()) << o.error().ToString();
    return o.has_value() ? std::move(*o) : nullptr;
  }

  TempDir tmp_;
  FakeClock clock_;
  FakeRandom random_;
};

TEST_F(OutboxTest, EnqueueTwiceKeepsOneJob) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  auto first = box->Enqueue(Key("doc-1", "cd-a"), "spool/doc-1.asice");
  ASSERT_TRUE(first.has_value()) << first.error().ToString();
  EXPECT_TRUE(*first);
  auto second = box->Enqueue(Key("doc-1", "cd-a"), "spool/doc-1.asice");
  ASSERT_TRUE(second.has_value());
  EXPECT_FALSE(*second);
  auto other_channel = box->Enqueue(Key("doc-1", "cd-a", Channel::kEmail), "x");
  ASSERT_TRUE(other_channel.has_value());
  EXPECT_TRUE(*other_channel);
  auto states = box->States("doc-1");
  ASSERT_TRUE(states.has_value());
  ASSERT_EQ(states->size(), 2u);
  EXPECT_EQ((*states)[0].key.channel, Channel::kAppliance);
  EXPECT_EQ((*states)[1].key.channel, Channel::kEmail);
  auto m = box->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->queued, 2);
}

TEST_F(OutboxTest, EnqueueBatchIsAllOrNothing) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  std::vector<Outbox::NewJob> fanout;
  for (int r = 0; r < 128; ++r) fanout.push_back({Key("directive-1", "cd-" + std::to_string(r)), "s"});
  auto n = box->EnqueueBatch(fanout);
  ASSERT_TRUE(n.has_value()) << n.error().ToString();
  EXPECT_EQ(*n, 128u);
  n = box->EnqueueBatch(fanout);  // idempotent
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 0u);
  // One bad job (a conflicting payload last) and nothing of the batch is queued.
  std::vector<Outbox::NewJob> bad = {{Key("directive-2", "cd-0"), "s"},
                                     {Key("directive-2", "cd-1"), "s"},
                                     {Key("directive-1", "cd-5"), "other"}};
  auto failed = box->EnqueueBatch(bad);
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().code(), Code::kFailedPrecondition);
  auto states = box->States("directive-2");
  ASSERT_TRUE(states.has_value());
  EXPECT_TRUE(states->empty());
  bad[2] = {Key("directive-2", "bad\nrecipient"), "s"};
  failed = box->EnqueueBatch(bad);
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().code(), Code::kInvalidArgument);
  auto m = box->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->queued, 128);
}

TEST_F(OutboxTest, ConcurrentEnqueueBatchesAreEachAllOrNothingInOneGroupCommit) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  ASSERT_TRUE(box->Enqueue(Key("taken", "cd-0"), "first").has_value());
  // 16 threads x 8 batches of 3 jobs; every 5th batch conflicts with "taken"
  // in its last job, so only that batch must be rolled back (its savepoint),
  // never a batch committed beside it.
  constexpr int kThreads = 16, kBatches = 8;
  std::atomic<int> ok{0}, refused{0}, wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int b = 0; b < kBatches; ++b) {
        const std::string doc = "doc-" + std::to_string(t) + "-" + std::to_string(b);
        const bool bad = (t * kBatches + b) % 5 == 0;
        std::vector<Outbox::NewJob> jobs = {{Key(doc, "cd-1"), "p"}, {Key(doc, "cd-2"), "p"}};
        jobs.push_back(bad ? Outbox::NewJob{Key("taken", "cd-0"), "other"}
                           : Outbox::NewJob{Key(doc, "cd-3"), "p"});
        auto n = box->EnqueueBatch(jobs);
        if (bad) {
          (!n && n.error().code() == Code::kFailedPrecondition ? refused : wrong)++;
        } else {
          (n && *n == 3 ? ok : wrong)++;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  const int bad_batches = (kThreads * kBatches + 4) / 5;
  EXPECT_EQ(refused.load(), bad_batches);
  EXPECT_EQ(ok.load(), kThreads * kBatches - bad_batches);
  for (int t = 0; t < kThreads; ++t) {
    for (int b = 0; b < kBatches; ++b) {
      const std::string doc = "doc-" + std::to_string(t) + "-" + std::to_string(b);
      auto states = box->States(doc);
      ASSERT_TRUE(states.has_value());
      EXPECT_EQ(states->size(), (t * kBatches + b) % 5 == 0 ? 0u : 3u) << doc;
    }
  }
  auto m = box->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->queued, 1 + 3 * ok.load());
  EXPECT_TRUE(box->CheckConsistency().ok());
}

TEST_F(OutboxTest, EnqueueSameKeyWithOtherPayloadFailsAndChangesNothing) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  ASSERT_TRUE(box->Enqueue(Key("doc-1", "cd-a"), "one").has_value());
  auto again = box->Enqueue(Key("doc-1", "cd-a"), "two");
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), Code::kFailedPrecondition);
  auto jobs = box->Lease(10, "w");
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].payload, "one");
}

TEST_F(OutboxTest, EnqueueWithBadKeyFails) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  EXPECT_EQ(box->Enqueue(Key("", "cd-a"), "p").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(box->Enqueue(Key("doc\n1", "cd-a"), "p").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(box->Enqueue(Key("doc-1", std::string(600, 'a')), "p").error().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(box->Enqueue(Key("doc-1", "cd-a"), std::string(kOutboxMaxPayloadBytes + 1, 'p'))
                .error()
                .code(),
            Code::kInvalidArgument);
  auto m = box->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->queued, 0);
}

TEST_F(OutboxTest, LeaseRespectsPerRecipientCap) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(box->Enqueue(Key("doc-" + std::to_string(i), "cd-a"), "p").has_value());
  }
  ASSERT_TRUE(box->Enqueue(Key("doc-0", "cd-b"), "p").has_value());
  auto jobs = box->Lease(10, "w1");
  ASSERT_TRUE(jobs.has_value()) << jobs.error().ToString();
  std::map<std::string, int> per;
  for (const Job& j : *jobs) per[j.key.recipient]++;
  EXPECT_EQ(per["cd-a"], 2);  // the cap
  EXPECT_EQ(per["cd-b"], 1);
  // Nothing more for cd-a until one of its jobs completes.
  auto more = box->Lease(10, "w2");
  ASSERT_TRUE(more.has_value());
  EXPECT_TRUE(more->empty());
  const Job* a = nullptr;
  for (const Job& j : *jobs) {
    if (j.key.recipient == "cd-a") a = &j;
  }
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(box->Succeeded(*a, "seq:7").ok());
  more = box->Lease(10, "w2");
  ASSERT_TRUE(more.has_value());
  ASSERT_EQ(more->size(), 1u);
  EXPECT_EQ((*more)[0].key.recipient, "cd-a");
}

TEST_F(OutboxTest, SucceededRecordsReceiptAndTimesThenMarkReadShowsRead) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  const int64_t t0 = clock_.now;
  ASSERT_TRUE(box->Enqueue(Key("doc-1", "cd-a"), "p").has_value());
  ASSERT_TRUE(box->Enqueue(Key("doc-1", "cd-b"), "p").has_value());
  clock_.now += 500;
  auto jobs = box->Lease(1, "w");
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].attempt, 1);
  EXPECT_EQ((*jobs)[0].lease_expires_at, clock_.now + 30'000);
  clock_.now += 200;
  ASSERT_TRUE(box->Succeeded((*jobs)[0], "receipt-seq-12").ok());
  auto s = box->State((*jobs)[0].key);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->state, JobState::kDelivered);
  EXPECT_EQ(s->enqueued_at, t0);
  EXPECT_EQ(s->delivered_at, t0 + 700);
  EXPECT_EQ(s->receipt_ref, "receipt-seq-12");
  EXPECT_EQ(s->attempts, 1);
  // A second completion of the same lease is refused.
  EXPECT_EQ(box->Succeeded((*jobs)[0], "again").code(), Code::kFailedPrecondition);

  ASSERT_TRUE(box->MarkRead((*jobs)[0].key, t0 + 5'000).ok());
  ASSERT_TRUE(box->MarkRead((*jobs)[0].key, t0 + 9'000).ok());  // the first notice wins
  auto states = box->States("doc-1");
  ASSERT_TRUE(states.has_value());
  ASSERT_EQ(states->size(), 2u);
  EXPECT_EQ((*states)[0].key.recipient, "cd-a");
  EXPECT_EQ((*states)[0].state, JobState::kRead);
  EXPECT_EQ((*states)[0].read_at, t0 + 5'000);
  EXPECT_EQ((*states)[1].state, JobState::kQueued);
  EXPECT_EQ(box->MarkRead(Key("doc-9", "cd-a"), t0).code(), Code::kNotFound);
  EXPECT_TRUE(box->CheckConsistency().ok());
}

TEST_F(OutboxTest, BackoffDelayGrowsExponentiallyUpToCap) {
  FakeRandom r;
  r.SetFraction(1, 1);
  EXPECT_EQ(BackoffDelayMillis(1, 1000, 60'000, r), 1000);
  EXPECT_EQ(BackoffDelayMillis(2, 1000, 60'000, r), 2000);
  EXPECT_EQ(BackoffDelayMillis(3, 1000, 60'000, r), 4000);
  EXPECT_EQ(BackoffDelayMillis(6, 1000, 60'000, r), 32'000);
  EXPECT_EQ(BackoffDelayMillis(7, 1000, 60'000, r), 60'000);
  EXPECT_EQ(BackoffDelayMillis(1'000'000, 1000, INT64_MAX / 2, r), INT64_MAX / 2);
  r.SetFraction(0, 1);
  EXPECT_EQ(BackoffDelayMillis(5, 1000, 60'000, r), 0);  // full jitter reaches zero
  r.SetFraction(1, 2);
  EXPECT_EQ(BackoffDelayMillis(4, 1000, 60'000, r), 4000);
}

TEST_F(OutboxTest, RetryableFailureWaitsJitteredBackoffThenIsDueAgain) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  ASSERT_TRUE(box->Enqueue(Key("doc-1", "cd-a"), "p").has_value());
  random_.SetFraction(1, 2);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    auto jobs = box->Lease(5, "w");
    ASSERT_TRUE(jobs.has_value());
    ASSERT_EQ(jobs->size(), 1u) << "attempt " << attempt;
    EXPECT_EQ((*jobs)[0].attempt, attempt);
    ASSERT_TRUE(box->Failed((*jobs)[0], "connection refused", true).ok());
    const int64_t window = 1000LL << (attempt - 1);
    ASSERT_EQ(random_.windows.back(), static_cast<uint64_t>(window));
    auto s = box->State((*jobs)[0].key);
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->state, JobState::kQueued);
    EXPECT_EQ(s->next_attempt_at, clock_.now + window / 2);
    EXPECT_EQ(s->last_error, "connection refused");
    // Not due one millisecond before, due at the time.
    clock_.now += window / 2 - 1;
    auto early = box->Lease(5, "w");
    ASSERT_TRUE(early.has_value());
    EXPECT_TRUE(early->empty());
    auto m = box->Metrics();
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->due, 0);
    clock_.now += 1;
  }
  auto attempts = box->Attempts(Key("doc-1", "cd-a"));
  ASSERT_TRUE(attempts.has_value());
  ASSERT_EQ(attempts->size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ((*attempts)[i].number, i + 1);
    EXPECT_EQ((*attempts)[i].result, "retry");
    EXPECT_EQ((*attempts)[i].error, "connection refused");
    EXPECT_EQ((*attempts)[i].worker, "w");
    EXPECT_GT((*attempts)[i].finished_at, 0);
  }
}

TEST_F(OutboxTest, RetryableFailuresUpToMaxAttemptsEndFailed) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  random_.SetFraction(0, 1);  // no waiting between attempts
  ASSERT_TRUE(box->Enqueue(Key("doc-1", "cd-a"), "p").has_value());
  for (int attempt = 1; attempt <= 5; ++attempt) {
    auto jobs = box->Lease(1, "w");
    ASSERT_TRUE(jobs.has_value());
    ASSERT_EQ(jobs->size(), 1u);
    ASSERT_TRUE(box->Failed((*jobs)[0], "timeout", true).ok());
  }
  auto s = box->State(Key("doc-1", "cd-a"));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->state, JobState::kFailed);
  EXPECT_EQ(s->attempts, 5);
  EXPECT_EQ(s->finished_at, clock_.now);
  auto jobs = box->Lease(1, "w");
  ASSERT_TRUE(jobs.has_value());
  EXPECT_TRUE(jobs->empty());
  auto attempts = box->Attempts(Key("doc-1", "cd-a"));
  ASSERT_TRUE(attempts.has_value());
  EXPECT_EQ(attempts->back().result, "failed");
  auto m = box->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->failed, 1);
  EXPECT_EQ(m->queued, 0);
}

TEST_F(OutboxTest, NonRetryableFailureIsRefusedAtOnce) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  ASSERT_TRUE(box->Enqueue(Key("doc-1", "cd-a"), "p").has_value());
  auto jobs = box->Lease(1, "w");
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 1u);
  ASSERT_TRUE(box->Failed((*jobs)[0], "422 NOT_AUTHORIZED_BY_POLICY", false).ok());
  auto s = box->State(Key("doc-1", "cd-a"));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->state, JobState::kRefused);
  EXPECT_EQ(s->last_error, "422 NOT_AUTHORIZED_BY_POLICY");
  EXPECT_EQ(s->finished_at, clock_.now);
  EXPECT_TRUE(box->CheckConsistency().ok());
}

TEST_F(OutboxTest, ExpiredLeaseIsTakenAgainAndStaleCompletionFails) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  ASSERT_TRUE(box->Enqueue(Key("doc-1", "cd-a"), "p").has_value());
  auto first = box->Lease(1, "crashed-worker");
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->size(), 1u);
  clock_.now += 29'999;
  auto none = box->Lease(1, "w2");
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());  // lease still held
  clock_.now += 1;
  auto m = box->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->due, 1);
  EXPECT_EQ(m->delivering, 0);
  auto second = box->Lease(1, "w2");
  ASSERT_TRUE(second.has_value());
  ASSERT_EQ(second->size(), 1u);
  EXPECT_EQ((*second)[0].id, (*first)[0].id);
  EXPECT_EQ((*second)[0].attempt, 2);
  EXPECT_NE((*second)[0].lease_id, (*first)[0].lease_id);
  // The crashed worker comes back late: its lease is gone.
  Status stale = box->Succeeded((*first)[0], "r");
  EXPECT_EQ(stale.code(), Code::kFailedPrecondition) << stale.ToString();
  EXPECT_NE(stale.message().find("no longer holds its lease"), std::string::npos);
  ASSERT_TRUE(box->Succeeded((*second)[0], "r2").ok());
  auto attempts = box->Attempts(Key("doc-1", "cd-a"));
  ASSERT_TRUE(attempts.has_value());
  ASSERT_EQ(attempts->size(), 2u);
  EXPECT_EQ((*attempts)[0].result, "lease-expired");
  EXPECT_EQ((*attempts)[0].worker, "crashed-worker");
  EXPECT_EQ((*attempts)[1].result, "delivered");
  auto s = box->State(Key("doc-1", "cd-a"));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->receipt_ref, "r2");
  EXPECT_TRUE(box->CheckConsistency().ok());
}

TEST_F(OutboxTest, CompletionAfterLeaseExpiryFailsEvenIfNotTakenAgain) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  ASSERT_TRUE(box->Enqueue(Key("doc-1", "cd-a"), "p").has_value());
  auto jobs = box->Lease(1, "w");
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 1u);
  clock_.now += 30'000;
  EXPECT_EQ(box->Failed((*jobs)[0], "late", true).code(), Code::kFailedPrecondition);
  auto s = box->State(Key("doc-1", "cd-a"));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->state, JobState::kQueued);
  EXPECT_TRUE(box->CheckConsistency().ok());
}

TEST_F(OutboxTest, ReadNoticeWhileLeasedSupersedesTheAttempt) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  ASSERT_TRUE(box->Enqueue(Key("doc-1", "cd-a"), "p").has_value());
  auto jobs = box->Lease(1, "w");
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 1u);
  ASSERT_TRUE(box->MarkRead(Key("doc-1", "cd-a"), clock_.now).ok());
  EXPECT_EQ(box->Succeeded((*jobs)[0], "r").code(), Code::kFailedPrecondition);
  auto s = box->State(Key("doc-1", "cd-a"));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->state, JobState::kRead);
  EXPECT_EQ(s->delivered_at, clock_.now);
  auto attempts = box->Attempts(Key("doc-1", "cd-a"));
  ASSERT_TRUE(attempts.has_value());
  ASSERT_EQ(attempts->size(), 1u);
  EXPECT_EQ((*attempts)[0].result, "superseded");
  EXPECT_TRUE(box->CheckConsistency().ok());
}

TEST_F(OutboxTest, MetricsReportDepthAndOldestDueAge) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  const int64_t t0 = clock_.now;
  ASSERT_TRUE(box->Enqueue(Key("doc-1", "cd-a"), "p").has_value());
  clock_.now += 1000;
  ASSERT_TRUE(box->Enqueue(Key("doc-2", "cd-b"), "p").has_value());
  ASSERT_TRUE(box->Enqueue(Key("doc-3", "cd-c"), "p").has_value());
  clock_.now = t0 + 4000;
  auto m = box->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->queued, 3);
  EXPECT_EQ(m->due, 3);
  EXPECT_EQ(m->oldest_due_age_millis, 4000);
  auto jobs = box->Lease(1, "w");  // takes doc-1, the oldest
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].key.document_id, "doc-1");
  m = box->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->queued, 2);
  EXPECT_EQ(m->delivering, 1);
  EXPECT_EQ(m->oldest_due_age_millis, 3000);
  ASSERT_TRUE(box->Succeeded((*jobs)[0], "r").ok());
  m = box->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->delivered, 1);
}

TEST_F(OutboxTest, FinishedAttemptsAfterPagesInOrder) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  random_.SetFraction(0, 1);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(box->Enqueue(Key("doc-" + std::to_string(i), "cd-" + std::to_string(i)), "p")
                    .has_value());
  }
  auto jobs = box->Lease(3, "w");
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 3u);
  ASSERT_TRUE(box->Failed((*jobs)[0], "e", true).ok());
  ASSERT_TRUE(box->Succeeded((*jobs)[1], "r").ok());
  // (*jobs)[2] still running: not listed.
  auto page = box->FinishedAttemptsAfter(0, 1);
  ASSERT_TRUE(page.has_value());
  ASSERT_EQ(page->size(), 1u);
  auto rest = box->FinishedAttemptsAfter(page->back().id, 10);
  ASSERT_TRUE(rest.has_value());
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_GT(rest->front().id, page->front().id);
  std::set<std::string> results = {page->front().result, rest->front().result};
  EXPECT_EQ(results, (std::set<std::string>{"retry", "delivered"}));
}

TEST_F(OutboxTest, ReopenAfterCloseKeepsJobsLeasesAndAttempts) {
  int64_t lease_id = 0;
  {
    auto box = OpenOutbox();
    ASSERT_TRUE(box);
    ASSERT_TRUE(box->Enqueue(Key("doc-1", "cd-a"), "p1").has_value());
    ASSERT_TRUE(box->Enqueue(Key("doc-2", "cd-a"), "p2").has_value());
    ASSERT_TRUE(box->Enqueue(Key("doc-3", "cd-b"), "p3").has_value());
    auto jobs = box->Lease(1, "w");
    ASSERT_TRUE(jobs.has_value());
    ASSERT_EQ(jobs->size(), 1u);
    ASSERT_TRUE(box->Succeeded((*jobs)[0], "r1").ok());
    jobs = box->Lease(1, "w");  // left leased across the "restart"
    ASSERT_TRUE(jobs.has_value());
    ASSERT_EQ(jobs->size(), 1u);
    lease_id = (*jobs)[0].lease_id;
  }
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  EXPECT_TRUE(box->CheckConsistency().ok());
  auto d1 = box->State(Key("doc-1", "cd-a"));
  ASSERT_TRUE(d1.has_value());
  EXPECT_EQ(d1->state, JobState::kDelivered);
  EXPECT_EQ(d1->receipt_ref, "r1");
  auto m = box->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->delivering, 1);
  EXPECT_EQ(m->queued, 1);
  // After the lease runs out, the restarted daemon takes the job again.
  clock_.now += 30'000;
  auto jobs = box->Lease(10, "w-after-restart");
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 2u);
  for (const Job& j : *jobs) EXPECT_NE(j.lease_id, lease_id);
}

TEST_F(OutboxTest, EndLeasesOfPreviousProcessEndsEveryHeldLeaseAtOnce) {
  {
    auto box = OpenOutbox();
    ASSERT_TRUE(box);
    ASSERT_TRUE(box->Enqueue(Key("doc-1", "cd-a"), "p1").has_value());
    ASSERT_TRUE(box->Enqueue(Key("doc-2", "cd-b"), "p2").has_value());
    ASSERT_TRUE(box->Enqueue(Key("doc-3", "cd-c"), "p3").has_value());
    auto jobs = box->Lease(2, "dead");
    ASSERT_TRUE(jobs.has_value());
    ASSERT_EQ(jobs->size(), 2u);
  }
  auto box = OpenOutbox();  // the restarted process; no time has passed
  ASSERT_TRUE(box);
  auto ended = box->EndLeasesOfPreviousProcess("abandoned: test");
  ASSERT_TRUE(ended.has_value()) << ended.error().ToString();
  EXPECT_EQ(*ended, 2u);
  auto m = box->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->delivering, 0);
  auto jobs = box->Lease(10, "alive");
  ASSERT_TRUE(jobs.has_value());
  EXPECT_EQ(jobs->size(), 3u);  // all due now, not after lease_millis
  for (const char* doc : {"doc-1", "doc-2"}) {
    auto attempts = box->Attempts(Key(doc, doc == std::string("doc-1") ? "cd-a" : "cd-b"));
    ASSERT_TRUE(attempts.has_value());
    ASSERT_EQ(attempts->size(), 2u) << doc;
    EXPECT_EQ((*attempts)[0].worker, "dead");
    EXPECT_EQ((*attempts)[0].result, "lease-expired");
    EXPECT_EQ((*attempts)[0].error, "abandoned: test");
    EXPECT_EQ((*attempts)[1].result, "started");
  }
  EXPECT_TRUE(box->CheckConsistency().ok());
}

// A recipient that cannot be reached is marked down: its other jobs are
// deferred (no attempt, no record), then one job at a time probes it on the
// jittered backoff, and once it answers its backlog is leased again under
// the usual cap, each job delivered once.
TEST_F(OutboxTest, UnreachableRecipientIsDeferredThenProbedOnceThenDrains) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(box->Enqueue(Key("doc-" + std::to_string(i), "cd-a"), "p").has_value());
  }
  ASSERT_TRUE(box->Enqueue(Key("doc-b", "cd-b"), "p").has_value());
  auto jobs = box->Lease(10, "w");
  ASSERT_TRUE(jobs.has_value()) << jobs.error().ToString();
  ASSERT_EQ(jobs->size(), 3u);  // cd-a up to its cap of 2, cd-b 1
  int unreachable = 0;
  for (const Job& j : *jobs) {
    if (j.key.recipient == "cd-a") {
      ASSERT_TRUE(box->Unreachable(j, "Connection refused").ok());
      ++unreachable;
    } else {
      ASSERT_TRUE(box->Succeeded(j, "r").ok());
    }
  }
  ASSERT_EQ(unreachable, 2);
  // Down once, not twice: the second attempt started before it was known.
  auto peers = box->Peers();
  ASSERT_TRUE(peers.has_value());
  ASSERT_EQ(peers->size(), 1u);
  EXPECT_EQ((*peers)[0].recipient, "cd-a");
  EXPECT_EQ((*peers)[0].failures, 1);
  EXPECT_EQ((*peers)[0].down_since, clock_.now);
  // Equal jitter on the window of 1 s (the fake draws the maximum): 1 s.
  EXPECT_EQ((*peers)[0].down_until, clock_.now + 1'000);
  EXPECT_EQ((*peers)[0].deferred, 10);
  EXPECT_EQ((*peers)[0].last_error, "Connection refused");
  auto m = box->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->peers_down, 1);
  EXPECT_EQ(m->deferred, 10);
  // While down: nothing of cd-a, even what was never tried.
  clock_.now += 999;
  jobs = box->Lease(10, "w");
  ASSERT_TRUE(jobs.has_value());
  EXPECT_TRUE(jobs->empty());
  auto untried = box->State(Key("doc-9", "cd-a"));
  ASSERT_TRUE(untried.has_value());
  EXPECT_EQ(untried->attempts, 0);
  // Then one probe: the oldest due job (one never tried), and no second
  // job while it runs.
  clock_.now += 1;
  jobs = box->Lease(10, "w");
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].key.document_id, "doc-2");
  auto none = box->Lease(10, "w");
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());
  ASSERT_TRUE(box->Unreachable((*jobs)[0], "Connection refused").ok());
  peers = box->Peers();
  ASSERT_TRUE(peers.has_value());
  ASSERT_EQ(peers->size(), 1u);
  EXPECT_EQ((*peers)[0].failures, 2);
  EXPECT_EQ((*peers)[0].down_until, clock_.now + 2'000);  // the window doubled
  clock_.now += 1'999;
  jobs = box->Lease(10, "w");
  ASSERT_TRUE(jobs.has_value());
  EXPECT_TRUE(jobs->empty());
  clock_.now += 1;
  jobs = box->Lease(10, "w");
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 1u);
  // It answers: up again, the backlog drains under the cap of 2.
  std::map<std::string, int> delivered;
  ASSERT_TRUE(box->Succeeded((*jobs)[0], "r").ok());
  ++delivered[(*jobs)[0].key.document_id];
  peers = box->Peers();
  ASSERT_TRUE(peers.has_value());
  EXPECT_TRUE(peers->empty());
  clock_.now += 60'000;  // every backoff of the jobs themselves is over
  for (int round = 0; round < 20; ++round) {
    jobs = box->Lease(10, "w");
    ASSERT_TRUE(jobs.has_value());
    if (jobs->empty()) break;
    EXPECT_LE(jobs->size(), 2u);
    for (const Job& j : *jobs) {
      ASSERT_TRUE(box->Succeeded(j, "r").ok());
      ++delivered[j.key.document_id];
    }
  }
  EXPECT_EQ(delivered.size(), 10u);
  for (const auto& [doc, n] : delivered) EXPECT_EQ(n, 1) << doc;
  // Attempts are the ones made: 3 unreachable + 10 deliveries; the deferred
  // ones are not attempts.
  size_t attempts = 0;
  for (int i = 0; i < 10; ++i) {
    auto a = box->Attempts(Key("doc-" + std::to_string(i), "cd-a"));
    ASSERT_TRUE(a.has_value());
    attempts += a->size();
  }
  EXPECT_EQ(attempts, 13u);
  EXPECT_TRUE(box->CheckConsistency().ok()) << box->CheckConsistency().ToString();
}

TEST_F(OutboxTest, RefusalOrReadNoticeEndsTheDownState) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  ASSERT_TRUE(box->Enqueue(Key("doc-1", "cd-a"), "p").has_value());
  ASSERT_TRUE(box->Enqueue(Key("doc-2", "cd-a"), "p").has_value());
  ASSERT_TRUE(box->Enqueue(Key("doc-3", "cd-a"), "p").has_value());
  auto jobs = box->Lease(1, "w");
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 1u);
  ASSERT_TRUE(box->Unreachable((*jobs)[0], "timeout").ok());
  ASSERT_EQ(box->Peers()->size(), 1u);
  // A read notice from cd-a proves it is up.
  ASSERT_TRUE(box->MarkRead(Key("doc-2", "cd-a"), clock_.now).ok());
  EXPECT_TRUE(box->Peers()->empty());
  jobs = box->Lease(10, "w");
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 1u);  // doc-3 (doc-1 waits for its own backoff)
  ASSERT_TRUE(box->Unreachable((*jobs)[0], "timeout").ok());
  ASSERT_EQ(box->Peers()->size(), 1u);
  clock_.now += 60'000;
  jobs = box->Lease(10, "w");
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 1u);  // one probe
  // A retryable answer (e.g. 503) is neither up nor down; a refusal is up.
  ASSERT_TRUE(box->Failed((*jobs)[0], "HTTP 503", true).ok());
  EXPECT_EQ(box->Peers()->size(), 1u);
  clock_.now += 60'000;
  jobs = box->Lease(10, "w");
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 1u);  // still one at a time
  ASSERT_TRUE(box->Failed((*jobs)[0], "HTTP 403", false).ok());
  EXPECT_TRUE(box->Peers()->empty());
  EXPECT_TRUE(box->CheckConsistency().ok());
}

TEST_F(OutboxTest, DownStateSurvivesReopen) {
  {
    auto box = OpenOutbox();
    ASSERT_TRUE(box);
    ASSERT_TRUE(box->Enqueue(Key("doc-1", "cd-a"), "p").has_value());
    ASSERT_TRUE(box->Enqueue(Key("doc-2", "cd-a"), "p").has_value());
    auto jobs = box->Lease(1, "w");
    ASSERT_TRUE(jobs.has_value());
    ASSERT_EQ(jobs->size(), 1u);
    ASSERT_TRUE(box->Unreachable((*jobs)[0], "Connection refused").ok());
  }
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  auto ended = box->EndLeasesOfPreviousProcess("restart");
  ASSERT_TRUE(ended.has_value());
  auto jobs = box->Lease(10, "w");
  ASSERT_TRUE(jobs.has_value());
  EXPECT_TRUE(jobs->empty());
  auto peers = box->Peers();
  ASSERT_TRUE(peers.has_value());
  ASSERT_EQ(peers->size(), 1u);
  EXPECT_EQ((*peers)[0].deferred, 2);
  clock_.now += 1'000;
  jobs = box->Lease(10, "w");
  ASSERT_TRUE(jobs.has_value());
  EXPECT_EQ(jobs->size(), 1u);
}

// A poll's cost does not grow with the backlog: with thousands of due jobs
// for a recipient that is down (or at its cap), Lease does a bounded number
// of index searches and takes no write lock.
TEST_F(OutboxTest, LeaseCostDoesNotGrowWithTheBacklog) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  auto fill = [&](const std::string& recipient, int n) {
    for (int i = 0; i < n;) {
      std::vector<Outbox::NewJob> batch;
      for (int k = 0; k < 1000 && i < n; ++k, ++i) {
        batch.push_back({Key(recipient + "-doc-" + std::to_string(i), recipient), "p"});
      }
      ASSERT_TRUE(box->EnqueueBatch(batch).has_value());
    }
  };
  // Measures `polls` leases that find nothing: VM steps per Lease.
  auto idle_cost = [&](int polls) {
    OutboxCounters before = box->Counters();
    for (int p = 0; p < polls; ++p) {
      auto jobs = box->Lease(32, "w");
      EXPECT_TRUE(jobs.has_value());
      EXPECT_TRUE(jobs->empty());
    }
    OutboxCounters after = box->Counters();
    EXPECT_EQ(after.lease_writes, before.lease_writes) << "an idle poll took the write lock";
    return (after.lease_rows_read - before.lease_rows_read) / static_cast<uint64_t>(polls);
  };
  // Small backlogs: "absent" down (one Unreachable), "busy" at its cap;
  // then 3,000 jobs each (the first 10 keys are the same ones).
  fill("absent", 10);
  fill("busy", 10);
  auto first = box->Lease(32, "w");
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->size(), 4u);  // 2 each
  for (const Job& j : *first) {
    if (j.key.recipient == "absent") {
      ASSERT_TRUE(box->Unreachable(j, "refused").ok());
    }
  }
  const uint64_t small = idle_cost(10);
  fill("absent", 3000);
  fill("busy", 3000);
  const uint64_t large = idle_cost(10);
  EXPECT_GT(small, 0u);
  EXPECT_LE(large, small + 8) << "small backlog " << small << " steps, large " << large;
  auto m = box->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->deferred, 3000);  // the first 10 keys were queued already
  EXPECT_EQ(m->delivering, 2);
}

TEST_F(OutboxTest, PollQueriesSearchIndexesNeverScanJobs) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  auto plans = box->PollQueryPlans();
  ASSERT_TRUE(plans.has_value()) << plans.error().ToString();
  ASSERT_GE(plans->size(), 5u);
  for (const std::string& p : *plans) {
    EXPECT_EQ(p.find("SCAN jobs"), std::string::npos) << p;
    EXPECT_EQ(p.find("TEMP B-TREE"), std::string::npos) << p;
    if (p.find("FROM jobs") != std::string::npos) {
      EXPECT_NE(p.find("SEARCH jobs"), std::string::npos) << p;
    }
    // Per recipient: the (recipient, state, next_attempt_at) index, not the
    // due-time one (which would walk every recipient's due jobs).
    if (p.find("WHERE recipient=?") != std::string::npos) {
      EXPECT_NE(p.find("jobs_peer_due"), std::string::npos) << p;
    }
  }
}

// A file of schema version 1 (before the peers table) is upgraded in place:
// its queued jobs are leased as before.
TEST_F(OutboxTest, VersionOneFileIsUpgradedAndItsJobsLeased) {
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(Options().path.c_str(), &db), SQLITE_OK);
    const char* v1 =
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;"
        "INSERT INTO meta VALUES('schema','1');"
        "CREATE TABLE jobs(id INTEGER PRIMARY KEY, document_id TEXT NOT NULL, recipient TEXT NOT "
        "NULL, channel TEXT NOT NULL CHECK(channel IN ('appliance','email','webhook','notice')), "
        "payload BLOB NOT NULL, state TEXT NOT NULL CHECK(state IN "
        "('queued','delivering','delivered','read','refused','failed')), attempts INTEGER NOT "
        "NULL DEFAULT 0, enqueued_at INTEGER NOT NULL, next_attempt_at INTEGER NOT NULL, "
        "lease_id INTEGER, lease_expires_at INTEGER, delivered_at INTEGER NOT NULL DEFAULT 0, "
        "read_at INTEGER NOT NULL DEFAULT 0, finished_at INTEGER NOT NULL DEFAULT 0, last_error "
        "TEXT NOT NULL DEFAULT '', receipt_ref TEXT NOT NULL DEFAULT '', UNIQUE(document_id, "
        "recipient, channel)) STRICT;"
        "CREATE INDEX jobs_due ON jobs(state, next_attempt_at);"
        "CREATE INDEX jobs_lease ON jobs(state, lease_expires_at);"
        "CREATE INDEX jobs_recipient ON jobs(recipient, state);"
        "CREATE TABLE attempts(id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL "
        "REFERENCES jobs(id), number INTEGER NOT NULL, worker TEXT NOT NULL, started_at INTEGER "
        "NOT NULL, finished_at INTEGER NOT NULL DEFAULT 0, result TEXT NOT NULL CHECK(result IN "
        "('started','delivered','retry','refused','failed','lease-expired','superseded')), error "
        "TEXT NOT NULL DEFAULT '', UNIQUE(job_id, number)) STRICT;"
        "CREATE INDEX attempts_finished ON attempts(finished_at, id);"
        "INSERT INTO jobs(document_id, recipient, channel, payload, state, enqueued_at, "
        "next_attempt_at) VALUES('doc-1','cd-a','appliance',X'70','queued',1,1),"
        "('doc-2','cd-b','appliance',X'70','queued',1,1);";
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  EXPECT_TRUE(box->CheckConsistency().ok()) << box->CheckConsistency().ToString();
  auto jobs = box->Lease(10, "w");
  ASSERT_TRUE(jobs.has_value()) << jobs.error().ToString();
  ASSERT_EQ(jobs->size(), 2u);
  EXPECT_EQ((*jobs)[0].key.document_id, "doc-1");
  EXPECT_EQ((*jobs)[1].key.document_id, "doc-2");
  box.reset();
  box = OpenOutbox();  // and opens again as version 2
  ASSERT_TRUE(box);
}

TEST_F(OutboxTest, OpenWithBadOptionsOrNotAnOutboxFails) {
  OutboxOptions o = Options();
  o.max_in_flight_per_recipient = 0;
  EXPECT_EQ(Outbox::Open(o).error().code(), Code::kInvalidArgument);
  o = Options();
  o.path = tmp_.file("garbage.sqlite");
  sealpost::testing::WriteTestFile(o.path, std::string(8192, 'x'));
  auto box = Outbox::Open(o);
  ASSERT_FALSE(box.has_value());
  EXPECT_NE(box.error().message().find(o.path), std::string::npos) << box.error().ToString();
  o.path = tmp_.file("no-such-dir/outbox.sqlite");
  EXPECT_FALSE(Outbox::Open(o).has_value());
}

}  // namespace
}  // namespace sealpost::storage
