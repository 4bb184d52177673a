// A throwaway PKI for tests: keys, CAs, end-entity certificates and CRLs made
// in-process with OpenSSL, plus a temporary directory that removes itself.
#ifndef SEALPOST_TESTS_SUPPORT_TEST_PKI_H_
#define SEALPOST_TESTS_SUPPORT_TEST_PKI_H_

#include <ctime>
#include <ostream>
#include <string>
#include <vector>

#include "base/openssl.h"
#include "base/status.h"
#include "crypto/verify.h"

namespace sealpost::testing {

enum class KeyType { kRsa2048, kRsa3072, kP256, kP384 };
const char* KeyTypeName(KeyType t);
// GoogleTest prints parameters with this ("P256", not "4-byte object <03-00 00-00>").
inline void PrintTo(KeyType t, std::ostream* os) { *os << KeyTypeName(t); }
EvpPkeyPtr GenerateKey(KeyType type);

struct CertSpec {
  // OpenSSL one-line form, UTF-8: "/CN=Nguyễn Thị Duyên/O=Công đoàn Bãi Cháy/C=VN".
  std::string subject = "/CN=Test Signer/O=Test Union/C=VN";
  bool ca = false;
  int path_len = -1;  // CAs only; -1: no pathLenConstraint
  // X509v3 config strings, "" for none.
  std::string key_usage = "critical,digitalSignature,nonRepudiation";
  std::string ext_key_usage;  // e.g. "clientAuth,1.3.6.1.4.1.311.10.3.12"
  std::string crl_dp;         // e.g. "URI:http://127.0.0.1/ca.crl"
  std::string email;          // rfc822Name subjectAltName
  std::string subject_alt_name;  // X509v3 config, e.g. "IP:127.0.0.1,DNS:localhost" (not with email)
  long not_before_offset = -3600;        // seconds from now
  long not_after_offset = 365L * 86400;  // seconds from now
  long serial = 0;                       // 0: a fresh one
};

struct Issued {
  X509Ptr cert;
  EvpPkeyPtr key;
};

// A certificate authority: its key and self-signed or issued certificate.
class TestCa {
 public:
  static TestCa CreateRoot(const std::string& subject, KeyType type = KeyType::kP256);

  // An intermediate CA issued by this one.
  TestCa CreateIntermediate(const std::string& subject, KeyType type = KeyType::kP256);

  // Issues a certificate for a new key of `type` (or for `key`, if given).
  Issued Issue(const CertSpec& spec, KeyType type = KeyType::kP256);
  X509Ptr IssueFor(const CertSpec& spec, EVP_PKEY* subject_key);

  // A CRL listing `revoked` serials, thisUpdate now-1h, nextUpdate +days;
  // each revoked at `revoked_at` (0: now-30min).
  X509CrlPtr MakeCrl(const std::vector<long>& revoked, long next_update_days = 30,
                     std::time_t revoked_at = 0);

  X509* cert() const { return cert_.get(); }
  EVP_PKEY* key() const { return key_.get(); }

 private:
  TestCa(X509Ptr cert, EvpPkeyPtr key) : cert_(std::move(cert)), key_(std::move(key)) {}
  X509Ptr cert_;
  EvpPkeyPtr key_;
};

std::string CertToPem(X509* cert);
std::string CertToDer(X509* cert);
std::string CrlToPem(X509_CRL* crl);
std::string CrlToDer(X509_CRL* crl);
std::string KeyToPkcs8Pem(EVP_PKEY* key);  // unencrypted
std::string KeyToPkcs8Der(EVP_PKEY* key);

// SHA-256 of the certificate's DER, lower-case hex (a policy's trust anchor
// `sha256`, a client certificate's `sha256`).
std::string CertSha256Hex(X509* cert);
// SHA-256 of its SubjectPublicKeyInfo DER, lower-case hex (a policy's
// `spki_sha256`, as policies::IdentityFromCertificate computes it).
std::string SpkiSha256Hex(X509* cert);

// A Verifier trusting the one CA certificate in `ca_pem_path` (no CRLs).
Result<crypto::Verifier> VerifierForAnchor(const std::string& ca_pem_path);

// The policy YAML lines shared by the daemon's unit tests: `officers:` with
// the chair of union ldld-thu (certificate by `chair_spki_sha256`, mandate
// from 2020-01-01), then `document_types:` with `directive` (district ->
// children, the chair + the seal, text/plain up to 1 MiB, reference
// "{seq}/{year}/CT-{union}"). More types may be appended.
std::string ChairAndDirectiveYaml(const std::string& chair_spki_sha256);

// Writes a file (test helper: aborts the test on failure via ADD_FAILURE).
void WriteTestFile(const std::string& path, const std::string& data);
std::string ReadTestFile(const std::string& path);

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Runs a shell command; returns its exit status, stdout+stderr in *output.
int RunCommand(const std::string& cmd, std::string* output = nullptr);

// Single-quotes a string for /bin/sh.
std::string ShellQuote(const std::string& s);

// The string value of the first `"key":"..."` at or after `from` in a JSON
// answer (no escapes expected); "" if none. `at` (if given): where its
// closing quote is (npos if none).
std::string JsonField(const std::string& json, const std::string& key, size_t from = 0,
                      size_t* at = nullptr);

}  // namespace sealpost::testing

#endif  // SEALPOST_TESTS_SUPPORT_TEST_PKI_H_
