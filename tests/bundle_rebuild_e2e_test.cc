// Bundles made again from the archive (daemon/bundle_rebuild.h) and the
// start-up repair of documents archived as sent whose delivery jobs a crash
// left out (Exchange::RecoverUnqueued), with real appliances on 127.0.0.1
// (tests/support/federation.h: SoftHSM2 seal tokens, sealpost-signer and
// sealpostd processes, mutual TLS):
//  - a bundle deleted after submission is rebuilt on GET .../bundle: every
//    member the same bytes except the checkpoint, its signature and the
//    inclusion proof, and a recipient's verification (crypto::VerifyBundle)
//    gives the same report (a real peer accepting a rebuilt bundle: the
//    sent-archived case below, where no bundle was ever written);
//  - a bundle left incomplete (as a power loss may leave an unsynced file)
//    is found at the next start and rebuilt;
//  - a received document's bundle is made from its archive entry: the
//    bundle that came, member for member;
//  - the sender SIGKILLed between the archive append and the jobs' commit
//    (test kill points sent-archived and sent-bundled): the clerk got no
//    answer, the document is listed as sent, and after the restart it is
//    delivered to the real peer exactly once (one document-received there,
//    one delivery receipt here); a second restart queues nothing again.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/zip.h"
#include "crypto/bundle.h"
#include "crypto/certs.h"
#include "storage/outbox.h"
#include "tests/support/federation.h"
#include "tests/support/wait.h"

namespace sealpost::testing {
namespace {

// Every member of the ZIP at `path`, by name ("" values when unreadable).
std::map<std::string, std::string> Members(const std::string& path) {
  std::map<std::string, std::string> out;
  auto zip = ZipReader::Open(path);
  EXPECT_TRUE(zip.has_value()) << path << ": " << (zip ? "" : zip.error().message());
  if (!zip) return out;
  for (const ZipEntry& e : zip->entries()) {
    auto data = zip->ExtractToString(e, 64u << 20);
    EXPECT_TRUE(data.has_value()) << e.name;
    out[e.name] = data.value_or("");
  }
  return out;
}

// A district and one grassroots union with bundles as files (as large
// documents have them: small bundles are made in memory by default;
// tests/small_bundle_e2e_test.cc covers those), and one directive sent and
// delivered; its bundle file copied to `original`.
struct OneSent {
  std::unique_ptr<Federation> fed;
  std::string id, kept, original;
};

void SendOneWithBundleFile(const std::string& name, const std::string& text, OneSent* out) {
  FederationOptions fo;
  fo.grassroots = 1;
  fo.extra_config = std::string(kFastDeliveryConfig) + "bundles: {memory_max_bytes: 0}\n";
  out->fed = Federation::Start(fo);
  ASSERT_NE(out->fed, nullptr);
  Federation& fed = *out->fed;
  Appliance& d = fed.district();
  HttpAnswer a = SubmitDirective(fed, name, text, fed.grassroots_ids());
  ASSERT_EQ(a.status, 201) << a.body << a.error;
  out->id = IdOf(a.body);
  ASSERT_TRUE(WaitFor([&] { return AllDelivered(d, out->id, 1); }, 60)) << d.Log();
  out->kept = d.file("state/bundles/" + out->id + ".asics");
  out->original = fed.file("original-" + out->id + ".asics");
  ASSERT_EQ(RunCommand("cp " + ShellQuote(out->kept) + " " + ShellQuote(out->original)), 0);
}

// A recipient's verification of the bundle at `path` (crypto::VerifyBundle
// under the federation's trust, the log of `sender` expected, at time `at`):
// PASSED, and the report as JSON, without the tree size and root if
// `drop_tree`.
void VerifyAsRecipient(Federation& fed, const std::string& path, const std::string& sender,
                       std::time_t at, bool drop_tree, std::string* json) {
  auto parsed = crypto::ReadBundle(path, fed.dir());
  ASSERT_TRUE(parsed.has_value()) << path << ": " << parsed.error().ToString();
  auto anchors = crypto::LoadCertificates(fed.ca_pem());
  ASSERT_TRUE(anchors.has_value());
  crypto::BundleVerifyOptions vo;
  vo.anchors = anchors->get();
  vo.expected_origin = parsed->checkpoint.origin;
  vo.at = at;
  EXPECT_EQ(vo.expected_origin, sender + "/archive");
  auto report = crypto::VerifyBundle(*parsed, vo);
  ASSERT_TRUE(report.has_value()) << report.error().ToString();
  EXPECT_EQ(report->indication, crypto::Indication::kPassed) << crypto::BundleReportToJson(*report);
  if (drop_tree) {
    report->tree_size = 0;
    report->root_hex.clear();
  }
  *json = crypto::BundleReportToJson(*report);
}

TEST(BundleRebuildE2eTest, DeletedOrIncompleteBundleIsRebuiltAndVerifiesAsTheOriginal) {
  OneSent sent;
  ASSERT_NO_FATAL_FAILURE(
      SendOneWithBundleFile("chi-thi-r.txt", "CHỈ THỊ số 7 về tài chính công đoàn\n", &sent));
  auto& fed = sent.fed;
  Appliance& d = fed->district();
  const std::string &id = sent.id, &kept = sent.kept, &original = sent.original;
  // A few more entries, so the rebuilt bundle's checkpoint is a later one.
  HttpAnswer more = SubmitDirective(*fed, "chi-thi-s.txt", "CHỈ THỊ số 8\n", fed->grassroots_ids());
  ASSERT_EQ(more.status, 201) << more.body;

  // 1. Deleted: GET .../bundle makes it again from the archive.
  ASSERT_EQ(::unlink(kept.c_str()), 0);
  const std::string rebuilt = fed->file("rebuilt.asics");
  HttpAnswer got = d.Curl("/api/v1/documents/" + id + "/bundle", "", "clerk", false);
  ASSERT_EQ(got.status, 200) << got.body;
  WriteTestFile(rebuilt, got.body);
  std::map<std::string, std::string> before = Members(original), after = Members(rebuilt);
  ASSERT_FALSE(before.empty());
  ASSERT_EQ(before.size(), after.size());
  for (const auto& [name, data] : before) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(after.count(name));
    if (name == "META-INF/sealpost/checkpoint" || name == "META-INF/sealpost/checkpoint.p7s" ||
        name == "META-INF/sealpost/inclusion-proof.json") {
      continue;  // the evidence of a later checkpoint
    }
    EXPECT_EQ(after[name], data);
  }
  EXPECT_NE(after["META-INF/sealpost/checkpoint"], before["META-INF/sealpost/checkpoint"]);
  // A recipient's verification (crypto::VerifyBundle under the federation's
  // trust, the district's log expected) passes both with the same findings;
  // only the tree size and root differ. One validation time for both: the
  // reports carry it, and two verifications may straddle a second.
  std::string reports[2];
  const std::time_t at = std::time(nullptr);
  for (int i = 0; i < 2; ++i) {
    ASSERT_NO_FATAL_FAILURE(VerifyAsRecipient(*fed, i == 0 ? original : rebuilt, d.id(), at,
                                              /*drop_tree=*/true, &reports[i]));
  }
  EXPECT_EQ(reports[0], reports[1]);

