// `sealpost verify FILE [FILE.p7s] --trust ROOTS [--untrusted CHAIN] [--crl CRL]...
//                  [--no-revocation] [--allow-legacy] [--at TIME] [--json]
//                  [--policy FILE... --type T --from U [--to V[,W]] [--media-type M]]`
//
// With --policy the verdict of the federation policy on the document (may
// union U issue type T to V, W? did the required officers and the seal sign?)
// is added to the report; a refusal is FAILED / NOT_AUTHORIZED_BY_POLICY.
//
// Exit status: 0 PASSED, 1 FAILED, 2 INDETERMINATE, 64 usage, 65 a signature
// that is not a detached CMS SignedData, 66 an unreadable file.
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/file.h"
#include "base/strings.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "crypto/report.h"
#include "crypto/verify.h"
#include "policies/policy.h"
#include "policies/verdict.h"

namespace sealpost::cli {
namespace {

int ExitCodeForIndication(crypto::Indication i) {
  switch (i) {
    case crypto::Indication::kPassed: return 0;
    case crypto::Indication::kFailed: return 1;
    case crypto::Indication::kIndeterminate: return 2;
  }
  return 2;
}

// The content must be a readable regular file before anything is verified:
// an unreadable file is exit 66 even when every signer fails earlier.
Status CheckReadableFile(const std::string& path, std::string_view what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Status::NotFound(std::string(what) + " " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return Status::NotFound(std::string(what) + " " + path + ": not a regular file");
  }
  if (::access(path.c_str(), R_OK) != 0) {
    return Status::NotFound(std::string(what) + " " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

// Media type from the file name, for the policy's media-type rule when
// --media-type is not given.
std::string GuessMediaType(const std::string& path) {
  static const std::pair<const char*, const char*> kTypes[] = {
      {".pdf", "application/pdf"},
      {".txt", "text/plain"},
      {".xml", "application/xml"},
      {".json", "application/json"},
      {".doc", "application/msword"},
      {".docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
      {".xls", "application/vnd.ms-excel"},
      {".xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
      {".odt", "application/vnd.oasis.opendocument.text"},
      {".ods", "application/vnd.oasis.opendocument.spreadsheet"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".zip", "application/zip"},
  };
  std::string lower;
  for (char c : path) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& [ext, type] : kTypes) {
    if (lower.ends_with(ext)) return type;
  }
  return "application/octet-stream";
}

// Runs the policy decision over the signers that PASSED and adds the verdict
// to the report.
Result<crypto::PolicyVerdict> EvaluatePolicy(const policies::Policy& policy, const Args& args,
                                             const std::string& content_path,
                                             const crypto::Report& report) {
  policies::DocumentFacts facts;
  facts.issuer = *args.Get("--from");
  facts.type = *args.Get("--type");
  for (const std::string& to : args.GetAll("--to")) {
    for (std::string& r : SplitComma(to)) facts.recipients.push_back(std::move(r));
  }
  struct stat st {};
  if (::stat(content_path.c_str(), &st) == 0) facts.size = static_cast<uint64_t>(st.st_size);
  facts.media_type = args.Get("--media-type").value_or(GuessMediaType(content_path));
  facts.time = static_cast<int64_t>(report.validation_time);
  std::vector<policies::VerifiedSigner> signers;
  for (const crypto::SignerReport& s : report.signers) {
    if (s.indication != crypto::Indication::kPassed || !s.certificate) continue;
    if (s.signing_time && facts.time > static_cast<int64_t>(*s.signing_time)) {
      facts.time = static_cast<int64_t>(*s.signing_time);  // when it was issued
    }
    signers.push_back({s.certificate.get(), s.chain.get()});
  }
  auto decision = policies::EvaluateVerifiedDocument(policy, facts, signers);
  if (!decision) return Err(decision.error());
  crypto::PolicyVerdict v;
  v.allowed = decision->allowed;
  v.policy_version = decision->policy_sha256;
  if (const policies::RuleResult* f = decision->FirstFailure()) {
    v.reason_en = f->en;
    v.reason_vi = f->vi;
  }
  v.explanation_en = decision->Explain(Lang::kEn);
  v.explanation_vi = decision->Explain(Lang::kVi);
  v.decision_json = decision->ToJson();
  while (!v.decision_json.empty() && v.decision_json.back() == '\n') v.decision_json.pop_back();
  return v;
}

}  // namespace

int RunVerify(Context& ctx, const std::vector<std::string>& argv) {
  FlagSpec spec;
  spec.with_value = {"--trust", "--untrusted", "--crl", "--at", "--policy",
                     "--type",  "--from",      "--to",  "--media-type"};
  spec.boolean = {"--no-revocation", "--allow-legacy", "--json"};
  auto args = Args::Parse(argv, spec);
  if (!args) return Fail(ctx, args.error().WithContext("verify"));
  const auto& pos = args->positional();
  if (pos.empty() || pos.size() > 2) {
    return Fail(ctx, Status::InvalidArgument(
                         "verify: usage: sealpost verify FILE [FILE.p7s] --trust ROOTS "
                         "[--untrusted CHAIN] [--crl CRL]... [--no-revocation] "
                         "[--allow-legacy] [--at TIME] [--json] [--lang vi|en] "
                         "[--policy FILE... --type T --from U [--to V[,W]] [--media-type M]]"));
  }
  crypto::TrustFiles files;
  files.anchors = args->GetAll("--trust");
  files.untrusted = args->GetAll("--untrusted");
  files.crls = args->GetAll("--crl");
  if (files.anchors.empty()) {
    return Fail(ctx, Status::InvalidArgument("verify: --trust ROOTS is required"));
  }
  std::optional<std::time_t> at;
  if (auto text = args->Get("--at")) {
    auto t = crypto::ParseRfc3339(*text);
    if (!t) return Fail(ctx, t.error().WithContext("verify: --at"));
    at = *t;
  }
  const std::vector<std::string> policy_files = args->GetAll("--policy");
  if (policy_files.empty()) {
    for (const char* f : {"--type", "--from", "--to", "--media-type"}) {
      if (args->Has(f)) {
        return Fail(ctx, Status::InvalidArgument(std::string("verify: ") + f +
                                                 " is only meaningful with --policy FILE"));
      }
    }
  } else if (!args->Has("--type") || !args->Has("--from")) {
    return Fail(ctx, Status::InvalidArgument(
                         "verify: --policy needs --type T and --from U (the issuing union)"));
  }
  crypto::TrustOptions options;
  // Greppable: the two ways to weaken verification, both stated in the report.
  options.check_revocation = !args->Has("--no-revocation");
  options.allow_legacy = args->Has("--allow-legacy");

  const std::string content_path = pos[0];
  const std::string sig_path = pos.size() == 2 ? pos[1] : pos[0] + ".p7s";
  Status readable = CheckReadableFile(content_path, "file");
  if (!readable.ok()) return Fail(ctx, readable);
  auto sig_data = ReadFile(sig_path, 64u << 20);
  if (!sig_data) return Fail(ctx, sig_data.error().WithContext("signature"));
  auto der = crypto::DecodeSignature(*sig_data, sig_path);
  if (!der) return Fail(ctx, der.error());

  std::shared_ptr<const policies::Policy> policy;
  if (!policy_files.empty()) {
    int code = 0;
    policy = LoadPolicyOrReport(ctx, policy_files, &code);
    if (!policy) return code;
  }

  auto store = crypto::LoadTrustStore(files, options);
  if (!store) return Fail(ctx, store.error());
  auto verifier = crypto::Verifier::Create(std::move(*store));
  if (!verifier) return Fail(ctx, verifier.error());
  auto report = verifier->VerifyFile(content_path, *der, at);
  if (!report) return Fail(ctx, report.error().WithContext(sig_path));
  if (policy) {
    auto verdict = EvaluatePolicy(*policy, *args, content_path, *report);
    if (!verdict) return Fail(ctx, verdict.error().WithContext("policy"));
    crypto::ApplyPolicyVerdict(*report, std::move(*verdict));
  }

  if (args->Has("--json")) {
    std::fputs(crypto::ReportToJson(*report).c_str(), ctx.out);
  } else {
    std::fputs(crypto::ReportToText(*report, ctx.lang).c_str(), ctx.out);
    if (!options.check_revocation) {
      std::fputs(std::string(Tr(ctx.lang,
                                "Note: revocation checking was disabled (--no-revocation).\n",
                                "Lưu ý: đã tắt kiểm tra thu hồi chứng thư (--no-revocation).\n"))
                     .c_str(),
                 ctx.out);
    }
    if (options.allow_legacy) {
      std::fputs(std::string(Tr(ctx.lang,
                                "Note: legacy algorithms were allowed (--allow-legacy).\n",
                                "Lưu ý: đã cho phép thuật toán cũ (--allow-legacy).\n"))
                     .c_str(),
                 ctx.out);
    }
  }
  std::fflush(ctx.out);
  return ExitCodeForIndication(report->indication);
}

}  // namespace sealpost::cli
