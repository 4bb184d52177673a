#include "storage/audit.h"

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "base/encoding.h"
#include "base/file.h"
#include "crypto/certs.h"
#include "crypto/digest.h"
#include "crypto/merkle.h"
#include "crypto/verify.h"
#include "storage/archive.h"
#include "storage/entry.h"
#include "storage/git.h"
#include "storage/reader.h"

namespace sealpost::storage {
namespace {

namespace merkle = crypto::merkle;

// Entries may be signed a little after the clock of the archive says they
// were archived only if clocks disagree; not used for a verdict.
constexpr int kShardLevels = 3;
constexpr size_t kMaxVerifierCache = 256;

struct StackOnlyDeleter {
  void operator()(STACK_OF(X509)* s) const { sk_X509_free(s); }
};
using BorrowedX509Stack = std::unique_ptr<STACK_OF(X509), StackOnlyDeleter>;

// SHA-256 fetched once: EVP_sha256() in a digest call fetches the
// implementation again each time (a locked name lookup in OpenSSL 3), which
// showed in profiles of the audit.
const EVP_MD* Sha256() {
  static const EvpMdPtr md(EVP_MD_fetch(nullptr, "SHA256", nullptr));
  return md.get();
}

std::string Sha256Hex(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (Sha256() == nullptr || EVP_Digest(data.data(), data.size(), out, &len, Sha256(), nullptr) != 1) {
    ClearOpenSslErrors();
    return std::string();
  }
  return HexEncode(std::string_view(reinterpret_cast<const char*>(out), len));
}

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\t' || c == '\r') c = ' ';
  }
  return s;
}

// The repository, read only. Errors reading objects are DataErrors (a
// corrupt pack or loose object) and stop the audit.
class Repo {
 public:
  static Result<Repo> Open(const std::string& dir) {
    SP_RETURN_IF_ERROR(EnsureLibgit2());
    git_repository* raw = nullptr;
    if (git_repository_open_ext(&raw, dir.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) < 0) {
      return Err(GitStatus(Code::kDataError, dir + ": not a git repository"));
    }
    Repo r;
    r.dir_ = dir;
    r.repo_.reset(raw);
    return r;
  }
  git_repository* get() const { return repo_.get(); }
  const std::string& dir() const { return dir_; }

  Result<GitTreePtr> Tree(const git_oid& id, std::string_view what) const {
    git_tree* raw = nullptr;
    if (git_tree_lookup(&raw, repo_.get(), &id) < 0) {
      return Err(GitStatus(Code::kDataError,
                           dir_ + ": cannot read " + std::string(what) + " (corrupt object?)"));
    }
    return GitTreePtr(raw);
  }
  Result<std::string> Blob(const git_oid& id, std::string_view what) const {
    git_blob* raw = nullptr;
    if (git_blob_lookup(&raw, repo_.get(), &id) < 0) {
      return Err(GitStatus(Code::kDataError,
                           dir_ + ": cannot read " + std::string(what) + " (corrupt object?)"));
    }
    GitBlobPtr blob(raw);
    return std::string(static_cast<const char*>(git_blob_rawcontent(blob.get())),
                       static_cast<size_t>(git_blob_rawsize(blob.get())));
  }
  // The file at `path` in `tree`: nullopt if absent or not a file.
  Result<std::optional<std::string>> File(git_tree* tree, const std::string& path) const {
    git_tree_entry* raw = nullptr;
    if (git_tree_entry_bypath(&raw, tree, path.c_str()) < 0) {
      git_error_clear();
      return std::optional<std::string>();
    }
    GitTreeEntryPtr e(raw);
    if (git_tree_entry_type(e.get()) != GIT_OBJECT_BLOB) return std::optional<std::string>();
    auto data = Blob(*git_tree_entry_id(e.get()), path);
    if (!data) return Err(data.error());
    return std::optional<std::string>(std::move(*data));
  }

 private:
  std::string dir_;
  GitRepositoryPtr repo_;
};

// Verifiers by evidence (certs.pem + crls.pem bytes): building the store
// parses certificates and CRLs; entries of one period share their evidence,
// so each distinct set is parsed once.
class VerifierCache {
 public:
  explicit VerifierCache(STACK_OF(X509)* anchors) : anchors_(anchors) {}

  // Null with *problem set when the evidence cannot be parsed.
  const crypto::Verifier* Get(const std::optional<std::string>& certs,
                              const std::optional<std::string>& crls, std::string* problem) {
    // The evidence itself is the key (no digest: a collision must not be
    // able to pick another entry's trust store).
    std::string key = (certs ? "C" + std::to_string(certs->size()) + ":" + *certs : "-") + "/" +
                      (crls ? "R" + *crls : "-");
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second.get();
    if (cache_.size() >= kMaxVerifierCache) cache_.clear();
    X509StackPtr anchors(X509_chain_up_ref(anchors_));
    X509StackPtr untrusted(sk_X509_new_null());
    X509CrlStackPtr crl_stack(sk_X509_CRL_new_null());
    if (!anchors || !untrusted || !crl_stack) {
      *problem = "out of memory";
      return nullptr;
    }
    if (certs && !certs->empty()) {
      auto parsed = crypto::ParseCertificates(*certs, "certs.pem");
      if (!parsed) {
        *problem = parsed.error().message();
        return nullptr;
      }
      untrusted = std::move(*parsed);
    }
    if (crls && !crls->empty()) {
      auto parsed = crypto::ParseCrls(*crls, "crls.pem");
      if (!parsed) {
        *problem = parsed.error().message();
        return nullptr;
      }
      crl_stack = std::move(*parsed);
    }
    auto store = crypto::TrustStore::Create(std::move(anchors), std::move(untrusted),
                                            std::move(crl_stack), crypto::TrustOptions{});
    if (!store) {
      *problem = store.error().message();
      return nullptr;
    }
    auto verifier = crypto::Verifier::Create(std::move(*store));
    if (!verifier) {
      *problem = verifier.error().message();
      return nullptr;
    }
    auto owned = std::make_unique<crypto::Verifier>(std::move(*verifier));
    const crypto::Verifier* out = owned.get();
    cache_.emplace(std::move(key), std::move(owned));
    return out;
  }

 private:
  STACK_OF(X509)* anchors_;  // borrowed
  std::map<std::string, std::unique_ptr<crypto::Verifier>> cache_;
};

struct EntryTask {
  uint64_t seq = 0;
  git_oid tree{};
  std::string commit;  // the commit that added it
};

struct EntryOutcome {
  std::vector<AuditProblem> problems;
  uint64_t signatures = 0;
};

void Add(std::vector<AuditProblem>* out, std::string code, uint64_t seq, const std::string& commit,
         std::string detail, Severity sev = Severity::kFailed) {
  out->push_back({std::move(code), sev, seq, commit, OneLine(std::move(detail))});
}

