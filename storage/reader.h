// A read-only view of an archive (see storage/archive.h for the layout):
// the head commit, its checkpoint, manifests and files by seq, leaf hashes,
// proofs, the commit history of checkpoints, the repository-local
// configuration (sealpost.*) — without the writer lock and without a
// Signer, so `sealpost archive list|show|prove|reindex|mirror` and the index
// work beside a running writer. Also: pushing main to a mirror.
//
// A reader is a snapshot: everything is read from the head commit found at
// Open(); appends made later by a writer are not seen (open a new reader).
//
// Thread-safety: none (libgit2 objects); one thread per ArchiveReader.
#ifndef SEALPOST_STORAGE_READER_H_
#define SEALPOST_STORAGE_READER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/openssl.h"
#include "base/status.h"
#include "crypto/checkpoint.h"
#include "crypto/merkle.h"
#include "storage/entry.h"
#include "storage/git.h"

namespace sealpost::storage {

struct ManifestFile {
  std::string name;
  std::string sha256;  // lower-case hex
  uint64_t size = 0;
};

// A parsed manifest.json (see storage/entry.h BuildManifest).
struct Manifest {
  int format = 0;
  EntryKind kind = EntryKind::kDocumentSent;
  std::string origin;
  uint64_t seq = 0;
  uint64_t refers_to = 0;
  std::string time;  // "YYYY-MM-DDTHH:MM:SSZ"
  std::map<std::string, std::string> fields;
  std::vector<ManifestFile> files;  // in name order

  // The field's value, "" when absent.
  std::string Field(const std::string& name) const;
};

// Strict parse of a manifest (objects, arrays, strings, non-negative
// integers; the keys of BuildManifest and no others). DataError naming
// `source` on anything else.
Result<Manifest> ParseManifest(std::string_view json, std::string_view source);

// A commit on main and the size of the checkpoint it carries.
struct CommitSize {
  std::string commit;  // hex
  uint64_t size = 0;
};

class ArchiveReader {
 public:
  // Opens `dir` (a bare archive, or a non-bare clone's work tree) read-only.
  // Checks: a git repository, HEAD -> refs/heads/main, FORMAT known, the
  // head checkpoint parses and is signed by the head's seal.pem.
  // Errors: NotFound (no such directory), DataError (not a git repository,
  // not a sealpost archive, unknown format, corrupt object or checkpoint,
  // a checkpoint signature that does not verify). Changes nothing on disk.
  static Result<std::unique_ptr<ArchiveReader>> Open(const std::string& dir);

  // Moves this reader to the archive's current head, with the checks of
  // Open() on the new head (its checkpoint parses and is signed by its
  // seal.pem, which is parsed again only when its blob changed), without
  // opening the repository again. The head must have moved forward: a
  // checkpoint smaller than the one held is DataError. On error the reader
  // is unchanged. Objects in pack files written since Open() are found
  // (libgit2 rescans the pack directory on a miss); pack files deleted
  // since stay open until the reader is destroyed, so a long-lived reader
  // should be reopened now and then.
  [[nodiscard]] Status Refresh();

  ~ArchiveReader();
  ArchiveReader(const ArchiveReader&) = delete;
  ArchiveReader& operator=(const ArchiveReader&) = delete;

  const std::string& dir() const { return dir_; }
  // Where caches beside the repository go (the index): the repository's
  // git directory — `dir` itself for a bare archive, `dir`/.git for a
  // non-bare clone (so the work tree stays clean). No trailing slash.
  const std::string& state_dir() const { return state_dir_; }
  const std::string& head() const { return head_hex_; }  // hex commit id of main
  uint64_t size() const { return checkpoint_.size; }     // entries 1..size()
  const std::string& origin() const { return checkpoint_.origin; }
  const crypto::Checkpoint& checkpoint() const { return checkpoint_; }
  // The exact bytes of log/checkpoint and log/checkpoint.p7s (DER) at head.
  const std::string& checkpoint_body() const { return checkpoint_body_; }
  const std::string& checkpoint_signature() const { return checkpoint_sig_; }
  // The seal certificate of the head commit (root seal.pem), borrowed.
  X509* seal() const { return seal_.get(); }

