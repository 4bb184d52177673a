#include "storage/git.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <mutex>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zlib.h>

#include "base/encoding.h"
#include "base/openssl.h"

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

namespace {

const char* TypeName(git_object_t type) {
  switch (type) {
    case GIT_OBJECT_COMMIT: return "commit";
    case GIT_OBJECT_TREE: return "tree";
    case GIT_OBJECT_BLOB: return "blob";
    case GIT_OBJECT_TAG: return "tag";
    default: return "";
  }
}

std::string RawId(const git_oid& id) {
  return std::string(reinterpret_cast<const char*>(id.id), GIT_OID_RAWSZ);
}

void PutBe32(std::string* out, uint32_t v) {
  out->push_back(static_cast<char>(v >> 24));
  out->push_back(static_cast<char>(v >> 16));
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}

Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::IoError(path + ": cannot write: " + std::strerror(errno));
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

std::string RandomSuffix() {
  unsigned char r[8];
  if (RAND_bytes(r, sizeof r) != 1) {
    // Uniqueness, not secrecy: fall back on the pid and the time.
    return std::to_string(::getpid()) + "_" + std::to_string(std::time(nullptr));
  }
  return HexEncode(std::string_view(reinterpret_cast<const char*>(r), sizeof r));
}

// A pack entry's header: the type and the size, 7 bits at a time after the
// first 4 (git's pack format, "object entries").
std::string PackEntryHeader(git_object_t type, uint64_t size) {
  std::string header;
  unsigned char c = static_cast<unsigned char>((static_cast<unsigned>(type) << 4) | (size & 0x0f));
  size >>= 4;
  while (size != 0) {
    header.push_back(static_cast<char>(c | 0x80));
    c = static_cast<unsigned char>(size & 0x7f);
    size >>= 7;
  }
  header.push_back(static_cast<char>(c));
  return header;
}

// True when `data` looks incompressible: the order-0 entropy of its first
// 16 KiB is above 7.5 bits per byte (random bytes, encrypted or already
// compressed documents: JPEG, ZIP-based formats, most PDF streams). Such an
// object is stored (deflate level 0): zlib at level 1 spends more time on it
// than on everything else in a commit and gains nothing. Small objects
// (< 512 bytes: manifests, trees, commits) are always deflated.
bool LooksIncompressible(std::string_view data) {
  if (data.size() < 512) return false;
  const size_t n = std::min<size_t>(data.size(), 16384);
  uint32_t counts[256] = {};
  for (size_t i = 0; i < n; ++i) ++counts[static_cast<unsigned char>(data[i])];
  double bits = 0;
  for (uint32_t c : counts) {
    if (c == 0) continue;
    const double p = static_cast<double>(c) / static_cast<double>(n);
    bits -= p * std::log2(p);
  }
  // A short sample of random bytes shows less than 8 bits (512 random bytes
  // give ~7.6): the threshold allows for that.
  return bits > (n >= 4096 ? 7.5 : 7.2);
}

}  // namespace

