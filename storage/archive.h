// The append-only archive: a bare git repository written with libgit2, one
// branch (refs/heads/main, HEAD points to it) that only moves forward by
// compare-and-swap, every commit signed by the union's seal in git's X.509
// format, an RFC 6962 Merkle tree over the entries and a signed checkpoint
// in every commit. Layout and reasons: docs/decisions/0005-archive-layout.md.
//
// Tree of every commit on main:
//   FORMAT                       "sealpost-archive 1\n"
//   seal.pem                     the seal certificate in force
//   log/checkpoint               C2SP checkpoint body: origin, size, root
//   log/checkpoint.p7s           detached CMS by the seal over log/checkpoint
//   log/frontier                 the Merkle compact range of that size
//   entries/<hh>/<hh>/<hh>/<seq>/manifest.json + the entry's files
//
// Durability: Append() returns only after the commit holding the entry is
// in a pack file that was fsync'd (its temporary name and objects/pack too)
// and refs/heads/main.lock naming it is fsync'd with refs/heads: the renames
// into place follow without waiting for the disk and are made durable by
// the next commit's sync round, or when the writer goes idle; a crash in
// between is rolled forward by the next Open() (decision 0005). Outside
// readers of a crashed archive see the previous head until then. Concurrent Append() calls are queued and written
// by one writer thread as one commit ("group commit"), so many appends share
// one set of fsyncs. The writer builds and signs commit N+1 while a syncer
// thread makes commit N durable (a two-stage pipeline): N+1 is only made
// durable and visible after N, and fails if N fails.
//
// One writer: an Archive holds an exclusive flock on <dir>/sealpost.lock for
// its lifetime; a second Archive on the same directory (in this or another
// process) fails with kUnavailable. Because only the holder of that flock
// writes, a packed-refs.lock found at Open() is left over from a crash and
// is removed; a refs/heads/main.lock is rolled forward or dropped.
//
// Thread-safety: Append() and the readers may be called from any thread.
// The Signer is called only from the writer thread (and from Create/Open's
// caller before the writer starts), one call at a time.
#ifndef SEALPOST_STORAGE_ARCHIVE_H_
#define SEALPOST_STORAGE_ARCHIVE_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/openssl.h"
#include "base/status.h"
#include "crypto/checkpoint.h"
#include "crypto/merkle.h"
#include "crypto/signer.h"
#include "storage/entry.h"
#include "storage/git.h"

namespace sealpost::storage {

struct ArchiveOptions {
  // The log's name in checkpoints (e.g. "cd-baichay.vn/archive"). Open()
  // refuses an archive whose checkpoint names another origin.
  std::string origin;
  // Signs commits and checkpoints; borrowed, must outlive the Archive.
  crypto::Signer* signer = nullptr;
  crypto::KeyRef seal_key;
  // Most entries written in one commit.
  size_t max_batch = 512;
  // Tests only (the crash test): called by the syncer with a commit's hex
  // id once its sync round is done and before its renames and its
  // acknowledgement — a SIGKILL there leaves what a power loss right after
  // the acknowledgement leaves (decision 0005, "Durability").
  std::function<void(const std::string& commit)> before_renames_for_testing;
  // Tests only (the crash test, the pipeline's window): called by the
  // writer with a commit's hex id once it is built and signed and its pack
  // and index are complete in their temporary files, before it is handed
  // to the syncer — the previous commit may still be in its sync round or
  // not yet renamed (decision 0005, "Two-stage pipeline").
  std::function<void(const std::string& commit)> built_for_testing;
  // Tests only: called by the syncer with a commit's hex id before its sync
  // round (before it takes refs/heads/main.lock), i.e. after the previous
  // commit's renames and acknowledgement — between two rounds.
  std::function<void(const std::string& commit)> before_round_for_testing;
};

// The signed checkpoint of a commit, exactly as committed (log/checkpoint
// and log/checkpoint.p7s of its tree).
struct CommittedCheckpoint {
  uint64_t size = 0;
  crypto::merkle::Hash root{};
  std::string body;       // log/checkpoint
  std::string signature;  // log/checkpoint.p7s (detached CMS by the seal, DER)
};

// What an acknowledged Append() returns: with the manifest and the signed
// checkpoint the writer committed, so that a caller needs no reader to
// prove the entry (daemon/archive_evidence.h).
struct Appended {
  uint64_t seq = 0;         // 1-based, gapless; Merkle leaf index is seq - 1
  std::string commit;       // hex id of the commit that holds it
  crypto::merkle::Hash leaf{};  // LeafHash(manifest.json)
  uint64_t tree_size = 0;   // size of the checkpoint in that commit
  std::string manifest;     // manifest.json as committed
  // The checkpoint of that commit (shared by the entries of the commit).
  std::shared_ptr<const CommittedCheckpoint> checkpoint;
};

// Called once per durable commit, in commit order, with its entries'
// results (all filled), before any of them is acknowledged. Called from
// the archive's syncer thread (or Create/ChangeSeal's caller): it must be
// quick and must not call into the Archive.
using CommitListener = std::function<void(const std::vector<Appended>&)>;

class Archive {
 public:
  // Creates a new archive in `dir` (which must not exist, or be an empty
  // directory): a bare repository with HEAD -> refs/heads/main and a first
  // signed commit holding FORMAT, seal.pem, entry 1 (kind key-change, the
  // seal certificate as seal.pem, field change=initial-seal) and the
  // checkpoint of size 1. On failure nothing is left behind.
  // Errors: InvalidArgument (options), FailedPrecondition (dir not empty),
  // the Signer's errors, IoError.
  static Result<std::unique_ptr<Archive>> Create(const std::string& dir, ArchiveOptions options);

