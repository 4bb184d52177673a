// sealpostd's configuration loader, problem+json and language choice, and
// the API token store (no processes).
#include <ctime>
#include <string>

#include <gtest/gtest.h>

#include "daemon/config.h"
#include "daemon/problem.h"
#include "storage/api_tokens.h"
#include "tests/support/test_pki.h"

namespace sealpost::daemon {
namespace {

using testing::TempDir;

const char* kGood =
    "union: ldld-ha-long\n"
    "state_dir: /var/lib/sealpost\n"
    "language: en\n"
    "policy: [federation.yaml, types.yaml]\n"
    "signer_socket: /run/sealpost/signer.sock\n"
    "listeners:\n"
    "  peer: {address: 0.0.0.0, port: 8443, certificate: tls.pem, key: tls-key.pem, client_ca: ca.pem}\n"
    "  user:\n"
    "    port: 9443\n"
    "    certificate: tls.pem\n"
    "    key: tls-key.pem\n"
    "    client_ca: ca.pem\n"
    "    client_certificates:\n"
    "      - {sha256: \"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\", role: officer, name: \"Nguyễn Thị Duyên\"}\n"
    "verify: {trust_anchors: [roots.pem], crls: crl.pem, intermediates: [provincial-ca.pem]}\n"
    "limits: {max_body_bytes: 1048576, read_timeout_seconds: 7, max_connections: 4}\n";

TEST(DaemonConfigTest, ParseCompleteFileResolvesRelativePaths) {
  auto c = ParseConfig(kGood, "/etc/sealpost/sealpostd.yaml");
  ASSERT_TRUE(c.has_value()) << c.error().message();
  EXPECT_EQ(c->union_id, "ldld-ha-long");
  EXPECT_EQ(c->language, Lang::kEn);
  ASSERT_EQ(c->policy_files.size(), 2u);
  EXPECT_EQ(c->policy_files[0], "/etc/sealpost/federation.yaml");
  EXPECT_EQ(c->signer_socket, "/run/sealpost/signer.sock");
  EXPECT_EQ(c->peer.address, "0.0.0.0");
  EXPECT_EQ(c->peer.port, 8443);
  EXPECT_EQ(c->peer.client_ca, "/etc/sealpost/ca.pem");
  EXPECT_EQ(c->user.address, "127.0.0.1");
  ASSERT_EQ(c->user.client_certificates.size(), 1u);
  EXPECT_EQ(c->user.client_certificates[0].role, "officer");
  EXPECT_EQ(c->user.client_certificates[0].name, "Nguyễn Thị Duyên");
  ASSERT_EQ(c->crls.size(), 1u);
  EXPECT_EQ(c->crls[0], "/etc/sealpost/crl.pem");
  ASSERT_EQ(c->intermediates.size(), 1u);
  EXPECT_EQ(c->intermediates[0], "/etc/sealpost/provincial-ca.pem");
  EXPECT_EQ(c->limits.max_body_bytes, 1048576u);
  EXPECT_EQ(c->limits.read_timeout_seconds, 7);
  EXPECT_EQ(c->limits.max_connections, 4);
  EXPECT_EQ(c->limits.max_header_bytes, 16384u);  // default kept
}

TEST(DaemonConfigTest, ParseDeliveryDefaultsToPeerListenerFilesAndIsStrict) {
  auto c = ParseConfig(kGood, "/etc/sealpost/sealpostd.yaml");
  ASSERT_TRUE(c.has_value()) << c.error().message();
  EXPECT_EQ(c->delivery.certificate, "/etc/sealpost/tls.pem");
  EXPECT_EQ(c->delivery.key, "/etc/sealpost/tls-key.pem");
  EXPECT_EQ(c->delivery.ca, "/etc/sealpost/ca.pem");
  EXPECT_EQ(c->delivery.threads, 32);
  EXPECT_EQ(c->delivery.backoff_base_millis, 1000);

  std::string text = std::string(kGood) +
                     "delivery: {certificate: out.pem, key: out-key.pem, ca: peers.pem, threads: 4,\n"
                     "  backoff_base_millis: 200, backoff_cap_millis: 2000, max_attempts: 5,\n"
                     "  lease_seconds: 30, poll_millis: 50, attempts_flush_seconds: 5,\n"
                     "  max_in_flight_per_recipient: 2}\n";
  auto d = ParseConfig(text, "/etc/sealpost/sealpostd.yaml");
  ASSERT_TRUE(d.has_value()) << d.error().message();
  EXPECT_EQ(d->delivery.certificate, "/etc/sealpost/out.pem");
  EXPECT_EQ(d->delivery.ca, "/etc/sealpost/peers.pem");
  EXPECT_EQ(d->delivery.threads, 4);
  EXPECT_EQ(d->delivery.backoff_base_millis, 200);
  EXPECT_EQ(d->delivery.backoff_cap_millis, 2000);
  EXPECT_EQ(d->delivery.max_attempts, 5);
  EXPECT_EQ(d->delivery.lease_millis, 30000);
  EXPECT_EQ(d->delivery.poll_millis, 50);
  EXPECT_EQ(d->delivery.attempts_flush_seconds, 5);
  EXPECT_EQ(d->delivery.max_in_flight_per_recipient, 2);

  auto bad = ParseConfig(std::string(kGood) + "delivery: {certificate: a.pem, threads: 0, retry: 1}\n",
                         "d.yaml");
  ASSERT_FALSE(bad.has_value());
  const std::string& m = bad.error().message();
  EXPECT_NE(m.find("threads must be a decimal integer from 1 to 256"), std::string::npos) << m;
  EXPECT_NE(m.find("unknown key 'retry' in delivery"), std::string::npos) << m;
  EXPECT_NE(m.find("certificate and key go together"), std::string::npos) << m;
}

// Issue 5: how long the outbox keeps delivered jobs (0: for ever).
TEST(DaemonConfigTest, ParseDeliveryRetentionIsStrict) {
  auto c = ParseConfig(kGood, "/etc/sealpost/sealpostd.yaml");
  ASSERT_TRUE(c.has_value()) << c.error().message();
  EXPECT_EQ(c->delivery.keep_delivered_days, 30);
  EXPECT_EQ(c->delivery.prune_interval_seconds, 3600);
  auto d = ParseConfig(std::string(kGood) +
                           "delivery: {keep_delivered_days: 0, prune_interval_seconds: 60}\n",
                       "d.yaml");
  ASSERT_TRUE(d.has_value()) << d.error().message();
  EXPECT_EQ(d->delivery.keep_delivered_days, 0);
  EXPECT_EQ(d->delivery.prune_interval_seconds, 60);
  auto bad = ParseConfig(std::string(kGood) +
                             "delivery: {keep_delivered_days: -1, prune_interval_seconds: 0}\n",
                         "d.yaml");
  ASSERT_FALSE(bad.has_value());
  const std::string& m = bad.error().message();
  EXPECT_NE(m.find("d.yaml:"), std::string::npos) << m;
  EXPECT_NE(m.find("keep_delivered_days must be a decimal integer from 0 to 3650"),
            std::string::npos) << m;
  EXPECT_NE(m.find("prune_interval_seconds must be a decimal integer from 1 to 86400"),
            std::string::npos) << m;
}

TEST(DaemonConfigTest, ParseEmailSectionIsStrict) {
  auto none = ParseConfig(kGood, "/etc/sealpost/sealpostd.yaml");
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->email.enabled);

