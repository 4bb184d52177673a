#include "tests/support/test_pki.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/wait.h>

#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "base/encoding.h"

namespace sealpost::testing {
namespace {

void Check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test PKI: ") + what + ": " + DrainOpenSslErrors());
}

std::atomic<long> g_serial{1000};

long NextSerial() {
  // Random high part so two runs never collide in a shared trust store.
  static const long base = [] {
    unsigned int r = 0;
    RAND_bytes(reinterpret_cast<unsigned char*>(&r), sizeof r);
    return static_cast<long>(r % 1000000) * 1000000L;
  }();
  return base + g_serial++;
}

X509NamePtr ParseSubject(const std::string& s) {
  X509NamePtr name(X509_NAME_new());
  Check(name != nullptr, "X509_NAME_new");
  // "/K=V/K=V": split on unescaped '/'.
  size_t i = 0;
  Check(!s.empty() && s[0] == '/', "subject must start with '/'");
  while (i < s.size()) {
    size_t start = i + 1;
    size_t end = s.find('/', start);
    if (end == std::string::npos) end = s.size();
    std::string part = s.substr(start, end - start);
    size_t eq = part.find('=');
    Check(eq != std::string::npos, "subject component without '='");
    std::string key = part.substr(0, eq), value = part.substr(eq + 1);
    Check(X509_NAME_add_entry_by_txt(name.get(), key.c_str(), MBSTRING_UTF8,
                                     reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1,
                                     0) == 1,
          "X509_NAME_add_entry_by_txt");
    i = end;
  }
  return name;
}

void AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  if (value.empty()) return;
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  Check(ext != nullptr, ("extension " + value).c_str());
  Check(X509_add_ext(cert, ext.get(), -1) == 1, "X509_add_ext");
}

X509Ptr MakeCert(const CertSpec& spec, EVP_PKEY* subject_key, X509* issuer_cert,
                 EVP_PKEY* issuer_key) {
  X509Ptr cert(X509_new());
  Check(cert != nullptr, "X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), spec.serial ? spec.serial : NextSerial());
  X509NamePtr subject = ParseSubject(spec.subject);
  X509_set_subject_name(cert.get(), subject.get());
  X509_set_issuer_name(cert.get(), issuer_cert ? X509_get_subject_name(issuer_cert) : subject.get());
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), spec.not_before_offset);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), spec.not_after_offset);
  Check(X509_set_pubkey(cert.get(), subject_key) == 1, "X509_set_pubkey");
  X509* iss = issuer_cert ? issuer_cert : cert.get();
  if (spec.ca) {
    std::string bc = "critical,CA:TRUE";
    if (spec.path_len >= 0) bc += ",pathlen:" + std::to_string(spec.path_len);
    AddExt(cert.get(), iss, NID_basic_constraints, bc);
  } else {
    AddExt(cert.get(), iss, NID_basic_constraints, "critical,CA:FALSE");
  }
  AddExt(cert.get(), iss, NID_key_usage, spec.key_usage);
  AddExt(cert.get(), iss, NID_ext_key_usage, spec.ext_key_usage);
  AddExt(cert.get(), iss, NID_subject_key_identifier, "hash");
  if (issuer_cert) AddExt(cert.get(), iss, NID_authority_key_identifier, "keyid:always");
  AddExt(cert.get(), iss, NID_crl_distribution_points, spec.crl_dp);
  if (!spec.email.empty()) AddExt(cert.get(), iss, NID_subject_alt_name, "email:" + spec.email);
  if (!spec.subject_alt_name.empty()) {
    AddExt(cert.get(), iss, NID_subject_alt_name, spec.subject_alt_name);
  }
  EVP_PKEY* signing_key = issuer_key ? issuer_key : subject_key;
  Check(X509_sign(cert.get(), signing_key, EVP_sha256()) > 0, "X509_sign");
  return cert;
}

}  // namespace

