// The outbox: a persistent delivery queue in one SQLite file of the state
// directory (WAL journal, synchronous=FULL: an Enqueue that returned OK is on
// disk and survives a crash or power loss). See docs/outbox.md.
//
// One job per (document id, recipient, channel). Delivery workers take due
// jobs with Lease(); each lease is one attempt, recorded with its times,
// result and error. A job leased by a worker that dies is taken again once
// its lease expires: delivery is at-least-once, so the receiving side must
// answer a redelivery with the receipt it gave the first time.
//
// Job states:
//   queued      waiting for its next attempt (next_attempt_at)
//   delivering  leased by a worker until lease_expires_at
//   delivered   Succeeded() recorded, with the receipt reference
//   read        a read notice arrived (MarkRead), implies delivered
//   refused     the recipient refused it (Failed(..., retryable=false)); final
//   failed      max_attempts retryable failures; final
//
// Backoff after a retryable failure is exponential with full jitter:
//   delay = uniform [0, min(cap, base * 2^(attempts-1))]
//
// Peers (recipients) that cannot be reached: Unreachable() records the
// attempt like a retryable failure and also marks the recipient down until
// a delay drawn from [w/2, w], w = min(cap, base * 2^(f-1)) after f
// consecutive unreachable probes. While a recipient is down none of its
// jobs is leased (they are deferred: no attempt is made or recorded for
// them, their attempt counts do not grow). Once the time has passed one job
// is leased as the probe (the recipient's cap is 1 until it answers); a
// probe that reaches the recipient (Succeeded, a refusal, a read notice)
// ends the down state and the backlog is leased again under the usual cap.
// The down state is in the file: it survives restarts.
//
// Delivered and read jobs are pruned by PruneDelivered() some time after
// delivery (every attempt is archived first: the archive is the record).
//
// Thread-safety: an Outbox may be used from several threads (calls are
// serialised on its connection). Several Outbox objects, in one process or
// several, may open the same file: every change is one IMMEDIATE transaction,
// so no job is ever leased twice while its lease is held.
#ifndef SEALPOST_STORAGE_OUTBOX_H_
#define SEALPOST_STORAGE_OUTBOX_H_

#include <condition_variable>
#include <initializer_list>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

struct sqlite3;

