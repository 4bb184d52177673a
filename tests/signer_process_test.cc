// sealpost-signer as a real process on a real SoftHSM2 token, reached through
// signer::RemoteSigner: CAdES signatures verified by `openssl cms -verify`,
// the journal, refusals, uid checks, restarts, sd_notify, and token faults
// through the fault-injecting module (removal, hang, wrong PIN).
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <thread>

#include <gtest/gtest.h>

#include "base/encoding.h"
#include "crypto/cades_sign.h"
#include "crypto/digest.h"
#include "daemon/signer/remote_signer.h"
#include "pkcs11/open.h"
#include "tests/support/cms_peers.h"
#include "tests/support/signer_process.h"
#include "tests/support/softhsm.h"
#include "tests/support/test_pki.h"

namespace sealpost::signer {
namespace {

using testing::FaultModule;
using testing::KeyType;
using testing::SignerProcess;
using Clock = std::chrono::steady_clock;

constexpr char kToken[] = "union-seal";
constexpr char kPin[] = "246810";

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

class SignerProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A fault module's allowlist from an earlier test in this process is gone.
    ::unsetenv(testing::kAllowlistEnv);
    ASSERT_TRUE(hsm_.InitToken(kToken, "13579135", kPin));
    testing::CertSpec spec;
    spec.subject = "/CN=Công đoàn Bãi Cháy/O=Công đoàn Bãi Cháy/C=VN";
    p256_ = hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kP256, "01", "seal", spec);
    ASSERT_TRUE(p256_.has_value());
    rsa_ = hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kRsa2048, "02", "seal-rsa", spec);
    ASSERT_TRUE(rsa_.has_value());
    socket_ = hsm_.file("signer.sock");
    journal_ = hsm_.file("journal.jsonl");
    pin_file_ = hsm_.WritePinFile(std::string(kPin) + "\n");
    ca_pem_ = hsm_.file("ca.pem");
    testing::WriteTestFile(ca_pem_, testing::CertToPem(ca_.cert()));
  }

  void UseFaultModule() {
    fault_ = std::make_unique<FaultModule>(hsm_);
    module_ = fault_->module_path();
    fault_->ResetCounts();
  }
  std::string Uri(const std::string& object) const { return hsm_.KeyUri(kToken, object, module_); }

  std::vector<std::string> Args(std::vector<std::string> extra = {}) {
    std::vector<std::string> a{"--key",     Uri("seal"),   "--key",       Uri("seal-rsa"),
                               "--socket",  socket_,       "--pin-file",  pin_file_,
                               "--journal", journal_,      "--call-timeout", "2"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  std::unique_ptr<SignerProcess> Start(std::vector<std::string> extra = {}, bool wait = true) {
    auto p = std::make_unique<SignerProcess>(Args(std::move(extra)), hsm_.file("signer.log"));
    if (wait) {
      EXPECT_TRUE(p->WaitListening(socket_)) << p->Log();
    }
    return p;
  }
  RemoteSigner Client(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return RemoteSigner(RemoteSignerOptions{socket_, timeout});
  }
  std::string Content(const std::string& name, const std::string& text) {
    std::string path = hsm_.file(name);
    testing::WriteTestFile(path, text);
    return path;
  }
  std::string Journal() {
    std::string j;
    FILE* f = std::fopen(journal_.c_str(), "r");
    if (!f) return j;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) j.append(buf, n);
    std::fclose(f);
    return j;
  }
  static size_t Lines(const std::string& s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }

  testing::SoftHsm hsm_;
  testing::TestCa ca_ = testing::TestCa::CreateRoot("/CN=Signer Test Root/O=Test/C=VN");
  std::optional<testing::Issued> p256_, rsa_;
  std::unique_ptr<FaultModule> fault_;
  std::string module_ = testing::kSoftHsmModule;
  std::string socket_, journal_, pin_file_, ca_pem_;
};