  // A file of entry `seq` (or "manifest.json") as committed at head.
  // NotFound if there is no such entry or file; DataError for an object
  // that cannot be read.
  Result<std::string> ReadEntryFile(uint64_t seq, const std::string& name);
  // The parsed manifest of `seq`; DataError when it does not parse or names
  // another seq or origin.
  Result<Manifest> ReadManifest(uint64_t seq);

  // Leaf hashes of entries 1..count (count <= size()).
  Result<std::vector<crypto::merkle::Hash>> ReadLeafHashes(uint64_t count);
  // RFC 6962 inclusion proof of `seq` in the tree of `tree_size` entries.
  // InvalidArgument unless 1 <= seq <= tree_size <= size().
  Result<std::vector<crypto::merkle::Hash>> InclusionProof(uint64_t seq, uint64_t tree_size);
  // Consistency proof from `old_size` to `new_size` (<= size()).
  Result<std::vector<crypto::merkle::Hash>> ConsistencyProof(uint64_t old_size, uint64_t new_size);

  // The commits of main (first parents from head) whose checkpoint size is
  // greater than `after_size`, oldest first, with their sizes. With
  // after_size == 0: the whole history. DataError on a commit without a
  // readable checkpoint.
  Result<std::vector<CommitSize>> CommitsAfter(uint64_t after_size);

  // True when commit `ancestor_hex` is head or an ancestor of head. False
  // for an unknown or malformed id.
  bool ContainsCommit(const std::string& ancestor_hex);

  // A value of the repository's own configuration file (e.g.
  // "sealpost.origin"); nullopt when not set.
  std::optional<std::string> ConfigString(const std::string& name);

 private:
  ArchiveReader() = default;
  Result<std::string> ReadAt(git_tree* tree, const std::string& path);
  // Reads and checks the head commit `head` (see Open) into this reader;
  // on error nothing is changed.
  [[nodiscard]] Status LoadHead(const git_oid& head);

  std::string dir_;
  std::string state_dir_;
  GitRepositoryPtr repo_;
  GitTreePtr tree_;
  git_oid head_{};
  std::string head_hex_;
  crypto::Checkpoint checkpoint_;
  std::string checkpoint_body_;
  std::string checkpoint_sig_;
  X509Ptr seal_;
  git_oid seal_blob_{};  // the seal.pem blob seal_ was parsed from
};

// Writes sealpost.* values into the repository-local `config` of the
// archive at `dir` (git config syntax; outside history). Nothing secret
// may be passed. IoError / DataError naming the file.
Status SetArchiveConfig(const std::string& dir,
                        const std::vector<std::pair<std::string, std::string>>& values);

struct MirrorResult {
  std::string remote_before;  // hex of the remote's main before, "" if it had none
  std::string head;           // hex of main now on both sides
  // A non-bare mirror with main checked out: whether its work tree was
  // fast-forwarded too (false when it had local changes; refs moved anyway).
  bool worktree_updated = false;
};

// Pushes refs/heads/main of the archive at `dir` to `remote` (a local path
// or a file:// URL of a git repository, bare or not), never forced: the
// remote's main must be absent, equal to ours or an ancestor of ours.
// Errors: NotFound (remote is not a repository), FailedPrecondition (the
// remote's main is not an ancestor of ours: it was rewritten or belongs to
// another history; nothing is pushed), IoError (the push failed).
// Only local transports are supported. A bare remote is pushed to; a
// non-bare one (libgit2 cannot push there) fetches main from the archive.
Result<MirrorResult> MirrorMain(const std::string& dir, const std::string& remote);

}  // namespace sealpost::storage

#endif  // SEALPOST_STORAGE_READER_H_
