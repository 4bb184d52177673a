// Owning handles for libgit2 objects, libgit2 start-up, and capture of
// git_error_last() at the failing call. Internal to storage/.
#ifndef SEALPOST_STORAGE_GIT_H_
#define SEALPOST_STORAGE_GIT_H_

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include <git2.h>
#include <zlib.h>

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

// ---------------------------------------------------------------------------
// Writing git objects and packs without libgit2's object database: the
// archive knows every object of a commit, so it computes their ids, deflates
// them and writes one pack (.pack + version 2 .idx) per commit itself —
// no indexer pass, no loose objects, and the fsyncs are under its control.

// The git object id of an object: SHA-1("<type> <size>\0" + data).
git_oid HashObject(git_object_t type, std::string_view data);

// One entry of a tree object. `is_tree` selects mode 40000 (else 100644).
struct TreeItem {
  std::string name;
  git_oid id{};
  bool is_tree = false;
};
// The canonical bytes of a tree object: items sorted in git's order (names
// compared bytewise, a directory as if its name ended in '/').
// REQUIRES: names unique, non-empty, without '/' or NUL.
std::string SerializeTree(std::vector<TreeItem> items);

// An object made ready for a pack: its id, its pack entry (header and
// zlib data) and that entry's CRC-32. PackObject() is pure and thread-safe,
// so the archive makes the objects of an entry's files in the appender's
// thread, before the entry is queued for the single writer.
struct PackedObject {
  git_oid id{};
  std::string entry;
  uint32_t crc = 0;
};
// Data that looks incompressible (order-0 entropy of its first 16 KiB
// above 7.5 bits/byte: random, encrypted, already compressed) is stored
// (zlib stored blocks, written without deflate); the rest is deflated at
// level 1 with a window and hash table sized to the object (streams of
// the calling thread, reused).
Result<PackedObject> PackObject(git_object_t type, std::string_view data);

// A few threads kept to run a round of jobs at once: the syncs of a sync
// round (decision 0005, "Durability": one in the caller's thread, the
// others on the pool's threads, so that their flushes overlap), and the
// writer's checkpoint signature beside the build of a commit's objects —
// without creating and joining a thread per job on a commit's path. The
// first job of a round always runs in the calling thread. Run() calls from
// several threads are served one after the other. The threads are made by
// the constructor and joined by the destructor.
class JobPool {
 public:
  using Job = std::function<Status()>;
  explicit JobPool(size_t threads);
  ~JobPool();
  JobPool(const JobPool&) = delete;
  JobPool& operator=(const JobPool&) = delete;

  // Runs every job concurrently (up to threads + 1 at a time; jobs[0] in
  // the calling thread) and returns once all are done: the first failure
  // in `jobs`' order, else Ok.
  Status Run(const std::vector<Job>& jobs);

 private:
  struct Round {
    const std::vector<Job>* jobs = nullptr;
    std::vector<Status> results;
    size_t next = 0;  // next job to start
    size_t done = 0;  // jobs finished
  };
  void Loop();
  // Runs jobs of `round_` while some are not started; `lock` holds mu_.
  void Work(std::unique_lock<std::mutex>& lock);

  std::mutex run_mu_;  // one Run() at a time
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  Round* round_ = nullptr;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// Writes one pack file and its version 2 index into a pack directory, as
// temporary files first. Usage: Create(), Add*() objects, Seal() (writes
// the trailer and the index), Sync() (fdatasyncs both files), Publish()
// (renames the .pack, then the .idx, into place; the caller fsyncs the
// directory); Finish() is Seal() + Sync(). Destroying a writer that was not
// published removes its temporary files. Objects added twice (same id) are
// stored once. Not thread-safe (one writer may be handed from one thread to
// another).
//
// Cost: the pack's bytes are kept in memory up to kBufferLimit and written
// with one write() at Seal(), hashed once for the trailer; deflate streams
// are reused for every object (zlib's deflateInit allocates and clears
// ~270 KiB per call, deflateReset clears a hash table of up to 64 KiB: small
// objects use small streams, see PackObject); data that looks
// incompressible is stored, the rest deflated at level 1.
// Beyond kBufferLimit (pack merges) the bytes go to the file as they come
// and Seal() reads them back for the checksum.
class PackWriter {
 public:
  // Creates the temporary files, named "tmp_sealpost_pack_*" /
  // "tmp_sealpost_idx_*" in `pack_dir` (an interrupted write leaves only
  // such files; the destructor removes them unless published).
  static Result<std::unique_ptr<PackWriter>> Create(const std::string& pack_dir);
  ~PackWriter();
  PackWriter(const PackWriter&) = delete;
  PackWriter& operator=(const PackWriter&) = delete;

