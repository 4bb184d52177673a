// Delivery between real appliances on 127.0.0.1 (tests/support/federation.h:
// SoftHSM2 seal tokens, sealpost-signer and sealpostd processes, mutual TLS):
// a directive submitted on the district is delivered to every grassroots
// appliance, its receipts are verified and archived on the district and the
// outbox says delivered; a recipient that is down gets it after backoff once
// it is back; a sender SIGKILLed with a queue of deliveries delivers all of
// them after its restart, with no duplicate on the recipients; a clerk of a
// recipient opening the content sends one read notice back, and the district
// marks that delivery read. The worker's
// logic in isolation is in tests/delivery_worker_test.cc.
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "storage/outbox.h"
#include "tests/support/federation.h"
#include "tests/support/wait.h"

namespace sealpost::testing {
namespace {

// The id in a 201 answer of POST /api/v1/documents.
class DeliveryE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    FederationOptions o;
    o.grassroots = 2;
    // Short backoff so "down, then up" takes seconds, not minutes.
    o.extra_config =
        "delivery: {backoff_base_millis: 200, backoff_cap_millis: 1000, poll_millis: 50,\n"
        "  lease_seconds: 10, attempts_flush_seconds: 1, max_attempts: 1000}\n";
    fed_ = Federation::Start(o).release();
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

  std::string SubmitDirective(const std::string& name, const std::string& text) {
    std::string path = fed_->file(name);
    WriteTestFile(path, text);
    std::string sig = fed_->SignAsChair(path);
    EXPECT_FALSE(sig.empty());
    SubmitSpec s;
    s.file = path;
    s.type = "directive";
    s.subject = "Chỉ thị " + name;
    s.recipients = fed_->grassroots_ids();
    s.signature = sig;
    HttpAnswer a = fed_->district().Submit(s);
    EXPECT_EQ(a.status, 201) << a.body << a.error;
    return IdOf(a.body);
  }

  // The district's outbox state of `id` to `recipient` (its own connection
  // to the SQLite file, beside the running daemon).
  static storage::DeliveryState State(const std::string& id, const std::string& recipient) {
    storage::OutboxOptions o;
    o.path = fed_->district().file("state/outbox.sqlite");
    auto box = storage::Outbox::Open(o);
    // Polled beside the running daemon: a busy database (SQLITE_BUSY after
    // the 10 s busy timeout, seen on a loaded 2-core machine under ASan) is
    // "not known yet", and the caller polls again; it is not a test failure.
    if (!box) return {};
    auto s = (*box)->State({id, recipient, storage::Channel::kAppliance});
    return s.value_or(storage::DeliveryState{});
  }

  static bool AllDelivered(const std::vector<std::string>& ids) {
    for (const std::string& id : ids) {
      for (const std::string& r : fed_->grassroots_ids()) {
        storage::JobState s = State(id, r).state;
        if (s != storage::JobState::kDelivered && s != storage::JobState::kRead) return false;
      }
    }
    return true;
  }

  // Entries of `kind` on `a` whose field id is `id`.
  static size_t Count(const Appliance& a, const std::string& kind, const std::string& id) {
    size_t n = 0;
    for (const storage::Manifest& m : fed_->ArchiveEntries(a)) {
      if (storage::EntryKindName(m.kind) == kind && m.Field("id") == id) ++n;
    }
    return n;
  }

  static Federation* fed_;
};

Federation* DeliveryE2eTest::fed_ = nullptr;

TEST_F(DeliveryE2eTest, DirectiveIsDeliveredAndEveryReceiptArchivedOnTheDistrict) {
  std::string id = SubmitDirective("chi-thi-1.txt", "CHỈ THỊ số 1 về Đại hội công đoàn cơ sở\n");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitFor([&] { return AllDelivered({id}); }, 30)) << fed_->district().Log();
  Appliance& d = fed_->district();
  for (const std::string& r : fed_->grassroots_ids()) {
    SCOPED_TRACE(r);
    storage::DeliveryState s = State(id, r);
    EXPECT_EQ(s.state, storage::JobState::kDelivered);
    EXPECT_FALSE(s.receipt_ref.empty());
    // The receipt entry on the district: for this document and recipient,
    // referring to the document-sent entry; the recipient archived the
    // document once.
    size_t receipts = 0;
    for (const storage::Manifest& m : fed_->ArchiveEntries(d)) {
      if (m.kind == storage::EntryKind::kDeliveryReceipt && m.Field("id") == id &&
          m.Field("recipient") == r) {
        ++receipts;
        EXPECT_EQ(std::to_string(m.seq), s.receipt_ref);
        EXPECT_EQ(m.Field("receipt_type"), "delivery-receipt");
      }
    }
    EXPECT_EQ(receipts, 1u);
    EXPECT_EQ(Count(*fed_->Find(r), "document-received", id), 1u);
  }
  // Health and metrics show the worker and the outbox.
  HttpAnswer h = d.Get("/api/v1/health", "");
  EXPECT_TRUE(Contains(h.body, "\"delivery\":{\"state\":\"running\"")) << h.body;
  // The attempts reach the archive (flushed every second here).
  EXPECT_TRUE(WaitFor([&] { return fed_->CountEntries(d, "delivery-attempts") > 0; }, 10));
}

