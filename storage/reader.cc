#include "storage/reader.h"

#include <algorithm>
#include <filesystem>

#include "base/encoding.h"
#include "base/utf8.h"
#include "crypto/certs.h"
#include "storage/archive.h"

namespace sealpost::storage {
namespace {

namespace fs = std::filesystem;
namespace merkle = crypto::merkle;

#define SP_RETURN_STATUS(expr)                    \
  do {                                            \
    ::sealpost::Status sp_s__ = (expr);           \
    if (!sp_s__.ok()) return sp_s__;              \
  } while (0)

constexpr const char* kBranch = "refs/heads/main";
constexpr size_t kMaxManifestBytes = 8u << 20;

// A strict reader of the JSON subset that manifests use.
class JsonReader {
 public:
  JsonReader(std::string_view text, std::string_view source) : s_(text), source_(source) {}

  Status Fail(const std::string& what) const {
    return Status::DataError(std::string(source_) + ": " + what + " at byte " +
                             std::to_string(pos_));
  }
  bool Peek(char c) const { return pos_ < s_.size() && s_[pos_] == c; }
  Status Expect(char c) {
    if (!Peek(c)) return Fail(std::string("expected '") + c + "'");
    ++pos_;
    return Status::Ok();
  }
  bool AtEnd() const { return pos_ == s_.size(); }

  Result<std::string> String() {
    SP_RETURN_IF_ERROR(Expect('"'));
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != '"') {
      unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c < 0x20) return Err(Fail("control character in a string"));
      if (c != '\\') {
        out.push_back(static_cast<char>(c));
        ++pos_;
        continue;
      }
      if (++pos_ >= s_.size()) return Err(Fail("truncated escape"));
      char e = s_[pos_++];
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          if (pos_ + 4 > s_.size()) return Err(Fail("truncated \\u escape"));
          auto bytes = HexDecode(s_.substr(pos_, 4));
          if (!bytes) return Err(Fail("bad \\u escape"));
          pos_ += 4;
          unsigned cp = (static_cast<unsigned char>((*bytes)[0]) << 8) |
                        static_cast<unsigned char>((*bytes)[1]);
          // Manifests escape only control characters (U+0000..U+007F);
          // anything else arrives as UTF-8 bytes.
          if (cp >= 0x80) return Err(Fail("unexpected \\u escape above U+007F"));
          out.push_back(static_cast<char>(cp));
          break;
        }
        default: return Err(Fail("bad escape"));
      }
    }
    SP_RETURN_IF_ERROR(Expect('"'));
    if (!IsValidUtf8(out)) return Err(Fail("string is not UTF-8"));
    return out;
  }

  Result<uint64_t> Integer() {
    size_t start = pos_;
    uint64_t v = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      uint64_t next = v * 10 + static_cast<uint64_t>(s_[pos_] - '0');
      if (next / 10 != v) return Err(Fail("integer out of range"));
      v = next;
      ++pos_;
    }
    if (pos_ == start) return Err(Fail("expected a non-negative integer"));
    if (pos_ - start > 1 && s_[start] == '0') return Err(Fail("integer with a leading zero"));
    return v;
  }

 private:
  std::string_view s_;
  std::string_view source_;
  size_t pos_ = 0;
};

Status ParseFile(JsonReader& r, ManifestFile* f) {
  SP_RETURN_STATUS(r.Expect('{'));
  bool name = false, sha = false, size = false;
  bool first = true;
  while (!r.Peek('}')) {
    if (!first) SP_RETURN_STATUS(r.Expect(','));
    first = false;
    auto key = r.String();
    if (!key) return key.error();
    SP_RETURN_STATUS(r.Expect(':'));
    if (*key == "name" && !name) {
      auto v = r.String();
      if (!v) return v.error();
      f->name = std::move(*v);
      name = true;
    } else if (*key == "sha256" && !sha) {
      auto v = r.String();
      if (!v) return v.error();
      f->sha256 = std::move(*v);
      sha = true;
    } else if (*key == "size" && !size) {
      auto v = r.Integer();
      if (!v) return v.error();
      f->size = *v;
      size = true;
    } else {
      return r.Fail("unexpected or repeated key \"" + *key + "\" in a file record");
    }
  }
  SP_RETURN_STATUS(r.Expect('}'));
  if (!name || !sha || !size) return r.Fail("file record without name, sha256 or size");
  return Status::Ok();
}

}  // namespace

