// Concurrent deliveries to one appliance's inbox with real processes
// (tests/support/federation.h): three grassroots unions deliver their
// reports to the district at the same moment, each bundle several times at
// once (a sender that redelivers while its first attempt is in flight),
// beside the senders' own delivery workers. Every document is archived
// exactly once, every answer for one document carries the same receipt
// (also the one the sender archived, and after the recipient restarts), and
// the recipient's archive audits clean.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/encoding.h"
#include "storage/reader.h"
#include "tests/support/federation.h"

namespace sealpost::testing {
namespace {

// POST the bundle file to `to`'s peer listener as `from` (its TLS client
// certificate): the status and the body.
HttpAnswer Deliver(const Federation& fed, const Appliance& from, const Appliance& to,
                   const std::string& bundle, const std::string& out_file) {
  std::string cmd = "curl -sS --max-time 60 --cacert " + ShellQuote(fed.ca_pem()) + " --cert " +
                    ShellQuote(from.file("tls.pem")) + " --key " + ShellQuote(from.file("tls-key.pem")) +
                    " -X POST -H 'Content-Type: application/vnd.etsi.asic-s+zip' --data-binary @" +
                    ShellQuote(bundle) + " -o " + ShellQuote(out_file) + " -w '\\n%{http_code}' " +
                    ShellQuote("https://127.0.0.1:" + std::to_string(to.peer_port()) + "/api/v1/inbox");
  std::string out;
  HttpAnswer a;
  a.curl_exit = RunCommand(cmd, &out);
  size_t nl = out.rfind('\n');
  a.status = std::atoi((nl == std::string::npos ? out : out.substr(nl + 1)).c_str());
  if (nl != std::string::npos) a.error = out.substr(0, nl);
  a.body = ReadTestFile(out_file);
  return a;
}

size_t Count(const std::vector<storage::Manifest>& entries, const std::string& kind,
             const std::string& id, const std::string& receipt_type = "") {
  size_t n = 0;
  for (const storage::Manifest& m : entries) {
    if (storage::EntryKindName(m.kind) != kind || m.Field("id") != id) continue;
    if (!receipt_type.empty() && m.Field("receipt_type") != receipt_type) continue;
    ++n;
  }
  return n;
}

TEST(InboxConcurrentE2eTest, SendersAtOnceEachDocumentArchivedOnceSameReceiptAlsoAfterRestart) {
  FederationOptions o;
  o.grassroots = 3;
  o.extra_config = kFastDeliveryShortLeaseConfig;
  auto fed = Federation::Start(o);
  ASSERT_NE(fed, nullptr);
  Appliance& d = fed->district();

  // The district is down while the reports are submitted: the senders'
  // workers back off, and the test holds every bundle.
  ASSERT_EQ(d.Stop(), 0);
  struct Sent {
    Appliance* from;
    std::string id, bundle;
  };
  std::vector<Sent> sent;
  for (size_t i = 0; i < fed->grassroots_count(); ++i) {
    Appliance& g = fed->grassroots(i);
    std::string doc = fed->file("bao-cao-" + g.id() + ".txt");
    WriteTestFile(doc, "BÁO CÁO QUÝ IV/2026 của " + g.id() + "\n");
    SubmitSpec s;
    s.file = doc;
    s.type = "report";
    s.subject = "Báo cáo quý IV/2026";
    s.recipients = {Federation::kDistrict};
    HttpAnswer a = g.Submit(s);
    ASSERT_EQ(a.status, 201) << a.body << a.error;
    std::string id = JsonField(a.body, "id");
    ASSERT_FALSE(id.empty()) << a.body;
    HttpAnswer b = g.Get("/api/v1/documents/" + id + "/bundle");
    ASSERT_EQ(b.status, 200) << b.body << b.error;
    std::string bundle = fed->file(id + ".asics");
    WriteTestFile(bundle, b.body);
    sent.push_back({&g, id, bundle});
  }
  ASSERT_TRUE(d.Start());

  // Every sender delivers its bundle kCopies times at once.
  constexpr int kCopies = 4;
  std::vector<HttpAnswer> answers(sent.size() * kCopies);
  {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < answers.size(); ++i) {
      threads.emplace_back([&, i] {
        const Sent& s = sent[i / kCopies];
        answers[i] = Deliver(*fed, *s.from, d, s.bundle,
                             fed->file("answer-" + std::to_string(i) + ".json"));
      });
    }
    for (std::thread& t : threads) t.join();
  }
  std::map<std::string, std::string> receipt_of;  // document id -> answer body
  for (size_t i = 0; i < answers.size(); ++i) {
    const Sent& s = sent[i / kCopies];
    EXPECT_EQ(answers[i].status, 200) << s.from->id() << ": " << answers[i].body << answers[i].error;
    if (answers[i].status != 200) continue;
    auto [it, first] = receipt_of.emplace(s.id, answers[i].body);
    EXPECT_EQ(it->second, answers[i].body) << "another receipt for " << s.id;
  }
  ASSERT_EQ(receipt_of.size(), sent.size());

