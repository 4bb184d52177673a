// `sealpost audit` against the tamper corpus: an archive written by
// storage::Archive, then rewritten with libgit2 the way an attacker (or an
// insider holding the seal key) would — new trees and commits, signed or
// not, the branch moved — and audited with the real binary. Each kind must
// be found with its own reason code; the untampered archive must pass the
// audit, `git fsck --strict` and `git verify-commit` (x509, gpgsm).
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include <git2.h>

#include "crypto/cades_sign.h"
#include "crypto/checkpoint.h"
#include "crypto/digest.h"
#include "crypto/report.h"
#include "crypto/merkle.h"
#include "crypto/software_signer.h"
#include "base/encoding.h"
#include "storage/archive.h"
#include "storage/audit.h"
#include "storage/entry.h"
#include "storage/git.h"
#include "storage/reader.h"
#include "tests/support/cms_peers.h"
#include "tests/support/test_pki.h"

namespace sealpost::storage {
namespace {

using sealpost::testing::CertSpec;
using sealpost::testing::CertToPem;
using sealpost::testing::ReadTestFile;
using sealpost::testing::RunCommand;
using sealpost::testing::ShellQuote;
using sealpost::testing::TempDir;
using sealpost::testing::TestCa;
using sealpost::testing::WriteTestFile;
namespace merkle = crypto::merkle;

constexpr const char* kOrigin = "cd-baichay.vn/archive";
constexpr int kDocuments = 6;  // entries 2..7, one commit each

std::unique_ptr<crypto::SoftwareKeySigner> MakeSigner(TestCa& ca, const std::string& label,
                                                      const std::string& cn) {
  CertSpec spec;
  spec.subject = "/CN=" + cn + "/O=Công đoàn Bãi Cháy/C=VN";
  auto issued = ca.Issue(spec);
  auto signer = crypto::SoftwareKeySigner::CreateForTesting(label, std::move(issued.key),
                                                            std::move(issued.cert));
  EXPECT_TRUE(signer.has_value());
  return std::move(*signer);
}

std::string SignBytes(crypto::Signer& signer, const crypto::KeyRef& key, std::string_view data) {
  auto cert = signer.Certificate(key);
  EXPECT_TRUE(cert.has_value());
  auto alg = crypto::DigestAlgForKey(X509_get0_pubkey(cert->get()));
  auto digest = crypto::DigestBytes(crypto::DigestAlgMd(*alg), data);
  auto der = crypto::BuildDetachedSignature(signer, key, cert->get(), *alg, *digest,
                                            crypto::CadesSignOptions{});
  EXPECT_TRUE(der.has_value()) << der.error().ToString();
  return der.value_or("");
}

// A document entry per the conventions: content, content.p7s, certs.pem.
EntryInput SignedDocument(crypto::SoftwareKeySigner& officer, int i) {
  EntryInput e;
  e.kind = EntryKind::kDocumentSent;
  std::string content = "Báo cáo tài chính quý " + std::to_string(i) + "\n";
  auto cert = officer.Certificate(crypto::KeyRef{"officer"});
  e.fields["id"] = "cd-baichay.vn/doc-" + std::to_string(i);
  e.fields["type"] = "report";
  e.fields["subject"] = "Báo cáo số " + std::to_string(i);
  e.fields["content_name"] = "bao-cao-" + std::to_string(i) + ".txt";
  e.fields["content_media_type"] = "text/plain";
  e.fields["content_size"] = std::to_string(content.size());
  e.fields["content_sha256"] = HexEncode(*crypto::DigestBytes(EVP_sha256(), content));
  e.files.push_back({"content.p7s", SignBytes(officer, crypto::KeyRef{"officer"}, content)});
  e.files.push_back({"certs.pem", CertToPem(cert->get())});
  e.files.push_back({"content", std::move(content)});
  return e;
}

// Rewrites the archive with libgit2.
class Tamperer {
 public:
  explicit Tamperer(const std::string& dir) {
    EXPECT_TRUE(EnsureLibgit2().ok());
    git_repository* raw = nullptr;
    EXPECT_EQ(git_repository_open_bare(&raw, dir.c_str()), 0);
    repo_.reset(raw);
  }