std::string Manifest::Field(const std::string& name) const {
  auto it = fields.find(name);
  return it == fields.end() ? std::string() : it->second;
}

Result<Manifest> ParseManifest(std::string_view json, std::string_view source) {
  JsonReader r(json, source);
  Manifest m;
  SP_RETURN_IF_ERROR(r.Expect('{'));
  std::map<std::string, bool> seen;
  bool first = true;
  while (!r.Peek('}')) {
    if (!first) SP_RETURN_IF_ERROR(r.Expect(','));
    first = false;
    auto key = r.String();
    if (!key) return Err(key.error());
    if (seen[*key]) return Err(r.Fail("repeated key \"" + *key + "\""));
    seen[*key] = true;
    SP_RETURN_IF_ERROR(r.Expect(':'));
    if (*key == "fields") {
      SP_RETURN_IF_ERROR(r.Expect('{'));
      bool f1 = true;
      while (!r.Peek('}')) {
        if (!f1) SP_RETURN_IF_ERROR(r.Expect(','));
        f1 = false;
        auto name = r.String();
        if (!name) return Err(name.error());
        SP_RETURN_IF_ERROR(r.Expect(':'));
        auto value = r.String();
        if (!value) return Err(value.error());
        if (!m.fields.emplace(std::move(*name), std::move(*value)).second) {
          return Err(r.Fail("repeated field"));
        }
      }
      SP_RETURN_IF_ERROR(r.Expect('}'));
    } else if (*key == "files") {
      SP_RETURN_IF_ERROR(r.Expect('['));
      bool f1 = true;
      while (!r.Peek(']')) {
        if (!f1) SP_RETURN_IF_ERROR(r.Expect(','));
        f1 = false;
        ManifestFile f;
        SP_RETURN_IF_ERROR(ParseFile(r, &f));
        m.files.push_back(std::move(f));
      }
      SP_RETURN_IF_ERROR(r.Expect(']'));
    } else if (*key == "format") {
      auto v = r.Integer();
      if (!v) return Err(v.error());
      if (*v != static_cast<uint64_t>(kFormatVersion)) {
        return Err(r.Fail("unknown manifest format " + std::to_string(*v)));
      }
      m.format = static_cast<int>(*v);
    } else if (*key == "kind") {
      auto v = r.String();
      if (!v) return Err(v.error());
      auto kind = ParseEntryKind(*v);
      if (!kind) return Err(kind.error().WithContext(source));
      m.kind = *kind;
    } else if (*key == "origin") {
      auto v = r.String();
      if (!v) return Err(v.error());
      m.origin = std::move(*v);
    } else if (*key == "refers_to") {
      auto v = r.Integer();
      if (!v) return Err(v.error());
      m.refers_to = *v;
    } else if (*key == "seq") {
      auto v = r.Integer();
      if (!v) return Err(v.error());
      m.seq = *v;
    } else if (*key == "time") {
      auto v = r.String();
      if (!v) return Err(v.error());
      m.time = std::move(*v);
    } else {
      return Err(r.Fail("unknown key \"" + *key + "\""));
    }
  }
  SP_RETURN_IF_ERROR(r.Expect('}'));
  if (!r.AtEnd()) return Err(r.Fail("trailing bytes after the manifest"));
  for (const char* k : {"fields", "files", "format", "kind", "origin", "refers_to", "seq", "time"}) {
    if (!seen[k]) return Err(Status::DataError(std::string(source) + ": no \"" + k + "\" key"));
  }
  if (m.seq == 0) return Err(Status::DataError(std::string(source) + ": seq 0"));
  return m;
}

ArchiveReader::~ArchiveReader() {
  tree_.reset();
  repo_.reset();
}

