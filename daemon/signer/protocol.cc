#include "daemon/signer/protocol.h"

#include <limits>

namespace sealpost::signer {
namespace {

constexpr size_t kMaxFields = 3 + 3 * kMaxStatusKeys;

void PutU32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

uint32_t GetU32(std::string_view in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

std::string U8Field(uint8_t v) { return std::string(1, static_cast<char>(v)); }

std::string I64Field(int64_t v) {
  std::string out;
  auto u = static_cast<uint64_t>(v);
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((u >> shift) & 0xff));
  return out;
}

// Builds a payload; fields are checked against their limits by the callers.
std::string Payload(MessageType type, const std::vector<std::string>& fields) {
  std::string out;
  out.push_back(static_cast<char>(kProtocolVersion));
  out.push_back(static_cast<char>(type));
  out.push_back(static_cast<char>(fields.size()));
  for (const auto& f : fields) {
    PutU32(out, static_cast<uint32_t>(f.size()));
    out.append(f);
  }
  return out;
}

std::string Truncated(std::string_view text) {
  return std::string(text.substr(0, kMaxMessage));
}

uint8_t AlgByte(crypto::DigestAlg alg) {
  switch (alg) {
    case crypto::DigestAlg::kSha256: return 1;
    case crypto::DigestAlg::kSha384: return 2;
    case crypto::DigestAlg::kSha512: return 3;
  }
  return 0;
}

struct Raw {
  MessageType type;
  std::vector<std::string_view> fields;
};

// The generic layer: version, type, count, length-prefixed fields, no
// trailing bytes. `what` is "request" or "answer".
Result<Raw> Split(std::string_view payload, std::string_view what) {
  auto fail = [&](const std::string& why) {
    return Err(Status::DataError("signer " + std::string(what) + ": " + why));
  };
  if (payload.size() > kMaxFrame) return fail("larger than " + std::to_string(kMaxFrame) + " bytes");
  if (payload.size() < 3) return fail("shorter than its 3-byte header");
  auto version = static_cast<unsigned char>(payload[0]);
  if (version != kProtocolVersion) {
    return fail("protocol version " + std::to_string(version) + " (this side speaks " +
                std::to_string(kProtocolVersion) + ")");
  }
  Raw raw{static_cast<MessageType>(static_cast<unsigned char>(payload[1])), {}};
  size_t count = static_cast<unsigned char>(payload[2]);
  if (count > kMaxFields) return fail("too many fields (" + std::to_string(count) + ")");
  size_t pos = 3;
  for (size_t i = 0; i < count; ++i) {
    if (payload.size() - pos < 4) {
      return fail("field " + std::to_string(i + 1) + ": truncated length at byte " + std::to_string(pos));
    }
    uint32_t len = GetU32(payload.substr(pos, 4));
    pos += 4;
    if (len > payload.size() - pos) {
      return fail("field " + std::to_string(i + 1) + ": length " + std::to_string(len) +
                  " runs past the end of the message");
    }
    raw.fields.push_back(payload.substr(pos, len));
    pos += len;
  }
  if (pos != payload.size()) {
    return fail(std::to_string(payload.size() - pos) + " bytes after the last field");
  }
  return raw;
}

class FieldReader {
 public:
  FieldReader(const Raw& raw, std::string name) : raw_(raw), name_(std::move(name)) {}

  Status Count(size_t n) const {
    if (raw_.fields.size() != n) {
      return Status::DataError(name_ + ": " + std::to_string(raw_.fields.size()) + " fields, expected " +
                               std::to_string(n));
    }
    return Status::Ok();
  }
  Result<std::string> Bytes(size_t i, std::string_view field, size_t max, bool allow_empty = false) const {
    std::string_view f = raw_.fields[i];
    if (f.size() > max) {
      return Err(Status::DataError(name_ + ": " + std::string(field) + " is " + std::to_string(f.size()) +
                                   " bytes, at most " + std::to_string(max) + " allowed"));
    }
    if (f.empty() && !allow_empty) {
      return Err(Status::DataError(name_ + ": " + std::string(field) + " is empty"));
    }
    return std::string(f);
  }
  Result<bool> Bool(size_t i, std::string_view field) const {
    std::string_view f = raw_.fields[i];
    if (f.size() != 1 || static_cast<unsigned char>(f[0]) > 1) {
      return Err(Status::DataError(name_ + ": " + std::string(field) + " is not a 1-byte boolean"));
    }
    return f[0] == 1;
  }
  Result<int64_t> I64(size_t i, std::string_view field) const {
    std::string_view f = raw_.fields[i];
    if (f.size() != 8) {
      return Err(Status::DataError(name_ + ": " + std::string(field) + " is not an 8-byte integer"));
    }
    uint64_t u = 0;
    for (char c : f) u = (u << 8) | static_cast<unsigned char>(c);
    return static_cast<int64_t>(u);
  }
  Result<crypto::DigestAlg> Alg(size_t i) const {
    std::string_view f = raw_.fields[i];
    if (f.size() == 1) {
      switch (f[0]) {
        case 1: return crypto::DigestAlg::kSha256;
        case 2: return crypto::DigestAlg::kSha384;
        case 3: return crypto::DigestAlg::kSha512;
        default: break;
      }
    }
    return Err(Status::DataError(name_ + ": unknown digest algorithm"));
  }
  const std::string& name() const { return name_; }