  // Opens an existing archive for appending; recovers from a crash (stale
  // ref locks). Errors: NotFound (no such directory), DataError (not a bare
  // git repository, not a sealpost archive, unknown format, corrupt
  // checkpoint/frontier), FailedPrecondition (archive of another origin, the
  // signer's certificate is not the archive's seal), Unavailable (another
  // writer holds the archive).
  static Result<std::unique_ptr<Archive>> Open(const std::string& dir, ArchiveOptions options);

  // Open()'s recovery alone, for a process that reads the archive before it
  // opens it for writing (the daemon's start-up pass): takes the writer's
  // flock, rolls forward what a crash left (packs, an intent: decision 0005,
  // "Recovery at open") so that readers see every acknowledged append, and
  // releases the lock. No signer needed; nothing else is checked. Ok if
  // `dir` is not a repository yet. Unavailable if another writer holds it.
  static Status Recover(const std::string& dir);

  // Waits for queued appends to finish, then stops the writer.
  ~Archive();
  Archive(const Archive&) = delete;
  Archive& operator=(const Archive&) = delete;

  // Appends one entry and returns once it is durable. Thread-safe; calls
  // made at the same time are grouped into one commit.
  // Errors: InvalidArgument (ValidateEntry, refers_to beyond the log),
  // FailedPrecondition (the branch was moved by someone else: the archive
  // then refuses further appends until reopened), the Signer's errors,
  // IoError / Internal from libgit2. On error the entry is not in the log.
  Result<Appended> Append(EntryInput entry);

  // Appends several entries and returns once all are durable, in order.
  // They are queued together, so the writer puts up to max_batch of them in
  // one commit (bulk imports; the benchmark's fast fill). Each result is
  // that entry's outcome, as Append() would have returned it.
  std::vector<Result<Appended>> AppendMany(std::vector<EntryInput> entries);

  // Where the writer's time went since the archive was opened (for
  // benchmarks and metrics). Nanoseconds, summed over commits.
  struct Stats {
    uint64_t commits = 0;
    uint64_t entries = 0;
    uint64_t build_ns = 0;    // blobs, manifests, trees, commit, pack bytes
    uint64_t sign_ns = 0;     // checkpoint and commit signatures
    uint64_t sync_ns = 0;     // the sync round (pack, idx, ref lock, both directories) and renames
    uint64_t idle_syncs = 0;  // directory syncs when the writer went idle (renames made durable)
    // CPU time of the writer in build and sign (wall-clock above includes
    // waiting for a core on a loaded machine; these do not).
    uint64_t build_cpu_ns = 0;
    uint64_t sign_cpu_ns = 0;
    uint64_t compact_ns = 0;  // merging packs
    uint64_t merges = 0;
    // The writer's waits (wall-clock): for appends to be queued (an empty
    // queue, and gathering), and, with a commit built, for the syncer to
    // take it (the previous commit still in its round: the two stages
    // overlapped by that much less than they could).
    uint64_t wait_appends_ns = 0;
    uint64_t wait_syncer_ns = 0;
  };
  Stats stats() const;