  auto c = ParseConfig(std::string(kGood) +
                           "email: {smtp_host: mail.congdoan.example, smtp_port: 587,\n"
                           "  from: ldld-ha-long@congdoan.example, starttls: true, ca: smtp-ca.pem,\n"
                           "  verify_url: \"https://xacminh.example/\", timeout_seconds: 20}\n",
                       "/etc/sealpost/sealpostd.yaml");
  ASSERT_TRUE(c.has_value()) << c.error().message();
  EXPECT_TRUE(c->email.enabled);
  EXPECT_EQ(c->email.smtp_host, "mail.congdoan.example");
  EXPECT_EQ(c->email.smtp_port, 587);
  EXPECT_EQ(c->email.from, "ldld-ha-long@congdoan.example");
  EXPECT_TRUE(c->email.starttls);
  EXPECT_EQ(c->email.ca, "/etc/sealpost/smtp-ca.pem");
  EXPECT_EQ(c->email.verify_url, "https://xacminh.example/");
  EXPECT_EQ(c->email.timeout_seconds, 20);

  auto bad = ParseConfig(std::string(kGood) +
                             "email: {smtp_port: 0, from: \"not an address\", starttls: yes,\n"
                             "  ca: x.pem, relay: y}\n",
                         "e.yaml");
  ASSERT_FALSE(bad.has_value());
  const std::string& m = bad.error().message();
  EXPECT_NE(m.find("email needs 'smtp_host'"), std::string::npos) << m;
  EXPECT_NE(m.find("smtp_port must be"), std::string::npos) << m;
  EXPECT_NE(m.find("email.from is not a mail address"), std::string::npos) << m;
  EXPECT_NE(m.find("email.starttls must be true or false"), std::string::npos) << m;
  EXPECT_NE(m.find("unknown key 'relay' in email"), std::string::npos) << m;
  EXPECT_NE(m.find("e.yaml:"), std::string::npos) << m;
}

TEST(DaemonConfigTest, ParseUnknownKeyReportsPosition) {
  std::string text = std::string(kGood) + "limitz: {}\n";
  auto c = ParseConfig(text, "d.yaml");
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code(), Code::kDataError);
  EXPECT_NE(c.error().message().find("d.yaml:17:1: unknown key 'limitz'"), std::string::npos)
      << c.error().message();
}

