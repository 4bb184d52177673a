#include "tests/support/softhsm.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

namespace sealpost::testing {
namespace {

::testing::AssertionResult Run(const std::string& what, const std::string& cmd) {
  std::string out;
  int rc = RunCommand(cmd, &out);
  if (rc != 0) {
    return ::testing::AssertionFailure() << what << " failed (exit " << rc << "): " << out;
  }
  return ::testing::AssertionSuccess();
}

void WritePrivateFile(const std::string& path, const std::string& data) {
  WriteTestFile(path, data);
  ::chmod(path.c_str(), 0600);
}

}  // namespace

std::string UriEscape(const std::string& value) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                      (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

SoftHsm::SoftHsm() {
  std::string tokens = dir_.file("tokens");
  ::mkdir(tokens.c_str(), 0700);
  WriteTestFile(conf_path(), "directories.tokendir = " + tokens +
                                 "\nobjectstore.backend = file\nlog.level = ERROR\n"
                                 );
  ::setenv("SOFTHSM2_CONF", conf_path().c_str(), 1);
}

::testing::AssertionResult SoftHsm::InitToken(const std::string& label, const std::string& so_pin,
                                              const std::string& pin) {
  return Run("softhsm2-util --init-token",
             "softhsm2-util --init-token --free --label " + ShellQuote(label) + " --so-pin " +
                 ShellQuote(so_pin) + " --pin " + ShellQuote(pin));
}

::testing::AssertionResult SoftHsm::ImportKey(const std::string& token_label,
                                              const std::string& pin, EVP_PKEY* key,
                                              const std::string& id_hex,
                                              const std::string& object_label) {
  std::string path = dir_.file("import-" + id_hex + ".pk8");
  WritePrivateFile(path, KeyToPkcs8Pem(key));
  auto r = Run("softhsm2-util --import",
               "softhsm2-util --import " + ShellQuote(path) + " --token " +
                   ShellQuote(token_label) + " --label " + ShellQuote(object_label) + " --id " +
                   ShellQuote(id_hex) + " --pin " + ShellQuote(pin));
  std::remove(path.c_str());
  return r;
}

::testing::AssertionResult SoftHsm::ImportCert(const std::string& token_label,
                                               const std::string& pin, X509* cert,
                                               const std::string& id_hex,
                                               const std::string& object_label) {
  std::string path = dir_.file("import-" + id_hex + ".der");
  WriteTestFile(path, CertToDer(cert));
  auto r = Run("pkcs11-tool --write-object",
               std::string("pkcs11-tool --module ") + kSoftHsmModule + " --token-label " +
                   ShellQuote(token_label) + " --login --pin " + ShellQuote(pin) +
                   " --write-object " + ShellQuote(path) + " --type cert --id " +
                   ShellQuote(id_hex) + " --label " + ShellQuote(object_label));
  std::remove(path.c_str());
  return r;
}

std::optional<Issued> SoftHsm::AddKeyWithCert(const std::string& token_label,
                                              const std::string& pin, TestCa& ca, KeyType type,
                                              const std::string& id_hex,
                                              const std::string& object_label,
                                              const CertSpec& spec) {
  EvpPkeyPtr key = GenerateKey(type);
  if (!key) {
    ADD_FAILURE() << "GenerateKey failed";
    return std::nullopt;
  }
  X509Ptr cert = ca.IssueFor(spec, key.get());
  if (!cert) {
    ADD_FAILURE() << "IssueFor failed";
    return std::nullopt;
  }
  auto k = ImportKey(token_label, pin, key.get(), id_hex, object_label);
  if (!k) {
    ADD_FAILURE() << k.message();
    return std::nullopt;
  }
  auto c = ImportCert(token_label, pin, cert.get(), id_hex, object_label);
  if (!c) {
    ADD_FAILURE() << c.message();
    return std::nullopt;
  }
  return Issued{std::move(cert), std::move(key)};
}

std::string SoftHsm::KeyUri(const std::string& token, const std::string& object,
                            const std::string& module) const {
  return "pkcs11:token=" + UriEscape(token) + ";object=" + UriEscape(object) +
         ";type=private?module-path=" + UriEscape(module);
}

std::string SoftHsm::WritePinFile(const std::string& content) {
  std::string path = dir_.file("pin-" + std::to_string(++pin_files_));
  WritePrivateFile(path, content);
  return path;
}

std::string SoftHsm::UseAllowlist(const std::vector<std::string>& modules) {
  std::string text = "# test allowlist\n";
  for (const auto& m : modules) text += m + "\n";
  std::string path = dir_.file("pkcs11-modules.allow");
  WriteTestFile(path, text);
  ::setenv(kAllowlistEnv, path.c_str(), 1);
  return path;
}

FaultModule::FaultModule(SoftHsm& hsm)
    : control_(hsm.file("fault.control")), counters_(hsm.file("fault.counters")) {
  WriteTestFile(control_, "");
  ::setenv("SEALPOST_FAULT_CONTROL", control_.c_str(), 1);
  ::setenv("SEALPOST_FAULT_COUNTERS", counters_.c_str(), 1);
  ::setenv("SEALPOST_FAULT_TARGET", kSoftHsmModule, 1);
  hsm.UseAllowlist({kSoftHsmModule, module_path()});
}

bool FaultModule::Available() {
#ifdef SEALPOST_FAULT_MODULE_PATH
  return true;
#else
  return false;
#endif
}

std::string FaultModule::module_path() const {
#ifdef SEALPOST_FAULT_MODULE_PATH
  return SEALPOST_FAULT_MODULE_PATH;
#else
  return "";
#endif
}

void FaultModule::Set(const std::string& control) {
  // Write then rename, so the module never reads a half-written file.
  std::string tmp = control_ + ".tmp";
  WriteTestFile(tmp, control);
  std::rename(tmp.c_str(), control_.c_str());
}

int FaultModule::Count(const std::string& function) const {
  std::ifstream in(counters_);
  std::string name;
  int n = 0;
  while (in >> name >> n) {
    if (name == function) return n;
  }
  return 0;
}

void FaultModule::ResetCounts() {
  // The module keeps counts in memory and adds to them; it resets when the
  // counter file disappears.
  std::remove(counters_.c_str());
}

}  // namespace sealpost::testing
