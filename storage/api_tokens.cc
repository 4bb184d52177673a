#include "storage/api_tokens.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "base/encoding.h"
#include "base/openssl.h"
#include "base/utf8.h"

namespace sealpost::storage {
namespace {

constexpr std::string_view kPrefix = "spt_";
constexpr size_t kSecretBytes = 32;
constexpr size_t kTokenChars = 4 + 43;  // prefix + unpadded base64url of 32 bytes

Status SqliteStatus(sqlite3* db, std::string_view what, const std::string& path) {
  return Status::IoError(std::string(what) + " " + path + ": " +
                         (db != nullptr ? sqlite3_errmsg(db) : "out of memory"));
}

struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

std::string Base64Url(std::string_view bytes) {
  std::string b = Base64Encode(bytes);
  while (!b.empty() && b.back() == '=') b.pop_back();
  std::replace(b.begin(), b.end(), '+', '-');
  std::replace(b.begin(), b.end(), '/', '_');
  return b;
}

Result<std::string> Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "SHA-256 of an API token"));
  }
  return HexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
}

ApiTokenInfo RowToInfo(sqlite3_stmt* st) {
  ApiTokenInfo info;
  info.id = sqlite3_column_int64(st, 0);
  const unsigned char* name = sqlite3_column_text(st, 1);
  const unsigned char* role = sqlite3_column_text(st, 2);
  info.name = name != nullptr ? reinterpret_cast<const char*>(name) : "";
  info.role = role != nullptr ? reinterpret_cast<const char*>(role) : "";
  info.created = static_cast<std::time_t>(sqlite3_column_int64(st, 3));
  if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
    info.revoked = static_cast<std::time_t>(sqlite3_column_int64(st, 4));
  }
  return info;
}

constexpr const char* kColumns = "id, name, role, created, revoked";

}  // namespace

bool IsApiRole(std::string_view role) {
  return std::find(std::begin(kApiRoles), std::end(kApiRoles), role) != std::end(kApiRoles);
}

Result<std::unique_ptr<ApiTokenStore>> ApiTokenStore::Open(const std::string& path) {
  // Create the file 0600 ourselves: sqlite3 would use the umask.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Err(Status::IoError("cannot open token database " + path));
  ::close(fd);
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                           nullptr);
  std::unique_ptr<ApiTokenStore> store(new ApiTokenStore(raw, path));  // owns raw even on error
  if (rc != SQLITE_OK) return Err(SqliteStatus(raw, "cannot open token database", path));
  sqlite3_busy_timeout(raw, 5000);
  SP_RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL"));
  SP_RETURN_IF_ERROR(store->Exec(
      "CREATE TABLE IF NOT EXISTS api_tokens ("
      " id INTEGER PRIMARY KEY AUTOINCREMENT,"
      " hash TEXT NOT NULL UNIQUE,"
      " name TEXT NOT NULL,"
      " role TEXT NOT NULL,"
      " created INTEGER NOT NULL,"
      " revoked INTEGER)"));
  return store;
}

ApiTokenStore::~ApiTokenStore() { sqlite3_close_v2(db_); }

Status ApiTokenStore::Exec(const char* sql) {
  char* msg = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &msg);
  std::string text = msg != nullptr ? msg : "";
  sqlite3_free(msg);
  if (rc != SQLITE_OK) return Status::IoError("token database " + path_ + ": " + text);
  return Status::Ok();
}

Result<CreatedApiToken> ApiTokenStore::Create(std::string_view role, std::string_view name,
                                              std::time_t now) {
  if (!IsApiRole(role)) {
    return Err(Status::InvalidArgument("unknown role '" + std::string(role) +
                                       "' (clerk, officer, auditor, admin)"));
  }
  if (name.empty() || name.size() > 200 || !IsCleanUtf8Text(name)) {
    return Err(Status::InvalidArgument(
        "token name must be 1 to 200 bytes of UTF-8 text without control characters"));
  }
  SecretBytes secret_raw;
  {
    std::string buf(kSecretBytes, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(buf.data()), kSecretBytes) != 1) {
      OPENSSL_cleanse(buf.data(), buf.size());
      return Err(OpenSslStatus(Code::kInternal, "random bytes for an API token"));
    }
    std::string text = std::string(kPrefix) + Base64Url(buf);
    OPENSSL_cleanse(buf.data(), buf.size());
    secret_raw = SecretBytes(text);
    OPENSSL_cleanse(text.data(), text.size());
  }
  auto hash = Sha256Hex(secret_raw.view());
  if (!hash) return Err(hash.error());

  std::lock_guard lock(mu_);
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "INSERT INTO api_tokens (hash, name, role, created) VALUES (?,?,?,?)",
                         -1, &raw, nullptr) != SQLITE_OK) {
    return Err(SqliteStatus(db_, "cannot prepare insert in", path_));
  }
  StmtPtr st(raw);
  sqlite3_bind_text(st.get(), 1, hash->data(), static_cast<int>(hash->size()), SQLITE_TRANSIENT);
  sqlite3_bind_text(st.get(), 2, name.data(), static_cast<int>(name.size()), SQLITE_TRANSIENT);
  sqlite3_bind_text(st.get(), 3, role.data(), static_cast<int>(role.size()), SQLITE_TRANSIENT);
  sqlite3_bind_int64(st.get(), 4, static_cast<sqlite3_int64>(now));
  if (sqlite3_step(st.get()) != SQLITE_DONE) {
    return Err(SqliteStatus(db_, "cannot store token in", path_));
  }
  CreatedApiToken out;
  out.info.id = sqlite3_last_insert_rowid(db_);
  out.info.name = std::string(name);
  out.info.role = std::string(role);
  out.info.created = now;
  out.token = std::move(secret_raw);
  return out;
}