  // Changes the union's seal (docs/decisions/0005-archive-layout.md, "Seal
  // changes"): appends a key-change entry — fields change=rotate (a new key)
  // or change=renew (a new certificate for the same key), seal_subject,
  // seal_serial; files seal.pem (the new certificate) and seal.pem.p7s (one
  // detached CMS over seal.pem with two SignerInfos: the seal in force, then
  // the new one) — in a commit of its own whose root seal.pem is the new
  // certificate and whose checkpoint and commit signature are made by the
  // new seal. From then on the archive signs with `new_signer`/`new_key`,
  // and Open() must be given them. Appends queued meanwhile are written
  // before or after the change, each under the seal in force for it.
  // `new_signer` is borrowed and must outlive the Archive.
  // Errors: InvalidArgument (no signer, or its certificate is the seal in
  // force), the Signers' errors (e.g. a certificate unusable for signing),
  // FailedPrecondition / IoError as for Append. On error the seal in force
  // is unchanged and nothing was written.
  Result<Appended> ChangeSeal(crypto::Signer* new_signer, crypto::KeyRef new_key);

  // The seal certificate in force (the root seal.pem of the head).
  X509Ptr seal_certificate() const;

  // The state after the last acknowledged append.
  uint64_t size() const;
  crypto::Checkpoint checkpoint() const;
  // The head's signed checkpoint, exact bytes (never null once open).
  std::shared_ptr<const CommittedCheckpoint> signed_checkpoint() const;
  // Sets (an empty function: removes) the listener told of every commit
  // made durable from now on. One listener; when this returns, the one
  // replaced is no longer running.
  void SetCommitListener(CommitListener listener);
  std::string head() const;  // hex id of refs/heads/main
  uint64_t commits_written() const { return commits_written_.load(); }

  // manifest.json of entry `seq` or another of its files, as committed.
  // NotFound if there is no such entry or file.
  Result<std::string> ReadEntryFile(uint64_t seq, const std::string& name);

  // The Merkle leaf hashes of entries 1..size(), from their manifests.
  Result<std::vector<crypto::merkle::Hash>> ReadLeafHashes();

  // Inclusion proof of entry `seq` in the tree of the first `tree_size`
  // entries (RFC 6962 PATH). InvalidArgument unless 1 <= seq <= tree_size
  // <= size(). Cost: reads tree_size manifests.
  Result<std::vector<crypto::merkle::Hash>> InclusionProof(uint64_t seq, uint64_t tree_size);

  // Consistency proof from `old_size` to `new_size` (RFC 6962 PROOF).
  // InvalidArgument unless old_size <= new_size <= size().
  Result<std::vector<crypto::merkle::Hash>> ConsistencyProof(uint64_t old_size, uint64_t new_size);

  const std::string& dir() const { return dir_; }

 private:
  // An entry's files made ready for the pack in the appender's thread
  // (SHA-256, object id, deflated pack entry; the manifest up to its seq),
  // so that the single writer only copies them in. Files given as paths,
  // and files over kPrepareLimit, are left to the writer (objects[i].entry
  // empty).
  struct Prepared {
    std::vector<std::string> sha256;      // per entry.files[i], raw; empty: not made
    std::vector<PackedObject> objects;    // per entry.files[i]
    std::string manifest_prefix;          // ManifestPrefix(entry, origin, sha256)
  };
  static constexpr size_t kPrepareLimit = 1u << 20;
  static Status PrepareEntry(const EntryInput& entry, std::string_view origin, Prepared* out);
  struct Pending {
    EntryInput input;
    std::promise<Result<Appended>> done;
    Prepared prepared;
  };
  struct RootFile {
    std::string path;
    std::string data;
  };

  Archive(std::string dir, ArchiveOptions options, int lock_fd);