git_oid HashObject(git_object_t type, std::string_view data) {
  char header[32];
  int header_len = std::snprintf(header, sizeof header, "%s %zu", TypeName(type), data.size());
  // A context and an explicitly fetched SHA-1 per thread: EVP_MD_CTX_new
  // and the implicit fetch behind EVP_sha1() cost more than hashing a
  // small object.
  struct Sha1 {
    EVP_MD* md = EVP_MD_fetch(nullptr, "SHA1", nullptr);
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Sha1() {
      EVP_MD_CTX_free(ctx);
      EVP_MD_free(md);
    }
  };
  thread_local Sha1 sha1;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  git_oid id{};
  if (sha1.md == nullptr || sha1.ctx == nullptr ||
      EVP_DigestInit_ex2(sha1.ctx, sha1.md, nullptr) != 1 ||
      EVP_DigestUpdate(sha1.ctx, header, static_cast<size_t>(header_len) + 1) != 1 ||
      EVP_DigestUpdate(sha1.ctx, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(sha1.ctx, md, &len) != 1 || len != GIT_OID_RAWSZ) {
    // SHA-1 over memory does not fail short of memory exhaustion; an all-zero
    // id is never a valid object and makes the write fail further on.
    return id;
  }
  std::memcpy(id.id, md, GIT_OID_RAWSZ);
  return id;
}

std::string SerializeTree(std::vector<TreeItem> items) {
  // git's order: bytewise, a directory compared as if its name ended in '/'
  // (without building that name for every comparison).
  std::sort(items.begin(), items.end(), [](const TreeItem& a, const TreeItem& b) {
    const size_t n = std::min(a.name.size(), b.name.size());
    if (int c = std::memcmp(a.name.data(), b.name.data(), n); c != 0) return c < 0;
    auto next = [n](const TreeItem& t) -> int {
      if (t.name.size() > n) return static_cast<unsigned char>(t.name[n]);
      return t.is_tree ? '/' : -1;
    };
    return next(a) < next(b);
  });
  size_t total = 0;
  for (const TreeItem& t : items) total += 8 + t.name.size() + GIT_OID_RAWSZ;
  std::string out;
  out.reserve(total);
  for (const TreeItem& t : items) {
    out += t.is_tree ? "40000 " : "100644 ";
    out += t.name;
    out.push_back('\0');
    out.append(reinterpret_cast<const char*>(t.id.id), GIT_OID_RAWSZ);
  }
  return out;
}

JobPool::JobPool(size_t threads) {
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

JobPool::~JobPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void JobPool::Work(std::unique_lock<std::mutex>& lock) {
  while (round_ != nullptr && round_->next < round_->jobs->size()) {
    Round* r = round_;
    const size_t i = r->next++;
    lock.unlock();
    Status s = (*r->jobs)[i]();
    lock.lock();
    r->results[i] = std::move(s);
    // The last one done wakes Run(); r stays valid until then.
    if (++r->done == r->jobs->size()) done_cv_.notify_all();
  }
}

void JobPool::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] {
      return stopping_ || (round_ != nullptr && round_->next < round_->jobs->size());
    });
    if (stopping_) return;  // no Run() is in progress: the pool is being destroyed
    Work(lock);
  }
}

