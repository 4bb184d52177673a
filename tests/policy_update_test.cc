// Policy updates as documents (daemon/policy_update.h, docs/policy.md
// "Policy updates"): the checks alone, then end to end on a federation of
// real appliances — the root submits a `policy` document that allows a new
// type; every grassroots appliance verifies, archives and applies it; a
// document of the new type, refused before, is then accepted.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "daemon/policy_update.h"
#include "policies/policy.h"
#include "tests/support/federation.h"
#include "tests/support/test_pki.h"
#include "tests/support/wait.h"

namespace sealpost::testing {
namespace {

std::string SmallPolicy(const std::string& version_part, const std::string& extra_union = "") {
  return "federation: {id: root-u, name: \"Gốc\"" + version_part + "}\n"
         "trust:\n  anchors:\n    - {id: ca, name: \"CA\", sha256: \"" + std::string(64, 'a') + "\"}\n"
         "unions:\n"
         "  - {id: root-u, name: \"Gốc\", level: district}\n"
         "  - {id: child, name: \"Con\", level: grassroots, parent: root-u}\n" + extra_union +
         "document_types:\n"
         "  - id: policy\n    name: \"Chính sách\"\n    issuers: {levels: [district]}\n"
         "    recipients: {relations: [children]}\n    signatures: {seal: true}\n"
         "    max_size_bytes: 1048576\n    media_types: [text/plain]\n    retention_years: 20\n";
}

TEST(PolicyUpdateCheckTest, RootOnlyNewerVersionLoadsSameFederation) {
  auto current = policies::LoadPolicy({{"current.yaml", SmallPolicy(", version: 1")}});
  ASSERT_TRUE(current) << current.error().message();
  EXPECT_EQ(daemon::PolicyRoot(**current), "root-u");
  EXPECT_EQ((*current)->version, 1u);
  TempDir dir;
  auto check = [&](const std::string& issuer, const std::string& yaml) {
    WriteTestFile(dir.file("p.yaml"), yaml);
    return daemon::CheckPolicyUpdate(**current, issuer, dir.file("p.yaml"), "child");
  };
  auto ok = check("root-u", SmallPolicy(", version: 2"));
  ASSERT_TRUE(ok) << ok.error().detail_en;
  EXPECT_EQ((*ok)->version, 2u);

  auto not_root = check("child", SmallPolicy(", version: 2"));
  ASSERT_FALSE(not_root);
  EXPECT_EQ(not_root.error().status, 403);
  EXPECT_EQ(not_root.error().slug, "policy-update-not-root");

  auto same = check("root-u", SmallPolicy(", version: 1"));
  ASSERT_FALSE(same);
  EXPECT_EQ(same.error().status, 422);
  EXPECT_TRUE(Contains(same.error().detail_en, "not greater than 1")) << same.error().detail_en;

  auto broken = check("root-u", SmallPolicy(", version: 3, colour: red"));
  ASSERT_FALSE(broken);
  EXPECT_EQ(broken.error().status, 422);
  EXPECT_TRUE(Contains(broken.error().detail_en, "colour")) << broken.error().detail_en;

  std::string other = SmallPolicy(", version: 3");
  other.replace(other.find("id: root-u, name"), 9, "id: other");
  auto other_fed = check("root-u", other);
  ASSERT_FALSE(other_fed);
  EXPECT_EQ(other_fed.error().status, 422);

  // The version is part of the policy's hash only when set.
  auto unversioned = policies::LoadPolicy({{"a.yaml", SmallPolicy("")}});
  ASSERT_TRUE(unversioned);
  EXPECT_EQ((*unversioned)->version, 0u);
  EXPECT_FALSE(Contains((*unversioned)->canonical_json, "\"version\""));
  EXPECT_NE((*unversioned)->sha256, (*current)->sha256);
}

constexpr char kPolicyType[] =
    "  - id: policy\n    name: \"Chính sách\"\n    name_en: \"Policy\"\n"
    "    issuers: {levels: [district]}\n    recipients: {relations: [children]}\n"
    "    signatures:\n      officers:\n        - {roles: [chair], count: 1}\n      seal: true\n"
    "    max_size_bytes: 1048576\n    media_types: [text/plain, application/yaml]\n"
    "    retention_years: 20\n";

constexpr char kMinutesType[] =
    "  - id: minutes\n    name: \"Biên bản\"\n    name_en: \"Minutes\"\n"
    "    issuers: {levels: [grassroots]}\n    recipients: {relations: [parent]}\n"
    "    signatures: {seal: true}\n"
    "    max_size_bytes: 1048576\n    media_types: [text/plain]\n    retention_years: 10\n";

std::string PolicySha(const Appliance& a) {
  HttpAnswer h = a.Get("/api/v1/health", "");
  const std::string k = "\"policy\":{\"loaded\":true,\"sha256\":\"";
  size_t p = h.body.find(k);
  if (p == std::string::npos) return "";
  p += k.size();
  return h.body.substr(p, h.body.find('"', p) - p);
}

// The federation's policy with `v` (e.g. ", version: 2") added to its
// `federation:` mapping.
std::string WithVersion(std::string policy, const std::string& v) {
  policy.insert(policy.find("}\ntrust:"), v);
  return policy;
}

// The district submits `yaml` (written to work/name) as a policy document
// to every grassroots union, signed by the chair.
HttpAnswer SubmitPolicy(Federation& fed, const TempDir& work, const std::string& name,
                        const std::string& yaml) {
  WriteTestFile(work.file(name), yaml);
  std::string sig = fed.SignAsChair(work.file(name));
  return fed.district().Submit({.file = work.file(name), .type = "policy",
                                .recipients = fed.grassroots_ids(),
                                .media_type = "application/yaml", .signature = sig});
}

TEST(PolicyUpdateFederationTest, RootPolicyDocumentTakesEffectOnEveryAppliance) {
  FederationOptions fo;
  fo.grassroots = 2;
  fo.extra_config = kFastDeliveryShortLeaseConfig;
  fo.policy_types_extra = kPolicyType;
  auto fed = Federation::Start(fo);
  ASSERT_NE(fed, nullptr);
  Appliance& d = fed->district();
  Appliance& g0 = fed->grassroots(0);
  Appliance& g1 = fed->grassroots(1);
  const std::string old_sha = PolicySha(d);
  ASSERT_FALSE(old_sha.empty());
  TempDir work;

  // Before: the grassroots union may not issue minutes.
  WriteTestFile(work.file("minutes.txt"), "Biên bản họp công đoàn\n");
  HttpAnswer before = g0.Submit({.file = work.file("minutes.txt"), .type = "minutes",
                                 .recipients = {Federation::kDistrict}});
  EXPECT_EQ(before.status, 403) << before.body;

  const std::string current = ReadTestFile(fed->file("policy.yaml"));
  auto with_version = [&](const std::string& v) { return WithVersion(current, v); };
  auto submit_policy = [&](const std::string& name, const std::string& yaml) {
    return SubmitPolicy(*fed, work, name, yaml);
  };

  // Refused, nothing changes: not a newer version; a policy that does not load.
  HttpAnswer same = submit_policy("same.yaml", current + kMinutesType);
  EXPECT_EQ(same.status, 422) << same.body;
  EXPECT_TRUE(Contains(same.body, "policy-update-invalid")) << same.body;
  HttpAnswer broken = submit_policy("broken.yaml", with_version(", version: 2") + "colour: red\n");
  EXPECT_EQ(broken.status, 422) << broken.body;
  EXPECT_TRUE(Contains(broken.body, "colour")) << broken.body;
  EXPECT_EQ(PolicySha(d), old_sha);
  EXPECT_EQ(fed->CountEntries(d, "policy-version"), 0u);
  EXPECT_EQ(fed->CountEntries(d, "document-sent"), 0u);
  // A grassroots union may not issue a policy document (the type's rule).
  HttpAnswer from_child = g0.Submit({.file = work.file("same.yaml"), .type = "policy",
                                     .recipients = {Federation::kDistrict},
                                     .media_type = "application/yaml"});
  EXPECT_EQ(from_child.status, 403) << from_child.body;

  // The update: version 2, minutes allowed.
  HttpAnswer upd = submit_policy("v2.yaml", with_version(", version: 2") + kMinutesType);
  ASSERT_EQ(upd.status, 201) << upd.body;
  const std::string new_sha = PolicySha(d);
  EXPECT_NE(new_sha, old_sha);
  EXPECT_TRUE(WaitFor([&] { return PolicySha(g0) == new_sha && PolicySha(g1) == new_sha; }, 30))
      << PolicySha(g0) << " " << PolicySha(g1) << " want " << new_sha;

  // After: minutes from a grassroots union accepted and delivered.
  HttpAnswer after = g0.Submit({.file = work.file("minutes.txt"), .type = "minutes",
                                .recipients = {Federation::kDistrict}});
  EXPECT_EQ(after.status, 201) << after.body;
  EXPECT_TRUE(WaitFor([&] {
    for (const auto& m : fed->ArchiveEntries(d)) {
      if (storage::EntryKindName(m.kind) == "document-received" && m.Field("type") == "minutes") {
        return true;
      }
    }
    return false;
  }, 30));

  // One policy-version entry on each appliance, referring to the document.
  for (Appliance* a : {&d, &g0, &g1}) {
    size_t n = 0;
    for (const auto& m : fed->ArchiveEntries(*a)) {
      if (storage::EntryKindName(m.kind) != "policy-version") continue;
      ++n;
      EXPECT_EQ(m.Field("version"), "2");
      EXPECT_EQ(m.Field("policy_sha256"), new_sha);
      EXPECT_NE(m.refers_to, 0u);
    }
    EXPECT_EQ(n, 1u) << a->id();
  }
  // The same document again is not newer: nothing more.
  HttpAnswer again = submit_policy("v2b.yaml", with_version(", version: 2") + kMinutesType);
  EXPECT_EQ(again.status, 422) << again.body;

  // A restart keeps the installed policy (from the state directory).
  ASSERT_TRUE(g1.Restart());
  EXPECT_EQ(PolicySha(g1), new_sha);
  std::string out;
  for (Appliance* a : {&d, &g0, &g1}) EXPECT_EQ(fed->Audit(*a, &out), 0) << a->id() << "\n" << out;
  EXPECT_TRUE(fed->StopAll());
}

// The crash window between archiving a policy document and applying it
// (daemon/policy_update.h RecoverPolicyUpdate): every daemon runs with the
// test-only fault point SEALPOST_TEST_KILL_AT=policy-archived, so the root
// SIGKILLs itself right after it archived its own policy document, and the
// grassroots appliance right after it archived the received one. After a
// restart (fault point off) each has the new policy in force, one
// policy-version entry referring to the document, and the document of the
// newly allowed type is accepted.
TEST(PolicyUpdateCrashTest, KilledBetweenArchiveAndApplyAppliesAfterRestart) {
  ASSERT_EQ(::setenv("SEALPOST_TEST_KILL_AT", "policy-archived", 1), 0);
  FederationOptions fo;
  fo.grassroots = 1;
  fo.extra_config = kFastDeliveryShortLeaseConfig;
  fo.policy_types_extra = kPolicyType;
  auto fed = Federation::Start(fo);
  ::unsetenv("SEALPOST_TEST_KILL_AT");  // restarted daemons run without it
  ASSERT_NE(fed, nullptr);
  Appliance& d = fed->district();
  Appliance& g0 = fed->grassroots(0);
  const std::string old_sha = PolicySha(d);
  ASSERT_FALSE(old_sha.empty());
  TempDir work;
  WriteTestFile(work.file("minutes.txt"), "Biên bản họp công đoàn\n");
  HttpAnswer before = g0.Submit({.file = work.file("minutes.txt"), .type = "minutes",
                                 .recipients = {Federation::kDistrict}});
  EXPECT_EQ(before.status, 403) << before.body;

  HttpAnswer upd = SubmitPolicy(
      *fed, work, "v2.yaml",
      WithVersion(ReadTestFile(fed->file("policy.yaml")), ", version: 2") + kMinutesType);
  // Killed before it answered: no 201, the document archived, not applied.
  EXPECT_NE(upd.status, 201) << upd.body;
  EXPECT_TRUE(WaitFor([&] { return d.Get("/api/v1/health", "").status == 0; }, 10));
  EXPECT_EQ(fed->CountEntries(d, "document-sent"), 1u);
  EXPECT_EQ(fed->CountEntries(d, "policy-version"), 0u);

  ASSERT_TRUE(d.Restart());
  const std::string new_sha = PolicySha(d);
  EXPECT_NE(new_sha, old_sha);
  EXPECT_FALSE(new_sha.empty());
  EXPECT_TRUE(Contains(ReadTestFile(d.file("state/policy/current.yaml")), "version: 2"));

  // The queued delivery reaches g0, which is killed in the same place.
  EXPECT_TRUE(WaitFor([&] { return g0.Get("/api/v1/health", "").status == 0; }, 60));
  EXPECT_EQ(fed->CountEntries(g0, "document-received"), 1u);
  EXPECT_EQ(fed->CountEntries(g0, "policy-version"), 0u);
  ASSERT_TRUE(g0.Restart());
  EXPECT_EQ(PolicySha(g0), new_sha);

  // Newly allowed: minutes from g0, received by the district.
  HttpAnswer after = g0.Submit({.file = work.file("minutes.txt"), .type = "minutes",
                                .recipients = {Federation::kDistrict}});
  EXPECT_EQ(after.status, 201) << after.body;
  // The redelivery to g0 got its receipt (nothing archived twice), and each
  // side archived the policy-version entry the crash left out.
  EXPECT_TRUE(WaitFor([&] { return fed->CountEntries(d, "delivery-receipt") >= 1; }, 30));
  EXPECT_EQ(fed->CountEntries(g0, "document-received"), 1u);
  for (Appliance* a : {&d, &g0}) {
    EXPECT_TRUE(WaitFor([&] { return fed->CountEntries(*a, "policy-version") == 1; }, 30))
        << a->id();
    for (const auto& m : fed->ArchiveEntries(*a)) {
      if (storage::EntryKindName(m.kind) != "policy-version") continue;
      EXPECT_EQ(m.Field("version"), "2");
      EXPECT_EQ(m.Field("policy_sha256"), new_sha);
      EXPECT_NE(m.refers_to, 0u);
    }
  }
  // Another restart: still in force, no second entry.
  ASSERT_TRUE(g0.Restart());
  EXPECT_EQ(PolicySha(g0), new_sha);
  EXPECT_TRUE(WaitFor([&] { return g0.Get("/api/v1/documents", "clerk").status == 200; }, 10));
  EXPECT_EQ(fed->CountEntries(g0, "policy-version"), 1u);
  std::string out;
  for (Appliance* a : {&d, &g0}) EXPECT_EQ(fed->Audit(*a, &out), 0) << a->id() << "\n" << out;
  EXPECT_TRUE(fed->StopAll());
}

}  // namespace
}  // namespace sealpost::testing