  static Result<std::unique_ptr<Archive>> OpenLocked(const std::string& dir,
                                                     ArchiveOptions options, int lock_fd);
  Status SetUpOdb();
  Status LoadHead();
  void StartWriter();  // and the syncer and the merger
  void MergerLoop();
  void WriterLoop();
  void SyncerLoop();

  struct PackInfo {
    std::string name;  // "pack-<hex>"
    uint32_t objects = 0;
  };
  // The trees on the path to the newest entry, kept in memory so that an
  // append builds its new trees without reading any: each map is one tree
  // (name -> item). `last` is the newest seq (0: none); shard1..3 are the
  // trees entries/<a>, entries/<a>/<b>, entries/<a>/<b>/<c> of its path.
  struct Trees {
    std::map<std::string, TreeItem> root, log, entries, shard1, shard2, shard3;
    uint64_t last = 0;
    bool dirty1 = false, dirty2 = false, dirty3 = false;
  };
  // What the next commit is built on: the last commit built (which may
  // still be on its way to disk) or, after a failure, the durable head.
  struct Tip {
    bool has_head = false;
    git_oid head{};
    crypto::merkle::CompactRange frontier;
    std::shared_ptr<const Trees> trees;
  };
  // A commit built and signed, its pack written (not yet synced): what the
  // syncer needs to make it durable, move the branch and acknowledge.
  struct Built {
    std::unique_ptr<PackWriter> pack;
    git_oid commit{};
    bool has_parent = false;
    git_oid parent{};
    std::shared_ptr<const Trees> trees;  // after this commit
    crypto::merkle::CompactRange frontier;
    crypto::Checkpoint checkpoint;
    std::shared_ptr<const CommittedCheckpoint> signed_checkpoint;
    std::vector<Appended> results;
    std::vector<Pending*> waiters;  // acknowledged once it is durable
    uint64_t build_ns = 0, sign_ns = 0, build_cpu_ns = 0, sign_cpu_ns = 0;
  };
  // Builds `batch` (and `root_files`) as one signed commit on top of `tip`
  // and writes its pack (trailer and index included, nothing synced).
  // Changes no member. REQUIRES: writer_mu_ held.
  // `prepared`: empty, or one per entry of `batch` (nullptr: not prepared).
  Result<std::unique_ptr<Built>> BuildCommit(const std::vector<const EntryInput*>& batch,
                                             const std::vector<RootFile>& root_files,
                                             const Tip& tip,
                                             const std::vector<const Prepared*>& prepared = {});
  // Makes `b` durable and moves the branch by CAS (one sync round, then
  // the renames, not synced: decision 0005, "Durability"), then updates the
  // committed state and the stats and fills b.results. On failure the branch
  // is where it was. Called by the syncer, or with the pipeline idle
  // (Create, ChangeSeal). The renames become durable with the next commit's
  // round or SyncDirs(); until then the durable refs/heads/main.lock is the
  // record Open() rolls forward from (RollForwardIntent).
  Status PublishCommit(Built& b);
  // BuildCommit + PublishCommit in the calling thread, for Create and
  // ChangeSeal. REQUIRES: writer_mu_ held, the pipeline idle (slot_ empty).
  Status WriteNow(const std::vector<const EntryInput*>& batch,
                  const std::vector<RootFile>& root_files, std::vector<Appended>* results);
  // tip_ = the durable state. REQUIRES: writer_mu_ and pipe_mu_ held.
  void ResetTipToDurable();
  // Waits until the syncer is idle; if the last commit it handled failed,
  // puts the tip back on the durable head. REQUIRES: writer_mu_ held.
  void DrainPipeline();
  // Reads the in-memory trees from `tree` (the head's) for `size` entries.
  Status LoadTrees(git_tree* tree, uint64_t size);
  // Takes refs/heads/main.lock (git's protocol), checks that the branch
  // still names `expected` (absent when !has_expected), writes `next` into
  // the lock file. Returns the lock's fd; the caller fsyncs it, renames it
  // into place (CommitBranch) or removes it (AbortBranch).
  Result<int> LockBranch(bool has_expected, const git_oid& expected, const git_oid& next);
  // Closes the lock file and renames it over the branch (no sync).
  Status CommitBranch(int lock_fd);
  // fsync of objects/pack and refs/heads, in parallel: makes the renames
  // of the last commits durable.
  Status SyncDirs();
  // The fsyncs of refs/heads and objects/pack, as jobs of a sync round.
  std::vector<JobPool::Job> DirSyncJobs();
  // At open, after RollForwardPacks and before ScanPacks removes temporary
  // files: a refs/heads/main.lock left by a crash is the durable intent of
  // a commit whose sync round may have finished (decision 0005, "Recovery
  // at open"). If its commit is readable (in place, or in a complete
  // temporary pack/index pair) and its parent is the branch's value (CAS),
  // the pack is made durable and renamed into place and the branch moved to
  // it; otherwise the lock is dropped and the branch not touched.
  // REQUIRES: the archive lock.
  Status RollForwardIntent();
  // The branch's value (hex), from the loose ref or packed-refs; nullopt if
  // it does not exist.
  Result<std::optional<std::string>> ReadBranch();
  // At open, before ScanPacks removes temporary files: if the branch names
  // a commit that is not in the object database, renames the complete
  // temporary pack/index pair (checksums verified) whose index lists that
  // commit into place — not another complete pair, e.g. the next commit's,
  // built while that one synced (decision 0005, "The pipeline's window").
  // REQUIRES: the archive lock.
  Status RollForwardPacks();
  void AbortBranch(int lock_fd);
  // Lists objects/pack into packs_, removing what an interrupted write left
  // (temporary files, a .pack without .idx). REQUIRES: the archive lock.
  Status ScanPacks();
  // When there are more than kMaxPacks packs, merges the kPacksPerMerge
  // smallest into one, removes them and reopens the repository (under
  // repo_mu_). Called by the merger thread only; REQUIRES: repo_mu_ not held.
  Status CompactPacks();
  Result<std::string> SignCommitBuffer(std::string_view buffer);
  Result<std::string> ReadAt(git_tree* tree, const std::string& path);
  // Leaf hashes of entries 1..count from the head tree.
  Result<std::vector<crypto::merkle::Hash>> ReadLeaves(uint64_t count);
  // The tree of the head commit. REQUIRES: repo_mu_ held.
  Result<GitTreePtr> HeadTree();