Result<std::string> ArchiveReader::ReadAt(git_tree* tree, const std::string& path) {
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
    return Err(GitStatus(Code::kDataError,
                         dir_ + ": cannot read " + path + " (object " +
                             OidHex(*git_tree_entry_id(entry.get())) + " missing or corrupt)"));
  }
  GitBlobPtr blob(raw_blob);
  return std::string(static_cast<const char*>(git_blob_rawcontent(blob.get())),
                     static_cast<size_t>(git_blob_rawsize(blob.get())));
}

Result<std::unique_ptr<ArchiveReader>> ArchiveReader::Open(const std::string& dir) {
  SP_RETURN_IF_ERROR(EnsureLibgit2());
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Err(Status::NotFound(dir + ": no such directory"));
  std::unique_ptr<ArchiveReader> r(new ArchiveReader());
  r->dir_ = dir;
  git_repository* raw = nullptr;
  if (git_repository_open_ext(&raw, dir.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) < 0) {
    return Err(GitStatus(Code::kDataError, dir + ": not a git repository (not an archive)"));
  }
  r->repo_.reset(raw);
  r->state_dir_ = git_repository_path(r->repo_.get());
  while (r->state_dir_.size() > 1 && r->state_dir_.back() == '/') r->state_dir_.pop_back();
  git_reference* raw_head = nullptr;
  if (git_reference_lookup(&raw_head, r->repo_.get(), "HEAD") < 0) {
    return Err(GitStatus(Code::kDataError, dir + ": no HEAD"));
  }
  GitReferencePtr head_ref(raw_head);
  if (git_reference_type(head_ref.get()) != GIT_REFERENCE_SYMBOLIC ||
      std::string_view(git_reference_symbolic_target(head_ref.get())) != kBranch) {
    return Err(Status::DataError(dir + ": not a sealpost archive (HEAD does not point to " +
                                 kBranch + ")"));
  }
  int rc = git_reference_name_to_id(&r->head_, r->repo_.get(), kBranch);
  if (rc == GIT_ENOTFOUND) {
    git_error_clear();
    return Err(Status::DataError(dir + ": not a sealpost archive (" + kBranch +
                                 " does not exist)"));
  }
  if (rc < 0) return Err(GitStatus(Code::kDataError, dir + ": cannot resolve " + kBranch));
  if (Status s = r->LoadHead(r->head_); !s.ok()) return Err(s);
  return r;
}

