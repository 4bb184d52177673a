// `sealpost verify FILE [FILE.p7s] --trust ROOTS [--untrusted CHAIN] [--crl CRL]...
//                  [--no-revocation] [--allow-legacy] [--at TIME] [--json]`
//
// Exit status: 0 PASSED, 1 FAILED, 2 INDETERMINATE, 64 usage, 65 a signature
// that is not a detached CMS SignedData, 66 an unreadable file.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "base/file.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "crypto/report.h"
#include "crypto/verify.h"

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

}  // namespace

int RunVerify(Context& ctx, const std::vector<std::string>& argv) {
  FlagSpec spec;
  spec.with_value = {"--trust", "--untrusted", "--crl", "--at"};
  spec.boolean = {"--no-revocation", "--allow-legacy", "--json"};
  auto args = Args::Parse(argv, spec);
  if (!args) return Fail(ctx, args.error().WithContext("verify"));
  const auto& pos = args->positional();
  if (pos.empty() || pos.size() > 2) {
    return Fail(ctx, Status::InvalidArgument(
                         "verify: usage: sealpost verify FILE [FILE.p7s] --trust ROOTS "
                         "[--untrusted CHAIN] [--crl CRL]... [--no-revocation] "
                         "[--allow-legacy] [--at TIME] [--json] [--lang vi|en]"));
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

  auto store = crypto::LoadTrustStore(files, options);
  if (!store) return Fail(ctx, store.error());
  auto verifier = crypto::Verifier::Create(std::move(*store));
  if (!verifier) return Fail(ctx, verifier.error());
  auto report = verifier->VerifyFile(content_path, *der, at);
  if (!report) return Fail(ctx, report.error().WithContext(sig_path));

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
