// `sealpost policy check FILE...` and `sealpost policy explain FILE... ...`.
#include <algorithm>
#include <charconv>
#include <ctime>
#include <string>
#include <vector>

#include "base/openssl.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "crypto/certs.h"
#include "policies/decision.h"
#include "policies/policy.h"
#include "policies/verdict.h"

namespace sealpost::cli {
namespace {

using policies::Diagnostic;
using policies::Policy;

constexpr const char* kPolicyUsage =
    "usage: sealpost policy check FILE...\n"
    "       sealpost policy explain FILE... --type T --from U --to V[,W] [--signer CERT]...\n"
    "               [--chain PEM]... [--size N] [--media-type M] [--at TIME] [--timestamped] [--json]\n";

std::string Plural(size_t n, Lang lang, std::string_view en_one, std::string_view en_many,
                   std::string_view vi) {
  return std::to_string(n) + " " +
         std::string(lang == Lang::kVi ? vi : (n == 1 ? en_one : en_many));
}

int RunCheck(Context& ctx, const Args& args) {
  std::vector<std::string> files(args.positional().begin() + 1, args.positional().end());
  if (files.empty()) {
    std::fputs(kPolicyUsage, ctx.err);
    return 64;
  }
  int code = 0;
  auto policy = LoadPolicyOrReport(ctx, files, &code);
  if (!policy) return code;
  const Lang l = ctx.lang;
  std::string line = l == Lang::kVi ? "chính sách hợp lệ: " : "policy OK: ";
  line += Plural(policy->unions.size(), l, "union", "unions", "công đoàn") + ", " +
          Plural(policy->officers.size(), l, "officer", "officers", "cán bộ") + ", " +
          Plural(policy->groups.size(), l, "group", "groups", "nhóm") + ", " +
          Plural(policy->document_types.size(), l, "document type", "document types", "loại văn bản");
  std::fprintf(ctx.out, "%s\nsha256: %s\n", line.c_str(), policy->sha256.c_str());
  return 0;
}

// "2025-03-01" (midnight, Vietnam time) or "2025-03-01T10:00:00Z" /
// "...+07:00" (RFC 3339, no fractions).
Result<int64_t> ParseTime(const std::string& s, Lang lang) {
  auto bad = [&] {
    return Err(Status::InvalidArgument(
        "--at '" + s + "' " +
        std::string(Tr(lang, "is not a time (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)",
                       "không phải là thời điểm (YYYY-MM-DD hoặc YYYY-MM-DDTHH:MM:SSZ)"))));
  };
  auto num = [&](size_t pos, size_t len, int* out) {
    if (pos + len > s.size()) return false;
    auto [p, ec] = std::from_chars(s.data() + pos, s.data() + pos + len, *out);
    return ec == std::errc() && p == s.data() + pos + len;
  };
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0;
  if (!num(0, 4, &y) || s.size() < 10 || s[4] != '-' || !num(5, 2, &mo) || s[7] != '-' ||
      !num(8, 2, &d) || mo < 1 || mo > 12 || d < 1 || d > 31) {
    return bad();
  }
  int64_t offset = 7 * 3600;
  if (s.size() > 10) {
    if (s.size() < 20 || s[10] != 'T' || !num(11, 2, &h) || s[13] != ':' || !num(14, 2, &mi) ||
        s[16] != ':' || !num(17, 2, &se) || h > 23 || mi > 59 || se > 60) {
      return bad();
    }
    std::string tz = s.substr(19);
    int oh = 0, om = 0;
    if (tz == "Z") {
      offset = 0;
    } else if (tz.size() == 6 && (tz[0] == '+' || tz[0] == '-') && tz[3] == ':' &&
               std::from_chars(tz.data() + 1, tz.data() + 3, oh).ec == std::errc() &&
               std::from_chars(tz.data() + 4, tz.data() + 6, om).ec == std::errc()) {
      offset = (tz[0] == '-' ? -1 : 1) * (oh * 3600 + om * 60);
    } else {
      return bad();
    }
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = se;
  return static_cast<int64_t>(timegm(&tm)) - offset;
}

// The CA certificates above `cert` found in `pool` by issuer (no signature
// check: `explain` answers "what would the policy say", the verifier checks
// signatures and paths).
Result<X509StackPtr> ChainFor(X509* cert, STACK_OF(X509)* pool) {
  X509StackPtr chain(sk_X509_new_null());
  if (!chain) return Err(OpenSslStatus(Code::kInternal, "cannot allocate a certificate stack"));
  X509* cur = cert;
  for (int depth = 0; depth < 10 && pool != nullptr; ++depth) {
    X509* next = nullptr;
    for (int i = 0; i < sk_X509_num(pool); ++i) {
      X509* cand = sk_X509_value(pool, i);
      if (cand != cur && X509_check_issued(cand, cur) == X509_V_OK) {
        next = cand;
        break;
      }
    }
    if (next == nullptr) break;
    X509_up_ref(next);
    X509Ptr owned(next);
    if (sk_X509_push(chain.get(), owned.get()) <= 0) {
      return Err(OpenSslStatus(Code::kInternal, "cannot build a certificate chain"));
    }
    owned.release();  // the stack owns it now
    if (X509_check_issued(next, next) == X509_V_OK) break;  // self-signed: the root
    cur = next;
  }
  ClearOpenSslErrors();
  return chain;
}

int RunExplain(Context& ctx, const Args& args) {
  std::vector<std::string> files(args.positional().begin() + 1, args.positional().end());
  auto type = args.Get("--type");
  auto from = args.Get("--from");
  std::vector<std::string> recipients;
  for (const std::string& to : args.GetAll("--to")) {
    size_t start = 0;
    while (start <= to.size()) {
      size_t comma = to.find(',', start);
      if (comma == std::string::npos) comma = to.size();
      if (comma > start) recipients.push_back(to.substr(start, comma - start));
      start = comma + 1;
    }
  }
  if (files.empty() || !type || !from || recipients.empty()) {
    std::fputs(kPolicyUsage, ctx.err);
    return Fail(ctx, Status::InvalidArgument(std::string(
                         Tr(ctx.lang, "policy explain needs FILE..., --type, --from and --to",
                            "policy explain cần FILE..., --type, --from và --to"))));
  }
  policies::DocumentFacts facts;
  policies::DecisionRequest req;
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  if (auto at = args.Get("--at")) {
    auto t = ParseTime(*at, ctx.lang);
    if (!t) return Fail(ctx, t.error());
    now = *t;
  }
  if (auto size = args.Get("--size")) {
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(size->data(), size->data() + size->size(), v);
    if (size->empty() || ec != std::errc() || p != size->data() + size->size()) {
      return Fail(ctx, Status::InvalidArgument(
                           "--size '" + *size + "' " +
                           std::string(Tr(ctx.lang, "is not a number of bytes", "không phải là số byte"))));
    }
    req.size = v;
  }
  std::string media_type = args.Get("--media-type").value_or("");
  if (args.Has("--media-type")) req.media_type = media_type;

  // Certificates: signers and the CA pool for their chains.
  X509StackPtr pool(sk_X509_new_null());
  if (!pool) return Fail(ctx, OpenSslStatus(Code::kInternal, "cannot allocate a certificate stack"));
  for (const std::string& path : args.GetAll("--chain")) {
    auto certs = crypto::LoadCertificates(path);
    if (!certs) return Fail(ctx, certs.error());
    while (sk_X509_num(certs->get()) > 0) {
      X509Ptr c(sk_X509_shift(certs->get()));
      if (sk_X509_push(pool.get(), c.get()) <= 0) {
        return Fail(ctx, OpenSslStatus(Code::kInternal, "cannot collect certificates"));
      }
      c.release();  // the pool owns it now
    }
  }
  std::vector<policies::SignerIdentity> signers;
  for (const std::string& path : args.GetAll("--signer")) {
    auto cert = crypto::LoadCertificate(path);
    if (!cert) return Fail(ctx, cert.error());
    auto chain = ChainFor(cert->get(), pool.get());
    if (!chain) return Fail(ctx, chain.error());
    auto id = policies::IdentityFromCertificate(cert->get(), chain->get());
    if (!id) return Fail(ctx, id.error().WithContext(path));
    signers.push_back(std::move(*id));
  }

  int code = 0;
  auto policy = LoadPolicyOrReport(ctx, files, &code);
  if (!policy) return code;

  req.issuer = *from;
  req.document_type = *type;
  req.recipients = recipients;
  req.signers = signers;
  req.time = now;
  req.timestamped = args.Has("--timestamped");
  policies::Decision decision = policies::Decide(*policy, req);
  if (args.Has("--json")) {
    std::fprintf(ctx.out, "%s\n", decision.ToJson().c_str());
  } else {
    std::fputs(decision.Explain(ctx.lang).c_str(), ctx.out);
  }
  return decision.allowed ? 0 : 1;
}

}  // namespace

// Loads the policy; on errors prints every "file:line:column: message" line
// and a summary to ctx.err and returns the exit status in *exit_code.
std::shared_ptr<const policies::Policy> LoadPolicyOrReport(const Context& ctx, const std::vector<std::string>& files,
                                           int* exit_code) {
  std::vector<Diagnostic> diagnostics;
  auto policy = policies::LoadPolicyFiles(files, &diagnostics);
  if (policy) return *policy;
  if (diagnostics.empty()) {
    *exit_code = Fail(ctx, policy.error());
    return nullptr;
  }
  for (const Diagnostic& d : diagnostics) std::fprintf(ctx.err, "%s\n", d.ToString().c_str());
  std::string summary = ctx.lang == Lang::kVi
                            ? "chính sách không hợp lệ: " + std::to_string(diagnostics.size()) + " lỗi"
                            : "policy is invalid: " + Plural(diagnostics.size(), ctx.lang, "error",
                                                              "errors", "lỗi");
  *exit_code = Fail(ctx, Status::DataError(summary));
  return nullptr;
}

int RunPolicy(Context& ctx, const std::vector<std::string>& argv) {
  FlagSpec spec;
  spec.with_value = {"--type", "--from", "--to", "--signer", "--chain", "--size", "--media-type", "--at"};
  spec.boolean = {"--json", "--timestamped"};
  auto args = Args::Parse(argv, spec);
  if (!args) {
    std::fputs(kPolicyUsage, ctx.err);
    return Fail(ctx, args.error());
  }
  const auto& pos = args->positional();
  if (!pos.empty() && pos[0] == "check") {
    bool explain_only = args->Has("--type") || args->Has("--from") || args->Has("--to") ||
                        args->Has("--signer") || args->Has("--chain") || args->Has("--size") ||
                        args->Has("--media-type") || args->Has("--at") || args->Has("--timestamped") ||
                        args->Has("--json");
    if (explain_only) {
      std::fputs(kPolicyUsage, ctx.err);
      return Fail(ctx, Status::InvalidArgument(std::string(
                           Tr(ctx.lang, "policy check takes only policy files",
                              "policy check chỉ nhận các tệp chính sách"))));
    }
    return RunCheck(ctx, *args);
  }
  if (!pos.empty() && pos[0] == "explain") return RunExplain(ctx, *args);
  std::fputs(kPolicyUsage, ctx.err);
  return 64;
}

}  // namespace sealpost::cli
