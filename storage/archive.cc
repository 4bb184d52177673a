#include "storage/archive.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <algorithm>
#include <filesystem>
#include <set>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2/sys/mempack.h>
#include <git2/sys/odb_backend.h>
#include <openssl/pem.h>

#include "base/encoding.h"
#include "base/file.h"
#include "base/log.h"
#include "crypto/cades_sign.h"
#include "crypto/certs.h"
#include "crypto/digest.h"

namespace sealpost::storage {
namespace {

namespace fs = std::filesystem;
namespace merkle = crypto::merkle;

constexpr const char* kBranch = "refs/heads/main";
constexpr const char* kLockFile = "sealpost.lock";

std::string CertPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return {};
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

Status FsyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IoError(path + ": cannot open for fsync: " + std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::IoError(path + ": fsync failed: " + std::strerror(err));
  return Status::Ok();
}

// Takes the archive's writer lock (see archive.h). Returns the fd.
Result<int> LockArchive(const std::string& dir) {
  std::string path = dir + "/" + kLockFile;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Err(Status::IoError(path + ": cannot open the archive lock: " + std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return Err(Status::Unavailable(dir + ": the archive is in use by another writer"));
    }
    return Err(Status::IoError(path + ": cannot lock: " + std::strerror(err)));
  }
  return fd;
}

// Removes ref lock files left by a crash. Safe only while we hold the
// archive lock: no other sealpost writer can be half-way through an update.
Status RemoveStaleLocks(const std::string& dir) {
  for (const char* name : {"refs/heads/main.lock", "packed-refs.lock", "HEAD.lock"}) {
    std::string path = dir + "/" + name;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) continue;
    Log(LogLevel::kWarn, "removing a stale lock left by an interrupted write",
        "archive=" + dir + " lock=" + name);
    if (::unlink(path.c_str()) != 0) {
      return Status::IoError(path + ": cannot remove stale lock: " + std::strerror(errno));
    }
  }
  return FsyncPath(dir + "/refs/heads");
}

}  // namespace

std::string ArmorSignedMessage(std::string_view der) {
  std::string b64 = Base64Encode(der);
  std::string out = "-----BEGIN SIGNED MESSAGE-----\n";
  for (size_t i = 0; i < b64.size(); i += 64) out += b64.substr(i, 64) + "\n";
  out += "-----END SIGNED MESSAGE-----";
  return out;
}

std::string SerializeFrontier(const merkle::CompactRange& range) {
  std::string out = std::to_string(range.size()) + "\n";
  for (const merkle::Hash& h : range.subtree_roots()) out += merkle::ToHex(h) + "\n";
  return out;
}

Result<merkle::CompactRange> ParseFrontier(std::string_view text, std::string_view source) {
  auto bad = [&](std::string what) {
    return Err(Status::DataError(std::string(source) + ": " + what));
  };
  if (text.empty() || text.back() != '\n') return bad("frontier does not end in a newline");
  size_t nl = text.find('\n');
  std::string_view size_line = text.substr(0, nl);
  if (size_line.empty() || size_line.size() > 20 || (size_line.size() > 1 && size_line[0] == '0')) {
    return bad("frontier size is not a decimal number");
  }
  uint64_t size = 0;
  for (char c : size_line) {
    if (c < '0' || c > '9') return bad("frontier size is not a decimal number");
    uint64_t next = size * 10 + static_cast<uint64_t>(c - '0');
    if (next / 10 != size) return bad("frontier size is out of range");
    size = next;
  }
  std::vector<merkle::Hash> roots;
  for (size_t pos = nl + 1; pos < text.size();) {
    size_t end = text.find('\n', pos);
    auto bytes = HexDecode(text.substr(pos, end - pos));
    if (!bytes.has_value() || bytes->size() != merkle::kHashSize ||
        HexEncode(*bytes) != text.substr(pos, end - pos)) {
      return bad("frontier line " + std::to_string(roots.size() + 2) +
                 " is not a lower-case hex SHA-256");
    }
    roots.push_back(*merkle::HashFromBytes(*bytes, source));
    pos = end + 1;
  }
  auto range = merkle::CompactRange::FromParts(size, std::move(roots));
  if (!range.has_value()) return Err(range.error().WithContext(source));
  return range;
}

Archive::Archive(std::string dir, ArchiveOptions options, int lock_fd)
    : dir_(std::move(dir)), options_(std::move(options)), lock_fd_(lock_fd) {}

