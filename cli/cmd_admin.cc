// `sealpost admin token create|list|revoke`: the API tokens of sealpostd's
// user listener (storage/api_tokens.h), in <state>/api-tokens.sqlite.
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "base/json.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "crypto/report.h"
#include "storage/api_tokens.h"

namespace sealpost::cli {
namespace {

constexpr const char* kAdminUsage =
    "usage: sealpost admin token create --role clerk|officer|auditor|admin --name NAME [--state DIR]\n"
    "       sealpost admin token list [--state DIR] [--json]\n"
    "       sealpost admin token revoke ID|NAME [--state DIR]\n";

constexpr const char* kDefaultState = "/var/lib/sealpost";

int Usage(const Context& ctx) {
  std::fputs(kAdminUsage, ctx.err);
  return 64;
}

}  // namespace

int RunAdmin(Context& ctx, const std::vector<std::string>& argv) {
  auto args = Args::Parse(argv, FlagSpec{{"--role", "--name", "--state"}, {"--json", "--help"}});
  if (!args) {
    Fail(ctx, args.error());
    return Usage(ctx);
  }
  const auto& pos = args->positional();
  if (args->Has("--help") || pos.size() < 2 || pos[0] != "token") return Usage(ctx);
  const std::string& action = pos[1];
  std::string state = args->Get("--state").value_or(kDefaultState);
  const Lang l = ctx.lang;

  if (action == "create") {
    if (pos.size() != 2 || !args->Has("--role") || !args->Has("--name")) return Usage(ctx);
    auto store = storage::ApiTokenStore::Open(state + "/api-tokens.sqlite");
    if (!store) return Fail(ctx, store.error());
    auto made = (*store)->Create(*args->Get("--role"), *args->Get("--name"), std::time(nullptr));
    if (!made) return Fail(ctx, made.error());
    // The token alone on stdout (for scripts); the warning on stderr.
    std::fwrite(made->token.data(), 1, made->token.size(), ctx.out);
    std::fputc('\n', ctx.out);
    std::fprintf(ctx.err, "%s %lld (%s, %s). %s\n",
                 std::string(Tr(l, "sealpost: token", "sealpost: mã truy cập")).c_str(),
                 static_cast<long long>(made->info.id), made->info.role.c_str(),
                 made->info.name.c_str(),
                 std::string(Tr(l, "It is shown only this once: store it now.",
                                "Mã chỉ hiện một lần này: hãy lưu lại ngay."))
                     .c_str());
    return 0;
  }
  if (action == "list") {
    if (pos.size() != 2) return Usage(ctx);
    auto store = storage::ApiTokenStore::Open(state + "/api-tokens.sqlite");
    if (!store) return Fail(ctx, store.error());
    auto all = (*store)->List();
    if (!all) return Fail(ctx, all.error());
    if (args->Has("--json")) {
      std::string out = "[";
      for (size_t i = 0; i < all->size(); ++i) {
        const auto& t = (*all)[i];
        out += (i ? "," : "") + std::string("{\"id\":") + std::to_string(t.id) +
               ",\"name\":" + JsonString(t.name) + ",\"role\":" + JsonString(t.role) +
               ",\"created\":" + JsonString(crypto::FormatRfc3339(t.created)) + ",\"revoked\":" +
               (t.revoked ? JsonString(crypto::FormatRfc3339(*t.revoked)) : "null") + "}";
      }
      out += "]\n";
      std::fputs(out.c_str(), ctx.out);
      return 0;
    }
    for (const auto& t : *all) {
      std::string revoked =
          t.revoked ? std::string(Tr(l, "revoked ", "thu hồi ")) + crypto::FormatRfc3339(*t.revoked)
                    : std::string(Tr(l, "active", "đang dùng"));
      std::fprintf(ctx.out, "%lld\t%s\t%s\t%s\t%s\n", static_cast<long long>(t.id),
                   t.role.c_str(), t.name.c_str(), crypto::FormatRfc3339(t.created).c_str(),
                   revoked.c_str());
    }
    return 0;
  }
  if (action == "revoke") {
    if (pos.size() != 3) return Usage(ctx);
    auto store = storage::ApiTokenStore::Open(state + "/api-tokens.sqlite");
    if (!store) return Fail(ctx, store.error());
    auto info = (*store)->Revoke(pos[2], std::time(nullptr));
    if (!info) return Fail(ctx, info.error());
    std::fprintf(ctx.out, "%s %lld (%s, %s)\n",
                 std::string(Tr(l, "revoked token", "đã thu hồi mã truy cập")).c_str(),
                 static_cast<long long>(info->id), info->role.c_str(), info->name.c_str());
    return 0;
  }
  return Usage(ctx);
}

}  // namespace sealpost::cli
