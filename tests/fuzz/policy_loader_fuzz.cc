// libFuzzer target for the strict policy loader (policies/policy.h): any
// bytes, as one file or split into two at a "\n#8<\n" line, must load or
// fail with positioned errors, never crash, hang or leak; a policy that
// loads must hash the same when loaded again and must answer a decision.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "policies/decision.h"
#include "policies/policy.h"

namespace {

using sealpost::policies::Decide;
using sealpost::policies::DecisionRequest;
using sealpost::policies::Diagnostic;
using sealpost::policies::LoadPolicy;
using sealpost::policies::PolicySource;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<PolicySource> sources;
  size_t cut = in.find("\n#8<\n");
  if (cut == std::string_view::npos) {
    sources.push_back(PolicySource{"fuzz.yaml", std::string(in)});
  } else {
    sources.push_back(PolicySource{"a.yaml", std::string(in.substr(0, cut + 1))});
    sources.push_back(PolicySource{"b.yaml", std::string(in.substr(cut + 5))});
  }
  std::vector<Diagnostic> diagnostics;
  auto policy = LoadPolicy(sources, &diagnostics);
  if (!policy) {
    Check(!diagnostics.empty());
    for (const Diagnostic& d : diagnostics) Check(!d.message.empty() && d.line >= 0 && d.column >= 0);
    return 0;
  }
  Check(diagnostics.empty());
  auto again = LoadPolicy(sources);
  Check(again.has_value() && (*again)->sha256 == (*policy)->sha256);
  const auto& p = **policy;
  if (!p.unions.empty() && !p.document_types.empty()) {
    std::vector<std::string> to;
    for (size_t i = 0; i < p.unions.size() && i < 3; ++i) to.push_back(p.unions[i].id);
    DecisionRequest req;
    req.issuer = p.unions.back().id;
    req.document_type = p.document_types.front().id;
    req.recipients = to;
    req.size = size;
    req.media_type = "application/pdf";
    auto d = Decide(p, req);
    Check(!d.rules.empty());
    Check(d.allowed == (d.FirstFailure() == nullptr));
  }
  return 0;
}
