#include "storage/index.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

namespace sealpost::storage {
namespace {

using StmtPtr = std::unique_ptr<sqlite3_stmt, CDeleter<sqlite3_finalize>>;

constexpr const char* kSchemaVersion = "1";

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries(
  seq INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  type TEXT NOT NULL,
  subject TEXT NOT NULL,
  reference TEXT NOT NULL,
  issuer TEXT NOT NULL,
  recipients TEXT NOT NULL,
  issued_at TEXT NOT NULL,
  time TEXT NOT NULL,
  date TEXT NOT NULL,
  content_name TEXT NOT NULL,
  refers_to INTEGER NOT NULL,
  commit_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS entries_by_id ON entries(id);
CREATE INDEX IF NOT EXISTS entries_by_kind ON entries(kind, seq);
CREATE INDEX IF NOT EXISTS entries_by_type ON entries(type, seq);
CREATE INDEX IF NOT EXISTS entries_by_date ON entries(date, seq);
CREATE TABLE IF NOT EXISTS counterparts(
  party TEXT NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY(party, seq)) WITHOUT ROWID;
)sql";

constexpr const char* kColumns =
    "seq, kind, id, type, subject, reference, issuer, recipients, issued_at, time, date, "
    "content_name, refers_to, commit_id";

std::vector<std::string> SplitComma(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    std::string part = s.substr(start, end - start);
    while (!part.empty() && part.front() == ' ') part.erase(part.begin());
    while (!part.empty() && part.back() == ' ') part.pop_back();
    if (!part.empty()) out.push_back(part);
    start = end + 1;
  }
  return out;
}

std::string Column(sqlite3_stmt* st, int i) {
  const unsigned char* t = sqlite3_column_text(st, i);
  return t ? std::string(reinterpret_cast<const char*>(t),
                         static_cast<size_t>(sqlite3_column_bytes(st, i)))
           : std::string();
}

IndexedEntry RowToEntry(sqlite3_stmt* st) {
  IndexedEntry e;
  e.seq = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
  e.kind = Column(st, 1);
  e.id = Column(st, 2);
  e.type = Column(st, 3);
  e.subject = Column(st, 4);
  e.reference = Column(st, 5);
  e.issuer = Column(st, 6);
  e.recipients = Column(st, 7);
  e.issued_at = Column(st, 8);
  e.time = Column(st, 9);
  e.date = Column(st, 10);
  e.content_name = Column(st, 11);
  e.refers_to = static_cast<uint64_t>(sqlite3_column_int64(st, 12));
  e.commit = Column(st, 13);
  return e;
}

}  // namespace

std::string Index::PathFor(const std::string& archive_dir) {
  return archive_dir + "/sealpost-index.sqlite";
}

Status Index::Remove(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::string p = path + suffix;
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) {
      return Status::IoError(p + ": cannot remove: " + std::strerror(errno));
    }
  }
  return Status::Ok();
}

Result<std::unique_ptr<Index>> Index::Open(const std::string& path) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  DbPtr db(raw);  // sqlite3_open_v2 hands out a handle even on failure
  if (rc != SQLITE_OK) {
    return Err(Status::IoError(path + ": cannot open the index: " +
                               (db ? sqlite3_errmsg(db.get()) : sqlite3_errstr(rc))));
  }
  sqlite3_busy_timeout(db.get(), 10000);
  std::unique_ptr<Index> index(new Index(std::move(db), path));
  // journal_mode is the first read of the file: a file that is not a
  // database fails here.
  Status s = index->Exec("PRAGMA journal_mode=WAL");
  if (!s.ok()) return Err(Status::DataError(path + ": not a sealpost index: " + s.message()));
  SP_RETURN_IF_ERROR(index->Exec("PRAGMA synchronous=NORMAL"));
  s = index->Exec(kSchema);
  if (!s.ok()) return Err(Status::DataError(path + ": not a sealpost index: " + s.message()));
  auto version = index->Meta("schema");
  if (!version) return Err(version.error());
  if (version->empty()) {
    SP_RETURN_IF_ERROR(index->SetMeta("schema", kSchemaVersion));
  } else if (*version != kSchemaVersion) {
    return Err(Status::DataError(path + ": index schema " + *version + ", expected " +
                                 kSchemaVersion));
  }
  return index;
}

Status Index::Exec(const char* sql) {
  char* msg = nullptr;
  int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, &msg);
  if (rc != SQLITE_OK) {
    std::string text = msg ? msg : sqlite3_errstr(rc);
    sqlite3_free(msg);
    Code code = (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) ? Code::kUnavailable : Code::kIoError;
    if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT) code = Code::kDataError;
    return Status(code, path_ + ": " + text);
  }
  return Status::Ok();
}

