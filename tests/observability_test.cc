// Observability of real appliances (tests/support/federation.h: SoftHSM2
// seal tokens, sealpost-signer and sealpostd processes on 127.0.0.1):
//  - /metrics scraped from the district and a grassroots appliance after a
//    submission, its delivery, a refused submission, a desk verification of
//    a tampered file and a signer restart: the exposition passes a strict
//    format check (tests/support/prometheus_text.h) and the values moved;
//  - the whole run's daemon and signer logs hold no PIN, no API token, no
//    private key bytes and no document content.
// One process for the suite (tests/CMakeLists.txt): the tests share one
// federation and run in order.
#include <sys/stat.h>

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "base/encoding.h"
#include "tests/support/federation.h"
#include "tests/support/prometheus_text.h"
#include "tests/support/wait.h"

namespace sealpost::testing {
namespace {

// A distinctive content string: it must never appear in a log.
constexpr const char* kSecretContent = "NOI-DUNG-MAT-7f3a9c Biên bản họp kín số 42";

class ObservabilityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    FederationOptions o;
    o.grassroots = 1;
    o.extra_config =
        "delivery: {backoff_base_millis: 200, backoff_cap_millis: 1000, poll_millis: 50,\n"
        "  lease_seconds: 10, attempts_flush_seconds: 1, max_attempts: 1000}\n";
    fed_ = Federation::Start(o).release();
    if (fed_ != nullptr) {
      for (const auto& a : fed_->appliances()) {
        tokens_[a->id()] = a->CreateToken("auditor", "prometheus");
      }
    }
  }
  static void TearDownTestSuite() {
    if (fed_ != nullptr) {
      EXPECT_TRUE(fed_->StopAll());
      delete fed_;
      fed_ = nullptr;
    }
  }
  void SetUp() override {
    if (fed_ == nullptr) GTEST_FAIL() << "the federation did not start";
  }

  // GET /metrics with the auditor's token, parsed strictly.
  static PromExposition Scrape(const Appliance& a) {
    HttpAnswer h = a.Get("/metrics", tokens_[a.id()]);
    EXPECT_EQ(h.status, 200) << h.body << h.error;
    std::string error;
    auto parsed = ParsePrometheusText(h.body, &error);
    EXPECT_TRUE(parsed.has_value()) << error << "\n" << h.body;
    return parsed.value_or(PromExposition{});
  }

  // `sealpost doctor` helpers. Output lines: "<OK|WARN|FAIL>  <check> <detail>".
  // Runs the doctor; the exit status, the output in *out.
  static int Doctor(const std::string& config, std::string* out, const std::string& extra = "") {
    return fed_->Sealpost("doctor --config " + ShellQuote(config) + " " + extra, out);
  }
  // The lines of `out` whose check is `check` (exact name).
  static std::vector<std::string> Lines(const std::string& out, const std::string& level,
                                        const std::string& check) {
    std::vector<std::string> found;
    size_t at = 0;
    while (at < out.size()) {
      size_t nl = out.find('\n', at);
      std::string line = out.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
      at = nl == std::string::npos ? out.size() : nl + 1;
      std::string prefix = level;
      prefix.resize(6, ' ');
      if (line.rfind(prefix + check + " ", 0) == 0) found.push_back(line);
    }
    return found;
  }
  // A copy of the district's configuration with `edit` applied to its text,
  // beside it (relative paths keep working).
  static std::string ConfigCopy(const std::string& name,
                                const std::function<void(std::string&)>& edit) {
    std::string text = ReadTestFile(fed_->district().file("sealpostd.yaml"));
    edit(text);
    std::string path = fed_->district().file(name);
    WriteTestFile(path, text);
    return path;
  }
  static Federation* fed_;
  static std::map<std::string, std::string> tokens_;
};

Federation* ObservabilityTest::fed_ = nullptr;
std::map<std::string, std::string> ObservabilityTest::tokens_;