TEST_F(DeliveryE2eTest, RecipientDownThenUpIsDeliveredAfterBackoff) {
  Appliance& down = fed_->grassroots(0);
  down.Kill();
  std::string id = SubmitDirective("chi-thi-2.txt", "CHỈ THỊ số 2: kiểm tra tài chính\n");
  ASSERT_FALSE(id.empty());
  // The other recipient gets it; the one that is down is retried.
  ASSERT_TRUE(WaitFor([&] {
    return State(id, fed_->grassroots(1).id()).state == storage::JobState::kDelivered;
  }, 30));
  ASSERT_TRUE(WaitFor([&] { return State(id, down.id()).attempts >= 2; }, 20));
  storage::DeliveryState s = State(id, down.id());
  EXPECT_NE(s.state, storage::JobState::kDelivered);
  EXPECT_NE(s.state, storage::JobState::kRefused);
  EXPECT_FALSE(s.last_error.empty());
  ASSERT_TRUE(down.Restart());
  ASSERT_TRUE(WaitFor([&] { return AllDelivered({id}); }, 30)) << fed_->district().Log();
  EXPECT_EQ(Count(down, "document-received", id), 1u);
}

// Issue 5: a backlog for a recipient that is down. The district marks it
// down (its jobs wait for one probe per backoff period instead of being tried
// one by one), and once it is back every document arrives once.
TEST_F(DeliveryE2eTest, BacklogForADownRecipientIsDeliveredOnceWhenItIsBack) {
  Appliance& down = fed_->grassroots(1);
  down.Kill();
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(SubmitDirective("chi-thi-tondong-" + std::to_string(i) + ".txt",
                                  "CHỈ THỊ tồn đọng số " + std::to_string(i) + "\n"));
    ASSERT_FALSE(ids.back().empty());
  }
  auto peer_down = [&] {
    storage::OutboxOptions o;
    o.path = fed_->district().file("state/outbox.sqlite");
    auto box = storage::Outbox::Open(o);
    if (!box) return false;
    auto peers = (*box)->Peers();
    return peers && peers->size() == 1 && (*peers)[0].recipient == down.id() &&
           (*peers)[0].failures >= 1;
  };
  ASSERT_TRUE(WaitFor(peer_down, 30)) << fed_->district().Log();
  // Down between probes (not while a probe runs, when its time has passed).
  std::string health;
  EXPECT_TRUE(WaitFor([&] {
    health = fed_->district().Get("/api/v1/health", "").body;
    return Contains(health, "\"peers_down\":1");
  }, 20)) << health;
  ASSERT_TRUE(down.Restart());
  ASSERT_TRUE(WaitFor([&] { return AllDelivered(ids); }, 60)) << fed_->district().Log();
  EXPECT_FALSE(peer_down());
  for (const std::string& id : ids) {
    SCOPED_TRACE(id);
    EXPECT_EQ(Count(down, "document-received", id), 1u);
    size_t receipts = 0;
    for (const storage::Manifest& m : fed_->ArchiveEntries(fed_->district())) {
      if (m.kind == storage::EntryKind::kDeliveryReceipt && m.Field("id") == id &&
          m.Field("recipient") == down.id() && m.Field("receipt_type") == "delivery-receipt") {
        ++receipts;
      }
    }
    EXPECT_EQ(receipts, 1u);
  }
}

