// The policy in force, swappable at run time. A new policy is loaded and
// validated aside, then swapped in atomically; a bad one leaves the running
// policy in force and the returned Status says why (every error, one per
// line). Readers take a shared_ptr snapshot and keep using it even after a
// swap, so one request always sees one policy.
//
// Thread-safety: every method may be called from any thread.
#ifndef SEALPOST_POLICIES_HOLDER_H_
#define SEALPOST_POLICIES_HOLDER_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/status.h"
#include "policies/policy.h"

namespace sealpost::policies {

class PolicyHolder {
 public:
  // Loads the first policy; an error if it does not load.
  [[nodiscard]] static Result<std::unique_ptr<PolicyHolder>> Open(const std::vector<std::string>& paths);
  // `initial` must not be null.
  explicit PolicyHolder(std::shared_ptr<const Policy> initial);
  PolicyHolder(const PolicyHolder&) = delete;
  PolicyHolder& operator=(const PolicyHolder&) = delete;

  // The policy in force now (never null).
  std::shared_ptr<const Policy> Current() const;
  // How many times a policy was swapped in (0 for the initial one).
  uint64_t generation() const;

  // Loads `paths`; on success swaps it in. On failure the current policy
  // stays in force and the error (DataError with every problem, or NotFound
  // for an unreadable file) is returned. The daemon archives
  // Current()->canonical_json after each successful reload whose sha256
  // differs from the previous one.
  [[nodiscard]] Status Reload(const std::vector<std::string>& paths);

  // Swaps in `next` (loaded and checked by the caller) if its version is
  // strictly greater than the one in force, atomically with that check;
  // otherwise FailedPrecondition and nothing changes. `next` must not be null.
  [[nodiscard]] Status Upgrade(std::shared_ptr<const Policy> next);

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const Policy> current_;  // guarded by mu_
  uint64_t generation_ = 0;                // guarded by mu_
};

}  // namespace sealpost::policies

#endif  // SEALPOST_POLICIES_HOLDER_H_
