#include "daemon/policy_update.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <vector>

#include "base/file.h"
#include "base/json.h"
#include "base/log.h"
#include "storage/entry.h"
#include "storage/reader.h"

namespace sealpost::daemon {
namespace {

constexpr size_t kMaxPolicyBytes = 16u << 20;

Problem Invalid(const std::string& en, const std::string& vi) {
  return Problem{422, "policy-update-invalid", "Policy update refused",
                 "Bản cập nhật chính sách bị từ chối", en, vi};
}

std::mutex g_apply_mu;  // one update applied at a time (file, entry, swap)

}  // namespace

std::string PolicyRoot(const policies::Policy& p) {
  if (p.FindUnion(p.federation_id) != nullptr) return p.federation_id;
  std::string root;
  for (const policies::Union& u : p.unions) {
    if (!u.parent.empty()) continue;
    if (!root.empty()) return "";
    root = u.id;
  }
  return root;
}

namespace {

// CheckPolicyUpdate on content already read (`text`: null when it could not
// be read, with `read_error`).
std::expected<std::shared_ptr<const policies::Policy>, Problem> CheckPolicyText(
    const policies::Policy& current, const std::string& issuer, const Result<std::string>& text,
    const std::string& own_union) {
  const std::string root = PolicyRoot(current);
  if (root.empty() || issuer != root) {
    return std::unexpected(Problem{
        403, "policy-update-not-root", "Policy update not from the root union",
        "Bản cập nhật chính sách không do đơn vị gốc ban hành",
        "A policy document must be issued by the federation's root union '" + root +
            "', not by '" + issuer + "'.",
        "Văn bản chính sách phải do đơn vị gốc '" + root + "' của liên đoàn ban hành, không phải '" +
            issuer + "'."});
  }
  if (!text) {
    return std::unexpected(Invalid("The policy document cannot be read: " + text.error().message(),
                                   "Không đọc được văn bản chính sách: " + text.error().message()));
  }
  auto next = policies::LoadPolicy({{"policy document", *text}});
  if (!next) {
    return std::unexpected(Invalid("The new policy does not load:\n" + next.error().message(),
                                   "Chính sách mới không hợp lệ:\n" + next.error().message()));
  }
  const policies::Policy& n = **next;
  if (n.federation_id != current.federation_id) {
    return std::unexpected(Invalid(
        "The new policy is for federation '" + n.federation_id + "', not '" +
            current.federation_id + "'.",
        "Chính sách mới dành cho liên đoàn '" + n.federation_id + "', không phải '" +
            current.federation_id + "'."));
  }
  if (n.version <= current.version) {
    return std::unexpected(Invalid(
        "The new policy's federation.version " + std::to_string(n.version) +
            " is not greater than " + std::to_string(current.version) + " in force.",
        "federation.version " + std::to_string(n.version) + " của chính sách mới không lớn hơn " +
            std::to_string(current.version) + " đang áp dụng."));
  }
  if (PolicyRoot(n) != root) {
    return std::unexpected(Invalid(
        "The new policy's root union is '" + PolicyRoot(n) + "', not '" + root + "'.",
        "Đơn vị gốc của chính sách mới là '" + PolicyRoot(n) + "', không phải '" + root + "'."));
  }
  if (n.FindUnion(own_union) == nullptr) {
    return std::unexpected(Invalid(
        "The new policy has no union '" + own_union + "' (this appliance).",
        "Chính sách mới không có đơn vị '" + own_union + "' (thiết bị này)."));
  }
  return std::move(*next);
}

// Step 2 of docs/policy.md "Policy updates": the policy-version entry.
Result<storage::Appended> AppendPolicyVersion(storage::Archive* archive,
                                              const policies::Policy& p, std::string yaml,
                                              const std::string& document_id,
                                              uint64_t document_seq) {
  storage::EntryInput e;
  e.kind = storage::EntryKind::kPolicyVersion;
  e.fields = {{"federation", p.federation_id},
              {"version", std::to_string(p.version)},
              {"policy_sha256", p.sha256},
              {"document_id", document_id}};
  e.files = {{"policy.json", p.canonical_json}, {"policy.yaml", std::move(yaml)}};
  e.refers_to = document_seq;
  auto appended = archive->Append(std::move(e));
  if (!appended) return Err(appended.error().WithContext("policy-version entry"));
  return appended;
}

Status InstallPolicyFile(const std::string& state_dir, std::string_view yaml) {
  const std::string dir = state_dir + "/policy";
  if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
    return Status::IoError("cannot create " + dir + ": " + std::strerror(errno));
  }
  return WriteFileAtomic(dir + "/current.yaml", yaml, 0640);
}

}  // namespace

