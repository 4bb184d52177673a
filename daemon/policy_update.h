// Policy updates carried as documents (docs/policy.md "Policy updates"): a
// document of type `policy` whose content is the whole new policy as one
// YAML file, issued by the federation's root union and signed as the policy
// in force requires for that type. It is verified like any document (the
// Exchange on the root's own appliance, the Inbox elsewhere); then:
//
//   CheckPolicyUpdate   before anything is archived: the issuer is the root
//                       (the union whose id is the federation id, else the one
//                       union without a parent), the content loads strictly,
//                       same federation id, version strictly greater, the
//                       root and this appliance's union still in the registry.
//                       403 policy-update-not-root / 422 policy-update-invalid.
//   ApplyPolicyUpdate   after the document is archived: the YAML written
//                       atomically to <state_dir>/policy/current.yaml, a
//                       `policy-version` entry archived (policy.yaml and the
//                       canonical policy.json; refers_to the document's entry),
//                       then swapped into the PolicyHolder (atomically with
//                       the version check), in force for the next request.
//   LoadInstalledPolicy at start: <state_dir>/policy/current.yaml, when it loads
//                       and is a newer version of the same federation than the
//                       configured policy files, is put in force.
//   RecoverPolicyUpdate at start, after LoadInstalledPolicy: closes the crash
//                       window between archiving a policy document and
//                       ApplyPolicyUpdate. The archive (read-only, no signer)
//                       is searched for policy documents; the newest version
//                       that passes CheckPolicyUpdate against the policy in
//                       force is written to current.yaml and put in force. A
//                       policy in force whose policy-version entry is missing
//                       is returned as pending, to be archived by
//                       RecordPendingPolicyVersion once the archive writer is
//                       open (the first DocumentsService::Get).
//
// Fault point for tests: with SEALPOST_TEST_KILL_AT=policy-archived in its
// environment, sealpostd SIGKILLs itself right after a policy document was
// archived, before it is applied (docs/policy.md "Policy updates").
#ifndef SEALPOST_DAEMON_POLICY_UPDATE_H_
#define SEALPOST_DAEMON_POLICY_UPDATE_H_

#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <set>
#include <vector>

#include "base/status.h"
#include "daemon/problem.h"
#include "daemon/startup_scan.h"
#include "policies/holder.h"
#include "storage/archive.h"

namespace sealpost::daemon {

inline constexpr std::string_view kPolicyDocumentType = "policy";

// The root union of `p`, or "" when it cannot be told.
std::string PolicyRoot(const policies::Policy& p);

// See the file comment. `content_path`: the document's content (at most 16 MiB).
std::expected<std::shared_ptr<const policies::Policy>, Problem> CheckPolicyUpdate(
    const policies::Policy& current, const std::string& issuer, const std::string& content_path,
    const std::string& own_union);

struct AppliedPolicy {
  uint64_t seq = 0;  // the policy-version entry
};

// See the file comment. `document_id`/`document_seq`: the policy document and
// its entry in `archive`. FailedPrecondition when a newer or equal version
// came in force meanwhile (nothing written then).
[[nodiscard]] Result<AppliedPolicy> ApplyPolicyUpdate(
    policies::PolicyHolder* holder, std::shared_ptr<const policies::Policy> next,
    const std::string& content_path, const std::string& state_dir, storage::Archive* archive,
    const std::string& document_id, uint64_t document_seq);

// See the file comment. True when the installed policy was put in force.
[[nodiscard]] Result<bool> LoadInstalledPolicy(policies::PolicyHolder* holder,
                                               const std::string& state_dir);

// A policy in force that came from an archived policy document whose
// policy-version entry is not archived yet.
struct PendingPolicyVersion {
  std::shared_ptr<const policies::Policy> policy;
  std::string yaml;         // the document's content
  std::string document_id;
  uint64_t document_seq = 0;
};

// The archive's policy documents and the policy-version entries, gathered
// by the start-up pass (daemon/startup_scan.h) for RecoverPolicyUpdate.
class PolicyDocumentsScan final : public ManifestConsumer {
 public:
  uint64_t covered() const override { return covered_; }
  [[nodiscard]] Status Consume(uint64_t seq, std::string_view text,
                               const storage::Manifest& m) override;

  struct Document {
    uint64_t seq;
    std::string id, issuer;
  };
  // Policy documents sent or received, in seq order.
  const std::vector<Document>& documents() const { return documents_; }
  // Document ids with a policy-version entry.
  const std::set<std::string>& recorded() const { return recorded_; }

 private:
  uint64_t covered_ = 0;
  std::vector<Document> documents_;
  std::set<std::string> recorded_;
};

// See the file comment. `archive_dir` need not exist (nothing to recover).
// `scan`: filled by the start-up pass (caught up here with the entries after
// it); null: every manifest is read here.
// Errors: the archive cannot be read (DataError/IoError), current.yaml
// cannot be written; the holder is unchanged then.
[[nodiscard]] Result<std::optional<PendingPolicyVersion>> RecoverPolicyUpdate(
    policies::PolicyHolder* holder, const std::string& state_dir,
    const std::string& archive_dir, const std::string& own_union,
    PolicyDocumentsScan* scan = nullptr);

// Archives the `policy-version` entry of `pending` (as ApplyPolicyUpdate
// does) when its policy is still the one in force; returns its seq, or 0
// when a newer policy came in force meanwhile (nothing written).
[[nodiscard]] Result<uint64_t> RecordPendingPolicyVersion(const policies::PolicyHolder& holder,
                                                          storage::Archive* archive,
                                                          const PendingPolicyVersion& pending);

// The test-only fault point of the file comment: SIGKILLs this process when
// SEALPOST_TEST_KILL_AT names `point`.
void TestKillPoint(std::string_view point);

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_POLICY_UPDATE_H_
