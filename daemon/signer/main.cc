// sealpost-signer: the token holder. See docs/signer.md.
//   sealpost-signer --key URI [--key URI]... --socket PATH [--pin-file F]
//                   [--journal F] [--allow-uid N]... [--allow-user NAME]...
//                   [--call-timeout S]
//                   [--max-skew S] [--lang vi|en] [--verbose]
#include <pwd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/lang.h"
#include "base/log.h"
#include "daemon/signer/server.h"

namespace {

using sealpost::Lang;
using sealpost::Tr;

constexpr char kUsage[] =
    "usage: sealpost-signer --key URI [--key URI]... --socket PATH [--pin-file FILE]\n"
    "                       [--journal FILE] [--allow-uid UID]... [--allow-user NAME]...\n"
    "                       [--call-timeout SECONDS]\n"
    "                       [--max-skew SECONDS] [--lang vi|en] [--verbose]\n";

int Usage(Lang lang, const std::string& why) {
  std::fprintf(stderr, "sealpost-signer: %s\n%s", why.c_str(), kUsage);
  (void)lang;
  return sealpost::signer::kExitUsage;
}

std::optional<double> Number(const std::string& s, double min, double max) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end != s.c_str() + s.size() || !(v >= min && v <= max)) return std::nullopt;
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::optional<std::string> lang_flag;
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--lang") lang_flag = args[i + 1];
  }
  auto lang = sealpost::SelectLang(lang_flag ? std::optional<std::string_view>(*lang_flag) : std::nullopt);
  if (!lang) return Usage(Lang::kEn, lang.error().message());

  sealpost::signer::ServerOptions opts;
  opts.lang = *lang;
  bool verbose = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--verbose") {
      verbose = true;
      continue;
    }
    static const char* kWithValue[] = {"--key", "--socket", "--pin-file", "--journal", "--allow-uid",
                                       "--allow-user", "--call-timeout", "--max-skew", "--lang"};
    bool known = false;
    for (const char* f : kWithValue) known = known || a == f;
    if (!known) {
      return Usage(*lang, std::string(Tr(*lang, "unknown argument ", "tham số không hợp lệ ")) + "'" + a + "'");
    }
    if (i + 1 >= args.size()) {
      return Usage(*lang, std::string(Tr(*lang, "missing value for ", "thiếu giá trị cho ")) + a);
    }
    const std::string& v = args[++i];
    if (a == "--key") {
      opts.keys.push_back(v);
    } else if (a == "--socket") {
      opts.socket_path = v;
    } else if (a == "--pin-file") {
      opts.pin_file = v;
    } else if (a == "--journal") {
      opts.journal = v;
    } else if (a == "--allow-uid") {
      auto n = Number(v, 0, 4294967294.0);
      if (!n || *n != static_cast<double>(static_cast<unsigned long>(*n))) {
        return Usage(*lang, std::string(Tr(*lang, "--allow-uid needs a number, not ",
                                           "--allow-uid cần một số, không phải ")) + "'" + v + "'");
      }
      opts.allowed_uids.push_back(static_cast<uid_t>(*n));
    } else if (a == "--allow-user") {
      // A name, so a unit need not know the uid sysusers.d gave the daemon.
      passwd pw{};
      passwd* found = nullptr;
      std::vector<char> buf(16384);
      if (::getpwnam_r(v.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
        return Usage(*lang, std::string(Tr(*lang, "--allow-user: no such user ",
                                           "--allow-user: không có người dùng ")) + "'" + v + "'");
      }
      opts.allowed_uids.push_back(found->pw_uid);
    } else if (a == "--call-timeout") {
      auto n = Number(v, 0.1, 3600);
      if (!n) {
        return Usage(*lang, std::string(Tr(*lang, "--call-timeout needs seconds (0.1 to 3600), not ",
                                           "--call-timeout cần số giây (0.1 đến 3600), không phải ")) +
                                "'" + v + "'");
      }
      opts.call_timeout = std::chrono::milliseconds(static_cast<long>(*n * 1000));
    } else if (a == "--max-skew") {
      auto n = Number(v, 1, 86400);
      if (!n) {
        return Usage(*lang, std::string(Tr(*lang, "--max-skew needs seconds (1 to 86400), not ",
                                           "--max-skew cần số giây (1 đến 86400), không phải ")) +
                                "'" + v + "'");
      }
      opts.max_skew = std::chrono::seconds(static_cast<long>(*n));
    }
  }
  if (opts.keys.empty()) return Usage(*lang, std::string(Tr(*lang, "--key is required", "cần có --key")));
  if (opts.keys.size() > 16) {
    return Usage(*lang, std::string(Tr(*lang, "at most 16 --key", "tối đa 16 --key")));
  }
  if (opts.socket_path.empty()) {
    return Usage(*lang, std::string(Tr(*lang, "--socket is required", "cần có --socket")));
  }
  sealpost::SetLogLevel(verbose ? sealpost::LogLevel::kInfo : sealpost::LogLevel::kWarn);
  return sealpost::signer::RunServer(opts);
}