// Every check of one entry that needs only the entry itself: manifest,
// files, content fields, signatures. DataError only for unreadable objects.
Result<EntryOutcome> CheckEntry(const Repo& repo, const EntryTask& task, const std::string& origin,
                                VerifierCache& verifiers) {
  EntryOutcome out;
  auto* problems = &out.problems;
  const std::string where = EntryDir(task.seq);
  auto tree = repo.Tree(task.tree, where);
  if (!tree) return Err(tree.error());
  std::map<std::string, std::string> blobs;
  const size_t n = git_tree_entrycount(tree->get());
  for (size_t i = 0; i < n; ++i) {
    const git_tree_entry* e = git_tree_entry_byindex(tree->get(), i);
    std::string name = git_tree_entry_name(e);
    if (git_tree_entry_type(e) != GIT_OBJECT_BLOB) {
      Add(problems, "entry-file-unlisted", task.seq, task.commit, name + " is not a file");
      continue;
    }
    auto data = repo.Blob(*git_tree_entry_id(e), where + "/" + name);
    if (!data) return Err(data.error());
    blobs.emplace(std::move(name), std::move(*data));
  }
  auto mit = blobs.find("manifest.json");
  if (mit == blobs.end()) {
    Add(problems, "manifest-malformed", task.seq, task.commit, "manifest.json is missing");
    return out;
  }
  auto manifest = ParseManifest(mit->second, where + "/manifest.json");
  if (!manifest) {
    Add(problems, "manifest-malformed", task.seq, task.commit, manifest.error().message());
    return out;
  }
  bool structure_ok = true;
  if (manifest->seq != task.seq) {
    Add(problems, "manifest-seq-mismatch", task.seq, task.commit,
        "manifest says seq " + std::to_string(manifest->seq));
    structure_ok = false;
  }
  if (manifest->origin != origin) {
    Add(problems, "manifest-origin-mismatch", task.seq, task.commit,
        "manifest says origin \"" + manifest->origin + "\"");
    structure_ok = false;
  }
  auto archived_at = crypto::ParseRfc3339(manifest->time);
  if (!archived_at) {
    Add(problems, "manifest-malformed", task.seq, task.commit, "time: " + manifest->time);
    structure_ok = false;
  }
  if (manifest->refers_to >= task.seq) {
    Add(problems, "manifest-malformed", task.seq, task.commit,
        "refers_to " + std::to_string(manifest->refers_to) + " is not an earlier entry");
    structure_ok = false;
  }
  std::map<std::string, std::string> digests;  // name -> lower-case hex SHA-256
  for (const auto& [name, data] : blobs) {
    if (name != "manifest.json") digests[name] = Sha256Hex(data);
  }
  std::set<std::string> listed;
  for (const ManifestFile& f : manifest->files) {
    listed.insert(f.name);
    auto b = blobs.find(f.name);
    if (b == blobs.end() || f.name == "manifest.json") {
      Add(problems, "entry-file-missing", task.seq, task.commit, f.name);
      structure_ok = false;
      continue;
    }
    if (b->second.size() != f.size || digests[f.name] != f.sha256) {
      Add(problems, "entry-file-digest-mismatch", task.seq, task.commit,
          f.name + " does not match its SHA-256/size in the manifest");
      structure_ok = false;
    }
  }
  for (const auto& [name, data] : blobs) {
    if (name != "manifest.json" && listed.count(name) == 0) {
      Add(problems, "entry-file-unlisted", task.seq, task.commit, name);
      structure_ok = false;
    }
  }
  if (structure_ok) {
    EntryInput rebuilt;
    rebuilt.kind = manifest->kind;
    rebuilt.fields = manifest->fields;
    rebuilt.refers_to = manifest->refers_to;
    for (const auto& [name, data] : blobs) {
      if (name != "manifest.json") rebuilt.files.push_back({name, data});
    }
    if (Status v = ValidateEntry(rebuilt); !v.ok()) {
      Add(problems, "manifest-malformed", task.seq, task.commit, v.message());
    } else if (BuildManifest(rebuilt, origin, task.seq, *archived_at) != mit->second) {
      Add(problems, "manifest-not-canonical", task.seq, task.commit,
          "manifest.json is not the canonical form of its content");
    }
  }
  // The descriptive fields about `content` must describe it.
  auto content = blobs.find("content");
  auto field = [&](const char* name) -> const std::string* {
    auto f = manifest->fields.find(name);
    return f == manifest->fields.end() ? nullptr : &f->second;
  };
  if (const std::string* h = field("content_sha256")) {
    if (content == blobs.end() || digests["content"] != *h) {
      Add(problems, "content-field-mismatch", task.seq, task.commit,
          "content_sha256 does not match content");
    }
  }
  if (const std::string* sz = field("content_size")) {
    if (content == blobs.end() || std::to_string(content->second.size()) != *sz) {
      Add(problems, "content-field-mismatch", task.seq, task.commit,
          "content_size does not match content");
    }
  }

  // A crl entry (daemon/crls.h): crl.der is one DER CRL and crl_sha256 its digest.
  if (manifest->kind == EntryKind::kCrl) {
    auto crl = blobs.find("crl.der");
    const std::string* h = field("crl_sha256");
    const unsigned char* p = crl == blobs.end()
                                 ? nullptr
                                 : reinterpret_cast<const unsigned char*>(crl->second.data());
    X509CrlPtr parsed(p ? d2i_X509_CRL(nullptr, &p, static_cast<long>(crl->second.size())) : nullptr);
    if (crl == blobs.end() || h == nullptr || digests["crl.der"] != *h || !parsed ||
        p != reinterpret_cast<const unsigned char*>(crl->second.data()) + crl->second.size()) {
      Add(problems, "crl-entry-invalid", task.seq, task.commit,
          "crl.der is missing, is not one DER CRL, or does not match crl_sha256");
    }
  }

  // Every X.p7s over X, judged on the evidence the entry kept.
  std::optional<std::string> certs, crls;
  if (auto c = blobs.find("certs.pem"); c != blobs.end()) certs = c->second;
  if (auto c = blobs.find("crls.pem"); c != blobs.end()) crls = c->second;
  for (const auto& [name, data] : blobs) {
    if (!name.ends_with(".p7s")) continue;
    const std::string target = name.substr(0, name.size() - 4);
    auto signed_file = blobs.find(target);
    if (signed_file == blobs.end()) {
      Add(problems, "entry-file-missing", task.seq, task.commit, name + " signs " + target);
      continue;
    }
    ++out.signatures;
    auto der = crypto::DecodeSignature(data, name);
    if (!der) {
      Add(problems, "signature-malformed", task.seq, task.commit, der.error().message());
      continue;
    }
    std::string why;
    const crypto::Verifier* verifier = verifiers.Get(certs, crls, &why);
    if (verifier == nullptr) {
      Add(problems, "evidence-malformed", task.seq, task.commit, why);
      continue;
    }
    std::optional<std::time_t> at;
    if (archived_at) at = *archived_at;
    auto report = verifier->VerifyBytes(signed_file->second, *der, at);
    if (!report) {
      Add(problems, "signature-malformed", task.seq, task.commit,
          name + ": " + report.error().message());
      continue;
    }
    if (report->indication == crypto::Indication::kPassed) continue;
    for (const crypto::SignerReport& s : report->signers) {
      if (s.indication == crypto::Indication::kPassed) continue;
      std::string detail = name + ": " + (s.name.empty() ? "unknown signer" : s.name) + ": " +
                           std::string(crypto::IndicationName(s.indication)) + "/" +
                           std::string(crypto::SubIndicationName(s.sub_indication));
      if (s.reason != crypto::Reason::kNone) detail += " (" + std::string(crypto::ReasonName(s.reason)) + ")";
      if (!s.detail.empty()) detail += ": " + s.detail;
      if (s.indication == crypto::Indication::kFailed) {
        Add(problems, "signature-failed", task.seq, task.commit, detail);
      } else {
        Add(problems, "signature-indeterminate", task.seq, task.commit, detail,
            Severity::kIndeterminate);
      }
    }
  }
  return out;
}