Status ArchiveReader::LoadHead(const git_oid& head) {
  const std::string& dir = dir_;
  const std::string head_hex = OidHex(head);
  git_commit* raw_commit = nullptr;
  if (git_commit_lookup(&raw_commit, repo_.get(), &head) < 0) {
    return GitStatus(Code::kDataError, dir + ": cannot read the head commit " + head_hex +
                                           " (missing or corrupt object)");
  }
  GitCommitPtr commit(raw_commit);
  git_tree* raw_tree = nullptr;
  if (git_commit_tree(&raw_tree, commit.get()) < 0) {
    return GitStatus(Code::kDataError,
                     dir + ": cannot read the tree of the head commit (missing or corrupt object)");
  }
  GitTreePtr tree(raw_tree);
  auto format = ReadAt(tree.get(), "FORMAT");
  if (!format) {
    if (format.error().code() == Code::kNotFound) {
      return Status::DataError(dir + ": not a sealpost archive (no FORMAT file)");
    }
    return format.error();
  }
  if (*format != kFormatFileContent) {
    return Status::DataError(dir + ": unknown archive format \"" +
                             format->substr(0, format->find('\n')) + "\"");
  }
  auto as_data = [](const Status& s) { return Status(Code::kDataError, s.message()); };
  auto body = ReadAt(tree.get(), "log/checkpoint");
  if (!body) return as_data(body.error());
  auto cp = crypto::ParseCheckpoint(*body, dir + ":log/checkpoint");
  if (!cp) return cp.error();
  auto sig = ReadAt(tree.get(), "log/checkpoint.p7s");
  if (!sig) return as_data(sig.error());
  git_tree_entry* raw_seal_entry = nullptr;
  if (git_tree_entry_bypath(&raw_seal_entry, tree.get(), "seal.pem") < 0) {
    git_error_clear();
    return Status::DataError(dir + ": seal.pem is missing");
  }
  GitTreeEntryPtr seal_entry(raw_seal_entry);
  const git_oid seal_blob = *git_tree_entry_id(seal_entry.get());
  X509Ptr seal;
  if (seal_ && git_oid_equal(&seal_blob, &seal_blob_)) {
    // The same seal.pem as the head held: its certificate is already parsed.
    if (X509_up_ref(seal_.get()) != 1) return Status::Internal("cannot share the seal certificate");
    seal.reset(seal_.get());
  } else {
    auto seal_pem = ReadAt(tree.get(), "seal.pem");
    if (!seal_pem) return as_data(seal_pem.error());
    auto seals = crypto::ParseCertificates(*seal_pem, dir + ":seal.pem");
    if (!seals) return seals.error();
    seal.reset(X509_dup(sk_X509_value(seals->get(), 0)));
    if (!seal) return Status::Internal("cannot copy the seal certificate");
  }
  Status s = crypto::VerifyCheckpointSignature(*body, *sig, seal.get(),
                                               dir + ":log/checkpoint.p7s");
  if (!s.ok()) return Status(Code::kDataError, s.message());
  if (seal_ && cp->size < checkpoint_.size) {
    return Status::DataError(dir + ": the head's checkpoint (size " + std::to_string(cp->size) +
                             ") is older than the one read before (size " +
                             std::to_string(checkpoint_.size) + ")");
  }
  head_ = head;
  head_hex_ = head_hex;
  tree_ = std::move(tree);
  seal_ = std::move(seal);
  seal_blob_ = seal_blob;
  checkpoint_ = std::move(*cp);
  checkpoint_body_ = std::move(*body);
  checkpoint_sig_ = std::move(*sig);
  return Status::Ok();
}

Status ArchiveReader::Refresh() {
  git_oid head;
  int rc = git_reference_name_to_id(&head, repo_.get(), kBranch);
  if (rc < 0) return GitStatus(Code::kDataError, dir_ + ": cannot resolve " + kBranch);
  if (git_oid_equal(&head, &head_)) return Status::Ok();
  return LoadHead(head);
}

Result<std::string> ArchiveReader::ReadEntryFile(uint64_t seq, const std::string& name) {
  if (seq == 0 || seq > size()) {
    return Err(Status::NotFound(dir_ + ": no entry #" + std::to_string(seq) + " (the archive has " +
                                std::to_string(size()) + ")"));
  }
  return ReadAt(tree_.get(), EntryDir(seq) + "/" + name);
}

Result<Manifest> ArchiveReader::ReadManifest(uint64_t seq) {
  auto text = ReadEntryFile(seq, "manifest.json");
  if (!text) {
    if (text.error().code() == Code::kNotFound && seq >= 1 && seq <= size()) {
      return Err(Status::DataError(text.error().message()));  // a hole in the log
    }
    return Err(text.error());
  }
  if (text->size() > kMaxManifestBytes) {
    return Err(Status::DataError(dir_ + ": manifest of #" + std::to_string(seq) + " is too large"));
  }
  std::string source = dir_ + ":" + EntryDir(seq) + "/manifest.json";
  auto m = ParseManifest(*text, source);
  if (!m) return Err(m.error());
  if (m->seq != seq) {
    return Err(Status::DataError(source + ": names seq " + std::to_string(m->seq)));
  }
  if (m->origin != origin()) {
    return Err(Status::DataError(source + ": names origin \"" + m->origin + "\""));
  }
  return m;
}

Result<std::vector<merkle::Hash>> ArchiveReader::ReadLeafHashes(uint64_t count) {
  if (count > size()) {
    return Err(Status::InvalidArgument("only " + std::to_string(size()) + " entries"));
  }
  std::vector<merkle::Hash> leaves;
  leaves.reserve(count);
  for (uint64_t seq = 1; seq <= count; ++seq) {
    auto text = ReadEntryFile(seq, "manifest.json");
    if (!text) return Err(Status(Code::kDataError, text.error().message()));
    leaves.push_back(merkle::LeafHash(*text));
  }
  return leaves;
}

