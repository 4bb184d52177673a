#include "daemon/policy_update.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "base/file.h"
#include "base/json.h"
#include "base/log.h"
#include "storage/entry.h"

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

std::expected<std::shared_ptr<const policies::Policy>, Problem> CheckPolicyUpdate(
    const policies::Policy& current, const std::string& issuer, const std::string& content_path,
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
  auto text = ReadFile(content_path, kMaxPolicyBytes);
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
  const std::string dir = state_dir + "/policy";
  if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
    return Err(Status::IoError("cannot create " + dir + ": " + std::strerror(errno)));
  }
  SP_RETURN_IF_ERROR(WriteFileAtomic(dir + "/current.yaml", *text, 0640));
  storage::EntryInput e;
  e.kind = storage::EntryKind::kPolicyVersion;
  e.fields = {{"federation", next->federation_id},
              {"version", std::to_string(next->version)},
              {"policy_sha256", next->sha256},
              {"document_id", document_id}};
  e.files = {{"policy.json", next->canonical_json}, {"policy.yaml", std::move(*text)}};
  e.refers_to = document_seq;
  auto appended = archive->Append(std::move(e));
  if (!appended) return Err(appended.error().WithContext("policy-version entry"));
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

}  // namespace sealpost::daemon