Archive::~Archive() {
  if (writer_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      stopping_ = true;
    }
    queue_cv_.notify_all();
    writer_.join();
  }
  // Objects first, then the lock that makes us the only writer.
  {
    std::lock_guard<std::mutex> lock(repo_mu_);
    odb_.reset();
    repo_.reset();
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Result<std::unique_ptr<Archive>> Archive::Create(const std::string& dir, ArchiveOptions options) {
  if (options.signer == nullptr) return Err(Status::InvalidArgument("archive needs a signer"));
  SP_RETURN_IF_ERROR(EnsureLibgit2());
  auto probe = crypto::SerializeCheckpoint({options.origin, 0, merkle::EmptyRoot(), {}});
  if (!probe.has_value()) return Err(probe.error().WithContext("archive origin"));

  std::error_code ec;
  bool created_dir = false;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec) || !fs::is_empty(dir, ec)) {
      return Err(Status::FailedPrecondition(dir + ": exists and is not an empty directory"));
    }
  } else {
    if (!fs::create_directories(dir, ec)) {
      return Err(Status::IoError(dir + ": cannot create directory: " + ec.message()));
    }
    created_dir = true;
  }
  // Leaves nothing behind if any step below fails.
  auto cleanup = [&](Status s) -> Result<std::unique_ptr<Archive>> {
    std::error_code ignored;
    if (created_dir) {
      fs::remove_all(dir, ignored);
    } else {
      for (const auto& e : fs::directory_iterator(dir, ignored)) fs::remove_all(e.path(), ignored);
    }
    return Err(std::move(s));
  };

  git_repository_init_options init = GIT_REPOSITORY_INIT_OPTIONS_INIT;
  init.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_NO_REINIT |
               GIT_REPOSITORY_INIT_MKPATH;
  init.initial_head = "main";
  init.description = "sealpost archive";
  git_repository* raw = nullptr;
  if (git_repository_init_ext(&raw, dir.c_str(), &init) < 0) {
    return cleanup(GitStatus(Code::kIoError, dir + ": cannot create a git repository"));
  }
  GitRepositoryPtr repo(raw);
  repo.reset();

  auto lock_fd = LockArchive(dir);
  if (!lock_fd.has_value()) return cleanup(lock_fd.error());
  std::unique_ptr<Archive> archive(new Archive(dir, std::move(options), *lock_fd));
  if (git_repository_open_ext(&raw, dir.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) < 0) {
    return cleanup(GitStatus(Code::kIoError, dir + ": cannot open the new repository"));
  }
  archive->repo_.reset(raw);
  if (Status s = archive->SetUpOdb(); !s.ok()) return cleanup(s);

  auto cert = archive->options_.signer->Certificate(archive->options_.seal_key);
  if (!cert.has_value()) return cleanup(cert.error().WithContext("seal certificate"));
  archive->seal_ = std::move(*cert);
  std::string pem = CertPem(archive->seal_.get());
  archive->checkpoint_ = {archive->options_.origin, 0, merkle::EmptyRoot(), {}};

  EntryInput first;
  first.kind = EntryKind::kKeyChange;
  first.fields["change"] = "initial-seal";
  first.fields["seal_subject"] = crypto::NameToUtf8(X509_get_subject_name(archive->seal_.get()));
  first.fields["seal_serial"] = crypto::SerialHex(archive->seal_.get());
  first.files.push_back({"seal.pem", pem});
  std::vector<Appended> results;
  {
    std::lock_guard<std::mutex> lock(archive->repo_mu_);
    Status s = archive->WriteBatch({&first},
                                   {{"FORMAT", std::string(kFormatFileContent)}, {"seal.pem", pem}},
                                   &results);
    if (!s.ok()) {
      archive->odb_.reset();
      archive->repo_.reset();
      return cleanup(s.WithContext(dir));
    }
  }
  archive->StartWriter();
  return archive;
}

Result<std::unique_ptr<Archive>> Archive::Open(const std::string& dir, ArchiveOptions options) {
  if (options.signer == nullptr) return Err(Status::InvalidArgument("archive needs a signer"));
  SP_RETURN_IF_ERROR(EnsureLibgit2());
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Err(Status::NotFound(dir + ": no such directory"));
  // Check it is a repository before creating our lock file in it.
  git_repository* raw = nullptr;
  if (git_repository_open_ext(&raw, dir.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) < 0) {
    return Err(GitStatus(Code::kDataError, dir + ": not a git repository"));
  }
  GitRepositoryPtr probe(raw);
  if (!git_repository_is_bare(probe.get())) {
    return Err(Status::DataError(dir + ": not a bare repository (an archive is bare)"));
  }
  probe.reset();
  auto lock_fd = LockArchive(dir);
  if (!lock_fd.has_value()) return Err(lock_fd.error());
  return OpenLocked(dir, std::move(options), *lock_fd);
}