  // Each sender's worker gets through too (the same receipt) and archives it once.
  for (const Sent& s : sent) {
    const auto t0 = std::chrono::steady_clock::now();
    size_t n = 0;
    std::vector<storage::Manifest> entries;
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30)) {
      entries = fed->ArchiveEntries(*s.from);
      n = Count(entries, "delivery-receipt", s.id, "delivery-receipt");
      if (n > 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    ASSERT_EQ(n, 1u) << s.from->id();
    for (const storage::Manifest& m : entries) {
      if (storage::EntryKindName(m.kind) != "delivery-receipt" || m.Field("id") != s.id) continue;
      auto reader = storage::ArchiveReader::Open(s.from->archive_dir());
      ASSERT_TRUE(reader.has_value()) << reader.error().message();
      auto json = (*reader)->ReadEntryFile(m.seq, "receipt.json");
      ASSERT_TRUE(json.has_value()) << json.error().message();
      EXPECT_EQ(JsonField(receipt_of[s.id], "receipt"), Base64Encode(*json))
          << "the sender archived another receipt for " << s.id;
    }
  }

  // The recipient: one document-received entry and one receipt of ours per document.
  auto check_once = [&] {
    std::vector<storage::Manifest> entries = fed->ArchiveEntries(d);
    for (const Sent& s : sent) {
      EXPECT_EQ(Count(entries, "document-received", s.id), 1u) << s.id;
      EXPECT_EQ(Count(entries, "delivery-receipt", s.id, "delivery-receipt"), 1u) << s.id;
    }
    return entries.size();
  };
  const size_t entries_before = check_once();

  // After a restart (the inbox rebuilt by the start-up pass), concurrent
  // redeliveries still get the same receipts and archive nothing.
  ASSERT_EQ(d.Stop(), 0);
  ASSERT_TRUE(d.Start());
  {
    std::vector<HttpAnswer> again(sent.size() * 2);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < again.size(); ++i) {
      threads.emplace_back([&, i] {
        const Sent& s = sent[i / 2];
        again[i] = Deliver(*fed, *s.from, d, s.bundle,
                           fed->file("again-" + std::to_string(i) + ".json"));
      });
    }
    for (std::thread& t : threads) t.join();
    for (size_t i = 0; i < again.size(); ++i) {
      const Sent& s = sent[i / 2];
      EXPECT_EQ(again[i].status, 200) << again[i].body << again[i].error;
      EXPECT_EQ(again[i].body, receipt_of[s.id]) << "another receipt after the restart for " << s.id;
    }
  }
  EXPECT_EQ(check_once(), entries_before);

  HttpAnswer h = d.Get("/api/v1/health");
  EXPECT_EQ(h.status, 200) << h.body;
  EXPECT_NE(h.body.find("\"checkpoint_alarms\":0"), std::string::npos) << h.body;
  std::string out;
  EXPECT_EQ(fed->Audit(d, &out), 0) << out;
  EXPECT_TRUE(fed->StopAll());
}

}  // namespace
}  // namespace sealpost::testing
