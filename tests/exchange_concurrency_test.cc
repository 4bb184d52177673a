// Concurrent submissions through a real sealpostd + sealpost-signer (P-256
// seal on SoftHSM2), over HTTPS keep-alive on 127.0.0.1: many clients submit
// directives (reference "{seq}/{year}/CT-{union}") at once. Every one gets a
// distinct reference, the references are exactly 1..N (no gap, no repeat),
// each document is in the archive once with its reference_number and in the
// outbox, and `sealpost audit` finds the archive clean. Also the in-memory
// Merkle nodes behind the bundles' inclusion proofs (daemon/archive_evidence)
// against crypto::merkle's reference implementation.
#include <algorithm>
#include <atomic>
#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/encoding.h"
#include "client/https_client.h"
#include "crypto/bundle.h"
#include "crypto/certs.h"
#include "crypto/merkle.h"
#include "daemon/archive_evidence.h"
#include "storage/outbox.h"
#include "storage/reader.h"
#include "tests/support/daemon_harness.h"
#include "tests/support/test_pki.h"

namespace sealpost::testing {
namespace {

namespace merkle = crypto::merkle;

TEST(MerkleNodesTest, ProofsAndRootsMatchTheReferenceForEverySize) {
  std::vector<merkle::Hash> leaves;
  daemon::MerkleNodes nodes;
  for (uint64_t n = 1; n <= 70; ++n) {
    leaves.push_back(merkle::LeafHash("leaf " + std::to_string(n)));
    nodes.Append(leaves.back());
    for (uint64_t size = 1; size <= n; ++size) {
      std::span<const merkle::Hash> prefix(leaves.data(), size);
      ASSERT_EQ(nodes.Root(size), merkle::RootFromLeafHashes(prefix)) << "size " << size;
      for (uint64_t i = 0; i < size; ++i) {
        auto want = merkle::InclusionProof(prefix, i);
        auto got = nodes.InclusionProof(i, size);
        ASSERT_TRUE(want.has_value() && got.has_value());
        ASSERT_EQ(*got, *want) << "leaf " << i << " of " << size;
      }
    }
  }
  EXPECT_EQ(nodes.Root(0), merkle::EmptyRoot());
  EXPECT_FALSE(nodes.InclusionProof(70, 70).has_value());
  EXPECT_FALSE(nodes.InclusionProof(0, 71).has_value());
}

TEST(ExchangeConcurrencyTest, ConcurrentSubmissionsGetDistinctGaplessReferencesAllArchivedAndQueued) {
  constexpr int kClients = 8;
  constexpr int kPerClient = 4;
  constexpr int kTotal = kClients * kPerClient;
  DaemonOptions o;
  o.seal = true;
  o.max_connections = 2 * kClients;
  o.max_queued = 32;
  o.read_timeout_seconds = 60;
  o.keepalive_timeout_seconds = 60;
  auto d = DaemonHarness::Start(o);
  ASSERT_NE(d, nullptr);
  const std::string token = d->CreateToken("officer", "chair's clerk");
  ASSERT_FALSE(token.empty());

  // One directive text and the chair's signature over it: every submission
  // is a new document (its own id and reference) of the same content.
  const std::string file = d->file("chi-thi.txt");
  WriteTestFile(file, "Chỉ thị: họp ban chấp hành ngày 5.\n");
  std::string out;
  ASSERT_EQ(RunCommand("openssl cms -sign -binary -cades -md sha256 -outform DER -in " +
                           ShellQuote(file) + " -signer " + ShellQuote(d->file("signer.pem")) +
                           " -inkey " + ShellQuote(d->file("signer-key.pem")) + " -out " +
                           ShellQuote(file + ".p7s"),
                       &out),
            0)
      << out;
  const std::string content = ReadTestFile(file);
  const std::string p7s = ReadTestFile(file + ".p7s");
  const std::string path = "/api/v1/documents?type=directive&recipients=" +
                           std::string(DaemonHarness::kPeerUnion) +
                           "&name=chi-thi.txt&media_type=text/plain&subject=Hop";
  const client::Headers headers{{"Authorization", "Bearer " + token},
                                {"Sealpost-Signature", Base64Encode(p7s)}};

  std::mutex mu;
  std::map<std::string, std::string> reference_of;  // id -> reference
  std::vector<std::string> failures;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&] {
      client::ClientOptions co;
      co.port = d->user_port();
      co.ca_file = d->file("tls-ca.pem");
      co.timeout_seconds = 120;
      auto cl = client::HttpsClient::Create(co);
      ++ready;
      if (!cl) {
        std::lock_guard<std::mutex> l(mu);
        failures.push_back(cl.error().message());
        return;
      }
      while (!go) std::this_thread::yield();
      for (int i = 0; i < kPerClient; ++i) {
        auto r = (*cl)->Post(path, "application/octet-stream", content, headers);
        std::lock_guard<std::mutex> l(mu);
        if (!r) {
          failures.push_back(r.error().message());
        } else if (r->status != 201) {
          failures.push_back(std::to_string(r->status) + " " + r->body);
        } else {
          reference_of[JsonField(r->body, "id")] = JsonField(r->body, "reference");
        }
      }
    });
  }
  while (ready < kClients) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  go = true;
  for (auto& t : threads) t.join();
  ASSERT_TRUE(failures.empty()) << failures.front() << "\n" << d->Log();
  ASSERT_EQ(reference_of.size(), static_cast<size_t>(kTotal));

  // Exactly 1..N, each once.
  char year[8];
  std::time_t now = std::time(nullptr);
  std::strftime(year, sizeof year, "%Y", std::gmtime(&now));
  std::set<std::string> expected, got;
  for (int n = 1; n <= kTotal; ++n) expected.insert(std::to_string(n) + "/" + year + "/CT-" + o.union_id);
  for (const auto& [id, ref] : reference_of) got.insert(ref);
  EXPECT_EQ(got, expected);
  // The bundles as a recipient gets them (GET .../bundle): made in memory at
  // submission (small documents, docs/decisions/0014), so no bundle file
  // was written for any of them.
  {
    client::ClientOptions co;
    co.port = d->user_port();
    co.ca_file = d->file("tls-ca.pem");
    co.timeout_seconds = 120;
    auto cl = client::HttpsClient::Create(co);
    ASSERT_TRUE(cl.has_value()) << cl.error().ToString();
    for (const auto& [id, ref] : reference_of) {
      auto r = (*cl)->GetToFile("/api/v1/documents/" + id + "/bundle",
                                d->file("bundle-" + id + ".asics"),
                                {{"Authorization", "Bearer " + token}});
      ASSERT_TRUE(r.has_value()) << r.error().ToString();
      ASSERT_EQ(r->status, 200) << id << ": " << r->body;
    }
  }
  for (const auto& entry : std::filesystem::directory_iterator(d->state_dir() + "/bundles")) {
    ADD_FAILURE() << "bundle file written on the submission path: " << entry.path();
  }
  EXPECT_EQ(d->Terminate(), 0);

  // The archive holds each document once, with its number; the outbox a
  // job for each.
  auto reader = storage::ArchiveReader::Open(d->state_dir() + "/archive");
  ASSERT_TRUE(reader.has_value()) << reader.error().ToString();
  std::map<std::string, std::string> archived;  // id -> reference
  for (uint64_t seq = 1; seq <= (*reader)->size(); ++seq) {
    auto m = (*reader)->ReadManifest(seq);
    ASSERT_TRUE(m.has_value()) << m.error().ToString();
    if (m->kind != storage::EntryKind::kDocumentSent) continue;
    EXPECT_TRUE(archived.emplace(m->Field("id"), m->Field("reference")).second) << m->Field("id");
    EXPECT_EQ(m->Field("reference"),
              m->Field("reference_number") + "/" + year + "/CT-" + o.union_id);
  }
  EXPECT_EQ(archived, reference_of);

  // Each bundle (its archive evidence taken from the archive's commits in
  // process, daemon/archive_evidence.h) passes the recipients' verification
  // (crypto::VerifyBundle), and its checkpoint is the archive's tree of that
  // size, covering the entry.
  auto anchors = crypto::LoadCertificates(d->file("sign-ca.pem"));
  ASSERT_TRUE(anchors.has_value()) << anchors.error().ToString();
  std::map<std::string, uint64_t> seq_of;  // id -> seq
  for (uint64_t seq = 1; seq <= (*reader)->size(); ++seq) {
    auto m = (*reader)->ReadManifest(seq);
    ASSERT_TRUE(m.has_value());
    if (m->kind == storage::EntryKind::kDocumentSent) seq_of[m->Field("id")] = seq;
  }
  for (const auto& [id, ref] : reference_of) {
    const std::string work = d->file("bundle-" + id);
    std::filesystem::create_directories(work);
    auto parsed = crypto::ReadBundle(d->file("bundle-" + id + ".asics"), work);
    ASSERT_TRUE(parsed.has_value()) << id << ": " << parsed.error().ToString();
    crypto::BundleVerifyOptions vo;
    vo.anchors = anchors->get();
    vo.expected_origin = o.union_id + "/archive";
    auto report = crypto::VerifyBundle(*parsed, vo);
    ASSERT_TRUE(report.has_value()) << id << ": " << report.error().ToString();
    EXPECT_EQ(report->indication, crypto::Indication::kPassed)
        << id << ": " << crypto::BundleReportToText(*report, Lang::kEn);
    EXPECT_EQ(report->seq, seq_of[id]) << id;
    EXPECT_GE(report->tree_size, report->seq) << id;
    auto leaves = (*reader)->ReadLeafHashes(report->tree_size);
    ASSERT_TRUE(leaves.has_value()) << leaves.error().ToString();
    EXPECT_EQ(report->root_hex, merkle::ToHex(merkle::RootFromLeafHashes(*leaves))) << id;
  }

  storage::OutboxOptions oo;
  oo.path = d->state_dir() + "/outbox.sqlite";
  auto box = storage::Outbox::Open(oo);
  ASSERT_TRUE(box.has_value()) << box.error().ToString();
  for (const auto& [id, ref] : reference_of) {
    auto st = (*box)->State({id, DaemonHarness::kPeerUnion, storage::Channel::kAppliance});
    EXPECT_TRUE(st.has_value()) << id << ": " << (st ? "" : st.error().ToString());
  }

  std::string audit;
  int rc = RunCommand(ShellQuote(SEALPOST_CLI_PATH) + " audit " +
                          ShellQuote(d->state_dir() + "/archive") + " --trust " +
                          ShellQuote(d->file("sign-ca.pem")),
                      &audit);
  EXPECT_EQ(rc, 0) << audit;
  EXPECT_NE(audit.find("CLEAN"), std::string::npos) << audit;
}

}  // namespace
}  // namespace sealpost::testing
