#include "storage/archive.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>
#include <optional>
#include <set>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include <git2/sys/odb_backend.h>
#include <openssl/pem.h>

#include "base/encoding.h"
#include "base/file.h"
#include "base/log.h"
#include "crypto/cades_sign.h"
#include "crypto/certs.h"
#include "crypto/digest.h"

// SP_RETURN_IF_ERROR is for functions returning Result<T>; this one for
// functions returning Status.
#define RETURN_STATUS_IF_ERROR(expr)          \
  do {                                        \
    ::sealpost::Status sp_status__ = (expr);  \
    if (!sp_status__.ok()) return sp_status__; \
  } while (0)

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
  // refs/heads/main.lock is not among them: it is the durable record of a
  // commit whose sync round may have finished (RollForwardIntent).
  for (const char* name : {"packed-refs.lock", "HEAD.lock"}) {
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


struct IdxEntry {
  git_oid id;
  uint32_t crc;
  uint64_t offset;
};

// Every object of a version 2 pack index with its CRC-32 and pack offset.
Result<std::vector<IdxEntry>> ReadPackIndexEntries(const std::string& path) {
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
  const size_t n = be32(kHeader + 255 * 4);
  const size_t ids_at = kHeader + kFanout, crcs_at = ids_at + n * GIT_OID_RAWSZ,
               offs_at = crcs_at + n * 4, large_at = offs_at + n * 4;
  if (d.size() < large_at + 2 * GIT_OID_RAWSZ) {
    return Err(Status::DataError(path + ": pack index is truncated"));
  }
  std::vector<IdxEntry> out(n);
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(out[i].id.id, d.data() + ids_at + i * GIT_OID_RAWSZ, GIT_OID_RAWSZ);
    out[i].crc = be32(crcs_at + i * 4);
    uint32_t off = be32(offs_at + i * 4);
    if (off & 0x80000000u) {
      size_t at = large_at + static_cast<size_t>(off & 0x7fffffffu) * 8;
      if (d.size() < at + 8 + 2 * GIT_OID_RAWSZ) {
        return Err(Status::DataError(path + ": pack index is truncated"));
      }
      out[i].offset = (static_cast<uint64_t>(be32(at)) << 32) | be32(at + 4);
    } else {
      out[i].offset = off;
    }
  }
  return out;
}

using GitOdbObjectPtr = std::unique_ptr<git_odb_object, CDeleter<git_odb_object_free>>;

// Copies the objects of `pack_path` (listed by `entries`) into `out`,
// checking each entry's CRC-32. OFS_DELTA entries are stored whole (read
// through `odb`).
Status CopyPackEntries(const std::string& pack_path, std::vector<IdxEntry> entries, git_odb* odb,
                       PackWriter* out) {
  int fd = ::open(pack_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IoError(pack_path + ": cannot open: " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0 || st.st_size < 12 + GIT_OID_RAWSZ) {
    return Status::DataError(pack_path + ": not a pack");
  }
  const uint64_t end_of_data = static_cast<uint64_t>(st.st_size) - GIT_OID_RAWSZ;
  std::sort(entries.begin(), entries.end(),
            [](const IdxEntry& a, const IdxEntry& b) { return a.offset < b.offset; });
  std::string buf;
  for (size_t i = 0; i < entries.size(); ++i) {
    const uint64_t begin = entries[i].offset;
    const uint64_t end = i + 1 < entries.size() ? entries[i + 1].offset : end_of_data;
    if (begin < 12 || end <= begin || end > end_of_data) {
      return Status::DataError(pack_path + ": pack index offsets do not fit the pack");
    }
    buf.resize(static_cast<size_t>(end - begin));
    if (::pread(fd, buf.data(), buf.size(), static_cast<off_t>(begin)) !=
        static_cast<ssize_t>(buf.size())) {
      return Status::IoError(pack_path + ": cannot read: " + std::strerror(errno));
    }
    uint32_t crc = static_cast<uint32_t>(
        crc32(0L, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(buf.size())));
    if (crc != entries[i].crc) {
      return Status::DataError(pack_path + ": object " + OidHex(entries[i].id) +
                               " does not match its CRC (corrupt pack)");
    }
    const int type = (static_cast<unsigned char>(buf[0]) >> 4) & 7;
    if (type == GIT_OBJECT_OFS_DELTA) {
      git_odb_object* raw = nullptr;
      if (git_odb_read(&raw, odb, &entries[i].id) < 0) {
        return GitStatus(Code::kDataError, pack_path + ": cannot read " + OidHex(entries[i].id));
      }
      GitOdbObjectPtr obj(raw);
      auto id = out->AddObject(git_odb_object_type(obj.get()),
                               std::string_view(static_cast<const char*>(git_odb_object_data(obj.get())),
                                                git_odb_object_size(obj.get())));
      if (!id.has_value()) return id.error();
    } else {
      RETURN_STATUS_IF_ERROR(out->AddRawEntry(entries[i].id, buf, crc));
    }
  }
  return Status::Ok();
}

// SHA-1 of the first `length` bytes of the file at `path`, raw (read in
// 1 MiB pieces). Empty on any error.
std::string FileSha1(const std::string& path, uint64_t length) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  std::unique_ptr<EVP_MD_CTX, CDeleter<EVP_MD_CTX_free>> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha1(), nullptr) != 1) return {};
  constexpr size_t kChunk = 1u << 20;
  std::unique_ptr<char[]> buf(new char[kChunk]);
  for (uint64_t pos = 0; pos < length;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, length - pos));
    ssize_t n = ::pread(fd, buf.get(), want, static_cast<off_t>(pos));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return {};
    EVP_DigestUpdate(ctx.get(), buf.get(), static_cast<size_t>(n));
    pos += static_cast<uint64_t>(n);
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &len) != 1 || len != GIT_OID_RAWSZ) return {};
  return std::string(reinterpret_cast<const char*>(md), len);
}

// The pack checksum (raw) a complete version 2 pack index names, if the
// file at `path` is one whose own checksum is right; empty otherwise.
std::string CompleteIdxPackChecksum(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || st.st_size < 8 + 1024 + 2 * GIT_OID_RAWSZ) return {};
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  auto tail = ReadFile(path, static_cast<size_t>(size));
  if (!tail.has_value() || tail->size() != size || tail->compare(0, 8, "\377tOc\0\0\0\2", 8) != 0) {
    return {};
  }
  if (FileSha1(path, size - GIT_OID_RAWSZ) != tail->substr(size - GIT_OID_RAWSZ)) return {};
  return tail->substr(size - 2 * GIT_OID_RAWSZ, GIT_OID_RAWSZ);
}

// The checksum (raw) of the complete pack at `path` (its trailer, checked
// against the SHA-1 of the rest); empty if it is not complete.
std::string CompletePackChecksum(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || st.st_size < 12 + GIT_OID_RAWSZ) return {};
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  char head[4];
  std::string trailer(GIT_OID_RAWSZ, '\0');
  const bool read_ok =
      ::pread(fd, head, sizeof head, 0) == 4 &&
      ::pread(fd, trailer.data(), GIT_OID_RAWSZ, static_cast<off_t>(size - GIT_OID_RAWSZ)) ==
          GIT_OID_RAWSZ;
  ::close(fd);
  if (!read_ok || std::memcmp(head, "PACK", 4) != 0) return {};
  if (FileSha1(path, size - GIT_OID_RAWSZ) != trailer) return {};
  return trailer;
}

// CPU time of the calling thread: under load the wall-clock build and sign
// times include waiting for a core, this does not.
uint64_t ThreadCpuNs() {
  struct timespec ts;
  if (::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t NsSince(std::chrono::steady_clock::time_point start) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now() - start)
                                   .count());
}