const char* KeyTypeName(KeyType t) {
  switch (t) {
    case KeyType::kRsa2048: return "RSA2048";
    case KeyType::kRsa3072: return "RSA3072";
    case KeyType::kP256: return "P256";
    case KeyType::kP384: return "P384";
  }
  return "?";
}

EvpPkeyPtr GenerateKey(KeyType type) {
  EVP_PKEY* k = nullptr;
  switch (type) {
    case KeyType::kRsa2048: k = EVP_RSA_gen(2048); break;
    case KeyType::kRsa3072: k = EVP_RSA_gen(3072); break;
    case KeyType::kP256: k = EVP_EC_gen("P-256"); break;
    case KeyType::kP384: k = EVP_EC_gen("P-384"); break;
  }
  Check(k != nullptr, "key generation");
  return EvpPkeyPtr(k);
}

TestCa TestCa::CreateRoot(const std::string& subject, KeyType type) {
  EvpPkeyPtr key = GenerateKey(type);
  CertSpec spec;
  spec.subject = subject;
  spec.ca = true;
  spec.key_usage = "critical,keyCertSign,cRLSign";
  spec.not_before_offset = -86400;
  spec.not_after_offset = 10L * 365 * 86400;
  X509Ptr cert = MakeCert(spec, key.get(), nullptr, nullptr);
  return TestCa(std::move(cert), std::move(key));
}

TestCa TestCa::CreateIntermediate(const std::string& subject, KeyType type) {
  EvpPkeyPtr key = GenerateKey(type);
  CertSpec spec;
  spec.subject = subject;
  spec.ca = true;
  spec.key_usage = "critical,keyCertSign,cRLSign";
  spec.not_before_offset = -86400;
  spec.not_after_offset = 5L * 365 * 86400;
  X509Ptr cert = MakeCert(spec, key.get(), cert_.get(), key_.get());
  return TestCa(std::move(cert), std::move(key));
}

Issued TestCa::Issue(const CertSpec& spec, KeyType type) {
  EvpPkeyPtr key = GenerateKey(type);
  X509Ptr cert = MakeCert(spec, key.get(), cert_.get(), key_.get());
  return Issued{std::move(cert), std::move(key)};
}

X509Ptr TestCa::IssueFor(const CertSpec& spec, EVP_PKEY* subject_key) {
  return MakeCert(spec, subject_key, cert_.get(), key_.get());
}

X509CrlPtr TestCa::MakeCrl(const std::vector<long>& revoked, long next_update_days,
                           std::time_t revoked_at) {
  X509CrlPtr crl(X509_CRL_new());
  Check(crl != nullptr, "X509_CRL_new");
  X509_CRL_set_version(crl.get(), 1);
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(cert_.get()));
  Asn1TimePtr now(X509_gmtime_adj(nullptr, -3600));
  Asn1TimePtr next(X509_gmtime_adj(nullptr, next_update_days * 86400));
  X509_CRL_set1_lastUpdate(crl.get(), now.get());
  X509_CRL_set1_nextUpdate(crl.get(), next.get());
  for (long serial : revoked) {
    X509_REVOKED* r = X509_REVOKED_new();
    Asn1IntegerPtr s(ASN1_INTEGER_new());
    ASN1_INTEGER_set(s.get(), serial);
    X509_REVOKED_set_serialNumber(r, s.get());
    Asn1TimePtr when(revoked_at != 0 ? ASN1_TIME_set(nullptr, revoked_at)
                                     : X509_gmtime_adj(nullptr, -1800));
    X509_REVOKED_set_revocationDate(r, when.get());
    X509_CRL_add0_revoked(crl.get(), r);
  }
  // CRL number (required by some peers).
  Asn1IntegerPtr number(ASN1_INTEGER_new());
  ASN1_INTEGER_set(number.get(), NextSerial());
  X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0, 0);
  X509_CRL_sort(crl.get());
  Check(X509_CRL_sign(crl.get(), key_.get(), EVP_sha256()) > 0, "X509_CRL_sign");
  return crl;
}

static std::string BioToString(BIO* bio) {
  char* p = nullptr;
  long n = BIO_get_mem_data(bio, &p);
  return std::string(p, static_cast<size_t>(n));
}

