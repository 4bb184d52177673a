#include "cli/cli.h"

#include <csignal>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace sealpost::cli {
namespace {

constexpr const char* kUsage =
    "usage: sealpost [--lang vi|en] <command> [args]\n"
    "commands:\n"
    "  token list | keys URI | csr URI --subject S [--email A] -o REQ | import-cert URI CERT\n"
    "  sign --key URI [--chain PEM] [--append P7S] FILE [-o OUT.p7s]\n"
    "  verify FILE [FILE.p7s] --trust ROOTS [--untrusted CHAIN] [--crl CRL]... [--json]\n"
    "  policy check FILE... | explain FILE... --type T --from U --to V[,W] [--signer CERT]...\n"
    "  archive init|append|list|show|checkpoint|prove|verify-proof|mirror|reindex ... "
    "(sealpost archive --help)\n"
    "  audit DIR --trust ROOTS [--checkpoint TRUSTED] [--json] [--jobs N]\n"
    "  doctor --config FILE [--json] [--full-audit] [--no-save]   (docs/doctor.md)\n"
    "  admin token create --role R --name N | list | revoke ID|NAME [--state DIR]\n"
    "  submit FILE [FILE.p7s] --type T --to U[,U...] [--subject S]   (API client commands:\n"
    "  status ID | list [filters] | fetch ID [--content|--signature|--bundle] -o OUT | inbox\n"
    "    with --server URL --ca PEM --token-file F; sealpost submit --help)\n"
    "  --version\n";

}  // namespace

int Fail(const Context& ctx, const Status& s) {
  std::fprintf(ctx.err, "sealpost: %s\n", s.message().c_str());
  return ExitCodeFor(s);
}

int Main(int argc, char** argv) {
  // A token behind p11-kit that disappears mid-call must not kill us.
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  std::optional<std::string> lang_flag;
  // Global options come before the command; --lang may also appear later
  // (each command accepts it), this loop only takes leading ones.
  size_t i = 0;
  while (i < args.size() && args[i].starts_with("--")) {
    if (args[i] == "--version") {
      std::puts("sealpost 0.1.0");
      return 0;
    }
    if (args[i] == "--help" || args[i] == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (args[i] == "--lang" && i + 1 < args.size()) {
      lang_flag = args[i + 1];
      i += 2;
      continue;
    }
    if (args[i].starts_with("--lang=")) {
      lang_flag = args[i].substr(7);
      ++i;
      continue;
    }
    break;
  }
  // A --lang anywhere after the command also counts; commands ignore it.
  std::vector<std::string> rest;
  for (size_t j = i; j < args.size(); ++j) {
    if (args[j] == "--lang" && j + 1 < args.size()) {
      lang_flag = args[++j];
    } else if (args[j].starts_with("--lang=")) {
      lang_flag = args[j].substr(7);
    } else {
      rest.push_back(args[j]);
    }
  }
  Context ctx;
  auto lang = SelectLang(lang_flag);
  if (!lang) return Fail(ctx, lang.error());
  ctx.lang = *lang;
  if (rest.empty()) {
    std::fputs(kUsage, stderr);
    return 64;
  }
  std::string cmd = rest.front();
  std::vector<std::string> cmd_args(rest.begin() + 1, rest.end());
  if (cmd == "token") return RunToken(ctx, cmd_args);
  if (cmd == "sign") return RunSign(ctx, cmd_args);
  if (cmd == "verify") return RunVerify(ctx, cmd_args);
  if (cmd == "policy") return RunPolicy(ctx, cmd_args);
  if (cmd == "admin") return RunAdmin(ctx, cmd_args);
  if (cmd == "audit") return RunAudit(ctx, cmd_args);
  if (cmd == "archive") return RunArchive(ctx, cmd_args);
  if (cmd == "doctor") return RunDoctor(ctx, cmd_args);
  if (cmd == "submit" || cmd == "status" || cmd == "list" || cmd == "fetch" || cmd == "inbox") {
    return RunClient(ctx, cmd, cmd_args);
  }
  std::fprintf(stderr, "sealpost: unknown command '%s'\n%s", cmd.c_str(), kUsage);
  return 64;
}

}  // namespace sealpost::cli