// Worker protocol, one line each: "P <entries done>", "S <signatures>",
// "E <code>\t<F|I>\t<seq>\t<commit>\t<detail>", "X <error message>".
std::string EncodeProblem(const AuditProblem& p) {
  return "E " + p.code + "\t" + (p.severity == Severity::kFailed ? "F" : "I") + "\t" +
         std::to_string(p.seq) + "\t" + p.commit + "\t" + OneLine(p.detail) + "\n";
}

std::optional<AuditProblem> DecodeProblem(std::string_view line) {
  std::vector<std::string> parts;
  size_t start = 2;
  for (int i = 0; i < 4; ++i) {
    size_t tab = line.find('\t', start);
    if (tab == std::string_view::npos) return std::nullopt;
    parts.emplace_back(line.substr(start, tab - start));
    start = tab + 1;
  }
  parts.emplace_back(line.substr(start));
  AuditProblem p;
  p.code = parts[0];
  p.severity = parts[1] == "I" ? Severity::kIndeterminate : Severity::kFailed;
  p.seq = std::strtoull(parts[2].c_str(), nullptr, 10);
  p.commit = parts[3];
  p.detail = parts[4];
  return p;
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Runs the entry checks, in `jobs` forked workers when there is enough work.
Status RunEntryChecks(const std::string& dir, const std::vector<EntryTask>& tasks,
                      const std::string& origin, STACK_OF(X509)* anchors, int jobs,
                      const std::function<void(uint64_t, uint64_t)>& progress,
                      AuditReport* report) {
  const uint64_t total = tasks.size();
  if (jobs <= 1 || tasks.size() < 64) {
    auto repo = Repo::Open(dir);
    if (!repo) return repo.error();
    VerifierCache verifiers(anchors);
    for (size_t i = 0; i < tasks.size(); ++i) {
      auto r = CheckEntry(*repo, tasks[i], origin, verifiers);
      if (!r) return r.error();
      for (AuditProblem& p : r->problems) report->problems.push_back(std::move(p));
      report->signatures_checked += r->signatures;
      if (progress && (i % 64 == 63 || i + 1 == tasks.size())) progress(i + 1, total);
    }
    report->entries_checked = tasks.size();
    return Status::Ok();
  }
  struct Worker {
    pid_t pid = -1;
    int fd = -1;
    std::string buffer;
    uint64_t done = 0;
    bool open = true;
  };
  std::vector<Worker> workers(static_cast<size_t>(jobs));
  const size_t first_problem = report->problems.size();
  std::fflush(nullptr);
  for (int w = 0; w < jobs; ++w) {
    int fds[2];
    if (::pipe(fds) != 0) return Status::Internal(std::string("pipe: ") + std::strerror(errno));
    pid_t pid = ::fork();
    if (pid < 0) {
      ::close(fds[0]);
      ::close(fds[1]);
      return Status::Internal(std::string("fork: ") + std::strerror(errno));
    }
    if (pid == 0) {
      ::close(fds[0]);
      for (int k = 0; k < w; ++k) ::close(workers[static_cast<size_t>(k)].fd);
      // Contiguous slices keep each worker's reads local in the packs.
      size_t begin = tasks.size() * static_cast<size_t>(w) / static_cast<size_t>(jobs);
      size_t end = tasks.size() * static_cast<size_t>(w + 1) / static_cast<size_t>(jobs);
      auto repo = Repo::Open(dir);
      if (!repo) {
        WriteAll(fds[1], "X " + OneLine(repo.error().message()) + "\n");
        ::_exit(3);
      }
      VerifierCache verifiers(anchors);
      uint64_t sigs = 0;
      std::string out;
      for (size_t i = begin; i < end; ++i) {
        auto r = CheckEntry(*repo, tasks[i], origin, verifiers);
        if (!r) {
          WriteAll(fds[1], out + "X " + OneLine(r.error().message()) + "\n");
          ::_exit(3);
        }
        for (const AuditProblem& p : r->problems) out += EncodeProblem(p);
        sigs += r->signatures;
        if ((i - begin) % 64 == 63) out += "P " + std::to_string(i - begin + 1) + "\n";
        if (out.size() > 4096) {
          if (!WriteAll(fds[1], out)) ::_exit(4);
          out.clear();
        }
      }
      out += "P " + std::to_string(end - begin) + "\nS " + std::to_string(sigs) + "\n";
      ::_exit(WriteAll(fds[1], out) ? 0 : 4);
    }
    ::close(fds[1]);
    workers[static_cast<size_t>(w)].pid = pid;
    workers[static_cast<size_t>(w)].fd = fds[0];
  }
  Status failure;
  size_t open = workers.size();
  while (open > 0) {
    std::vector<pollfd> pfds;
    for (Worker& w : workers) {
      if (w.open) pfds.push_back({w.fd, POLLIN, 0});
    }
    if (::poll(pfds.data(), pfds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      failure = Status::Internal(std::string("poll: ") + std::strerror(errno));
      break;
    }
    for (const pollfd& pfd : pfds) {
      if (pfd.revents == 0) continue;
      Worker& w = *std::find_if(workers.begin(), workers.end(),
                                [&](const Worker& x) { return x.fd == pfd.fd; });
      char buf[65536];
      ssize_t n = ::read(w.fd, buf, sizeof buf);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        w.open = false;
        --open;
        continue;
      }
      w.buffer.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = w.buffer.find('\n')) != std::string::npos) {
        std::string line = w.buffer.substr(0, nl);
        w.buffer.erase(0, nl + 1);
        if (line.starts_with("E ")) {
          if (auto p = DecodeProblem(line)) report->problems.push_back(std::move(*p));
        } else if (line.starts_with("P ")) {
          w.done = std::strtoull(line.c_str() + 2, nullptr, 10);
        } else if (line.starts_with("S ")) {
          report->signatures_checked += std::strtoull(line.c_str() + 2, nullptr, 10);
        } else if (line.starts_with("X ") && failure.ok()) {
          failure = Status::DataError(line.substr(2));
        }
      }
      if (progress) {
        uint64_t done = 0;
        for (const Worker& x : workers) done += x.done;
        progress(done, total);
      }
    }
  }
  for (Worker& w : workers) {
    ::close(w.fd);
    int st = 0;
    while (::waitpid(w.pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (failure.ok() && (!WIFEXITED(st) || WEXITSTATUS(st) != 0)) {
      failure = Status::Internal("an audit worker process failed");
    }
  }
  if (!failure.ok()) return failure;
  report->entries_checked = tasks.size();
  // Workers finish in any order: keep the report in entry order.
  std::stable_sort(report->problems.begin() + static_cast<std::ptrdiff_t>(first_problem),
                   report->problems.end(),
                   [](const AuditProblem& a, const AuditProblem& b) { return a.seq < b.seq; });
  return Status::Ok();
}

// The commit signature as found, checked at the end (so that an incremental
// audit can skip what a trusted checkpoint already covers).
struct CommitCheck {
  std::string commit;
  uint64_t size = 0;  // entries after this commit
  std::time_t time = 0;
  std::shared_ptr<X509> seal;  // in force for this commit; null if unknown
  std::optional<std::string> signature_der;
  std::string signed_data;
  std::optional<std::string> checkpoint_body;
  std::optional<std::string> checkpoint_sig;
};

std::optional<uint64_t> ParseSeq(std::string_view name) {
  if (name.empty() || name.size() > 19 || (name.size() > 1 && name[0] == '0')) return std::nullopt;
  uint64_t v = 0;
  for (char c : name) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v == 0 ? std::nullopt : std::optional<uint64_t>(v);
}

// The Merkle leaf of each entry (its manifest.json hashed) and whether the
// manifest may be a key change. Reading every manifest is most of the walk,
// so with jobs > 1 and enough entries it is split over worker processes.
struct Leaf {
  merkle::Hash hash{};
  bool maybe_key_change = false;
};
constexpr size_t kParallelLeaves = 128;

Status LeafOf(const Repo& repo, const EntryTask& t, Leaf* out) {
  auto etree = repo.Tree(t.tree, EntryDir(t.seq));
  if (!etree) return etree.error();
  auto manifest = repo.File(etree->get(), "manifest.json");
  if (!manifest) return manifest.error();
  const std::string text = manifest->value_or(std::string());  // absent: reported by CheckEntry
  out->hash = merkle::LeafHash(text);
  // (A crl entry is read by the walk too: its CRL judges the commit seal.)
  out->maybe_key_change = t.seq == 1 || text.find("\"key-change\"") != std::string::npos ||
                          text.find("\"kind\":\"crl\"") != std::string::npos;
  return Status::Ok();
}

Result<std::vector<Leaf>> ComputeLeaves(const Repo& repo, const std::vector<EntryTask>& tasks,
                                        int jobs) {
  std::vector<Leaf> leaves(tasks.size());
  auto sequential = [&]() -> Result<std::vector<Leaf>> {
    for (size_t i = 0; i < tasks.size(); ++i) {
      if (Status s = LeafOf(repo, tasks[i], &leaves[i]); !s.ok()) return Err(s);
    }
    return std::move(leaves);
  };
  if (jobs <= 1 || tasks.size() < kParallelLeaves) return sequential();
  constexpr size_t kRecord = merkle::kHashSize + 1;
  struct Child {
    pid_t pid = -1;
    int fd = -1;
    size_t begin = 0, end = 0;
  };
  std::vector<Child> children;
  std::fflush(nullptr);
  for (int w = 0; w < jobs; ++w) {
    Child c;
    c.begin = tasks.size() * static_cast<size_t>(w) / static_cast<size_t>(jobs);
    c.end = tasks.size() * static_cast<size_t>(w + 1) / static_cast<size_t>(jobs);
    int fds[2];
    if (::pipe(fds) != 0) break;
    c.pid = ::fork();
    if (c.pid < 0) {
      ::close(fds[0]);
      ::close(fds[1]);
      break;
    }
    if (c.pid == 0) {
      ::close(fds[0]);
      for (const Child& o : children) ::close(o.fd);
      auto own = Repo::Open(repo.dir());
      if (!own) ::_exit(3);
      std::string out;
      for (size_t i = c.begin; i < c.end; ++i) {
        Leaf leaf;
        if (!LeafOf(*own, tasks[i], &leaf).ok()) ::_exit(3);
        out.append(reinterpret_cast<const char*>(leaf.hash.data()), leaf.hash.size());
        out.push_back(leaf.maybe_key_change ? '\1' : '\0');
        if (out.size() >= 64 * 1024) {
          if (!WriteAll(fds[1], out)) ::_exit(4);
          out.clear();
        }
      }
      ::_exit(WriteAll(fds[1], out) ? 0 : 4);
    }
    ::close(fds[1]);
    c.fd = fds[0];
    children.push_back(c);
  }
  // Children do not wait for each other: reading them one after the other
  // cannot deadlock.
  bool ok = children.size() == static_cast<size_t>(jobs);
  for (Child& c : children) {
    std::string data;
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(c.fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      data.append(buf, static_cast<size_t>(n));
    }
    ::close(c.fd);
    int st = 0;
    while (::waitpid(c.pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || data.size() != (c.end - c.begin) * kRecord) {
      ok = false;
      continue;
    }
    for (size_t i = c.begin; i < c.end; ++i) {
      const char* r = data.data() + (i - c.begin) * kRecord;
      std::memcpy(leaves[i].hash.data(), r, merkle::kHashSize);
      leaves[i].maybe_key_change = r[merkle::kHashSize] != 0;
    }
  }
  // A worker that failed (a corrupt object): redo it here for the error.
  if (!ok) return sequential();
  return leaves;
}

class Walker {
 public:
  Walker(const Repo& repo, std::vector<AuditProblem>* problems) : repo_(repo), problems_(problems) {}

  // Collects entry dirs added between `old_tree` and `new_tree` (the
  // `entries` trees, either may be null) and reports removed/changed ones.
  Status Diff(git_tree* old_tree, git_tree* new_tree, int depth, const std::string& path,
              const std::string& commit, std::vector<EntryTask>* added) {
    if (new_tree != nullptr) {
      const size_t n = git_tree_entrycount(new_tree);
      for (size_t i = 0; i < n; ++i) {
        const git_tree_entry* e = git_tree_entry_byindex(new_tree, i);
        const std::string name = git_tree_entry_name(e);
        const git_tree_entry* o = old_tree ? git_tree_entry_byname(old_tree, name.c_str()) : nullptr;
        if (o != nullptr && git_oid_equal(git_tree_entry_id(o), git_tree_entry_id(e))) continue;
        const std::string sub = path + "/" + name;
        if (git_tree_entry_type(e) != GIT_OBJECT_TREE) {
          Add(problems_, "entry-misplaced", 0, commit, sub + " is not a directory");
          continue;
        }
        if (depth < kShardLevels) {
          auto nt = repo_.Tree(*git_tree_entry_id(e), sub);
          if (!nt) return nt.error();
          GitTreePtr ot;
          if (o != nullptr && git_tree_entry_type(o) == GIT_OBJECT_TREE) {
            auto t = repo_.Tree(*git_tree_entry_id(o), sub);
            if (!t) return t.error();
            ot = std::move(*t);
          }
          if (Status s = Diff(ot.get(), nt->get(), depth + 1, sub, commit, added); !s.ok()) return s;
          continue;
        }
        auto seq = ParseSeq(name);
        if (!seq || EntryDir(*seq) != sub) {
          Add(problems_, "entry-misplaced", seq.value_or(0), commit,
              sub + " is not where an entry belongs");
          continue;
        }
        if (o != nullptr) {
          Add(problems_, "entry-changed", *seq, commit,
              "an entry already in the log was changed by this commit");
          // Say so when the change moved another entry here (reordering).
          auto et = repo_.Tree(*git_tree_entry_id(e), sub);
          if (!et) return et.error();
          auto text = repo_.File(et->get(), "manifest.json");
          if (!text) return text.error();
          if (text->has_value()) {
            auto m = ParseManifest(**text, sub + "/manifest.json");
            if (m && m->seq != *seq) {
              Add(problems_, "manifest-seq-mismatch", *seq, commit,
                  "manifest says seq " + std::to_string(m->seq));
            }
          }
          continue;
        }
        added->push_back({*seq, *git_tree_entry_id(e), commit});
      }
    }
    if (old_tree != nullptr) {
      const size_t n = git_tree_entrycount(old_tree);
      for (size_t i = 0; i < n; ++i) {
        const git_tree_entry* o = git_tree_entry_byindex(old_tree, i);
        const std::string name = git_tree_entry_name(o);
        if (new_tree != nullptr && git_tree_entry_byname(new_tree, name.c_str()) != nullptr) continue;
        const std::string sub = path + "/" + name;
        if (depth < kShardLevels && git_tree_entry_type(o) == GIT_OBJECT_TREE) {
          // A whole shard went: name every entry it held.
          auto ot = repo_.Tree(*git_tree_entry_id(o), sub);
          if (!ot) return ot.error();
          if (Status s = Diff(ot->get(), nullptr, depth + 1, sub, commit, added); !s.ok()) return s;
          continue;
        }
        Add(problems_, "entry-removed", ParseSeq(name).value_or(0), commit,
            sub + " was removed by this commit");
      }
    }
    return Status::Ok();
  }

 private:
  const Repo& repo_;
  std::vector<AuditProblem>* problems_;
};

Result<GitTreePtr> SubTree(const Repo& repo, git_tree* root, const char* path) {
  git_tree_entry* raw = nullptr;
  if (git_tree_entry_bypath(&raw, root, path) < 0) {
    git_error_clear();
    return GitTreePtr();
  }
  GitTreeEntryPtr e(raw);
  if (git_tree_entry_type(e.get()) != GIT_OBJECT_TREE) return GitTreePtr();
  return repo.Tree(*git_tree_entry_id(e.get()), path);
}

// Whether `sig_der` (detached CMS over seal.pem) holds exactly two
// SignerInfos, by `old_seal` and by `new_seal`, both verifying.
bool RotationSignedByBoth(std::string_view content, std::string_view sig_der, X509* old_seal,
                          X509* new_seal) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(sig_der.data());
  CmsPtr cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(sig_der.size())));
  if (!cms || CMS_is_detached(cms.get()) != 1) {
    ClearOpenSslErrors();
    return false;
  }
  if (sk_CMS_SignerInfo_num(CMS_get0_SignerInfos(cms.get())) != 2) return false;
  X509StackPtr certs(sk_X509_new_null());
  if (!certs) return false;
  X509_up_ref(old_seal);
  sk_X509_push(certs.get(), old_seal);
  X509_up_ref(new_seal);
  sk_X509_push(certs.get(), new_seal);
  BioPtr in(BIO_new_mem_buf(content.data(), static_cast<int>(content.size())));
  if (!in || CMS_verify(cms.get(), certs.get(), nullptr, in.get(), nullptr,
                        CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
    ClearOpenSslErrors();
    return false;
  }
  BorrowedX509Stack signers(CMS_get0_signers(cms.get()));
  if (!signers || sk_X509_num(signers.get()) != 2) return false;
  X509* a = sk_X509_value(signers.get(), 0);
  X509* b = sk_X509_value(signers.get(), 1);
  return (X509_cmp(a, old_seal) == 0 && X509_cmp(b, new_seal) == 0) ||
         (X509_cmp(a, new_seal) == 0 && X509_cmp(b, old_seal) == 0);
}

