#include "storage/outbox.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>

#include "base/handle.h"
#include "base/utf8.h"

namespace sealpost::storage {
namespace {

constexpr int kSchemaVersion = 3;

constexpr struct {
  Channel channel;
  std::string_view name;
} kChannels[] = {
    {Channel::kAppliance, "appliance"},
    {Channel::kEmail, "email"},
    {Channel::kWebhook, "webhook"},
    {Channel::kNotice, "notice"},
};

constexpr struct {
  JobState state;
  std::string_view name;
} kStates[] = {
    {JobState::kQueued, "queued"},       {JobState::kDelivering, "delivering"},
    {JobState::kDelivered, "delivered"}, {JobState::kRead, "read"},
    {JobState::kRefused, "refused"},     {JobState::kFailed, "failed"},
};

// The schema. Times are milliseconds since the epoch; 0 or NULL means "not".
// attempts.id doubles as the lease id that fences completions.
constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS jobs(
  id INTEGER PRIMARY KEY,
  document_id TEXT NOT NULL,
  recipient TEXT NOT NULL,
  channel TEXT NOT NULL CHECK(channel IN ('appliance','email','webhook','notice')),
  payload BLOB NOT NULL,
  state TEXT NOT NULL
    CHECK(state IN ('queued','delivering','delivered','read','refused','failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  enqueued_at INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL,
  lease_id INTEGER,
  lease_expires_at INTEGER,
  delivered_at INTEGER NOT NULL DEFAULT 0,
  read_at INTEGER NOT NULL DEFAULT 0,
  finished_at INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  receipt_ref TEXT NOT NULL DEFAULT '',
  UNIQUE(document_id, recipient, channel)) STRICT;
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(state, next_attempt_at);
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs(state, lease_expires_at);
CREATE INDEX IF NOT EXISTS jobs_peer_due ON jobs(recipient, state, next_attempt_at, id);
CREATE TABLE IF NOT EXISTS attempts(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id INTEGER NOT NULL REFERENCES jobs(id),
  number INTEGER NOT NULL,
  worker TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL DEFAULT 0,
  result TEXT NOT NULL CHECK(result IN
    ('started','delivered','retry','refused','failed','lease-expired','superseded')),
  error TEXT NOT NULL DEFAULT '',
  UNIQUE(job_id, number)) STRICT;
CREATE INDEX IF NOT EXISTS attempts_finished ON attempts(finished_at, id);
CREATE TABLE IF NOT EXISTS peers(
  recipient TEXT PRIMARY KEY,
  failures INTEGER NOT NULL DEFAULT 0,
  down_since INTEGER NOT NULL DEFAULT 0,
  down_until INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '') STRICT;
-- Version 3: jobs per state, kept by triggers in the transaction of every
-- change to jobs (insert, state change, delete), so Metrics() reads six rows
-- instead of counting the whole history.
CREATE TABLE IF NOT EXISTS job_counts(state TEXT PRIMARY KEY, n INTEGER NOT NULL) STRICT;
INSERT OR IGNORE INTO job_counts(state, n) VALUES
  ('queued',0),('delivering',0),('delivered',0),('read',0),('refused',0),('failed',0);
CREATE TRIGGER IF NOT EXISTS jobs_count_insert AFTER INSERT ON jobs BEGIN
  UPDATE job_counts SET n=n+1 WHERE state=NEW.state;
END;
CREATE TRIGGER IF NOT EXISTS jobs_count_update AFTER UPDATE OF state ON jobs
  WHEN OLD.state != NEW.state BEGIN
  UPDATE job_counts SET n=n-1 WHERE state=OLD.state;
  UPDATE job_counts SET n=n+1 WHERE state=NEW.state;
END;
CREATE TRIGGER IF NOT EXISTS jobs_count_delete AFTER DELETE ON jobs BEGIN
  UPDATE job_counts SET n=n-1 WHERE state=OLD.state;
END;
-- Version 3: delivered and read jobs by delivery time, for the prune.
CREATE INDEX IF NOT EXISTS jobs_done ON jobs(delivered_at, id) WHERE state IN ('delivered','read');
)sql";

// Version 1 -> 2: the peers table (created by kSchema above) gets a row for
// every recipient with work left; jobs_peer_due replaces jobs_recipient.
constexpr char kMigrateFrom1[] = R"sql(
INSERT OR IGNORE INTO peers(recipient)
  SELECT DISTINCT recipient FROM jobs WHERE state IN ('queued','delivering');
DROP INDEX IF EXISTS jobs_recipient;
UPDATE meta SET value='2' WHERE key='schema';
)sql";

// Version 2 -> 3: job_counts, its triggers and jobs_done (created by kSchema
// above) are filled with one full count, once.
constexpr char kMigrateFrom2[] = R"sql(
UPDATE job_counts SET n=(SELECT COUNT(*) FROM jobs WHERE jobs.state=job_counts.state);
UPDATE meta SET value='3' WHERE key='schema';
)sql";

// The statements of a poll (Lease), named so that PollQueryPlans explains
// exactly these. Every one is an index search bounded by the number of
// recipients and the per-recipient cap, never by the backlog.
constexpr char kSqlAnyExpired[] =
    "SELECT 1 FROM jobs WHERE state='delivering' AND lease_expires_at <= ? LIMIT 1";
constexpr char kSqlPeers[] = "SELECT recipient, failures, down_until FROM peers";
constexpr char kSqlInFlight[] =
    "SELECT COUNT(*) FROM jobs WHERE recipient=? AND state='delivering'";
constexpr char kSqlPeerDue[] =
    "SELECT id, next_attempt_at FROM jobs WHERE recipient=? AND state='queued' AND "
    "next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?";
constexpr char kSqlPeerHasQueued[] =
    "SELECT 1 FROM jobs WHERE recipient=? AND state='queued' LIMIT 1";
constexpr char kSqlJobForLease[] =
    "SELECT document_id, recipient, channel, payload, attempts FROM jobs WHERE id=? AND "
    "state='queued'";
constexpr char kSqlDropPeer[] =
    "DELETE FROM peers WHERE recipient=?1 AND (failures=0 OR down_until <= ?2) AND NOT EXISTS "
    "(SELECT 1 FROM jobs WHERE recipient=?1 AND state IN ('queued','delivering'))";

// The statements of Metrics(): job_counts, then index ranges of the jobs
// still queued or leased (never the delivered history).
constexpr char kSqlMetricsCounts[] = "SELECT state, n FROM job_counts";
constexpr char kSqlMetricsDue[] =
    "SELECT COUNT(*), MIN(next_attempt_at) FROM jobs WHERE state='queued' AND "
    "next_attempt_at <= ?1";
constexpr char kSqlMetricsExpired[] =
    "SELECT COUNT(*), MIN(lease_expires_at) FROM jobs WHERE state='delivering' AND "
    "lease_expires_at <= ?1";
constexpr char kSqlMetricsDown[] =
    "SELECT COUNT(*), COALESCE(SUM((SELECT COUNT(*) FROM jobs j WHERE j.recipient=p.recipient "
    "AND j.state='queued')), 0) FROM peers p WHERE p.down_until > ?1";

constexpr char kSqlPruneSelect[] =
    "SELECT id, delivered_at FROM jobs INDEXED BY jobs_done WHERE state IN ('delivered','read') AND delivered_at < ?1 "
    "AND id < (SELECT MAX(id) FROM jobs) AND NOT EXISTS (SELECT 1 FROM attempts a WHERE "
    "a.job_id=jobs.id AND a.id > ?2) ORDER BY delivered_at, id LIMIT ?3";
constexpr char kSqlPruneAttempts[] = "DELETE FROM attempts WHERE job_id=?";
constexpr char kSqlPruneJob[] = "DELETE FROM jobs WHERE id=?";

using SqlitePtr = std::unique_ptr<sqlite3, CDeleter<sqlite3_close_v2>>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, CDeleter<sqlite3_finalize>>;

class SystemClock final : public OutboxClock {
 public:
  int64_t NowMillis() override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

class SystemRandom final : public OutboxRandom {
 public:
  SystemRandom() : gen_(std::random_device{}()) {}
  uint64_t UniformUpTo(uint64_t max) override {
    std::lock_guard<std::mutex> lock(mu_);
    return std::uniform_int_distribution<uint64_t>(0, max)(gen_);
  }

