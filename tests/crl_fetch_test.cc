// CRLs fetched by real sealpostd processes (daemon/crls.h) from a real HTTP
// server on 127.0.0.1 (python3 -m http.server over a temporary directory):
// fetched and used for the officers' signatures at submission; a CRL that
// revokes the chair is picked up by the next round and her signature is then
// refused; an older CRL served afterwards is refused and the newer one kept;
// with the server down, health says so and the cached CRL is still used (also
// after a restart); every CRL taken is archived once as a `crl` entry.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "base/encoding.h"
#include "base/openssl.h"
#include "tests/support/federation.h"
#include "tests/support/test_pki.h"
#include "tests/support/wait.h"

namespace sealpost::testing {
namespace {

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

// python3 -m http.server on 127.0.0.1:port serving `dir`.
class HttpServer {
 public:
  HttpServer(std::string dir, int port) : dir_(std::move(dir)), port_(port) {}
  ~HttpServer() { Stop(); }
  bool Start() {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::freopen("/dev/null", "w", stderr);
      std::freopen("/dev/null", "w", stdout);
      std::string port = std::to_string(port_);
      ::execlp("python3", "python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory",
               dir_.c_str(), port.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    return pid_ > 0 && WaitFor([&] { return Accepts(); }, 15);
  }
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  bool Accepts() const {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port_));
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
  }

