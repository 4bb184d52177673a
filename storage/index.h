// The query index of an archive: a SQLite database beside the repository
// (<dir>/sealpost-index.sqlite, WAL mode) with one row per entry, searchable
// by id, kind, type, counterpart (issuer or any recipient) and date. It is
// a cache, never the record of truth: it records the head commit and size
// it reflects, and is brought up to date (or rebuilt) from the repository
// alone (storage/reader.h).
//
// Thread-safety: one Index per thread. Several processes may use the same
// file (SQLite locking; writers wait up to 10 s for each other).
#ifndef SEALPOST_STORAGE_INDEX_H_
#define SEALPOST_STORAGE_INDEX_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sqlite3.h>

#include "base/handle.h"
#include "base/status.h"
#include "storage/reader.h"

namespace sealpost::storage {

// One indexed entry (values from its manifest and the commit that added it).
struct IndexedEntry {
  uint64_t seq = 0;
  std::string kind;        // "document-sent", ...
  std::string id;          // field id ("" when absent)
  std::string type;        // field type
  std::string subject;     // field subject
  std::string reference;   // field reference
  std::string issuer;      // field issuer
  std::string recipients;  // field recipients (comma-separated)
  std::string issued_at;   // field issued_at (RFC 3339 UTC) or ""
  std::string time;        // archiving time from the manifest
  std::string date;        // issued_at when set, else time: what --since/--until compare
  std::string content_name;
  uint64_t refers_to = 0;
  std::string commit;      // hex of the commit that added the entry
};

struct IndexQuery {
  std::optional<std::string> kind;
  std::optional<std::string> type;
  std::optional<std::string> counterpart;  // issuer or one of the recipients
  std::optional<std::string> since;        // RFC 3339 UTC "YYYY-MM-DDTHH:MM:SSZ", inclusive
  std::optional<std::string> until;        // same form, inclusive
  std::optional<std::string> id;
  // Any of these kinds (in addition to `kind`, when both are set); empty: any.
  std::vector<std::string> kinds;
  std::optional<uint64_t> refers_to;   // entries about this seq
  std::optional<uint64_t> before_seq;  // only seq < before_seq (paging)
  bool newest_first = false;           // seq descending instead of ascending
  size_t limit = 0;                    // at most this many rows; 0: no limit
};

// What an Update did.
struct IndexUpdate {
  bool rebuilt = false;   // dropped and rebuilt from the whole history
  uint64_t added = 0;     // entries added
  uint64_t size = 0;      // entries in the index now
};

class Index {
 public:
  // <dir>/sealpost-index.sqlite.
  static std::string PathFor(const std::string& archive_dir);

  // Opens (creating if needed) the index at `path`. A file that is not a
  // database of this schema is DataError (the caller may delete and retry:
  // it is a cache). IoError when it cannot be created.
  static Result<std::unique_ptr<Index>> Open(const std::string& path);

  // Deletes the database file (and its -wal/-shm). OK if absent.
  static Status Remove(const std::string& path);

  ~Index() = default;
  Index(const Index&) = delete;
  Index& operator=(const Index&) = delete;

  // Brings the index up to `reader`'s head: adds the entries after the
  // recorded size when the recorded head is an ancestor of the reader's
  // head and the origin is the same; otherwise drops every row and rebuilds
  // from the whole history. One transaction: a failure leaves the index as
  // it was. Errors of the reader (DataError) pass through.
  Result<IndexUpdate> Update(ArchiveReader& reader);
  // Drops every row and rebuilds from the whole history.
  Result<IndexUpdate> Rebuild(ArchiveReader& reader);

  // Entries matching every given criterion, in seq order (or newest first).
  Result<std::vector<IndexedEntry>> Query(const IndexQuery& q);
  // One entry by seq; nullopt if the index has no such entry.
  Result<std::optional<IndexedEntry>> FindSeq(uint64_t seq);

  // The head commit and entry count the index reflects ("" / 0 when empty).
  Result<std::string> head();
  Result<uint64_t> size();

 private:
  using DbPtr = std::unique_ptr<sqlite3, CDeleter<sqlite3_close>>;
  Index(DbPtr db, std::string path) : db_(std::move(db)), path_(std::move(path)) {}
  Status Exec(const char* sql);
  Status SetMeta(const std::string& key, const std::string& value);
  Result<std::string> Meta(const std::string& key);
  Result<IndexUpdate> AddFrom(ArchiveReader& reader, uint64_t from_size, bool rebuild);

  DbPtr db_;
  std::string path_;
};

}  // namespace sealpost::storage

#endif  // SEALPOST_STORAGE_INDEX_H_