std::expected<std::shared_ptr<const policies::Policy>, Problem> CheckPolicyUpdate(
    const policies::Policy& current, const std::string& issuer, const std::string& content_path,
    const std::string& own_union) {
  return CheckPolicyText(current, issuer, ReadFile(content_path, kMaxPolicyBytes), own_union);
}

Result<AppliedPolicy> ApplyPolicyUpdate(policies::PolicyHolder* holder,
                                        std::shared_ptr<const policies::Policy> next,
                                        const std::string& content_path,
                                        const std::string& state_dir, storage::Archive* archive,
                                        const std::string& document_id, uint64_t document_seq) {
  std::lock_guard<std::mutex> lock(g_apply_mu);
  if (next->version <= holder->Current()->version) {
    return Err(Status::FailedPrecondition("policy version " + std::to_string(next->version) +
                                          " is no longer newer than the one in force"));
  }
  auto text = ReadFile(content_path, kMaxPolicyBytes);
  if (!text) return Err(text.error().WithContext("policy document"));
  SP_RETURN_IF_ERROR(InstallPolicyFile(state_dir, *text));
  auto appended =
      AppendPolicyVersion(archive, *next, std::move(*text), document_id, document_seq);
  if (!appended) return Err(appended.error());
  SP_RETURN_IF_ERROR(holder->Upgrade(next));
  Log(LogLevel::kInfo, "policy updated",
      "version=" + std::to_string(next->version) + " sha256=" + next->sha256 +
          " document_id=" + JsonString(document_id) + " seq=" + std::to_string(appended->seq));
  return AppliedPolicy{appended->seq};
}

Result<bool> LoadInstalledPolicy(policies::PolicyHolder* holder, const std::string& state_dir) {
  const std::string path = state_dir + "/policy/current.yaml";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  auto installed = policies::LoadPolicyFiles({path});
  if (!installed) return Err(installed.error().WithContext("installed policy " + path));
  auto current = holder->Current();
  if ((*installed)->federation_id != current->federation_id ||
      (*installed)->version <= current->version) {
    Log(LogLevel::kInfo, "installed policy not newer than the configured one: not used",
        "path=" + JsonString(path) + " version=" + std::to_string((*installed)->version));
    return false;
  }
  SP_RETURN_IF_ERROR(holder->Upgrade(std::move(*installed)));
  Log(LogLevel::kInfo, "installed policy in force",
      "path=" + JsonString(path) + " version=" + std::to_string(holder->Current()->version));
  return true;
}

Status PolicyDocumentsScan::Consume(uint64_t seq, std::string_view, const storage::Manifest& m) {
  covered_ = seq;
  if (m.kind == storage::EntryKind::kPolicyVersion) {
    recorded_.insert(m.Field("document_id"));
  } else if ((m.kind == storage::EntryKind::kDocumentSent ||
              m.kind == storage::EntryKind::kDocumentReceived) &&
             m.Field("type") == kPolicyDocumentType) {
    documents_.push_back({seq, m.Field("id"), m.Field("issuer")});
  }
  return Status::Ok();
}