namespace sealpost::storage {

enum class Channel {
  kAppliance,  // "appliance": the recipient's sealpost appliance (HTTPS)
  kEmail,      // "email": S/MIME mail to a recipient without an appliance
  kWebhook,    // "webhook": a notification (e.g. a Zalo OA bridge)
  kNotice,     // "notice": a signed read notice going back to the sender
};
std::string_view ChannelName(Channel channel);
// DataError for an unknown name.
Result<Channel> ParseChannel(std::string_view name);

enum class JobState { kQueued, kDelivering, kDelivered, kRead, kRefused, kFailed };
std::string_view JobStateName(JobState state);  // "queued", "delivering", ...
Result<JobState> ParseJobState(std::string_view name);

// Time source in milliseconds since the Unix epoch (tests inject a fake).
class OutboxClock {
 public:
  virtual ~OutboxClock() = default;
  virtual int64_t NowMillis() = 0;
};

// Random source for the jitter (tests inject a fixed one).
class OutboxRandom {
 public:
  virtual ~OutboxRandom() = default;
  // A uniformly distributed value in [0, max] (max included).
  virtual uint64_t UniformUpTo(uint64_t max) = 0;
};

// The full-jitter delay before attempt `attempts + 1`, after `attempts`
// (>= 1) attempts failed: uniform in [0, min(cap_ms, base_ms * 2^(attempts-1))].
// Never overflows (the exponent is clamped).
int64_t BackoffDelayMillis(int attempts, int64_t base_ms, int64_t cap_ms, OutboxRandom& random);

struct OutboxOptions {
  std::string path;                      // the SQLite file; created if missing
  int max_in_flight_per_recipient = 4;   // leased jobs per recipient, all channels
  int64_t lease_millis = 60'000;         // a lease not completed by then expires
  int64_t backoff_base_millis = 1'000;
  int64_t backoff_cap_millis = 3'600'000;
  int max_attempts = 16;                 // after this many, a retryable failure is final
  // Borrowed; must outlive the Outbox. Null: the system clock / a
  // std::random_device-seeded generator.
  OutboxClock* clock = nullptr;
  OutboxRandom* random = nullptr;
};

// Limits on what is stored (ids come from documents and the registry).
inline constexpr size_t kOutboxMaxIdBytes = 512;
inline constexpr size_t kOutboxMaxPayloadBytes = 64 * 1024;
inline constexpr size_t kOutboxMaxErrorBytes = 4 * 1024;

struct JobKey {
  std::string document_id;
  std::string recipient;  // union id (or mail address / webhook name)
  Channel channel = Channel::kAppliance;
  friend bool operator==(const JobKey&, const JobKey&) = default;
};

// A leased job, as handed to a worker. Succeeded()/Failed() need it back:
// the lease id fences off a worker whose lease expired and was taken again.
struct Job {
  int64_t id = 0;
  JobKey key;
  std::string payload;     // what the enqueuer stored (opaque: a spool path, ...)
  int attempt = 0;         // number of this attempt, 1-based
  int64_t lease_id = 0;    // id of this attempt's record
  int64_t lease_expires_at = 0;
};

// One recorded attempt.
struct Attempt {
  int64_t id = 0;          // increasing over the whole outbox (archiving cursor)
  int64_t job_id = 0;
  JobKey key;
  int number = 0;          // 1-based per job
  std::string worker;
  int64_t started_at = 0;
  int64_t finished_at = 0;  // 0 while running
  // "started", "delivered", "retry" (retryable error), "refused",
  // "failed" (retryable error, attempts exhausted), "lease-expired",
  // "superseded" (a read notice proved delivery while leased).
  std::string result;
  std::string error;
};

// What the sender sees per recipient of a document.
struct DeliveryState {
  JobKey key;
  JobState state = JobState::kQueued;
  int attempts = 0;
  int64_t enqueued_at = 0;
  int64_t next_attempt_at = 0;  // meaningful while queued
  int64_t delivered_at = 0;     // 0: not (yet)
  int64_t read_at = 0;          // 0: not (yet)
  int64_t finished_at = 0;      // refused/failed: when it became final
  std::string last_error;
  std::string receipt_ref;
};

struct OutboxMetrics {
  int64_t queued = 0;           // waiting (due or not), deferred included
  int64_t due = 0;              // queued and due now, plus expired leases
  int64_t delivering = 0;       // leased, lease not expired
  int64_t delivered = 0;        // delivered or read
  int64_t refused = 0;
  int64_t failed = 0;
  int64_t oldest_due_age_millis = 0;  // now - due time of the oldest due job; 0 if none
  int64_t deferred = 0;         // queued jobs of recipients that are down now
  int64_t peers_down = 0;       // recipients that are down now
};

// A recipient the outbox knows to be unreachable (see Unreachable()).
struct PeerState {
  std::string recipient;
  int failures = 0;          // consecutive unreachable attempts
  int64_t down_since = 0;    // first of those failures
  int64_t down_until = 0;    // no job is leased before; then one probe
  std::string last_error;
  int64_t deferred = 0;      // its queued jobs
};

// Work done by Lease() so far (tests and benches: the cost of a poll).
struct OutboxCounters {
  uint64_t leases = 0;             // Lease() calls
  uint64_t lease_writes = 0;       // of those, how many took the write lock
  uint64_t lease_rows_read = 0;    // rows stepped by Lease()'s queries (VM rows)
};

class Outbox {
 public:
  // Opens (creating if needed) the outbox file: WAL, synchronous=FULL,
  // busy timeout 10 s, schema version checked. IoError if the file cannot be
  // opened or created, DataError if it is not an outbox of this version,
  // InvalidArgument for options out of range.
  static Result<std::unique_ptr<Outbox>> Open(const OutboxOptions& options);
  ~Outbox();
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Queues a job, due now. Idempotent: returns true if the job was created,
  // false if the same key with the same payload is already there (in any
  // state). FailedPrecondition if the key exists with another payload
  // (nothing changes); InvalidArgument for empty or oversized ids/payload.
  // Durable when it returns.
  [[nodiscard]] Result<bool> Enqueue(const JobKey& key, std::string_view payload);

