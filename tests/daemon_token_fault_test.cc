// Token faults through sealpostd end to end: a real sealpostd and a real
// sealpost-signer (supervised by the harness the way its systemd unit is:
// restarted unless it exits 0/64/66/74/77) whose token is the
// fault-injecting PKCS#11 module (tests/fault_pkcs11) in front of SoftHSM2.
//   - token pulled out: submissions get 503 + Retry-After, health shows the
//     token absent; put back: the next submission is sealed, nothing
//     restarted;
//   - a token call hangs: the signer exits within its --call-timeout, the
//     harness restarts it, submissions get 503 meanwhile and then succeed;
//   - wrong PIN: the signer stops (77) after exactly one C_Login, is not
//     restarted, health reports why, submissions get 503.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/daemon_harness.h"
#include "tests/support/softhsm.h"
#include "tests/support/test_pki.h"

namespace sealpost::testing {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct HttpResult {
  int status = 0;
  std::string headers;  // lower-cased
  std::string body;
};

class DaemonTokenFaultTest : public ::testing::Test {
 protected:
  void StartDaemon(DaemonOptions o) {
    o.seal = true;
    o.fault_module = true;
    if (!FaultModule::Available()) GTEST_SKIP() << "built without tests/fault_pkcs11";
    d_ = DaemonHarness::Start(o);
    ASSERT_NE(d_, nullptr);
    std::string token = d_->CreateToken("clerk", "test clerk");
    ASSERT_FALSE(token.empty());
    auth_ = "-H " + ShellQuote("Authorization: Bearer " + token);
  }

  HttpResult Http(const std::string& path, const std::string& extra = "") {
    std::string hdr = d_->file("headers-" + std::to_string(++n_) + ".txt");
    std::string out;
    RunCommand(d_->Curl(path, extra + " -D " + ShellQuote(hdr) + " -w '\\n%{http_code}'"), &out);
    HttpResult r;
    size_t nl = out.rfind('\n');
    if (nl != std::string::npos) {
      r.status = std::atoi(out.c_str() + nl + 1);
      r.body = out.substr(0, nl);
    }
    r.headers = ReadTestFile(hdr);
    for (char& c : r.headers) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return r;
  }

  // POST /api/v1/documents: a small seal-only notice to the peer union.
  HttpResult Submit(const std::string& text) {
    std::string file = d_->file("doc-" + std::to_string(++n_) + ".txt");
    WriteTestFile(file, text);
    return Http("/api/v1/documents?type=notice&recipients=" + std::string(DaemonHarness::kPeerUnion) +
                    "&name=thong-bao.txt&media_type=text/plain",
                auth_ + " -H 'Content-Type: application/octet-stream' --data-binary @" + ShellQuote(file));
  }

  // Submits until one is sealed (201) or `limit` seconds pass; the last answer.
  HttpResult SubmitUntilSealed(const std::string& text, double limit) {
    auto t0 = Clock::now();
    HttpResult r;
    do {
      r = Submit(text);
      if (r.status == 201) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    } while (Since(t0) < limit);
    return r;
  }

  HttpResult Health() { return Http("/api/v1/health"); }

  void Expect503(const HttpResult& r) {
    EXPECT_EQ(r.status, 503) << r.body << "\n" << d_->Log();
    EXPECT_NE(r.headers.find("retry-after: "), std::string::npos) << r.headers;
    EXPECT_NE(r.headers.find("content-type: application/problem+json"), std::string::npos) << r.headers;
    EXPECT_NE(r.body.find("signer-unavailable"), std::string::npos) << r.body;
  }