TEST_F(ObservabilityTest, PrometheusCheckerRefusesMalformedExpositions) {
  // The checker itself must be able to fail.
  std::string error;
  EXPECT_FALSE(ParsePrometheusText("x_total 1\n", &error));  // no TYPE/HELP
  EXPECT_FALSE(ParsePrometheusText("# HELP a_total h\n# TYPE a_total counter\na_total{l=\"x} 1\n",
                                   &error));
  EXPECT_FALSE(ParsePrometheusText("# HELP a h\n# TYPE a counter\na 1\n", &error));  // no _total
  EXPECT_FALSE(ParsePrometheusText(
      "# HELP a h\n# TYPE a gauge\na 1\n# HELP b h\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n", &error));
  EXPECT_FALSE(ParsePrometheusText(
      "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
      "h_sum 1\nh_count 1\n",
      &error));
  EXPECT_FALSE(ParsePrometheusText("# HELP a h\n# TYPE a gauge\na 1\na 2\n", &error));
  EXPECT_TRUE(ParsePrometheusText(
      "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
      "h_sum 1.5\nh_count 2\n# HELP a_total x\n# TYPE a_total counter\na_total{l=\"q\\\"\"} 3\n",
      &error))
      << error;
}

TEST_F(ObservabilityTest, MetricsMoveAfterSubmissionDeliveryRefusalVerificationAndSignerRestart) {
  Appliance& d = fed_->district();
  Appliance& g = fed_->grassroots(0);
  PromExposition before = Scrape(d);
  PromExposition g_before = Scrape(g);
  // Every family the issue names is exposed, with HELP and TYPE.
  for (const char* family :
       {"sealpost_submissions_total", "sealpost_receipts_total", "sealpost_verifications_total",
        "sealpost_token_state", "sealpost_signer_restarts_total", "sealpost_outbox_jobs",
        "sealpost_outbox_oldest_due_age_seconds", "sealpost_archive_entries",
        "sealpost_archive_bytes", "sealpost_http_request_duration_seconds",
        "sealpost_delivery_receipts_total", "sealpost_bundle_cache_bytes",
        "sealpost_bundle_cache_hits_total", "sealpost_bundle_cache_misses_total",
        "sealpost_bundle_cache_evictions_total"}) {
    EXPECT_EQ(before.types.count(family), 1u) << family;
  }
  EXPECT_EQ(before.Value("sealpost_token_state", {{"state", "ready"}}), 1.0);
  EXPECT_EQ(before.Value("sealpost_submissions_total", {{"outcome", "accepted"}}), 0.0);
  EXPECT_GT(before.Value("sealpost_signer_certificate_not_after_seconds").value_or(0),
            static_cast<double>(std::time(nullptr)));

  // A submission (chair + seal) delivered to the grassroots union.
  std::string path = fed_->file("bien-ban.txt");
  WriteTestFile(path, std::string(kSecretContent) + "\n");
  std::string sig = fed_->SignAsChair(path);
  ASSERT_FALSE(sig.empty());
  SubmitSpec s;
  s.file = path;
  s.type = "directive";
  s.recipients = fed_->grassroots_ids();
  s.signature = sig;
  HttpAnswer a = d.Submit(s);
  ASSERT_EQ(a.status, 201) << a.body << a.error;
  ASSERT_FALSE(IdOf(a.body).empty());
  ASSERT_TRUE(WaitFor(
      [&] {
        return Scrape(d).Value("sealpost_receipts_total", {{"direction", "received"}}) == 1.0;
      },
      30))
      << d.Log();

  // A refusal: the district may not issue a report (policy) -> 403.
  SubmitSpec bad = s;
  bad.type = "report";
  bad.signature.clear();
  HttpAnswer r = d.Submit(bad);
  EXPECT_EQ(r.status, 403) << r.body;
  // A malformed one: no recipients -> 400.
  HttpAnswer inv = d.Curl("/api/v1/documents?type=directive&name=x.txt",
                          "-X POST -H 'Content-Type: application/octet-stream' --data-binary x",
                          "clerk", false);
  EXPECT_EQ(inv.status, 400) << inv.body;

  // The verification desk: the chair's signature over another content.
  std::string tampered = fed_->file("tampered.txt");
  WriteTestFile(tampered, "not what the chair signed\n");
  HttpAnswer v = d.Curl("/api/v1/verify", "-F file=@" + tampered + " -F signature=@" + sig, "",
                        false);
  EXPECT_EQ(v.status, 200) << v.body;
  EXPECT_TRUE(Contains(v.body, "HASH_FAILURE")) << v.body;

  PromExposition after = Scrape(d);
  EXPECT_EQ(after.Value("sealpost_submissions_total", {{"outcome", "accepted"}}), 1.0);
  EXPECT_EQ(after.Value("sealpost_submissions_total", {{"outcome", "refused"}}), 1.0);
  EXPECT_EQ(after.Value("sealpost_submissions_total", {{"outcome", "invalid"}}), 1.0);
  EXPECT_EQ(after.Value("sealpost_verifications_total",
                        {{"context", "submission"}, {"indication", "PASSED"}}),
            1.0);
  EXPECT_EQ(after.Value("sealpost_verifications_total",
                        {{"context", "desk"}, {"indication", "FAILED"},
                         {"sub_indication", "HASH_FAILURE"}}),
            1.0);
  EXPECT_EQ(after.Value("sealpost_delivery_receipts_total"), 1.0);
  EXPECT_EQ(after.Value("sealpost_outbox_jobs", {{"state", "delivered"}}), 1.0);
  EXPECT_EQ(after.Value("sealpost_outbox_jobs", {{"state", "due"}}), 0.0);
  // The archive grew: the document, its receipt (and attempts) are entries.
  ASSERT_TRUE(after.Value("sealpost_archive_entries").has_value());
  EXPECT_GE(*after.Value("sealpost_archive_entries"), 2.0);
  EXPECT_GT(after.Value("sealpost_archive_bytes").value_or(0), 0.0);
  // The small document's bundle was made in memory and its delivery took it
  // from there (decision 0014).
  EXPECT_EQ(after.Value("sealpost_bundle_cache_entries"), 1.0);
  EXPECT_GT(after.Value("sealpost_bundle_cache_bytes").value_or(0), 0.0);
  EXPECT_EQ(after.Value("sealpost_bundle_cache_max_bytes"), 64.0 * 1024 * 1024);
  EXPECT_GE(after.Value("sealpost_bundle_cache_hits_total").value_or(0), 1.0);
  EXPECT_EQ(after.Value("sealpost_bundle_cache_evictions_total"), 0.0);
  // Request latency: the submission's route was observed.
  EXPECT_GE(after.Sum("sealpost_http_request_duration_seconds_count",
                      {{"route", "/api/v1/documents"}, {"status", "201"}}),
            1.0);
  EXPECT_GT(after.Sum("sealpost_http_requests_total"), before.Sum("sealpost_http_requests_total"));

  // The recipient issued one receipt and verified one bundle.
  PromExposition ga = Scrape(g);
  EXPECT_EQ(g_before.Value("sealpost_receipts_total", {{"direction", "issued"}}), 0.0);
  EXPECT_EQ(ga.Value("sealpost_receipts_total", {{"direction", "issued"}}), 1.0);
  EXPECT_EQ(ga.Value("sealpost_verifications_total",
                     {{"context", "inbox"}, {"indication", "PASSED"}, {"sub_indication", "NONE"}}),
            1.0);
  EXPECT_EQ(ga.Value("sealpost_inbox_accepted_total"), 1.0);

  // The signer goes away: the token state says so; a new signer process is
  // counted as a restart.
  EXPECT_EQ(after.Value("sealpost_signer_restarts_total"), 0.0);
  d.KillSigner();
  PromExposition down = Scrape(d);
  EXPECT_EQ(down.Value("sealpost_token_state", {{"state", "signer_unreachable"}}), 1.0);
  EXPECT_EQ(down.Value("sealpost_token_state", {{"state", "ready"}}), 0.0);
  ASSERT_TRUE(d.StartSigner());
  PromExposition up = Scrape(d);
  EXPECT_EQ(up.Value("sealpost_token_state", {{"state", "ready"}}), 1.0);
  EXPECT_EQ(up.Value("sealpost_signer_restarts_total"), 1.0);
}

