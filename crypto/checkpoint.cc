#include "base/utf8.h"
#include "crypto/checkpoint.h"

#include <charconv>

#include <openssl/cms.h>
#include <openssl/err.h>

#include "base/encoding.h"
#include "crypto/cades_sign.h"
#include "crypto/digest.h"

namespace sealpost::crypto {
namespace {


Status LineError(std::string_view source, size_t line, std::string_view what) {
  return Status::DataError(std::string(source) + ": checkpoint line " + std::to_string(line) +
                           ": " + std::string(what));
}

}  // namespace

Result<std::string> SerializeCheckpoint(const Checkpoint& cp) {
  if (cp.origin.empty() || !IsCleanUtf8Text(cp.origin)) {
    return Err(Status::InvalidArgument(
        "checkpoint origin must be a non-empty line of UTF-8 without control characters"));
  }
  if (cp.extensions.size() > kCheckpointMaxExtensions) {
    return Err(Status::InvalidArgument("checkpoint has more than " +
                                       std::to_string(kCheckpointMaxExtensions) + " extensions"));
  }
  std::string out = cp.origin + "\n" + std::to_string(cp.size) + "\n" +
                    Base64Encode(std::string_view(reinterpret_cast<const char*>(cp.root.data()),
                                                  cp.root.size())) +
                    "\n";
  for (const std::string& ext : cp.extensions) {
    if (ext.empty() || !IsCleanUtf8Text(ext)) {
      return Err(Status::InvalidArgument(
          "checkpoint extension lines must be non-empty UTF-8 without control characters"));
    }
    out += ext + "\n";
  }
  if (out.size() > kCheckpointMaxBytes) {
    return Err(Status::InvalidArgument("checkpoint body would exceed " +
                                       std::to_string(kCheckpointMaxBytes) + " bytes"));
  }
  return out;
}

Result<Checkpoint> ParseCheckpoint(std::string_view body, std::string_view source) {
  if (body.size() > kCheckpointMaxBytes) {
    return Err(Status::DataError(std::string(source) + ": checkpoint is larger than " +
                                 std::to_string(kCheckpointMaxBytes) + " bytes"));
  }
  if (body.empty() || body.back() != '\n') {
    return Err(Status::DataError(std::string(source) +
                                 ": checkpoint is empty or its last line does not end in \\n"));
  }
  std::vector<std::string_view> lines;
  for (size_t pos = 0; pos < body.size();) {
    size_t nl = body.find('\n', pos);
    lines.push_back(body.substr(pos, nl - pos));
    pos = nl + 1;
  }
  if (lines.size() < 3) {
    return Err(Status::DataError(std::string(source) +
                                 ": checkpoint needs origin, tree size and root hash lines, got " +
                                 std::to_string(lines.size()) + " line(s)"));
  }
  if (lines.size() - 3 > kCheckpointMaxExtensions) {
    return Err(Status::DataError(std::string(source) + ": checkpoint has more than " +
                                 std::to_string(kCheckpointMaxExtensions) + " extension lines"));
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty()) return Err(LineError(source, i + 1, "empty line"));
    if (!IsCleanUtf8Text(lines[i])) {
      return Err(LineError(source, i + 1, "invalid UTF-8 or a control character (\\r?)"));
    }
  }
  Checkpoint cp;
  cp.origin = std::string(lines[0]);

  std::string_view size = lines[1];
  if (size.size() > 1 && size[0] == '0') return Err(LineError(source, 2, "tree size has a leading zero"));
  for (char c : size) {
    if (c < '0' || c > '9') return Err(LineError(source, 2, "tree size is not a decimal number"));
  }
  auto [end, ec] = std::from_chars(size.data(), size.data() + size.size(), cp.size);
  if (ec != std::errc() || end != size.data() + size.size()) {
    return Err(LineError(source, 2, "tree size is out of range"));
  }