std::string Hex2(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%02llx", static_cast<unsigned long long>(v));
  return buf;
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
  if (syncer_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(pipe_mu_);
      syncer_stopping_ = true;
    }
    pipe_cv_.notify_all();
    syncer_.join();
  }
  if (merger_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(packs_mu_);
      merger_stopping_ = true;
    }
    packs_cv_.notify_all();
    merger_.join();
  }
  sync_pool_.reset();    // after the syncer
  build_pool_.reset();   // after the writer
  spare_pack_.reset();  // its temporary files
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
    std::lock_guard<std::mutex> lock(archive->writer_mu_);
    {
      std::lock_guard<std::mutex> pipe_lock(archive->pipe_mu_);
      archive->durable_trees_ = std::make_shared<const Trees>();
      archive->ResetTipToDurable();
    }
    Status s = archive->WriteNow({&first},
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

Status Archive::Recover(const std::string& dir) {
  RETURN_STATUS_IF_ERROR(EnsureLibgit2());
  struct stat st {};
  if (::stat((dir + "/HEAD").c_str(), &st) != 0) return Status::Ok();  // no archive yet
  auto lock_fd = LockArchive(dir);
  if (!lock_fd.has_value()) return lock_fd.error();
  std::unique_ptr<Archive> archive(new Archive(dir, ArchiveOptions{}, *lock_fd));
  RETURN_STATUS_IF_ERROR(RemoveStaleLocks(dir));
  git_repository* raw = nullptr;
  if (git_repository_open_ext(&raw, dir.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) < 0) {
    return GitStatus(Code::kDataError, dir + ": not a git repository");
  }
  archive->repo_.reset(raw);
  RETURN_STATUS_IF_ERROR(archive->SetUpOdb());
  RETURN_STATUS_IF_ERROR(archive->RollForwardPacks());
  return archive->RollForwardIntent();  // the destructor releases the lock
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
  RETURN_STATUS_IF_ERROR(LoadTrees(tree.get(), cp->size));
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    seal_ = std::move(seal);
    has_head_ = true;
    head_ = oid;
    frontier_ = std::move(*frontier);
    auto signed_cp = std::make_shared<CommittedCheckpoint>();
    signed_cp->size = cp->size;
    signed_cp->root = cp->root;
    signed_cp->body = std::move(*body);
    signed_cp->signature = std::move(*sig);
    signed_checkpoint_ = std::move(signed_cp);
    checkpoint_ = std::move(*cp);
  }
  std::lock_guard<std::mutex> writer_lock(writer_mu_);
  std::lock_guard<std::mutex> pipe_lock(pipe_mu_);
  ResetTipToDurable();
  return Status::Ok();
}

void Archive::StartWriter() {
  // A round's five syncs: the syncer's thread and these four.
  sync_pool_ = std::make_unique<JobPool>(4);
  build_pool_ = std::make_unique<JobPool>(1);
  writer_ = std::thread([this] { WriterLoop(); });
  syncer_ = std::thread([this] { SyncerLoop(); });
  merger_ = std::thread([this] { MergerLoop(); });
}

void Archive::MergerLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(packs_mu_);
      // When stopping, the merges still due are finished, so the pack count
      // stays bounded across restarts.
      packs_cv_.wait(lock, [&] { return merger_stopping_ || packs_.size() > kMaxPacks; });
      if (packs_.size() <= kMaxPacks) return;
    }
    const auto start = std::chrono::steady_clock::now();
    if (Status c = CompactPacks(); !c.ok()) {
      Log(LogLevel::kWarn, "could not merge packs", "archive=" + dir_ + " error=\"" + c.message() + "\"");
      return;  // tried again at the next open
    }
    std::lock_guard<std::mutex> stats_lock(stats_mu_);
    stats_.compact_ns += NsSince(start);
    ++stats_.merges;
  }
}

// The writer: takes every append queued (group commit), builds and signs
// their commit on the tip and hands it to the syncer, then takes the next
// batch while the syncer makes that commit durable.
void Archive::WriterLoop() {
  for (;;) {
    std::vector<Pending*> batch;
    const auto wait_start = std::chrono::steady_clock::now();
    {
      std::unique_lock<std::mutex> lock(queue_mu_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained (the syncer finishes its commit)
      // Gathering (decision 0005). While the syncer holds a commit of k
      // appends, the next one is started only once k appends are queued
      // (a flood of callers is built at once, a fixed set of callers is
      // not split into half-full commits). After the syncer acknowledged
      // k appends with q queued, the writer waits up to kGatherWait for
      // q + k: the callers just acknowledged usually append again at once,
      // and one full commit costs less than two half-full ones.
      for (;;) {
        if (stopping_) break;
        const size_t in_flight = in_flight_.load();
        const size_t target =
            std::min(options_.max_batch, in_flight > 0 ? in_flight : gather_target_);
        if (queue_.size() >= target) break;
        if (in_flight > 0) {
          queue_cv_.wait_for(lock, std::chrono::milliseconds(1));
          continue;
        }
        const auto deadline = last_ack_ + kGatherWait;
        if (std::chrono::steady_clock::now() >= deadline) break;
        queue_cv_.wait_until(lock, deadline);
      }
      while (!queue_.empty() && batch.size() < options_.max_batch) {
        batch.push_back(queue_.front());
        queue_.pop_front();
      }
    }
    {
      std::lock_guard<std::mutex> stats_lock(stats_mu_);
      stats_.wait_appends_ns += NsSince(wait_start);
    }
    auto fail = [&](const Status& s) {
      for (Pending* p : batch) p->done.set_value(Err(s));
    };
    Status s;
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      s = broken_;
    }
    if (!s.ok()) {
      fail(s);
      continue;
    }
    std::lock_guard<std::mutex> writer_lock(writer_mu_);
    {
      std::lock_guard<std::mutex> lock(pipe_mu_);
      if (!pipe_failed_.ok() && !slot_) {
        ResetTipToDurable();
        pipe_failed_ = Status::Ok();
      }
    }
    std::vector<const EntryInput*> inputs;
    std::vector<const Prepared*> prepared;
    for (Pending* p : batch) {
      inputs.push_back(&p->input);
      prepared.push_back(&p->prepared);
    }
    auto built = BuildCommit(inputs, {}, tip_, prepared);
    if (!built.has_value()) {
      fail(built.error());  // nothing was handed on; the tip is unchanged
      continue;
    }
    if (options_.built_for_testing) options_.built_for_testing(OidHex((*built)->commit));
    const auto handoff_start = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lock(pipe_mu_);
    pipe_cv_.wait(lock, [&] { return !slot_; });
    {
      std::lock_guard<std::mutex> stats_lock(stats_mu_);
      stats_.wait_syncer_ns += NsSince(handoff_start);
    }
    if (!pipe_failed_.ok()) {
      // The commit this one was built on failed, so this one cannot be
      // published either (its parent is not the head): it fails with the
      // same error, and the next is built on the durable head.
      s = pipe_failed_;
      ResetTipToDurable();
      pipe_failed_ = Status::Ok();
      lock.unlock();
      fail(s);
      continue;  // *built (its temporary pack files) is discarded
    }
    Built& b = **built;
    tip_.has_head = true;
    tip_.head = b.commit;
    tip_.frontier = b.frontier;
    tip_.trees = b.trees;
    in_flight_.store(batch.size());
    b.waiters = std::move(batch);
    slot_ = std::move(*built);
    lock.unlock();
    pipe_cv_.notify_all();
    // While the syncer makes that commit durable: the files of the next
    // one (a failure here is met again, and reported, by BuildCommit).
    if (!spare_pack_) {
      auto next = PackWriter::Create(dir_ + "/objects/pack");
      if (next.has_value()) spare_pack_ = std::move(*next);
    }
  }
}

// The syncer: makes the commit in slot_ durable, moves the branch, then
// acknowledges its appends (or fails them).
void Archive::SyncerLoop() {
  // Renames not yet made durable by a sync round (decision 0005).
  bool renames_pending = false;
  for (;;) {
    std::unique_lock<std::mutex> lock(pipe_mu_);
    if (renames_pending &&
        (!pipe_cv_.wait_for(lock, kIdleSync, [&] { return syncer_stopping_ || slot_ != nullptr; }) ||
         !slot_)) {
      // Idle (no commit came) or closing: sync the directories once, so an
      // idle archive is fully durable without the roll-forward.
      lock.unlock();
      if (Status d = SyncDirs(); !d.ok()) {
        // The next commit's round syncs them again; main.lock stays the
        // durable record meanwhile.
        Log(LogLevel::kWarn, "could not sync the archive's directories",
            "archive=" + dir_ + " error=\"" + d.message() + "\"");
      }
      renames_pending = false;
      std::lock_guard<std::mutex> stats_lock(stats_mu_);
      ++stats_.idle_syncs;
      continue;
    }
    pipe_cv_.wait(lock, [&] { return syncer_stopping_ || slot_; });
    if (!slot_) return;  // stopping, and the writer has stopped
    Built* b = slot_.get();
    lock.unlock();
    Status s = PublishCommit(*b);
    if (s.ok()) renames_pending = true;
    lock.lock();
    std::unique_ptr<Built> done = std::move(slot_);
    {
      // Before the writer can hand on the next commit (it sets in_flight_):
      // the next commit should carry what is queued now and the callers
      // about to be acknowledged, who usually append again at once.
      std::lock_guard<std::mutex> queue_lock(queue_mu_);
      in_flight_.store(0);
      gather_target_ = queue_.size() + done->waiters.size();
      last_ack_ = std::chrono::steady_clock::now();
    }
    if (s.ok()) {
      durable_trees_ = done->trees;
    } else {
      pipe_failed_ = s;
    }
    lock.unlock();
    pipe_cv_.notify_all();
    for (size_t i = 0; i < done->waiters.size(); ++i) {
      if (s.ok()) {
        done->waiters[i]->done.set_value(done->results[i]);
      } else {
        done->waiters[i]->done.set_value(Err(s));
      }
    }
    {
      std::lock_guard<std::mutex> queue_lock(queue_mu_);
      last_ack_ = std::chrono::steady_clock::now();
    }
    queue_cv_.notify_all();
  }
}