  // Enqueue of several jobs (e.g. one document's fan-out to every recipient)
  // in one transaction: one fsync for all. All or nothing: on any error
  // (as for Enqueue, naming the job) nothing is queued. Returns how many
  // jobs were new. Durable when it returns. Concurrent calls are grouped
  // (group commit): one caller writes every batch waiting, each in a
  // savepoint of its own (a batch that fails is rolled back alone), and
  // commits them with one fsync; a failed COMMIT fails every batch in it.
  struct NewJob {
    JobKey key;
    std::string payload;
  };
  [[nodiscard]] Result<size_t> EnqueueBatch(const std::vector<NewJob>& jobs);

  // Takes up to `max_jobs` due jobs for `worker` (a name for the record), in
  // order of due time, never more than max_in_flight_per_recipient leased
  // at once per recipient. Expired leases are first recorded as
  // "lease-expired" attempts; their jobs are due again (or failed, when the
  // attempts are exhausted). Each returned job is one new attempt.
  [[nodiscard]] Result<std::vector<Job>> Lease(size_t max_jobs, std::string_view worker);

  // Ends every lease still held, at once, as if it had expired: for the one
  // process that owns the outbox (sealpostd holds a lock on its state
  // directory), called at start-up, when every lease on record belongs to a
  // previous process that died. The attempts are recorded as
  // "lease-expired" with the reason `why`; their jobs are due again now (or
  // failed when their attempts are used up). Returns how many were ended.
  [[nodiscard]] Result<size_t> EndLeasesOfPreviousProcess(std::string_view why);

  // Completes the attempt: delivered, with a reference to the receipt (e.g.
  // the archive seq of the receipt entry). FailedPrecondition if this lease
  // is no longer held (expired and taken again, or already completed).
  [[nodiscard]] Status Succeeded(const Job& job, std::string_view receipt_ref);

  // Completes the attempt as failed. retryable: queued again after the
  // backoff delay, or "failed" when max_attempts are used up; not retryable:
  // "refused" (final). FailedPrecondition as for Succeeded.
  [[nodiscard]] Status Failed(const Job& job, std::string_view error, bool retryable);

  // Completes the attempt as a retryable failure because the recipient
  // could not be reached at all (connection refused, TLS handshake failed,
  // timeout): as Failed(job, error, true), and the recipient is marked down
  // (see the top of this file) unless it already is (attempts started
  // before it was known down do not lengthen the wait).
  [[nodiscard]] Status Unreachable(const Job& job, std::string_view error);

  // Recipients that are down or probing (failures > 0), by recipient.
  [[nodiscard]] Result<std::vector<PeerState>> Peers();

  // Records that the recipient read the document (a verified read notice
  // arrived): state "read", read_at = `read_at` (the first notice wins). A
  // notice proves delivery, so a queued or leased job becomes "read" too (a
  // running attempt is recorded as "superseded"). NotFound if no such job.
  [[nodiscard]] Status MarkRead(const JobKey& key, int64_t read_at);

  // Per-recipient state of every job of `document_id`, ordered by
  // recipient then channel. Empty if none.
  [[nodiscard]] Result<std::vector<DeliveryState>> States(std::string_view document_id);
  [[nodiscard]] Result<DeliveryState> State(const JobKey& key);  // NotFound if absent

  // Attempts of one job, oldest first.
  [[nodiscard]] Result<std::vector<Attempt>> Attempts(const JobKey& key);
  // Finished attempts with id > after_id, oldest first, at most `limit`,
  // stopping before the first attempt still running (so a cursor kept at
  // the last id returned never passes an attempt that finishes later):
  // the daemon archives them and keeps the last id as its cursor.
  [[nodiscard]] Result<std::vector<Attempt>> FinishedAttemptsAfter(int64_t after_id, size_t limit);

  // The depth per state: six rows of job_counts (kept by triggers in the
  // transaction of each change) plus index searches over the jobs still
  // queued or leased; its cost does not grow with the delivered history.
  [[nodiscard]] Result<OutboxMetrics> Metrics();

