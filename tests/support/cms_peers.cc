#include "tests/support/cms_peers.h"

#include <sys/stat.h>

#include <openssl/pkcs12.h>

#include "base/encoding.h"

namespace sealpost::testing {
namespace {

// OPENSSL_free is a macro; this is the function it stands for.
void FreeOpenSsl(void* p) { OPENSSL_free(p); }

using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;

int CountLines(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

AssertionResult Run(const std::string& cmd, std::string* out) {
  int rc = RunCommand(cmd, out);
  if (rc != 0) return AssertionFailure() << "exit " << rc << " from: " << cmd << "\n" << *out;
  return AssertionSuccess();
}

}  // namespace

AssertionResult OpensslCmsVerifies(const std::string& sig, const std::string& content,
                                   const std::string& ca_pem, const std::string& extra) {
  std::string out;
  std::string cmd = "openssl cms -verify -binary -inform DER -in " + ShellQuote(sig) +
                    " -content " + ShellQuote(content) + " -CAfile " + ShellQuote(ca_pem) +
                    " -purpose any -out /dev/null " + extra;
  AssertionResult r = Run(cmd, &out);
  if (!r) return r;
  if (out.find("Verification successful") == std::string::npos) {
    return AssertionFailure() << "no 'Verification successful' from: " << cmd << "\n" << out;
  }
  return AssertionSuccess();
}

AssertionResult CerttoolVerifiesAll(const std::string& sig, const std::string& content,
                                    const std::string& ca_pem, int signers) {
  std::string out;
  std::string cmd = "certtool --p7-verify --inder --infile " + ShellQuote(sig) + " --load-data " +
                    ShellQuote(content) + " --load-ca-certificate " + ShellQuote(ca_pem);
  int rc = RunCommand(cmd, &out);
  int statuses = CountLines(out, "Signature status:");
  int ok = CountLines(out, "Signature status: ok");
  if (rc != 0 || ok != signers || statuses != signers) {
    return AssertionFailure() << "certtool: exit " << rc << ", " << ok << " of " << statuses
                              << " signers ok, wanted " << signers << "\n" << out;
  }
  return AssertionSuccess();
}

AssertionResult OpensslCmsSign(const std::string& content, const std::string& out,
                               const std::string& cert_pem, const std::string& key_pem,
                               const std::string& extra) {
  std::string text;
  return Run("openssl cms -sign -binary -outform DER -in " + ShellQuote(content) + " -signer " +
                 ShellQuote(cert_pem) + " -inkey " + ShellQuote(key_pem) + " -out " +
                 ShellQuote(out) + " " + extra,
             &text);
}

AssertionResult CerttoolSign(const std::string& content, const std::string& out,
                             const std::string& cert_pem, const std::string& key_pem) {
  std::string text;
  return Run("certtool --p7-detached-sign --p7-time --hash SHA256 --load-privkey " +
                 ShellQuote(key_pem) + " --load-certificate " + ShellQuote(cert_pem) +
                 " --infile " + ShellQuote(content) + " --outder --outfile " + ShellQuote(out),
             &text);
}

GpgsmHome::GpgsmHome(const std::string& dir) : home_(dir + "/gnupg") {
  ::mkdir(home_.c_str(), 0700);
  WriteTestFile(home_ + "/gpgsm.conf", "disable-crl-checks\n");
  WriteTestFile(home_ + "/gpg-agent.conf", "allow-loopback-pinentry\n");
}

GpgsmHome::~GpgsmHome() { RunCommand(Env() + "gpgconf --kill all"); }

std::string GpgsmHome::Env() const { return "GNUPGHOME=" + ShellQuote(home_) + " "; }

AssertionResult GpgsmHome::TrustCa(X509* ca) {
  std::string pem = home_ + "/ca-import.pem";
  WriteTestFile(pem, CertToPem(ca));
  std::string out;
  AssertionResult r = Run(Env() + "gpgsm --batch --import " + ShellQuote(pem), &out);
  if (!r) return r;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  X509_digest(ca, EVP_sha1(), md, &len);
  std::string fpr = HexEncode(std::string_view(reinterpret_cast<char*>(md), len), true);
  std::string list = ReadTestFile(home_ + "/trustlist.txt");
  WriteTestFile(home_ + "/trustlist.txt", list + fpr + " S\n");
  return AssertionSuccess();
}

AssertionResult GpgsmHome::ImportIdentity(X509* cert, EVP_PKEY* key) {
  // gpgsm 2.2 reads only the legacy PBE-SHA1-3DES PKCS#12 encryption, and
  // with an empty passphrase it fails to decrypt about one file in twenty
  // ("decryption failed; trying charset ...", then "error parsing or
  // decrypting the PKCS#12 file"): measured on 2.2.40 by re-exporting the
  // same key, so it depends on the random salt, not on the key. A new file
  // (new salt) is made for each try; what the tests check (gpgsm's own
  // signatures and verification) starts only once the key is in.
  constexpr int kTries = 6;
  std::string out;
  for (int attempt = 1; attempt <= kTries; ++attempt) {
    std::unique_ptr<PKCS12, OsslDeleter<PKCS12_free>> p12(
        PKCS12_create("", "signer", key, cert, nullptr, NID_pbe_WithSHA1And3_Key_TripleDES_CBC,
                      NID_pbe_WithSHA1And3_Key_TripleDES_CBC, 0, 0, 0));
    if (!p12) return AssertionFailure() << "PKCS12_create: " << DrainOpenSslErrors();
    unsigned char* der = nullptr;
    int len = i2d_PKCS12(p12.get(), &der);
    std::unique_ptr<unsigned char, OsslDeleter<FreeOpenSsl>> owned(der);
    if (len <= 0) return AssertionFailure() << "i2d_PKCS12: " << DrainOpenSslErrors();
    std::string bytes(reinterpret_cast<char*>(der), static_cast<size_t>(len));
    std::string path = home_ + "/identity.p12";
    WriteTestFile(path, bytes);
    out.clear();
    int rc = RunCommand(Env() + "gpgsm --batch --pinentry-mode loopback --passphrase '' --import " +
                            ShellQuote(path),
                        &out);
    if (out.find("secret keys imported: 1") != std::string::npos) return AssertionSuccess();
    bool salt_flake = out.find("error parsing or decrypting the PKCS#12 file") != std::string::npos;
    if (!salt_flake) {
      return AssertionFailure() << "gpgsm did not import the key (exit " << rc << ")\n" << out;
    }
  }
  return AssertionFailure() << "gpgsm could not decrypt " << kTries
                            << " PKCS#12 files of the same key\n" << out;
}

AssertionResult GpgsmHome::Verifies(const std::string& sig, const std::string& content,
                                    int signers) {
  std::string out;
  std::string cmd = Env() + "gpgsm --batch --status-fd 1 --verify " + ShellQuote(sig) + " " +
                    ShellQuote(content);
  int rc = RunCommand(cmd, &out);
  int good = CountLines(out, "[GNUPG:] GOODSIG");
  int bad = CountLines(out, "[GNUPG:] BADSIG") + CountLines(out, "[GNUPG:] ERRSIG");
  if (rc != 0 || good != signers || bad != 0) {
    return AssertionFailure() << "gpgsm: exit " << rc << ", " << good << " GOODSIG, " << bad
                              << " BADSIG/ERRSIG, wanted " << signers << " good\n" << out;
  }
  return AssertionSuccess();
}

AssertionResult GpgsmHome::DetachSign(const std::string& content, const std::string& out,
                                      X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  X509_digest(cert, EVP_sha1(), md, &len);
  std::string fpr = HexEncode(std::string_view(reinterpret_cast<char*>(md), len), true);
  std::string text;
  return Run(Env() + "gpgsm --batch --pinentry-mode loopback --passphrase '' -u 0x" + fpr +
                 " --detach-sign -o " + ShellQuote(out) + " " + ShellQuote(content),
             &text);
}

}  // namespace sealpost::testing