Status JobPool::Run(const std::vector<Job>& jobs) {
  if (jobs.empty()) return Status::Ok();
  std::lock_guard<std::mutex> run_lock(run_mu_);
  Round round;
  round.jobs = &jobs;
  round.results.assign(jobs.size(), Status::Ok());
  std::unique_lock<std::mutex> lock(mu_);
  round_ = &round;
  if (jobs.size() > 1) work_cv_.notify_all();
  // mu_ is held from here to Work's first job: jobs[0] runs in this thread.
  Work(lock);
  done_cv_.wait(lock, [&] { return round.done == jobs.size(); });
  round_ = nullptr;
  lock.unlock();
  for (Status& s : round.results) {
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

Status SyncFilesTogether(const std::vector<int>& fds, std::string_view what, JobPool* pool,
                         const std::vector<JobPool::Job>& extra_jobs) {
  std::vector<JobPool::Job> jobs;
  jobs.reserve(fds.size() + extra_jobs.size());
  for (int fd : fds) {
    jobs.push_back([fd, what]() -> Status {
      if (::fdatasync(fd) == 0) return Status::Ok();
      return Status::IoError(std::string(what) + ": fdatasync failed: " + std::strerror(errno));
    });
  }
  jobs.insert(jobs.end(), extra_jobs.begin(), extra_jobs.end());
  if (jobs.empty()) return Status::Ok();
  if (pool != nullptr) return pool->Run(jobs);
  std::vector<std::future<Status>> others;
  for (size_t i = 1; i < jobs.size(); ++i) {
    others.push_back(std::async(std::launch::async, jobs[i]));
  }
  Status first = jobs[0]();
  for (auto& f : others) {
    Status s = f.get();
    if (first.ok()) first = std::move(s);
  }
  return first;
}

PackWriter::PackWriter(std::string dir, std::string pack_tmp, std::string idx_tmp, int pack_fd)
    : dir_(std::move(dir)), pack_tmp_(std::move(pack_tmp)), idx_tmp_(std::move(idx_tmp)),
      pack_fd_(pack_fd) {}

PackWriter::~PackWriter() {
  for (int i = 0; i < 2; ++i) {
    if (zs_ready_[i]) deflateEnd(&zs_[i]);
  }
  if (pack_fd_ >= 0) ::close(pack_fd_);
  if (idx_fd_ >= 0) ::close(idx_fd_);
  if (!published_) {
    ::unlink(pack_tmp_.c_str());
    ::unlink(idx_tmp_.c_str());
  }
}

Result<std::unique_ptr<PackWriter>> PackWriter::Create(const std::string& pack_dir) {
  std::string suffix = RandomSuffix();
  std::string pack_tmp = pack_dir + "/tmp_sealpost_pack_" + suffix;
  std::string idx_tmp = pack_dir + "/tmp_sealpost_idx_" + suffix;
  int fd = ::open(pack_tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (fd < 0) {
    return Err(Status::IoError(pack_tmp + ": cannot create: " + std::strerror(errno)));
  }
  std::unique_ptr<PackWriter> w(new PackWriter(pack_dir, pack_tmp, idx_tmp, fd));
  // The index file too, now: creating files is a good part of a small
  // commit's cost (ext4 inode allocation), and the archive creates the
  // writer of its next commit ahead, while the disk syncs the current one.
  w->idx_fd_ = ::open(idx_tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (w->idx_fd_ < 0) {
    return Err(Status::IoError(idx_tmp + ": cannot create: " + std::strerror(errno)));
  }
  // "PACK", version 2, and the object count, rewritten by Finish() once known.
  SP_RETURN_IF_ERROR(w->Write(std::string_view("PACK\0\0\0\2\0\0\0\0", 12)));
  return w;
}

Status PackWriter::Write(std::string_view bytes) {
  buf_.append(bytes);
  offset_ += bytes.size();
  return buf_.size() > kBufferLimit ? Flush() : Status::Ok();
}

Status PackWriter::Flush() {
  if (buf_.empty()) return Status::Ok();
  if (::lseek(pack_fd_, static_cast<off_t>(flushed_), SEEK_SET) < 0) {
    return Status::IoError(pack_tmp_ + ": cannot seek: " + std::strerror(errno));
  }
  if (Status s = WriteAll(pack_fd_, buf_, pack_tmp_); !s.ok()) return s;
  flushed_ += buf_.size();
  buf_.clear();
  return Status::Ok();
}

namespace {

// A zlib stream of stored blocks — what deflate at level 0 writes — made
// without zlib's deflate: a 2-byte header, blocks of at most 65,535 bytes
// (final bit, LEN, NLEN), the Adler-32. Any inflater reads it.
void AppendStoredZlib(std::string* out, std::string_view data) {
  out->reserve(out->size() + 2 + data.size() + 5 * (data.size() / 65535 + 1) + 4);
  out->push_back(static_cast<char>(0x78));  // deflate, 32 KiB window
  out->push_back(static_cast<char>(0x01));  // (0x7801 % 31 == 0), no dictionary
  size_t pos = 0;
  do {
    const size_t n = std::min<size_t>(65535, data.size() - pos);
    const bool final = pos + n == data.size();
    out->push_back(static_cast<char>(final ? 1 : 0));
    out->push_back(static_cast<char>(n & 0xff));
    out->push_back(static_cast<char>((n >> 8) & 0xff));
    out->push_back(static_cast<char>(~n & 0xff));
    out->push_back(static_cast<char>((~n >> 8) & 0xff));
    out->append(data.substr(pos, n));
    pos += n;
  } while (pos < data.size());
  PutBe32(out, static_cast<uint32_t>(adler32_z(1L, reinterpret_cast<const Bytef*>(data.data()),
                                               data.size())));
}

// Level-1 deflate streams of this thread, one per window size, made once
// and reset per object. Why: deflateReset clears the stream's hash table
// (64 KiB with the default memLevel 8) and deflateInit allocates ~270 KiB;
// nearly all of a commit's objects (manifests, trees, signatures,
// checkpoints, the commit) are far smaller than 32 KiB. A window and hash
// table sized to the object compress it exactly as well (every match is
// within the window) for a fraction of the clearing. Inflaters read any
// window size up to 32 KiB.
class SmallDeflaters {
 public:
  ~SmallDeflaters() {
    for (Slot& s : slots_) {
      if (s.ready) deflateEnd(&s.zs);
    }
  }
  // The stream for `size` bytes, reset; nullptr if zlib cannot make it.
  z_stream* For(size_t size) {
    // window 2^bits must hold the object plus zlib's look-ahead (262).
    size_t k = 0;
    while (k + 1 < kBits.size() && (size_t{1} << kBits[k]) < size + 262) ++k;
    Slot& s = slots_[k];
    if (!s.ready) {
      s.zs = z_stream{};
      const int bits = kBits[k];
      const int mem_level = std::clamp(bits - 7, 1, 8);  // hash of 2^(mem_level+7) heads
      if (deflateInit2(&s.zs, 1, Z_DEFLATED, bits, mem_level, Z_DEFAULT_STRATEGY) != Z_OK) {
        return nullptr;
      }
      s.ready = true;
    } else if (deflateReset(&s.zs) != Z_OK) {
      return nullptr;
    }
    return &s.zs;
  }

 private:
  static constexpr std::array<int, 4> kBits = {10, 12, 14, 15};
  struct Slot {
    z_stream zs{};
    bool ready = false;
  };
  std::array<Slot, kBits.size()> slots_;
};

}  // namespace

namespace {

// Fills out->entry and out->crc (out->id is the caller's).
Status DeflateObject(git_object_t type, std::string_view data, PackedObject* out) {
  std::string& entry = out->entry;
  entry = PackEntryHeader(type, data.size());
  const size_t header_len = entry.size();
  // Stored (level 0) for data that looks incompressible, level 1 for the
  // rest: the small text objects (manifests, trees) gain little from
  // harder work. z_stream counts in 32 bits: objects of 1 GiB and more go
  // through compress2, which loops.
  if (LooksIncompressible(data)) {
    AppendStoredZlib(&entry, data);
  } else if (data.size() >= (1u << 30)) {
    uLongf bound = compressBound(static_cast<uLong>(data.size()));
    entry.resize(header_len + bound);
    int rc = compress2(reinterpret_cast<Bytef*>(entry.data() + header_len), &bound,
                       reinterpret_cast<const Bytef*>(data.data()), static_cast<uLong>(data.size()), 1);
    if (rc != Z_OK) return Status::Internal("zlib cannot deflate an object (" + std::to_string(rc) + ")");
    entry.resize(header_len + bound);
  } else {
    thread_local SmallDeflaters deflaters;
    z_stream* zs = deflaters.For(data.size());
    if (zs == nullptr) return Status::Internal("zlib cannot start deflating");
    const uLong bound = deflateBound(zs, static_cast<uLong>(data.size()));
    entry.resize(header_len + bound);
    zs->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    zs->avail_in = static_cast<uInt>(data.size());
    zs->next_out = reinterpret_cast<Bytef*>(entry.data() + header_len);
    zs->avail_out = static_cast<uInt>(bound);
    int rc = deflate(zs, Z_FINISH);
    if (rc != Z_STREAM_END) {
      return Status::Internal("zlib cannot deflate an object (" + std::to_string(rc) + ")");
    }
    entry.resize(header_len + (bound - zs->avail_out));
  }
  out->crc = static_cast<uint32_t>(
      crc32_z(0L, reinterpret_cast<const Bytef*>(entry.data()), entry.size()));
  return Status::Ok();
}

}  // namespace

Result<PackedObject> PackObject(git_object_t type, std::string_view data) {
  PackedObject out;
  out.id = HashObject(type, data);
  SP_RETURN_IF_ERROR(DeflateObject(type, data, &out));
  return out;
}

Result<git_oid> PackWriter::AddObject(git_object_t type, std::string_view data) {
  PackedObject packed;
  packed.id = HashObject(type, data);
  if (seen_.count(RawId(packed.id)) != 0) return packed.id;
  SP_RETURN_IF_ERROR(DeflateObject(type, data, &packed));
  SP_RETURN_IF_ERROR(AddPacked(packed));
  return packed.id;
}

Status PackWriter::AddPacked(const PackedObject& object) {
  return AddRawEntry(object.id, object.entry, object.crc);
}

Result<PackWriter::FileObject> PackWriter::AddFileObject(git_object_t type, const std::string& path) {
  // Two passes over the file: the first computes the object id (a second
  // copy of an object already in this pack is not written) and its SHA-256;
  // the second deflates it into the pack in pieces and checks that the file
  // did not change in between. Memory: a few fixed buffers, whatever the size.
  constexpr size_t kChunk = 1u << 20;
  struct Fd {
    int v;
    ~Fd() { if (v >= 0) ::close(v); }
    int get() const { return v; }
  } fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (fd.get() < 0) return Err(Status::IoError(path + ": cannot open: " + std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Err(Status::IoError(path + ": not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  std::unique_ptr<char[]> in(new char[kChunk]);
  std::string object_header = std::string(git_object_type2string(type)) + " " + std::to_string(size);
  object_header.push_back('\0');
  using Ctx = std::unique_ptr<EVP_MD_CTX, CDeleter<EVP_MD_CTX_free>>;
  auto hash_pass = [&](std::string* sha256_out, const std::function<Status(std::string_view)>& each)
      -> Result<git_oid> {
    Ctx sha1(EVP_MD_CTX_new()), sha256(EVP_MD_CTX_new());
    if (!sha1 || !sha256 || EVP_DigestInit_ex(sha1.get(), EVP_sha1(), nullptr) != 1 ||
        EVP_DigestInit_ex(sha256.get(), EVP_sha256(), nullptr) != 1) {
      return Err(OpenSslStatus(Code::kInternal, "SHA-1/SHA-256 for an object"));
    }
    EVP_DigestUpdate(sha1.get(), object_header.data(), object_header.size());
    uint64_t pos = 0;
    while (pos < size) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, size - pos));
      ssize_t n = ::pread(fd.get(), in.get(), want, static_cast<off_t>(pos));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Err(Status::DataError(path + ": changed or unreadable while archived"));
      std::string_view piece(in.get(), static_cast<size_t>(n));
      EVP_DigestUpdate(sha1.get(), piece.data(), piece.size());
      EVP_DigestUpdate(sha256.get(), piece.data(), piece.size());
      if (each) SP_RETURN_IF_ERROR(each(piece));
      pos += static_cast<uint64_t>(n);
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    git_oid id{};
    if (EVP_DigestFinal_ex(sha1.get(), md, &len) != 1 || len != GIT_OID_RAWSZ) {
      return Err(OpenSslStatus(Code::kInternal, "SHA-1 for an object"));
    }
    std::memcpy(id.id, md, GIT_OID_RAWSZ);
    if (EVP_DigestFinal_ex(sha256.get(), md, &len) != 1) {
      return Err(OpenSslStatus(Code::kInternal, "SHA-256 for an object"));
    }
    sha256_out->assign(reinterpret_cast<const char*>(md), len);
    return id;
  };

  FileObject out;
  out.size = size;
  auto id = hash_pass(&out.sha256, nullptr);
  if (!id) return Err(id.error());
  out.id = *id;
  if (!seen_.insert(RawId(out.id)).second) return out;

  const std::string header = PackEntryHeader(type, size);
  // Level as AddObject would choose, judged on the first piece.
  ssize_t first = ::pread(fd.get(), in.get(), static_cast<size_t>(std::min<uint64_t>(kChunk, size)), 0);
  if (first < 0) return Err(Status::IoError(path + ": cannot read: " + std::strerror(errno)));
  const int level = LooksIncompressible(std::string_view(in.get(), static_cast<size_t>(first))) ? 0 : 1;
  z_stream& zs = zs_[level];
  if (!zs_ready_[level]) {
    if (deflateInit(&zs, level) != Z_OK) return Err(Status::Internal("zlib cannot start deflating"));
    zs_ready_[level] = true;
  } else if (deflateReset(&zs) != Z_OK) {
    return Err(Status::Internal("zlib cannot reset its stream"));
  }
  // Everything buffered so far goes to the file first; from here on every
  // deflated piece is written through (the buffer stays one piece long).
  SP_RETURN_IF_ERROR(Flush());
  const uint64_t entry_offset = offset_;
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(header.data()), static_cast<uInt>(header.size()));
  SP_RETURN_IF_ERROR(Write(header));
  std::unique_ptr<char[]> zout(new char[kChunk]);
  auto pump = [&](std::string_view piece, int flush) -> Status {
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(piece.data()));
    zs.avail_in = static_cast<uInt>(piece.size());
    for (;;) {
      zs.next_out = reinterpret_cast<Bytef*>(zout.get());
      zs.avail_out = static_cast<uInt>(kChunk);
      int rc = deflate(&zs, flush);
      if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
        return Status::Internal("zlib cannot deflate an object (" + std::to_string(rc) + ")");
      }
      size_t produced = kChunk - zs.avail_out;
      if (produced > 0) {
        crc = crc32(crc, reinterpret_cast<const Bytef*>(zout.get()), static_cast<uInt>(produced));
        if (Status w = Write(std::string_view(zout.get(), produced)); !w.ok()) return w;
        if (Status f = Flush(); !f.ok()) return f;
      }
      if (flush == Z_FINISH ? rc == Z_STREAM_END : (zs.avail_in == 0 && zs.avail_out != 0)) break;
    }
    return Status::Ok();
  };
  std::string again;
  auto second = hash_pass(&again, [&](std::string_view piece) { return pump(piece, Z_NO_FLUSH); });
  if (!second) return Err(second.error());
  SP_RETURN_IF_ERROR(pump(std::string_view(), Z_FINISH));
  if (git_oid_cmp(&*second, &out.id) != 0 || again != out.sha256) {
    return Err(Status::DataError(path + ": changed while it was archived"));
  }
  entries_.push_back({out.id, entry_offset, static_cast<uint32_t>(crc)});
  // Release the pieces' buffer capacity (the archive's commits otherwise
  // keep it until Seal).
  buf_.shrink_to_fit();
  return out;
}

Status PackWriter::AddRawEntry(const git_oid& id, std::string_view entry, uint32_t crc) {
  if (!seen_.insert(RawId(id)).second) return Status::Ok();
  entries_.push_back({id, offset_, crc});
  return Write(entry);
}

Result<std::string> PackWriter::Seal() {
  if (sealed_) return Err(Status::Internal("PackWriter::Seal called twice"));
  // The checksum covers the header, which holds the count known only now.
  std::string header("PACK\0\0\0\2", 8);
  PutBe32(&header, static_cast<uint32_t>(entries_.size()));
  unsigned char sum[EVP_MAX_MD_SIZE];
  unsigned int sum_len = 0;
  if (flushed_ == 0) {
    // Everything is in memory (the archive's commits): patch the header,
    // hash, append the checksum and write the pack in one go.
    buf_.replace(0, header.size(), header);
    if (EVP_Digest(buf_.data(), buf_.size(), sum, &sum_len, EVP_sha1(), nullptr) != 1 ||
        sum_len != GIT_OID_RAWSZ) {
      return Err(OpenSslStatus(Code::kInternal, "SHA-1 for a pack"));
    }
    buf_.append(reinterpret_cast<const char*>(sum), GIT_OID_RAWSZ);
    SP_RETURN_IF_ERROR(WriteAll(pack_fd_, buf_, pack_tmp_));
    flushed_ = offset_;
    buf_.clear();
    buf_.shrink_to_fit();
  } else {
    // A large pack (merges): the rest to the file, the header rewritten,
    // then the file hashed once more, in order (it is in the page cache).
    SP_RETURN_IF_ERROR(Flush());
    if (::pwrite(pack_fd_, header.data(), header.size(), 0) != static_cast<ssize_t>(header.size())) {
      return Err(Status::IoError(pack_tmp_ + ": cannot write the header: " + std::strerror(errno)));
    }
    std::unique_ptr<EVP_MD_CTX, CDeleter<EVP_MD_CTX_free>> ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha1(), nullptr) != 1) {
      return Err(OpenSslStatus(Code::kInternal, "SHA-1 for a pack"));
    }
    constexpr size_t kChunk = 1 << 20;
    std::unique_ptr<char[]> chunk(new char[kChunk]);
    uint64_t pos = 0;
    while (pos < offset_) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, offset_ - pos));
      ssize_t n = ::pread(pack_fd_, chunk.get(), want, static_cast<off_t>(pos));
      if (n <= 0) return Err(Status::IoError(pack_tmp_ + ": cannot read back: " + std::strerror(errno)));
      EVP_DigestUpdate(ctx.get(), chunk.get(), static_cast<size_t>(n));
      pos += static_cast<uint64_t>(n);
    }
    if (EVP_DigestFinal_ex(ctx.get(), sum, &sum_len) != 1 || sum_len != GIT_OID_RAWSZ) {
      return Err(OpenSslStatus(Code::kInternal, "SHA-1 for a pack"));
    }
    if (::pwrite(pack_fd_, sum, GIT_OID_RAWSZ, static_cast<off_t>(offset_)) != GIT_OID_RAWSZ) {
      return Err(Status::IoError(pack_tmp_ + ": cannot write the checksum: " + std::strerror(errno)));
    }
  }
  std::string_view checksum(reinterpret_cast<const char*>(sum), GIT_OID_RAWSZ);
  // Version 2 index: magic, version, fan-out, sorted ids, CRCs, 31-bit
  // offsets (with the high bit pointing into a table of 64-bit ones),
  // the pack checksum, and the index's own checksum.
  std::vector<const Entry*> sorted;
  sorted.reserve(entries_.size());
  for (const Entry& e : entries_) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const Entry* a, const Entry* b) {
    return std::memcmp(a->id.id, b->id.id, GIT_OID_RAWSZ) < 0;
  });
  std::string idx("\377tOc\0\0\0\2", 8);
  idx.reserve(8 + 1024 + sorted.size() * 28 + 40);
  uint32_t fanout[256] = {};
  for (const Entry* e : sorted) ++fanout[e->id.id[0]];
  uint32_t running = 0;
  for (uint32_t& f : fanout) {
    running += f;
    f = running;
  }
  for (uint32_t f : fanout) PutBe32(&idx, f);
  for (const Entry* e : sorted) idx.append(reinterpret_cast<const char*>(e->id.id), GIT_OID_RAWSZ);
  for (const Entry* e : sorted) PutBe32(&idx, e->crc);
  std::vector<uint64_t> large;
  for (const Entry* e : sorted) {
    if (e->offset < 0x80000000ull) {
      PutBe32(&idx, static_cast<uint32_t>(e->offset));
    } else {
      PutBe32(&idx, 0x80000000u | static_cast<uint32_t>(large.size()));
      large.push_back(e->offset);
    }
  }
  for (uint64_t off : large) {
    PutBe32(&idx, static_cast<uint32_t>(off >> 32));
    PutBe32(&idx, static_cast<uint32_t>(off));
  }
  idx.append(checksum);
  unsigned char idx_sum[EVP_MAX_MD_SIZE];
  unsigned int idx_sum_len = 0;
  if (EVP_Digest(idx.data(), idx.size(), idx_sum, &idx_sum_len, EVP_sha1(), nullptr) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "SHA-1 for a pack index"));
  }
  idx.append(reinterpret_cast<const char*>(idx_sum), idx_sum_len);

  SP_RETURN_IF_ERROR(WriteAll(idx_fd_, idx, idx_tmp_));
  for (int i = 0; i < 2; ++i) {
    if (zs_ready_[i]) deflateEnd(&zs_[i]);
    zs_ready_[i] = false;
  }
  name_ = "pack-" + HexEncode(checksum);
  sealed_ = true;
  return name_;
}