TEST_F(DeliveryE2eTest, ReadNoticeGoesBackOnceWhenTheRecipientsClerkOpensTheContent) {
  std::string id = SubmitDirective("chi-thi-doc.txt", "CHỈ THỊ số 3: đọc và báo cáo\n");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitFor([&] { return AllDelivered({id}); }, 30)) << fed_->district().Log();
  Appliance& g = fed_->grassroots(0);
  HttpAnswer c = g.Get("/api/v1/documents/" + id + "/content");
  ASSERT_EQ(c.status, 200) << c.body << c.error;
  EXPECT_EQ(c.body, "CHỈ THỊ số 3: đọc và báo cáo\n");
  ASSERT_TRUE(WaitFor([&] { return State(id, g.id()).state == storage::JobState::kRead; }, 20))
      << g.Log() << fed_->district().Log();
  EXPECT_GT(State(id, g.id()).read_at, 0);
  // The other recipient has not opened it.
  EXPECT_EQ(State(id, fed_->grassroots(1).id()).state, storage::JobState::kDelivered);
  // Opened again: nothing new on either side.
  ASSERT_EQ(g.Get("/api/v1/documents/" + id + "/content").status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto notices = [&](const Appliance& a) {
    size_t n = 0;
    for (const storage::Manifest& m : fed_->ArchiveEntries(a)) {
      if (m.kind == storage::EntryKind::kDeliveryReceipt && m.Field("id") == id &&
          m.Field("receipt_type") == "read-notice") {
        ++n;
        EXPECT_EQ(m.Field("recipient"), g.id());
        EXPECT_EQ(m.Field("reader_role"), "clerk");
      }
    }
    return n;
  };
  EXPECT_EQ(notices(fed_->district()), 1u);
  EXPECT_EQ(notices(g), 1u);
}

TEST_F(DeliveryE2eTest, SenderKilledMidQueueDeliversEverythingOnceAfterRestart) {
  Appliance& d = fed_->district();
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(SubmitDirective("chi-thi-k" + std::to_string(i) + ".txt",
                                  "CHỈ THỊ khẩn số " + std::to_string(i) + "\n"));
    ASSERT_FALSE(ids.back().empty());
  }
  d.Kill();  // SIGKILL: leases held, receipts maybe archived but not recorded
  ASSERT_TRUE(d.Restart());
  ASSERT_TRUE(WaitFor([&] { return AllDelivered(ids); }, 60)) << d.Log();
  for (const std::string& id : ids) {
    for (const std::string& r : fed_->grassroots_ids()) {
      SCOPED_TRACE(id + " -> " + r);
      EXPECT_EQ(Count(*fed_->Find(r), "document-received", id), 1u);
      size_t receipts = 0;
      for (const storage::Manifest& m : fed_->ArchiveEntries(d)) {
        if (m.kind == storage::EntryKind::kDeliveryReceipt && m.Field("id") == id &&
            m.Field("recipient") == r && m.Field("receipt_type") == "delivery-receipt") {
          ++receipts;
        }
      }
      EXPECT_EQ(receipts, 1u);
    }
  }
  std::string out;
  EXPECT_EQ(fed_->Audit(d, &out), 0) << out;
  for (const std::string& r : fed_->grassroots_ids()) {
    EXPECT_EQ(fed_->Audit(*fed_->Find(r), &out), 0) << out;
  }
}

// sealpostd locks its state directory, so every lease in its outbox at
// start-up belongs to a process that is gone: it ends at once, not after
// lease_millis (an hour here).
TEST_F(DeliveryE2eTest, LeaseLeftByADeadProcessEndsAtRestartNotAfterItsExpiry) {
  Appliance& d = fed_->district();
  ASSERT_EQ(d.Stop(), 0) << d.Log();
  const storage::JobKey key{"lease-probe-document", fed_->grassroots_ids()[0],
                            storage::Channel::kAppliance};
  storage::OutboxOptions oo;
  oo.path = d.state_dir() + "/outbox.sqlite";
  oo.lease_millis = 3'600'000;
  {
    auto box = storage::Outbox::Open(oo);
    ASSERT_TRUE(box.has_value()) << box.error().ToString();
    ASSERT_TRUE((*box)->Enqueue(key, d.file("no-such-bundle.zip")).has_value());
    auto jobs = (*box)->Lease(100, "process-that-died");
    ASSERT_TRUE(jobs.has_value());
    bool leased = false;
    for (const storage::Job& j : *jobs) leased |= j.key.document_id == key.document_id;
    ASSERT_TRUE(leased);
  }
  ASSERT_TRUE(d.Restart());
  std::vector<storage::Attempt> attempts;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto box = storage::Outbox::Open(oo);
        if (!box) return false;
        auto a = (*box)->Attempts(key);
        if (!a || a->empty() || (*a)[0].result == "started") return false;
        attempts = *a;
        return true;
      },
      30))
      << d.Log();
  EXPECT_EQ(attempts[0].worker, "process-that-died");
  EXPECT_EQ(attempts[0].result, "lease-expired");
  EXPECT_NE(attempts[0].error.find("abandoned"), std::string::npos) << attempts[0].error;
}