void Archive::ResetTipToDurable() {
  std::lock_guard<std::mutex> lock(state_mu_);
  tip_.has_head = has_head_;
  tip_.head = head_;
  tip_.frontier = frontier_;
  tip_.trees = durable_trees_;
}

void Archive::DrainPipeline() {
  std::unique_lock<std::mutex> lock(pipe_mu_);
  pipe_cv_.wait(lock, [&] { return !slot_; });
  if (!pipe_failed_.ok()) {
    ResetTipToDurable();
    pipe_failed_ = Status::Ok();
  }
}

Status Archive::WriteNow(const std::vector<const EntryInput*>& batch,
                         const std::vector<RootFile>& root_files, std::vector<Appended>* results) {
  auto built = BuildCommit(batch, root_files, tip_);
  if (!built.has_value()) return built.error();
  Built& b = **built;
  RETURN_STATUS_IF_ERROR(PublishCommit(b));
  // Create and ChangeSeal are rare: their renames are made durable at once.
  RETURN_STATUS_IF_ERROR(SyncDirs());
  {
    std::lock_guard<std::mutex> lock(pipe_mu_);
    durable_trees_ = b.trees;
  }
  tip_.has_head = true;
  tip_.head = b.commit;
  tip_.frontier = b.frontier;
  tip_.trees = b.trees;
  *results = std::move(b.results);
  return Status::Ok();
}

std::vector<Result<Appended>> Archive::AppendMany(std::vector<EntryInput> entries) {
  std::vector<Result<Appended>> out(entries.size(), Err(Status::Internal("not appended")));
  std::vector<std::unique_ptr<Pending>> pending;
  std::vector<size_t> where;
  std::vector<std::future<Result<Appended>>> done;
  size_t queued = 0;  // pending[0, queued) are in the queue
  uint64_t size_before = 0;  // entries i may refer to: those before the call and before i
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    size_before = frontier_.size();
  }
  // Queues what is ready; false if the archive is closing (then the rest
  // fail Unavailable and the queued ones are awaited).
  auto queue_ready = [&]() -> bool {
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      if (!stopping_) {
        for (; queued < pending.size(); ++queued) queue_.push_back(pending[queued].get());
      }
    }
    queue_cv_.notify_one();
    if (queued == pending.size()) return true;
    for (size_t k = 0; k < queued; ++k) out[where[k]] = done[k].get();
    for (size_t k = queued; k < pending.size(); ++k) {
      out[where[k]] = Err(Status::Unavailable(dir_ + ": archive is closing"));
    }
    return false;
  };
  for (size_t i = 0; i < entries.size(); ++i) {
    if (Status s = ValidateEntry(entries[i]); !s.ok()) {
      out[i] = Err(s);
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      if (!broken_.ok()) {
        out[i] = Err(broken_);
        continue;
      }
      if (entries[i].refers_to > size_before + i) {
        out[i] = Err(Status::InvalidArgument("entry refers to #" +
                                             std::to_string(entries[i].refers_to) +
                                             ", beyond the log"));
        continue;
      }
    }
    auto p = std::make_unique<Pending>(Pending{std::move(entries[i]), {}, {}});
    if (Status s = PrepareEntry(p->input, options_.origin, &p->prepared); !s.ok()) {
      out[i] = Err(s);
      continue;
    }
    done.push_back(p->done.get_future());
    pending.push_back(std::move(p));
    where.push_back(i);
    // Queued a batch at a time as they are made ready, so the writer
    // builds the first commit while this thread prepares the next.
    if (pending.size() - queued == options_.max_batch && !queue_ready()) return out;
  }
  if (!queue_ready()) return out;
  for (size_t k = 0; k < done.size(); ++k) out[where[k]] = done[k].get();
  return out;
}

Archive::Stats Archive::stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return stats_;
}

Result<Appended> Archive::Append(EntryInput entry) {
  SP_RETURN_IF_ERROR(ValidateEntry(entry));
  // Files given as paths: there, regular, of the declared size (the writer
  // checks their content; a wrong one would fail the whole commit).
  for (const EntryFile& f : entry.files) {
    if (f.path.empty()) continue;
    struct stat st {};
    if (::stat(f.path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
        static_cast<uint64_t>(st.st_size) != f.size) {
      return Err(Status::InvalidArgument("entry file \"" + f.name + "\": " + f.path +
                                         " is not a regular file of " + std::to_string(f.size) +
                                         " bytes"));
    }
  }
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    if (!broken_.ok()) return Err(broken_);
    if (entry.refers_to > frontier_.size()) {
      return Err(Status::InvalidArgument("entry refers to #" + std::to_string(entry.refers_to) +
                                         ", beyond the last entry #" +
                                         std::to_string(frontier_.size())));
    }
  }
  Pending pending{std::move(entry), {}, {}};
  // The entry's blobs are made here, in the caller's thread, while the
  // writer builds other commits (decision 0005, "Writing").
  SP_RETURN_IF_ERROR(PrepareEntry(pending.input, options_.origin, &pending.prepared));
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

Status Archive::RollForwardPacks() {
  // Only when the branch names a commit that is not there: the renames of
  // its pack and index into place did not reach the disk before a crash,
  // though the ref rename did (PublishCommit leaves the three renames to the
  // next sync round; a file system that reorders renames across
  // directories). Otherwise temporary files are either an intent's
  // (RollForwardIntent, next) or what an unacknowledged commit left, and
  // ScanPacks removes them.
  auto current = ReadBranch();
  if (!current.has_value()) return current.error();
  git_oid id;
  if (!*current || git_oid_fromstr(&id, (*current)->c_str()) < 0 ||
      git_odb_exists(odb_.get(), &id) == 1) {
    return Status::Ok();
  }
  git_error_clear();
  const std::string pack_dir = dir_ + "/objects/pack";
  std::error_code ec;
  // Pack checksum (raw) -> complete temporary pack / index with it.
  std::map<std::string, std::string> packs, idxs;
  for (const auto& e : fs::directory_iterator(pack_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("tmp_sealpost_pack_")) {
      if (std::string sum = CompletePackChecksum(e.path().string()); !sum.empty()) {
        packs[sum] = e.path().string();
      }
    } else if (name.starts_with("tmp_sealpost_idx_")) {
      if (std::string sum = CompleteIdxPackChecksum(e.path().string()); !sum.empty()) {
        idxs[sum] = e.path().string();
      }
    }
  }
  if (ec) return Status::IoError(pack_dir + ": cannot list: " + ec.message());
  std::set<std::string> sums;
  for (const auto& [sum, path] : packs) sums.insert(sum);
  for (const auto& [sum, path] : idxs) sums.insert(sum);
  bool moved = false;
  for (const std::string& sum : sums) {
    const std::string base = pack_dir + "/pack-" + HexEncode(sum);
    const auto tmp_pack = packs.find(sum);
    const auto tmp_idx = idxs.find(sum);
    const bool pack_ok = tmp_pack != packs.end() || CompletePackChecksum(base + ".pack") == sum;
    const bool idx_ok = tmp_idx != idxs.end() || CompleteIdxPackChecksum(base + ".idx") == sum;
    if (!pack_ok || !idx_ok) continue;
    // Only the pair that holds the branch's commit: another complete pair
    // is a later commit's, built while this one synced (the two-stage
    // pipeline) and never acknowledged unless main.lock names it
    // (RollForwardIntent, next); ScanPacks removes it otherwise, so no
    // unreachable signed commit is left in place.
    {
      auto ids = ReadPackIndex(tmp_idx != idxs.end() ? tmp_idx->second : base + ".idx");
      if (!ids.has_value()) continue;
      bool holds = false;
      for (const git_oid& x : *ids) holds = holds || git_oid_equal(&x, &id);
      if (!holds) continue;
    }
    // The .pack first, as PublishCommit does.
    if (tmp_pack != packs.end() && ::rename(tmp_pack->second.c_str(), (base + ".pack").c_str()) != 0) {
      return Status::IoError(base + ".pack: cannot roll forward: " + std::strerror(errno));
    }
    if (tmp_idx != idxs.end() && ::rename(tmp_idx->second.c_str(), (base + ".idx").c_str()) != 0) {
      return Status::IoError(base + ".idx: cannot roll forward: " + std::strerror(errno));
    }
    Log(LogLevel::kWarn, "rolled a complete pack forward into place after an interrupted write",
        "archive=" + dir_ + " pack=pack-" + HexEncode(sum));
    moved = true;
  }
  if (moved) {
    RETURN_STATUS_IF_ERROR(FsyncPath(pack_dir));
    git_odb_refresh(odb_.get());
    if (git_odb_exists(odb_.get(), &id) == 1) return Status::Ok();
    git_error_clear();
  }
  // Nothing complete to roll forward: leave every file as found.
  return Status::DataError(dir_ + ": cannot read the head commit " + **current +
                           " (missing object; temporary pack files left as found)");
}

namespace {

// The object at `offset` of the pack at `path`, when it is stored whole
// (what this archive writes; not a delta): its type and inflated bytes.
// DataError naming the pack otherwise.
Result<std::pair<int, std::string>> ReadPackedObject(const std::string& path, uint64_t offset) {
  constexpr size_t kWindow = 1u << 20;  // a commit object is a few KiB
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Err(Status::IoError(path + ": cannot open: " + std::strerror(errno)));
  std::string buf(kWindow, '\0');
  ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(offset));
  ::close(fd);
  if (n <= 0) return Err(Status::DataError(path + ": no object at offset " + std::to_string(offset)));
  buf.resize(static_cast<size_t>(n));
  size_t pos = 0;
  auto byte = [&](size_t i) { return static_cast<unsigned char>(buf[i]); };
  const int type = (byte(0) >> 4) & 7;
  uint64_t size = byte(0) & 15;
  int shift = 4;
  while (byte(pos) & 0x80) {
    if (++pos >= buf.size() || shift > 56) {
      return Err(Status::DataError(path + ": bad object header at offset " + std::to_string(offset)));
    }
    size |= static_cast<uint64_t>(byte(pos) & 0x7f) << shift;
    shift += 7;
  }
  ++pos;
  if (type < GIT_OBJECT_COMMIT || type > GIT_OBJECT_TAG || size > kWindow) {
    return Err(Status::DataError(path + ": not a whole object of at most 1 MiB at offset " +
                                 std::to_string(offset)));
  }
  std::string out(static_cast<size_t>(size), '\0');
  z_stream z{};
  if (inflateInit(&z) != Z_OK) return Err(Status::Internal("zlib inflateInit failed"));
  z.next_in = reinterpret_cast<Bytef*>(buf.data() + pos);
  z.avail_in = static_cast<uInt>(buf.size() - pos);
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&z, Z_FINISH);
  const bool whole = rc == Z_STREAM_END && z.avail_out == 0;
  inflateEnd(&z);
  if (!whole) {
    return Err(Status::DataError(path + ": object at offset " + std::to_string(offset) +
                                 " does not inflate to its size"));
  }
  return std::make_pair(type, std::move(out));
}

