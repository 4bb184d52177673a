// `sealpost audit DIR --trust ROOTS [--checkpoint TRUSTED] [--json] [--jobs N]`
//
// Audits an archive (bare, or a working clone) offline; reads only. What is
// checked and the reason codes: docs/audit.md, storage/audit.h.
//
// Exit status: 0 clean, 1 a problem found, 2 indeterminate (evidence missing),
// 64 usage, 65 not an archive / a corrupt object / a malformed checkpoint
// file, 66 a file or directory that cannot be read.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "base/file.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "storage/audit.h"

namespace sealpost::cli {
namespace {

constexpr const char* kAuditUsage =
    "audit: usage: sealpost audit DIR --trust ROOTS [--checkpoint TRUSTED] [--json] [--jobs N] "
    "[--lang vi|en]";

// A one-line bar redrawn in place; only when stderr is a terminal.
class ProgressBar {
 public:
  explicit ProgressBar(FILE* err) : err_(err), enabled_(::isatty(::fileno(err)) == 1) {}
  ~ProgressBar() {
    if (drawn_) std::fputs("\r\033[K", err_);
  }
  void Update(uint64_t done, uint64_t total) {
    if (!enabled_ || total < 1000) return;
    int percent = static_cast<int>(done * 100 / total);
    if (percent == last_) return;
    last_ = percent;
    constexpr int kWidth = 30;
    std::string bar(static_cast<size_t>(percent * kWidth / 100), '#');
    bar.resize(kWidth, '.');
    std::fprintf(err_, "\r[%s] %3d%% %llu/%llu", bar.c_str(), percent,
                 static_cast<unsigned long long>(done), static_cast<unsigned long long>(total));
    std::fflush(err_);
    drawn_ = true;
  }

 private:
  FILE* err_;
  bool enabled_;
  bool drawn_ = false;
  int last_ = -1;
};

}  // namespace

int RunAudit(Context& ctx, const std::vector<std::string>& argv) {
  FlagSpec spec;
  spec.with_value = {"--trust", "--checkpoint", "--jobs"};
  spec.boolean = {"--json"};
  auto args = Args::Parse(argv, spec);
  if (!args) return Fail(ctx, args.error().WithContext("audit"));
  if (args->positional().size() != 1) return Fail(ctx, Status::InvalidArgument(kAuditUsage));
  storage::AuditOptions options;
  options.trust_files = args->GetAll("--trust");
  if (options.trust_files.empty()) {
    return Fail(ctx, Status::InvalidArgument("audit: --trust ROOTS is required"));
  }
  options.jobs = 2;
  if (auto jobs = args->Get("--jobs")) {
    char* end = nullptr;
    long n = std::strtol(jobs->c_str(), &end, 10);
    if (jobs->empty() || *end != '\0' || n < 1 || n > 64) {
      return Fail(ctx, Status::InvalidArgument("audit: --jobs must be a number from 1 to 64"));
    }
    options.jobs = static_cast<int>(n);
  }
  if (auto file = args->Get("--checkpoint")) {
    auto data = ReadFile(*file, 1u << 20);
    if (!data) return Fail(ctx, data.error().WithContext("trusted checkpoint"));
    std::optional<std::string> sig;
    if (::access((*file + ".p7s").c_str(), F_OK) == 0) {
      auto s = ReadFile(*file + ".p7s", 1u << 20);
      if (!s) return Fail(ctx, s.error().WithContext("trusted checkpoint signature"));
      sig = std::move(*s);
    }
    auto trusted = storage::ParseTrustedCheckpoint(
        *data, sig ? std::optional<std::string_view>(*sig) : std::nullopt, *file);
    if (!trusted) return Fail(ctx, trusted.error().WithContext("trusted checkpoint"));
    options.trusted = std::move(*trusted);
  }
  ProgressBar bar(ctx.err);
  options.progress = [&bar](uint64_t done, uint64_t total) { bar.Update(done, total); };
  auto report = storage::Audit(args->positional()[0], options);
  options.progress = nullptr;
  if (!report) return Fail(ctx, report.error().WithContext("audit"));
  if (args->Has("--json")) {
    std::fputs(storage::AuditReportToJson(*report).c_str(), ctx.out);
  } else {
    std::fputs(storage::AuditReportToText(*report, ctx.lang).c_str(), ctx.out);
  }
  std::fflush(ctx.out);
  return report->ExitCode();
}

}  // namespace sealpost::cli