// `sealpost doctor` against the district, healthy, then broken one way at a
// time.

TEST_F(ObservabilityTest, DoctorHealthyApplianceIsAllOkAndTheSecondRunAuditsIncrementally) {
  Appliance& d = fed_->district();
  std::string out;
  int rc = Doctor(d.file("sealpostd.yaml"), &out, "--full-audit");
  EXPECT_EQ(rc, 0) << out;
  for (const char* check : {"config", "policy", "signer", "certificate", "trust", "archive",
                            "daemon"}) {
    EXPECT_FALSE(Lines(out, "OK", check).empty()) << check << "\n" << out;
  }
  EXPECT_EQ(Lines(out, "OK", "peer " + fed_->grassroots(0).id()).size(), 1u) << out;
  EXPECT_FALSE(Contains(out, "WARN")) << out;
  EXPECT_FALSE(Contains(out, "FAIL")) << out;
  EXPECT_TRUE(Contains(out, "(full)")) << out;
  std::printf("%s", out.c_str());  // what an operator sees
  // The clean run saved the head checkpoint; the next one trusts it.
  rc = Doctor(d.file("sealpostd.yaml"), &out, "--json");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_TRUE(Contains(out, "\"status\":\"ok\",\"exit\":0")) << out;
  EXPECT_TRUE(Contains(out, "after the checkpoint of the last clean check")) << out;
}