Result<std::unique_ptr<Archive>> Archive::OpenLocked(const std::string& dir,
                                                     ArchiveOptions options, int lock_fd) {
  std::unique_ptr<Archive> archive(new Archive(dir, std::move(options), lock_fd));
  SP_RETURN_IF_ERROR(RemoveStaleLocks(dir));
  git_repository* raw = nullptr;
  if (git_repository_open_ext(&raw, dir.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) < 0) {
    return Err(GitStatus(Code::kDataError, dir + ": not a git repository"));
  }
  archive->repo_.reset(raw);
  SP_RETURN_IF_ERROR(archive->SetUpOdb());
  SP_RETURN_IF_ERROR(archive->ScanPacks());
  {
    std::lock_guard<std::mutex> lock(archive->repo_mu_);
    SP_RETURN_IF_ERROR(archive->LoadHead());
  }
  archive->StartWriter();
  return archive;
}

Status Archive::SetUpOdb() {
  git_odb* odb = nullptr;
  if (git_repository_odb(&odb, repo_.get()) < 0) {
    return GitStatus(Code::kInternal, dir_ + ": cannot open the object database");
  }
  odb_.reset(odb);
  // New objects go to memory first and reach the disk as one pack per
  // commit: one fsync'd file instead of one fsync per loose object.
  git_odb_backend* mempack = nullptr;
  if (git_mempack_new(&mempack) < 0) return GitStatus(Code::kInternal, "cannot create mempack");
  if (git_odb_add_backend(odb_.get(), mempack, 1000) < 0) {
    mempack->free(mempack);
    return GitStatus(Code::kInternal, "cannot add mempack backend");
  }
  mempack_ = mempack;
  return Status::Ok();
}

Result<std::string> Archive::ReadAt(git_tree* tree, const std::string& path) {
  git_tree_entry* raw_entry = nullptr;
  if (git_tree_entry_bypath(&raw_entry, tree, path.c_str()) < 0) {
    git_error_clear();
    return Err(Status::NotFound(dir_ + ": " + path + " is missing"));
  }
  GitTreeEntryPtr entry(raw_entry);
  if (git_tree_entry_type(entry.get()) != GIT_OBJECT_BLOB) {
    return Err(Status::DataError(dir_ + ": " + path + " is not a file"));
  }
  git_blob* raw_blob = nullptr;
  if (git_blob_lookup(&raw_blob, repo_.get(), git_tree_entry_id(entry.get())) < 0) {
    return Err(GitStatus(Code::kDataError, dir_ + ": cannot read " + path));
  }
  GitBlobPtr blob(raw_blob);
  return std::string(static_cast<const char*>(git_blob_rawcontent(blob.get())),
                     static_cast<size_t>(git_blob_rawsize(blob.get())));
}

Status Archive::LoadHead() {
  git_reference* raw_head = nullptr;
  if (git_reference_lookup(&raw_head, repo_.get(), "HEAD") < 0) {
    return GitStatus(Code::kDataError, dir_ + ": no HEAD");
  }
  GitReferencePtr head_ref(raw_head);
  if (git_reference_type(head_ref.get()) != GIT_REFERENCE_SYMBOLIC ||
      std::string_view(git_reference_symbolic_target(head_ref.get())) != kBranch) {
    return Status::DataError(dir_ + ": HEAD does not point to " + std::string(kBranch));
  }
  git_oid oid;
  int rc = git_reference_name_to_id(&oid, repo_.get(), kBranch);
  if (rc == GIT_ENOTFOUND) {
    return Status::DataError(dir_ + ": not a sealpost archive (" + kBranch + " does not exist)");
  }
  if (rc < 0) return GitStatus(Code::kDataError, dir_ + ": cannot resolve " + kBranch);
  git_commit* raw_commit = nullptr;
  if (git_commit_lookup(&raw_commit, repo_.get(), &oid) < 0) {
    return GitStatus(Code::kDataError, dir_ + ": cannot read the head commit (corrupt object?)");
  }
  GitCommitPtr commit(raw_commit);
  git_tree* raw_tree = nullptr;
  if (git_commit_tree(&raw_tree, commit.get()) < 0) {
    return GitStatus(Code::kDataError, dir_ + ": cannot read the head tree (corrupt object?)");
  }
  GitTreePtr tree(raw_tree);

  auto format = ReadAt(tree.get(), "FORMAT");
  if (!format.has_value()) {
    return Status::DataError(dir_ + ": not a sealpost archive (no FORMAT file)");
  }
  if (*format != kFormatFileContent) {
    return Status::DataError(dir_ + ": unknown archive format \"" +
                             format->substr(0, format->find('\n')) + "\"");
  }
  auto body = ReadAt(tree.get(), "log/checkpoint");
  if (!body.has_value()) return Status::DataError(body.error().message());
  auto cp = crypto::ParseCheckpoint(*body, dir_ + ":log/checkpoint");
  if (!cp.has_value()) return cp.error();
  if (cp->origin != options_.origin) {
    return Status::FailedPrecondition(dir_ + ": the archive belongs to \"" + cp->origin +
                                      "\", not to \"" + options_.origin + "\"");
  }
  auto frontier_text = ReadAt(tree.get(), "log/frontier");
  if (!frontier_text.has_value()) return Status::DataError(frontier_text.error().message());
  auto frontier = ParseFrontier(*frontier_text, dir_ + ":log/frontier");
  if (!frontier.has_value()) return frontier.error();
  if (frontier->size() != cp->size || frontier->Root() != cp->root) {
    return Status::DataError(dir_ + ": log/frontier does not match log/checkpoint");
  }
  auto seal_pem = ReadAt(tree.get(), "seal.pem");
  if (!seal_pem.has_value()) return Status::DataError(seal_pem.error().message());
  auto seals = crypto::ParseCertificates(*seal_pem, dir_ + ":seal.pem");
  if (!seals.has_value()) return seals.error();
  X509Ptr seal(X509_dup(sk_X509_value(seals->get(), 0)));
  auto sig = ReadAt(tree.get(), "log/checkpoint.p7s");
  if (!sig.has_value()) return Status::DataError(sig.error().message());
  if (Status s = crypto::VerifyCheckpointSignature(*body, *sig, seal.get(),
                                                   dir_ + ":log/checkpoint.p7s");
      !s.ok()) {
    return s;
  }
  auto mine = options_.signer->Certificate(options_.seal_key);
  if (!mine.has_value()) return mine.error().WithContext("seal certificate");
  if (X509_cmp(mine->get(), seal.get()) != 0) {
    return Status::FailedPrecondition(dir_ + ": the key given is not the archive's seal (" +
                                      crypto::DisplayName(seal.get()) + ")");
  }
  std::lock_guard<std::mutex> lock(state_mu_);
  seal_ = std::move(seal);
  has_head_ = true;
  head_ = oid;
  frontier_ = std::move(*frontier);
  checkpoint_ = std::move(*cp);
  return Status::Ok();
}

