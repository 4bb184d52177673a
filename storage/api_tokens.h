// API tokens of the daemon's user listener (sealpostd), kept in SQLite.
//
// A token is "spt_" followed by 43 base64url characters: 256 random bits.
// Only the SHA-256 of the whole token string is stored, with the token's
// name, role, creation time and revocation time. The token itself is
// returned once, by Create(), and never again: a lost token is revoked and
// a new one made.
//
//   auto store = ApiTokenStore::Open(state_dir + "/api-tokens.sqlite");
//   auto made = (*store)->Create("clerk", "văn thư Hạ Long", time(nullptr));
//   print made->token;                         // once
//   auto info = (*store)->Authenticate(made->token);  // the role, unless revoked
//
// Thread-safety: one ApiTokenStore may be used from several threads (calls
// are serialised). Several processes may open the same file (the daemon
// reads while `sealpost admin token` writes): SQLite's WAL mode and a busy
// timeout make that safe; a revocation is seen by the daemon's next request.
#ifndef SEALPOST_STORAGE_API_TOKENS_H_
#define SEALPOST_STORAGE_API_TOKENS_H_

#include <cstdint>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/secret.h"
#include "base/status.h"

struct sqlite3;

namespace sealpost::storage {

// Roles of local users; every endpoint of the user listener names the roles
// it admits.
inline constexpr std::string_view kApiRoles[] = {"clerk", "officer", "auditor", "admin"};
bool IsApiRole(std::string_view role);

struct ApiTokenInfo {
  int64_t id = 0;
  std::string name;  // UTF-8, what the admin called it
  std::string role;  // one of kApiRoles
  std::time_t created = 0;
  std::optional<std::time_t> revoked;
};

struct CreatedApiToken {
  ApiTokenInfo info;
  SecretBytes token;  // the only copy there will ever be
};

class ApiTokenStore {
 public:
  // Opens (creating when missing, mode 0600) the token database at `path`.
  // IoError naming the path if it cannot be opened or its schema made.
  [[nodiscard]] static Result<std::unique_ptr<ApiTokenStore>> Open(const std::string& path);
  ~ApiTokenStore();
  ApiTokenStore(const ApiTokenStore&) = delete;
  ApiTokenStore& operator=(const ApiTokenStore&) = delete;

  // Makes a new token. InvalidArgument for an unknown role or an empty name
  // (or a name over 200 bytes, or not UTF-8 text without control characters).
  [[nodiscard]] Result<CreatedApiToken> Create(std::string_view role, std::string_view name,
                                               std::time_t now);
  // Every token (revoked ones too), by id.
  [[nodiscard]] Result<std::vector<ApiTokenInfo>> List();
  // Revokes the token with this id (decimal) or, if no id matches, the only
  // non-revoked token with this name. NotFound if none; InvalidArgument if
  // the name is ambiguous; revoking a revoked token is OK and keeps the
  // first revocation time.
  [[nodiscard]] Result<ApiTokenInfo> Revoke(std::string_view id_or_name, std::time_t now);
  // The token's record when `token` is a known, non-revoked token; nullopt
  // otherwise (unknown, malformed, revoked). An error only when the database
  // cannot be read.
  [[nodiscard]] Result<std::optional<ApiTokenInfo>> Authenticate(std::string_view token);

 private:
  ApiTokenStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  Status Exec(const char* sql);
  std::mutex mu_;
  sqlite3* db_;  // owned; closed by the destructor
  std::string path_;
};

}  // namespace sealpost::storage

#endif  // SEALPOST_STORAGE_API_TOKENS_H_