  git_oid Head() {
    git_oid id{};
    EXPECT_EQ(git_reference_name_to_id(&id, repo_.get(), "refs/heads/main"), 0);
    return id;
  }
  std::vector<git_oid> History() {
    std::vector<git_oid> out;
    git_oid id = Head();
    for (;;) {
      out.insert(out.begin(), id);
      GitCommitPtr c = Lookup(id);
      if (git_commit_parentcount(c.get()) == 0) return out;
      id = *git_commit_parent_id(c.get(), 0);
    }
  }
  GitCommitPtr Lookup(const git_oid& id) {
    git_commit* raw = nullptr;
    EXPECT_EQ(git_commit_lookup(&raw, repo_.get(), &id), 0);
    return GitCommitPtr(raw);
  }
  git_oid Parent(const git_oid& id) { return *git_commit_parent_id(Lookup(id).get(), 0); }
  git_oid TreeOf(const git_oid& id) { return *git_commit_tree_id(Lookup(id).get()); }
  std::string ReadTree(const git_oid& tree_id, const std::string& path) {
    GitTreePtr tree = Tree(tree_id);
    git_tree_entry* raw = nullptr;
    if (git_tree_entry_bypath(&raw, tree.get(), path.c_str()) != 0) return {};
    GitTreeEntryPtr e(raw);
    git_blob* b = nullptr;
    EXPECT_EQ(git_blob_lookup(&b, repo_.get(), git_tree_entry_id(e.get())), 0);
    GitBlobPtr blob(b);
    return std::string(static_cast<const char*>(git_blob_rawcontent(b)), git_blob_rawsize(b));
  }
  std::string GpgSig(const git_oid& id) {
    GitBuf sig, data;
    git_oid copy = id;
    if (git_commit_extract_signature(sig.get(), data.get(), repo_.get(), &copy, "gpgsig") != 0) {
      git_error_clear();
      return {};
    }
    return std::string(sig.view());
  }