void Archive::StartWriter() { writer_ = std::thread([this] { WriterLoop(); }); }

void Archive::WriterLoop() {
  for (;;) {
    std::vector<Pending*> batch;
    {
      std::unique_lock<std::mutex> lock(queue_mu_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      while (!queue_.empty() && batch.size() < options_.max_batch) {
        batch.push_back(queue_.front());
        queue_.pop_front();
      }
    }
    std::vector<const EntryInput*> inputs;
    for (Pending* p : batch) inputs.push_back(&p->input);
    std::vector<Appended> results;
    Status s;
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      s = broken_;
    }
    if (s.ok()) {
      std::lock_guard<std::mutex> lock(repo_mu_);
      s = WriteBatch(inputs, {}, &results);
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (s.ok()) {
        batch[i]->done.set_value(results[i]);
      } else {
        batch[i]->done.set_value(Err(s));
      }
    }
    // After the acknowledgements: merging packs is housekeeping, not part
    // of any append's durability.
    if (s.ok()) {
      std::lock_guard<std::mutex> lock(repo_mu_);
      if (Status c = CompactPacks(); !c.ok()) {
        Log(LogLevel::kWarn, "could not merge packs", "archive=" + dir_ + " error=\"" + c.message() + "\"");
      }
    }
  }
}

Result<Appended> Archive::Append(EntryInput entry) {
  SP_RETURN_IF_ERROR(ValidateEntry(entry));
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    if (!broken_.ok()) return Err(broken_);
    if (entry.refers_to > frontier_.size()) {
      return Err(Status::InvalidArgument("entry refers to #" + std::to_string(entry.refers_to) +
                                         ", beyond the last entry #" +
                                         std::to_string(frontier_.size())));
    }
  }
  Pending pending{std::move(entry), {}};
  std::future<Result<Appended>> done = pending.done.get_future();
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (stopping_) return Err(Status::Unavailable(dir_ + ": archive is closing"));
    queue_.push_back(&pending);
  }
  queue_cv_.notify_one();
  return done.get();
}

Result<std::string> Archive::SignCommitBuffer(std::string_view buffer) {
  auto alg = crypto::DigestAlgForKey(X509_get0_pubkey(seal_.get()));
  if (!alg.has_value()) return Err(alg.error());
  auto digest = crypto::DigestBytes(crypto::DigestAlgMd(*alg), buffer);
  if (!digest.has_value()) return Err(digest.error());
  auto der = crypto::BuildDetachedSignature(*options_.signer, options_.seal_key, seal_.get(), *alg,
                                            *digest, crypto::CadesSignOptions{});
  if (!der.has_value()) return Err(der.error().WithContext("commit signature"));
  return ArmorSignedMessage(*der);
}

