// libFuzzer target for sealpost-signer's untrusted inputs
// (daemon/signer/protocol.h, daemon/signer/attributes.h): any bytes as a
// frame length prefix, a request payload, an answer payload, and DER signed
// attributes must decode or fail with a DataError, never crash, hang or leak.
// What decodes must re-encode to the same bytes (the codec has exactly one
// encoding per message) and decode again to the same message.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "daemon/signer/attributes.h"
#include "daemon/signer/protocol.h"

namespace {

using namespace sealpost::signer;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);

  if (size >= 4) {
    auto len = DecodeFrameLength(in.substr(0, 4));
    if (len) Check(*len > 0 && *len <= kMaxFrame);
  }

  auto request = DecodeRequest(in);
  if (request) {
    auto again = EncodeRequest(*request);
    Check(again.has_value());
    Check(*again == in);
  } else {
    Check(request.error().code() == sealpost::Code::kDataError);
    Check(!request.error().message().empty());
  }

  auto answer = DecodeAnswer(in);
  if (answer) {
    auto again = EncodeAnswer(*answer);
    Check(again.has_value());
    Check(*again == in);
  } else {
    Check(answer.error().code() == sealpost::Code::kDataError);
  }

  for (auto alg : {sealpost::crypto::DigestAlg::kSha256, sealpost::crypto::DigestAlg::kSha384}) {
    auto attrs = ParseSignedAttributes(in, alg);
    if (attrs) {
      Check(attrs->message_digest.size() == sealpost::crypto::DigestAlgSize(alg));
      Check(!attrs->signing_certificate_v2.empty());
    } else {
      Check(attrs.error().code() == sealpost::Code::kDataError);
    }
  }
  return 0;
}
