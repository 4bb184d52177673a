// Rendering of an audit report: one sentence per problem (vi/en), JSON.
#include <string>

#include "base/json.h"
#include "storage/audit.h"

namespace sealpost::storage {
namespace {

struct Sentence {
  std::string_view code;
  std::string_view en;
  std::string_view vi;
};

constexpr Sentence kSentences[] = {
    {"commit-merge", "The history has a merge commit; the log must be a straight line.",
     "Lịch sử có một commit hợp nhất (merge); nhật ký phải là một đường thẳng."},
    {"commit-signature-missing", "The commit carries no signature.",
     "Commit không có chữ ký."},
    {"commit-signature-invalid", "The commit's signature does not verify over the commit.",
     "Chữ ký của commit không khớp với nội dung commit."},
    {"commit-signer-not-seal",
     "The commit is signed by a certificate that is not the archive's seal in force.",
     "Commit được ký bằng một chứng thư không phải con dấu đang hiệu lực của kho lưu trữ."},
    {"commit-seal-untrusted",
     "The seal certificate does not chain to the trust anchors at the commit's time.",
     "Chứng thư con dấu không dẫn về chứng thư gốc tin cậy vào thời điểm của commit."},
    {"commit-seal-revoked",
     "The seal certificate was revoked (by a CRL in the archive) when the commit was made.",
     "Chứng thư con dấu đã bị thu hồi (theo một CRL trong kho lưu trữ) khi commit được tạo."},
    {"format-unknown", "The FORMAT file is missing or names an unknown format.",
     "Tệp FORMAT bị thiếu hoặc ghi một định dạng không biết."},
    {"seal-not-announced", "No seal certificate was announced by a key-change entry.",
     "Không có chứng thư con dấu nào được công bố bằng một mục thay đổi khóa."},
    {"seal-pem-mismatch", "The root seal.pem is not the seal in force for this commit.",
     "Tệp seal.pem ở gốc không phải con dấu đang hiệu lực cho commit này."},
    {"seal-change-invalid",
     "The seal change is not signed by both the previous and the new seal.",
     "Việc thay con dấu không được ký bởi cả con dấu cũ và con dấu mới."},
    {"entry-misplaced", "A directory under entries/ is not where an entry belongs.",
     "Một thư mục trong entries/ không nằm đúng chỗ của một mục."},
    {"entry-changed", "An entry already in the log was changed by a later commit.",
     "Một mục đã có trong nhật ký bị một commit sau sửa đổi."},
    {"entry-removed", "An entry already in the log was removed.",
     "Một mục đã có trong nhật ký bị xóa."},
    {"entry-gap", "The sequence numbers are not gapless.",
     "Số thứ tự các mục không liên tục."},
    {"manifest-malformed", "The manifest cannot be read or has invalid values.",
     "Không đọc được bản kê (manifest) hoặc bản kê có giá trị không hợp lệ."},
    {"manifest-seq-mismatch",
     "The manifest names another sequence number than its place (entries reordered?).",
     "Bản kê ghi số thứ tự khác với vị trí của nó (các mục bị đảo thứ tự?)."},
    {"manifest-origin-mismatch", "The manifest names another archive.",
     "Bản kê ghi tên một kho lưu trữ khác."},
    {"manifest-not-canonical", "The manifest is not in canonical form.",
     "Bản kê không ở dạng chuẩn tắc."},
    {"entry-file-missing", "A file the manifest lists (or a signed file) is missing.",
     "Thiếu một tệp mà bản kê liệt kê (hoặc tệp được ký)."},
    {"entry-file-unlisted", "The entry holds a file its manifest does not list.",
     "Mục chứa một tệp không có trong bản kê."},
    {"entry-file-digest-mismatch",
     "A file does not match the SHA-256 and size in its manifest (edited after archiving).",
     "Một tệp không khớp SHA-256 và kích thước trong bản kê (bị sửa sau khi lưu trữ)."},
    {"content-field-mismatch", "content_sha256 or content_size does not describe the content.",
     "content_sha256 hoặc content_size không khớp với nội dung."},
    {"signature-malformed", "A signature file is not a detached CMS signature.",
     "Một tệp chữ ký không phải chữ ký CMS tách rời."},
    {"signature-failed", "A signature in the entry is not valid.",
     "Một chữ ký trong mục không hợp lệ."},
    {"signature-indeterminate",
     "A signature in the entry cannot be confirmed with the evidence kept (e.g. a CRL is missing).",
     "Không thể xác nhận một chữ ký trong mục với bằng chứng đã lưu (ví dụ thiếu CRL)."},
    {"evidence-malformed", "The entry's certs.pem or crls.pem cannot be read.",
     "Không đọc được certs.pem hoặc crls.pem của mục."},
    {"checkpoint-missing", "The commit has no log/checkpoint.",
     "Commit không có log/checkpoint."},
    {"checkpoint-malformed", "log/checkpoint is not a valid checkpoint.",
     "log/checkpoint không phải một điểm kiểm tra hợp lệ."},
    {"checkpoint-origin-mismatch", "The checkpoint names another log.",
     "Điểm kiểm tra ghi tên một nhật ký khác."},
    {"checkpoint-size-mismatch", "The checkpoint's size is not the number of entries.",
     "Kích thước trong điểm kiểm tra không bằng số mục."},
    {"checkpoint-root-mismatch", "The checkpoint's root is not the Merkle root of the entries.",
     "Gốc của điểm kiểm tra không phải gốc Merkle của các mục."},
    {"checkpoint-signature-invalid", "The checkpoint is not signed by the seal (forged?).",
     "Điểm kiểm tra không được ký bởi con dấu (giả mạo?)."},
    {"frontier-mismatch", "log/frontier does not match the entries.",
     "log/frontier không khớp với các mục."},
    {"trusted-checkpoint-other-origin", "The trusted checkpoint belongs to another archive.",
     "Điểm kiểm tra tin cậy thuộc về một kho lưu trữ khác."},
    {"trusted-checkpoint-signature-invalid",
     "The trusted checkpoint is not signed by a seal of this archive.",
     "Điểm kiểm tra tin cậy không được ký bởi con dấu nào của kho lưu trữ này."},
    {"history-truncated", "The history is shorter than the trusted checkpoint: entries were cut off.",
     "Lịch sử ngắn hơn điểm kiểm tra tin cậy: các mục đã bị cắt bỏ."},
    {"history-rewritten",
     "The history is not consistent with the trusted checkpoint: it was rewritten or forked.",
     "Lịch sử không nhất quán với điểm kiểm tra tin cậy: đã bị viết lại hoặc rẽ nhánh."},
};

}  // namespace

std::string AuditProblemSentence(const AuditProblem& p, Lang lang) {
  std::string where;
  if (p.seq != 0) where += std::string(Tr(lang, "Entry ", "Mục ")) + std::to_string(p.seq);
  if (!p.commit.empty()) {
    if (!where.empty()) where += ", ";
    where += "commit " + p.commit.substr(0, 12);
  }
  std::string text;
  for (const Sentence& s : kSentences) {
    if (s.code == p.code) text = std::string(Tr(lang, s.en, s.vi));
  }
  if (text.empty()) text = std::string(Tr(lang, "Problem ", "Vấn đề ")) + p.code + ".";
  std::string out = where.empty() ? text : where + ": " + text;
  out += " [" + p.code + "]";
  if (!p.detail.empty()) out += " (" + p.detail + ")";
  return out;
}

std::string AuditReportToJson(const AuditReport& r) {
  int code = r.ExitCode();
  std::string out = "{\"result\":";
  out += code == 0 ? "\"clean\"" : code == 1 ? "\"failed\"" : "\"indeterminate\"";
  out += ",\"ref\":" + JsonString(r.ref) + ",\"head\":" + JsonString(r.head) +
         ",\"origin\":" + JsonString(r.origin) + ",\"commits\":" + std::to_string(r.commits) +
         ",\"entries\":" + std::to_string(r.entries) +
         ",\"entriesChecked\":" + std::to_string(r.entries_checked) +
         ",\"signaturesChecked\":" + std::to_string(r.signatures_checked) +
         ",\"trustedSize\":" + std::to_string(r.trusted_size) + ",\"pendingCommit\":" +
         (r.pending_commit.empty() ? std::string("null") : JsonString(r.pending_commit)) +
         ",\"problems\":[";
  for (size_t i = 0; i < r.problems.size(); ++i) {
    const AuditProblem& p = r.problems[i];
    if (i > 0) out += ",";
    out += "{\"code\":" + JsonString(p.code) + ",\"severity\":" +
           (p.severity == Severity::kFailed ? "\"failed\"" : "\"indeterminate\"") +
           ",\"seq\":" + (p.seq == 0 ? std::string("null") : std::to_string(p.seq)) +
           ",\"commit\":" + (p.commit.empty() ? std::string("null") : JsonString(p.commit)) +
           ",\"detail\":" + JsonString(p.detail) + "}";
  }
  out += "]}\n";
  return out;
}

std::string AuditReportToText(const AuditReport& r, Lang lang) {
  std::string out;
  for (const AuditProblem& p : r.problems) out += AuditProblemSentence(p, lang) + "\n";
  out += std::string(Tr(lang, "Audited ", "Đã kiểm tra ")) + r.ref + " (" + r.head.substr(0, 12) +
         "): " + std::to_string(r.commits) + " commit, " + std::to_string(r.entries) +
         std::string(Tr(lang, " entries", " mục"));
  if (r.trusted_size > 0) {
    out += std::string(Tr(lang, "; entries up to ", "; các mục đến ")) +
           std::to_string(r.trusted_size) +
           std::string(Tr(lang, " checked against the trusted checkpoint",
                          " được đối chiếu với điểm kiểm tra tin cậy"));
  }
  out += ".\n";
  if (!r.pending_commit.empty()) {
    out += std::string(Tr(lang, "Note: refs/heads/main.lock names commit ",
                          "Lưu ý: refs/heads/main.lock ghi commit ")) +
           r.pending_commit.substr(0, 12) +
           std::string(Tr(lang,
                          ", not yet on the branch: a write in progress, or appends acknowledged "
                          "before a crash that the appliance adds when it next opens the archive "
                          "(not audited here).\n",
                          ", chưa có trên nhánh: một lần ghi đang diễn ra, hoặc các mục đã được "
                          "xác nhận trước một sự cố mà thiết bị sẽ thêm vào khi mở lại kho lưu "
                          "trữ (chưa được kiểm tra ở đây).\n"));
  }
  switch (r.ExitCode()) {
    case 0:
      out += std::string(Tr(lang, "Result: CLEAN — nothing was removed, altered or rewritten.",
                            "Kết quả: SẠCH — không có gì bị xóa, sửa hay viết lại."));
      break;
    case 1:
      out += std::string(Tr(lang, "Result: PROBLEMS FOUND (", "Kết quả: CÓ VẤN ĐỀ (")) +
             std::to_string(r.problems.size()) + ").";
      break;
    default:
      out += std::string(Tr(lang, "Result: INDETERMINATE — some signatures cannot be confirmed.",
                            "Kết quả: CHƯA XÁC ĐỊNH — một số chữ ký không thể xác nhận."));
      break;
  }
  out += "\n";
  return out;
}

}  // namespace sealpost::storage