Result<Archive::PackInfo> Archive::WritePackDurably(const std::vector<git_oid>& objects) {
  // Only the objects named: git_mempack_dump() would insert each commit
  // with its whole tree, i.e. the entire archive every time.
  git_packbuilder* raw_pb = nullptr;
  if (git_packbuilder_new(&raw_pb, repo_.get()) < 0) {
    return Err(GitStatus(Code::kInternal, dir_ + ": cannot start a pack"));
  }
  GitPackbuilderPtr pb(raw_pb);
  git_packbuilder_set_threads(pb.get(), 1);
  for (const git_oid& id : objects) {
    if (git_packbuilder_insert(pb.get(), &id, nullptr) < 0) {
      return Err(GitStatus(Code::kInternal, dir_ + ": cannot add an object to the pack"));
    }
  }
  GitBuf pack;
  if (git_packbuilder_write_buf(pack.get(), pb.get()) < 0) {
    return Err(GitStatus(Code::kInternal, dir_ + ": cannot build the pack of new objects"));
  }
  if (pack.view().size() < 32) return Err(Status::Internal(dir_ + ": pack is too short"));
  git_odb_writepack* raw = nullptr;
  if (git_odb_write_pack(&raw, odb_.get(), nullptr, nullptr) < 0) {
    return Err(GitStatus(Code::kIoError, dir_ + ": cannot start writing a pack"));
  }
  GitWritepackPtr writepack(raw);
  git_indexer_progress stats{};
  if (writepack->append(writepack.get(), pack.view().data(), pack.view().size(), &stats) < 0 ||
      writepack->commit(writepack.get(), &stats) < 0) {
    return Err(GitStatus(Code::kIoError, dir_ + ": cannot write a pack"));
  }
  // The indexer fsyncs the .pack, the .idx and their directory
  // (GIT_OPT_ENABLE_FSYNC_GITDIR; seen with strace). One more fsync of the
  // directory costs little and does not depend on that.
  if (Status s = FsyncPath(dir_ + "/objects/pack"); !s.ok()) return Err(s);
  // A pack is named after its trailing checksum.
  PackInfo info;
  info.name = "pack-" + HexEncode(pack.view().substr(pack.view().size() - GIT_OID_RAWSZ));
  info.objects = static_cast<uint32_t>(objects.size());
  return info;
}

Status Archive::ScanPacks() {
  packs_.clear();
  const std::string pack_dir = dir_ + "/objects/pack";
  std::error_code ec;
  std::set<std::string> idx, pack;
  for (const auto& e : fs::directory_iterator(pack_dir, ec)) {
    std::string name = e.path().filename().string();
    if (name.starts_with("pack-") && name.ends_with(".idx")) idx.insert(name.substr(0, name.size() - 4));
    else if (name.starts_with("pack-") && name.ends_with(".pack")) pack.insert(name.substr(0, name.size() - 5));
    else if (name.starts_with("pack_git2_") || name.ends_with(".lock")) {
      // Temporary files of a pack write that a crash interrupted.
      Log(LogLevel::kWarn, "removing a temporary pack file left by an interrupted write",
          "archive=" + dir_ + " file=" + name);
      fs::remove(e.path(), ec);
    }
  }
  if (ec) return Status::IoError(pack_dir + ": cannot list: " + ec.message());
  for (const std::string& p : pack) {
    if (idx.count(p) == 0) {
      // The indexer renames the .pack before it writes the .idx, and the
      // branch moves only after both: a .pack alone holds nothing the
      // archive refers to.
      Log(LogLevel::kWarn, "removing a pack without index left by an interrupted write",
          "archive=" + dir_ + " pack=" + p);
      fs::remove(pack_dir + "/" + p + ".pack", ec);
    }
  }
  for (const std::string& p : idx) {
    if (pack.count(p) == 0) continue;
    auto count = PackIndexObjectCount(pack_dir + "/" + p + ".idx");
    // A pack we cannot read the index of (an old format) is left as is and
    // never merged.
    if (!count.has_value()) continue;
    packs_.push_back({p, *count});
  }
  return FsyncPath(pack_dir);
}

Status Archive::CompactPacks() {
  if (packs_.size() <= kMaxPacks) return Status::Ok();
  std::sort(packs_.begin(), packs_.end(),
            [](const PackInfo& a, const PackInfo& b) { return a.objects < b.objects; });
  const std::string pack_dir = dir_ + "/objects/pack";
  std::vector<PackInfo> merged(packs_.begin(), packs_.begin() + kPacksPerMerge);
  std::vector<git_oid> objects;
  std::set<std::string> seen;
  for (const PackInfo& p : merged) {
    auto ids = ReadPackIndex(pack_dir + "/" + p.name + ".idx");
    if (!ids.has_value()) return ids.error();
    for (const git_oid& id : *ids) {
      if (seen.insert(std::string(reinterpret_cast<const char*>(id.id), GIT_OID_RAWSZ)).second) {
        objects.push_back(id);
      }
    }
  }
  auto written = WritePackDurably(objects);
  if (!written.has_value()) return written.error();
  // The new pack is durable: now the small ones can go (index first, so no
  // reader ever sees an index without its pack).
  std::error_code ec;
  for (const PackInfo& p : merged) {
    if (p.name == written->name) continue;
    fs::remove(pack_dir + "/" + p.name + ".idx", ec);
    fs::remove(pack_dir + "/" + p.name + ".pack", ec);
  }
  if (Status s = FsyncPath(pack_dir); !s.ok()) return s;
  packs_.erase(packs_.begin(), packs_.begin() + kPacksPerMerge);
  packs_.push_back(*written);
  // libgit2 keeps the removed packs in its list: start from a fresh handle.
  odb_.reset();
  repo_.reset();
  git_repository* raw = nullptr;
  if (git_repository_open_ext(&raw, dir_.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) < 0) {
    return GitStatus(Code::kIoError, dir_ + ": cannot reopen the repository after packing");
  }
  repo_.reset(raw);
  return SetUpOdb();
}