 private:
  std::string dir_;
  int port_;
  pid_t pid_ = -1;
};

// An HTTPS server (python3 http.server + ssl) on 127.0.0.1:port serving
// `dir` with the certificate and key given.
class HttpsServer {
 public:
  HttpsServer(std::string dir, int port, std::string cert, std::string key)
      : dir_(std::move(dir)), port_(port), cert_(std::move(cert)), key_(std::move(key)) {}
  ~HttpsServer() { Stop(); }
  bool Start() {
    static const char* kScript =
        "import functools, http.server, ssl, sys\n"
        "d, port, cert, key = sys.argv[1:5]\n"
        "h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=d)\n"
        "s = http.server.ThreadingHTTPServer(('127.0.0.1', int(port)), h)\n"
        "c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
        "c.load_cert_chain(cert, key)\n"
        "s.socket = c.wrap_socket(s.socket, server_side=True)\n"
        "s.serve_forever()\n";
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::freopen("/dev/null", "w", stderr);
      std::freopen("/dev/null", "w", stdout);
      std::string port = std::to_string(port_);
      ::execlp("python3", "python3", "-c", kScript, dir_.c_str(), port.c_str(), cert_.c_str(),
               key_.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    HttpServer probe("", port_);
    return pid_ > 0 && WaitFor([&] { return probe.Accepts(); }, 15);
  }
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  std::string dir_;
  int port_;
  std::string cert_, key_;
  pid_t pid_ = -1;
};

std::string Sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return HexEncode(std::string_view(reinterpret_cast<const char*>(md), n));
}

// The "crls":[{...}] object of the one source in a health answer.
std::string CrlHealth(const Appliance& a) {
  HttpAnswer h = a.Get("/api/v1/health", "");
  size_t p = h.body.find("\"crls\":[");
  if (h.status != 200 || p == std::string::npos) return "";
  size_t e = h.body.find(']', p);
  return h.body.substr(p, e == std::string::npos ? std::string::npos : e - p + 1);
}

void Publish(const std::string& dir, const std::string& der) {
  WriteTestFile(dir + "/ca.crl.tmp", der);
  ASSERT_EQ(::rename((dir + "/ca.crl.tmp").c_str(), (dir + "/ca.crl").c_str()), 0);
}

TEST(CrlFetchTest, FetchedRevokedOlderRefusedServerDownCachedUsedArchived) {
  TempDir www;
  const int port = FreePort();
  ASSERT_NE(port, 0);
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/ca.crl";
  FederationOptions fo;
  fo.grassroots = 1;
  fo.policy_trust_extra = "  crl_sources:\n    - {anchor: test-ca, url: \"" + url + "\"}\n";
  fo.extra_config = "crl_fetch: {interval_seconds: 1, retry_seconds: 1, timeout_seconds: 2}\n";
  auto fed = Federation::Start(fo);
  ASSERT_NE(fed, nullptr);
  Appliance& d = fed->district();

  // No server yet: the source is in error, nothing held.
  EXPECT_TRUE(WaitFor([&] { return Contains(CrlHealth(d), "\"state\":\"error\""); }, 15))
      << CrlHealth(d);

  // 1. A CRL revoking nobody: fetched, and the chair's signature passes.
  const std::string crl1 = CrlToDer(fed->ca().MakeCrl({}).get());
  Publish(www.path(), crl1);
  HttpServer server(www.path(), port);
  ASSERT_TRUE(server.Start());
  ASSERT_TRUE(WaitFor([&] {
    std::string h = CrlHealth(d);
    return Contains(h, Sha256Hex(crl1)) && Contains(h, "\"state\":\"fresh\"");
  }, 20)) << CrlHealth(d);
  WriteTestFile(www.file("n1.txt"), "Chỉ thị số 1\n");
  std::string sig = fed->SignAsChair(www.file("n1.txt"));
  HttpAnswer ok = d.Submit({.file = www.file("n1.txt"), .type = "directive",
                            .recipients = fed->grassroots_ids(), .signature = sig});
  EXPECT_EQ(ok.status, 201) << ok.body;

  // 2. A newer CRL revoking the chair: taken at the next round; refused.
  const std::string chair_pem = ReadTestFile(fed->file("chair.pem"));
  BioPtr bio(BIO_new_mem_buf(chair_pem.data(), static_cast<int>(chair_pem.size())));
  X509Ptr chair(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ASSERT_NE(chair, nullptr);
  const long chair_serial = ASN1_INTEGER_get(X509_get0_serialNumber(chair.get()));
  const std::string crl2 = CrlToDer(fed->ca().MakeCrl({chair_serial}).get());
  Publish(www.path(), crl2);
  ASSERT_TRUE(WaitFor([&] { return Contains(CrlHealth(d), Sha256Hex(crl2)); }, 20))
      << CrlHealth(d);
  EXPECT_TRUE(Contains(CrlHealth(d), "\"revoked\":1")) << CrlHealth(d);
  WriteTestFile(www.file("n2.txt"), "Chỉ thị số 2\n");
  sig = fed->SignAsChair(www.file("n2.txt"));
  HttpAnswer refused = d.Submit({.file = www.file("n2.txt"), .type = "directive",
                                 .recipients = fed->grassroots_ids(), .signature = sig});
  EXPECT_EQ(refused.status, 422) << refused.body;
  EXPECT_TRUE(Contains(refused.body, "officer-signature-invalid")) << refused.body;
  EXPECT_TRUE(Contains(refused.body, "revoked")) << refused.body;

  // 3. The older CRL served again: refused, the newer one kept.
  Publish(www.path(), crl1);
  ASSERT_TRUE(WaitFor([&] { return Contains(CrlHealth(d), "is lower than"); }, 20))
      << CrlHealth(d);
  EXPECT_TRUE(Contains(CrlHealth(d), Sha256Hex(crl2))) << CrlHealth(d);
  refused = d.Submit({.file = www.file("n2.txt"), .type = "directive",
                      .recipients = fed->grassroots_ids(), .signature = sig});
  EXPECT_EQ(refused.status, 422) << refused.body;

  // 4. The server down: health shows the error, the cached CRL is still used.
  Publish(www.path(), crl2);
  server.Stop();
  ASSERT_TRUE(WaitFor([&] {
    std::string h = CrlHealth(d);
    return Contains(h, "\"state\":\"error\"") && Contains(h, "127.0.0.1:" + std::to_string(port));
  }, 20)) << CrlHealth(d);
  EXPECT_TRUE(Contains(CrlHealth(d), Sha256Hex(crl2))) << CrlHealth(d);
  HttpAnswer health = d.Get("/api/v1/health", "");
  EXPECT_TRUE(Contains(health.body, "\"status\":\"degraded\"")) << health.body;
  const std::string auditor = d.CreateToken("auditor", "Kiểm toán");
  ASSERT_FALSE(auditor.empty());
  HttpAnswer metrics = d.Get("/metrics", auditor);
  EXPECT_TRUE(Contains(metrics.body, "sealpost_crl_fresh{anchor=\"test-ca\",url=\"" + url + "\"} 0"))
      << metrics.body;
  EXPECT_TRUE(Contains(metrics.body, "sealpost_crl_fetches_total{anchor=\"test-ca\",url=\"" + url +
                                         "\",result=\"refused\"}"))
      << metrics.body;
  refused = d.Submit({.file = www.file("n2.txt"), .type = "directive",
                      .recipients = fed->grassroots_ids(), .signature = sig});
  EXPECT_EQ(refused.status, 422) << refused.body;

  // ... also after a restart (the CRL comes from the cache under state_dir).
  ASSERT_TRUE(d.Restart());
  EXPECT_TRUE(Contains(CrlHealth(d), Sha256Hex(crl2))) << CrlHealth(d);
  refused = d.Submit({.file = www.file("n2.txt"), .type = "directive",
                      .recipients = fed->grassroots_ids(), .signature = sig});
  EXPECT_EQ(refused.status, 422) << refused.body;

  // The grassroots appliance fetched the same CRLs into its own trust.
  Appliance& g = fed->grassroots(0);
  EXPECT_TRUE(Contains(CrlHealth(g), Sha256Hex(crl2))) << CrlHealth(g);

  // 5. Each CRL taken archived once (not again after the restart); audits clean.
  std::vector<std::string> archived;
  for (const storage::Manifest& m : fed->ArchiveEntries(d)) {
    if (storage::EntryKindName(m.kind) != "crl") continue;
    archived.push_back(m.Field("crl_sha256"));
    EXPECT_EQ(m.Field("anchor"), "test-ca");
    EXPECT_EQ(m.Field("url"), url);
  }
  ASSERT_EQ(archived.size(), 2u);
  EXPECT_EQ(archived[0], Sha256Hex(crl1));
  EXPECT_EQ(archived[1], Sha256Hex(crl2));
  std::string out;
  EXPECT_EQ(fed->Audit(d, &out), 0) << out;
  EXPECT_EQ(fed->Audit(g, &out), 0) << out;
  EXPECT_TRUE(fed->StopAll());
}

// Issue 5: an https:// CRL source is fetched through client/ with the
// server checked against crl_fetch.https_ca: a server whose certificate is
// from another CA is an error (nothing taken), the right one is fetched.
TEST(CrlFetchTest, HttpsSourceFetchedOnlyFromAServerOfTheConfiguredCa) {
  TempDir www;
  const int port = FreePort();
  ASSERT_NE(port, 0);
  const std::string url = "https://127.0.0.1:" + std::to_string(port) + "/ca.crl";
  FederationOptions fo;
  fo.grassroots = 1;
  fo.policy_trust_extra = "  crl_sources:\n    - {anchor: test-ca, url: \"" + url + "\"}\n";
  // Relative to the appliance's directory: the federation's CA.
  fo.extra_config =
      "crl_fetch: {interval_seconds: 1, retry_seconds: 1, timeout_seconds: 2, "
      "https_ca: ../ca.pem}\n";
  auto fed = Federation::Start(fo);
  ASSERT_NE(fed, nullptr);
  Appliance& d = fed->district();
  const std::string crl = CrlToDer(fed->ca().MakeCrl({}).get());
  Publish(www.path(), crl);

  // 1. A server certificate from another CA (same name and IP): refused.
  TestCa other = TestCa::CreateRoot("/CN=Other CA/O=Elsewhere/C=VN");
  CertSpec spec;
  spec.subject = "/CN=127.0.0.1/O=Elsewhere/C=VN";
  spec.ext_key_usage = "serverAuth";
  spec.key_usage = "critical,digitalSignature";
  spec.subject_alt_name = "IP:127.0.0.1";
  Issued impostor = other.Issue(spec);
  TempDir keys;  // not under the served directory
  WriteTestFile(keys.file("impostor.pem"), CertToPem(impostor.cert.get()));
  WriteTestFile(keys.file("impostor-key.pem"), KeyToPkcs8Pem(impostor.key.get()));
  {
    HttpsServer bad(www.path(), port, keys.file("impostor.pem"), keys.file("impostor-key.pem"));
    ASSERT_TRUE(bad.Start());
    ASSERT_TRUE(WaitFor([&] {
      std::string h = CrlHealth(d);
      return Contains(h, "\"state\":\"error\"") && Contains(h, "certificate verify failed");
    }, 20)) << CrlHealth(d);
    std::this_thread::sleep_for(std::chrono::seconds(2));
    EXPECT_FALSE(Contains(CrlHealth(d), Sha256Hex(crl))) << CrlHealth(d);
    EXPECT_TRUE(Contains(d.Log(), "CRL fetch failed")) << d.Log();
  }

  // 2. The same files behind the appliance's own TLS certificate (the
  //    federation's CA, IP:127.0.0.1): fetched and fresh.
  HttpsServer good(www.path(), port, d.file("tls.pem"), d.file("tls-key.pem"));
  ASSERT_TRUE(good.Start());
  ASSERT_TRUE(WaitFor([&] {
    std::string h = CrlHealth(d);
    return Contains(h, Sha256Hex(crl)) && Contains(h, "\"state\":\"fresh\"");
  }, 20)) << CrlHealth(d);
  EXPECT_TRUE(fed->StopAll());
}

}  // namespace
}  // namespace sealpost::testing
