#include "storage/git.h"

#include <mutex>

namespace sealpost::storage {

Status EnsureLibgit2() {
  static Status result = [] {
    if (git_libgit2_init() < 0) return GitStatus(Code::kInternal, "cannot initialise libgit2");
    if (git_libgit2_opts(GIT_OPT_ENABLE_FSYNC_GITDIR, 1) < 0) {
      return GitStatus(Code::kInternal, "cannot enable fsync in libgit2");
    }
    return Status::Ok();
  }();
  return result;
}

Status GitStatus(Code code, std::string_view what) {
  const git_error* e = git_error_last();
  std::string msg(what);
  if (e != nullptr && e->message != nullptr) {
    msg += ": ";
    msg += e->message;
  }
  git_error_clear();
  return Status(code, std::move(msg));
}

std::string OidHex(const git_oid& oid) {
  char buf[GIT_OID_HEXSZ + 1];
  git_oid_tostr(buf, sizeof buf, &oid);
  return std::string(buf);
}

}  // namespace sealpost::storage