// The certificate a commit signature names, when it is not `seal`.
std::string OtherSigner(std::string_view sig_der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(sig_der.data());
  CmsPtr cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(sig_der.size())));
  if (!cms) {
    ClearOpenSslErrors();
    return {};
  }
  X509StackPtr certs(CMS_get1_certs(cms.get()));
  STACK_OF(CMS_SignerInfo)* sis = CMS_get0_SignerInfos(cms.get());
  for (int i = 0; certs && i < sk_CMS_SignerInfo_num(sis); ++i) {
    for (int j = 0; j < sk_X509_num(certs.get()); ++j) {
      X509* c = sk_X509_value(certs.get(), j);
      if (CMS_SignerInfo_cert_cmp(sk_CMS_SignerInfo_value(sis, i), c) == 0) {
        return crypto::DisplayName(c) + " (serial " + crypto::SerialHex(c) + ")";
      }
    }
  }
  return {};
}

// A CRL archived as a `crl` entry (daemon/crls.h), in archive order.
struct ArchivedCrl {
  uint64_t seq = 0;
  std::shared_ptr<X509_CRL> crl;
};

// Whether a certificate of the commit seal's verified path `chain` (leaf
// first, anchor last; the anchor is not checked) is revoked by an archived
// CRL of its issuer (issuer name and signature checked) for a commit made at
// `at` that follows entry `size`: revoked when the revocation date is not
// after `at`, or when the CRL saying so was archived before the commit (an
// archive that knew the seal revoked goes on signing: whatever time the
// commit claims). "" when not revoked, else the finding's detail.
std::string CommitSealRevocation(STACK_OF(X509)* chain, const std::vector<ArchivedCrl>& crls,
                                 std::time_t at, uint64_t size) {
  const int n = chain ? sk_X509_num(chain) : 0;
  for (int i = 0; i + 1 < n; ++i) {
    X509* cert = sk_X509_value(chain, i);
    X509* issuer = sk_X509_value(chain, i + 1);
    for (const ArchivedCrl& a : crls) {
      X509_CRL* crl = a.crl.get();
      if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) != 0 ||
          X509_CRL_verify(crl, X509_get0_pubkey(issuer)) != 1) {
        ERR_clear_error();
        continue;
      }
      X509_REVOKED* rev = nullptr;
      if (X509_CRL_get0_by_cert(crl, &rev, cert) != 1 || rev == nullptr) continue;
      const ASN1_TIME* when = X509_REVOKED_get0_revocationDate(rev);
      std::time_t when_t = 0;
      struct tm tm {};
      if (when != nullptr && ASN1_TIME_to_tm(when, &tm) == 1) when_t = timegm(&tm);
      if (when_t <= at || a.seq <= size) {
        return "\"" + crypto::DisplayName(cert) + "\" (serial " + crypto::SerialHex(cert) +
               ") is revoked since " + Rfc3339Utc(when_t) + " by the CRL of entry " +
               std::to_string(a.seq) + "; the commit is of " + Rfc3339Utc(at);
      }
    }
  }
  return {};
}

