// The policy verdict in the validation report: a refusal overrides the
// signers' outcome with FAILED / NOT_AUTHORIZED_BY_POLICY, is explained in
// both languages and appears in the JSON.
#include <gtest/gtest.h>

#include "crypto/report.h"

namespace sealpost::crypto {
namespace {

Report PassedReport() {
  Report r;
  SignerReport s;
  s.name = "Nguyễn Thị Duyên";
  r.signers.push_back(s);
  Summarize(r);
  return r;
}

PolicyVerdict Verdict(bool allowed) {
  PolicyVerdict v;
  v.allowed = allowed;
  v.policy_version = "d2c21341f12c5a1b320aba918676be0161fa806406c045e1f7c5ff82e7636998";
  if (!allowed) {
    v.reason_en = "needs 1 signature of Accountant: none";
    v.reason_vi = "cần 1 chữ ký của Kế toán: không có";
  }
  v.decision_json = allowed ? "{\"decision\":\"allow\"}" : "{\"decision\":\"deny\"}";
  return v;
}

TEST(ReportPolicyTest, RefusalMakesPassedReportFailedNotAuthorized) {
  Report r = PassedReport();
  ASSERT_EQ(r.indication, Indication::kPassed);
  ApplyPolicyVerdict(r, Verdict(false));
  EXPECT_EQ(r.indication, Indication::kFailed);
  EXPECT_EQ(r.sub_indication, SubIndication::kNotAuthorizedByPolicy);
  EXPECT_EQ(SubIndicationName(r.sub_indication), "NOT_AUTHORIZED_BY_POLICY");
  // The signer itself still passed: the refusal is about the document.
  EXPECT_EQ(r.signers[0].indication, Indication::kPassed);
}

TEST(ReportPolicyTest, AllowanceKeepsIndication) {
  Report r = PassedReport();
  ApplyPolicyVerdict(r, Verdict(true));
  EXPECT_EQ(r.indication, Indication::kPassed);
  Report failed = PassedReport();
  failed.signers[0].indication = Indication::kFailed;
  failed.signers[0].sub_indication = SubIndication::kHashFailure;
  Summarize(failed);
  ApplyPolicyVerdict(failed, Verdict(true));
  EXPECT_EQ(failed.sub_indication, SubIndication::kHashFailure);
}

TEST(ReportPolicyTest, JsonCarriesVerdictAndTextExplainsInBothLanguages) {
  Report r = PassedReport();
  ApplyPolicyVerdict(r, Verdict(false));
  std::string json = ReportToJson(r);
  EXPECT_NE(json.find("\"subIndication\":\"NOT_AUTHORIZED_BY_POLICY\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"policy\":{\"allowed\":false,\"version\":\"d2c2"), std::string::npos) << json;
  EXPECT_NE(json.find("\"decision\":{\"decision\":\"deny\"}"), std::string::npos) << json;
  EXPECT_NE(ReportToText(r, Lang::kEn).find("NOT allowed — needs 1 signature of Accountant"),
            std::string::npos);
  EXPECT_NE(ReportToText(r, Lang::kVi).find("KHÔNG được phép — cần 1 chữ ký của Kế toán"),
            std::string::npos);
}

TEST(ReportPolicyTest, JsonWithoutPolicyHasNoPolicyMember) {
  Report r = PassedReport();
  EXPECT_EQ(ReportToJson(r).find("\"policy\""), std::string::npos);
}

}  // namespace
}  // namespace sealpost::crypto