  // `base` with `files` set (a value) or removed (nullopt).
  git_oid Edit(const git_oid& base, const std::map<std::string, std::optional<std::string>>& files) {
    GitTreePtr tree = Tree(base);
    std::vector<git_tree_update> updates;
    std::vector<std::string> paths;
    paths.reserve(files.size());
    for (const auto& [path, value] : files) {
      paths.push_back(path);
      git_tree_update u{};
      u.path = paths.back().c_str();
      if (value) {
        u.action = GIT_TREE_UPDATE_UPSERT;
        u.filemode = GIT_FILEMODE_BLOB;
        EXPECT_EQ(git_blob_create_from_buffer(&u.id, repo_.get(), value->data(), value->size()), 0);
      } else {
        u.action = GIT_TREE_UPDATE_REMOVE;
      }
      updates.push_back(u);
    }
    git_oid out{};
    EXPECT_EQ(git_tree_create_updated(&out, repo_.get(), tree.get(), updates.size(), updates.data()),
              0)
        << git_error_last()->message;
    return out;
  }
  // Swaps the directories `a` and `b` of `base`.
  git_oid Swap(const git_oid& base, const std::string& a, const std::string& b) {
    GitTreePtr tree = Tree(base);
    git_tree_entry *ra = nullptr, *rb = nullptr;
    EXPECT_EQ(git_tree_entry_bypath(&ra, tree.get(), a.c_str()), 0);
    EXPECT_EQ(git_tree_entry_bypath(&rb, tree.get(), b.c_str()), 0);
    GitTreeEntryPtr ea(ra), eb(rb);
    git_tree_update u[2] = {};
    u[0].action = u[1].action = GIT_TREE_UPDATE_UPSERT;
    u[0].filemode = u[1].filemode = GIT_FILEMODE_TREE;
    u[0].path = a.c_str();
    u[0].id = *git_tree_entry_id(eb.get());
    u[1].path = b.c_str();
    u[1].id = *git_tree_entry_id(ea.get());
    git_oid out{};
    EXPECT_EQ(git_tree_create_updated(&out, repo_.get(), tree.get(), 2, u), 0);
    return out;
  }
  // Rebuilds manifest.json of entry `seq` from its files, keeping its
  // kind, fields (with `field_edits` applied), time.
  git_oid RebuildManifest(const git_oid& tree_id, uint64_t seq,
                          const std::map<std::string, std::string>& field_edits = {}) {
    const std::string dir = EntryDir(seq);
    auto m = ParseManifest(ReadTree(tree_id, dir + "/manifest.json"), "manifest");
    EXPECT_TRUE(m.has_value());
    EntryInput e;
    e.kind = m->kind;
    e.fields = m->fields;
    for (const auto& [k, v] : field_edits) e.fields[k] = v;
    e.refers_to = m->refers_to;
    GitTreePtr tree = Tree(tree_id);
    git_tree_entry* raw = nullptr;
    EXPECT_EQ(git_tree_entry_bypath(&raw, tree.get(), dir.c_str()), 0);
    GitTreeEntryPtr dir_entry(raw);
    GitTreePtr entry_tree = Tree(*git_tree_entry_id(dir_entry.get()));
    for (size_t i = 0; i < git_tree_entrycount(entry_tree.get()); ++i) {
      std::string name = git_tree_entry_name(git_tree_entry_byindex(entry_tree.get(), i));
      if (name != "manifest.json") e.files.push_back({name, ReadTree(tree_id, dir + "/" + name)});
    }
    auto t = crypto::ParseRfc3339(m->time);
    std::map<std::string, std::optional<std::string>> files;
    files[dir + "/manifest.json"] = BuildManifest(e, kOrigin, seq, *t);
    return Edit(tree_id, files);
  }
  // Recomputes log/ of `tree` from its manifests 1..n, signed by `signer`.
  git_oid Reseal(const git_oid& tree_id, crypto::Signer& signer, const crypto::KeyRef& key) {
    merkle::CompactRange range;
    for (uint64_t seq = 1;; ++seq) {
      std::string m = ReadTree(tree_id, EntryDir(seq) + "/manifest.json");
      if (m.empty()) break;
      range.AppendData(m);
    }
    crypto::Checkpoint cp{kOrigin, range.size(), range.Root(), {}};
    std::string body = *crypto::SerializeCheckpoint(cp);
    auto sig = crypto::SignCheckpoint(signer, key, body);
    EXPECT_TRUE(sig.has_value());
    return Edit(tree_id, {{"log/checkpoint", body},
                          {"log/checkpoint.p7s", *sig},
                          {"log/frontier", SerializeFrontier(range)}});
  }
  // A commit of `tree` on `parent`; signer null: unsigned; raw_gpgsig: that header.
  git_oid Commit(const git_oid& tree_id, const git_oid* parent, crypto::Signer* signer,
                 const crypto::KeyRef& key, const std::string& message,
                 std::optional<std::string> raw_gpgsig = std::nullopt) {
    GitTreePtr tree = Tree(tree_id);
    git_signature* raw_sig = nullptr;
    EXPECT_EQ(git_signature_new(&raw_sig, "sealpost", "archive@sealpost.invalid", std::time(nullptr), 0), 0);
    GitSignaturePtr who(raw_sig);
    GitCommitPtr parent_commit;
    if (parent != nullptr) parent_commit = Lookup(*parent);
    const git_commit* parents[1] = {parent_commit.get()};
    GitBuf buffer;
    EXPECT_EQ(git_commit_create_buffer(buffer.get(), repo_.get(), who.get(), who.get(), nullptr,
                                       message.c_str(), tree.get(), parent ? 1 : 0, parents),
              0);
    std::string text(buffer.view());
    git_oid out{};
    if (signer == nullptr && !raw_gpgsig) {
      EXPECT_EQ(git_odb_hash(&out, text.data(), text.size(), GIT_OBJECT_COMMIT), 0);
      git_odb* odb = nullptr;
      EXPECT_EQ(git_repository_odb(&odb, repo_.get()), 0);
      GitOdbPtr owned(odb);
      EXPECT_EQ(git_odb_write(&out, odb, text.data(), text.size(), GIT_OBJECT_COMMIT), 0);
      return out;
    }
    std::string armored =
        raw_gpgsig ? *raw_gpgsig : ArmorSignedMessage(SignBytes(*signer, key, text));
    EXPECT_EQ(git_commit_create_with_signature(&out, repo_.get(), text.c_str(), armored.c_str(),
                                               "gpgsig"),
              0);
    return out;
  }
  void SetHead(const git_oid& id) {
    git_reference* raw = nullptr;
    EXPECT_EQ(git_reference_create(&raw, repo_.get(), "refs/heads/main", &id, 1, "tamper"), 0);
    GitReferencePtr ref(raw);
  }

 private:
  GitTreePtr Tree(const git_oid& id) {
    git_tree* raw = nullptr;
    EXPECT_EQ(git_tree_lookup(&raw, repo_.get(), &id), 0);
    return GitTreePtr(raw);
  }
  GitRepositoryPtr repo_;
};

class AuditTamperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = std::make_unique<TestCa>(TestCa::CreateRoot("/CN=Test Root/O=Test Federation/C=VN"));
    seal_ = MakeSigner(*ca_, "seal", "Con dấu Công đoàn Bãi Cháy");
    officer_ = MakeSigner(*ca_, "officer", "Nguyễn Thị Duyên");
    other_ = MakeSigner(*ca_, "other", "Con dấu khác");
    trust_ = tmp_.file("ca.pem");
    WriteTestFile(trust_, CertToPem(ca_->cert()));
    path_ = tmp_.file("archive.git");
    ArchiveOptions o;
    o.origin = kOrigin;
    o.signer = seal_.get();
    o.seal_key = crypto::KeyRef{"seal"};
    auto a = Archive::Create(path_, o);
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    for (int i = 0; i < kDocuments; ++i) {
      auto r = (*a)->Append(SignedDocument(*officer_, i));
      ASSERT_TRUE(r.has_value()) << r.error().ToString();
    }
  }