  const std::string dir_;
  ArchiveOptions options_;  // signer/seal_key change only in ChangeSeal, under writer_mu_
  int lock_fd_ = -1;
  X509Ptr seal_;  // written under writer_mu_ and state_mu_

  // Held by the writer while it builds a commit and hands it to the syncer,
  // and by ChangeSeal: one commit is built at a time, on tip_.
  std::mutex writer_mu_;
  Tip tip_;  // guarded by writer_mu_
  // The pack writer (its two temporary files created) of the next commit,
  // made ahead by the writer while the syncer makes a commit durable, so
  // that creating files is not on a commit's path. Guarded by writer_mu_.
  std::unique_ptr<PackWriter> spare_pack_;
  // Hand-off between the writer and the syncer (guarded by pipe_mu_):
  // slot_ is the commit being made durable (empty: the syncer is idle);
  // pipe_failed_ is the error of the last commit the syncer handled, when it
  // failed (commits built on it must fail too and the tip go back to the
  // durable head); durable_trees_ are the trees of the durable head.
  std::mutex pipe_mu_;
  std::condition_variable pipe_cv_;
  std::unique_ptr<Built> slot_;
  Status pipe_failed_;
  std::shared_ptr<const Trees> durable_trees_;
  bool syncer_stopping_ = false;
  std::thread syncer_;
  // Threads for the syncs of a round (PublishCommit, SyncDirs), made by
  // StartWriter, destroyed after the syncer stopped; until then (Create,
  // Open) a round makes its threads.
  std::unique_ptr<JobPool> sync_pool_;
  // One thread that builds a commit's entries (objects, trees) while the
  // writer signs its checkpoint (BuildCommit); made by StartWriter, until
  // then the two run one after the other.
  std::unique_ptr<JobPool> build_pool_;