TEST(DaemonConfigTest, ParseWrongTypesReportsEveryError) {
  std::string text = kGood;
  text.replace(text.find("port: 8443"), 10, "port: '8443'");
  text.replace(text.find("read_timeout_seconds: 7"), 23, "read_timeout_seconds: 010");
  text.replace(text.find("role: officer"), 13, "role: chair");
  auto c = ParseConfig(text, "d.yaml");
  ASSERT_FALSE(c.has_value());
  const std::string& m = c.error().message();
  EXPECT_NE(m.find("d.yaml:7:34: port must be a decimal integer"), std::string::npos) << m;
  EXPECT_NE(m.find("read_timeout_seconds must be a decimal integer"), std::string::npos) << m;
  EXPECT_NE(m.find("unknown role 'chair'"), std::string::npos) << m;
}

TEST(DaemonConfigTest, ParseMissingRequiredKeysFails) {
  auto c = ParseConfig("union: x\nlisteners:\n  peer: {port: 1, certificate: a, key: b}\n", "d.yaml");
  ASSERT_FALSE(c.has_value());
  const std::string& m = c.error().message();
  EXPECT_NE(m.find("needs 'state_dir'"), std::string::npos) << m;
  EXPECT_NE(m.find("needs 'client_ca'"), std::string::npos) << m;
  EXPECT_NE(m.find("needs 'user'"), std::string::npos) << m;
}

TEST(DaemonConfigTest, ParseYamlSyntaxErrorFails) {
  auto c = ParseConfig("union: [unclosed\n", "d.yaml");
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message().find("d.yaml:"), std::string::npos);
}

TEST(DaemonConfigTest, LoadShippedExampleSucceeds) {
  auto c = LoadConfig(std::string(SEALPOST_SOURCE_DIR) + "/examples/sealpostd.yaml");
  ASSERT_TRUE(c.has_value()) << c.error().message();
  EXPECT_EQ(c->union_id, "ldld-ha-long");
  EXPECT_EQ(c->language, Lang::kVi);
  EXPECT_EQ(c->peer.port, 8443);
  EXPECT_EQ(c->limits.max_body_bytes, 64u << 20);
}

TEST(DaemonProblemTest, AcceptLanguagePicksFirstKnownLanguage) {
  EXPECT_EQ(LangFromAcceptLanguage("vi-VN,vi;q=0.9,en;q=0.8", Lang::kEn), Lang::kVi);
  EXPECT_EQ(LangFromAcceptLanguage("fr-FR, en-US;q=0.5", Lang::kVi), Lang::kEn);
  EXPECT_EQ(LangFromAcceptLanguage("vi;q=0, en", Lang::kVi), Lang::kEn);
  EXPECT_EQ(LangFromAcceptLanguage("", Lang::kVi), Lang::kVi);
  EXPECT_EQ(LangFromAcceptLanguage("de", Lang::kEn), Lang::kEn);
}