TEST_F(SignerProcessTest, SignFileThroughSignerVerifiesWithOpensslAndIsJournaled) {
  auto proc = Start();
  auto remote = Client();
  struct Case {
    std::string object;
    X509* cert;
  };
  for (const Case& c : {Case{"seal", p256_->cert.get()}, Case{"seal-rsa", rsa_->cert.get()}}) {
    SCOPED_TRACE(c.object);
    std::string content = Content(c.object + ".txt", "Chỉ thị số 12/CT-CĐ: " + c.object + "\n");
    auto der = crypto::SignFile(remote, crypto::KeyRef{Uri(c.object)}, content, {});
    ASSERT_TRUE(der) << der.error().ToString() << "\n" << proc->Log();
    std::string sig = content + ".p7s";
    testing::WriteTestFile(sig, *der);
    EXPECT_TRUE(testing::OpensslCmsVerifies(sig, content, ca_pem_, "-cades"));
    // The signature is over this content only.
    testing::WriteTestFile(content, "Chỉ thị số 13/CT-CĐ\n");
    EXPECT_FALSE(testing::OpensslCmsVerifies(sig, content, ca_pem_));
    testing::WriteTestFile(content, "Chỉ thị số 12/CT-CĐ: " + c.object + "\n");
    auto cert = remote.Certificate(crypto::KeyRef{Uri(c.object)});
    ASSERT_TRUE(cert);
    EXPECT_EQ(X509_cmp(cert->get(), c.cert), 0);

    // The journal names the key and the content's digest.
    auto digest = crypto::DigestFile(content, {EVP_sha256()});
    ASSERT_TRUE(digest);
    std::string j = Journal();
    EXPECT_NE(j.find("\"message_digest\":\"" + HexEncode((*digest)[0]) + "\""), std::string::npos) << j;
    EXPECT_NE(j.find("\"uid\":" + std::to_string(::geteuid())), std::string::npos) << j;
  }
  std::string j = Journal();
  EXPECT_EQ(Lines(j), 2u) << j;
  EXPECT_NE(j.find("\"digest_alg\":\"SHA-256\""), std::string::npos);
}

TEST_F(SignerProcessTest, StatusReportsTokenLoginAndCertificateExpiry) {
  auto proc = Start();
  auto remote = Client();
  auto st = remote.QueryStatus();
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_TRUE(st->token_present) << st->detail;
  EXPECT_TRUE(st->logged_in);
  ASSERT_EQ(st->keys.size(), 2u);
  EXPECT_EQ(st->keys[0].key, Uri("seal"));
  EXPECT_TRUE(st->keys[0].certificate);
  struct tm tm {};
  ASSERT_EQ(ASN1_TIME_to_tm(X509_get0_notAfter(p256_->cert.get()), &tm), 1);
  std::time_t want = timegm(&tm);
  EXPECT_EQ(st->keys[0].not_after, want);
}

TEST_F(SignerProcessTest, RequestsTheSignerCannotCheckAreRefusedAndNotJournaled) {
  auto proc = Start();
  auto remote = Client();
  crypto::KeyRef key{Uri("seal")};
  std::string content = Content("report.txt", "Báo cáo tài chính quý III\n");
  auto digest = crypto::DigestFile(content, {EVP_sha256()});
  ASSERT_TRUE(digest);

  // A signing-time an hour old.
  crypto::CadesSignOptions stale;
  stale.signing_time = std::time(nullptr) - 3600;
  auto old = crypto::BuildDetachedSignature(remote, key, p256_->cert.get(), crypto::DigestAlg::kSha256,
                                            (*digest)[0], stale);
  ASSERT_FALSE(old);
  EXPECT_EQ(old.error().code(), Code::kPermissionDenied);
  EXPECT_NE(old.error().message().find("signing-time"), std::string::npos) << old.error().message();

  // Attributes naming another certificate (signing-certificate-v2).
  testing::Issued foreign = ca_.Issue(testing::CertSpec{});
  auto other = crypto::BuildDetachedSignature(remote, key, foreign.cert.get(), crypto::DigestAlg::kSha256,
                                              (*digest)[0], {});
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code(), Code::kPermissionDenied);
  EXPECT_NE(other.error().message().find("signing-certificate-v2"), std::string::npos)
      << other.error().message();

  // Garbage instead of attributes; a bare digest; a key it does not hold; a
  // digest algorithm that does not go with the key.
  auto garbage = remote.SignSignedAttributes(key, crypto::DigestAlg::kSha256, "\x31\x03garbage");
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code(), Code::kPermissionDenied);
  EXPECT_NE(garbage.error().message().find("signed attributes"), std::string::npos);
  auto bare = remote.Sign(key, crypto::DigestAlg::kSha256, (*digest)[0]);
  ASSERT_FALSE(bare);
  EXPECT_EQ(bare.error().code(), Code::kPermissionDenied);
  EXPECT_NE(bare.error().message().find("never a bare digest"), std::string::npos);
  auto unknown = remote.Certificate(crypto::KeyRef{Uri("seal") + "x"});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), Code::kNotFound);
  auto alg = remote.SignSignedAttributes(key, crypto::DigestAlg::kSha384, "\x31\x00");
  ASSERT_FALSE(alg);
  EXPECT_EQ(alg.error().code(), Code::kPermissionDenied);

  EXPECT_EQ(Journal(), "") << "refused requests must not be journaled";
  // Still serving.
  EXPECT_TRUE(crypto::SignFile(remote, key, content, {}));
  EXPECT_EQ(Lines(Journal()), 1u);
}

