// libFuzzer target for the strict receipt parsers (crypto/receipt.h): any
// bytes must parse or fail with an error, never crash, hang or leak; what
// parses must serialise back to exactly the input (one byte string per
// receipt), and verifying it against an absent seal must fail cleanly.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "crypto/receipt.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sealpost::crypto;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto r = ParseDeliveryReceipt(in, "fuzz")) {
    auto back = SerializeDeliveryReceipt(*r);
    Check(back.has_value() && *back == in);
    ReceiptExpectation e{r->document_id, r->content_sha256, r->recipient, nullptr};
    Check(!VerifyDeliveryReceipt(SignedReceipt{std::string(in), "x"}, e, "fuzz").has_value());
  } else {
    Check(!r.error().message().empty());
  }
  if (auto n = ParseReadNotice(in, "fuzz")) {
    auto back = SerializeReadNotice(*n);
    Check(back.has_value() && *back == in);
  }
  return 0;
}
