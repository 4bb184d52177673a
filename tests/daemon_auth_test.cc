// A real sealpostd on 127.0.0.1: health over TLS, the peer listener's mutual
// TLS and registry check, the user listener's tokens, roles and client
// certificates, metrics, problem+json in vi/en. Peers: curl, openssl s_client.
#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/daemon_harness.h"
#include "tests/support/test_pki.h"

namespace sealpost::testing {
namespace {

// curl's answer with the HTTP status appended on its own last line.
struct CurlResult {
  int rc = -1;
  int status = 0;
  std::string body;
};

CurlResult CurlCall(const DaemonHarness& d, const std::string& path, const std::string& extra = "",
                    bool peer = false) {
  std::string out;
  CurlResult r;
  r.rc = RunCommand(d.Curl(path, extra + " -w '\\n%{http_code}'", peer) + " 2>&1", &out);
  size_t nl = out.rfind('\n');
  if (nl != std::string::npos) {
    r.status = std::atoi(out.c_str() + nl + 1);
    r.body = out.substr(0, nl);
  } else {
    r.body = out;
  }
  return r;
}

std::string PeerCert(const DaemonHarness& d, const std::string& name) {
  return " --cert " + ShellQuote(d.file(name + ".pem")) + " --key " +
         ShellQuote(d.file(name + "-key.pem"));
}

class DaemonAuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    DaemonOptions o;
    o.user_cert_role = "officer";
    daemon_ = DaemonHarness::Start(o).release();
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(daemon_, nullptr); }
  static DaemonHarness* daemon_;
};
DaemonHarness* DaemonAuthTest::daemon_ = nullptr;

TEST_F(DaemonAuthTest, HealthOverTlsAnswersJson) {
  CurlResult r = CurlCall(*daemon_, "/api/v1/health");
  ASSERT_EQ(r.rc, 0) << r.body;
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"union\":\"ldld-thu-nghiem\""), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"signer\":\"unreachable\""), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"archive\":\"missing\""), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"policy\":{\"loaded\":true,\"sha256\":\""), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"status\":\"degraded\""), std::string::npos) << r.body;
}

TEST_F(DaemonAuthTest, TlsBelowVersion12Refused) {
  std::string out;
  int rc = RunCommand("openssl s_client -connect 127.0.0.1:" + std::to_string(daemon_->user_port()) +
                          " -tls1_1 -CAfile " + ShellQuote(daemon_->file("tls-ca.pem")) +
                          " </dev/null 2>&1",
                      &out);
  EXPECT_NE(rc, 0) << out;
}

TEST_F(DaemonAuthTest, PeerWithoutClientCertificateTlsRefused) {
  CurlResult r = CurlCall(*daemon_, "/api/v1/health", "", true);
  EXPECT_NE(r.rc, 0) << r.body;
  EXPECT_EQ(r.status, 0) << r.body;
  // openssl s_client, TLS 1.2 (the refusal is in the handshake itself).
  std::string out;
  int rc = RunCommand("printf 'GET /api/v1/health HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' | "
                      "openssl s_client -quiet -tls1_2 -connect 127.0.0.1:" +
                          std::to_string(daemon_->peer_port()) + " -CAfile " +
                          ShellQuote(daemon_->file("tls-ca.pem")) + " 2>&1",
                      &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_EQ(out.find("HTTP/1.1 200"), std::string::npos) << out;
}

TEST_F(DaemonAuthTest, PeerWithCertificateOfUnknownCaTlsRefused) {
  CurlResult r = CurlCall(*daemon_, "/api/v1/health", PeerCert(*daemon_, "foreign"), true);
  EXPECT_NE(r.rc, 0) << r.body;
  EXPECT_EQ(r.status, 0) << r.body;
}

TEST_F(DaemonAuthTest, PeerNotInRegistryGets403Problem) {
  CurlResult r = CurlCall(*daemon_, "/api/v1/health", PeerCert(*daemon_, "stranger"), true);
  ASSERT_EQ(r.rc, 0) << r.body;
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.body.find("\"type\":\"https://sealpost.invalid/problems/forbidden\""),
            std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"status\":403"), std::string::npos);
}

TEST_F(DaemonAuthTest, RegisteredPeerMappedToItsUnion) {
  CurlResult r = CurlCall(*daemon_, "/api/v1/whoami", PeerCert(*daemon_, "peer"), true);
  ASSERT_EQ(r.rc, 0) << r.body;
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"union\":\"cd-ban-thu\""), std::string::npos) << r.body;
  CurlResult h = CurlCall(*daemon_, "/api/v1/health", PeerCert(*daemon_, "peer"), true);
  EXPECT_EQ(h.status, 200) << h.body;
}

TEST_F(DaemonAuthTest, UserWithoutTokenGets401InRequestedLanguage) {
  CurlResult en = CurlCall(*daemon_, "/api/v1/whoami");
  EXPECT_EQ(en.status, 401) << en.body;
  EXPECT_NE(en.body.find("\"title\":\"Authentication required\""), std::string::npos) << en.body;
  CurlResult vi = CurlCall(*daemon_, "/api/v1/whoami", "-H 'Accept-Language: vi-VN,vi;q=0.9'");
  EXPECT_EQ(vi.status, 401) << vi.body;
  EXPECT_NE(vi.body.find("\"title\":\"Cần xác thực\""), std::string::npos) << vi.body;
}