// The parent named by a commit object's text (hex); nullopt for a root
// commit; DataError if it has more than one or the text is not a commit's.
Result<std::optional<std::string>> CommitParent(std::string_view text, std::string_view what) {
  std::optional<std::string> parent;
  size_t pos = 0;
  if (!text.starts_with("tree ")) return Err(Status::DataError(std::string(what) + ": not a commit"));
  for (;;) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos || nl == pos) break;  // end of the headers
    std::string_view line = text.substr(pos, nl - pos);
    if (line.starts_with("parent ")) {
      if (parent.has_value() || line.size() != 7 + GIT_OID_HEXSZ) {
        return Err(Status::DataError(std::string(what) + ": not a commit of this archive"));
      }
      parent = std::string(line.substr(7));
    }
    pos = nl + 1;
  }
  return parent;
}

}  // namespace

Status Archive::RollForwardIntent() {
  const std::string ref = dir_ + "/" + kBranch;
  const std::string lock = ref + ".lock";
  const std::string pack_dir = dir_ + "/objects/pack";
  auto text = ReadFile(lock, 4096);
  if (!text.has_value()) {
    return text.error().code() == Code::kNotFound ? Status::Ok() : text.error();
  }
  // Dropping: the commit's sync round did not finish (or the branch moved
  // on without it), so none of its appends was acknowledged. The branch is
  // not touched; ScanPacks removes its temporary files.
  auto drop = [&](const std::string& why) -> Status {
    Log(LogLevel::kWarn, "dropping an unfinished branch update left by an interrupted write",
        "archive=" + dir_ + " lock=refs/heads/main.lock reason=\"" + why + "\"");
    if (::unlink(lock.c_str()) != 0 && errno != ENOENT) {
      return Status::IoError(lock + ": cannot remove: " + std::strerror(errno));
    }
    return FsyncPath(dir_ + "/refs/heads");
  };
  git_oid id;
  if (text->size() != GIT_OID_HEXSZ + 1 || text->back() != '\n' ||
      git_oid_fromstrn(&id, text->data(), GIT_OID_HEXSZ) < 0 ||
      OidHex(id) != text->substr(0, GIT_OID_HEXSZ)) {
    git_error_clear();
    return drop("not a commit id (its write did not reach the disk)");
  }
  const std::string hex = OidHex(id);
  auto current = ReadBranch();
  if (!current.has_value()) return current.error();
  if (*current == hex) return drop("the branch names it already");

  // The commit: in the object database (its pair renamed into place, or
  // merged), else in a complete temporary index with its pack complete,
  // temporary or in place (the .pack is renamed first).
  std::optional<std::string> parent;
  std::string tmp_pack, tmp_idx;
  if (git_odb_exists(odb_.get(), &id) == 1) {
    git_commit* raw = nullptr;
    if (git_commit_lookup(&raw, repo_.get(), &id) < 0) {
      return GitStatus(Code::kDataError, dir_ + ": cannot read commit " + hex + " named by " + lock);
    }
    GitCommitPtr commit(raw);
    if (git_commit_parentcount(commit.get()) > 1) return drop("not a commit of this archive");
    if (git_commit_parentcount(commit.get()) == 1) parent = OidHex(*git_commit_parent_id(commit.get(), 0));
  } else {
    git_error_clear();
    std::error_code ec;
    std::map<std::string, std::string> packs;  // raw checksum -> complete temporary pack
    std::string sum;
    uint64_t offset = 0;
    for (const auto& e : fs::directory_iterator(pack_dir, ec)) {
      const std::string name = e.path().filename().string();
      if (name.starts_with("tmp_sealpost_pack_")) {
        if (std::string c = CompletePackChecksum(e.path().string()); !c.empty()) packs[c] = e.path().string();
      } else if (name.starts_with("tmp_sealpost_idx_") && tmp_idx.empty()) {
        std::string c = CompleteIdxPackChecksum(e.path().string());
        if (c.empty()) continue;
        auto entries = ReadPackIndexEntries(e.path().string());
        if (!entries.has_value()) continue;
        for (const IdxEntry& x : *entries) {
          if (git_oid_equal(&x.id, &id)) {
            tmp_idx = e.path().string();
            sum = c;
            offset = x.offset;
          }
        }
      }
    }
    if (ec) return Status::IoError(pack_dir + ": cannot list: " + ec.message());
    if (tmp_idx.empty()) return drop("no complete pack index holds commit " + hex);
    const std::string base = pack_dir + "/pack-" + HexEncode(sum);
    std::string pack_path;
    if (auto p = packs.find(sum); p != packs.end()) {
      tmp_pack = p->second;
      pack_path = tmp_pack;
    } else if (CompletePackChecksum(base + ".pack") == sum) {
      pack_path = base + ".pack";
    } else {
      return drop("the pack of commit " + hex + " is not complete");
    }
    auto object = ReadPackedObject(pack_path, offset);
    if (!object.has_value() || object->first != GIT_OBJECT_COMMIT) {
      return drop("commit " + hex + " cannot be read from its pack");
    }
    auto p = CommitParent(object->second, "commit " + hex);
    if (!p.has_value()) return drop(p.error().message());
    parent = *p;
  }
  // Compare-and-swap: only from the parent the commit was built on.
  if (parent != *current) {
    return drop("its parent " + parent.value_or("(none)") + " is not the branch's value " +
                current->value_or("(none)"));
  }
  // Roll forward. A killed process leaves its writes in the page cache
  // only: make them durable first, then the writer's own steps.
  {
    std::vector<int> fds;
    for (const std::string* path : std::initializer_list<const std::string*>{&tmp_pack, &tmp_idx, &lock}) {
      if (path->empty()) continue;
      int fd = ::open(path->c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        Status s = Status::IoError(*path + ": cannot open: " + std::strerror(errno));
        for (int f : fds) ::close(f);
        return s;
      }
      fds.push_back(fd);
    }
    Status synced = SyncFilesTogether(fds, lock);
    for (int f : fds) ::close(f);
    RETURN_STATUS_IF_ERROR(synced);
  }
  if (!tmp_idx.empty()) {
    const std::string base = pack_dir + "/pack-" + HexEncode(CompleteIdxPackChecksum(tmp_idx));
    if (!tmp_pack.empty() && ::rename(tmp_pack.c_str(), (base + ".pack").c_str()) != 0) {
      return Status::IoError(base + ".pack: cannot roll forward: " + std::strerror(errno));
    }
    if (::rename(tmp_idx.c_str(), (base + ".idx").c_str()) != 0) {
      return Status::IoError(base + ".idx: cannot roll forward: " + std::strerror(errno));
    }
  }
  RETURN_STATUS_IF_ERROR(FsyncPath(pack_dir));
  if (::rename(lock.c_str(), ref.c_str()) != 0) {
    return Status::IoError(ref + ": cannot roll the branch forward: " + std::strerror(errno));
  }
  RETURN_STATUS_IF_ERROR(FsyncPath(dir_ + "/refs/heads"));
  git_odb_refresh(odb_.get());
  Log(LogLevel::kWarn, "rolled the branch forward to a commit made durable before a crash",
      "archive=" + dir_ + " commit=" + hex);
  return Status::Ok();
}