  auto root = Base64Decode(lines[2]);
  if (!root.has_value()) return Err(LineError(source, 3, "root hash is not base64"));
  if (root->size() != merkle::kHashSize) {
    return Err(LineError(source, 3, "root hash is " + std::to_string(root->size()) +
                                        " bytes, not 32"));
  }
  if (Base64Encode(*root) != lines[2]) {
    return Err(LineError(source, 3, "root hash is not in canonical base64"));
  }
  std::copy(root->begin(), root->end(), cp.root.begin());
  for (size_t i = 3; i < lines.size(); ++i) cp.extensions.emplace_back(lines[i]);
  return cp;
}

Result<std::string> SignCheckpoint(Signer& signer, const KeyRef& key, std::string_view body) {
  auto cert = signer.Certificate(key);
  if (!cert.has_value()) return Err(cert.error().WithContext("checkpoint signing"));
  auto alg = DigestAlgForKey(X509_get0_pubkey(cert->get()));
  if (!alg.has_value()) return Err(alg.error().WithContext("checkpoint signing"));
  auto digest = DigestBytes(DigestAlgMd(*alg), body);
  if (!digest.has_value()) return Err(digest.error());
  auto sig = BuildDetachedSignature(signer, key, cert->get(), *alg, *digest, CadesSignOptions{});
  if (!sig.has_value()) return Err(sig.error().WithContext("checkpoint signing"));
  return sig;
}

Status VerifyCheckpointSignature(std::string_view body, std::string_view signature_der,
                                 X509* seal, std::string_view source) {
  if (seal == nullptr) return Status::InvalidArgument("no seal certificate given");
  const std::string src(source);
  const unsigned char* p = reinterpret_cast<const unsigned char*>(signature_der.data());
  CmsPtr cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(signature_der.size())));
  if (!cms) return OpenSslStatus(Code::kDataError, src + ": checkpoint signature is not DER CMS");
  if (p != reinterpret_cast<const unsigned char*>(signature_der.data()) + signature_der.size()) {
    return Status::DataError(src + ": trailing bytes after the checkpoint signature");
  }
  if (OBJ_obj2nid(CMS_get0_type(cms.get())) != NID_pkcs7_signed) {
    return Status::DataError(src + ": checkpoint signature is not a CMS SignedData");
  }
  if (CMS_is_detached(cms.get()) != 1) {
    return Status::DataError(src + ": checkpoint signature is not detached");
  }
  STACK_OF(CMS_SignerInfo)* infos = CMS_get0_SignerInfos(cms.get());
  if (sk_CMS_SignerInfo_num(infos) != 1) {
    return Status::DataError(src + ": checkpoint signature must have exactly one signer, has " +
                             std::to_string(sk_CMS_SignerInfo_num(infos)));
  }
  // The expected seal is handed to CMS_verify as the only candidate signer
  // certificate; CMS_set1_signers_certs prefers it over embedded ones, and
  // the comparison below rejects a signer that is not the seal.
  X509StackPtr certs(sk_X509_new_null());
  if (!certs || sk_X509_push(certs.get(), seal) == 0) {
    return OpenSslStatus(Code::kInternal, "cannot build certificate list");
  }
  X509_up_ref(seal);
  BioPtr content(BIO_new_mem_buf(body.data(), static_cast<int>(body.size())));
  if (!content) return OpenSslStatus(Code::kInternal, "cannot wrap checkpoint body");
  ClearOpenSslErrors();
  if (CMS_verify(cms.get(), certs.get(), nullptr, content.get(), nullptr,
                 CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
    return OpenSslStatus(Code::kFailedPrecondition,
                         src + ": checkpoint signature does not verify with the seal certificate");
  }
  // CMS_get0_signers returns borrowed certificates in a new stack: the
  // deleter frees only the stack.
  struct StackOnlyDeleter {
    void operator()(STACK_OF(X509)* s) const { sk_X509_free(s); }
  };
  std::unique_ptr<STACK_OF(X509), StackOnlyDeleter> signers(CMS_get0_signers(cms.get()));
  if (!signers || sk_X509_num(signers.get()) != 1 ||
      X509_cmp(sk_X509_value(signers.get(), 0), seal) != 0) {
    return Status::FailedPrecondition(src + ": checkpoint is signed by a certificate other than "
                                      "the seal");
  }
  return Status::Ok();
}

}  // namespace sealpost::crypto