 private:
  std::mutex mu_;
  std::mt19937_64 gen_;
};

// The ceiling of a backoff window (BackoffDelayMillis with a "random"
// source that always draws the maximum).
class MaxRandom final : public OutboxRandom {
 public:
  uint64_t UniformUpTo(uint64_t max) override { return max; }
};

Status CheckText(std::string_view what, std::string_view value, size_t max, bool may_be_empty) {
  if ((!may_be_empty && value.empty()) || value.size() > max || !IsCleanUtf8Text(value)) {
    return Status::InvalidArgument(std::string(what) + " must be one line of UTF-8 text of 1.." +
                                   std::to_string(max) + " bytes");
  }
  return Status::Ok();
}

std::string Truncate(std::string_view s, size_t max) {
  if (s.size() <= max) return std::string(s);
  // Cut at a UTF-8 boundary so the stored text stays valid.
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return std::string(s.substr(0, n));
}

}  // namespace

std::string_view ChannelName(Channel channel) {
  for (const auto& c : kChannels) {
    if (c.channel == channel) return c.name;
  }
  return "unknown";
}

Result<Channel> ParseChannel(std::string_view name) {
  for (const auto& c : kChannels) {
    if (c.name == name) return c.channel;
  }
  return Err(Status::DataError("unknown delivery channel \"" + std::string(name) + "\""));
}

std::string_view JobStateName(JobState state) {
  for (const auto& s : kStates) {
    if (s.state == state) return s.name;
  }
  return "unknown";
}

Result<JobState> ParseJobState(std::string_view name) {
  for (const auto& s : kStates) {
    if (s.name == name) return s.state;
  }
  return Err(Status::DataError("unknown job state \"" + std::string(name) + "\""));
}

int64_t BackoffDelayMillis(int attempts, int64_t base_ms, int64_t cap_ms, OutboxRandom& random) {
  if (attempts < 1) attempts = 1;
  if (base_ms < 0) base_ms = 0;
  if (cap_ms < 0) cap_ms = 0;
  int64_t ceiling = base_ms;
  // Doubling stops at the cap, so neither the shift nor the product overflows.
  for (int i = 1; i < attempts && ceiling < cap_ms; ++i) {
    ceiling = ceiling > cap_ms / 2 ? cap_ms : ceiling * 2;
  }
  ceiling = std::min(ceiling, cap_ms);
  return static_cast<int64_t>(random.UniformUpTo(static_cast<uint64_t>(ceiling)));
}

// The connection and the helpers that run statements on it. Every helper
// captures sqlite3_errmsg at the failing call.
struct Outbox::Db {
  SqlitePtr db;
  std::string path;

  Status Error(std::string_view what) const {
    return Status::IoError("outbox " + path + ": " + std::string(what) + ": " +
                           sqlite3_errmsg(db.get()));
  }

  Status Exec(const char* sql) {
    char* msg = nullptr;
    int rc = sqlite3_exec(db.get(), sql, nullptr, nullptr, &msg);
    std::string text = msg ? msg : "";
    sqlite3_free(msg);
    if (rc != SQLITE_OK) {
      return Status::IoError("outbox " + path + ": " + text + " (" + sqlite3_errstr(rc) + ")");
    }
    return Status::Ok();
  }

  Result<StmtPtr> Prepare(std::string_view sql) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db.get(), sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
    StmtPtr stmt(raw);
    if (rc != SQLITE_OK) return Err(Error("cannot prepare statement"));
    return stmt;
  }