TEST_F(SignerProcessTest, JournalWriteFailureWithholdsSignature) {
  journal_ = "/dev/full";  // every write fails with ENOSPC
  auto proc = Start();
  auto remote = Client();
  std::string content = Content("full.txt", "Nghị quyết\n");
  auto sig = crypto::SignFile(remote, crypto::KeyRef{Uri("seal")}, content, {});
  ASSERT_FALSE(sig);
  EXPECT_EQ(sig.error().code(), Code::kUnavailable);
  EXPECT_NE(sig.error().message().find("signature withheld"), std::string::npos) << sig.error().message();
  EXPECT_NE(proc->Log().find("journal write failed"), std::string::npos) << proc->Log();
}

TEST_F(SignerProcessTest, ConnectionFromUidNotAllowedIsRefused) {
  uid_t other = ::geteuid() == 4242 ? 4243 : 4242;
  auto proc = Start({"--allow-uid", std::to_string(other)});
  auto remote = Client();
  auto cert = remote.Certificate(crypto::KeyRef{Uri("seal")});
  ASSERT_FALSE(cert);
  EXPECT_EQ(cert.error().code(), Code::kPermissionDenied);
  EXPECT_NE(cert.error().message().find("is not allowed"), std::string::npos) << cert.error().message();
  EXPECT_NE(proc->Log().find("uid not allowed"), std::string::npos);
}

TEST_F(SignerProcessTest, AllowUserByNameAdmitsThatUserOnly) {
  // The systemd unit names the daemon's user (sysusers.d picks its uid).
  passwd* me = ::getpwuid(::geteuid());
  ASSERT_NE(me, nullptr);
  std::string my_name = me->pw_name;
  {
    auto proc = Start({"--allow-user", my_name});
    auto remote = Client();
    auto cert = remote.Certificate(crypto::KeyRef{Uri("seal")});
    EXPECT_TRUE(cert) << cert.error().message() << "\n" << proc->Log();
  }
  if (::geteuid() != 65534) {
    auto proc = Start({"--allow-user", "nobody"});
    auto cert = Client().Certificate(crypto::KeyRef{Uri("seal")});
    ASSERT_FALSE(cert);
    EXPECT_EQ(cert.error().code(), Code::kPermissionDenied) << cert.error().message();
  }
  SignerProcess unknown(Args({"--allow-user", "no-such-user-sealpost"}), hsm_.file("usage.log"));
  EXPECT_EQ(unknown.WaitExit(10), 64);
  EXPECT_NE(unknown.Log().find("--allow-user: no such user 'no-such-user-sealpost'"), std::string::npos)
      << unknown.Log();
}

TEST_F(SignerProcessTest, MalformedFrameIsAnsweredAndConnectionClosed) {
  auto proc = Start();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", socket_.c_str());
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  // A length prefix of 1 MiB: refused before anything is read.
  ASSERT_EQ(::write(fd, "\x00\x10\x00\x00", 4), 4);
  char buf[512];
  ssize_t n = ::read(fd, buf, sizeof buf);
  ASSERT_GT(n, 4);
  auto answer = DecodeAnswer(std::string_view(buf + 4, static_cast<size_t>(n - 4)));
  ASSERT_TRUE(answer) << answer.error().message();
  ASSERT_TRUE(std::holds_alternative<ErrorAnswer>(*answer));
  EXPECT_EQ(std::get<ErrorAnswer>(*answer).code, Code::kDataError);
  EXPECT_EQ(::read(fd, buf, sizeof buf), 0) << "connection closed after a framing error";
  ::close(fd);
  // The signer keeps serving others.
  auto remote = Client();
  EXPECT_TRUE(remote.QueryStatus());
}