Status Index::SetMeta(const std::string& key, const std::string& value) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_.get(), "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", -1,
                         &raw, nullptr) != SQLITE_OK) {
    return Status::IoError(path_ + ": " + sqlite3_errmsg(db_.get()));
  }
  StmtPtr st(raw);
  sqlite3_bind_text(st.get(), 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
  sqlite3_bind_text(st.get(), 2, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  if (sqlite3_step(st.get()) != SQLITE_DONE) {
    return Status::IoError(path_ + ": " + sqlite3_errmsg(db_.get()));
  }
  return Status::Ok();
}

Result<std::string> Index::Meta(const std::string& key) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_.get(), "SELECT value FROM meta WHERE key = ?", -1, &raw, nullptr) !=
      SQLITE_OK) {
    return Err(Status::DataError(path_ + ": " + sqlite3_errmsg(db_.get())));
  }
  StmtPtr st(raw);
  sqlite3_bind_text(st.get(), 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
  int rc = sqlite3_step(st.get());
  if (rc == SQLITE_ROW) return Column(st.get(), 0);
  if (rc == SQLITE_DONE) return std::string();
  return Err(Status::DataError(path_ + ": " + sqlite3_errmsg(db_.get())));
}

Result<std::string> Index::head() { return Meta("head"); }

Result<uint64_t> Index::size() {
  auto v = Meta("size");
  if (!v) return Err(v.error());
  if (v->empty()) return uint64_t{0};
  return static_cast<uint64_t>(std::strtoull(v->c_str(), nullptr, 10));
}

Result<IndexUpdate> Index::Update(ArchiveReader& reader) {
  SP_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  // Decided inside the transaction: another process may have updated the
  // index while we waited for the lock.
  auto decide = [&]() -> Result<IndexUpdate> {
    auto head = Meta("head");
    if (!head) return Err(head.error());
    auto origin = Meta("origin");
    if (!origin) return Err(origin.error());
    auto count = size();
    if (!count) return Err(count.error());
    if (*head == reader.head() && *origin == reader.origin() && *count == reader.size()) {
      return IndexUpdate{false, 0, *count};
    }
    bool rebuild = head->empty() || *origin != reader.origin() || *count > reader.size() ||
                   !reader.ContainsCommit(*head);
    return AddFrom(reader, rebuild ? 0 : *count, rebuild);
  };
  auto result = decide();
  if (!result) {
    (void)Exec("ROLLBACK");
    return result;
  }
  if (Status s = Exec("COMMIT"); !s.ok()) {
    (void)Exec("ROLLBACK");
    return Err(s);
  }
  return result;
}

Result<IndexUpdate> Index::Rebuild(ArchiveReader& reader) {
  SP_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  auto result = AddFrom(reader, 0, true);
  if (!result) {
    (void)Exec("ROLLBACK");
    return result;
  }
  if (Status s = Exec("COMMIT"); !s.ok()) {
    (void)Exec("ROLLBACK");
    return Err(s);
  }
  return result;
}