std::shared_ptr<X509> FirstCert(std::string_view pem) {
  auto certs = crypto::ParseCertificates(pem, "seal.pem");
  if (!certs || sk_X509_num(certs->get()) != 1) return nullptr;
  X509* c = sk_X509_value(certs->get(), 0);
  X509_up_ref(c);
  return std::shared_ptr<X509>(c, X509_free);
}

}  // namespace

int AuditReport::ExitCode() const {
  bool indeterminate = false;
  for (const AuditProblem& p : problems) {
    if (p.severity == Severity::kFailed) return 1;
    indeterminate = true;
  }
  return indeterminate ? 2 : 0;
}

Result<AuditReport> Audit(const std::string& dir, const AuditOptions& options) {
  if (options.trust_files.empty()) {
    return Err(Status::InvalidArgument("audit: at least one trust anchor file is needed"));
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return Err(Status::NotFound(dir + ": no such directory"));
  }
  X509StackPtr anchors(sk_X509_new_null());
  if (!anchors) return Err(Status::Internal("out of memory"));
  for (const std::string& f : options.trust_files) {
    auto certs = crypto::LoadCertificates(f);
    if (!certs) return Err(certs.error().WithContext("trust anchors"));
    while (sk_X509_num(certs->get()) > 0) sk_X509_push(anchors.get(), sk_X509_shift(certs->get()));
  }
  std::optional<crypto::Checkpoint> trusted;
  if (options.trusted) {
    auto cp = crypto::ParseCheckpoint(options.trusted->body, options.trusted->source);
    if (!cp) return Err(cp.error());
    trusted = *cp;
  }
  auto seal_trust = crypto::TrustStore::Create(X509StackPtr(X509_chain_up_ref(anchors.get())),
                                               nullptr, nullptr, crypto::TrustOptions{});
  if (!seal_trust) return Err(seal_trust.error());

  auto repo = Repo::Open(dir);
  if (!repo) return Err(repo.error());
  AuditReport report;
  std::vector<AuditProblem>* problems = &report.problems;

  // Which branch: refs/heads/main in a bare archive, HEAD's branch in a
  // working clone.
  std::string ref = "refs/heads/main";
  if (!git_repository_is_bare(repo->get())) {
    git_reference* raw = nullptr;
    if (git_reference_lookup(&raw, repo->get(), "HEAD") == 0) {
      GitReferencePtr head(raw);
      if (git_reference_type(head.get()) == GIT_REFERENCE_SYMBOLIC) {
        ref = git_reference_symbolic_target(head.get());
      }
    } else {
      git_error_clear();
    }
  }
  report.ref = ref;
  git_oid head_id;
  if (int rc = git_reference_name_to_id(&head_id, repo->get(), ref.c_str()); rc < 0) {
    if (rc == GIT_ENOTFOUND) {
      git_error_clear();
      return Err(Status::DataError(dir + ": not a sealpost archive (" + ref + " does not exist)"));
    }
    return Err(GitStatus(Code::kDataError, dir + ": cannot resolve " + ref));
  }
  report.head = OidHex(head_id);
  if (ref == "refs/heads/main") {
    auto lock = ReadFile(std::string(git_repository_path(repo->get())) + "refs/heads/main.lock", 4096);
    if (lock.has_value() && lock->size() == GIT_OID_HEXSZ + 1 && lock->back() == '\n' &&
        lock->compare(0, GIT_OID_HEXSZ, report.head) != 0 &&
        lock->find_first_not_of("0123456789abcdef") == GIT_OID_HEXSZ) {
      report.pending_commit = lock->substr(0, GIT_OID_HEXSZ);
    }
  }

  // The first-parent chain, oldest first.
  std::vector<git_oid> chain;
  {
    git_oid id = head_id;
    for (;;) {
      git_commit* raw = nullptr;
      if (git_commit_lookup(&raw, repo->get(), &id) < 0) {
        return Err(GitStatus(Code::kDataError,
                             dir + ": cannot read commit " + OidHex(id) + " (corrupt object?)"));
      }
      GitCommitPtr c(raw);
      chain.push_back(id);
      unsigned parents = git_commit_parentcount(c.get());
      if (parents > 1) {
        Add(problems, "commit-merge", 0, OidHex(id),
            "a merge commit: the log must be a straight line");
      }
      if (parents == 0) break;
      id = *git_commit_parent_id(c.get(), 0);
    }
    std::reverse(chain.begin(), chain.end());
  }
  report.commits = chain.size();

  // Is it an archive at all? The head must have FORMAT and a checkpoint.
  {
    git_commit* raw = nullptr;
    if (git_commit_lookup(&raw, repo->get(), &head_id) < 0) {
      return Err(GitStatus(Code::kDataError, dir + ": cannot read the head commit"));
    }
    GitCommitPtr c(raw);
    git_tree* raw_tree = nullptr;
    if (git_commit_tree(&raw_tree, c.get()) < 0) {
      return Err(GitStatus(Code::kDataError, dir + ": cannot read the head tree (corrupt object?)"));
    }
    GitTreePtr t(raw_tree);
    auto format = repo->File(t.get(), "FORMAT");
    if (!format) return Err(format.error());
    auto cp = repo->File(t.get(), "log/checkpoint");
    if (!cp) return Err(cp.error());
    if (!format->has_value() && !cp->has_value()) {
      return Err(Status::DataError(dir + ": not a sealpost archive (no FORMAT, no log/checkpoint on " +
                                   ref + ")"));
    }
    if (format->has_value() && **format != kFormatFileContent) {
      return Err(Status::DataError(dir + ": unknown archive format \"" +
                                   (*format)->substr(0, (*format)->find('\n')) + "\""));
    }
  }

  merkle::CompactRange range;
  std::shared_ptr<X509> seal;  // in force
  std::vector<std::shared_ptr<X509>> seals;
  std::vector<ArchivedCrl> archived_crls;  // of crl entries, for the commit seal
  std::vector<EntryTask> tasks;
  std::vector<CommitCheck> commit_checks;
  std::string origin;
  bool trusted_reached = false, trusted_consistent = false;
  GitTreePtr previous_entries;
  Walker walker(*repo, problems);

  // Entries each commit added, in order (tree diffs only).
  std::vector<std::vector<EntryTask>> added_by_commit;
  for (const git_oid& id : chain) {
    const std::string hex = OidHex(id);
    git_commit* raw = nullptr;
    if (git_commit_lookup(&raw, repo->get(), &id) < 0) {
      return Err(GitStatus(Code::kDataError, dir + ": cannot read commit " + hex));
    }
    GitCommitPtr commit(raw);
    git_tree* raw_tree = nullptr;
    if (git_commit_tree(&raw_tree, commit.get()) < 0) {
      return Err(GitStatus(Code::kDataError, dir + ": cannot read the tree of " + hex));
    }
    GitTreePtr tree(raw_tree);
    auto entries = SubTree(*repo, tree.get(), "entries");
    if (!entries) return Err(entries.error());
    std::vector<EntryTask> added;
    if (Status s = walker.Diff(previous_entries.get(), entries->get(), 0, "entries", hex, &added);
        !s.ok()) {
      return Err(s);
    }
    std::sort(added.begin(), added.end(),
              [](const EntryTask& a, const EntryTask& b) { return a.seq < b.seq; });
    added_by_commit.push_back(std::move(added));
    previous_entries = std::move(*entries);
  }
  std::vector<EntryTask> all_added;
  for (const auto& v : added_by_commit) all_added.insert(all_added.end(), v.begin(), v.end());
  auto leaves = ComputeLeaves(*repo, all_added, std::max(1, options.jobs));
  if (!leaves) return Err(leaves.error());
  all_added.clear();
  size_t leaf_index = 0;

  for (size_t commit_index = 0; commit_index < chain.size(); ++commit_index) {
    const git_oid& id = chain[commit_index];
    const std::string hex = OidHex(id);
    git_commit* raw = nullptr;
    if (git_commit_lookup(&raw, repo->get(), &id) < 0) {
      return Err(GitStatus(Code::kDataError, dir + ": cannot read commit " + hex));
    }
    GitCommitPtr commit(raw);
    git_tree* raw_tree = nullptr;
    if (git_commit_tree(&raw_tree, commit.get()) < 0) {
      return Err(GitStatus(Code::kDataError, dir + ": cannot read the tree of " + hex));
    }
    GitTreePtr tree(raw_tree);

    auto format = repo->File(tree.get(), "FORMAT");
    if (!format) return Err(format.error());
    if (!format->has_value() || **format != kFormatFileContent) {
      Add(problems, "format-unknown", 0, hex, "FORMAT is missing or not \"sealpost-archive 1\"");
    }
    auto body = repo->File(tree.get(), "log/checkpoint");
    if (!body) return Err(body.error());
    std::optional<crypto::Checkpoint> cp;
    if (!body->has_value()) {
      Add(problems, "checkpoint-missing", 0, hex, "log/checkpoint is missing");
    } else {
      auto parsed = crypto::ParseCheckpoint(**body, "log/checkpoint");
      if (!parsed) {
        Add(problems, "checkpoint-malformed", 0, hex, parsed.error().message());
      } else {
        cp = *parsed;
        if (origin.empty()) origin = cp->origin;
        if (cp->origin != origin) {
          Add(problems, "checkpoint-origin-mismatch", 0, hex,
              "checkpoint names \"" + cp->origin + "\", the log is \"" + origin + "\"");
        }
      }
    }

    // Entries this commit added, in order.
    for (EntryTask& t : added_by_commit[commit_index]) {
      if (t.seq != range.size() + 1) {
        Add(problems, "entry-gap", t.seq, hex,
            "expected entry " + std::to_string(range.size() + 1) + " next");
      }
      const Leaf& leaf = (*leaves)[leaf_index++];
      range.AppendLeafHash(leaf.hash);
      if (trusted && range.size() == trusted->size) {
        trusted_reached = true;
        trusted_consistent = range.Root() == trusted->root;
      }
      // Seal announcements and changes are followed here, in order; the
      // rest of the entry is checked by CheckEntry.
      // Parsed only when it may be a key change (the walk reads every
      // manifest; CheckEntry parses each one fully anyway).
      std::optional<Manifest> m;
      GitTreePtr etree;
      if (leaf.maybe_key_change) {
        auto et = repo->Tree(t.tree, EntryDir(t.seq));
        if (!et) return Err(et.error());
        etree = std::move(*et);
        auto mtext = repo->File(etree.get(), "manifest.json");
        if (!mtext) return Err(mtext.error());
        auto parsed = ParseManifest(mtext->value_or(std::string()), "manifest.json");
        if (parsed) m = std::move(*parsed);
      }
      bool key_change = m && m->kind == EntryKind::kKeyChange;
      if (m && m->kind == EntryKind::kCrl) {
        // A malformed one is reported by CheckEntry (crl-entry-invalid).
        auto der = repo->File(etree.get(), "crl.der");
        if (!der) return Err(der.error());
        if (der->has_value()) {
          const auto* p = reinterpret_cast<const unsigned char*>((*der)->data());
          X509_CRL* c = d2i_X509_CRL(nullptr, &p, static_cast<long>((*der)->size()));
          if (c != nullptr) archived_crls.push_back({t.seq, std::shared_ptr<X509_CRL>(c, X509_CRL_free)});
          ERR_clear_error();
        }
      }
      if (t.seq == 1 && !key_change) {
        Add(problems, "seal-not-announced", 1, hex, "entry 1 is not the seal announcement");
      }
      if (key_change) {
        auto change = m->fields.find("change");
        std::string kind = change == m->fields.end() ? "" : change->second;
        auto pem = repo->File(etree.get(), "seal.pem");
        if (!pem) return Err(pem.error());
        std::shared_ptr<X509> cert = pem->has_value() ? FirstCert(**pem) : nullptr;
        if (!cert) {
          Add(problems, "seal-change-invalid", t.seq, hex, "seal.pem is missing or not one certificate");
        } else if (t.seq == 1 || !seal) {
          if (kind != "initial-seal") {
            Add(problems, "seal-change-invalid", t.seq, hex, "the first seal must be change=initial-seal");
          }
          seal = cert;
          seals.push_back(cert);
        } else if (kind == "rotate" || kind == "renew") {
          auto p7s = repo->File(etree.get(), "seal.pem.p7s");
          if (!p7s) return Err(p7s.error());
          std::optional<std::string> der;
          if (p7s->has_value()) {
            auto d = crypto::DecodeSignature(**p7s, "seal.pem.p7s");
            if (d) der = std::move(*d);
          }
          if (!der || !RotationSignedByBoth(**pem, *der, seal.get(), cert.get())) {
            Add(problems, "seal-change-invalid", t.seq, hex,
                "seal.pem.p7s is not signed by both the previous and the new seal");
          } else {
            seal = cert;
            seals.push_back(cert);
          }
        } else {
          Add(problems, "seal-change-invalid", t.seq, hex, "unknown change \"" + kind + "\"");
        }
      }
      tasks.push_back(std::move(t));
    }

    // The commit's own state.
    if (cp) {
      if (cp->size != range.size()) {
        Add(problems, "checkpoint-size-mismatch", 0, hex,
            "checkpoint size " + std::to_string(cp->size) + ", entries " +
                std::to_string(range.size()));
      } else if (cp->root != range.Root()) {
        Add(problems, "checkpoint-root-mismatch", 0, hex,
            "checkpoint root " + merkle::ToHex(cp->root) + ", entries give " +
                merkle::ToHex(range.Root()));
      }
    }
    auto frontier = repo->File(tree.get(), "log/frontier");
    if (!frontier) return Err(frontier.error());
    if (!frontier->has_value() || **frontier != SerializeFrontier(range)) {
      Add(problems, "frontier-mismatch", 0, hex, "log/frontier does not match the entries");
    }
    auto root_seal = repo->File(tree.get(), "seal.pem");
    if (!root_seal) return Err(root_seal.error());
    std::shared_ptr<X509> root_cert = root_seal->has_value() ? FirstCert(**root_seal) : nullptr;
    if (!seal) {
      Add(problems, "seal-not-announced", 0, hex, "no seal certificate is in force");
    } else if (!root_cert || X509_cmp(root_cert.get(), seal.get()) != 0) {
      Add(problems, "seal-pem-mismatch", 0, hex, "seal.pem is not the seal in force");
    }

    CommitCheck cc;
    cc.commit = hex;
    cc.size = range.size();
    // A commit is never judged earlier than one before it (a signer with a
    // revoked key cannot backdate past the history it extends).
    cc.time = static_cast<std::time_t>(git_commit_time(commit.get()));
    if (!commit_checks.empty()) cc.time = std::max(cc.time, commit_checks.back().time);
    cc.seal = seal;
    GitBuf sig, signed_data;
    git_oid id_copy = id;  // libgit2 1.5 takes a non-const pointer
    int rc = git_commit_extract_signature(sig.get(), signed_data.get(), repo->get(), &id_copy,
                                          "gpgsig");
    if (rc == 0) {
      auto der = crypto::DecodeSignature(sig.view(), "gpgsig");
      cc.signature_der = der ? std::move(*der) : std::string();
      cc.signed_data = std::string(signed_data.view());
    } else {
      git_error_clear();
    }
    if (body->has_value()) cc.checkpoint_body = **body;
    auto cp_sig = repo->File(tree.get(), "log/checkpoint.p7s");
    if (!cp_sig) return Err(cp_sig.error());
    cc.checkpoint_sig = *cp_sig;
    commit_checks.push_back(std::move(cc));
  }
  report.entries = range.size();
  report.origin = origin;

  // The trusted checkpoint.
  bool incremental = false;
  if (trusted) {
    report.trusted_size = trusted->size;
    const std::string src = options.trusted->source;
    bool signature_ok = true;
    if (trusted->origin != origin) {
      Add(problems, "trusted-checkpoint-other-origin", 0, "",
          src + " is a checkpoint of \"" + trusted->origin + "\", this archive is \"" + origin + "\"");
      signature_ok = false;
    } else if (!options.trusted->signature_der.empty()) {
      signature_ok = false;
      for (const auto& s : seals) {
        if (crypto::VerifyCheckpointSignature(options.trusted->body, options.trusted->signature_der,
                                              s.get(), src)
                .ok()) {
          signature_ok = true;
          break;
        }
      }
      if (!signature_ok) {
        Add(problems, "trusted-checkpoint-signature-invalid", 0, "",
            src + " is not signed by any seal this archive announced");
      }
    }
    if (trusted->size == 0) {
      trusted_reached = true;
      trusted_consistent = trusted->root == merkle::EmptyRoot();
    }
    if (!trusted_reached) {
      Add(problems, "history-truncated", 0, report.head,
          "the trusted checkpoint has " + std::to_string(trusted->size) +
              " entries, the history only " + std::to_string(range.size()));
    } else if (!trusted_consistent) {
      Add(problems, "history-rewritten", trusted->size, report.head,
          "the first " + std::to_string(trusted->size) +
              " entries do not have the trusted checkpoint's root");
    } else if (signature_ok) {
      incremental = true;
    }
  }

  // Commit and checkpoint signatures (an incremental audit skips those of
  // commits the trusted checkpoint covers).
  for (const CommitCheck& cc : commit_checks) {
    if (incremental && cc.size <= trusted->size) continue;
    if (!cc.seal) continue;  // reported above
    if (!cc.signature_der.has_value()) {
      Add(problems, "commit-signature-missing", 0, cc.commit, "the commit has no gpgsig");
    } else if (Status s = crypto::VerifyCheckpointSignature(cc.signed_data, *cc.signature_der,
                                                            cc.seal.get(), "gpgsig");
               !s.ok()) {
      std::string other = OtherSigner(*cc.signature_der);
      if (!other.empty() && s.message().find("other than") != std::string::npos) {
        Add(problems, "commit-signer-not-seal", 0, cc.commit, "signed by " + other);
      } else {
        Add(problems, "commit-signature-invalid", 0, cc.commit, s.message());
      }
    } else {
      crypto::PathResult path = seal_trust->Validate(cc.seal.get(), nullptr, cc.time,
                                                     crypto::Usage::kDocumentSigning);
      if (!path.ok()) {
        Add(problems, "commit-seal-untrusted", 0, cc.commit,
            std::string(crypto::SubIndicationName(path.sub_indication)) + ": " + path.detail,
            crypto::IndicationOf(path.sub_indication) == crypto::Indication::kFailed
                ? Severity::kFailed
                : Severity::kIndeterminate);
      } else if (std::string why = CommitSealRevocation(path.chain.get(), archived_crls, cc.time,
                                                        cc.size);
                 !why.empty()) {
        Add(problems, "commit-seal-revoked", 0, cc.commit, why);
      }
    }
    if (cc.checkpoint_body.has_value()) {
      if (!cc.checkpoint_sig.has_value() ||
          !crypto::VerifyCheckpointSignature(*cc.checkpoint_body, *cc.checkpoint_sig, cc.seal.get(),
                                             "log/checkpoint.p7s")
               .ok()) {
        Add(problems, "checkpoint-signature-invalid", 0, cc.commit,
            "log/checkpoint.p7s is not the seal's signature over log/checkpoint");
      }
    }
  }

  // The entries themselves.
  if (incremental) {
    std::erase_if(tasks, [&](const EntryTask& t) { return t.seq <= trusted->size; });
  }
  const auto start = std::chrono::steady_clock::now();
  if (Status s = RunEntryChecks(dir, tasks, origin, anchors.get(), std::max(1, options.jobs),
                                options.progress, &report);
      !s.ok()) {
    return Err(s);
  }
  report.entry_check_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace sealpost::storage