Result<std::vector<ApiTokenInfo>> ApiTokenStore::List() {
  std::lock_guard lock(mu_);
  std::string sql = std::string("SELECT ") + kColumns + " FROM api_tokens ORDER BY id";
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    return Err(SqliteStatus(db_, "cannot read tokens from", path_));
  }
  StmtPtr st(raw);
  std::vector<ApiTokenInfo> out;
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) out.push_back(RowToInfo(st.get()));
  if (rc != SQLITE_DONE) return Err(SqliteStatus(db_, "cannot read tokens from", path_));
  return out;
}

Result<ApiTokenInfo> ApiTokenStore::Revoke(std::string_view id_or_name, std::time_t now) {
  auto all = List();
  if (!all) return Err(all.error());
  const ApiTokenInfo* found = nullptr;
  int64_t id = 0;
  auto [ptr, ec] = std::from_chars(id_or_name.data(), id_or_name.data() + id_or_name.size(), id);
  if (ec == std::errc() && ptr == id_or_name.data() + id_or_name.size()) {
    for (const auto& t : *all) {
      if (t.id == id) found = &t;
    }
  }
  if (found == nullptr) {
    for (const auto& t : *all) {
      if (t.name != id_or_name || t.revoked) continue;
      if (found != nullptr) {
        return Err(Status::InvalidArgument("more than one active token is named '" +
                                           std::string(id_or_name) + "': revoke by id"));
      }
      found = &t;
    }
  }
  if (found == nullptr) {
    return Err(Status::NotFound("no token with id or name '" + std::string(id_or_name) + "'"));
  }
  ApiTokenInfo info = *found;
  if (info.revoked) return info;
  std::lock_guard lock(mu_);
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_, "UPDATE api_tokens SET revoked=? WHERE id=? AND revoked IS NULL",
                         -1, &raw, nullptr) != SQLITE_OK) {
    return Err(SqliteStatus(db_, "cannot prepare revocation in", path_));
  }
  StmtPtr st(raw);
  sqlite3_bind_int64(st.get(), 1, static_cast<sqlite3_int64>(now));
  sqlite3_bind_int64(st.get(), 2, info.id);
  if (sqlite3_step(st.get()) != SQLITE_DONE) {
    return Err(SqliteStatus(db_, "cannot revoke token in", path_));
  }
  info.revoked = now;
  return info;
}

Result<std::optional<ApiTokenInfo>> ApiTokenStore::Authenticate(std::string_view token) {
  // Malformed tokens never reach the database.
  if (token.size() != kTokenChars || !token.starts_with(kPrefix)) {
    return std::optional<ApiTokenInfo>();
  }
  for (char c : token.substr(kPrefix.size())) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return std::optional<ApiTokenInfo>();
  }
  // Looked up by the hash of a 256-bit secret: timing reveals nothing usable.
  auto hash = Sha256Hex(token);
  if (!hash) return Err(hash.error());
  std::lock_guard lock(mu_);
  std::string sql = std::string("SELECT ") + kColumns + " FROM api_tokens WHERE hash=?";
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    return Err(SqliteStatus(db_, "cannot read tokens from", path_));
  }
  StmtPtr st(raw);
  sqlite3_bind_text(st.get(), 1, hash->data(), static_cast<int>(hash->size()), SQLITE_TRANSIENT);
  int rc = sqlite3_step(st.get());
  if (rc == SQLITE_DONE) return std::optional<ApiTokenInfo>();
  if (rc != SQLITE_ROW) return Err(SqliteStatus(db_, "cannot read tokens from", path_));
  ApiTokenInfo info = RowToInfo(st.get());
  if (info.revoked) return std::optional<ApiTokenInfo>();
  return std::optional<ApiTokenInfo>(std::move(info));
}

}  // namespace sealpost::storage