Result<std::vector<merkle::Hash>> ArchiveReader::InclusionProof(uint64_t seq, uint64_t tree_size) {
  if (seq == 0 || seq > tree_size || tree_size > size()) {
    return Err(Status::InvalidArgument("inclusion proof of #" + std::to_string(seq) +
                                       " in a tree of " + std::to_string(tree_size) +
                                       ": the archive has " + std::to_string(size()) + " entries"));
  }
  auto leaves = ReadLeafHashes(tree_size);
  if (!leaves) return Err(leaves.error());
  return merkle::InclusionProof(*leaves, seq - 1);
}

Result<std::vector<merkle::Hash>> ArchiveReader::ConsistencyProof(uint64_t old_size,
                                                                  uint64_t new_size) {
  if (old_size > new_size || new_size > size()) {
    return Err(Status::InvalidArgument("consistency proof " + std::to_string(old_size) + " -> " +
                                       std::to_string(new_size) + ": the archive has " +
                                       std::to_string(size()) + " entries"));
  }
  auto leaves = ReadLeafHashes(new_size);
  if (!leaves) return Err(leaves.error());
  return merkle::ConsistencyProof(*leaves, old_size);
}

Result<std::vector<CommitSize>> ArchiveReader::CommitsAfter(uint64_t after_size) {
  std::vector<CommitSize> out;
  git_oid id = head_;
  for (;;) {
    git_commit* raw = nullptr;
    if (git_commit_lookup(&raw, repo_.get(), &id) < 0) {
      return Err(GitStatus(Code::kDataError,
                           dir_ + ": cannot read commit " + OidHex(id) + " (missing or corrupt)"));
    }
    GitCommitPtr commit(raw);
    git_tree* raw_tree = nullptr;
    if (git_commit_tree(&raw_tree, commit.get()) < 0) {
      return Err(GitStatus(Code::kDataError, dir_ + ": cannot read the tree of " + OidHex(id)));
    }
    GitTreePtr tree(raw_tree);
    auto body = ReadAt(tree.get(), "log/checkpoint");
    if (!body) return Err(Status(Code::kDataError, body.error().message() + " in " + OidHex(id)));
    auto cp = crypto::ParseCheckpoint(*body, dir_ + ":" + OidHex(id) + ":log/checkpoint");
    if (!cp) return Err(cp.error());
    if (cp->size <= after_size) break;
    if (!out.empty() && cp->size >= out.back().size) {
      return Err(Status::DataError(dir_ + ": commit " + OidHex(id) +
                                   " has a checkpoint not smaller than its child's"));
    }
    out.push_back({OidHex(id), cp->size});
    if (git_commit_parentcount(commit.get()) == 0) break;
    id = *git_commit_parent_id(commit.get(), 0);
  }
  std::reverse(out.begin(), out.end());
  return out;
}

bool ArchiveReader::ContainsCommit(const std::string& ancestor_hex) {
  git_oid id;
  if (ancestor_hex.size() != GIT_OID_HEXSZ || git_oid_fromstr(&id, ancestor_hex.c_str()) < 0) {
    git_error_clear();
    return false;
  }
  if (git_oid_equal(&id, &head_)) return true;
  int rc = git_graph_descendant_of(repo_.get(), &head_, &id);
  git_error_clear();
  return rc == 1;
}

std::optional<std::string> ArchiveReader::ConfigString(const std::string& name) {
  git_config* raw = nullptr;
  if (git_repository_config_snapshot(&raw, repo_.get()) < 0) {
    git_error_clear();
    return std::nullopt;
  }
  std::unique_ptr<git_config, GitDeleter<git_config_free>> config(raw);
  git_config* local = nullptr;
  // Only the repository's own file: a value in ~/.gitconfig must not steer
  // which key signs or which anchors are trusted.
  if (git_config_open_level(&local, config.get(), GIT_CONFIG_LEVEL_LOCAL) < 0) {
    git_error_clear();
    return std::nullopt;
  }
  std::unique_ptr<git_config, GitDeleter<git_config_free>> level(local);
  const char* value = nullptr;
  if (git_config_get_string(&value, level.get(), name.c_str()) < 0) {
    git_error_clear();
    return std::nullopt;
  }
  return std::string(value);
}