Result<uint32_t> PackIndexObjectCount(const std::string& path) {
  // Header (8 bytes) and fan-out table (256 x 4): the last fan-out entry is
  // the number of objects.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Err(Status::NotFound(path + ": cannot open: " + std::strerror(errno)));
  unsigned char head[8 + 256 * 4];
  ssize_t n = ::pread(fd, head, sizeof head, 0);
  ::close(fd);
  if (n != static_cast<ssize_t>(sizeof head) || std::memcmp(head, "\377tOc\0\0\0\2", 8) != 0) {
    return Err(Status::DataError(path + ": not a version 2 pack index"));
  }
  const unsigned char* c = head + 8 + 255 * 4;
  return (static_cast<uint32_t>(c[0]) << 24) | (static_cast<uint32_t>(c[1]) << 16) |
         (static_cast<uint32_t>(c[2]) << 8) | static_cast<uint32_t>(c[3]);
}

Result<std::vector<git_oid>> ReadPackIndex(const std::string& path) {
  auto data = ReadFile(path, 1u << 30);
  if (!data.has_value()) return Err(data.error());
  const std::string& d = *data;
  auto be32 = [&](size_t off) {
    return (static_cast<uint32_t>(static_cast<unsigned char>(d[off])) << 24) |
           (static_cast<uint32_t>(static_cast<unsigned char>(d[off + 1])) << 16) |
           (static_cast<uint32_t>(static_cast<unsigned char>(d[off + 2])) << 8) |
           static_cast<uint32_t>(static_cast<unsigned char>(d[off + 3]));
  };
  constexpr size_t kHeader = 8, kFanout = 256 * 4;
  if (d.size() < kHeader + kFanout || d.compare(0, 4, "\377tOc") != 0 || be32(4) != 2) {
    return Err(Status::DataError(path + ": not a version 2 pack index"));
  }
  uint32_t count = be32(kHeader + 255 * 4);
  if (d.size() < kHeader + kFanout + static_cast<size_t>(count) * GIT_OID_RAWSZ) {
    return Err(Status::DataError(path + ": pack index is truncated"));
  }
  std::vector<git_oid> ids(count);
  for (uint32_t i = 0; i < count; ++i) {
    std::memcpy(ids[i].id, d.data() + kHeader + kFanout + static_cast<size_t>(i) * GIT_OID_RAWSZ,
                GIT_OID_RAWSZ);
  }
  return ids;
}

