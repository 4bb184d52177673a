// The outbox's job counts (job_counts, kept by triggers) checked against a
// full count through every state change, a restart and an upgrade of a
// version 2 file; and PruneDelivered: only delivered or read jobs, old
// enough, whose attempts are archived, in batches.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <map>
#include <string>
#include <vector>

#include "storage/outbox.h"
#include "tests/support/test_pki.h"

namespace sealpost::storage {
namespace {

using sealpost::testing::TempDir;

class FakeClock final : public OutboxClock {
 public:
  int64_t NowMillis() override { return now; }
  int64_t now = 1'800'000'000'000;
};

class NoJitter final : public OutboxRandom {
 public:
  uint64_t UniformUpTo(uint64_t max) override { return max; }
};

JobKey Key(const std::string& doc, const std::string& recipient,
           Channel channel = Channel::kAppliance) {
  return JobKey{doc, recipient, channel};
}

// Runs SQL on the file through a connection of its own.
void Sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

int64_t SqlCount(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sql;
  int64_t n = -1;
  if (sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(db);
  return n;
}

class OutboxCountsTest : public ::testing::Test {
 protected:
  OutboxOptions Options() {
    OutboxOptions o;
    o.path = tmp_.file("outbox.sqlite");
    o.max_in_flight_per_recipient = 8;
    o.lease_millis = 30'000;
    o.backoff_base_millis = 1'000;
    o.backoff_cap_millis = 60'000;
    o.max_attempts = 2;
    o.clock = &clock_;
    o.random = &random_;
    return o;
  }
  std::unique_ptr<Outbox> OpenOutbox() {
    auto o = Outbox::Open(Options());
    EXPECT_TRUE(o.has_value()) << o.error().ToString();
    return o.has_value() ? std::move(*o) : nullptr;
  }
  // Metrics() against a full count of the jobs table, by another connection.
  void ExpectMetricsMatchFullCount(Outbox& box, const std::string& where) {
    SCOPED_TRACE(where);
    const std::string path = Options().path;
    const std::string now = std::to_string(clock_.now);
    auto m = box.Metrics();
    ASSERT_TRUE(m.has_value()) << m.error().ToString();
    EXPECT_EQ(m->queued, SqlCount(path, "SELECT COUNT(*) FROM jobs WHERE state='queued'"));
    EXPECT_EQ(m->delivering, SqlCount(path, "SELECT COUNT(*) FROM jobs WHERE state='delivering' "
                                            "AND lease_expires_at > " + now));
    EXPECT_EQ(m->due, SqlCount(path, "SELECT COUNT(*) FROM jobs WHERE (state='queued' AND "
                                     "next_attempt_at <= " + now + ") OR (state='delivering' "
                                     "AND lease_expires_at <= " + now + ")"));
    EXPECT_EQ(m->delivered,
              SqlCount(path, "SELECT COUNT(*) FROM jobs WHERE state IN ('delivered','read')"));
    EXPECT_EQ(m->refused, SqlCount(path, "SELECT COUNT(*) FROM jobs WHERE state='refused'"));
    EXPECT_EQ(m->failed, SqlCount(path, "SELECT COUNT(*) FROM jobs WHERE state='failed'"));
    const int64_t oldest = SqlCount(
        path, "SELECT COALESCE(MIN(CASE WHEN state='queued' AND next_attempt_at <= " + now +
                  " THEN next_attempt_at WHEN state='delivering' AND lease_expires_at <= " + now +
                  " THEN lease_expires_at END), 0) FROM jobs");
    EXPECT_EQ(m->oldest_due_age_millis, oldest == 0 ? 0 : clock_.now - oldest);
    Status c = box.CheckConsistency();
    EXPECT_TRUE(c.ok()) << c.ToString();
  }

  TempDir tmp_;
  FakeClock clock_;
  NoJitter random_;
};

TEST_F(OutboxCountsTest, CountsMatchAFullCountThroughEveryChangeAndAfterReopen) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  ExpectMetricsMatchFullCount(*box, "empty");
  std::vector<Outbox::NewJob> batch;
  for (int i = 0; i < 12; ++i) {
    batch.push_back({Key("doc-" + std::to_string(i), "cd-" + std::to_string(i % 3)), "p"});
  }
  ASSERT_EQ(box->EnqueueBatch(batch).value_or(0), 12u);
  ASSERT_EQ(box->EnqueueBatch(batch).value_or(99), 0u);  // idempotent: no double count
  ASSERT_TRUE(box->Enqueue(Key("doc-x", "cd-9"), "p").value_or(false));
  ExpectMetricsMatchFullCount(*box, "enqueued");
  auto jobs = box->Lease(10, "w");
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 10u);
  ExpectMetricsMatchFullCount(*box, "leased");
  ASSERT_TRUE(box->Succeeded((*jobs)[0], "1").ok());
  ASSERT_TRUE(box->Succeeded((*jobs)[1], "2").ok());
  ASSERT_TRUE(box->Failed((*jobs)[2], "no", false).ok());             // refused
  ASSERT_TRUE(box->Failed((*jobs)[3], "503", true).ok());             // retry
  ASSERT_TRUE(box->Unreachable((*jobs)[4], "refused").ok());          // retry, peer down
  ASSERT_TRUE(box->MarkRead((*jobs)[5].key, clock_.now).ok());        // superseded -> read
  ASSERT_TRUE(box->MarkRead((*jobs)[0].key, clock_.now).ok());        // delivered -> read
  ExpectMetricsMatchFullCount(*box, "completed");
  clock_.now += 31'000;  // the other leases expire
  ExpectMetricsMatchFullCount(*box, "leases expired, not yet recorded");
  auto again = box->Lease(20, "w");  // records the expiries, leases again
  ASSERT_TRUE(again.has_value());
  ExpectMetricsMatchFullCount(*box, "expired and leased again");
  for (const Job& j : *again) {
    ASSERT_TRUE(box->Failed(j, "503", true).ok());  // attempt 2 of 2: failed
  }
  ExpectMetricsMatchFullCount(*box, "failed");
  auto ended = box->EndLeasesOfPreviousProcess("restart");
  ASSERT_TRUE(ended.has_value());
  box.reset();
  box = OpenOutbox();
  ASSERT_TRUE(box);
  ExpectMetricsMatchFullCount(*box, "reopened");
  auto m = box->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->delivered, 3);  // doc 0 and 5 read, doc 1 delivered
  EXPECT_EQ(m->refused, 1);
  EXPECT_GT(m->failed, 0);
  // A file written by hand with counts that lie is reported.
  box.reset();
  Sql(Options().path, "UPDATE job_counts SET n=n+5 WHERE state='refused'");
  box = OpenOutbox();
  ASSERT_TRUE(box);
  Status c = box->CheckConsistency();
  EXPECT_EQ(c.code(), Code::kDataError);
  EXPECT_NE(c.message().find("job_counts says 6 refused jobs, there are 1"), std::string::npos)
      << c.ToString();
}