// Issue 5: the outbox forgets delivered jobs (here pruned by hand while the
// district is stopped: the daemon's own prune waits delivery.keep_delivered_days,
// a day at least). GET /documents/{id} then shows the deliveries from the
// archived receipts, and a read notice for a pruned delivery is still
// recorded (before, the district answered 404 and the recipient's notice job
// was refused for good).
TEST_F(DeliveryE2eTest, PrunedDeliveriesShowFromTheArchiveAndTheirReadNoticeIsRecorded) {
  Appliance& d = fed_->district();
  std::string id = SubmitDirective("chi-thi-prune.txt", "CHỈ THỊ số 9: lưu trữ\n");
  ASSERT_FALSE(id.empty());
  // A later document holds the highest job id, which is never pruned.
  std::string later = SubmitDirective("chi-thi-prune-2.txt", "CHỈ THỊ số 10\n");
  ASSERT_FALSE(later.empty());
  ASSERT_TRUE(WaitFor([&] { return AllDelivered({id, later}); }, 30)) << d.Log();
  ASSERT_EQ(d.Stop(), 0) << d.Log();  // the attempts are archived at stop
  {
    storage::OutboxOptions oo;
    oo.path = d.state_dir() + "/outbox.sqlite";
    auto box = storage::Outbox::Open(oo);
    ASSERT_TRUE(box.has_value()) << box.error().ToString();
    const int64_t tomorrow = (static_cast<int64_t>(std::time(nullptr)) + 86400) * 1000;
    for (;;) {
      auto n = (*box)->PruneDelivered(tomorrow, INT64_MAX, 256);
      ASSERT_TRUE(n.has_value()) << n.error().ToString();
      if (*n == 0) break;
    }
    for (const std::string& r : fed_->grassroots_ids()) {
      ASSERT_EQ((*box)->State({id, r, storage::Channel::kAppliance}).error().code(),
                Code::kNotFound);
    }
    EXPECT_TRUE((*box)->CheckConsistency().ok());
  }
  ASSERT_TRUE(d.Restart());
  HttpAnswer doc = d.Get("/api/v1/documents/" + id);
  ASSERT_EQ(doc.status, 200) << doc.body << doc.error;
  for (const std::string& r : fed_->grassroots_ids()) {
    EXPECT_TRUE(Contains(doc.body, "{\"recipient\":\"" + r +
                                       "\",\"channel\":\"appliance\",\"state\":\"delivered\""))
        << doc.body;
  }
  EXPECT_TRUE(Contains(doc.body, "\"source\":\"archive\"")) << doc.body;
  EXPECT_FALSE(Contains(doc.body, "\"receipt_seq\":null")) << doc.body;

  // The first grassroots union's clerk opens it: the notice reaches the
  // district, which records it although the job is gone.
  Appliance& g = fed_->grassroots(0);
  ASSERT_EQ(g.Get("/api/v1/documents/" + id + "/content").status, 200);
  ASSERT_TRUE(WaitFor(
      [&] {
        HttpAnswer a = d.Get("/api/v1/documents/" + id);
        return Contains(a.body, "{\"recipient\":\"" + g.id() +
                                    "\",\"channel\":\"appliance\",\"state\":\"read\"");
      },
      30))
      << d.Get("/api/v1/documents/" + id).body << g.Log() << d.Log();
  size_t notices = 0;
  for (const storage::Manifest& m : fed_->ArchiveEntries(d)) {
    notices += m.kind == storage::EntryKind::kDeliveryReceipt && m.Field("id") == id &&
               m.Field("receipt_type") == "read-notice";
  }
  EXPECT_EQ(notices, 1u);
  // And the grassroots' notice job was delivered, not refused.
  storage::OutboxOptions go;
  go.path = g.state_dir() + "/outbox.sqlite";
  ASSERT_TRUE(WaitFor(
      [&] {
        auto box = storage::Outbox::Open(go);
        if (!box) return false;
        auto st = (*box)->State({id, d.id(), storage::Channel::kNotice});
        return st.has_value() && st->state == storage::JobState::kDelivered;
      },
      20))
      << g.Log();
  std::string out;
  EXPECT_EQ(fed_->Audit(d, &out), 0) << out;
}

// A second sealpostd on the same state directory would be a second archive
// writer and a second outbox worker: it refuses to start.
TEST_F(DeliveryE2eTest, SecondDaemonOnTheSameStateDirectoryRefusesToStart) {
#ifndef SEALPOSTD_PATH
  GTEST_SKIP() << "sealpostd was not built";
#else
  Appliance& d = fed_->district();
  std::string out;
  int rc = RunCommand(std::string(SEALPOSTD_PATH) + " --config '" + d.file("sealpostd.yaml") +
                          "' 2>&1",
                      &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find("is in use by another sealpostd"), std::string::npos) << out;
  EXPECT_NE(out.find(d.state_dir()), std::string::npos) << out;
#endif
}

}  // namespace
}  // namespace sealpost::testing