Status Archive::WriteBatch(const std::vector<const EntryInput*>& batch,
                           const std::vector<RootFile>& root_files,
                           std::vector<Appended>* results) {
  // Work on copies; the members change only once the branch has moved.
  merkle::CompactRange frontier;
  bool has_head;
  git_oid head;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    frontier = frontier_;
    has_head = has_head_;
    head = head_;
  }
  struct ResetMempack {
    git_odb_backend* m;
    ~ResetMempack() { git_mempack_reset(m); }
  } reset_mempack{mempack_};

  GitCommitPtr parent;
  GitTreePtr base_tree;
  if (has_head) {
    git_commit* raw = nullptr;
    if (git_commit_lookup(&raw, repo_.get(), &head) < 0) {
      return GitStatus(Code::kDataError, dir_ + ": cannot read the head commit");
    }
    parent.reset(raw);
    git_tree* raw_tree = nullptr;
    if (git_commit_tree(&raw_tree, parent.get()) < 0) {
      return GitStatus(Code::kDataError, dir_ + ": cannot read the head tree");
    }
    base_tree.reset(raw_tree);
  }

  const std::time_t now = std::time(nullptr);
  std::vector<std::string> paths;  // keep the c_str()s alive
  std::vector<git_oid> ids;
  auto add_blob = [&](std::string path, std::string_view data) -> Status {
    git_oid id;
    if (git_blob_create_from_buffer(&id, repo_.get(), data.data(), data.size()) < 0) {
      return GitStatus(Code::kInternal, dir_ + ": cannot store " + path);
    }
    paths.push_back(std::move(path));
    ids.push_back(id);
    return Status::Ok();
  };

  std::vector<Appended> out;
  for (const EntryInput* entry : batch) {
    uint64_t seq = frontier.size() + 1;
    std::string dir = EntryDir(seq);
    std::string manifest = BuildManifest(*entry, options_.origin, seq, now);
    for (const EntryFile& f : entry->files) {
      if (Status s = add_blob(dir + "/" + f.name, f.data); !s.ok()) return s;
    }
    if (Status s = add_blob(dir + "/manifest.json", manifest); !s.ok()) return s;
    Appended a;
    a.seq = seq;
    a.leaf = merkle::LeafHash(manifest);
    frontier.AppendLeafHash(a.leaf);
    out.push_back(std::move(a));
  }
  for (const RootFile& f : root_files) {
    if (Status s = add_blob(f.path, f.data); !s.ok()) return s;
  }

  crypto::Checkpoint cp{options_.origin, frontier.size(), frontier.Root(), {}};
  auto body = crypto::SerializeCheckpoint(cp);
  if (!body.has_value()) return body.error();
  auto cp_sig = crypto::SignCheckpoint(*options_.signer, options_.seal_key, *body);
  if (!cp_sig.has_value()) return cp_sig.error();
  if (Status s = add_blob("log/checkpoint", *body); !s.ok()) return s;
  if (Status s = add_blob("log/checkpoint.p7s", *cp_sig); !s.ok()) return s;
  if (Status s = add_blob("log/frontier", SerializeFrontier(frontier)); !s.ok()) return s;

  std::vector<git_tree_update> updates(paths.size());
  for (size_t i = 0; i < paths.size(); ++i) {
    updates[i].action = GIT_TREE_UPDATE_UPSERT;
    updates[i].id = ids[i];
    updates[i].filemode = GIT_FILEMODE_BLOB;
    updates[i].path = paths[i].c_str();
  }
  git_oid tree_id;
  if (git_tree_create_updated(&tree_id, repo_.get(), base_tree.get(), updates.size(),
                              updates.data()) < 0) {
    return GitStatus(Code::kInternal, dir_ + ": cannot build the new tree");
  }
  git_tree* raw_tree = nullptr;
  if (git_tree_lookup(&raw_tree, repo_.get(), &tree_id) < 0) {
    return GitStatus(Code::kInternal, dir_ + ": cannot read the new tree");
  }
  GitTreePtr tree(raw_tree);

  git_signature* raw_sig = nullptr;
  if (git_signature_new(&raw_sig, "sealpost", "archive@sealpost.invalid", now, 0) < 0) {
    return GitStatus(Code::kInternal, "cannot make the commit signature line");
  }
  GitSignaturePtr who(raw_sig);
  const uint64_t first = out.front().seq, last = out.back().seq;
  std::string message = (first == last ? "Entry " + std::to_string(first)
                                       : "Entries " + std::to_string(first) + "-" +
                                             std::to_string(last)) +
                        "\n\nCheckpoint: " + std::to_string(cp.size) + " " +
                        merkle::ToHex(cp.root) + "\n";
  GitBuf buffer;
  const git_commit* parents[1] = {parent.get()};
  if (git_commit_create_buffer(buffer.get(), repo_.get(), who.get(), who.get(), nullptr,
                               message.c_str(), tree.get(), has_head ? 1 : 0, parents) < 0) {
    return GitStatus(Code::kInternal, dir_ + ": cannot build the commit");
  }
  std::string commit_text(buffer.view());
  auto armored = SignCommitBuffer(commit_text);
  if (!armored.has_value()) return armored.error();
  git_oid commit_id;
  if (git_commit_create_with_signature(&commit_id, repo_.get(), commit_text.c_str(),
                                       armored->c_str(), "gpgsig") < 0) {
    return GitStatus(Code::kInternal, dir_ + ": cannot store the signed commit");
  }

  // The new objects: blobs, every tree on the path to them, the commit.
  std::vector<git_oid> objects = ids;
  {
    std::set<std::string> dirs;
    for (const std::string& p : paths) {
      for (size_t slash = p.find('/'); slash != std::string::npos; slash = p.find('/', slash + 1)) {
        dirs.insert(p.substr(0, slash));
      }
    }
    objects.push_back(tree_id);
    for (const std::string& d : dirs) {
      git_tree_entry* raw_entry = nullptr;
      if (git_tree_entry_bypath(&raw_entry, tree.get(), d.c_str()) < 0) {
        return GitStatus(Code::kInternal, dir_ + ": new tree lacks " + d);
      }
      GitTreeEntryPtr entry(raw_entry);
      objects.push_back(*git_tree_entry_id(entry.get()));
    }
    objects.push_back(commit_id);
  }
  auto pack_written = WritePackDurably(objects);
  if (!pack_written.has_value()) return pack_written.error();
  packs_.push_back(*pack_written);

  // Compare-and-swap of the branch: fails if anyone moved it since we read it.
  git_reference* raw_ref = nullptr;
  int rc;
  std::string log_message = "sealpost: " + message.substr(0, message.find('\n'));
  if (has_head) {
    rc = git_reference_create_matching(&raw_ref, repo_.get(), kBranch, &commit_id, 1, &head,
                                       log_message.c_str());
  } else {
    rc = git_reference_create(&raw_ref, repo_.get(), kBranch, &commit_id, 0, log_message.c_str());
  }
  GitReferencePtr ref(raw_ref);
  if (rc == GIT_EMODIFIED || rc == GIT_EEXISTS) {
    Status s = GitStatus(Code::kFailedPrecondition,
                         dir_ + ": " + kBranch + " was moved by someone else; refusing to append "
                         "until the archive is reopened and audited");
    std::lock_guard<std::mutex> lock(state_mu_);
    broken_ = s;
    return s;
  }
  if (rc == GIT_ELOCKED) {
    return GitStatus(Code::kUnavailable, dir_ + ": " + kBranch + " is locked");
  }
  if (rc < 0) return GitStatus(Code::kIoError, dir_ + ": cannot move " + kBranch);

  const std::string commit_hex = OidHex(commit_id);
  for (Appended& a : out) {
    a.commit = commit_hex;
    a.tree_size = cp.size;
  }
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    frontier_ = std::move(frontier);
    head_ = commit_id;
    has_head_ = true;
    checkpoint_ = std::move(cp);
  }
  commits_written_.fetch_add(1);
  *results = std::move(out);
  return Status::Ok();
}

