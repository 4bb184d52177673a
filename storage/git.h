// Owning handles for libgit2 objects, libgit2 start-up, and capture of
// git_error_last() at the failing call. Internal to storage/.
#ifndef SEALPOST_STORAGE_GIT_H_
#define SEALPOST_STORAGE_GIT_H_

#include <memory>
#include <string>
#include <string_view>

#include <git2.h>

#include "base/handle.h"
#include "base/status.h"

namespace sealpost::storage {

template <auto Fn>
using GitDeleter = CDeleter<Fn>;

using GitRepositoryPtr = std::unique_ptr<git_repository, GitDeleter<git_repository_free>>;
using GitOdbPtr = std::unique_ptr<git_odb, GitDeleter<git_odb_free>>;
using GitTreePtr = std::unique_ptr<git_tree, GitDeleter<git_tree_free>>;
using GitTreeEntryPtr = std::unique_ptr<git_tree_entry, GitDeleter<git_tree_entry_free>>;
using GitCommitPtr = std::unique_ptr<git_commit, GitDeleter<git_commit_free>>;
using GitBlobPtr = std::unique_ptr<git_blob, GitDeleter<git_blob_free>>;
using GitReferencePtr = std::unique_ptr<git_reference, GitDeleter<git_reference_free>>;
using GitSignaturePtr = std::unique_ptr<git_signature, GitDeleter<git_signature_free>>;
using GitRevwalkPtr = std::unique_ptr<git_revwalk, GitDeleter<git_revwalk_free>>;
using GitPackbuilderPtr = std::unique_ptr<git_packbuilder, GitDeleter<git_packbuilder_free>>;

struct GitWritepackDeleter {
  void operator()(git_odb_writepack* w) const { if (w) w->free(w); }
};
using GitWritepackPtr = std::unique_ptr<git_odb_writepack, GitWritepackDeleter>;

// A git_buf that is disposed of when it goes out of scope.
class GitBuf {
 public:
  GitBuf() = default;
  ~GitBuf() { git_buf_dispose(&buf_); }
  GitBuf(const GitBuf&) = delete;
  GitBuf& operator=(const GitBuf&) = delete;
  git_buf* get() { return &buf_; }
  std::string_view view() const { return std::string_view(buf_.ptr ? buf_.ptr : "", buf_.size); }

 private:
  git_buf buf_ = GIT_BUF_INIT;
};

// Initialises libgit2 once per process (never shut down: libgit2 state is
// process-wide and other archives may still be open) and turns on fsync of
// everything libgit2 writes in a git directory (GIT_OPT_ENABLE_FSYNC_GITDIR).
Status EnsureLibgit2();

// A Status of `code` whose message is `what` and libgit2's last error.
Status GitStatus(Code code, std::string_view what);

std::string OidHex(const git_oid& oid);

}  // namespace sealpost::storage

#endif  // SEALPOST_STORAGE_GIT_H_