Status PackWriter::Sync(const std::vector<int>& extra_fds, JobPool* pool,
                        const std::vector<JobPool::Job>& extra_jobs) {
  if (!sealed_) return Status::Internal("PackWriter::Sync before Seal");
  std::vector<int> fds = {pack_fd_, idx_fd_};
  fds.insert(fds.end(), extra_fds.begin(), extra_fds.end());
  const std::string what = dir_ + ": new pack";
  return SyncFilesTogether(fds, what, pool, extra_jobs);
}

Result<std::string> PackWriter::Finish(int extra_fd) {
  auto name = Seal();
  if (!name.has_value()) return name;
  std::vector<int> extra;
  if (extra_fd >= 0) extra.push_back(extra_fd);
  SP_RETURN_IF_ERROR(Sync(extra));
  return name;
}



Status PackWriter::Publish() {
  if (!sealed_) return Status::Internal("PackWriter::Publish before Seal");
  std::string pack = dir_ + "/" + name_ + ".pack";
  std::string idx = dir_ + "/" + name_ + ".idx";
  // The .pack first: a .pack without its .idx is removed at open, an .idx
  // without its .pack would name objects that cannot be read.
  if (::rename(pack_tmp_.c_str(), pack.c_str()) != 0) {
    return Status::IoError(pack + ": cannot rename into place: " + std::strerror(errno));
  }
  if (::rename(idx_tmp_.c_str(), idx.c_str()) != 0) {
    return Status::IoError(idx + ": cannot rename into place: " + std::strerror(errno));
  }
  published_ = true;
  return Status::Ok();
}

}  // namespace sealpost::storage