TEST_F(ObservabilityTest, DoctorExpiredAndExpiringAnchorsAndAStaleCrlAreReported) {
  TestCa other = TestCa::CreateRoot("/CN=Other CA/O=Test/C=VN");
  CertSpec expired;
  expired.subject = "/CN=Expired Root/O=Test/C=VN";
  expired.ca = true;
  expired.key_usage = "critical,keyCertSign,cRLSign";
  expired.not_before_offset = -400L * 86400;
  expired.not_after_offset = -86400;
  Issued e = other.Issue(expired);
  CertSpec soon = expired;
  soon.subject = "/CN=Expiring Root/O=Test/C=VN";
  soon.not_after_offset = 10L * 86400;
  Issued n = other.Issue(soon);
  Appliance& d = fed_->district();
  WriteTestFile(d.file("doctor-expired.pem"), CertToPem(e.cert.get()));
  WriteTestFile(d.file("doctor-soon.pem"), CertToPem(n.cert.get()));
  WriteTestFile(d.file("doctor-other.pem"), CertToPem(other.cert()));
  WriteTestFile(d.file("doctor-stale.crl"), CrlToPem(other.MakeCrl({}, -1).get()));
  std::string cfg = ConfigCopy("doctor-trust.yaml", [&](std::string& t) {
    size_t at = t.find("trust_anchors: [");
    ASSERT_NE(at, std::string::npos);
    size_t close = t.find(']', at);
    t.insert(close, ", \"" + d.file("doctor-expired.pem") + "\", \"" + d.file("doctor-soon.pem") +
                        "\", \"" + d.file("doctor-other.pem") + "\"");
    close = t.find(']', at);
    t.insert(close + 1, "\n  crls: [\"" + d.file("doctor-stale.crl") + "\"]");
  });
  std::string out;
  EXPECT_EQ(Doctor(cfg, &out, "--no-save"), 2) << out;
  auto fail = Lines(out, "FAIL", "trust");
  ASSERT_EQ(fail.size(), 2u) << out;
  EXPECT_TRUE(Contains(fail[0], "Expired Root") && Contains(fail[0], "expired on")) << fail[0];
  EXPECT_TRUE(Contains(fail[1], "doctor-stale.crl") && Contains(fail[1], "stale")) << fail[1];
  auto warn = Lines(out, "WARN", "trust");
  ASSERT_EQ(warn.size(), 1u) << out;
  // Issued for 10 days from now: 9 or 10 whole days left, by the second.
  EXPECT_TRUE(Contains(warn[0], "Expiring Root") &&
              (Contains(warn[0], "(in 9 days)") || Contains(warn[0], "(in 10 days)")))
      << warn[0];
  EXPECT_TRUE(Contains(out, "fix: fetch a fresh CRL")) << out;
  // Nothing else is blamed.
  EXPECT_FALSE(Lines(out, "OK", "archive").empty()) << out;
  EXPECT_FALSE(Lines(out, "OK", "signer").empty()) << out;
}