  // 2. Incomplete (a power loss after an unsynced write): found after the
  // restart, rebuilt.
  ASSERT_EQ(::truncate(kept.c_str(), 300), 0);
  ASSERT_TRUE(d.Restart());
  HttpAnswer again = d.Curl("/api/v1/documents/" + id + "/bundle", "", "clerk", false);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_GT(again.body.size(), 300u);
  WriteTestFile(rebuilt, again.body);
  EXPECT_EQ(Members(rebuilt)["META-INF/signature.p7s"], before["META-INF/signature.p7s"]);
  EXPECT_TRUE(Contains(d.Log(), "rebuilding it from the archive")) << d.Log();

  // 3. Altered in place, same size (a byte of the stored content changed,
  // the ZIP's structure intact), found after a restart: GET .../content
  // serves the archived content, not the file's bytes.
  const std::string text = "CHỈ THỊ số 7 về tài chính công đoàn\n";
  std::string bytes = ReadTestFile(kept);
  const size_t pos = bytes.find("t\xC3\xA0i ch\xC3\xADnh");
  ASSERT_NE(pos, std::string::npos);
  bytes[pos] = 'T';
  WriteTestFile(kept, bytes);
  ASSERT_TRUE(d.Restart());
  HttpAnswer content = d.Curl("/api/v1/documents/" + id + "/content", "", "clerk", false);
  ASSERT_EQ(content.status, 200) << content.body;
  EXPECT_EQ(content.body, text);
  std::string out;
  EXPECT_EQ(fed->Audit(d, &out), 0) << out;
  EXPECT_TRUE(fed->StopAll());
}

// A sent document's bundle file left incomplete, and the daemon restarted
// while its signer is gone: the archive cannot be opened, so the bundle can
// be neither checked nor made again. Both GET forms answer 503 with
// Retry-After (problem bundle-unavailable / signer-unavailable), never the
// file as it is on disk; once the signer is back, the whole bundle.
TEST(BundleRebuildE2eTest, IncompleteBundleIsNotServedWhileTheArchiveIsUnavailable) {
  OneSent sent;
  ASSERT_NO_FATAL_FAILURE(
      SendOneWithBundleFile("chi-thi-u.txt", "CHỈ THỊ số 9 về đại hội công đoàn\n", &sent));
  auto& fed = sent.fed;
  Appliance& d = fed->district();
  const std::string &id = sent.id, &kept = sent.kept, &original = sent.original;

  ASSERT_EQ(d.Stop(), 0);
  d.KillSigner();
  ASSERT_EQ(::truncate(kept.c_str(), 300), 0);
  ASSERT_TRUE(d.Start()) << d.Log();
  const std::string headers = fed->file("headers-u.txt");
  for (const std::string& path :
       {"/api/v1/documents/" + id + "/bundle", "/api/v1/documents/bundle?id=" + id}) {
    SCOPED_TRACE(path);
    HttpAnswer got = d.Curl(path, "-D " + ShellQuote(headers), "clerk", false);
    EXPECT_EQ(got.status, 503) << got.body;
    EXPECT_TRUE(Contains(got.body, "/problems/bundle-unavailable") ||
                Contains(got.body, "/problems/signer-unavailable"))
        << got.body;
    EXPECT_TRUE(Contains(ReadTestFile(headers), "Retry-After: 5")) << ReadTestFile(headers);
  }
  // The content has another source than the bundle: the archive, read
  // without its writer (and without waiting for the signer).
  HttpAnswer content = d.Curl("/api/v1/documents/" + id + "/content", "", "clerk", false);
  EXPECT_EQ(content.status, 200) << content.body;
  EXPECT_EQ(content.body, "CHỈ THỊ số 9 về đại hội công đoàn\n");
  struct stat st {};
  ASSERT_EQ(::stat(kept.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 300);  // nothing was made without the archive

  ASSERT_TRUE(d.StartSigner()) << d.SignerLog();
  HttpAnswer got;
  ASSERT_TRUE(WaitFor(
      [&] {
        got = d.Curl("/api/v1/documents/" + id + "/bundle", "", "clerk", false);
        return got.status == 200;
      },
      30))
      << got.status << " " << got.body << d.Log();
  const std::string rebuilt = fed->file("rebuilt-u.asics");
  WriteTestFile(rebuilt, got.body);
  std::map<std::string, std::string> before = Members(original), after = Members(rebuilt);
  ASSERT_FALSE(before.empty());
  EXPECT_EQ(after.size(), before.size());
  EXPECT_EQ(after["META-INF/signature.p7s"], before["META-INF/signature.p7s"]);
  std::string out;
  EXPECT_EQ(fed->Audit(d, &out), 0) << out;
  EXPECT_TRUE(fed->StopAll());
}

// GET .../bundle of a RECEIVED document: the inbox keeps no file, so the
// bundle is made from the document-received entry, which archived every
// member as it came (the sender's checkpoint and proof too): the same bytes
// as the bundle the sender delivered, member by member, and it verifies
// (crypto::VerifyBundle) with the same report. The temporary file is gone
// afterwards. (The older GET /api/v1/documents/bundle?id= is for documents
// sent from here only, as documented.)
TEST(BundleRebuildE2eTest, ReceivedDocumentsBundleIsTheOneThatCame) {
  const std::string text = "CHỈ THỊ số 11 về thi đua công đoàn\n";
  OneSent sent;
  ASSERT_NO_FATAL_FAILURE(SendOneWithBundleFile("chi-thi-r.txt", text, &sent));
  auto& fed = sent.fed;
  Appliance& g = fed->grassroots(0);
  const std::string& id = sent.id;

  std::map<std::string, std::string> original = Members(sent.original);
  ASSERT_GE(original.size(), 8u);
  const std::time_t at = std::time(nullptr);
  std::string sent_report;
  ASSERT_NO_FATAL_FAILURE(VerifyAsRecipient(*fed, sent.original, fed->district().id(), at,
                                            /*drop_tree=*/false, &sent_report));
  for (int fetch = 1; fetch <= 2; ++fetch) {  // made afresh each time
    SCOPED_TRACE(fetch);
    HttpAnswer got = g.Curl("/api/v1/documents/" + id + "/bundle", "", "clerk", false);
    ASSERT_EQ(got.status, 200) << got.body << g.Log();
    const std::string received = fed->file("received-" + id + ".asics");
    WriteTestFile(received, got.body);
    EXPECT_EQ(Members(received), original);
    std::string report;
    ASSERT_NO_FATAL_FAILURE(VerifyAsRecipient(*fed, received, fed->district().id(), at,
                                              /*drop_tree=*/false, &report));
    EXPECT_EQ(report, sent_report);
  }
  for (const auto& f : std::filesystem::directory_iterator(g.file("state/spool"))) {
    const std::string name = f.path().filename().string();
    EXPECT_FALSE(name.starts_with("upload-bundle-") || name.starts_with(".rebuild-"))
        << "temporary file left: " << f.path();  // (other "upload-*" are the pool's)
  }
  // Not a document of this appliance at all: 404 as before.
  EXPECT_EQ(g.Curl("/api/v1/documents/no-such-id/bundle", "", "clerk", false).status, 404);
  std::string out;
  EXPECT_EQ(fed->Audit(g, &out), 0) << out;
  EXPECT_TRUE(fed->StopAll());
}

// Killed at `point` (SEALPOST_TEST_KILL_AT) while submitting; restarted.
void KilledBetweenAppendAndQueue(const char* point) {
  ASSERT_EQ(::setenv("SEALPOST_TEST_KILL_AT", point, 1), 0);
  FederationOptions fo;
  fo.grassroots = 2;
  fo.extra_config = kFastDeliveryConfig;
  auto fed = Federation::Start(fo);
  ::unsetenv("SEALPOST_TEST_KILL_AT");  // restarted daemons run without it
  ASSERT_NE(fed, nullptr);
  Appliance& d = fed->district();
  HttpAnswer a = SubmitDirective(*fed, "chi-thi-k.txt", "CHỈ THỊ khẩn: họp ban chấp hành\n",
                                 fed->grassroots_ids());
  // The clerk gets no answer: the daemon died mid-request.
  EXPECT_NE(a.status, 201) << a.body;
  EXPECT_TRUE(WaitFor([&] { return d.Get("/api/v1/health", "").status == 0; }, 10));
  ASSERT_EQ(fed->CountEntries(d, "document-sent"), 1u);
  std::string id;
  for (const storage::Manifest& m : fed->ArchiveEntries(d)) {
    if (m.kind == storage::EntryKind::kDocumentSent) id = m.Field("id");
  }
  ASSERT_FALSE(id.empty());
  EXPECT_TRUE(DeliveryStates(d, id).empty());  // archived, never queued

  ASSERT_TRUE(d.Restart());
  // What the clerk sees: the document in the list, as sent.
  HttpAnswer list = d.Get("/api/v1/documents", "clerk");
  EXPECT_EQ(list.status, 200);
  EXPECT_TRUE(Contains(list.body, id)) << list.body;
  EXPECT_TRUE(Contains(list.body, "\"direction\":\"sent\"")) << list.body;
  ASSERT_TRUE(WaitFor([&] { return AllDelivered(d, id, 2); }, 60)) << d.Log();
  EXPECT_TRUE(Contains(d.Log(), "not queued (the process ended); queued now")) << d.Log();
  for (const std::string& r : fed->grassroots_ids()) {
    SCOPED_TRACE(r);
    EXPECT_EQ(CountDocumentEntries(*fed, *fed->Find(r), "document-received", id), 1u);
    EXPECT_EQ(CountDocumentEntries(*fed, d, "delivery-receipt", id, r), 1u);
  }
  // Another restart: the document is not queued a second time.
  ASSERT_TRUE(d.Restart());
  EXPECT_TRUE(WaitFor([&] { return d.Get("/api/v1/documents", "clerk").status == 200; }, 10));
  HttpAnswer after = SubmitDirective(*fed, "chi-thi-l.txt", "CHỈ THỊ số 2\n", fed->grassroots_ids());
  ASSERT_EQ(after.status, 201) << after.body;
  ASSERT_TRUE(WaitFor([&] { return AllDelivered(d, IdOf(after.body), 2); }, 60)) << d.Log();
  for (const std::string& r : fed->grassroots_ids()) {
    EXPECT_EQ(CountDocumentEntries(*fed, *fed->Find(r), "document-received", id), 1u);
    EXPECT_EQ(CountDocumentEntries(*fed, d, "delivery-receipt", id, r), 1u);
  }
  std::string out;
  for (const auto& app : fed->appliances()) EXPECT_EQ(fed->Audit(*app, &out), 0) << out;
  EXPECT_TRUE(fed->StopAll());
}

TEST(BundleRebuildE2eTest, KilledAfterArchiveBeforeBundleIsQueuedAndDeliveredOnceAfterRestart) {
  KilledBetweenAppendAndQueue("sent-archived");
}

TEST(BundleRebuildE2eTest, KilledAfterBundleBeforeQueueIsQueuedAndDeliveredOnceAfterRestart) {
  KilledBetweenAppendAndQueue("sent-bundled");
}

}  // namespace
}  // namespace sealpost::testing