  // Runs `sealpost audit` with --json; returns the exit status.
  int Audit(std::string* out, const std::string& extra = "") {
    return RunCommand(ShellQuote(SEALPOST_CLI_PATH) + " audit " + ShellQuote(path_) + " --trust " +
                          ShellQuote(trust_) + " --json " + extra,
                      out);
  }
  static bool HasProblem(const std::string& json, const std::string& code, uint64_t seq = 0) {
    std::string needle = "{\"code\":\"" + code + "\"";
    for (size_t pos = json.find(needle); pos != std::string::npos;
         pos = json.find(needle, pos + 1)) {
      if (seq == 0) return true;
      size_t end = json.find('}', pos);
      if (json.substr(pos, end - pos).find("\"seq\":" + std::to_string(seq) + ",") !=
          std::string::npos) {
        return true;
      }
    }
    return false;
  }
  // The trusted checkpoint of the current head, as `sealpost archive
  // checkpoint -o FILE` writes it (FILE and FILE.p7s).
  std::string SaveCheckpoint(const std::string& name) {
    Tamperer t(path_);
    git_oid tree = t.TreeOf(t.Head());
    std::string file = tmp_.file(name);
    WriteTestFile(file, t.ReadTree(tree, "log/checkpoint"));
    WriteTestFile(file + ".p7s", t.ReadTree(tree, "log/checkpoint.p7s"));
    return file;
  }
  std::string Content(uint64_t seq) { return EntryDir(seq) + "/content"; }

  TempDir tmp_;
  std::unique_ptr<TestCa> ca_;
  std::unique_ptr<crypto::SoftwareKeySigner> seal_, officer_, other_;
  std::string trust_, path_;
  const crypto::KeyRef seal_key_{"seal"}, other_key_{"other"};
};