TEST_F(ObservabilityTest, DoctorChecksTheCrlsTheDaemonFetchedAndTheWebhookSecrets) {
  Appliance& d = fed_->district();
  // A policy with a CRL source, and a configuration using it with one
  // webhook secret file.
  const std::string url = "http://127.0.0.1:9/doctor-test-ca.crl";
  std::string policy = ReadTestFile(fed_->file("policy.yaml"));
  size_t at = policy.find("unions:\n");
  ASSERT_NE(at, std::string::npos);
  policy.insert(at, "  crl_sources:\n    - {anchor: test-ca, url: \"" + url + "\"}\n");
  WriteTestFile(d.file("doctor-crl-policy.yaml"), policy);
  const std::string secret = d.file("doctor-webhook.secret");
  WriteTestFile(secret, std::string(64, 'a') + "\n");
  ASSERT_EQ(::chmod(secret.c_str(), 0644), 0);
  std::string cfg = ConfigCopy("doctor-crl.yaml", [&](std::string& t) {
    const std::string old = "\"" + fed_->file("policy.yaml") + "\"";
    size_t p = t.find(old);
    ASSERT_NE(p, std::string::npos) << t;
    t.replace(p, old.size(), "\"" + d.file("doctor-crl-policy.yaml") + "\"");
    t += "webhook:\n  secrets:\n    " + fed_->grassroots(0).id() + ": \"" + secret + "\"\n";
  });
  std::string out;
  // Not fetched yet: a warning naming the source; the secret readable by
  // others: a failure naming the file and its mode, never its content.
  EXPECT_EQ(Doctor(cfg, &out, "--no-save"), 2) << out;
  auto warn = Lines(out, "WARN", "trust");
  ASSERT_EQ(warn.size(), 1u) << out;
  EXPECT_TRUE(Contains(warn[0], url) && Contains(warn[0], "not fetched yet")) << warn[0];
  auto fail = Lines(out, "FAIL", "webhook");
  ASSERT_EQ(fail.size(), 1u) << out;
  EXPECT_TRUE(Contains(fail[0], secret) && Contains(fail[0], "mode 0644")) << fail[0];
  EXPECT_FALSE(Contains(out, std::string(64, 'a'))) << out;

  // The daemon's file for that source (daemon/crls.cc names it), stale.
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  ASSERT_EQ(EVP_Digest(url.data(), url.size(), md, &n, EVP_sha256(), nullptr), 1);
  ::mkdir((d.state_dir() + "/crls").c_str(), 0750);
  const std::string fetched = d.state_dir() + "/crls/test-ca-" +
                              HexEncode(std::string_view(reinterpret_cast<const char*>(md), n)).substr(0, 16) +
                              ".der";
  WriteTestFile(fetched, CrlToDer(fed_->ca().MakeCrl({}, -1).get()));
  ASSERT_EQ(::chmod(secret.c_str(), 0600), 0);
  EXPECT_EQ(Doctor(cfg, &out, "--no-save"), 2) << out;
  fail = Lines(out, "FAIL", "trust");
  ASSERT_EQ(fail.size(), 1u) << out;
  EXPECT_TRUE(Contains(fail[0], url) && Contains(fail[0], "stale")) << fail[0];
  EXPECT_EQ(Lines(out, "OK", "webhook").size(), 1u) << out;
  EXPECT_TRUE(Lines(out, "FAIL", "webhook").empty()) << out;
  // Fresh: everything OK again.
  WriteTestFile(fetched, CrlToDer(fed_->ca().MakeCrl({}, 30).get()));
  EXPECT_EQ(Doctor(cfg, &out, "--no-save"), 0) << out;
  EXPECT_EQ(Lines(out, "OK", "trust").size(), 2u) << out;  // the anchor and the fetched CRL
  std::remove(fetched.c_str());
}

TEST_F(ObservabilityTest, DoctorPeerDownIsAWarning) {
  Appliance& g = fed_->grassroots(0);
  g.Kill();
  std::string out;
  EXPECT_EQ(Doctor(fed_->district().file("sealpostd.yaml"), &out, "--no-save"), 1) << out;
  EXPECT_EQ(Lines(out, "WARN", "peer " + g.id()).size(), 1u) << out;
  EXPECT_TRUE(Contains(out, "unreachable")) << out;
  ASSERT_TRUE(g.Restart());
  EXPECT_EQ(Doctor(fed_->district().file("sealpostd.yaml"), &out, "--no-save"), 0) << out;
}

TEST_F(ObservabilityTest, DoctorSignerGoneIsAFailureAndComesBack) {
  Appliance& d = fed_->district();
  d.KillSigner();
  std::string out;
  EXPECT_EQ(Doctor(d.file("sealpostd.yaml"), &out, "--no-save"), 2) << out;
  auto fail = Lines(out, "FAIL", "signer");
  ASSERT_EQ(fail.size(), 1u) << out;
  EXPECT_TRUE(Contains(fail[0], "does not answer")) << fail[0];
  EXPECT_TRUE(Contains(out, "systemctl start sealpost-signer")) << out;
  ASSERT_TRUE(d.StartSigner());
  EXPECT_EQ(Doctor(d.file("sealpostd.yaml"), &out, "--no-save"), 0) << out;
}