  std::unique_ptr<DaemonHarness> d_;
  std::string auth_;
  int n_ = 0;
};

TEST_F(DaemonTokenFaultTest, TokenRemovedGives503AndSigningResumesWhenPutBack) {
  StartDaemon(DaemonOptions());
  HttpResult first = Submit("Thông báo số 1\n");
  ASSERT_EQ(first.status, 201) << first.body << "\n" << d_->Log();
  HttpResult health = Health();
  EXPECT_NE(health.body.find("\"status\":\"ok\""), std::string::npos) << health.body;
  EXPECT_NE(health.body.find("\"token\":{\"present\":true,\"logged_in\":true}"), std::string::npos)
      << health.body;
  pid_t daemon_pid = d_->pid();
  pid_t signer_pid = d_->signer_pid();

  d_->fault()->Set("removed=1\n");
  for (int i = 0; i < 2; ++i) Expect503(Submit("Thông báo khi rút token\n"));
  health = Health();
  EXPECT_NE(health.body.find("\"status\":\"degraded\""), std::string::npos) << health.body;
  EXPECT_NE(health.body.find("\"signer\":\"reachable\""), std::string::npos) << health.body;
  EXPECT_NE(health.body.find("\"token\":{\"present\":false"), std::string::npos) << health.body;
  EXPECT_NE(health.body.find("token unavailable"), std::string::npos) << health.body;

  d_->fault()->Set("");  // put back
  HttpResult again = SubmitUntilSealed("Thông báo số 2\n", 15);
  EXPECT_EQ(again.status, 201) << again.body << "\n" << d_->Log() << "\n" << d_->SignerLog();
  health = Health();
  EXPECT_NE(health.body.find("\"status\":\"ok\""), std::string::npos) << health.body;
  EXPECT_NE(health.body.find("\"token\":{\"present\":true,\"logged_in\":true}"), std::string::npos)
      << health.body;
  // Nothing was restarted.
  EXPECT_EQ(d_->pid(), daemon_pid);
  EXPECT_EQ(::kill(daemon_pid, 0), 0);
  EXPECT_EQ(d_->signer_pid(), signer_pid);
  EXPECT_EQ(d_->signer_starts(), 1);
  EXPECT_TRUE(d_->signer_exits().empty());
}

TEST_F(DaemonTokenFaultTest, HungTokenCallRestartsSignerWithinItsBound) {
  DaemonOptions o;
  o.signer_call_timeout_seconds = 2;
  o.signer_restart_ms = 1500;  // a window in which the signer is gone
  StartDaemon(o);
  ASSERT_EQ(Submit("Biên bản số 1\n").status, 201) << d_->Log();
  pid_t daemon_pid = d_->pid();

  d_->fault()->Set("hang.C_Sign=60\n");
  auto t0 = Clock::now();
  HttpResult hung = Submit("Biên bản khi token treo\n");
  double answered = Since(t0);
  Expect503(hung);
  EXPECT_LT(answered, 5.0) << "the signer's bound is 2 s";
  d_->fault()->Set("");

  // The signer exited (69) within its bound; while it is gone, 503.
  while (d_->signer_exits().empty() && Since(t0) < 10) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(d_->signer_exits().size(), 1u) << d_->SignerLog();
  EXPECT_EQ(d_->signer_exits()[0], 69) << d_->SignerLog();
  double exited = Since(t0);
  EXPECT_LT(exited, 5.0);
  if (d_->signer_pid() < 0) Expect503(Submit("Biên bản khi signer vắng\n"));
  HttpResult health = Health();
  if (d_->signer_pid() < 0) {
    EXPECT_NE(health.body.find("\"signer\":\"unreachable\""), std::string::npos) << health.body;
    EXPECT_NE(health.body.find("\"signer_stopped\":{\"exit\":69"), std::string::npos) << health.body;
  }

  // Restarted by the supervisor; signing resumes without touching the daemon.
  HttpResult again = SubmitUntilSealed("Biên bản số 2\n", 20);
  EXPECT_EQ(again.status, 201) << again.body << "\n" << d_->Log() << "\n" << d_->SignerLog();
  double resumed = Since(t0);
  EXPECT_EQ(d_->signer_starts(), 2);
  EXPECT_EQ(d_->pid(), daemon_pid);
  EXPECT_NE(d_->SignerLog().find("did not answer"), std::string::npos) << d_->SignerLog();
  health = Health();
  EXPECT_NE(health.body.find("\"status\":\"ok\""), std::string::npos) << health.body;
  EXPECT_EQ(health.body.find("signer_stopped"), std::string::npos) << health.body;
  RecordProperty("hung_submission_answered_after_s", std::to_string(answered));
  RecordProperty("signer_exited_after_s", std::to_string(exited));
  RecordProperty("signing_resumed_after_s", std::to_string(resumed));
  std::printf("hung token: 503 after %.2f s, signer exited after %.2f s, sealed again after %.2f s "
              "(restart delay 1.5 s)\n",
              answered, exited, resumed);
}

TEST_F(DaemonTokenFaultTest, WrongPinStopsSignerAfterOneLoginAndIsNotRetried) {
  DaemonOptions o;
  o.fault_control = "fail.C_Login=CKR_PIN_INCORRECT\n";
  o.wait_for_signer = false;
  StartDaemon(o);
  auto t0 = Clock::now();
  while (d_->signer_exits().empty() && Since(t0) < 20) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(d_->signer_exits().size(), 1u) << d_->SignerLog();
  EXPECT_EQ(d_->signer_exits()[0], 77) << d_->SignerLog();
  EXPECT_NE(d_->SignerLog().find("not retrying"), std::string::npos) << d_->SignerLog();

  Expect503(Submit("Thông báo khi sai PIN\n"));
  HttpResult health = Health();
  EXPECT_NE(health.body.find("\"status\":\"degraded\""), std::string::npos) << health.body;
  EXPECT_NE(health.body.find("\"signer\":\"unreachable\""), std::string::npos) << health.body;
  EXPECT_NE(health.body.find("\"signer_stopped\":{\"exit\":77"), std::string::npos) << health.body;
  EXPECT_NE(health.body.find("PIN"), std::string::npos) << health.body;

  // Well past the restart delay: still stopped, still one C_Login.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  Expect503(Submit("Thông báo lần nữa\n"));
  EXPECT_EQ(d_->signer_starts(), 1);
  EXPECT_LT(d_->signer_pid(), 0);
  EXPECT_EQ(d_->fault()->Count("C_Login"), 1);
  EXPECT_EQ(::kill(d_->pid(), 0), 0) << "the daemon keeps serving";
  EXPECT_EQ(d_->SignerLog().find("135790"), std::string::npos) << "the PIN is never logged";
  EXPECT_EQ(health.body.find("135790"), std::string::npos);
}

}  // namespace
}  // namespace sealpost::testing