TEST_F(SignerProcessTest, KilledSignerIsUnavailableAndRestartedSignerWorksAgain) {
  auto proc = Start();
  auto remote = Client(std::chrono::seconds(5));
  crypto::KeyRef key{Uri("seal")};
  std::string content = Content("notice.txt", "Thông báo\n");
  ASSERT_TRUE(crypto::SignFile(remote, key, content, {}));

  proc->Kill(SIGKILL);
  EXPECT_EQ(proc->WaitExit(5), 128 + SIGKILL);
  auto t0 = Clock::now();
  auto gone = crypto::SignFile(remote, key, content, {});
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code(), Code::kUnavailable) << gone.error().message();
  EXPECT_LT(Since(t0), 1.0) << "a dead signer is reported at once, not after the timeout";
  EXPECT_EQ(remote.QueryStatus().error().code(), Code::kUnavailable);

  auto again = Start();  // the stale socket file is replaced
  auto sig = crypto::SignFile(remote, key, content, {});
  ASSERT_TRUE(sig) << sig.error().message() << "\n" << again->Log();
  std::string p7s = content + ".p7s";
  testing::WriteTestFile(p7s, *sig);
  EXPECT_TRUE(testing::OpensslCmsVerifies(p7s, content, ca_pem_, "-cades"));
  EXPECT_EQ(Lines(Journal()), 2u);
}

TEST_F(SignerProcessTest, CertificateIsAskedOncePerKeyThenKeptUntilTheSignerRestarts) {
  auto proc = Start();
  auto remote = Client(std::chrono::seconds(5));
  crypto::KeyRef seal{Uri("seal")}, rsa{Uri("seal-rsa")};
  auto first = remote.Certificate(seal);
  ASSERT_TRUE(first) << first.error().message();
  for (int i = 0; i < 3; ++i) {
    auto again = remote.Certificate(seal);
    ASSERT_TRUE(again);
    EXPECT_EQ(X509_cmp(again->get(), first->get()), 0);
  }
  EXPECT_EQ(remote.certificate_requests(), 1u);
  auto other = remote.Certificate(rsa);  // kept per key
  ASSERT_TRUE(other);
  EXPECT_NE(X509_cmp(other->get(), first->get()), 0);
  EXPECT_EQ(remote.certificate_requests(), 2u);
  std::string content = Content("kept.txt", "Thông báo\n");
  ASSERT_TRUE(crypto::SignFile(remote, seal, content, {}));
  EXPECT_EQ(remote.certificate_requests(), 2u);

  // A new signer process (systemd restarted it): the kept connections are
  // closed, so the certificate is asked for again; the call that notices
  // the new process (another pid, or a recovery) makes the next one ask
  // once more, then it is kept again.
  proc->Kill(SIGKILL);
  EXPECT_EQ(proc->WaitExit(5), 128 + SIGKILL);
  auto again = Start();
  auto after = remote.Certificate(seal);
  ASSERT_TRUE(after) << after.error().message() << "\n" << again->Log();
  EXPECT_EQ(X509_cmp(after->get(), first->get()), 0);
  EXPECT_GE(remote.certificate_requests(), 3u);
  auto kept_again = [&] {
    for (int i = 0; i < 2; ++i) EXPECT_TRUE(crypto::SignFile(remote, seal, content, {}));
    const uint64_t settled = remote.certificate_requests();
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(crypto::SignFile(remote, seal, content, {}));
    EXPECT_EQ(remote.certificate_requests(), settled);
    return settled;
  };
  const uint64_t after_restart = kept_again();
  EXPECT_LE(after_restart, 4u);

  // Gone: a call fails as unavailable, and after the signer is back the
  // certificate is asked again.
  again->Kill(SIGKILL);
  EXPECT_EQ(again->WaitExit(5), 128 + SIGKILL);
  auto gone = crypto::SignFile(remote, seal, content, {});
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code(), Code::kUnavailable);
  auto third = Start();
  ASSERT_TRUE(remote.Certificate(seal));
  EXPECT_GT(remote.certificate_requests(), after_restart + 1);  // the failed ask, then a new one
  kept_again();
}