TEST_F(AuditTamperTest, UntamperedArchivePassesAuditFsckAndVerifyCommit) {
  std::string out;
  EXPECT_EQ(Audit(&out), 0) << out;
  EXPECT_NE(out.find("\"result\":\"clean\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"entries\":7"), std::string::npos) << out;
  EXPECT_NE(out.find("\"signaturesChecked\":6"), std::string::npos) << out;
  EXPECT_NE(out.find("\"ref\":\"refs/heads/main\""), std::string::npos) << out;
  // Text form, both languages.
  EXPECT_EQ(RunCommand(ShellQuote(SEALPOST_CLI_PATH) + " --lang vi audit " + ShellQuote(path_) +
                           " --trust " + ShellQuote(trust_) + " --jobs 1",
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("Kết quả: SẠCH"), std::string::npos) << out;

  int rc = 0;
  std::string fsck;
  rc = RunCommand("git -C " + ShellQuote(path_) + " fsck --strict --no-dangling", &fsck);
  EXPECT_EQ(rc, 0) << fsck;
  EXPECT_EQ(fsck.find("error"), std::string::npos) << fsck;
  EXPECT_EQ(fsck.find("warning"), std::string::npos) << fsck;
  sealpost::testing::GpgsmHome gpg(tmp_.path());
  ASSERT_TRUE(gpg.TrustCa(ca_->cert()));
  std::string list;
  RunCommand("git -C " + ShellQuote(path_) + " rev-list main", &list);
  std::stringstream commits(list);
  std::string c;
  int n = 0;
  while (std::getline(commits, c)) {
    std::string vout;
    int vrc = RunCommand("GNUPGHOME=" + ShellQuote(tmp_.path() + "/gnupg") + " git -C " +
                             ShellQuote(path_) + " -c gpg.format=x509 verify-commit " + c,
                         &vout);
    EXPECT_EQ(vrc, 0) << c << ": " << vout;
    EXPECT_NE(vout.find("Good signature"), std::string::npos) << vout;
    ++n;
  }
  EXPECT_EQ(n, kDocuments + 1);
}

TEST_F(AuditTamperTest, EditedContentBlobIsFoundAsDigestMismatch) {
  Tamperer t(path_);
  git_oid head = t.Head(), parent = t.Parent(head);
  git_oid tree = t.Edit(t.TreeOf(head), {{Content(7), std::string("Báo cáo đã sửa\n")}});
  t.SetHead(t.Commit(tree, &parent, seal_.get(), seal_key_, "Entry 7\n"));
  std::string out;
  EXPECT_EQ(Audit(&out), 1) << out;
  EXPECT_TRUE(HasProblem(out, "entry-file-digest-mismatch", 7)) << out;
  EXPECT_TRUE(HasProblem(out, "content-field-mismatch", 7)) << out;
  EXPECT_TRUE(HasProblem(out, "signature-failed", 7)) << out;
}

TEST_F(AuditTamperTest, EditedManifestFieldIsFoundAsCheckpointRootMismatch) {
  Tamperer t(path_);
  git_oid head = t.Head(), parent = t.Parent(head);
  std::string manifest = t.ReadTree(t.TreeOf(head), EntryDir(7) + "/manifest.json");
  size_t pos = manifest.find("Báo cáo số 5");
  ASSERT_NE(pos, std::string::npos) << manifest;
  manifest.replace(pos, std::string("Báo cáo số 5").size(), "Báo cáo số 9");
  git_oid tree = t.Edit(t.TreeOf(head), {{EntryDir(7) + "/manifest.json", manifest}});
  t.SetHead(t.Commit(tree, &parent, seal_.get(), seal_key_, "Entry 7\n"));
  std::string out;
  EXPECT_EQ(Audit(&out), 1) << out;
  EXPECT_TRUE(HasProblem(out, "checkpoint-root-mismatch")) << out;
  EXPECT_FALSE(HasProblem(out, "entry-file-digest-mismatch")) << out;
}

TEST_F(AuditTamperTest, ReplacedSignatureResealedByInsiderIsFoundAsSignatureFailure) {
  Tamperer t(path_);
  git_oid head = t.Head(), parent = t.Parent(head);
  // A real signature by the officer, but over other content; the manifest
  // and the checkpoint are rebuilt and sealed with the real seal key.
  std::string forged = SignBytes(*officer_, crypto::KeyRef{"officer"}, "another document\n");
  git_oid tree = t.Edit(t.TreeOf(head), {{EntryDir(7) + "/content.p7s", forged}});
  tree = t.RebuildManifest(tree, 7);
  tree = t.Reseal(tree, *seal_, seal_key_);
  t.SetHead(t.Commit(tree, &parent, seal_.get(), seal_key_, "Entry 7\n"));
  std::string out;
  EXPECT_EQ(Audit(&out), 1) << out;
  EXPECT_TRUE(HasProblem(out, "signature-failed", 7)) << out;
  EXPECT_NE(out.find("HASH_FAILURE"), std::string::npos) << out;
  EXPECT_FALSE(HasProblem(out, "checkpoint-root-mismatch")) << out;
  EXPECT_FALSE(HasProblem(out, "entry-file-digest-mismatch")) << out;
}

TEST_F(AuditTamperTest, RemovedEntryIsFoundAsEntryRemoved) {
  Tamperer t(path_);
  git_oid head = t.Head();
  git_oid tree = t.Edit(t.TreeOf(head), {{EntryDir(4) + "/manifest.json", std::nullopt},
                                         {EntryDir(4) + "/content", std::nullopt},
                                         {EntryDir(4) + "/content.p7s", std::nullopt},
                                         {EntryDir(4) + "/certs.pem", std::nullopt}});
  t.SetHead(t.Commit(tree, &head, seal_.get(), seal_key_, "Entry 8\n"));
  std::string out;
  EXPECT_EQ(Audit(&out), 1) << out;
  EXPECT_TRUE(HasProblem(out, "entry-removed", 4)) << out;
}

TEST_F(AuditTamperTest, ReorderedEntriesAreFoundAsSeqMismatch) {
  Tamperer t(path_);
  git_oid head = t.Head();
  git_oid tree = t.Swap(t.TreeOf(head), EntryDir(5), EntryDir(6));
  t.SetHead(t.Commit(tree, &head, seal_.get(), seal_key_, "Entries\n"));
  std::string out;
  EXPECT_EQ(Audit(&out), 1) << out;
  EXPECT_TRUE(HasProblem(out, "entry-changed", 5)) << out;
  EXPECT_TRUE(HasProblem(out, "manifest-seq-mismatch", 5)) << out;
  EXPECT_TRUE(HasProblem(out, "manifest-seq-mismatch", 6)) << out;
}

TEST_F(AuditTamperTest, RewrittenCommitWithBranchResetIsFoundAsInvalidCommitSignature) {
  Tamperer t(path_);
  std::vector<git_oid> history = t.History();
  ASSERT_EQ(history.size(), static_cast<size_t>(kDocuments + 1));
  const git_oid original = history[3];  // adds entry 4
  git_oid parent = t.Parent(original);
  git_oid tree = t.Edit(t.TreeOf(original), {{Content(4), std::string("sửa lại\n")}});
  // The original commit's signature copied onto the rewritten commit.
  t.SetHead(t.Commit(tree, &parent, nullptr, seal_key_, "Entry 4\n", t.GpgSig(original)));
  std::string out;
  EXPECT_EQ(Audit(&out), 1) << out;
  EXPECT_TRUE(HasProblem(out, "commit-signature-invalid")) << out;
  EXPECT_TRUE(HasProblem(out, "entry-file-digest-mismatch", 4)) << out;
}

TEST_F(AuditTamperTest, TruncatedHistoryIsFoundWithTrustedCheckpoint) {
  std::string trusted = SaveCheckpoint("trusted-7");
  Tamperer t(path_);
  t.SetHead(t.History()[3]);  // back to 4 entries: validly signed, but shorter
  std::string out;
  EXPECT_EQ(Audit(&out), 0) << "without a trusted checkpoint nothing shows: " << out;
  EXPECT_EQ(Audit(&out, "--checkpoint " + ShellQuote(trusted)), 1) << out;
  EXPECT_TRUE(HasProblem(out, "history-truncated")) << out;
}

TEST_F(AuditTamperTest, AddedCommitWithoutSignatureIsFound) {
  Tamperer t(path_);
  git_oid head = t.Head();
  t.SetHead(t.Commit(t.TreeOf(head), &head, nullptr, seal_key_, "Nothing to see\n"));
  std::string out;
  EXPECT_EQ(Audit(&out), 1) << out;
  EXPECT_TRUE(HasProblem(out, "commit-signature-missing")) << out;
}

TEST_F(AuditTamperTest, CommitSignedByAnotherCertificateOfTheSameCaIsFound) {
  Tamperer t(path_);
  git_oid head = t.Head();
  t.SetHead(t.Commit(t.TreeOf(head), &head, other_.get(), other_key_, "Signed by another\n"));
  std::string out;
  EXPECT_EQ(Audit(&out), 1) << out;
  EXPECT_TRUE(HasProblem(out, "commit-signer-not-seal")) << out;
  EXPECT_NE(out.find("Con dấu khác"), std::string::npos) << out;
}

TEST_F(AuditTamperTest, ForgedCheckpointIsFoundAsBadSignatureAndRoot) {
  Tamperer t(path_);
  git_oid head = t.Head();
  crypto::Checkpoint forged{kOrigin, 7, merkle::LeafHash("forged"), {}};
  std::string body = *crypto::SerializeCheckpoint(forged);
  auto sig = crypto::SignCheckpoint(*other_, other_key_, body);
  ASSERT_TRUE(sig.has_value());
  git_oid tree = t.Edit(t.TreeOf(head), {{"log/checkpoint", body}, {"log/checkpoint.p7s", *sig}});
  t.SetHead(t.Commit(tree, &head, seal_.get(), seal_key_, "Checkpoint\n"));
  std::string out;
  EXPECT_EQ(Audit(&out), 1) << out;
  EXPECT_TRUE(HasProblem(out, "checkpoint-signature-invalid")) << out;
  EXPECT_TRUE(HasProblem(out, "checkpoint-root-mismatch")) << out;
}

TEST_F(AuditTamperTest, HistoryInconsistentWithEarlierTrustedCheckpointIsFound) {
  std::string trusted = SaveCheckpoint("trusted-7");
  // An insider with the seal key rewrites entry 7's subject and re-seals
  // everything: internally consistent, so only the trusted checkpoint shows it.
  Tamperer t(path_);
  git_oid head = t.Head(), parent = t.Parent(head);
  git_oid tree = t.RebuildManifest(t.TreeOf(head), 7, {{"subject", "Báo cáo đã đổi"}});
  tree = t.Reseal(tree, *seal_, seal_key_);
  t.SetHead(t.Commit(tree, &parent, seal_.get(), seal_key_, "Entry 7\n"));
  std::string out;
  EXPECT_EQ(Audit(&out), 0) << out;
  EXPECT_EQ(Audit(&out, "--checkpoint " + ShellQuote(trusted)), 1) << out;
  EXPECT_TRUE(HasProblem(out, "history-rewritten", 7)) << out;
}

TEST_F(AuditTamperTest, ForgedTrustedCheckpointIsFound) {
  Tamperer t(path_);
  std::string body = t.ReadTree(t.TreeOf(t.Head()), "log/checkpoint");
  std::string file = tmp_.file("forged");
  WriteTestFile(file, body);
  WriteTestFile(file + ".p7s", *crypto::SignCheckpoint(*other_, other_key_, body));
  std::string out;
  EXPECT_EQ(Audit(&out, "--checkpoint " + ShellQuote(file)), 1) << out;
  EXPECT_TRUE(HasProblem(out, "trusted-checkpoint-signature-invalid")) << out;
}

TEST_F(AuditTamperTest, TrustedCheckpointOfAnotherUnionIsFound) {
  crypto::Checkpoint cp{"cd-halong.vn/archive", 3, merkle::EmptyRoot(), {}};
  std::string file = tmp_.file("other-union");
  WriteTestFile(file, *crypto::SerializeCheckpoint(cp));
  std::string out;
  EXPECT_EQ(Audit(&out, "--checkpoint " + ShellQuote(file)), 1) << out;
  EXPECT_TRUE(HasProblem(out, "trusted-checkpoint-other-origin")) << out;
}

TEST_F(AuditTamperTest, AuditAcrossSealRotationIsCleanAndOldSealIsRefusedAfterIt) {
  auto next = MakeSigner(*ca_, "seal2", "Con dấu mới Công đoàn Bãi Cháy");
  {
    ArchiveOptions o;
    o.origin = kOrigin;
    o.signer = seal_.get();
    o.seal_key = seal_key_;
    auto a = Archive::Open(path_, o);
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    auto r = (*a)->ChangeSeal(next.get(), crypto::KeyRef{"seal2"});
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    EXPECT_EQ(r->seq, 8u);
    for (int i = 0; i < 2; ++i) ASSERT_TRUE((*a)->Append(SignedDocument(*officer_, 100 + i)));
  }
  std::string out;
  EXPECT_EQ(Audit(&out), 0) << out;
  EXPECT_NE(out.find("\"entries\":10"), std::string::npos) << out;
  // The old seal's key no longer signs for the archive.
  Tamperer t(path_);
  git_oid head = t.Head();
  t.SetHead(t.Commit(t.TreeOf(head), &head, seal_.get(), seal_key_, "Old seal\n"));
  EXPECT_EQ(Audit(&out), 1) << out;
  EXPECT_TRUE(HasProblem(out, "commit-signer-not-seal")) << out;
}

TEST_F(AuditTamperTest, SealChangeNotSignedByThePreviousSealIsFound) {
  // Another certificate of the same CA announces itself as the new seal,
  // signing the change only with its own key.
  Tamperer t(path_);
  git_oid head = t.Head();
  auto cert = other_->Certificate(other_key_);
  const std::string pem = CertToPem(cert->get());
  EntryInput change;
  change.kind = EntryKind::kKeyChange;
  change.fields["change"] = "rotate";
  change.files.push_back({"seal.pem", pem});
  change.files.push_back({"seal.pem.p7s", SignBytes(*other_, other_key_, pem)});
  std::map<std::string, std::optional<std::string>> files;
  for (const EntryFile& f : change.files) files[EntryDir(8) + "/" + f.name] = f.data;
  files[EntryDir(8) + "/manifest.json"] = BuildManifest(change, kOrigin, 8, std::time(nullptr));
  files["seal.pem"] = pem;
  git_oid tree = t.Reseal(t.Edit(t.TreeOf(head), files), *other_, other_key_);
  t.SetHead(t.Commit(tree, &head, other_.get(), other_key_, "Entry 8\n"));
  std::string out;
  EXPECT_EQ(Audit(&out), 1) << out;
  EXPECT_TRUE(HasProblem(out, "seal-change-invalid", 8)) << out;
  EXPECT_TRUE(HasProblem(out, "commit-signer-not-seal")) << out;
}


TEST_F(AuditTamperTest, CommitSignedByTheNewSealBeforeTheChangeIsFound) {
  // The new seal is in force from its key-change entry on, not before: a
  // commit before the change re-signed with the new seal's key (an insider
  // who got the new token early backdating an entry) is flagged, though the
  // new seal is announced later in the same history.
  auto next = MakeSigner(*ca_, "seal2", "Con dấu mới Công đoàn Bãi Cháy");
  const crypto::KeyRef next_key{"seal2"};
  {
    ArchiveOptions o;
    o.origin = kOrigin;
    o.signer = seal_.get();
    o.seal_key = crypto::KeyRef{"seal"};
    auto a = Archive::Open(path_, o);
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    ASSERT_TRUE((*a)->ChangeSeal(next.get(), next_key).has_value());
    ASSERT_TRUE((*a)->Append(SignedDocument(*officer_, 100)).has_value());
  }
  std::string out;
  ASSERT_EQ(Audit(&out), 0) << out;
  Tamperer t(path_);
  std::vector<git_oid> h = t.History();  // entries 1..7 by the old seal, 8 the change, 9
  ASSERT_EQ(h.size(), 9u);
  git_oid parent = h[5];
  git_oid early = t.Commit(t.TreeOf(h[6]), &parent, next.get(), next_key, "Entry 7\n");
  git_oid change = t.Commit(t.TreeOf(h[7]), &early, next.get(), next_key, "Entry 8\n");
  t.SetHead(t.Commit(t.TreeOf(h[8]), &change, next.get(), next_key, "Entry 9\n"));
  EXPECT_EQ(Audit(&out), 1) << out;
  EXPECT_TRUE(HasProblem(out, "commit-signer-not-seal")) << out;
  EXPECT_NE(out.find(git_oid_tostr_s(&early)), std::string::npos) << out;
  // The commits from the change on are the new seal's: only the early one.
  EXPECT_EQ(out.find(git_oid_tostr_s(&change)), std::string::npos) << out;
}


// The seal revoked at T by a CRL the archive holds (a `crl` entry, as the
// daemon archives the CRLs it fetches): the commits made before T stay
// clean, the commits after T (and the one archiving the CRL) are found as
// commit-seal-revoked. Without the CRL entry the same history is clean.
TEST_F(AuditTamperTest, CommitsSignedAfterTheSealWasRevokedByAnArchivedCrlAreFound) {
  const std::time_t revoked_at = std::time(nullptr) + 1;
  // Commit times are whole seconds: the next commits are after T.
  std::this_thread::sleep_until(std::chrono::system_clock::from_time_t(revoked_at + 1));
  {
    ArchiveOptions o;
    o.origin = kOrigin;
    o.signer = seal_.get();
    o.seal_key = seal_key_;
    auto a = Archive::Open(path_, o);
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    for (int i = 0; i < 2; ++i) ASSERT_TRUE((*a)->Append(SignedDocument(*officer_, 200 + i)));
  }
  std::string out;
  EXPECT_EQ(Audit(&out), 0) << out;  // no CRL in the archive: clean

  auto cert = seal_->Certificate(seal_key_);
  ASSERT_TRUE(cert.has_value());
  const long serial = ASN1_INTEGER_get(X509_get0_serialNumber(cert->get()));
  X509CrlPtr crl = ca_->MakeCrl({serial}, 30, revoked_at);
  std::string der = sealpost::testing::CrlToDer(crl.get());
  {
    ArchiveOptions o;
    o.origin = kOrigin;
    o.signer = seal_.get();
    o.seal_key = seal_key_;
    auto a = Archive::Open(path_, o);
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    EntryInput e;
    e.kind = EntryKind::kCrl;
    e.fields = {{"anchor", "test-root"},
                {"url", "file:///crl/root.crl"},
                {"issuer", "CN=Test Root, O=Test Federation, C=VN"},
                {"crl_sha256", HexEncode(*crypto::DigestBytes(EVP_sha256(), der))},
                {"revoked_count", "1"}};
    e.files = {{"crl.der", der}};
    auto r = (*a)->Append(std::move(e));
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    EXPECT_EQ(r->seq, 10u);
  }
  EXPECT_EQ(Audit(&out), 1) << out;
  size_t found = 0;
  for (size_t pos = out.find("\"commit-seal-revoked\""); pos != std::string::npos;
       pos = out.find("\"commit-seal-revoked\"", pos + 1)) {
    ++found;
  }
  // Entries 8 and 9 (after T) and the commit archiving the CRL (entry 10).
  EXPECT_EQ(found, 3u) << out;
  EXPECT_NE(out.find("is revoked since"), std::string::npos) << out;
  // Nothing else is wrong with the archive.
  EXPECT_EQ(out.find("\"code\":\"commit-signature"), std::string::npos) << out;
  EXPECT_EQ(out.find("\"code\":\"crl-entry-invalid\""), std::string::npos) << out;
}

}  // namespace
}  // namespace sealpost::storage