  // Forgets delivered and read jobs, and their attempts: those delivered
  // before `delivered_before` (ms since the epoch) whose attempts are all
  // archived (attempt id <= `archived_attempts_upto`, the archiving
  // cursor), oldest first, at most `max_jobs` in one short transaction (call
  // again until it returns less). The job with the highest id is kept, so no
  // job id is ever given twice. Queued, leased, refused and failed jobs are
  // never pruned. Afterwards Enqueue of a pruned key creates a new job: a
  // caller must not enqueue a key again once its job may have been pruned
  // (sealpostd's keys are new document ids, and read notices are checked
  // against the archive first). Returns how many jobs were pruned.
  [[nodiscard]] Result<size_t> PruneDelivered(int64_t delivered_before,
                                              int64_t archived_attempts_upto, size_t max_jobs);
  // The latest `delivered_before` that pruned a job (0: never pruned):
  // a job of a document enqueued before it may have been forgotten.
  [[nodiscard]] Result<int64_t> PrunedBefore();

  // SQLite's integrity_check plus the outbox's own invariants (leased jobs
  // hold a lease whose attempt is "started", attempt numbers are 1..n,
  // final states have their times). DataError naming the first violation.
  [[nodiscard]] Status CheckConsistency();

  // The query plans (EXPLAIN QUERY PLAN) of the statements a poll runs,
  // one string per statement ("SEARCH jobs USING INDEX ..."): for the tests
  // that no poll scans the jobs table.
  [[nodiscard]] Result<std::vector<std::string>> PollQueryPlans();
  // The same for Metrics() and PruneDelivered(): no scan of jobs either.
  [[nodiscard]] Result<std::vector<std::string>> MetricsQueryPlans();

  OutboxCounters Counters();

 private:
  struct Db;
  Outbox(const OutboxOptions& options, std::unique_ptr<Db> db);
  int64_t Now();
  // Leases whose expiry is <= `cutoff` end now (REQUIRES: mu_ held, inside
  // a transaction).
  Status ExpireLeases(int64_t now, int64_t cutoff, std::string_view why);
  // The usual case: leases that expired by `now`; an index probe when none.
  Status ExpireLeases(int64_t now);
  // The jobs a Lease would take now (ids, ordered by due time), and whether
  // anything else needs writing (expired leases, peer rows to drop).
  // REQUIRES: mu_ held.
  struct LeasePlan {
    std::vector<int64_t> ids;
    std::vector<std::string> drop_peers;  // no job left and not down
    bool expired = false;
  };
  Result<LeasePlan> PlanLease(size_t max_jobs, int64_t now);
  // EXPLAIN QUERY PLAN of each statement. Takes mu_.
  Result<std::vector<std::string>> Explain(std::initializer_list<const char*> sqls);
  // Completion shared by Failed and Unreachable. REQUIRES: mu_ held.
  Status FailLocked(const Job& job, std::string_view error, bool retryable, bool unreachable);
  // The recipient answered: its down state ends. REQUIRES: mu_ held, in a tx.
  Status PeerAnsweredLocked(const std::string& recipient);
  // REQUIRES: mu_ held, inside a transaction.
  Result<bool> EnqueueLocked(const JobKey& key, std::string_view payload, int64_t now);
  // One EnqueueBatch call waiting for the group commit.
  struct PendingBatch {
    const std::vector<NewJob>* jobs = nullptr;
    Result<size_t> result = size_t{0};
    bool done = false;
  };
  // Writes `batches` in one transaction (savepoint each) and fills their
  // results. REQUIRES: mu_ held.
  void WriteBatchesLocked(const std::vector<PendingBatch*>& batches);

  OutboxOptions options_;
  std::unique_ptr<OutboxClock> own_clock_;
  std::unique_ptr<OutboxRandom> own_random_;
  OutboxClock* clock_ = nullptr;
  OutboxRandom* random_ = nullptr;
  std::mutex mu_;
  std::unique_ptr<Db> db_;
  OutboxCounters counters_;  // guarded by mu_
  // Group commit of EnqueueBatch, guarded by group_mu_ (the leader releases
  // it before taking mu_ to write).
  std::mutex group_mu_;
  std::condition_variable group_cv_;
  std::vector<PendingBatch*> group_queue_;
  bool group_leader_ = false;
};

}  // namespace sealpost::storage

#endif  // SEALPOST_STORAGE_OUTBOX_H_