TEST_F(SignerProcessTest, SigtermStopsCleanlyWithSdNotify) {
  // A NOTIFY_SOCKET of our own, as systemd would pass it.
  std::string notify = hsm_.file("notify.sock");
  int nfd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", notify.c_str());
  ASSERT_EQ(::bind(nfd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ::setenv("NOTIFY_SOCKET", notify.c_str(), 1);
  ::setenv("WATCHDOG_USEC", "400000", 1);
  auto proc = Start();
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  auto remote = Client();
  ASSERT_TRUE(remote.QueryStatus());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  proc->Kill(SIGTERM);
  EXPECT_EQ(proc->WaitExit(10), 0) << proc->Log();
  std::string got;
  char buf[256];
  ssize_t n;
  while ((n = ::recv(nfd, buf, sizeof buf, MSG_DONTWAIT)) > 0) got += std::string(buf, n) + "|";
  ::close(nfd);
  EXPECT_NE(got.find("READY=1"), std::string::npos) << got;
  EXPECT_NE(got.find("WATCHDOG=1"), std::string::npos) << got;
  EXPECT_NE(got.find("STOPPING=1"), std::string::npos) << got;
  EXPECT_LT(got.find("READY=1"), got.find("STOPPING=1"));
  struct stat st {};
  EXPECT_NE(::lstat(socket_.c_str(), &st), 0) << "socket removed at stop";
  EXPECT_EQ(proc->Log().find(kPin), std::string::npos) << "the PIN is never logged";
}

TEST_F(SignerProcessTest, UsageErrorsExitWith64) {
  SignerProcess none({"--socket", socket_}, hsm_.file("usage.log"));
  EXPECT_EQ(none.WaitExit(10), 64);
  EXPECT_NE(none.Log().find("--key is required"), std::string::npos) << none.Log();
  SignerProcess bad({"--key", Uri("seal"), "--socket", socket_, "--call-timeout", "soon"}, hsm_.file("usage.log"));
  EXPECT_EQ(bad.WaitExit(10), 64);
  EXPECT_NE(bad.Log().find("--call-timeout needs seconds"), std::string::npos) << bad.Log();
}

// ---- Through the fault-injecting module. ----

TEST_F(SignerProcessTest, WrongPinExitsWithDistinctStatusAfterOneLogin) {
  if (!FaultModule::Available()) GTEST_SKIP() << "built without tests/fault_pkcs11";
  UseFaultModule();
  pin_file_ = hsm_.WritePinFile("000000\n");
  auto proc = Start({}, /*wait=*/false);
  EXPECT_EQ(proc->WaitExit(15), 77) << proc->Log();
  EXPECT_NE(proc->Log().find("PIN"), std::string::npos) << proc->Log();
  EXPECT_NE(proc->Log().find("not retrying"), std::string::npos) << proc->Log();
  EXPECT_EQ(fault_->Count("C_Login"), 1);
  EXPECT_EQ(proc->Log().find("000000"), std::string::npos) << "the PIN is never logged";
}

TEST_F(SignerProcessTest, TokenRemovedIsUnavailableThenSigningResumes) {
  if (!FaultModule::Available()) GTEST_SKIP() << "built without tests/fault_pkcs11";
  UseFaultModule();
  auto proc = Start();
  auto remote = Client();
  crypto::KeyRef key{Uri("seal")};
  std::string content = Content("directive.txt", "Chỉ thị\n");
  ASSERT_TRUE(crypto::SignFile(remote, key, content, {}));

  fault_->Set("removed=1\n");
  auto st = remote.QueryStatus();
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_FALSE(st->token_present);
  EXPECT_FALSE(st->detail.empty());
  for (int i = 0; i < 2; ++i) {
    auto gone = crypto::SignFile(remote, key, content, {});
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code(), Code::kUnavailable) << gone.error().message();
  }
  EXPECT_FALSE(proc->Exited());

  fault_->Set("");  // put back
  auto back = remote.QueryStatus();
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->token_present) << back->detail;
  auto sig = crypto::SignFile(remote, key, content, {});
  ASSERT_TRUE(sig) << sig.error().message() << "\n" << proc->Log();
  std::string p7s = content + ".p7s";
  testing::WriteTestFile(p7s, *sig);
  EXPECT_TRUE(testing::OpensslCmsVerifies(p7s, content, ca_pem_, "-cades"));
  EXPECT_EQ(Lines(Journal()), 2u);
}