Status SetArchiveConfig(const std::string& dir,
                        const std::vector<std::pair<std::string, std::string>>& values) {
  SP_RETURN_STATUS(EnsureLibgit2());
  git_repository* raw = nullptr;
  if (git_repository_open_ext(&raw, dir.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) < 0) {
    return GitStatus(Code::kDataError, dir + ": not a git repository");
  }
  GitRepositoryPtr repo(raw);
  git_config* raw_cfg = nullptr;
  if (git_repository_config(&raw_cfg, repo.get()) < 0) {
    return GitStatus(Code::kIoError, dir + ": cannot open the repository configuration");
  }
  std::unique_ptr<git_config, GitDeleter<git_config_free>> cfg(raw_cfg);
  git_config* raw_local = nullptr;
  if (git_config_open_level(&raw_local, cfg.get(), GIT_CONFIG_LEVEL_LOCAL) < 0) {
    return GitStatus(Code::kIoError, dir + "/config: cannot open");
  }
  std::unique_ptr<git_config, GitDeleter<git_config_free>> local(raw_local);
  for (const auto& [name, value] : values) {
    if (git_config_set_string(local.get(), name.c_str(), value.c_str()) < 0) {
      return GitStatus(Code::kIoError, dir + "/config: cannot set " + name);
    }
  }
  return Status::Ok();
}

namespace {

// The path of a local remote ("file:///x" or "/x").
std::string LocalPath(const std::string& remote) {
  if (remote.starts_with("file://")) return remote.substr(7);
  return remote;
}

using GitRemotePtr = std::unique_ptr<git_remote, GitDeleter<git_remote_free>>;

}  // namespace

