// SoftHSM2 test tokens, PIN files, module allowlists and the fault-injecting
// PKCS#11 module, for every test that needs a real token.
//
// Usage (one SoftHsm per test process, created before anything loads the
// module: SoftHSM reads SOFTHSM2_CONF once, in C_Initialize):
//
//   sealpost::testing::SoftHsm hsm;                       // temp dir + SOFTHSM2_CONF
//   ASSERT_TRUE(hsm.InitToken("union-seal", "so-pin", "1234"));
//   TestCa ca = TestCa::CreateRoot("/CN=Test Root/O=Test/C=VN");
//   auto issued = hsm.AddKeyWithCert("union-seal", "1234", ca, KeyType::kP256, "01", "seal");
//   ASSERT_TRUE(issued.has_value());                     // issued->cert, issued->key (software copy)
//   std::string uri = hsm.KeyUri("union-seal", "seal");  // pkcs11:token=...;object=...;type=private?module-path=...
//   std::string pin = hsm.WritePinFile("1234\n");        // a 0600 file in the temp dir
//   pkcs11::OpenOptions o; o.pin_file = pin; o.interactive = false;
//   auto signer = pkcs11::OpenTokenSigner(uri, o);
//
// The fault module (tests/fault_pkcs11, only in builds that have it):
//
//   FaultModule fault(hsm);                  // control + counter files, env vars, allowlist
//   std::string uri = hsm.KeyUri("union-seal", "seal", fault.module_path());
//   fault.Set("fail.C_Login=CKR_PIN_INCORRECT\n");
//   ... EXPECT_EQ(fault.Count("C_Login"), 1);
//
// Thread-safety: none; use from the test's main thread. All helpers report
// failures as ::testing::AssertionResult (or an empty optional plus
// ADD_FAILURE), never by throwing.
#ifndef SEALPOST_TESTS_SUPPORT_SOFTHSM_H_
#define SEALPOST_TESTS_SUPPORT_SOFTHSM_H_

#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/openssl.h"
#include "tests/support/test_pki.h"

namespace sealpost::testing {

// Debian's path of the SoftHSM2 module (a symlink into x86_64-linux-gnu/).
inline constexpr char kSoftHsmModule[] = "/usr/lib/softhsm/libsofthsm2.so";

// Environment variable naming the module allowlist file (see docs/tokens.md).
inline constexpr char kAllowlistEnv[] = "SEALPOST_PKCS11_ALLOWLIST";

// Percent-encodes a PKCS#11 URI attribute value (RFC 7512 pchar/qchar rules:
// everything but unreserved characters is %XX-encoded; UTF-8 bytes too).
std::string UriEscape(const std::string& value);

class SoftHsm {
 public:
  // Creates a temporary directory with softhsm2.conf and tokens/, and sets
  // SOFTHSM2_CONF for this process (and its children).
  SoftHsm();
  SoftHsm(const SoftHsm&) = delete;
  SoftHsm& operator=(const SoftHsm&) = delete;

  const std::string& dir() const { return dir_.path(); }
  std::string conf_path() const { return dir_.file("softhsm2.conf"); }
  // A path inside the temp dir (for PIN files, CSRs, ...).
  std::string file(const std::string& name) const { return dir_.file(name); }

  // softhsm2-util --init-token --free.
  ::testing::AssertionResult InitToken(const std::string& label, const std::string& so_pin,
                                       const std::string& pin);

  // Imports a private key (and its public key) under `id_hex` / `object_label`.
  ::testing::AssertionResult ImportKey(const std::string& token_label, const std::string& pin,
                                       EVP_PKEY* key, const std::string& id_hex,
                                       const std::string& object_label);

  // Writes a certificate object with CKA_ID `id_hex` and CKA_LABEL `object_label`.
  ::testing::AssertionResult ImportCert(const std::string& token_label, const std::string& pin,
                                        X509* cert, const std::string& id_hex,
                                        const std::string& object_label);

  // Generates a key of `type`, has `ca` issue a certificate for it per `spec`,
  // imports both under the same id and label. Returns the certificate and a
  // software copy of the key; nullopt (with ADD_FAILURE) on error.
  std::optional<Issued> AddKeyWithCert(const std::string& token_label, const std::string& pin,
                                       TestCa& ca, KeyType type, const std::string& id_hex,
                                       const std::string& object_label,
                                       const CertSpec& spec = CertSpec());

  // "pkcs11:token=<t>;object=<o>;type=private?module-path=<module>".
  std::string KeyUri(const std::string& token, const std::string& object,
                     const std::string& module = kSoftHsmModule) const;

  // Writes `content` (a PIN with whatever line end the test wants) to a 0600
  // file in the temp dir and returns its path. Each call makes a new file.
  std::string WritePinFile(const std::string& content);

  // Writes an allowlist file (one module path a line) into the temp dir and
  // points SEALPOST_PKCS11_ALLOWLIST at it. Returns the file's path.
  std::string UseAllowlist(const std::vector<std::string>& modules);

 private:
  TempDir dir_;
  int pin_files_ = 0;
};

// The fault-injecting module (tests/fault_pkcs11) in front of SoftHSM2.
// Construction sets SEALPOST_FAULT_CONTROL / SEALPOST_FAULT_COUNTERS /
// SEALPOST_FAULT_TARGET and an allowlist holding SoftHSM2 and the fault
// module. The control file is re-read by the module on every call; format,
// one `key=value` a line:
//   fail.<C_Function>=CKR_NAME|0xHEX   return that code instead of calling SoftHSM
//   flags.add=CKF_USER_PIN_FINAL_TRY,CKF_USER_PIN_LOCKED,CKF_USER_PIN_COUNT_LOW
//                                      OR these into C_GetTokenInfo's flags
//   hang.<C_Function>=SECONDS          sleep that long before the call
//   removed=1                          the token is "pulled out": no token in
//                                      any slot, session calls fail with
//                                      CKR_DEVICE_REMOVED / TOKEN_NOT_PRESENT
// Counters: the module rewrites a file of "C_Function N" lines after each call.
class FaultModule {
 public:
  explicit FaultModule(SoftHsm& hsm);
  // False (and the caller should GTEST_SKIP) when the build has no fault module.
  static bool Available();
  std::string module_path() const;
  const std::string& control_path() const { return control_; }
  // Replaces the control file's content.
  void Set(const std::string& control);
  // Calls of `function` so far (0 if never called).
  int Count(const std::string& function) const;
  // Forgets all counts.
  void ResetCounts();

 private:
  std::string control_;
  std::string counters_;
};

}  // namespace sealpost::testing

#endif  // SEALPOST_TESTS_SUPPORT_SOFTHSM_H_