  // Repository and its objects: used by one thread at a time.
  std::mutex repo_mu_;
  GitRepositoryPtr repo_;
  GitOdbPtr odb_;
  // Packs of the archive (guarded by packs_mu_). The writer adds one per
  // commit; the merger thread merges the smallest when there are too many.
  std::mutex packs_mu_;
  std::condition_variable packs_cv_;
  std::vector<PackInfo> packs_;
  bool merger_stopping_ = false;
  std::thread merger_;

  // Committed state (guarded by state_mu_; written only by the writer).
  mutable std::mutex state_mu_;
  bool has_head_ = false;
  git_oid head_{};
  crypto::merkle::CompactRange frontier_;
  crypto::Checkpoint checkpoint_;
  std::shared_ptr<const CommittedCheckpoint> signed_checkpoint_;
  Status broken_;  // non-OK: appends are refused with this status
  // Told of each durable commit (PublishCommit); guarded by listener_mu_.
  std::mutex listener_mu_;
  CommitListener listener_;

  // Group commit queue.
  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<Pending*> queue_;
  bool stopping_ = false;
  // For gathering (WriterLoop, under queue_mu_): appends in the commit the
  // syncer holds (0: none); after the last acknowledgement, the appends
  // then queued plus those acknowledged, and when.
  std::atomic<size_t> in_flight_{0};
  size_t gather_target_ = 0;
  std::chrono::steady_clock::time_point last_ack_{};
  static constexpr std::chrono::microseconds kGatherWait{2000};
  // The syncer makes the last renames durable (SyncDirs) once no commit
  // came for this long after an acknowledgement: an idle archive does not
  // rely on the roll-forward.
  static constexpr std::chrono::milliseconds kIdleSync{20};
  std::thread writer_;
  std::atomic<uint64_t> commits_written_{0};
  mutable std::mutex stats_mu_;
  Stats stats_;  // guarded by stats_mu_
};

// Helpers shared with the audit and tests.

// "-----BEGIN SIGNED MESSAGE-----\n<base64, 64 columns>\n-----END SIGNED MESSAGE-----"
// (no final newline: libgit2 adds the header's line end).
std::string ArmorSignedMessage(std::string_view der);

// Serialises / parses log/frontier: "<size>\n" then one lower-case hex
// subtree root per line, largest first. DataError naming `source`.
std::string SerializeFrontier(const crypto::merkle::CompactRange& range);
Result<crypto::merkle::CompactRange> ParseFrontier(std::string_view text, std::string_view source);

inline constexpr std::string_view kFormatFileContent = "sealpost-archive 1\n";

// Packs kept before some are merged (one pack is written per commit), and
// the most merged at a time. Merges run in a thread of their own beside the
// writer, so the count can pass kMaxPacks + 1 briefly while one runs; an
// Archive finishes the merges due before it closes, so a closed archive has
// at most kMaxPacks + 1.
inline constexpr size_t kMaxPacks = 32;
inline constexpr size_t kPacksPerMerge = 16;
// Which packs a merge takes (geometric, decision 0005 "Packs"). In the
// packs sorted by object count, a run is a pack and each next one while it
// holds at most kMergeGrowth times the objects of those before it in the
// run (at most kPacksPerMerge). The merge takes the first run (from the
// smallest) of at least kMinGoodMerge packs, else the longest run, else the
// two smallest. A pack taken in a run ends in one at least 1.5 times its
// size, so each object is rewritten O(log n) times and a merge does not
// copy a pack much larger than those it absorbs: the cost per commit does
// not grow with the archive (before: the 16 smallest, which after a while
// always included the previous merge's pack — the copy grew linearly).
inline constexpr uint64_t kMergeGrowth = 2;
inline constexpr size_t kMinGoodMerge = 4;
struct PackRun {
  size_t first = 0;
  size_t count = 0;  // 0: no merge due
};
// `objects`: the packs' object counts, ascending. No merge while there are
// at most kMaxPacks.
PackRun PacksToMerge(const std::vector<uint64_t>& objects);

// The object ids listed in a version 2 pack index (.idx). DataError if the
// file is not one.
Result<std::vector<git_oid>> ReadPackIndex(const std::string& path);
// Only the object count of a version 2 pack index (reads 1,032 bytes).
Result<uint32_t> PackIndexObjectCount(const std::string& path);

}  // namespace sealpost::storage

#endif  // SEALPOST_STORAGE_ARCHIVE_H_