// A version 2 file (no job_counts, triggers or jobs_done) with jobs in
// several states is upgraded in place: the counts start from a full count.
TEST_F(OutboxCountsTest, VersionTwoFileIsUpgradedWithItsCounts) {
  {
    auto box = OpenOutbox();
    ASSERT_TRUE(box);
    for (int i = 0; i < 6; ++i) {
      ASSERT_TRUE(box->Enqueue(Key("doc-" + std::to_string(i), "cd-a"), "p").has_value());
    }
    auto jobs = box->Lease(3, "w");
    ASSERT_TRUE(jobs.has_value());
    ASSERT_EQ(jobs->size(), 3u);
    ASSERT_TRUE(box->Succeeded((*jobs)[0], "1").ok());
    ASSERT_TRUE(box->Failed((*jobs)[1], "no", false).ok());
  }
  // Back to what version 2 wrote.
  Sql(Options().path,
      "DROP TRIGGER jobs_count_insert; DROP TRIGGER jobs_count_update; "
      "DROP TRIGGER jobs_count_delete; DROP TABLE job_counts; DROP INDEX jobs_done; "
      "UPDATE meta SET value='2' WHERE key='schema';"
      "INSERT INTO jobs(document_id, recipient, channel, payload, state, enqueued_at, "
      "next_attempt_at, delivered_at) VALUES('old-1','cd-b','appliance',X'70','delivered',1,1,5);");
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  EXPECT_EQ(SqlCount(Options().path, "SELECT value FROM meta WHERE key='schema'"), 3);
  ExpectMetricsMatchFullCount(*box, "upgraded");
  auto m = box->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->queued, 3);
  EXPECT_EQ(m->delivering, 1);
  EXPECT_EQ(m->delivered, 2);
  EXPECT_EQ(m->refused, 1);
  // And the counts keep following after the upgrade.
  auto jobs = box->Lease(10, "w");
  ASSERT_TRUE(jobs.has_value());
  for (const Job& j : *jobs) ASSERT_TRUE(box->Succeeded(j, "r").ok());
  ExpectMetricsMatchFullCount(*box, "after the upgrade");
  box.reset();
  box = OpenOutbox();  // opens again as version 3
  ASSERT_TRUE(box);
  ExpectMetricsMatchFullCount(*box, "reopened");
}