TEST_F(DaemonAuthTest, TokenGivesRoleAndWrongRoleGets403) {
  std::string clerk = daemon_->CreateToken("clerk", "văn thư");
  ASSERT_FALSE(clerk.empty());
  CurlResult who = CurlCall(*daemon_, "/api/v1/whoami", "-H 'Authorization: Bearer " + clerk + "'");
  EXPECT_EQ(who.status, 200) << who.body;
  EXPECT_NE(who.body.find("\"role\":\"clerk\""), std::string::npos) << who.body;
  EXPECT_NE(who.body.find("\"name\":\"văn thư\""), std::string::npos) << who.body;
  // /metrics is for admins and auditors.
  CurlResult m = CurlCall(*daemon_, "/metrics", "-H 'Authorization: Bearer " + clerk + "'");
  EXPECT_EQ(m.status, 403) << m.body;
  EXPECT_NE(m.body.find("forbidden"), std::string::npos) << m.body;
}

TEST_F(DaemonAuthTest, RevokedTokenGets401) {
  std::string token = daemon_->CreateToken("auditor", "kiểm toán");
  ASSERT_FALSE(token.empty());
  std::string auth = "-H 'Authorization: Bearer " + token + "'";
  EXPECT_EQ(CurlCall(*daemon_, "/metrics", auth).status, 200);
  std::string out;
  ASSERT_EQ(RunCommand(ShellQuote(SEALPOST_CLI_PATH) + " admin token revoke 'kiểm toán' --state " +
                           ShellQuote(daemon_->state_dir()),
                       &out),
            0)
      << out;
  CurlResult r = CurlCall(*daemon_, "/metrics", auth);
  EXPECT_EQ(r.status, 401) << r.body;
  // A made-up token of the right shape is refused the same way.
  CurlResult f = CurlCall(*daemon_, "/metrics",
                          "-H 'Authorization: Bearer spt_" + std::string(43, 'A') + "'");
  EXPECT_EQ(f.status, 401) << f.body;
}

TEST_F(DaemonAuthTest, ClientCertificateMappedToRole) {
  CurlResult r = CurlCall(*daemon_, "/api/v1/whoami", PeerCert(*daemon_, "user"));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"role\":\"officer\""), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"authenticated_by\":\"certificate\""), std::string::npos) << r.body;
  // A valid certificate that is not configured gives no role.
  CurlResult s = CurlCall(*daemon_, "/api/v1/whoami", PeerCert(*daemon_, "stranger"));
  EXPECT_EQ(s.status, 401) << s.body;
}

TEST_F(DaemonAuthTest, MetricsCountRequestsByRouteAndStatus) {
  std::string admin = daemon_->CreateToken("admin", "quản trị");
  ASSERT_FALSE(admin.empty());
  CurlCall(*daemon_, "/api/v1/health");
  CurlCall(*daemon_, "/no/such/path");
  CurlResult m = CurlCall(*daemon_, "/metrics", "-H 'Authorization: Bearer " + admin + "'");
  ASSERT_EQ(m.status, 200) << m.body;
  EXPECT_NE(m.body.find("sealpost_http_requests_total{listener=\"user\",route=\"/api/v1/health\","
                        "status=\"200\"}"),
            std::string::npos) << m.body;
  EXPECT_NE(m.body.find("route=\"unmatched\",status=\"404\""), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("sealpost_http_request_duration_seconds_bucket{listener=\"user\","
                        "route=\"/api/v1/health\",status=\"200\",le=\"+Inf\"}"),
            std::string::npos) << m.body;
  EXPECT_NE(m.body.find("sealpost_connections_current{listener=\"peer\"}"), std::string::npos);
  EXPECT_EQ(m.body.find("/no/such/path"), std::string::npos);
}

TEST_F(DaemonAuthTest, WrongMethodGets405WithAllow) {
  std::string out;
  RunCommand(daemon_->Curl("/api/v1/health", "-i -X DELETE") + " 2>&1", &out);
  EXPECT_NE(out.find("HTTP/1.1 405"), std::string::npos) << out;
  EXPECT_NE(out.find("Allow: GET"), std::string::npos) << out;
}

TEST_F(DaemonAuthTest, LogLinesCarryRequestIdAndNoToken) {
  std::string token = daemon_->CreateToken("clerk", "log check");
  ASSERT_FALSE(token.empty());
  std::string out;
  RunCommand(daemon_->Curl("/api/v1/whoami", "-i -H 'Authorization: Bearer " + token + "'"), &out);
  size_t at = out.find("X-Request-Id: ");
  ASSERT_NE(at, std::string::npos) << out;
  std::string id = out.substr(at + 14, out.find('\r', at) - at - 14);
  // The access line is written once the response has been sent: the client
  // may read the answer before the daemon has logged it.
  const std::string line =
      "request_id=" + id + " listener=user method=\"GET\" route=/api/v1/whoami status=200";
  std::string log = daemon_->Log();
  for (int i = 0; i < 250 && log.find(line) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    log = daemon_->Log();
  }
  EXPECT_NE(log.find(line), std::string::npos) << log;
  EXPECT_EQ(log.find(token.substr(4)), std::string::npos);
}

}  // namespace
}  // namespace sealpost::testing