// REQUIRES: inside a transaction.
Result<IndexUpdate> Index::AddFrom(ArchiveReader& reader, uint64_t from_size, bool rebuild) {
  if (rebuild) {
    SP_RETURN_IF_ERROR(Exec("DELETE FROM entries; DELETE FROM counterparts;"));
    from_size = 0;
  }
  auto commits = reader.CommitsAfter(from_size);
  if (!commits) return Err(commits.error());
  sqlite3_stmt* raw = nullptr;
  std::string sql = std::string("INSERT INTO entries(") + kColumns +
                    ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
  if (sqlite3_prepare_v2(db_.get(), sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    return Err(Status::IoError(path_ + ": " + sqlite3_errmsg(db_.get())));
  }
  StmtPtr insert(raw);
  if (sqlite3_prepare_v2(db_.get(), "INSERT OR IGNORE INTO counterparts(party, seq) VALUES(?, ?)",
                         -1, &raw, nullptr) != SQLITE_OK) {
    return Err(Status::IoError(path_ + ": " + sqlite3_errmsg(db_.get())));
  }
  StmtPtr party(raw);
  IndexUpdate update;
  update.rebuilt = rebuild;
  uint64_t seq = from_size;
  for (const CommitSize& c : *commits) {
    for (++seq; seq <= c.size; ++seq) {
      auto m = reader.ReadManifest(seq);
      if (!m) return Err(m.error());
      IndexedEntry e;
      e.seq = seq;
      e.kind = std::string(EntryKindName(m->kind));
      e.id = m->Field("id");
      e.type = m->Field("type");
      e.subject = m->Field("subject");
      e.reference = m->Field("reference");
      e.issuer = m->Field("issuer");
      e.recipients = m->Field("recipients");
      e.issued_at = m->Field("issued_at");
      e.time = m->time;
      e.date = e.issued_at.empty() ? e.time : e.issued_at;
      e.content_name = m->Field("content_name");
      e.refers_to = m->refers_to;
      e.commit = c.commit;
      const std::string* text[] = {&e.kind,       &e.id,        &e.type, &e.subject,
                                   &e.reference,  &e.issuer,    &e.recipients,
                                   &e.issued_at,  &e.time,      &e.date, &e.content_name};
      sqlite3_reset(insert.get());
      sqlite3_bind_int64(insert.get(), 1, static_cast<sqlite3_int64>(seq));
      int col = 2;
      for (const std::string* t : text) {
        sqlite3_bind_text(insert.get(), col++, t->data(), static_cast<int>(t->size()),
                          SQLITE_TRANSIENT);
      }
      sqlite3_bind_int64(insert.get(), col++, static_cast<sqlite3_int64>(e.refers_to));
      sqlite3_bind_text(insert.get(), col, e.commit.data(), static_cast<int>(e.commit.size()),
                        SQLITE_TRANSIENT);
      if (sqlite3_step(insert.get()) != SQLITE_DONE) {
        return Err(Status::IoError(path_ + ": entry #" + std::to_string(seq) + ": " +
                                   sqlite3_errmsg(db_.get())));
      }
      std::set<std::string> parties;
      if (!e.issuer.empty()) parties.insert(e.issuer);
      for (std::string& r : SplitComma(e.recipients)) parties.insert(std::move(r));
      for (const std::string& p : parties) {
        sqlite3_reset(party.get());
        sqlite3_bind_text(party.get(), 1, p.data(), static_cast<int>(p.size()), SQLITE_TRANSIENT);
        sqlite3_bind_int64(party.get(), 2, static_cast<sqlite3_int64>(seq));
        if (sqlite3_step(party.get()) != SQLITE_DONE) {
          return Err(Status::IoError(path_ + ": " + sqlite3_errmsg(db_.get())));
        }
      }
      ++update.added;
    }
    seq = c.size;
  }
  if (seq != reader.size()) {
    return Err(Status::DataError(reader.dir() + ": the history ends at " + std::to_string(seq) +
                                 " entries, the head checkpoint says " +
                                 std::to_string(reader.size())));
  }
  SP_RETURN_IF_ERROR(SetMeta("head", reader.head()));
  SP_RETURN_IF_ERROR(SetMeta("origin", reader.origin()));
  SP_RETURN_IF_ERROR(SetMeta("size", std::to_string(reader.size())));
  update.size = reader.size();
  return update;
}

Result<std::vector<IndexedEntry>> Index::Query(const IndexQuery& q) {
  std::string sql = std::string("SELECT ") + kColumns + " FROM entries WHERE 1";
  std::vector<const std::string*> binds;
  auto add = [&](const std::optional<std::string>& v, const char* clause) {
    if (!v) return;
    sql += clause;
    binds.push_back(&*v);
  };
  add(q.kind, " AND kind = ?");
  add(q.type, " AND type = ?");
  add(q.id, " AND id = ?");
  add(q.since, " AND date >= ?");
  add(q.until, " AND date <= ?");
  add(q.counterpart, " AND seq IN (SELECT seq FROM counterparts WHERE party = ?)");
  if (!q.kinds.empty()) {
    sql += " AND kind IN (";
    for (size_t i = 0; i < q.kinds.size(); ++i) {
      sql += i ? ",?" : "?";
      binds.push_back(&q.kinds[i]);
    }
    sql += ")";
  }
  // Integers are formatted into the statement (they are not text).
  if (q.refers_to) sql += " AND refers_to = " + std::to_string(*q.refers_to);
  if (q.before_seq) sql += " AND seq < " + std::to_string(*q.before_seq);
  sql += q.newest_first ? " ORDER BY seq DESC" : " ORDER BY seq";
  if (q.limit > 0) sql += " LIMIT " + std::to_string(q.limit);
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_.get(), sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    return Err(Status::DataError(path_ + ": " + sqlite3_errmsg(db_.get())));
  }
  StmtPtr st(raw);
  for (size_t i = 0; i < binds.size(); ++i) {
    sqlite3_bind_text(st.get(), static_cast<int>(i + 1), binds[i]->data(),
                      static_cast<int>(binds[i]->size()), SQLITE_TRANSIENT);
  }
  std::vector<IndexedEntry> out;
  for (;;) {
    int rc = sqlite3_step(st.get());
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return Err(Status::DataError(path_ + ": " + sqlite3_errmsg(db_.get())));
    out.push_back(RowToEntry(st.get()));
  }
  return out;
}

Result<std::optional<IndexedEntry>> Index::FindSeq(uint64_t seq) {
  std::string sql = std::string("SELECT ") + kColumns + " FROM entries WHERE seq = ?";
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_.get(), sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    return Err(Status::DataError(path_ + ": " + sqlite3_errmsg(db_.get())));
  }
  StmtPtr st(raw);
  sqlite3_bind_int64(st.get(), 1, static_cast<sqlite3_int64>(seq));
  int rc = sqlite3_step(st.get());
  if (rc == SQLITE_ROW) return std::optional<IndexedEntry>(RowToEntry(st.get()));
  if (rc == SQLITE_DONE) return std::optional<IndexedEntry>();
  return Err(Status::DataError(path_ + ": " + sqlite3_errmsg(db_.get())));
}

}  // namespace sealpost::storage