TEST_F(ObservabilityTest, DoctorTamperedArchiveEntryIsAFailure) {
  Appliance& d = fed_->district();
  // A copy of the state (the live archive stays intact for the other tests),
  // then an entry's manifest rewritten in a new commit, as an intruder with
  // write access to the repository would.
  std::string copy = d.file("state-tampered");
  std::string out;
  ASSERT_EQ(RunCommand("cp -a " + ShellQuote(d.state_dir()) + " " + ShellQuote(copy), &out), 0) << out;
  std::string git = "git --git-dir=" + ShellQuote(copy + "/archive");
  std::string idx = "GIT_INDEX_FILE=" + ShellQuote(d.file("tamper.index")) + " ";
  std::string script =
      "set -e; " + idx + git + " read-tree main; "
      "p=$(" + git + " ls-tree -r --name-only main | grep '/manifest.json$' | head -1); "
      "test -n \"$p\"; "
      "b=$(echo tampered | " + git + " hash-object -w --stdin); " +
      idx + git + " update-index --cacheinfo 100644,$b,$p; "
      "t=$(" + idx + git + " write-tree); "
      "c=$(GIT_AUTHOR_NAME=x GIT_AUTHOR_EMAIL=x@x GIT_COMMITTER_NAME=x GIT_COMMITTER_EMAIL=x@x " +
      git + " commit-tree $t -p main -m tamper); " + git + " update-ref refs/heads/main $c";
  ASSERT_EQ(RunCommand(script, &out), 0) << out;
  std::string cfg = ConfigCopy("doctor-tampered.yaml", [&](std::string& t) {
    size_t at = t.find("state_dir: ");
    ASSERT_NE(at, std::string::npos);
    size_t nl = t.find('\n', at);
    t.replace(at, nl - at, "state_dir: \"" + copy + "\"");
  });
  EXPECT_EQ(Doctor(cfg, &out, "--no-save"), 2) << out;
  auto fail = Lines(out, "FAIL", "archive");
  ASSERT_EQ(fail.size(), 1u) << out;
  EXPECT_TRUE(Contains(fail[0], "problem")) << fail[0];
  EXPECT_TRUE(Contains(out, "sealpost audit")) << out;
  // The live archive is still clean.
  EXPECT_EQ(Doctor(d.file("sealpostd.yaml"), &out, "--no-save"), 0) << out;
}

TEST_F(ObservabilityTest, DoctorBadConfigurationIsAFailureWithItsPosition) {
  std::string cfg = ConfigCopy("doctor-bad.yaml", [](std::string& t) { t += "no_such_key: 1\n"; });
  std::string out;
  EXPECT_EQ(Doctor(cfg, &out), 2) << out;
  auto fail = Lines(out, "FAIL", "config");
  ASSERT_EQ(fail.size(), 1u) << out;
  EXPECT_TRUE(Contains(fail[0], "doctor-bad.yaml:")) << fail[0];
  EXPECT_TRUE(Contains(fail[0], "no_such_key")) << fail[0];
  EXPECT_EQ(fed_->Sealpost("doctor", &out), 64) << out;
}

// Runs last (declared last; one process): every log of the run.
TEST_F(ObservabilityTest, LogsOfTheWholeRunHoldNoPinTokenKeyOrContent) {
  ASSERT_TRUE(fed_->StopAll());
  std::vector<std::string> secrets = {kSecretContent, "Biên bản họp kín"};
  std::string logs;
  size_t files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(fed_->dir())) {
    if (!e.is_regular_file()) continue;
    std::string p = e.path().string();
    if (p.ends_with(".log")) {
      logs += ReadTestFile(p);
      ++files;
    }
    // Every PIN file, the TLS private keys' base64 lines.
    if (p.ends_with(".pin")) {
      std::string pin = ReadTestFile(p);
      while (!pin.empty() && (pin.back() == '\n' || pin.back() == '\r')) pin.pop_back();
      ASSERT_GE(pin.size(), 4u);
      secrets.push_back(pin);
    }
    if (p.ends_with("-key.pem")) {
      std::string pem = ReadTestFile(p);
      size_t line_start = pem.find('\n') + 1;  // after BEGIN
      secrets.push_back(pem.substr(line_start, 40));
    }
  }
  for (const auto& a : fed_->appliances()) {
    secrets.push_back(a->clerk_token());
    secrets.push_back(tokens_[a->id()]);
  }
  // The run did log: requests, deliveries, the signer's signatures.
  ASSERT_GE(files, 4u);
  EXPECT_TRUE(Contains(logs, "msg=\"request\"")) << logs.substr(0, 2000);
  EXPECT_TRUE(Contains(logs, "msg=\"delivered\""));
  for (const std::string& secret : secrets) {
    ASSERT_FALSE(secret.empty());
    EXPECT_FALSE(Contains(logs, secret)) << "a log holds: " << secret;
  }
}

}  // namespace
}  // namespace sealpost::testing