Result<MirrorResult> MirrorMain(const std::string& dir, const std::string& remote) {
  auto opened = ArchiveReader::Open(dir);
  if (!opened) return Err(opened.error());
  ArchiveReader* reader = opened->get();
  const std::string path = LocalPath(remote);
  if (remote.find("://") != std::string::npos && !remote.starts_with("file://")) {
    return Err(Status::InvalidArgument(remote + ": only local mirrors (a path or file:// URL)"));
  }
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return Err(Status::NotFound(remote + ": no such directory"));
  git_repository* raw = nullptr;
  if (git_repository_open_ext(&raw, path.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) < 0) {
    return Err(GitStatus(Code::kNotFound, remote + ": not a git repository"));
  }
  GitRepositoryPtr theirs(raw);
  MirrorResult result;
  result.head = reader->head();
  git_oid their_main;
  int rc = git_reference_name_to_id(&their_main, theirs.get(), kBranch);
  if (rc == 0) {
    result.remote_before = OidHex(their_main);
    if (!reader->ContainsCommit(result.remote_before)) {
      return Err(Status::FailedPrecondition(
          remote + ": its main (" + result.remote_before +
          ") is not an ancestor of the archive's main (" + reader->head() +
          "): the mirror was rewritten or holds another history; nothing was pushed"));
    }
    if (result.remote_before == reader->head()) return result;  // up to date
  } else if (rc != GIT_ENOTFOUND) {
    return Err(GitStatus(Code::kDataError, remote + ": cannot read its " + kBranch));
  }
  git_error_clear();
  const bool bare = git_repository_is_bare(theirs.get()) == 1;
  char refspec[] = "refs/heads/main:refs/heads/main";  // no '+': never forced
  char* specs[] = {refspec};
  git_strarray refspecs = {specs, 1};
  git_remote* raw_remote = nullptr;
  if (bare) {
    theirs.reset();
    std::string url = remote.starts_with("file://") ? remote : fs::absolute(path, ec).string();
    if (git_repository_open_ext(&raw, dir.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) < 0) {
      return Err(GitStatus(Code::kDataError, dir + ": cannot open"));
    }
    GitRepositoryPtr ours(raw);
    if (git_remote_create_anonymous(&raw_remote, ours.get(), url.c_str()) < 0) {
      return Err(GitStatus(Code::kInvalidArgument, remote + ": not a usable remote"));
    }
    GitRemotePtr r(raw_remote);
    git_push_options opts = GIT_PUSH_OPTIONS_INIT;
    if (git_remote_push(r.get(), &refspecs, &opts) < 0) {
      return Err(GitStatus(Code::kIoError, remote + ": push failed"));
    }
  } else {
    // libgit2's local transport cannot push into a non-bare repository:
    // the mirror fetches from us instead (same refspec, same ancestry rule
    // checked above), then fast-forwards its work tree if main is checked
    // out and the work tree is clean.
    std::string url = fs::absolute(dir, ec).string();
    if (git_remote_create_anonymous(&raw_remote, theirs.get(), url.c_str()) < 0) {
      return Err(GitStatus(Code::kInvalidArgument, remote + ": cannot fetch from " + dir));
    }
    GitRemotePtr r(raw_remote);
    git_fetch_options opts = GIT_FETCH_OPTIONS_INIT;
    opts.prune = GIT_FETCH_NO_PRUNE;
    opts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
    opts.update_fetchhead = 0;
    if (git_remote_fetch(r.get(), &refspecs, &opts, "sealpost archive mirror") < 0) {
      return Err(GitStatus(Code::kIoError, remote + ": transfer failed"));
    }
    git_reference* raw_head = nullptr;
    if (git_reference_lookup(&raw_head, theirs.get(), "HEAD") == 0) {
      GitReferencePtr head_ref(raw_head);
      if (git_reference_type(head_ref.get()) == GIT_REFERENCE_SYMBOLIC &&
          std::string_view(git_reference_symbolic_target(head_ref.get())) == kBranch) {
        // The work tree and index still hold the old main: that tree is
        // the baseline, so SAFE updates exactly what changed and refuses
        // to touch local modifications.
        git_checkout_options co = GIT_CHECKOUT_OPTIONS_INIT;
        co.checkout_strategy = GIT_CHECKOUT_SAFE;
        GitTreePtr baseline;
        git_oid old_id;
        git_commit* raw_old = nullptr;
        if (!result.remote_before.empty() &&
            git_oid_fromstr(&old_id, result.remote_before.c_str()) == 0 &&
            git_commit_lookup(&raw_old, theirs.get(), &old_id) == 0) {
          GitCommitPtr old_commit(raw_old);
          git_tree* raw_tree = nullptr;
          if (git_commit_tree(&raw_tree, old_commit.get()) == 0) baseline.reset(raw_tree);
        }
        co.baseline = baseline.get();
        git_oid new_id;
        git_object* raw_new = nullptr;
        if (git_oid_fromstr(&new_id, reader->head().c_str()) == 0 &&
            git_object_lookup(&raw_new, theirs.get(), &new_id, GIT_OBJECT_COMMIT) == 0) {
          std::unique_ptr<git_object, GitDeleter<git_object_free>> target(raw_new);
          result.worktree_updated = git_checkout_tree(theirs.get(), target.get(), &co) == 0;
        }
      }
    }
    git_error_clear();
    theirs.reset();
  }
  // Check what the remote holds now.
  if (git_repository_open_ext(&raw, path.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) < 0) {
    return Err(GitStatus(Code::kIoError, remote + ": cannot reopen after the push"));
  }
  theirs.reset(raw);
  if (git_reference_name_to_id(&their_main, theirs.get(), kBranch) < 0 ||
      OidHex(their_main) != reader->head()) {
    git_error_clear();
    return Err(Status::IoError(remote + ": main does not name " + reader->head() +
                               " after the push"));
  }
  // A fresh `git init` names an unborn default branch in HEAD; point it at
  // main so that clones of the mirror check out the archive.
  if (git_repository_head_unborn(theirs.get()) == 1 &&
      git_repository_set_head(theirs.get(), kBranch) < 0) {
    return Err(GitStatus(Code::kIoError, remote + ": cannot point HEAD at " + kBranch));
  }
  git_error_clear();
  return result;
}

}  // namespace sealpost::storage