  // A statement prepared once per connection and kept (the hot paths run
  // the same few statements many times a second). Use it through Cached
  // below, which resets it after use.
  Result<sqlite3_stmt*> CachedStmt(std::string_view sql) {
    auto it = cache.find(sql);
    if (it != cache.end()) return it->second.get();
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v3(db.get(), sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    StmtPtr stmt(raw);
    if (rc != SQLITE_OK) return Err(Error("cannot prepare statement"));
    sqlite3_stmt* s = stmt.get();
    cache.emplace(std::string(sql), std::move(stmt));
    return s;
  }

  std::map<std::string, StmtPtr, std::less<>> cache;
  uint64_t* vm_steps = nullptr;  // when set, cached statements add their VM steps here
};

namespace {

// A cached statement in use: reset (read lock released, bindings cleared)
// when it goes out of scope.
class Cached {
 public:
  template <typename D>
  static Result<Cached> Get(D& db, std::string_view sql) {
    auto s = db.CachedStmt(sql);
    if (!s) return Err(s.error());
    return Cached(*s, db.vm_steps);
  }
  Cached(Cached&& o) noexcept : s_(o.s_), steps_(o.steps_) { o.s_ = nullptr; }
  Cached& operator=(Cached&&) = delete;
  ~Cached() {
    if (s_ == nullptr) return;
    if (steps_ != nullptr) {
      *steps_ += static_cast<uint64_t>(sqlite3_stmt_status(s_, SQLITE_STMTSTATUS_VM_STEP, 1));
    }
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  sqlite3_stmt* get() const { return s_; }

 private:
  Cached(sqlite3_stmt* s, uint64_t* steps) : s_(s), steps_(steps) {}
  sqlite3_stmt* s_;
  uint64_t* steps_;
};

}  // namespace

namespace {

// Binds positional parameters: integers, text and blobs.
struct Blob {
  std::string_view data;
};

void BindOne(sqlite3_stmt* s, int i, int64_t v) { sqlite3_bind_int64(s, i, v); }
void BindOne(sqlite3_stmt* s, int i, int v) { sqlite3_bind_int64(s, i, v); }
void BindOne(sqlite3_stmt* s, int i, std::string_view v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
void BindOne(sqlite3_stmt* s, int i, const std::string& v) { BindOne(s, i, std::string_view(v)); }
void BindOne(sqlite3_stmt* s, int i, Blob v) {
  sqlite3_bind_blob(s, i, v.data.data(), static_cast<int>(v.data.size()), SQLITE_TRANSIENT);
}

template <typename... Args>
void Bind([[maybe_unused]] sqlite3_stmt* s, const Args&... args) {
  [[maybe_unused]] int i = 0;
  (BindOne(s, ++i, args), ...);
}

std::string ColumnText(sqlite3_stmt* s, int col) {
  const auto* p = sqlite3_column_blob(s, col);
  int n = sqlite3_column_bytes(s, col);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

}  // namespace

namespace {

// Runs one statement that returns no rows (or whose rows are ignored).
template <typename D, typename... Args>
Status Run(D& db, std::string_view sql, const Args&... args) {
  auto stmt = Cached::Get(db, sql);
  if (!stmt) return stmt.error();
  Bind(stmt->get(), args...);
  int rc;
  while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
  }
  if (rc != SQLITE_DONE) return db.Error("statement failed");
  return Status::Ok();
}

}  // namespace

// Propagates a failed Status from a function returning Status.
#define OUTBOX_RETURN_IF_ERROR(expr)          \
  do {                                        \
    ::sealpost::Status outbox_status__ = (expr); \
    if (!outbox_status__.ok()) return outbox_status__; \
  } while (0)

namespace {

// An IMMEDIATE transaction (takes the write lock at BEGIN, waiting up to the
// busy timeout): rolled back unless Commit() succeeded.
class Tx {
 public:
  template <typename D>
  static Result<Tx> Begin(D& db) {
    Status s = db.Exec("BEGIN IMMEDIATE");
    if (!s.ok()) return Err(s);
    return Tx(db.db.get());
  }
  Tx(Tx&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Tx& operator=(Tx&&) = delete;
  ~Tx() {
    if (db_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  template <typename D>
  Status Commit(D& db) {
    Status s = db.Exec("COMMIT");
    if (s.ok()) db_ = nullptr;
    return s;
  }

 private:
  explicit Tx(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

}  // namespace

Outbox::Outbox(const OutboxOptions& options, std::unique_ptr<Db> db)
    : options_(options), db_(std::move(db)) {
  if (options_.clock) {
    clock_ = options_.clock;
  } else {
    own_clock_ = std::make_unique<SystemClock>();
    clock_ = own_clock_.get();
  }
  if (options_.random) {
    random_ = options_.random;
  } else {
    own_random_ = std::make_unique<SystemRandom>();
    random_ = own_random_.get();
  }
}

Outbox::~Outbox() = default;

int64_t Outbox::Now() { return clock_->NowMillis(); }

Result<std::unique_ptr<Outbox>> Outbox::Open(const OutboxOptions& options) {
  if (options.path.empty()) return Err(Status::InvalidArgument("outbox: no file path given"));
  if (options.max_in_flight_per_recipient < 1 || options.lease_millis < 1 ||
      options.backoff_base_millis < 0 || options.backoff_cap_millis < options.backoff_base_millis ||
      options.max_attempts < 1) {
    return Err(Status::InvalidArgument(
        "outbox: options out of range (in-flight cap >= 1, lease > 0, 0 <= backoff base <= cap, "
        "max attempts >= 1)"));
  }
  auto db = std::make_unique<Db>();
  db->path = options.path;
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(options.path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  db->db.reset(raw);
  if (rc != SQLITE_OK) {
    return Err(Status::IoError("outbox " + options.path + ": cannot open: " +
                               (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc))));
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, 10'000);
  // WAL with synchronous=FULL: each commit is fsync'd in the WAL before
  // COMMIT returns (NORMAL would only sync at checkpoints and could lose the
  // last acknowledged enqueues on power loss).
  {
    auto stmt = db->Prepare("PRAGMA journal_mode=WAL");
    if (!stmt) return Err(stmt.error());
    if (sqlite3_step(stmt->get()) != SQLITE_ROW) return Err(db->Error("cannot set WAL journal"));
    std::string mode = ColumnText(stmt->get(), 0);
    if (mode != "wal") {
      return Err(Status::IoError("outbox " + options.path + ": journal mode is " + mode +
                                 ", WAL is required"));
    }
  }
  for (const char* pragma : {"PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"}) {
    Status s = db->Exec(pragma);
    if (!s.ok()) return Err(s);
  }
  {
    auto tx = Tx::Begin(*db);
    if (!tx) return Err(tx.error());
    Status s = db->Exec(kSchema);
    if (!s.ok()) {
      return Err(Status::DataError("outbox " + options.path + ": not an outbox file: " +
                                   s.message()));
    }
    auto get = db->Prepare("SELECT value FROM meta WHERE key='schema'");
    if (!get) return Err(get.error());
    int step = sqlite3_step(get->get());
    if (step == SQLITE_ROW) {
      std::string v = ColumnText(get->get(), 0);
      if (v == "1") {
        get->reset();
        Status m = db->Exec(kMigrateFrom1);
        if (!m.ok()) return Err(m.WithContext("outbox " + options.path + ": upgrade to version 2"));
        v = "2";
      }
      if (v == "2") {
        get->reset();
        Status m = db->Exec(kMigrateFrom2);
        if (!m.ok()) return Err(m.WithContext("outbox " + options.path + ": upgrade to version 3"));
        v = "3";
      }
      if (v != std::to_string(kSchemaVersion)) {
        return Err(Status::DataError("outbox " + options.path + ": schema version " + v +
                                     ", this program reads version " +
                                     std::to_string(kSchemaVersion)));
      }
    } else if (step == SQLITE_DONE) {
      auto put = db->Prepare("INSERT INTO meta(key, value) VALUES('schema', ?)");
      if (!put) return Err(put.error());
      Bind(put->get(), std::to_string(kSchemaVersion));
      if (sqlite3_step(put->get()) != SQLITE_DONE) return Err(db->Error("cannot write schema"));
    } else {
      return Err(db->Error("cannot read schema version"));
    }
    get.value().reset();
    Status c = tx->Commit(*db);
    if (!c.ok()) return Err(c);
  }
  return std::unique_ptr<Outbox>(new Outbox(options, std::move(db)));
}

namespace {

Status CheckNewJob(const JobKey& key, std::string_view payload) {
  OUTBOX_RETURN_IF_ERROR(CheckText("document id", key.document_id, kOutboxMaxIdBytes, false));
  OUTBOX_RETURN_IF_ERROR(CheckText("recipient", key.recipient, kOutboxMaxIdBytes, false));
  if (ChannelName(key.channel) == "unknown") {
    return Status::InvalidArgument("unknown delivery channel");
  }
  if (payload.size() > kOutboxMaxPayloadBytes) {
    return Status::InvalidArgument("outbox payload of " + std::to_string(payload.size()) +
                                   " bytes is over the limit of " +
                                   std::to_string(kOutboxMaxPayloadBytes));
  }
  return Status::Ok();
}

}  // namespace

Result<bool> Outbox::EnqueueLocked(const JobKey& key, std::string_view payload, int64_t now) {
  auto find = db_->Prepare(
      "SELECT payload FROM jobs WHERE document_id=? AND recipient=? AND channel=?");
  if (!find) return Err(find.error());
  Bind(find->get(), key.document_id, key.recipient, ChannelName(key.channel));
  int rc = sqlite3_step(find->get());
  if (rc == SQLITE_ROW) {
    if (ColumnText(find->get(), 0) != payload) {
      return Err(Status::FailedPrecondition(
          "outbox: a job for document " + key.document_id + " to " + key.recipient + " (" +
          std::string(ChannelName(key.channel)) + ") is already queued with another payload"));
    }
    return false;
  }
  if (rc != SQLITE_DONE) return Err(db_->Error("cannot look up job"));
  find->reset();
  SP_RETURN_IF_ERROR(Run(*db_,
             "INSERT INTO jobs(document_id, recipient, channel, payload, state, enqueued_at, "
             "next_attempt_at) VALUES(?, ?, ?, ?, 'queued', ?, ?)",
             key.document_id, key.recipient, ChannelName(key.channel), Blob{payload}, now, now));
  // Lease() finds work through the peers table: every recipient with a job
  // queued or leased has its row.
  SP_RETURN_IF_ERROR(Run(*db_, "INSERT OR IGNORE INTO peers(recipient) VALUES(?)", key.recipient));
  return true;
}

Result<bool> Outbox::Enqueue(const JobKey& key, std::string_view payload) {
  SP_RETURN_IF_ERROR(CheckNewJob(key, payload));
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = Now();
  auto tx = Tx::Begin(*db_);
  if (!tx) return Err(tx.error());
  auto created = EnqueueLocked(key, payload, now);
  if (!created) return Err(created.error());
  SP_RETURN_IF_ERROR(tx->Commit(*db_));
  return *created;
}

Result<size_t> Outbox::EnqueueBatch(const std::vector<NewJob>& jobs) {
  for (const NewJob& j : jobs) {
    Status s = CheckNewJob(j.key, j.payload);
    if (!s.ok()) {
      return Err(s.WithContext("job for " + j.key.recipient + " (" +
                               std::string(ChannelName(j.key.channel)) + ")"));
    }
  }
  PendingBatch mine;
  mine.jobs = &jobs;
  std::unique_lock<std::mutex> group(group_mu_);
  group_queue_.push_back(&mine);
  while (!mine.done) {
    if (group_leader_) {
      group_cv_.wait(group);
      continue;
    }
    // Lead: write every batch waiting now (ours included) in one commit.
    group_leader_ = true;
    std::vector<PendingBatch*> batches;
    batches.swap(group_queue_);
    group.unlock();
    {
      std::lock_guard<std::mutex> lock(mu_);
      WriteBatchesLocked(batches);
    }
    group.lock();
    for (PendingBatch* b : batches) b->done = true;
    group_leader_ = false;
    group_cv_.notify_all();
  }
  return std::move(mine.result);
}

void Outbox::WriteBatchesLocked(const std::vector<PendingBatch*>& batches) {
  const int64_t now = Now();
  auto fail_all = [&](const Status& s) {
    for (PendingBatch* b : batches) b->result = Err(s);
  };
  auto tx = Tx::Begin(*db_);
  if (!tx) return fail_all(tx.error());
  for (PendingBatch* b : batches) {
    // Each batch all or nothing: its own savepoint inside the transaction.
    if (Status s = db_->Exec("SAVEPOINT batch"); !s.ok()) {
      b->result = Err(s);
      continue;
    }
    size_t created = 0;
    Status failed;
    for (const NewJob& j : *b->jobs) {
      auto c = EnqueueLocked(j.key, j.payload, now);
      if (!c) {
        failed = c.error();
        break;
      }
      if (*c) ++created;
    }
    if (!failed.ok()) {
      b->result = Err(failed);
      Status r = db_->Exec("ROLLBACK TO batch");
      if (r.ok()) r = db_->Exec("RELEASE batch");
      if (!r.ok()) return fail_all(r);  // the transaction rolls back
      continue;
    }
    if (Status s = db_->Exec("RELEASE batch"); !s.ok()) return fail_all(s);
    b->result = created;
  }
  if (Status s = tx->Commit(*db_); !s.ok()) fail_all(s);
}

// REQUIRES: mu_ held, inside a transaction.
Status Outbox::ExpireLeases(int64_t now, int64_t cutoff, std::string_view why) {
  // Attempts of expired leases end as "lease-expired"; their jobs are due
  // again at once (the worker is presumed dead, not the recipient), unless
  // the attempts are used up.
  const std::string reason(why);
  OUTBOX_RETURN_IF_ERROR(Run(*db_,
             "UPDATE attempts SET result='lease-expired', finished_at=?, error=? "
             "WHERE id IN (SELECT lease_id FROM jobs WHERE state='delivering' AND "
             "lease_expires_at <= ?)",
             now, reason, cutoff));
  OUTBOX_RETURN_IF_ERROR(Run(*db_,
             "UPDATE jobs SET state='failed', finished_at=?, lease_id=NULL, "
             "lease_expires_at=NULL, last_error=? "
             "WHERE state='delivering' AND lease_expires_at <= ? AND attempts >= ?",
             now, reason, cutoff, options_.max_attempts));
  OUTBOX_RETURN_IF_ERROR(Run(*db_,
             "UPDATE jobs SET state='queued', next_attempt_at=?, lease_id=NULL, "
             "lease_expires_at=NULL, last_error=? WHERE state='delivering' AND "
             "lease_expires_at <= ?",
             now, reason, cutoff));
  return Status::Ok();
}

Status Outbox::ExpireLeases(int64_t now) {
  // Nothing to write in the usual case: one index probe says so.
  {
    auto any = Cached::Get(*db_, kSqlAnyExpired);
    if (!any) return any.error();
    Bind(any->get(), now);
    int rc = sqlite3_step(any->get());
    if (rc == SQLITE_DONE) return Status::Ok();
    if (rc != SQLITE_ROW) return db_->Error("cannot look for expired leases");
  }
  return ExpireLeases(now, now, "lease expired: the worker did not complete the attempt");
}

Result<size_t> Outbox::EndLeasesOfPreviousProcess(std::string_view why) {
  SP_RETURN_IF_ERROR(CheckText("reason", why, kOutboxMaxIdBytes, false));
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = Now();
  auto tx = Tx::Begin(*db_);
  if (!tx) return Err(tx.error());
  auto count = db_->Prepare("SELECT COUNT(*) FROM jobs WHERE state='delivering'");
  if (!count) return Err(count.error());
  int64_t n = 0;
  if (sqlite3_step(count->get()) == SQLITE_ROW) n = sqlite3_column_int64(count->get(), 0);
  count->reset();
  SP_RETURN_IF_ERROR(ExpireLeases(now, INT64_MAX, why));
  // Once per start: every recipient with work left has its peers row (a
  // file written by hand or by a bug would otherwise keep its jobs unseen).
  SP_RETURN_IF_ERROR(Run(*db_,
                         "INSERT OR IGNORE INTO peers(recipient) SELECT DISTINCT recipient FROM "
                         "jobs WHERE state IN ('queued','delivering')"));
  SP_RETURN_IF_ERROR(tx->Commit(*db_));
  return static_cast<size_t>(n);
}

// Per recipient that is not down: up to (cap - in flight) of its due jobs,
// by an index search each; then the earliest `max_jobs` of those. The work
// is bounded by recipients x cap, whatever the backlog.
Result<Outbox::LeasePlan> Outbox::PlanLease(size_t max_jobs, int64_t now) {
  LeasePlan plan;
  {
    auto any = Cached::Get(*db_, kSqlAnyExpired);
    if (!any) return Err(any.error());
    Bind(any->get(), now);
    int rc = sqlite3_step(any->get());
    if (rc == SQLITE_ROW) plan.expired = true;
    else if (rc != SQLITE_DONE) return Err(db_->Error("cannot look for expired leases"));
  }
  std::vector<std::pair<int64_t, int64_t>> due;  // (due time, id)
  auto peers = Cached::Get(*db_, kSqlPeers);
  if (!peers) return Err(peers.error());
  auto in_flight = Cached::Get(*db_, kSqlInFlight);
  if (!in_flight) return Err(in_flight.error());
  auto peer_due = Cached::Get(*db_, kSqlPeerDue);
  if (!peer_due) return Err(peer_due.error());
  auto has_queued = Cached::Get(*db_, kSqlPeerHasQueued);
  if (!has_queued) return Err(has_queued.error());
  int rc;
  while ((rc = sqlite3_step(peers->get())) == SQLITE_ROW) {
    const int failures = sqlite3_column_int(peers->get(), 1);
    const int64_t down_until = sqlite3_column_int64(peers->get(), 2);
    if (down_until > now) continue;  // down: its jobs are deferred
    std::string recipient = ColumnText(peers->get(), 0);
    // A recipient that was unreachable gets one probe at a time.
    const int64_t cap = failures > 0 ? 1 : options_.max_in_flight_per_recipient;
    sqlite3_reset(in_flight->get());
    Bind(in_flight->get(), recipient);
    if (sqlite3_step(in_flight->get()) != SQLITE_ROW) {
      return Err(db_->Error("cannot count leased jobs"));
    }
    const int64_t flying = sqlite3_column_int64(in_flight->get(), 0);
    sqlite3_reset(in_flight->get());
    if (flying >= cap) continue;
    sqlite3_reset(peer_due->get());
    Bind(peer_due->get(), recipient, now, cap - flying);
    size_t found = 0;
    int r;
    while ((r = sqlite3_step(peer_due->get())) == SQLITE_ROW) {
      due.emplace_back(sqlite3_column_int64(peer_due->get(), 1),
                       sqlite3_column_int64(peer_due->get(), 0));
      ++found;
    }
    sqlite3_reset(peer_due->get());
    if (r != SQLITE_DONE) return Err(db_->Error("cannot select due jobs"));
    if (found == 0 && flying == 0) {
      sqlite3_reset(has_queued->get());
      Bind(has_queued->get(), recipient);
      int q = sqlite3_step(has_queued->get());
      sqlite3_reset(has_queued->get());
      if (q == SQLITE_DONE) plan.drop_peers.push_back(std::move(recipient));
      else if (q != SQLITE_ROW) return Err(db_->Error("cannot look up queued jobs"));
    }
  }
  if (rc != SQLITE_DONE) return Err(db_->Error("cannot read peers"));
  std::sort(due.begin(), due.end());
  if (due.size() > max_jobs) due.resize(max_jobs);
  plan.ids.reserve(due.size());
  for (const auto& d : due) plan.ids.push_back(d.second);
  return plan;
}

Result<std::vector<Job>> Outbox::Lease(size_t max_jobs, std::string_view worker) {
  SP_RETURN_IF_ERROR(CheckText("worker name", worker, kOutboxMaxIdBytes, false));
  std::vector<Job> jobs;
  if (max_jobs == 0) return jobs;
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = Now();
  ++counters_.leases;
  uint64_t steps = 0;
  db_->vm_steps = &steps;
  struct StepsOff {
    Outbox* self;
    uint64_t* steps;
    ~StepsOff() {
      self->counters_.lease_rows_read += *steps;
      self->db_->vm_steps = nullptr;
    }
  } steps_off{this, &steps};
  // First without the write lock: a poll that finds nothing to do writes
  // nothing (no transaction, no WAL frame, no fsync).
  {
    auto plan = PlanLease(max_jobs, now);
    if (!plan) return Err(plan.error());
    if (plan->ids.empty() && !plan->expired && plan->drop_peers.empty()) return jobs;
  }
  auto tx = Tx::Begin(*db_);
  if (!tx) return Err(tx.error());
  ++counters_.lease_writes;
  SP_RETURN_IF_ERROR(ExpireLeases(now));
  // Again inside the transaction: another connection may have leased.
  auto plan = PlanLease(max_jobs, now);
  if (!plan) return Err(plan.error());
  for (const std::string& r : plan->drop_peers) {
    SP_RETURN_IF_ERROR(Run(*db_, kSqlDropPeer, r, now));
  }
  for (int64_t id : plan->ids) {
    auto get = Cached::Get(*db_, kSqlJobForLease);
    if (!get) return Err(get.error());
    Bind(get->get(), id);
    int rc = sqlite3_step(get->get());
    if (rc == SQLITE_DONE) continue;
    if (rc != SQLITE_ROW) return Err(db_->Error("cannot read a due job"));
    sqlite3_stmt* s = get->get();
    Job job;
    job.id = id;
    job.key.document_id = ColumnText(s, 0);
    job.key.recipient = ColumnText(s, 1);
    auto ch = ParseChannel(ColumnText(s, 2));
    if (!ch) return Err(ch.error().WithContext("outbox " + options_.path));
    job.key.channel = *ch;
    job.payload = ColumnText(s, 3);
    job.attempt = sqlite3_column_int(s, 4) + 1;
    jobs.push_back(std::move(job));
  }
  for (Job& job : jobs) {
    SP_RETURN_IF_ERROR(Run(*db_,
               "INSERT INTO attempts(job_id, number, worker, started_at, result) "
               "VALUES(?, ?, ?, ?, 'started')",
               job.id, job.attempt, worker, now));
    job.lease_id = sqlite3_last_insert_rowid(db_->db.get());
    job.lease_expires_at = now + options_.lease_millis;
    SP_RETURN_IF_ERROR(Run(*db_,
               "UPDATE jobs SET state='delivering', attempts=?, lease_id=?, lease_expires_at=? "
               "WHERE id=?",
               job.attempt, job.lease_id, job.lease_expires_at, job.id));
  }
  SP_RETURN_IF_ERROR(tx->Commit(*db_));
  return jobs;
}

namespace {

// Checks, inside the transaction, that `job`'s lease is still the one held.
template <typename D>
Status CheckLease(D& db, const Job& job) {
  auto stmt = db.Prepare("SELECT state, lease_id FROM jobs WHERE id=?");
  if (!stmt) return stmt.error();
  Bind(stmt->get(), job.id);
  int rc = sqlite3_step(stmt->get());
  if (rc == SQLITE_DONE) {
    return Status::NotFound("outbox: no job " + std::to_string(job.id));
  }
  if (rc != SQLITE_ROW) return db.Error("cannot read job");
  std::string state = ColumnText(stmt->get(), 0);
  int64_t lease = sqlite3_column_int64(stmt->get(), 1);
  if (state != "delivering" || lease != job.lease_id) {
    return Status::FailedPrecondition(
        "outbox: attempt " + std::to_string(job.attempt) + " of document " +
        job.key.document_id + " to " + job.key.recipient +
        " no longer holds its lease (expired and taken again, or already completed); job is " +
        state);
  }
  return Status::Ok();
}

}  // namespace

Status Outbox::Succeeded(const Job& job, std::string_view receipt_ref) {
  if (receipt_ref.size() > kOutboxMaxIdBytes) {
    return Status::InvalidArgument("outbox: receipt reference over " +
                                   std::to_string(kOutboxMaxIdBytes) + " bytes");
  }
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = Now();
  auto tx = Tx::Begin(*db_);
  if (!tx) return tx.error();
  // An expired lease is lost even if nobody has taken the job yet: the
  // expiry is what Lease() relies on, so a late completion must not race it.
  OUTBOX_RETURN_IF_ERROR(ExpireLeases(now));
  if (Status lease = CheckLease(*db_, job); !lease.ok()) {
    // Keep the expiry just recorded; the completion itself is refused.
    OUTBOX_RETURN_IF_ERROR(tx->Commit(*db_));
    return lease;
  }
  auto run = [&]() -> Status {
    OUTBOX_RETURN_IF_ERROR(Run(*db_, "UPDATE attempts SET result='delivered', finished_at=? WHERE id=?", now,
               job.lease_id));
    OUTBOX_RETURN_IF_ERROR(Run(*db_,
               "UPDATE jobs SET state='delivered', delivered_at=?, receipt_ref=?, last_error='', "
               "lease_id=NULL, lease_expires_at=NULL WHERE id=?",
               now, receipt_ref, job.id));
    return PeerAnsweredLocked(job.key.recipient);
  };
  OUTBOX_RETURN_IF_ERROR(run());
  return tx->Commit(*db_);
}

Status Outbox::Failed(const Job& job, std::string_view error, bool retryable) {
  std::lock_guard<std::mutex> lock(mu_);
  return FailLocked(job, error, retryable, false);
}

Status Outbox::Unreachable(const Job& job, std::string_view error) {
  std::lock_guard<std::mutex> lock(mu_);
  return FailLocked(job, error, true, true);
}

Status Outbox::PeerAnsweredLocked(const std::string& recipient) {
  return Run(*db_,
             "UPDATE peers SET failures=0, down_since=0, down_until=0, last_error='' "
             "WHERE recipient=? AND failures>0",
             recipient);
}

Status Outbox::FailLocked(const Job& job, std::string_view error, bool retryable,
                          bool unreachable) {
  std::string err = Truncate(error, kOutboxMaxErrorBytes);
  if (!IsValidUtf8(err)) err = "(error text is not UTF-8)";
  const int64_t now = Now();
  auto tx = Tx::Begin(*db_);
  if (!tx) return tx.error();
  OUTBOX_RETURN_IF_ERROR(ExpireLeases(now));
  if (Status lease = CheckLease(*db_, job); !lease.ok()) {
    // Keep the expiry just recorded; the completion itself is refused.
    OUTBOX_RETURN_IF_ERROR(tx->Commit(*db_));
    return lease;
  }
  auto run = [&]() -> Status {
    if (!retryable) {
      OUTBOX_RETURN_IF_ERROR(Run(*db_, "UPDATE attempts SET result='refused', finished_at=?, error=? WHERE id=?",
                 now, err, job.lease_id));
      OUTBOX_RETURN_IF_ERROR(Run(*db_,
                 "UPDATE jobs SET state='refused', finished_at=?, last_error=?, lease_id=NULL, "
                 "lease_expires_at=NULL WHERE id=?",
                 now, err, job.id));
      // A refusal is an answer: the recipient is up.
      OUTBOX_RETURN_IF_ERROR(PeerAnsweredLocked(job.key.recipient));
    } else if (job.attempt >= options_.max_attempts) {
      OUTBOX_RETURN_IF_ERROR(Run(*db_, "UPDATE attempts SET result='failed', finished_at=?, error=? WHERE id=?",
                 now, err, job.lease_id));
      OUTBOX_RETURN_IF_ERROR(Run(*db_,
                 "UPDATE jobs SET state='failed', finished_at=?, last_error=?, lease_id=NULL, "
                 "lease_expires_at=NULL WHERE id=?",
                 now, err, job.id));
    } else {
      int64_t delay = BackoffDelayMillis(job.attempt, options_.backoff_base_millis,
                                         options_.backoff_cap_millis, *random_);
      OUTBOX_RETURN_IF_ERROR(Run(*db_, "UPDATE attempts SET result='retry', finished_at=?, error=? WHERE id=?",
                 now, err, job.lease_id));
      OUTBOX_RETURN_IF_ERROR(Run(*db_,
                 "UPDATE jobs SET state='queued', next_attempt_at=?, last_error=?, lease_id=NULL, "
                 "lease_expires_at=NULL WHERE id=?",
                 now + delay, err, job.id));
    }
    if (unreachable) {
      // The recipient is down: none of its jobs is leased before down_until
      // (equal jitter: at least half the window, so probes stay apart),
      // unless it is already down (this attempt started before that was
      // known, and does not lengthen the wait).
      OUTBOX_RETURN_IF_ERROR(
          Run(*db_, "INSERT OR IGNORE INTO peers(recipient) VALUES(?)", job.key.recipient));
      auto get = Cached::Get(*db_, "SELECT failures, down_until FROM peers WHERE recipient=?");
      if (!get) return get.error();
      Bind(get->get(), job.key.recipient);
      if (sqlite3_step(get->get()) != SQLITE_ROW) return db_->Error("cannot read peer");
      const int failures = sqlite3_column_int(get->get(), 0);
      const int64_t down_until = sqlite3_column_int64(get->get(), 1);
      if (down_until <= now) {
        const int f = failures + 1;
        MaxRandom ceiling;
        const int64_t window = BackoffDelayMillis(f, options_.backoff_base_millis,
                                                  options_.backoff_cap_millis, ceiling);
        const int64_t wait =
            window / 2 + static_cast<int64_t>(random_->UniformUpTo(
                             static_cast<uint64_t>(window - window / 2)));
        OUTBOX_RETURN_IF_ERROR(Run(*db_,
                   "UPDATE peers SET failures=?, down_until=?, last_error=?, "
                   "down_since=CASE WHEN down_since=0 THEN ? ELSE down_since END "
                   "WHERE recipient=?",
                   f, now + wait, err, now, job.key.recipient));
      }
    }
    return Status::Ok();
  };
  OUTBOX_RETURN_IF_ERROR(run());
  return tx->Commit(*db_);
}

Status Outbox::MarkRead(const JobKey& key, int64_t read_at) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = Now();
  auto tx = Tx::Begin(*db_);
  if (!tx) return tx.error();
  auto find = db_->Prepare(
      "SELECT id, state, lease_id FROM jobs WHERE document_id=? AND recipient=? AND channel=?");
  if (!find) return find.error();
  Bind(find->get(), key.document_id, key.recipient, ChannelName(key.channel));
  int rc = sqlite3_step(find->get());
  if (rc == SQLITE_DONE) {
    return Status::NotFound("outbox: no job for document " + key.document_id + " to " +
                            key.recipient + " (" + std::string(ChannelName(key.channel)) + ")");
  }
  if (rc != SQLITE_ROW) return db_->Error("cannot look up job");
  const int64_t id = sqlite3_column_int64(find->get(), 0);
  const std::string state = ColumnText(find->get(), 1);
  const int64_t lease = sqlite3_column_int64(find->get(), 2);
  find->reset();
  auto run = [&]() -> Status {
    if (state == "delivering") {
      OUTBOX_RETURN_IF_ERROR(Run(*db_,
                 "UPDATE attempts SET result='superseded', finished_at=?, "
                 "error='a read notice arrived while the attempt ran' WHERE id=?",
                 now, lease));
    }
    OUTBOX_RETURN_IF_ERROR(Run(*db_,
               "UPDATE jobs SET state='read', read_at=CASE WHEN read_at=0 THEN ? ELSE read_at END, "
               "delivered_at=CASE WHEN delivered_at=0 THEN ? ELSE delivered_at END, "
               "finished_at=0, lease_id=NULL, lease_expires_at=NULL WHERE id=?",
               read_at, read_at, id));
    // The reader's appliance sent the notice: it is up.
    return PeerAnsweredLocked(key.recipient);
  };
  OUTBOX_RETURN_IF_ERROR(run());
  return tx->Commit(*db_);
}

namespace {

constexpr char kStateColumns[] =
    "SELECT document_id, recipient, channel, state, attempts, enqueued_at, next_attempt_at, "
    "delivered_at, read_at, finished_at, last_error, receipt_ref FROM jobs ";

Result<DeliveryState> ReadState(sqlite3_stmt* s) {
  DeliveryState d;
  d.key.document_id = ColumnText(s, 0);
  d.key.recipient = ColumnText(s, 1);
  auto ch = ParseChannel(ColumnText(s, 2));
  if (!ch) return Err(ch.error());
  d.key.channel = *ch;
  auto st = ParseJobState(ColumnText(s, 3));
  if (!st) return Err(st.error());
  d.state = *st;
  d.attempts = sqlite3_column_int(s, 4);
  d.enqueued_at = sqlite3_column_int64(s, 5);
  d.next_attempt_at = sqlite3_column_int64(s, 6);
  d.delivered_at = sqlite3_column_int64(s, 7);
  d.read_at = sqlite3_column_int64(s, 8);
  d.finished_at = sqlite3_column_int64(s, 9);
  d.last_error = ColumnText(s, 10);
  d.receipt_ref = ColumnText(s, 11);
  return d;
}

constexpr char kAttemptColumns[] =
    "SELECT a.id, a.job_id, j.document_id, j.recipient, j.channel, a.number, a.worker, "
    "a.started_at, a.finished_at, a.result, a.error FROM attempts a JOIN jobs j ON j.id=a.job_id ";

Result<Attempt> ReadAttempt(sqlite3_stmt* s) {
  Attempt a;
  a.id = sqlite3_column_int64(s, 0);
  a.job_id = sqlite3_column_int64(s, 1);
  a.key.document_id = ColumnText(s, 2);
  a.key.recipient = ColumnText(s, 3);
  auto ch = ParseChannel(ColumnText(s, 4));
  if (!ch) return Err(ch.error());
  a.key.channel = *ch;
  a.number = sqlite3_column_int(s, 5);
  a.worker = ColumnText(s, 6);
  a.started_at = sqlite3_column_int64(s, 7);
  a.finished_at = sqlite3_column_int64(s, 8);
  a.result = ColumnText(s, 9);
  a.error = ColumnText(s, 10);
  return a;
}

template <typename T, typename D, typename ReadFn, typename... Args>
Result<std::vector<T>> Collect(D& db, const std::string& sql, ReadFn read, const Args&... args) {
  auto stmt = db.Prepare(sql);
  if (!stmt) return Err(stmt.error());
  Bind(stmt->get(), args...);
  std::vector<T> out;
  int rc;
  while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
    auto v = read(stmt->get());
    if (!v) return Err(v.error().WithContext("outbox " + db.path));
    out.push_back(std::move(*v));
  }
  if (rc != SQLITE_DONE) return Err(db.Error("query failed"));
  return out;
}

}  // namespace

Result<std::vector<DeliveryState>> Outbox::States(std::string_view document_id) {
  std::lock_guard<std::mutex> lock(mu_);
  return Collect<DeliveryState>(
      *db_, std::string(kStateColumns) + "WHERE document_id=? ORDER BY recipient, channel",
      ReadState, document_id);
}

Result<DeliveryState> Outbox::State(const JobKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto v = Collect<DeliveryState>(
      *db_, std::string(kStateColumns) + "WHERE document_id=? AND recipient=? AND channel=?",
      ReadState, key.document_id, key.recipient, ChannelName(key.channel));
  if (!v) return Err(v.error());
  if (v->empty()) {
    return Err(Status::NotFound("outbox: no job for document " + key.document_id + " to " +
                                key.recipient + " (" + std::string(ChannelName(key.channel)) +
                                ")"));
  }
  return std::move(v->front());
}

Result<std::vector<Attempt>> Outbox::Attempts(const JobKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  return Collect<Attempt>(*db_,
                          std::string(kAttemptColumns) +
                              "WHERE j.document_id=? AND j.recipient=? AND j.channel=? "
                              "ORDER BY a.id",
                          ReadAttempt, key.document_id, key.recipient, ChannelName(key.channel));
}

Result<std::vector<Attempt>> Outbox::FinishedAttemptsAfter(int64_t after_id, size_t limit) {
  std::lock_guard<std::mutex> lock(mu_);
  return Collect<Attempt>(
      *db_,
      std::string(kAttemptColumns) +
          "WHERE a.id > ?1 AND a.finished_at > 0 AND a.id < COALESCE((SELECT MIN(s.id) FROM "
          "attempts s WHERE s.finished_at=0 AND s.id > ?1), 9223372036854775807) "
          "ORDER BY a.id LIMIT ?2",
      ReadAttempt, after_id, static_cast<int64_t>(std::min<size_t>(limit, INT32_MAX)));
}

Result<OutboxMetrics> Outbox::Metrics() {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = Now();
  // One read transaction, so the figures are of one moment. Nothing here
  // reads the history of delivered jobs: the counts per state come from
  // job_counts (kept by triggers); the rest are index searches over the
  // jobs still queued or leased (see MetricsQueryPlans).
  if (Status s = db_->Exec("BEGIN"); !s.ok()) return Err(s);
  struct EndRead {
    Db* db;
    ~EndRead() { sqlite3_exec(db->db.get(), "COMMIT", nullptr, nullptr, nullptr); }
  } end_read{db_.get()};
  OutboxMetrics m;
  {
    auto counts = Cached::Get(*db_, kSqlMetricsCounts);
    if (!counts) return Err(counts.error());
    int rc;
    while ((rc = sqlite3_step(counts->get())) == SQLITE_ROW) {
      const std::string state = ColumnText(counts->get(), 0);
      const int64_t n = sqlite3_column_int64(counts->get(), 1);
      if (state == "queued") m.queued = n;
      else if (state == "delivering") m.delivering = n;
      else if (state == "delivered" || state == "read") m.delivered += n;
      else if (state == "refused") m.refused = n;
      else if (state == "failed") m.failed = n;
    }
    if (rc != SQLITE_DONE) return Err(db_->Error("cannot read job counts"));
  }
  // (count, oldest time) of one index range.
  auto range = [&](const char* sql) -> Result<std::pair<int64_t, int64_t>> {
    auto stmt = Cached::Get(*db_, sql);
    if (!stmt) return Err(stmt.error());
    Bind(stmt->get(), now);
    if (sqlite3_step(stmt->get()) != SQLITE_ROW) return Err(db_->Error("cannot compute metrics"));
    const int64_t n = sqlite3_column_int64(stmt->get(), 0);
    const int64_t oldest =
        sqlite3_column_type(stmt->get(), 1) == SQLITE_NULL ? 0 : sqlite3_column_int64(stmt->get(), 1);
    return std::make_pair(n, oldest);
  };
  auto due = range(kSqlMetricsDue);
  if (!due) return Err(due.error());
  auto expired = range(kSqlMetricsExpired);
  if (!expired) return Err(expired.error());
  m.due = due->first + expired->first;
  m.delivering -= expired->first;
  int64_t oldest = 0;
  if (due->first > 0) oldest = due->second;
  if (expired->first > 0 && (oldest == 0 || expired->second < oldest)) oldest = expired->second;
  if (m.due > 0) m.oldest_due_age_millis = std::max<int64_t>(0, now - oldest);
  {
    auto down = Cached::Get(*db_, kSqlMetricsDown);
    if (!down) return Err(down.error());
    Bind(down->get(), now);
    if (sqlite3_step(down->get()) != SQLITE_ROW) return Err(db_->Error("cannot count peers down"));
    m.peers_down = sqlite3_column_int64(down->get(), 0);
    m.deferred = sqlite3_column_int64(down->get(), 1);
  }
  return m;
}

Result<size_t> Outbox::PruneDelivered(int64_t delivered_before, int64_t archived_attempts_upto,
                                      size_t max_jobs) {
  if (max_jobs == 0) return size_t{0};
  std::lock_guard<std::mutex> lock(mu_);
  auto tx = Tx::Begin(*db_);
  if (!tx) return Err(tx.error());
  std::vector<int64_t> ids;
  {
    auto sel = Cached::Get(*db_, kSqlPruneSelect);
    if (!sel) return Err(sel.error());
    Bind(sel->get(), delivered_before, archived_attempts_upto,
         static_cast<int64_t>(std::min<size_t>(max_jobs, INT32_MAX)));
    int rc;
    while ((rc = sqlite3_step(sel->get())) == SQLITE_ROW) {
      ids.push_back(sqlite3_column_int64(sel->get(), 0));
    }
    if (rc != SQLITE_DONE) return Err(db_->Error("cannot select jobs to prune"));
  }
  if (ids.empty()) return size_t{0};
  for (int64_t id : ids) {
    SP_RETURN_IF_ERROR(Run(*db_, kSqlPruneAttempts, id));
    SP_RETURN_IF_ERROR(Run(*db_, kSqlPruneJob, id));
  }
  SP_RETURN_IF_ERROR(Run(*db_,
                         "INSERT INTO meta(key, value) VALUES('pruned_before', ?1) "
                         "ON CONFLICT(key) DO UPDATE SET value=?1 "
                         "WHERE CAST(value AS INTEGER) < CAST(?1 AS INTEGER)",
                         std::to_string(delivered_before)));
  SP_RETURN_IF_ERROR(tx->Commit(*db_));
  return ids.size();
}

Result<int64_t> Outbox::PrunedBefore() {
  std::lock_guard<std::mutex> lock(mu_);
  auto v = Collect<int64_t>(
      *db_, "SELECT CAST(value AS INTEGER) FROM meta WHERE key='pruned_before'",
      [](sqlite3_stmt* s) -> Result<int64_t> { return sqlite3_column_int64(s, 0); });
  if (!v) return Err(v.error());
  return v->empty() ? int64_t{0} : v->front();
}

Result<std::vector<PeerState>> Outbox::Peers() {
  std::lock_guard<std::mutex> lock(mu_);
  return Collect<PeerState>(
      *db_,
      "SELECT recipient, failures, down_since, down_until, last_error, (SELECT COUNT(*) FROM jobs "
      "j WHERE j.recipient=p.recipient AND j.state='queued') FROM peers p WHERE failures > 0 "
      "ORDER BY recipient",
      [](sqlite3_stmt* s) -> Result<PeerState> {
        PeerState p;
        p.recipient = ColumnText(s, 0);
        p.failures = sqlite3_column_int(s, 1);
        p.down_since = sqlite3_column_int64(s, 2);
        p.down_until = sqlite3_column_int64(s, 3);
        p.last_error = ColumnText(s, 4);
        p.deferred = sqlite3_column_int64(s, 5);
        return p;
      });
}

Result<std::vector<std::string>> Outbox::PollQueryPlans() {
  return Explain({kSqlAnyExpired, kSqlPeers, kSqlInFlight, kSqlPeerDue, kSqlPeerHasQueued,
                        kSqlJobForLease, kSqlDropPeer});
}

Result<std::vector<std::string>> Outbox::MetricsQueryPlans() {
  return Explain({kSqlMetricsCounts, kSqlMetricsDue, kSqlMetricsExpired, kSqlMetricsDown,
                        kSqlPruneSelect, kSqlPruneAttempts, kSqlPruneJob});
}

Result<std::vector<std::string>> Outbox::Explain(std::initializer_list<const char*> sqls) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> plans;
  for (const char* sql : sqls) {
    auto stmt = db_->Prepare(std::string("EXPLAIN QUERY PLAN ") + sql);
    if (!stmt) return Err(stmt.error());
    std::string plan;
    int rc;
    while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
      if (!plan.empty()) plan += "; ";
      plan += ColumnText(stmt->get(), 3);
    }
    if (rc != SQLITE_DONE) return Err(db_->Error("cannot explain a query"));
    plans.push_back(std::string(sql) + " => " + plan);
  }
  return plans;
}

OutboxCounters Outbox::Counters() {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

Status Outbox::CheckConsistency() {
  std::lock_guard<std::mutex> lock(mu_);
  {
    auto stmt = db_->Prepare("PRAGMA integrity_check");
    if (!stmt) return stmt.error();
    if (sqlite3_step(stmt->get()) != SQLITE_ROW) return db_->Error("integrity check failed");
    std::string r = ColumnText(stmt->get(), 0);
    if (r != "ok") return Status::DataError("outbox " + options_.path + ": " + r);
  }
  // Each rule selects the violating job ids; the first one found is reported.
  constexpr struct {
    const char* rule;
    const char* sql;
  } kRules[] = {
      {"a leased job must hold a lease whose attempt is running",
       "SELECT j.id FROM jobs j LEFT JOIN attempts a ON a.id=j.lease_id WHERE "
       "j.state='delivering' AND (j.lease_id IS NULL OR j.lease_expires_at IS NULL OR "
       "a.id IS NULL OR a.result!='started' OR a.job_id!=j.id OR a.number!=j.attempts)"},
      {"a job not leased must not hold a lease",
       "SELECT id FROM jobs WHERE state!='delivering' AND (lease_id IS NOT NULL OR "
       "lease_expires_at IS NOT NULL)"},
      {"only the leased attempt may be running",
       "SELECT a.job_id FROM attempts a JOIN jobs j ON j.id=a.job_id WHERE a.result='started' "
       "AND (j.state!='delivering' OR j.lease_id!=a.id)"},
      {"attempt numbers must be 1..attempts",
       "SELECT j.id FROM jobs j LEFT JOIN attempts a ON a.job_id=j.id GROUP BY j.id "
       "HAVING COUNT(a.id)!=j.attempts OR COALESCE(MAX(a.number),0)!=j.attempts"},
      {"a delivered or read job must have its delivery time",
       "SELECT id FROM jobs WHERE state IN ('delivered','read') AND delivered_at=0"},
      {"a read job must have its read time", "SELECT id FROM jobs WHERE state='read' AND read_at=0"},
      {"a recipient with a job queued or leased must have its peers row",
       "SELECT j.id FROM jobs j LEFT JOIN peers p ON p.recipient=j.recipient WHERE "
       "j.state IN ('queued','delivering') AND p.recipient IS NULL"},
      {"a refused or failed job must have its final time",
       "SELECT id FROM jobs WHERE state IN ('refused','failed') AND finished_at=0"},
  };
  {
    // job_counts (kept by triggers) against a full count.
    auto stmt = db_->Prepare(
        "SELECT c.state, c.n, (SELECT COUNT(*) FROM jobs j WHERE j.state=c.state) AS real "
        "FROM job_counts c WHERE c.n != real");
    if (!stmt) return stmt.error();
    int rc = sqlite3_step(stmt->get());
    if (rc == SQLITE_ROW) {
      return Status::DataError("outbox " + options_.path + ": job_counts says " +
                               std::to_string(sqlite3_column_int64(stmt->get(), 1)) + " " +
                               ColumnText(stmt->get(), 0) + " jobs, there are " +
                               std::to_string(sqlite3_column_int64(stmt->get(), 2)));
    }
    if (rc != SQLITE_DONE) return db_->Error("consistency check failed");
  }
  for (const auto& r : kRules) {
    auto stmt = db_->Prepare(r.sql);
    if (!stmt) return stmt.error();
    int rc = sqlite3_step(stmt->get());
    if (rc == SQLITE_ROW) {
      return Status::DataError("outbox " + options_.path + ": job " +
                               std::to_string(sqlite3_column_int64(stmt->get(), 0)) + ": " +
                               r.rule);
    }
    if (rc != SQLITE_DONE) return db_->Error("consistency check failed");
  }
  return Status::Ok();
}

}  // namespace sealpost::storage