 private:
  const Raw& raw_;
  std::string name_;
};

#define SP_ASSIGN(var, expr)                \
  auto var##_r = (expr);                    \
  if (!var##_r) return Err(var##_r.error()); \
  auto var = std::move(*var##_r)

}  // namespace

Result<std::string> EncodeRequest(const Request& request) {
  if (std::holds_alternative<StatusRequest>(request)) {
    return Payload(MessageType::kStatusRequest, {});
  }
  if (const auto* c = std::get_if<CertificateRequest>(&request)) {
    if (c->key.empty() || c->key.size() > kMaxKeyRef) {
      return Err(Status::InvalidArgument("key reference is empty or longer than " +
                                         std::to_string(kMaxKeyRef) + " bytes"));
    }
    return Payload(MessageType::kCertificateRequest, {c->key});
  }
  const auto& s = std::get<SignRequest>(request);
  if (s.key.empty() || s.key.size() > kMaxKeyRef) {
    return Err(Status::InvalidArgument("key reference is empty or longer than " +
                                       std::to_string(kMaxKeyRef) + " bytes"));
  }
  size_t max = s.attributes ? kMaxSignedAttributes : 64;
  if (s.payload.empty() || s.payload.size() > max) {
    return Err(Status::InvalidArgument(std::string(s.attributes ? "signed attributes" : "digest") +
                                       " empty or longer than " + std::to_string(max) + " bytes"));
  }
  return Payload(s.attributes ? MessageType::kSignAttributesRequest : MessageType::kSignDigestRequest,
                 {s.key, U8Field(AlgByte(s.alg)), s.payload});
}

Result<std::string> EncodeAnswer(const Answer& answer) {
  if (const auto* e = std::get_if<ErrorAnswer>(&answer)) {
    Code code = e->code == Code::kOk ? Code::kInternal : e->code;
    return Payload(MessageType::kErrorAnswer,
                   {U8Field(static_cast<uint8_t>(code)), Truncated(e->message)});
  }
  if (const auto* s = std::get_if<StatusAnswer>(&answer)) {
    if (s->keys.size() > kMaxStatusKeys) {
      return Err(Status::InvalidArgument("more than " + std::to_string(kMaxStatusKeys) + " keys"));
    }
    std::vector<std::string> fields{U8Field(s->token_present), U8Field(s->logged_in),
                                    Truncated(s->detail)};
    for (const auto& k : s->keys) {
      if (k.key.empty() || k.key.size() > kMaxKeyRef) {
        return Err(Status::InvalidArgument("key reference is empty or too long"));
      }
      fields.push_back(k.key);
      fields.push_back(U8Field(k.certificate));
      fields.push_back(I64Field(k.not_after));
    }
    return Payload(MessageType::kStatusAnswer, fields);
  }
  if (const auto* c = std::get_if<CertificateAnswer>(&answer)) {
    if (c->der.empty() || c->der.size() > kMaxCertificate) {
      return Err(Status::InvalidArgument("certificate empty or larger than " +
                                         std::to_string(kMaxCertificate) + " bytes"));
    }
    return Payload(MessageType::kCertificateAnswer, {c->der});
  }
  const auto& g = std::get<SignatureAnswer>(answer);
  if (g.signature.empty() || g.signature.size() > kMaxSignature) {
    return Err(Status::InvalidArgument("signature empty or larger than " +
                                       std::to_string(kMaxSignature) + " bytes"));
  }
  return Payload(MessageType::kSignatureAnswer, {g.signature});
}

Result<Request> DecodeRequest(std::string_view payload) {
  SP_ASSIGN(raw, Split(payload, "request"));
  switch (raw.type) {
    case MessageType::kStatusRequest: {
      FieldReader r(raw, "signer status request");
      SP_RETURN_IF_ERROR(r.Count(0));
      return StatusRequest{};
    }
    case MessageType::kCertificateRequest: {
      FieldReader r(raw, "signer certificate request");
      SP_RETURN_IF_ERROR(r.Count(1));
      SP_ASSIGN(key, r.Bytes(0, "key", kMaxKeyRef));
      return CertificateRequest{std::move(key)};
    }
    case MessageType::kSignAttributesRequest:
    case MessageType::kSignDigestRequest: {
      bool attrs = raw.type == MessageType::kSignAttributesRequest;
      FieldReader r(raw, attrs ? "signer sign request" : "signer digest request");
      SP_RETURN_IF_ERROR(r.Count(3));
      SP_ASSIGN(key, r.Bytes(0, "key", kMaxKeyRef));
      SP_ASSIGN(alg, r.Alg(1));
      SP_ASSIGN(data, r.Bytes(2, attrs ? "signed attributes" : "digest",
                              attrs ? kMaxSignedAttributes : 64));
      return SignRequest{std::move(key), alg, std::move(data), attrs};
    }
    default:
      return Err(Status::DataError("signer request: unknown message type " +
                                   std::to_string(static_cast<unsigned>(raw.type))));
  }
}

Result<Answer> DecodeAnswer(std::string_view payload) {
  SP_ASSIGN(raw, Split(payload, "answer"));
  switch (raw.type) {
    case MessageType::kErrorAnswer: {
      FieldReader r(raw, "signer error answer");
      SP_RETURN_IF_ERROR(r.Count(2));
      if (raw.fields[0].size() != 1) return Err(Status::DataError(r.name() + ": bad code field"));
      auto code = static_cast<unsigned char>(raw.fields[0][0]);
      if (code == 0 || code > static_cast<unsigned>(Code::kFailedPrecondition)) {
        return Err(Status::DataError(r.name() + ": unknown code " + std::to_string(code)));
      }
      SP_ASSIGN(text, r.Bytes(1, "message", kMaxMessage, /*allow_empty=*/true));
      return ErrorAnswer{static_cast<Code>(code), std::move(text)};
    }
    case MessageType::kStatusAnswer: {
      FieldReader r(raw, "signer status answer");
      if (raw.fields.size() < 3 || (raw.fields.size() - 3) % 3 != 0) {
        return Err(Status::DataError(r.name() + ": " + std::to_string(raw.fields.size()) +
                                     " fields, expected 3 + 3 per key"));
      }
      StatusAnswer s;
      SP_ASSIGN(present, r.Bool(0, "token-present"));
      SP_ASSIGN(logged, r.Bool(1, "logged-in"));
      SP_ASSIGN(detail, r.Bytes(2, "detail", kMaxMessage, /*allow_empty=*/true));
      s.token_present = present;
      s.logged_in = logged;
      s.detail = std::move(detail);
      for (size_t i = 3; i < raw.fields.size(); i += 3) {
        SP_ASSIGN(key, r.Bytes(i, "key", kMaxKeyRef));
        SP_ASSIGN(has, r.Bool(i + 1, "certificate-known"));
        SP_ASSIGN(not_after, r.I64(i + 2, "not-after"));
        s.keys.push_back(KeyStatus{std::move(key), has, not_after});
      }
      return s;
    }
    case MessageType::kCertificateAnswer: {
      FieldReader r(raw, "signer certificate answer");
      SP_RETURN_IF_ERROR(r.Count(1));
      SP_ASSIGN(der, r.Bytes(0, "certificate", kMaxCertificate));
      return CertificateAnswer{std::move(der)};
    }
    case MessageType::kSignatureAnswer: {
      FieldReader r(raw, "signer signature answer");
      SP_RETURN_IF_ERROR(r.Count(1));
      SP_ASSIGN(sig, r.Bytes(0, "signature", kMaxSignature));
      return SignatureAnswer{std::move(sig)};
    }
    default:
      return Err(Status::DataError("signer answer: unknown message type " +
                                   std::to_string(static_cast<unsigned>(raw.type))));
  }
}

std::string Frame(std::string_view payload) {
  std::string out;
  out.reserve(4 + payload.size());
  PutU32(out, static_cast<uint32_t>(payload.size()));
  out.append(payload);
  return out;
}

Result<size_t> DecodeFrameLength(std::string_view prefix4) {
  if (prefix4.size() != 4) return Err(Status::DataError("signer frame: truncated length prefix"));
  uint32_t len = GetU32(prefix4);
  if (len == 0) return Err(Status::DataError("signer frame: empty frame"));
  if (len > kMaxFrame) {
    return Err(Status::DataError("signer frame: " + std::to_string(len) + " bytes, at most " +
                                 std::to_string(kMaxFrame) + " allowed"));
  }
  return static_cast<size_t>(len);
}

}  // namespace sealpost::signer
