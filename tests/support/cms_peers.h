// The stock tools that check and make detached CMS signatures — openssl cms,
// gpgsm (GnuPG 2.2) and GnuTLS certtool — driven from tests. Each check
// returns an AssertionResult carrying the tool's output on failure.
//
// Thread-safety: none; use from the test's main thread.
#ifndef SEALPOST_TESTS_SUPPORT_CMS_PEERS_H_
#define SEALPOST_TESTS_SUPPORT_CMS_PEERS_H_

#include <string>

#include <gtest/gtest.h>

#include "base/openssl.h"
#include "tests/support/test_pki.h"

namespace sealpost::testing {

// `openssl cms -verify -binary -inform DER -in sig -content content -CAfile
// ca_pem -purpose any -out /dev/null <extra>`; success means exit 0 and
// "Verification successful".
::testing::AssertionResult OpensslCmsVerifies(const std::string& sig, const std::string& content,
                                              const std::string& ca_pem,
                                              const std::string& extra = "");

// `certtool --p7-verify`: certtool exits 0 if any ONE signer verifies, so
// this requires exactly `signers` "Signature status: ok" lines and no other
// status line.
::testing::AssertionResult CerttoolVerifiesAll(const std::string& sig, const std::string& content,
                                               const std::string& ca_pem, int signers);

// `openssl cms -sign -binary -outform DER` (detached) with extra flags
// (e.g. "-cades -md sha384").
::testing::AssertionResult OpensslCmsSign(const std::string& content, const std::string& out,
                                          const std::string& cert_pem, const std::string& key_pem,
                                          const std::string& extra = "");

// `certtool --p7-detached-sign --p7-time --hash SHA256`, DER output.
::testing::AssertionResult CerttoolSign(const std::string& content, const std::string& out,
                                        const std::string& cert_pem, const std::string& key_pem);

// A throwaway GNUPGHOME (inside `dir`) for gpgsm: CRL checks off, loopback
// pinentry allowed. The destructor stops the gpg-agent it started.
class GpgsmHome {
 public:
  explicit GpgsmHome(const std::string& dir);
  ~GpgsmHome();
  GpgsmHome(const GpgsmHome&) = delete;
  GpgsmHome& operator=(const GpgsmHome&) = delete;

  // Imports `ca` and marks it trusted in trustlist.txt.
  ::testing::AssertionResult TrustCa(X509* ca);
  // Imports a signing identity (as a legacy-encrypted PKCS#12, no password).
  ::testing::AssertionResult ImportIdentity(X509* cert, EVP_PKEY* key);
  // `gpgsm --verify sig content`: exactly `signers` GOODSIG status lines and
  // no BADSIG/ERRSIG, exit 0.
  ::testing::AssertionResult Verifies(const std::string& sig, const std::string& content,
                                      int signers);
  // `gpgsm --detach-sign` (binary) with the identity of `cert`.
  ::testing::AssertionResult DetachSign(const std::string& content, const std::string& out,
                                        X509* cert);

 private:
  std::string Env() const;
  std::string home_;
};

}  // namespace sealpost::testing

#endif  // SEALPOST_TESTS_SUPPORT_CMS_PEERS_H_