Result<std::optional<PendingPolicyVersion>> RecoverPolicyUpdate(
    policies::PolicyHolder* holder, const std::string& state_dir,
    const std::string& archive_dir, const std::string& own_union, PolicyDocumentsScan* scan) {
  struct stat st {};
  if (::stat((archive_dir + "/HEAD").c_str(), &st) != 0) return std::nullopt;
  auto reader = storage::ArchiveReader::Open(archive_dir);
  if (!reader) return Err(reader.error().WithContext("policy recovery"));
  PolicyDocumentsScan own;
  if (scan == nullptr) scan = &own;
  if (Status s = FeedManifests(**reader, {scan}); !s.ok()) {
    return Err(s.WithContext("policy recovery"));
  }
  const std::vector<PolicyDocumentsScan::Document>& documents = scan->documents();
  const std::set<std::string>& recorded = scan->recorded();
  if (documents.empty()) return std::nullopt;

  // Every archived policy document was verified (signatures, chains, the
  // type's rules and CheckPolicyUpdate) before it was archived; here it is
  // checked again against the policy in force now, which may be newer.
  std::lock_guard<std::mutex> lock(g_apply_mu);
  const std::shared_ptr<const policies::Policy> current = holder->Current();
  std::shared_ptr<const policies::Policy> best;
  std::optional<PendingPolicyVersion> pending;
  for (auto it = documents.rbegin(); it != documents.rend(); ++it) {
    auto text = (*reader)->ReadEntryFile(it->seq, "content");
    if (!text) return Err(text.error().WithContext("policy recovery: entry " +
                                                   std::to_string(it->seq)));
    auto next = CheckPolicyText(*current, it->issuer, text, own_union);
    if (next) {
      if (best == nullptr || (*next)->version > best->version) {
        best = *next;
        pending = PendingPolicyVersion{best, *text, it->id, it->seq};
      }
      continue;
    }
    // Applied, but its policy-version entry never archived (a crash after
    // current.yaml was written)?
    if (best != nullptr || pending || recorded.count(it->id) > 0) continue;
    auto same = policies::LoadPolicy({{"policy document", *text}});
    if (same && (*same)->sha256 == current->sha256) {
      pending = PendingPolicyVersion{current, *text, it->id, it->seq};
    }
  }
  if (best != nullptr) {
    SP_RETURN_IF_ERROR(InstallPolicyFile(state_dir, pending->yaml));
    SP_RETURN_IF_ERROR(holder->Upgrade(best));
    Log(LogLevel::kWarn, "policy document archived but not applied before: applied now",
        "version=" + std::to_string(best->version) + " sha256=" + best->sha256 +
            " document_id=" + JsonString(pending->document_id) +
            " seq=" + std::to_string(pending->document_seq));
  }
  if (pending && recorded.count(pending->document_id) > 0) return std::nullopt;
  return pending;
}

Result<uint64_t> RecordPendingPolicyVersion(const policies::PolicyHolder& holder,
                                            storage::Archive* archive,
                                            const PendingPolicyVersion& pending) {
  std::lock_guard<std::mutex> lock(g_apply_mu);
  if (holder.Current()->sha256 != pending.policy->sha256) return 0;
  auto appended = AppendPolicyVersion(archive, *pending.policy, pending.yaml,
                                      pending.document_id, pending.document_seq);
  if (!appended) return Err(appended.error());
  Log(LogLevel::kInfo, "policy-version entry archived after a restart",
      "version=" + std::to_string(pending.policy->version) +
          " document_id=" + JsonString(pending.document_id) +
          " seq=" + std::to_string(appended->seq));
  return appended->seq;
}

void TestKillPoint(std::string_view point) {
  const char* at = std::getenv("SEALPOST_TEST_KILL_AT");
  if (at == nullptr || point != at) return;
  Log(LogLevel::kWarn, "test fault point: killing this process",
      "point=" + JsonString(std::string(point)));
  ::kill(::getpid(), SIGKILL);
}

}  // namespace sealpost::daemon