TEST_F(OutboxCountsTest, MetricsAndPruneQueriesNeverScanJobs) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  auto plans = box->MetricsQueryPlans();
  ASSERT_TRUE(plans.has_value()) << plans.error().ToString();
  ASSERT_EQ(plans->size(), 7u);
  for (const std::string& p : *plans) {
    EXPECT_EQ(p.find("SCAN jobs"), std::string::npos) << p;
    EXPECT_EQ(p.find("SCAN j "), std::string::npos) << p;
    EXPECT_EQ(p.find("SCAN attempts"), std::string::npos) << p;
  }
  // The prune walks the partial index of delivered jobs.
  EXPECT_NE((*plans)[4].find("jobs_done"), std::string::npos) << (*plans)[4];
  EXPECT_EQ((*plans)[4].find("TEMP B-TREE"), std::string::npos) << (*plans)[4];
  // Due and expired leases: ranges of jobs_due and jobs_lease.
  EXPECT_NE((*plans)[1].find("jobs_due"), std::string::npos) << (*plans)[1];
  EXPECT_NE((*plans)[2].find("jobs_lease"), std::string::npos) << (*plans)[2];
}

class OutboxPruneTest : public OutboxCountsTest {
 protected:
  // Enqueues `doc` to cd-a, leases and completes it (delivered when ok).
  void Deliver(Outbox& box, const std::string& doc, bool ok = true) {
    ASSERT_TRUE(box.Enqueue(Key(doc, "cd-a"), "p").value_or(false));
    auto jobs = box.Lease(1, "w");
    ASSERT_TRUE(jobs.has_value());
    ASSERT_EQ(jobs->size(), 1u);
    ASSERT_EQ((*jobs)[0].key.document_id, doc);
    if (ok) {
      ASSERT_TRUE(box.Succeeded((*jobs)[0], "7").ok());
    } else {
      ASSERT_TRUE(box.Failed((*jobs)[0], "no", false).ok());
    }
  }
  int64_t LastAttemptId(Outbox& box) {
    auto a = box.FinishedAttemptsAfter(0, 1000);
    return a.has_value() && !a->empty() ? a->back().id : 0;
  }
};

TEST_F(OutboxPruneTest, PrunesOnlyOldArchivedDeliveredJobsInBatches) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  const int64_t t0 = clock_.now;
  for (int i = 0; i < 5; ++i) Deliver(*box, "old-" + std::to_string(i));
  ASSERT_TRUE(box->MarkRead(Key("old-0", "cd-a"), t0).ok());  // read: prunable too
  Deliver(*box, "refused-old", false);
  const int64_t archived = LastAttemptId(*box);  // the cursor: all of the above archived
  Deliver(*box, "old-unarchived");               // attempt after the cursor
  clock_.now = t0 + 10'000;
  Deliver(*box, "recent");
  ASSERT_TRUE(box->Enqueue(Key("queued", "cd-b"), "p").value_or(false));
  ASSERT_TRUE(box->Enqueue(Key("last", "cd-c"), "p").value_or(false));
  const int64_t cutoff = t0 + 5'000;
  EXPECT_EQ(box->PrunedBefore().value_or(-1), 0);

  // Batches of 2: old-0, old-1; then old-2, old-3; then old-4; then none.
  EXPECT_EQ(box->PruneDelivered(cutoff, archived, 2).value_or(0), 2u);
  EXPECT_EQ(box->State(Key("old-0", "cd-a")).error().code(), Code::kNotFound);
  EXPECT_EQ(box->State(Key("old-1", "cd-a")).error().code(), Code::kNotFound);
  EXPECT_TRUE(box->State(Key("old-2", "cd-a")).has_value());
  ExpectMetricsMatchFullCount(*box, "first batch");
  EXPECT_EQ(box->PruneDelivered(cutoff, archived, 2).value_or(0), 2u);
  EXPECT_EQ(box->PruneDelivered(cutoff, archived, 2).value_or(0), 1u);
  EXPECT_EQ(box->PruneDelivered(cutoff, archived, 2).value_or(9), 0u);
  EXPECT_EQ(box->PrunedBefore().value_or(-1), cutoff);
  // Kept: refused, delivered but its attempt not archived, recent, queued.
  for (const char* doc : {"refused-old", "old-unarchived", "recent"}) {
    EXPECT_TRUE(box->State(Key(doc, "cd-a")).has_value()) << doc;
  }
  EXPECT_TRUE(box->State(Key("queued", "cd-b")).has_value());
  // Their attempts are gone with them; those of the rest stay.
  EXPECT_EQ(SqlCount(Options().path, "SELECT COUNT(*) FROM attempts"), 3);
  auto left = box->Attempts(Key("old-unarchived", "cd-a"));
  ASSERT_TRUE(left.has_value());
  EXPECT_EQ(left->size(), 1u);
  ExpectMetricsMatchFullCount(*box, "pruned");
  auto m = box->Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->delivered, 2);  // old-unarchived, recent
  EXPECT_EQ(m->refused, 1);
  EXPECT_EQ(m->queued, 2);
  // Once the cursor passes its attempt, old-unarchived goes too; a later
  // cutoff takes "recent".
  EXPECT_EQ(box->PruneDelivered(cutoff, INT64_MAX, 10).value_or(0), 1u);
  EXPECT_EQ(box->PruneDelivered(clock_.now + 1, INT64_MAX, 10).value_or(0), 1u);
  ExpectMetricsMatchFullCount(*box, "all delivered pruned");
  box.reset();
  box = OpenOutbox();
  ASSERT_TRUE(box);
  ExpectMetricsMatchFullCount(*box, "reopened");
  EXPECT_EQ(box->PrunedBefore().value_or(-1), clock_.now + 1);
}