TEST_F(SignerProcessTest, StatusReportsThePinFlagsTheTokenSetsNow) {
  if (!FaultModule::Available()) GTEST_SKIP() << "built without tests/fault_pkcs11";
  UseFaultModule();
  auto proc = Start();
  auto remote = Client();
  auto st = remote.QueryStatus();
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_TRUE(st->detail.empty()) << st->detail;
  fault_->Set("flags.add=CKF_USER_PIN_COUNT_LOW\n");
  st = remote.QueryStatus();
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_TRUE(st->token_present && st->logged_in);
  EXPECT_EQ(st->detail, "user PIN count low (CKF_USER_PIN_COUNT_LOW)");
  fault_->Set("flags.add=CKF_USER_PIN_COUNT_LOW,CKF_USER_PIN_FINAL_TRY\n");
  st = remote.QueryStatus();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->detail, "user PIN final try (CKF_USER_PIN_FINAL_TRY)");
  fault_->Set("flags.add=CKF_USER_PIN_LOCKED\n");
  st = remote.QueryStatus();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->detail, "user PIN locked (CKF_USER_PIN_LOCKED)");
  fault_->Set("");
  st = remote.QueryStatus();
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->detail.empty()) << st->detail;
}

TEST_F(SignerProcessTest, TokenAbsentAtStartIsOpenedOnceInserted) {
  if (!FaultModule::Available()) GTEST_SKIP() << "built without tests/fault_pkcs11";
  UseFaultModule();
  fault_->Set("removed=1\n");
  auto proc = Start();  // serves although the token is not there
  auto remote = Client();
  auto st = remote.QueryStatus();
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_FALSE(st->token_present);
  EXPECT_FALSE(st->logged_in);
  EXPECT_FALSE(st->keys.at(0).certificate);
  crypto::KeyRef key{Uri("seal")};
  std::string content = Content("late.txt", "Công văn\n");
  auto gone = crypto::SignFile(remote, key, content, {});
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code(), Code::kUnavailable) << gone.error().message();
  EXPECT_EQ(fault_->Count("C_Login"), 0);

  fault_->Set("");
  // Opened on demand (at most every 2 s).
  Result<std::string> sig = Err(Status::Unavailable("not tried"));
  auto t0 = Clock::now();
  while (!sig && Since(t0) < 6) {
    sig = crypto::SignFile(remote, key, content, {});
    if (!sig) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(sig) << sig.error().message() << "\n" << proc->Log();
  EXPECT_EQ(fault_->Count("C_Login"), 1);
  auto now = remote.QueryStatus();
  ASSERT_TRUE(now);
  EXPECT_TRUE(now->token_present) << now->detail;
  EXPECT_TRUE(now->keys.at(0).certificate);
}

TEST_F(SignerProcessTest, HungTokenCallMakesSignerExitWithinItsBound) {
  if (!FaultModule::Available()) GTEST_SKIP() << "built without tests/fault_pkcs11";
  UseFaultModule();
  auto proc = Start();  // --call-timeout 2
  auto remote = Client(std::chrono::seconds(10));
  crypto::KeyRef key{Uri("seal")};
  std::string content = Content("minutes.txt", "Biên bản\n");
  fault_->Set("hang.C_Sign=60\n");
  auto t0 = Clock::now();
  auto sig = crypto::SignFile(remote, key, content, {});
  ASSERT_FALSE(sig);
  EXPECT_EQ(sig.error().code(), Code::kUnavailable) << sig.error().message();
  int code = proc->WaitExit(5);
  double elapsed = Since(t0);
  EXPECT_EQ(code, 69) << proc->Log();
  EXPECT_LT(elapsed, 4.0) << "bound is 2 s";
  RecordProperty("signer_exit_after_seconds", std::to_string(elapsed));
  EXPECT_NE(proc->Log().find("did not answer"), std::string::npos) << proc->Log();
  EXPECT_EQ(Journal(), "");

  // The supervisor's part: a new signer on the same socket serves again.
  fault_->Set("");
  auto again = Start();
  EXPECT_TRUE(crypto::SignFile(remote, key, content, {})) << again->Log();
}

