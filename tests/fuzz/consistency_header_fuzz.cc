// libFuzzer target for the Sealpost-Consistency-Proof header parser
// (daemon/inbox.h), which reads a value a peer sends: any bytes must parse
// or fail with an error naming the header, never crash, hang or leak; what
// parses must format back to exactly the input (one spelling per proof).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "daemon/inbox.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sealpost::daemon;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto p = ParseConsistencyProofHeader(in)) {
    Check(p->from < p->to && p->hashes.size() <= kMaxConsistencyProofHashes);
    Check(FormatConsistencyProofHeader(*p) == in);
  } else {
    Check(p.error().message().find("Sealpost-Consistency-Proof") != std::string::npos);
  }
  return 0;
}