std::string CertToPem(X509* cert) {
  BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(b.get(), cert);
  return BioToString(b.get());
}
std::string CertToDer(X509* cert) {
  BioPtr b(BIO_new(BIO_s_mem()));
  i2d_X509_bio(b.get(), cert);
  return BioToString(b.get());
}
std::string CrlToPem(X509_CRL* crl) {
  BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_CRL(b.get(), crl);
  return BioToString(b.get());
}
std::string CrlToDer(X509_CRL* crl) {
  BioPtr b(BIO_new(BIO_s_mem()));
  i2d_X509_CRL_bio(b.get(), crl);
  return BioToString(b.get());
}
std::string KeyToPkcs8Pem(EVP_PKEY* key) {
  BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_PKCS8PrivateKey(b.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  return BioToString(b.get());
}
std::string KeyToPkcs8Der(EVP_PKEY* key) {
  BioPtr b(BIO_new(BIO_s_mem()));
  i2d_PKCS8PrivateKey_bio(b.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  return BioToString(b.get());
}

void WriteTestFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!f) ADD_FAILURE() << "cannot write " << path;
}

std::string JsonField(const std::string& json, const std::string& key, size_t from, size_t* at) {
  const std::string k = "\"" + key + "\":\"";
  size_t p = json.find(k, from);
  if (p == std::string::npos) {
    if (at != nullptr) *at = std::string::npos;
    return "";
  }
  p += k.size();
  const size_t e = json.find('"', p);
  if (at != nullptr) *at = e;
  return e == std::string::npos ? "" : json.substr(p, e - p);
}

std::string ReadTestFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TempDir::TempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/sealpost-test.XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

int RunCommand(const std::string& cmd, std::string* output) {
  std::string full = cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (p == nullptr) return -1;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = pclose(p);
  if (output) *output = out;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  out += "'";
  return out;
}

std::string CertSha256Hex(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &len) != 1) {
    ADD_FAILURE() << "X509_digest failed";
    return "";
  }
  return HexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
}

std::string SpkiSha256Hex(X509* cert) {
  X509_PUBKEY* pubkey = X509_get_X509_PUBKEY(cert);
  int der_len = i2d_X509_PUBKEY(pubkey, nullptr);
  if (der_len <= 0) {
    ADD_FAILURE() << "i2d_X509_PUBKEY failed";
    return "";
  }
  std::string spki(static_cast<size_t>(der_len), '\0');
  unsigned char* out = reinterpret_cast<unsigned char*>(spki.data());
  i2d_X509_PUBKEY(pubkey, &out);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(spki.data(), spki.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    ADD_FAILURE() << "EVP_Digest failed";
    return "";
  }
  return HexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
}

Result<crypto::Verifier> VerifierForAnchor(const std::string& ca_pem_path) {
  crypto::TrustFiles tf;
  tf.anchors = {ca_pem_path};
  auto trust = crypto::LoadTrustStore(tf, crypto::TrustOptions{});
  if (!trust) return Err(trust.error());
  return crypto::Verifier::Create(std::move(*trust));
}

std::string ChairAndDirectiveYaml(const std::string& chair_spki_sha256) {
  return "officers:\n"
         "  - {id: chair, name: \"Nguyễn Văn Chủ Tịch\", role: chair, union: ldld-thu,\n"
         "     certificate: {spki_sha256: \"" + chair_spki_sha256 +
         "\"}, mandate: {from: 2020-01-01}}\n"
         "document_types:\n"
         "  - {id: directive, name: \"Chỉ thị\", issuers: {levels: [district]},\n"
         "     recipients: {relations: [children]},\n"
         "     signatures: {officers: [{roles: [chair], count: 1}], seal: true},\n"
         "     max_size_bytes: 1048576, media_types: [text/plain], retention_years: 20,\n"
         "     reference: \"{seq}/{year}/CT-{union}\"}\n";
}

}  // namespace sealpost::testing