TEST(DaemonProblemTest, ProblemJsonCarriesRfc9457MembersInLanguage) {
  Problem p{403, "forbidden", "Forbidden", "Không được phép", "No \"entry\".", "Không vào được."};
  std::string vi = ProblemJson(p, Lang::kVi, "ab-1");
  EXPECT_EQ(vi,
            "{\"type\":\"https://sealpost.invalid/problems/forbidden\",\"title\":\"Không được "
            "phép\",\"status\":403,\"detail\":\"Không vào được.\",\"request_id\":\"ab-1\"}\n");
  std::string en = ProblemJson(p, Lang::kEn, "");
  EXPECT_NE(en.find("\"detail\":\"No \\\"entry\\\".\""), std::string::npos) << en;
  EXPECT_EQ(en.find("request_id"), std::string::npos);
}

TEST(ApiTokenStoreTest, CreateAuthenticateRevokeRoundTrip) {
  TempDir dir;
  auto store = storage::ApiTokenStore::Open(dir.file("t.sqlite"));
  ASSERT_TRUE(store.has_value()) << store.error().message();
  auto a = (*store)->Create("clerk", "văn thư", 1000);
  ASSERT_TRUE(a.has_value()) << a.error().message();
  auto b = (*store)->Create("admin", "quản trị", 1001);
  ASSERT_TRUE(b.has_value());
  std::string token(a->token.view());
  EXPECT_TRUE(token.starts_with("spt_"));
  EXPECT_EQ(token.size(), 47u);
  EXPECT_NE(token, std::string(b->token.view()));

  auto who = (*store)->Authenticate(token);
  ASSERT_TRUE(who.has_value());
  ASSERT_TRUE(who->has_value());
  EXPECT_EQ((*who)->role, "clerk");
  EXPECT_EQ((*who)->name, "văn thư");

  // The secret is not in the database file, only its hash.
  std::string db = testing::ReadTestFile(dir.file("t.sqlite"));
  std::string wal = testing::ReadTestFile(dir.file("t.sqlite-wal"));
  EXPECT_EQ(db.find(token.substr(4)), std::string::npos);
  EXPECT_EQ(wal.find(token.substr(4)), std::string::npos);

  std::string tampered = token;
  tampered.back() = tampered.back() == 'A' ? 'B' : 'A';
  auto none = (*store)->Authenticate(tampered);
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->has_value());
  EXPECT_FALSE((*store)->Authenticate("Bearer junk")->has_value());

  auto r = (*store)->Revoke("văn thư", 2000);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->id, a->info.id);
  EXPECT_FALSE((*store)->Authenticate(token)->has_value());
  auto again = (*store)->Revoke(std::to_string(a->info.id), 3000);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again->revoked, 2000);  // first revocation time kept

  auto list = (*store)->List();
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_TRUE((*list)[0].revoked.has_value());
  EXPECT_FALSE((*list)[1].revoked.has_value());
  EXPECT_TRUE((*store)->Authenticate(std::string(b->token.view()))->has_value());
}

TEST(ApiTokenStoreTest, CreateWithUnknownRoleOrBadNameFails) {
  TempDir dir;
  auto store = storage::ApiTokenStore::Open(dir.file("t.sqlite"));
  ASSERT_TRUE(store.has_value());
  EXPECT_EQ((*store)->Create("chair", "x", 1).error().code(), Code::kInvalidArgument);
  EXPECT_EQ((*store)->Create("clerk", "", 1).error().code(), Code::kInvalidArgument);
  EXPECT_EQ((*store)->Create("clerk", "a\nb", 1).error().code(), Code::kInvalidArgument);
  EXPECT_EQ((*store)->Revoke("nobody", 1).error().code(), Code::kNotFound);
  EXPECT_TRUE((*store)->List()->empty());
}

}  // namespace
}  // namespace sealpost::daemon