TEST_F(OutboxPruneTest, TheJobWithTheHighestIdIsKeptSoIdsAreNotReused) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  Deliver(*box, "a");
  Deliver(*box, "b");
  clock_.now += 1000;
  EXPECT_EQ(box->PruneDelivered(clock_.now, INT64_MAX, 10).value_or(0), 1u);
  EXPECT_FALSE(box->State(Key("a", "cd-a")).has_value());
  auto b = box->State(Key("b", "cd-a"));
  ASSERT_TRUE(b.has_value());
  Deliver(*box, "c");
  auto attempts = box->Attempts(Key("c", "cd-a"));
  ASSERT_TRUE(attempts.has_value());
  ASSERT_EQ(attempts->size(), 1u);
  EXPECT_EQ(attempts->front().job_id, 3);  // not 1 again
  EXPECT_EQ(box->PruneDelivered(clock_.now + 1, INT64_MAX, 10).value_or(0), 1u);  // b
  Status c = box->CheckConsistency();
  EXPECT_TRUE(c.ok()) << c.ToString();
}

// Pruning runs between enqueues without holding anything across batches:
// the queue keeps working while a large prune is done a batch at a time.
TEST_F(OutboxPruneTest, EnqueuesInterleaveWithPruneBatches) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  std::vector<Outbox::NewJob> batch;
  for (int i = 0; i < 300; ++i) batch.push_back({Key("d-" + std::to_string(i), "cd-a"), "p"});
  ASSERT_EQ(box->EnqueueBatch(batch).value_or(0), 300u);
  for (;;) {
    auto jobs = box->Lease(100, "w");
    ASSERT_TRUE(jobs.has_value());
    if (jobs->empty()) break;
    for (const Job& j : *jobs) ASSERT_TRUE(box->Succeeded(j, "r").ok());
  }
  clock_.now += 1000;
  size_t pruned = 0, rounds = 0;
  for (;;) {
    auto n = box->PruneDelivered(clock_.now, INT64_MAX, 64);
    ASSERT_TRUE(n.has_value()) << n.error().ToString();
    ASSERT_TRUE(
        box->Enqueue(Key("new-" + std::to_string(rounds), "cd-b"), "p").value_or(false));
    pruned += *n;
    ++rounds;
    if (*n < 64) break;
  }
  EXPECT_EQ(pruned, 300u);  // the highest id is a queued job from the first round on
  EXPECT_EQ(rounds, 5u);
  ExpectMetricsMatchFullCount(*box, "after");
}

// The archiving cursor never passes an attempt still running: one that
// finishes after later ones is still listed (and so archived) after them,
// and a job is pruned only once its attempts are behind the cursor.
TEST_F(OutboxPruneTest, FinishedAttemptsStopBeforeTheFirstRunningOne) {
  auto box = OpenOutbox();
  ASSERT_TRUE(box);
  ASSERT_TRUE(box->Enqueue(Key("slow", "cd-a"), "p").value_or(false));
  ASSERT_TRUE(box->Enqueue(Key("fast", "cd-b"), "p").value_or(false));
  auto jobs = box->Lease(2, "w");
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 2u);
  const Job& slow = (*jobs)[0].key.document_id == "slow" ? (*jobs)[0] : (*jobs)[1];
  const Job& fast = (*jobs)[0].key.document_id == "slow" ? (*jobs)[1] : (*jobs)[0];
  ASSERT_LT(slow.lease_id, fast.lease_id);
  ASSERT_TRUE(box->Succeeded(fast, "r").ok());
  auto page = box->FinishedAttemptsAfter(0, 10);
  ASSERT_TRUE(page.has_value());
  EXPECT_TRUE(page->empty());  // "fast" waits behind the running "slow"
  ASSERT_TRUE(box->Succeeded(slow, "r").ok());
  page = box->FinishedAttemptsAfter(0, 10);
  ASSERT_TRUE(page.has_value());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].id, slow.lease_id);
  EXPECT_EQ((*page)[1].id, fast.lease_id);
}

}  // namespace
}  // namespace sealpost::storage