uint64_t Archive::size() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return frontier_.size();
}

crypto::Checkpoint Archive::checkpoint() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return checkpoint_;
}

std::string Archive::head() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return has_head_ ? OidHex(head_) : std::string();
}

Result<GitTreePtr> Archive::HeadTree() {
  git_oid head;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    head = head_;
  }
  git_commit* raw = nullptr;
  if (git_commit_lookup(&raw, repo_.get(), &head) < 0) {
    return Err(GitStatus(Code::kDataError, dir_ + ": cannot read the head commit"));
  }
  GitCommitPtr commit(raw);
  git_tree* raw_tree = nullptr;
  if (git_commit_tree(&raw_tree, commit.get()) < 0) {
    return Err(GitStatus(Code::kDataError, dir_ + ": cannot read the head tree"));
  }
  return GitTreePtr(raw_tree);
}

Result<std::string> Archive::ReadEntryFile(uint64_t seq, const std::string& name) {
  if (seq == 0 || seq > size()) {
    return Err(Status::NotFound(dir_ + ": no entry #" + std::to_string(seq)));
  }
  std::lock_guard<std::mutex> lock(repo_mu_);
  auto tree = HeadTree();
  if (!tree.has_value()) return Err(tree.error());
  return ReadAt(tree->get(), EntryDir(seq) + "/" + name);
}

Result<std::vector<merkle::Hash>> Archive::ReadLeaves(uint64_t count) {
  std::lock_guard<std::mutex> lock(repo_mu_);
  auto tree = HeadTree();
  if (!tree.has_value()) return Err(tree.error());
  std::vector<merkle::Hash> out;
  out.reserve(count);
  for (uint64_t seq = 1; seq <= count; ++seq) {
    auto manifest = ReadAt(tree->get(), EntryDir(seq) + "/manifest.json");
    if (!manifest.has_value()) return Err(manifest.error());
    out.push_back(merkle::LeafHash(*manifest));
  }
  return out;
}

Result<std::vector<merkle::Hash>> Archive::ReadLeafHashes() { return ReadLeaves(size()); }

Result<std::vector<merkle::Hash>> Archive::InclusionProof(uint64_t seq, uint64_t tree_size) {
  if (seq == 0 || seq > tree_size || tree_size > size()) {
    return Err(Status::InvalidArgument("no inclusion proof of entry #" + std::to_string(seq) +
                                       " in a tree of " + std::to_string(tree_size) +
                                       " entries (the log has " + std::to_string(size()) + ")"));
  }
  auto leaves = ReadLeaves(tree_size);
  if (!leaves.has_value()) return Err(leaves.error());
  return merkle::InclusionProof(*leaves, seq - 1);
}

Result<std::vector<merkle::Hash>> Archive::ConsistencyProof(uint64_t old_size, uint64_t new_size) {
  if (old_size > new_size || new_size > size()) {
    return Err(Status::InvalidArgument("no consistency proof from " + std::to_string(old_size) +
                                       " to " + std::to_string(new_size) + " entries (the log has " +
                                       std::to_string(size()) + ")"));
  }
  auto leaves = ReadLeaves(new_size);
  if (!leaves.has_value()) return Err(leaves.error());
  return merkle::ConsistencyProof(*leaves, old_size);
}

}  // namespace sealpost::storage