Status Archive::ScanPacks() {
  RETURN_STATUS_IF_ERROR(RollForwardPacks());
  RETURN_STATUS_IF_ERROR(RollForwardIntent());
  std::lock_guard<std::mutex> lock(packs_mu_);
  packs_.clear();
  const std::string pack_dir = dir_ + "/objects/pack";
  std::error_code ec;
  std::set<std::string> idx, pack;
  for (const auto& e : fs::directory_iterator(pack_dir, ec)) {
    std::string name = e.path().filename().string();
    if (name.starts_with("pack-") && name.ends_with(".idx")) idx.insert(name.substr(0, name.size() - 4));
    else if (name.starts_with("pack-") && name.ends_with(".pack")) pack.insert(name.substr(0, name.size() - 5));
    else if (name.starts_with("pack_git2_") || name.starts_with("tmp_sealpost_") ||
             name.ends_with(".lock")) {
      // Temporary files of a pack write that a crash interrupted.
      Log(LogLevel::kWarn, "removing a temporary pack file left by an interrupted write",
          "archive=" + dir_ + " file=" + name);
      fs::remove(e.path(), ec);
    }
  }
  if (ec) return Status::IoError(pack_dir + ": cannot list: " + ec.message());
  for (const std::string& p : pack) {
    if (idx.count(p) == 0) {
      // The .pack is renamed into place before the .idx, and the branch
      // moves only after both: a .pack alone holds nothing the archive
      // refers to.
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
  // Runs in the merger thread, beside the writer: packs are immutable and
  // only this thread removes any, so the chosen ones stay while they are
  // copied; the writer only adds packs meanwhile.
  std::vector<PackInfo> merged;
  {
    std::lock_guard<std::mutex> lock(packs_mu_);
    if (packs_.size() <= kMaxPacks) return Status::Ok();
    std::sort(packs_.begin(), packs_.end(),
              [](const PackInfo& a, const PackInfo& b) { return a.objects < b.objects; });
    std::vector<uint64_t> sizes;
    for (const PackInfo& p : packs_) sizes.push_back(p.objects);
    const PackRun run = PacksToMerge(sizes);
    merged.assign(packs_.begin() + static_cast<std::ptrdiff_t>(run.first),
                  packs_.begin() + static_cast<std::ptrdiff_t>(run.first + run.count));
  }
  const std::string pack_dir = dir_ + "/objects/pack";
  auto writer = PackWriter::Create(pack_dir);
  if (!writer.has_value()) return writer.error();
  PackWriter& w = **writer;
  // Entries are copied as they are (no inflating, no delta search): the
  // packs this archive writes hold whole objects only. An OFS_DELTA entry
  // (from a pack written otherwise) is read through an object database of
  // this thread's own and stored whole.
  GitOdbPtr odb;
  for (const PackInfo& p : merged) {
    auto entries = ReadPackIndexEntries(pack_dir + "/" + p.name + ".idx");
    if (!entries.has_value()) return entries.error();
    if (!odb) {
      git_odb* raw = nullptr;
      if (git_odb_open(&raw, (dir_ + "/objects").c_str()) < 0) {
        return GitStatus(Code::kIoError, dir_ + ": cannot open the object database");
      }
      odb.reset(raw);
    }
    RETURN_STATUS_IF_ERROR(CopyPackEntries(pack_dir + "/" + p.name + ".pack", *entries, odb.get(), &w));
  }
  odb.reset();
  auto name = w.Finish();
  if (!name.has_value()) return name.error();
  RETURN_STATUS_IF_ERROR(w.Publish());
  RETURN_STATUS_IF_ERROR(FsyncPath(pack_dir));
  // The new pack is durable: now the small ones can go (index first, so no
  // reader ever sees an index without its pack). Readers use libgit2 under
  // repo_mu_, and libgit2 keeps removed packs in its list: swap the handle.
  std::lock_guard<std::mutex> repo_lock(repo_mu_);
  std::error_code ec;
  for (const PackInfo& p : merged) {
    if (p.name == *name) continue;
    fs::remove(pack_dir + "/" + p.name + ".idx", ec);
    fs::remove(pack_dir + "/" + p.name + ".pack", ec);
  }
  RETURN_STATUS_IF_ERROR(FsyncPath(pack_dir));
  {
    std::lock_guard<std::mutex> lock(packs_mu_);
    std::erase_if(packs_, [&](const PackInfo& p) {
      return std::any_of(merged.begin(), merged.end(),
                         [&](const PackInfo& m) { return m.name == p.name; });
    });
    packs_.push_back({*name, static_cast<uint32_t>(w.object_count())});
  }
  odb_.reset();
  repo_.reset();
  git_repository* raw = nullptr;
  if (git_repository_open_ext(&raw, dir_.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) < 0) {
    return GitStatus(Code::kIoError, dir_ + ": cannot reopen the repository after packing");
  }
  repo_.reset(raw);
  return SetUpOdb();
}

PackRun PacksToMerge(const std::vector<uint64_t>& objects) {
  if (objects.size() <= kMaxPacks) return {};
  PackRun best;
  for (size_t i = 0; i < objects.size(); ++i) {
    size_t k = 1;
    uint64_t taken = objects[i];
    while (k < kPacksPerMerge && i + k < objects.size() && objects[i + k] <= kMergeGrowth * taken) {
      taken += objects[i + k];
      ++k;
    }
    if (k >= kMinGoodMerge) return {i, k};
    if (k > best.count) best = {i, k};
  }
  if (best.count < 2) best = {0, 2};
  return best;
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

Status Archive::LoadTrees(git_tree* head_tree, uint64_t size) {
  Trees t;
  auto load = [&](git_tree* tree, std::map<std::string, TreeItem>* out) -> Status {
    for (size_t i = 0, n = git_tree_entrycount(tree); i < n; ++i) {
      const git_tree_entry* e = git_tree_entry_byindex(tree, i);
      git_filemode_t mode = git_tree_entry_filemode(e);
      if (mode != GIT_FILEMODE_BLOB && mode != GIT_FILEMODE_TREE) {
        return Status::DataError(dir_ + ": head tree holds \"" + git_tree_entry_name(e) +
                                 "\" with a mode sealpost never writes");
      }
      TreeItem item{git_tree_entry_name(e), *git_tree_entry_id(e), mode == GIT_FILEMODE_TREE};
      out->emplace(item.name, std::move(item));
    }
    return Status::Ok();
  };
  auto subtree = [&](const std::string& path) -> Result<GitTreePtr> {
    git_tree_entry* raw_entry = nullptr;
    if (git_tree_entry_bypath(&raw_entry, head_tree, path.c_str()) < 0) {
      return Err(GitStatus(Code::kDataError, dir_ + ": head tree lacks " + path));
    }
    GitTreeEntryPtr entry(raw_entry);
    git_object* raw = nullptr;
    if (git_tree_entry_type(entry.get()) != GIT_OBJECT_TREE ||
        git_tree_entry_to_object(&raw, repo_.get(), entry.get()) < 0) {
      return Err(GitStatus(Code::kDataError, dir_ + ": cannot read the tree " + path));
    }
    return GitTreePtr(reinterpret_cast<git_tree*>(raw));
  };
  RETURN_STATUS_IF_ERROR(load(head_tree, &t.root));
  for (auto [name, map] : {std::pair{"log", &t.log}, std::pair{"entries", &t.entries}}) {
    if (t.root.count(name) == 0) continue;
    auto tree = subtree(name);
    if (!tree.has_value()) return tree.error();
    RETURN_STATUS_IF_ERROR(load(tree->get(), map));
  }
  if (size > 0) {
    std::string p1 = "entries/" + Hex2(size >> 24), p2 = p1 + "/" + Hex2((size >> 16) & 0xff),
                p3 = p2 + "/" + Hex2((size >> 8) & 0xff);
    for (auto [path, map] : {std::pair{&p1, &t.shard1}, std::pair{&p2, &t.shard2},
                             std::pair{&p3, &t.shard3}}) {
      auto tree = subtree(*path);
      if (!tree.has_value()) return tree.error();
      RETURN_STATUS_IF_ERROR(load(tree->get(), map));
    }
    if (t.shard3.count(std::to_string(size)) == 0) {
      return Status::DataError(dir_ + ": head tree lacks " + EntryDir(size));
    }
  }
  t.last = size;
  std::lock_guard<std::mutex> lock(pipe_mu_);
  durable_trees_ = std::make_shared<const Trees>(std::move(t));
  return Status::Ok();
}

Result<std::optional<std::string>> Archive::ReadBranch() {
  // The loose ref, else its line in packed-refs.
  std::optional<std::string> current;
  auto loose = ReadFile(dir_ + "/" + kBranch, 4096);
  if (loose.has_value()) {
    current = *loose;
    if (!current->empty() && current->back() == '\n') current->pop_back();
  } else if (loose.error().code() == Code::kNotFound) {
    auto packed = ReadFile(dir_ + "/packed-refs", 64u << 20);
    if (packed.has_value()) {
      std::string_view text = *packed;
      const std::string suffix = std::string(" ") + kBranch;
      for (size_t pos = 0; pos < text.size();) {
        size_t nl = text.find('\n', pos);
        std::string_view line = text.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
        if (line.size() == GIT_OID_HEXSZ + suffix.size() && line.ends_with(suffix)) {
          current = std::string(line.substr(0, GIT_OID_HEXSZ));
        }
        if (nl == std::string_view::npos) break;
        pos = nl + 1;
      }
    } else if (packed.error().code() != Code::kNotFound) {
      return Err(packed.error());
    }
  } else {
    return Err(loose.error());
  }
  return current;
}

Result<int> Archive::LockBranch(bool has_expected, const git_oid& expected, const git_oid& next) {
  const std::string ref = dir_ + "/" + kBranch;
  const std::string lock = ref + ".lock";
  // git's lock protocol: whoever creates <ref>.lock owns the update.
  int fd = ::open(lock.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (errno == EEXIST) return Err(Status::Unavailable(dir_ + ": " + kBranch + " is locked"));
    return Err(Status::IoError(lock + ": cannot create: " + std::strerror(errno)));
  }
  auto fail = [&](Status s) -> Result<int> {
    AbortBranch(fd);
    return Err(std::move(s));
  };
  auto read = ReadBranch();
  if (!read.has_value()) return fail(read.error());
  const std::optional<std::string>& current = *read;
  const bool same = has_expected ? current.has_value() && *current == OidHex(expected)
                                 : !current.has_value();
  if (!same) {
    Status s = Status::FailedPrecondition(dir_ + ": " + kBranch +
                                          " was moved by someone else; refusing to append "
                                          "until the archive is reopened and audited");
    {
      std::lock_guard<std::mutex> state_lock(state_mu_);
      broken_ = s;
    }
    return fail(s);
  }
  std::string line = OidHex(next) + "\n";
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    return fail(Status::IoError(lock + ": cannot write: " + std::strerror(errno)));
  }
  return fd;
}

Status Archive::CommitBranch(int lock_fd) {
  const std::string ref = dir_ + "/" + kBranch;
  ::close(lock_fd);
  if (::rename((ref + ".lock").c_str(), ref.c_str()) != 0) {
    Status s = Status::IoError(ref + ": cannot move the branch: " + std::strerror(errno));
    ::unlink((ref + ".lock").c_str());
    return s;
  }
  return Status::Ok();
}

std::vector<JobPool::Job> Archive::DirSyncJobs() {
  return {[this] { return FsyncPath(dir_ + "/refs/heads"); },
          [this] { return FsyncPath(dir_ + "/objects/pack"); }};
}

Status Archive::SyncDirs() {
  // Both directories in one round (in parallel: ext4 joins the two fsyncs
  // into one journal commit).
  return SyncFilesTogether({}, dir_, sync_pool_.get(), DirSyncJobs());
}

void Archive::AbortBranch(int lock_fd) {
  ::close(lock_fd);
  ::unlink((dir_ + "/" + kBranch + ".lock").c_str());
}

Status Archive::PrepareEntry(const EntryInput& entry, std::string_view origin, Prepared* out) {
  out->sha256.assign(entry.files.size(), std::string());
  out->objects.assign(entry.files.size(), PackedObject());
  for (size_t i = 0; i < entry.files.size(); ++i) {
    const EntryFile& f = entry.files[i];
    if (!f.path.empty() || f.data.size() > kPrepareLimit) continue;
    auto digest = crypto::DigestBytes(EVP_sha256(), f.data);
    if (!digest.has_value()) return digest.error();
    auto packed = PackObject(GIT_OBJECT_BLOB, f.data);
    if (!packed.has_value()) return packed.error();
    out->sha256[i] = std::move(*digest);
    out->objects[i] = std::move(*packed);
  }
  out->manifest_prefix = ManifestPrefix(entry, origin, out->sha256);
  return Status::Ok();
}

Result<std::unique_ptr<Archive::Built>> Archive::BuildCommit(
    const std::vector<const EntryInput*>& batch, const std::vector<RootFile>& root_files,
    const Tip& tip, const std::vector<const Prepared*>& prepared) {
  // Work on copies: the tip changes only once the commit is handed on.
  merkle::CompactRange frontier = tip.frontier;
  const bool has_head = tip.has_head;
  const git_oid head = tip.head;
  const auto started = std::chrono::steady_clock::now();
  const uint64_t cpu_started = ThreadCpuNs();
  uint64_t sign_ns = 0, sign_cpu_ns = 0;
  Trees t;  // *tip.trees, copied by build_entries below
  const std::string pack_dir = dir_ + "/objects/pack";
  // The pack writer made ahead (WriterLoop), else a new one.
  Result<std::unique_ptr<PackWriter>> pack = std::move(spare_pack_);
  if (!*pack) pack = PackWriter::Create(pack_dir);
  if (!pack.has_value()) return Err(pack.error());
  PackWriter& pw = **pack;

  auto add = [&](git_object_t type, std::string_view data) -> Result<git_oid> {
    return pw.AddObject(type, data);
  };
  auto tree_of = [&](const std::map<std::string, TreeItem>& items) -> Result<git_oid> {
    std::vector<TreeItem> v;
    v.reserve(items.size());
    for (const auto& [name, item] : items) v.push_back(item);
    return add(GIT_OBJECT_TREE, SerializeTree(std::move(v)));
  };
  auto put = [](std::map<std::string, TreeItem>* m, const std::string& name, const git_oid& id,
                bool is_tree) { (*m)[name] = TreeItem{name, id, is_tree}; };
  // Writes the shard trees of t.last's path that changed into their parents
  // (deepest first, up to `levels` from the bottom).
  auto flush = [&](int levels) -> Status {
    const uint64_t s = t.last;
    if (levels >= 1 && t.dirty3) {
      auto id = tree_of(t.shard3);
      if (!id.has_value()) return id.error();
      put(&t.shard2, Hex2((s >> 8) & 0xff), *id, true);
      t.dirty3 = false;
      t.dirty2 = true;
    }
    if (levels >= 2 && t.dirty2) {
      auto id = tree_of(t.shard2);
      if (!id.has_value()) return id.error();
      put(&t.shard1, Hex2((s >> 16) & 0xff), *id, true);
      t.dirty2 = false;
      t.dirty1 = true;
    }
    if (levels >= 3 && t.dirty1) {
      auto id = tree_of(t.shard1);
      if (!id.has_value()) return id.error();
      put(&t.entries, Hex2(s >> 24), *id, true);
      t.dirty1 = false;
    }
    return Status::Ok();
  };

  const std::time_t now = std::time(nullptr);
  // The manifests, their leaves and the log's new root first: the
  // checkpoint depends on nothing else, so it is signed (in this thread:
  // the Signer is called from the writer only) while the entries' objects
  // and trees are built on build_pool_'s thread (decision 0005, "Writing").
  std::vector<Appended> out;
  out.reserve(batch.size());
  for (size_t n = 0; n < batch.size(); ++n) {
    const Prepared* ready = n < prepared.size() ? prepared[n] : nullptr;
    Appended a;
    a.seq = frontier.size() + 1;
    a.manifest = ready != nullptr ? FinishManifest(ready->manifest_prefix, a.seq, now)
                                  : BuildManifest(*batch[n], options_.origin, a.seq, now);
    a.leaf = merkle::LeafHash(a.manifest);
    frontier.AppendLeafHash(a.leaf);
    out.push_back(std::move(a));
  }
  const std::thread::id writer_thread = std::this_thread::get_id();
  uint64_t other_thread_cpu_ns = 0;  // build_entries' CPU when another thread ran it
  Status entries_built;
  auto build_entries = [&]() -> Status {
    const uint64_t cpu_start = ThreadCpuNs();
    entries_built = [&]() -> Status {
      t = *tip.trees;
      for (size_t n = 0; n < batch.size(); ++n) {
        const EntryInput* entry = batch[n];
        const Prepared* ready = n < prepared.size() ? prepared[n] : nullptr;
        const uint64_t seq = out[n].seq;
        std::map<std::string, TreeItem> files;
        for (size_t i = 0; i < entry->files.size(); ++i) {
          const EntryFile& f = entry->files[i];
          if (ready != nullptr && !ready->objects[i].entry.empty()) {
            // Made in the appender's thread (PrepareEntry).
            RETURN_STATUS_IF_ERROR(pw.AddPacked(ready->objects[i]));
            put(&files, f.name, ready->objects[i].id, false);
            continue;
          }
          if (!f.path.empty()) {
            // Streamed from disk in pieces (a document of any size).
            auto fo = pw.AddFileObject(GIT_OBJECT_BLOB, f.path);
            if (!fo.has_value()) return fo.error();
            if (fo->size != f.size || fo->sha256 != f.sha256) {
              return Status::DataError("entry file \"" + f.name + "\" (" + f.path +
                                       "): the file is not the declared content (size " +
                                       std::to_string(fo->size) + ", declared " +
                                       std::to_string(f.size) + ")");
            }
            put(&files, f.name, fo->id, false);
            continue;
          }
          auto id = add(GIT_OBJECT_BLOB, f.data);
          if (!id.has_value()) return id.error();
          put(&files, f.name, *id, false);
        }
        auto manifest_id = add(GIT_OBJECT_BLOB, out[n].manifest);
        if (!manifest_id.has_value()) return manifest_id.error();
        put(&files, "manifest.json", *manifest_id, false);
        auto entry_tree = tree_of(files);
        if (!entry_tree.has_value()) return entry_tree.error();
        // Moving to a new shard: the finished ones are written into their
        // parents and the new ones start empty (seq only grows).
        if (t.last != 0) {
          int levels = (seq >> 24) != (t.last >> 24)   ? 3
                       : (seq >> 16) != (t.last >> 16) ? 2
                       : (seq >> 8) != (t.last >> 8)   ? 1
                                                       : 0;
          RETURN_STATUS_IF_ERROR(flush(levels));
          if (levels >= 1) t.shard3.clear();
          if (levels >= 2) t.shard2.clear();
          if (levels >= 3) t.shard1.clear();
        }
        t.last = seq;
        put(&t.shard3, std::to_string(seq), *entry_tree, true);
        t.dirty3 = true;
      }
      RETURN_STATUS_IF_ERROR(flush(3));
      for (const RootFile& f : root_files) {
        if (f.path.find('/') != std::string::npos) {
          return Status::Internal("root file " + f.path + " is not at the root");
        }
        auto id = add(GIT_OBJECT_BLOB, f.data);
        if (!id.has_value()) return id.error();
        put(&t.root, f.path, *id, false);
      }
      return Status::Ok();
    }();
    if (std::this_thread::get_id() != writer_thread) other_thread_cpu_ns = ThreadCpuNs() - cpu_start;
    return entries_built;
  };

  crypto::Checkpoint cp{options_.origin, frontier.size(), frontier.Root(), {}};
  std::string body, cp_sig;
  Status checkpoint_signed;
  auto sign_checkpoint = [&]() -> Status {
    checkpoint_signed = [&]() -> Status {
      auto serialized = crypto::SerializeCheckpoint(cp);
      if (!serialized.has_value()) return serialized.error();
      body = std::move(*serialized);
      const auto sign_start = std::chrono::steady_clock::now();
      const uint64_t sign_cpu_start = ThreadCpuNs();
      auto signature = crypto::SignCheckpoint(*options_.signer, options_.seal_key, body);
      sign_ns += NsSince(sign_start);
      sign_cpu_ns += ThreadCpuNs() - sign_cpu_start;
      if (!signature.has_value()) return signature.error();
      cp_sig = std::move(*signature);
      return Status::Ok();
    }();
    return checkpoint_signed;
  };
  {
    // jobs[0] runs in this thread (JobPool::Run).
    const std::vector<JobPool::Job> jobs = {sign_checkpoint, build_entries};
    if (build_pool_) {
      (void)build_pool_->Run(jobs);
    } else {
      for (const JobPool::Job& job : jobs) (void)job();
    }
  }
  // An entry's error first, as when they were built before the signature.
  if (!entries_built.ok()) return Err(entries_built);
  if (!checkpoint_signed.ok()) return Err(checkpoint_signed);
  for (auto [name, data] : {std::pair<const char*, std::string_view>{"checkpoint", body},
                            {"checkpoint.p7s", cp_sig}}) {
    auto id = add(GIT_OBJECT_BLOB, data);
    if (!id.has_value()) return Err(id.error());
    put(&t.log, name, *id, false);
  }
  {
    auto id = add(GIT_OBJECT_BLOB, SerializeFrontier(frontier));
    if (!id.has_value()) return Err(id.error());
    put(&t.log, "frontier", *id, false);
  }
  for (auto [name, map] : {std::pair{"entries", &t.entries}, std::pair{"log", &t.log}}) {
    auto id = tree_of(*map);
    if (!id.has_value()) return Err(id.error());
    put(&t.root, name, *id, true);
  }
  auto tree_id = tree_of(t.root);
  if (!tree_id.has_value()) return Err(tree_id.error());

  // The commit, in the exact form libgit2's git_commit_create_buffer gives.
  const uint64_t first = out.front().seq, last = out.back().seq;
  std::string message = (first == last ? "Entry " + std::to_string(first)
                                       : "Entries " + std::to_string(first) + "-" +
                                             std::to_string(last)) +
                        "\n\nCheckpoint: " + std::to_string(cp.size) + " " +
                        merkle::ToHex(cp.root) + "\n";
  const std::string who = "sealpost <archive@sealpost.invalid> " + std::to_string(now) + " +0000";
  std::string header = "tree " + OidHex(*tree_id) + "\n";
  if (has_head) header += "parent " + OidHex(head) + "\n";
  header += "author " + who + "\ncommitter " + who + "\n";
  const std::string commit_text = header + "\n" + message;
  const auto sign_start = std::chrono::steady_clock::now();
  const uint64_t sign_cpu_start = ThreadCpuNs();
  auto armored = SignCommitBuffer(commit_text);
  sign_ns += NsSince(sign_start);
  sign_cpu_ns += ThreadCpuNs() - sign_cpu_start;
  if (!armored.has_value()) return Err(armored.error());
  // gpgsig header: continuation lines start with a space.
  std::string signed_commit = header + "gpgsig ";
  for (char c : *armored) {
    signed_commit.push_back(c);
    if (c == '\n') signed_commit.push_back(' ');
  }
  signed_commit += "\n\n" + message;
  auto commit_id = add(GIT_OBJECT_COMMIT, signed_commit);
  if (!commit_id.has_value()) return Err(commit_id.error());

  // The pack's trailer and index are written (not synced) here.
  auto name = pw.Seal();
  if (!name.has_value()) return Err(name.error());

  auto b = std::make_unique<Built>();
  b->build_cpu_ns = ThreadCpuNs() - cpu_started - sign_cpu_ns + other_thread_cpu_ns;
  b->sign_cpu_ns = sign_cpu_ns;
  b->sign_ns = sign_ns;
  b->build_ns = NsSince(started) - sign_ns;
  b->pack = std::move(*pack);
  b->commit = *commit_id;
  b->has_parent = has_head;
  b->parent = head;
  b->trees = std::make_shared<const Trees>(std::move(t));
  b->frontier = std::move(frontier);
  auto signed_cp = std::make_shared<CommittedCheckpoint>();
  signed_cp->size = cp.size;
  signed_cp->root = cp.root;
  signed_cp->body = std::move(body);
  signed_cp->signature = std::move(cp_sig);
  b->signed_checkpoint = std::move(signed_cp);
  b->checkpoint = std::move(cp);
  b->results = std::move(out);
  return b;
}

Status Archive::PublishCommit(Built& b) {
  // Durability, in one round of syncs (decision 0005): the pack, its index
  // and main.lock (the new ref value: the commit's durable intent), and
  // objects/pack (the pair's temporary names) and refs/heads (main.lock's
  // name, and the previous commit's ref rename), all in parallel. Then the
  // renames (.pack, .idx, main.lock over main), not synced: a crash before
  // the next round (or SyncDirs) leaves main.lock and the temporary pair,
  // and Open rolls them forward. The caller acknowledges after this.
  const std::string pack_dir = dir_ + "/objects/pack";
  PackWriter& pw = *b.pack;
  if (options_.before_round_for_testing) options_.before_round_for_testing(OidHex(b.commit));
  const auto sync_start = std::chrono::steady_clock::now();
  auto lock_fd = LockBranch(b.has_parent, b.parent, b.commit);
  if (!lock_fd.has_value()) return lock_fd.error();
  {
    // The five syncs at once, on the syncer's pool (no thread made per round).
    Status synced = pw.Sync({*lock_fd}, sync_pool_.get(), DirSyncJobs());
    if (!synced.ok()) {
      AbortBranch(*lock_fd);
      return synced;
    }
  }
  if (options_.before_renames_for_testing) options_.before_renames_for_testing(OidHex(b.commit));
  if (Status published = pw.Publish(); !published.ok()) {
    // main.lock was durable: its removal must be too, or a crash would
    // bring back a commit reported failed (best effort: the disk fails).
    AbortBranch(*lock_fd);
    (void)FsyncPath(dir_ + "/refs/heads");
    return published;
  }
  {
    std::lock_guard<std::mutex> lock(packs_mu_);
    packs_.push_back({pw.name(), static_cast<uint32_t>(pw.object_count())});
    if (packs_.size() > kMaxPacks) packs_cv_.notify_one();
  }
  if (Status moved = CommitBranch(*lock_fd); !moved.ok()) {
    (void)FsyncPath(dir_ + "/refs/heads");
    return moved;
  }
  {
    const uint64_t sync_ns = NsSince(sync_start);
    std::lock_guard<std::mutex> stats_lock(stats_mu_);
    ++stats_.commits;
    stats_.entries += b.results.size();
    stats_.sign_ns += b.sign_ns;
    stats_.sync_ns += sync_ns;
    stats_.build_ns += b.build_ns;
    stats_.build_cpu_ns += b.build_cpu_ns;
    stats_.sign_cpu_ns += b.sign_cpu_ns;
  }

  const std::string commit_hex = OidHex(b.commit);
  for (Appended& a : b.results) {
    a.commit = commit_hex;
    a.tree_size = b.checkpoint.size;
    a.checkpoint = b.signed_checkpoint;
  }
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    frontier_ = b.frontier;
    head_ = b.commit;
    has_head_ = true;
    checkpoint_ = b.checkpoint;
    signed_checkpoint_ = b.signed_checkpoint;
  }
  commits_written_.fetch_add(1);
  {
    std::lock_guard<std::mutex> lock(listener_mu_);
    if (listener_) listener_(b.results);
  }
  return Status::Ok();
}

Result<Appended> Archive::ChangeSeal(crypto::Signer* new_signer, crypto::KeyRef new_key) {
  if (new_signer == nullptr) return Err(Status::InvalidArgument("a seal change needs a signer"));
  auto cert = new_signer->Certificate(new_key);
  if (!cert.has_value()) return Err(cert.error().WithContext("new seal certificate"));
  // Between two commits, with the pipeline idle: the writer holds
  // writer_mu_ from building a commit to handing it to the syncer.
  std::lock_guard<std::mutex> lock(writer_mu_);
  DrainPipeline();
  {
    std::lock_guard<std::mutex> state_lock(state_mu_);
    if (!broken_.ok()) return Err(broken_);
  }
  X509* old_cert = seal_.get();
  if (X509_cmp(old_cert, cert->get()) == 0) {
    return Err(Status::InvalidArgument(dir_ + ": the new seal certificate is the one in force (" +
                                       crypto::DisplayName(old_cert) + ")"));
  }
  const std::string pem = CertPem(cert->get());
  if (pem.empty()) return Err(OpenSslStatus(Code::kInternal, "new seal certificate to PEM"));
  // seal.pem.p7s: signed by the seal in force, co-signed by the new one.
  auto sign_with = [&](crypto::Signer& signer, const crypto::KeyRef& key,
                       X509* signer_cert) -> Result<std::string> {
    auto alg = crypto::DigestAlgForKey(X509_get0_pubkey(signer_cert));
    if (!alg.has_value()) return Err(alg.error());
    auto digest = crypto::DigestBytes(crypto::DigestAlgMd(*alg), pem);
    if (!digest.has_value()) return Err(digest.error());
    return crypto::BuildDetachedSignature(signer, key, signer_cert, *alg, *digest,
                                          crypto::CadesSignOptions{});
  };
  auto by_old = sign_with(*options_.signer, options_.seal_key, old_cert);
  if (!by_old.has_value()) return Err(by_old.error().WithContext("seal change, seal in force"));
  auto by_new = sign_with(*new_signer, new_key, cert->get());
  if (!by_new.has_value()) return Err(by_new.error().WithContext("seal change, new seal"));
  auto both = crypto::MergeSignedData(*by_old, "seal.pem.p7s", *by_new);
  if (!both.has_value()) return Err(both.error().WithContext("seal change"));

  EntryInput entry;
  entry.kind = EntryKind::kKeyChange;
  entry.fields["change"] =
      EVP_PKEY_eq(X509_get0_pubkey(old_cert), X509_get0_pubkey(cert->get())) == 1 ? "renew"
                                                                                   : "rotate";
  entry.fields["seal_subject"] = crypto::NameToUtf8(X509_get_subject_name(cert->get()));
  entry.fields["seal_serial"] = crypto::SerialHex(cert->get());
  entry.files.push_back({"seal.pem", pem});
  entry.files.push_back({"seal.pem.p7s", *both});

  // The commit holding the change is signed by the new seal: switch first,
  // switch back if the commit fails.
  crypto::Signer* old_signer = options_.signer;
  crypto::KeyRef old_key = options_.seal_key;
  X509Ptr old_seal;
  {
    std::lock_guard<std::mutex> state_lock(state_mu_);
    old_seal = std::move(seal_);
    seal_ = std::move(*cert);
  }
  options_.signer = new_signer;
  options_.seal_key = new_key;
  std::vector<Appended> results;
  Status s = WriteNow({&entry}, {{"seal.pem", pem}}, &results);
  if (!s.ok()) {
    options_.signer = old_signer;
    options_.seal_key = old_key;
    std::lock_guard<std::mutex> state_lock(state_mu_);
    seal_ = std::move(old_seal);
    return Err(s);
  }
  Log(LogLevel::kInfo, "archive seal changed",
      "archive=" + dir_ + " seq=" + std::to_string(results[0].seq) + " change=" +
          entry.fields["change"]);
  return results[0];
}

X509Ptr Archive::seal_certificate() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return X509Ptr(seal_ ? X509_dup(seal_.get()) : nullptr);
}

uint64_t Archive::size() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return frontier_.size();
}

std::shared_ptr<const CommittedCheckpoint> Archive::signed_checkpoint() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return signed_checkpoint_;
}

void Archive::SetCommitListener(CommitListener listener) {
  std::lock_guard<std::mutex> lock(listener_mu_);
  listener_ = std::move(listener);
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