  // Adds a whole (non-delta) object (made as PackObject does); returns its id.
  Result<git_oid> AddObject(git_object_t type, std::string_view data);
  // Adds an object made by PackObject() (stored once, like AddObject).
  Status AddPacked(const PackedObject& object);
  // Adds a whole object whose data is the file at `path`, read in pieces
  // and deflated into the pack as it is read (memory does not grow with
  // the file's size). Returns its id, size and SHA-256 (raw). The file is
  // read twice (ids first: an object already in this pack is not written
  // again); DataError if it changed in between.
  struct FileObject {
    git_oid id{};
    uint64_t size = 0;
    std::string sha256;
  };
  Result<FileObject> AddFileObject(git_object_t type, const std::string& path);
  // Adds an entry copied verbatim from another pack: `entry` is the entry's
  // header and deflated body, `crc` its CRC-32 as listed in that pack's
  // index. REQUIRES: the entry is not an OFS_DELTA (its base offset would
  // be wrong here).
  Status AddRawEntry(const git_oid& id, std::string_view entry, uint32_t crc);
  size_t object_count() const { return entries_.size(); }
  // Bytes of pack data written so far.
  uint64_t pack_bytes() const { return offset_; }

  // Writes the trailer and the index (no syncs). Returns "pack-<hex of
  // checksum>".
  Result<std::string> Seal();
  // fdatasyncs the pack and its index in parallel with `extra_fds` (e.g. a
  // ref lock file that must be durable at the same time) and `extra_jobs`
  // (directory fsyncs), on `pool` if given (SyncFilesTogether).
  // REQUIRES: Seal().
  Status Sync(const std::vector<int>& extra_fds = {}, JobPool* pool = nullptr,
              const std::vector<JobPool::Job>& extra_jobs = {});
  // Seal() then Sync({extra_fd}) (when extra_fd >= 0).
  Result<std::string> Finish(int extra_fd = -1);
  const std::string& name() const { return name_; }
  // Renames the .pack then the .idx into place. REQUIRES: Finish() succeeded.
  Status Publish();

 private:
  struct Entry {
    git_oid id;
    uint64_t offset;
    uint32_t crc;
  };
  static constexpr size_t kBufferLimit = 8u << 20;
  PackWriter(std::string dir, std::string pack_tmp, std::string idx_tmp, int pack_fd);
  Status Write(std::string_view bytes);
  Status Flush();

  std::string dir_, pack_tmp_, idx_tmp_, name_;
  int pack_fd_ = -1;
  int idx_fd_ = -1;
  uint64_t offset_ = 0;   // pack bytes so far (in the file and in buf_)
  uint64_t flushed_ = 0;  // of which in the file
  std::string buf_;       // pack bytes from flushed_ on
  z_stream zs_[2]{};  // AddFileObject's deflate streams, level 0 (stored) and level 1
  bool zs_ready_[2] = {false, false};
  std::vector<Entry> entries_;
  std::unordered_set<std::string> seen_;  // raw ids, for de-duplication
  bool sealed_ = false;
  bool published_ = false;
};

// fdatasync()s every fd in `fds` concurrently, and runs `extra_jobs` (e.g.
// directory fsyncs) at the same time, so several new files cost about one
// journal commit: on `pool` if given, else one new thread per sync beyond
// the first. IoError naming `what` if an fdatasync fails, else the first
// failed extra job's error.
Status SyncFilesTogether(const std::vector<int>& fds, std::string_view what,
                         JobPool* pool = nullptr,
                         const std::vector<JobPool::Job>& extra_jobs = {});

}  // namespace sealpost::storage

#endif  // SEALPOST_STORAGE_GIT_H_