// Signatures per second through the signer vs in-process (P-256, SoftHSM2).
// A measurement for the report, with a loose sanity floor only.
TEST_F(SignerProcessTest, ThroughputThroughSignerIsMeasured) {
  auto proc = Start();
  auto remote = Client();
  crypto::KeyRef key{Uri("seal")};
  std::string digest(32, '\x11');
  auto cert = remote.Certificate(key);
  ASSERT_TRUE(cert);
  // Sanitizer builds (with fast_unwind_on_malloc=0) sign a few per second:
  // there the test only checks that concurrent signing works.
#if defined(__SANITIZE_ADDRESS__)
  constexpr int kN = 12;
  constexpr bool kMeasure = false;
#else
  constexpr int kN = 300;
  constexpr bool kMeasure = true;
#endif
  auto t0 = Clock::now();
  for (int i = 0; i < kN; ++i) {
    auto der = crypto::BuildDetachedSignature(remote, key, cert->get(), crypto::DigestAlg::kSha256, digest, {});
    ASSERT_TRUE(der) << der.error().message();
  }
  double remote_rate = kN / Since(t0);

  // The daemon signs from several threads: concurrent calls use separate
  // connections and the journal groups their fdatasyncs.
  constexpr int kThreads = 4;
  std::atomic<int> failures{0};
  t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kN / kThreads; ++i) {
        auto der = crypto::BuildDetachedSignature(remote, key, cert->get(), crypto::DigestAlg::kSha256,
                                                  digest, {});
        if (!der) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  double concurrent_rate = kN / Since(t0);
  EXPECT_EQ(failures.load(), 0);

  pkcs11::OpenOptions o;
  o.pin_file = pin_file_;
  o.interactive = false;
  auto local = pkcs11::OpenTokenSigner(Uri("seal"), o);
  ASSERT_TRUE(local) << local.error().message();
  t0 = Clock::now();
  for (int i = 0; i < kN; ++i) {
    auto der = crypto::BuildDetachedSignature(**local, key, cert->get(), crypto::DigestAlg::kSha256, digest, {});
    ASSERT_TRUE(der) << der.error().message();
  }
  double local_rate = kN / Since(t0);
  RecordProperty("cades_per_s_through_signer", std::to_string(static_cast<int>(remote_rate)));
  RecordProperty("cades_per_s_through_signer_4_threads", std::to_string(static_cast<int>(concurrent_rate)));
  RecordProperty("cades_per_s_in_process", std::to_string(static_cast<int>(local_rate)));
  std::printf("CAdES B-B P-256 signatures/s: through sealpost-signer %.0f (1 thread), %.0f (%d threads); "
              "in-process %.0f\n",
              remote_rate, concurrent_rate, kThreads, local_rate);
  if (kMeasure) {
    EXPECT_GT(remote_rate, 20.0);
  }
  EXPECT_EQ(Lines(Journal()), static_cast<size_t>(2 * kN));
}

// Concurrent requests reach the journal one after the other (token calls
// are serialised): the journal's writer waits for those still signing, so
// they share one fdatasync, and every signature is still journaled before
// its answer. The signer logs its journal's lines and syncs when it stops.
TEST_F(SignerProcessTest, ConcurrentSignaturesShareJournalSyncsAndAreAllJournaled) {
  auto proc = Start({"--verbose"});
  auto remote = Client();
  crypto::KeyRef key{Uri("seal")};
  std::string digest(32, '\x22');
  auto cert = remote.Certificate(key);
  ASSERT_TRUE(cert) << cert.error().message();
#if defined(__SANITIZE_ADDRESS__)
  // A few signatures a second under the sanitizers: only consistency.
  constexpr int kPerThread = 3;
  constexpr bool kMeasure = false;
#else
  constexpr int kPerThread = 25;
  constexpr bool kMeasure = true;
#endif
  constexpr int kThreads = 8;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        auto der = crypto::BuildDetachedSignature(remote, key, cert->get(), crypto::DigestAlg::kSha256,
                                                  digest, {});
        if (!der) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  const size_t n = static_cast<size_t>(kThreads * kPerThread);
  // Answered means journaled.
  EXPECT_EQ(Lines(Journal()), n);

  proc->Kill(SIGTERM);
  ASSERT_EQ(proc->WaitExit(10), 0) << proc->Log();
  std::string log = proc->Log();
  size_t l = log.find("journal_lines="), y = log.find("journal_syncs=");
  ASSERT_NE(l, std::string::npos) << log;
  ASSERT_NE(y, std::string::npos) << log;
  unsigned long lines = std::stoul(log.substr(l + 14)), syncs = std::stoul(log.substr(y + 14));
  EXPECT_EQ(lines, n);
  EXPECT_GE(syncs, 1u);
  EXPECT_LE(syncs, lines);
  if (kMeasure) {
    EXPECT_LT(syncs, lines) << kThreads << " concurrent signers never shared an fdatasync";
  }
  RecordProperty("journal_lines_per_sync", std::to_string(static_cast<double>(lines) / syncs));
}

}  // namespace
}  // namespace sealpost::signer
