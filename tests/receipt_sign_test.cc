// Signed delivery receipts and read notices (crypto/receipt.h): canonical
// JSON round trips, the strict parser's refusals, signing through a Signer,
// verification with each refusal reason, idempotent re-issue, and
// `openssl cms -verify` on a receipt.
#include "crypto/receipt.h"

#include <gtest/gtest.h>

#include "base/encoding.h"
#include "crypto/checkpoint.h"
#include "crypto/software_signer.h"
#include "tests/support/cms_peers.h"
#include "tests/support/test_pki.h"

namespace sealpost::crypto {
namespace {

using sealpost::testing::CertSpec;
using sealpost::testing::TempDir;
using sealpost::testing::TestCa;

constexpr std::time_t kT = 1'795'000'000;  // 2026-11-18T11:06:40Z
// Signing times must lie inside the throwaway certificates' validity.
const std::time_t kNow = std::time(nullptr) - 60;
constexpr char kHash[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

struct Union {
  sealpost::testing::Issued seal;
  std::unique_ptr<SoftwareKeySigner> signer;
};

class ReceiptTest : public ::testing::Test {
 protected:
  ReceiptTest() : ca_(TestCa::CreateRoot("/CN=Test Federation Root/O=Test/C=VN")) {
    baichay_ = MakeUnion("/CN=Con dấu/O=Công đoàn Bãi Cháy/C=VN");
    hongai_ = MakeUnion("/CN=Con dấu/O=Công đoàn Hồng Gai/C=VN");
  }

  Union MakeUnion(const std::string& subject) {
    CertSpec spec;
    spec.subject = subject;
    Union u;
    u.seal = ca_.Issue(spec);
    EVP_PKEY_up_ref(u.seal.key.get());
    X509_up_ref(u.seal.cert.get());
    auto s = SoftwareKeySigner::CreateForTesting("seal", EvpPkeyPtr(u.seal.key.get()),
                                                 X509Ptr(u.seal.cert.get()));
    EXPECT_TRUE(s.has_value());
    u.signer = std::move(*s);
    return u;
  }

  // A receipt of `u` for doc-1 with `u`'s signed checkpoint.
  DeliveryReceipt Receipt(Union& u, const std::string& recipient = "cd-baichay") {
    Checkpoint cp;
    cp.origin = recipient + ".vn/archive";
    cp.size = 42;
    cp.root.fill(0x5a);
    auto body = SerializeCheckpoint(cp);
    EXPECT_TRUE(body.has_value());
    auto sig = SignCheckpoint(*u.signer, KeyRef{"seal"}, *body);
    EXPECT_TRUE(sig.has_value()) << sig.error().ToString();
    DeliveryReceipt r;
    r.document_id = "cd-quangninh/2026/0001";
    r.content_sha256 = kHash;
    r.recipient = recipient;
    r.received_at = kNow;
    r.checkpoint = *body;
    r.checkpoint_signature = *sig;
    return r;
  }

  ReceiptExpectation Expect(Union& u) {
    ReceiptExpectation e;
    e.document_id = "cd-quangninh/2026/0001";
    e.content_sha256 = kHash;
    e.recipient = "cd-baichay";
    e.seal = u.seal.cert.get();
    return e;
  }

  TestCa ca_;
  Union baichay_;
  Union hongai_;
};

TEST_F(ReceiptTest, SerializeDeliveryReceiptIsCanonicalAndParsesBack) {
  DeliveryReceipt r = Receipt(baichay_);
  auto json = SerializeDeliveryReceipt(r);
  ASSERT_TRUE(json.has_value()) << json.error().ToString();
  EXPECT_EQ(json->find(' '), std::string::npos);
  EXPECT_EQ(json->rfind("{\"checkpoint\":\"cd-baichay.vn/archive\\n42\\n", 0), 0u) << *json;
  r.received_at = kT;
  json = SerializeDeliveryReceipt(r);
  ASSERT_TRUE(json.has_value());
  EXPECT_NE(json->find("\"content_sha256\":\"" + std::string(kHash) +
                       "\",\"document_id\":\"cd-quangninh/2026/0001\","
                       "\"received_at\":\"2026-11-18T11:06:40Z\",\"recipient\":\"cd-baichay\","
                       "\"type\":\"delivery-receipt\",\"version\":1}"),
            std::string::npos)
      << *json;
  auto back = ParseDeliveryReceipt(*json, "receipt.json");
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(*back, r);
}

TEST_F(ReceiptTest, SerializeReadNoticeWithVietnameseIdsParsesBack) {
  ReadNotice n{"Công văn số 12/CĐ", "công-đoàn-bãi-cháy", "clerk", kT + 60};
  auto json = SerializeReadNotice(n);
  ASSERT_TRUE(json.has_value()) << json.error().ToString();
  EXPECT_EQ(*json,
            "{\"document_id\":\"Công văn số 12/CĐ\",\"read_at\":\"2026-11-18T11:07:40Z\","
            "\"reader_role\":\"clerk\",\"recipient\":\"công-đoàn-bãi-cháy\","
            "\"type\":\"read-notice\",\"version\":1}");
  auto back = ParseReadNotice(*json, "notice.json");
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(*back, n);
}

TEST_F(ReceiptTest, SerializeWithBadFieldFails) {
  DeliveryReceipt r = Receipt(baichay_);
  r.content_sha256 = std::string(64, 'A');
  EXPECT_EQ(SerializeDeliveryReceipt(r).error().code(), Code::kInvalidArgument);
  r = Receipt(baichay_);
  r.document_id = "two\nlines";
  EXPECT_EQ(SerializeDeliveryReceipt(r).error().code(), Code::kInvalidArgument);
  r = Receipt(baichay_);
  r.checkpoint = "not a checkpoint";
  EXPECT_EQ(SerializeDeliveryReceipt(r).error().code(), Code::kInvalidArgument);
  ReadNotice n{"doc", "cd-a", "Clerk", kT};
  EXPECT_EQ(SerializeReadNotice(n).error().code(), Code::kInvalidArgument);
}

// Each case: a change to the canonical notice and the words of the error.
struct BadNotice {
  std::string from;
  std::string to;
  std::string reason;
};

TEST_F(ReceiptTest, ParseNonCanonicalOrMalformedNoticeFailsWithReason) {
  ReadNotice n{"doc/1", "cd-a", "clerk", kT};
  const std::string good = *SerializeReadNotice(n);
  ASSERT_TRUE(ParseReadNotice(good, "n").has_value());
  const BadNotice cases[] = {
      {"{", "{ ", "canonical"},                                    // white space
      {"\"doc/1\"", "\"doc\\/1\"", "canonical"},                   // needless escape
      {"\"clerk\"", "\"\\u0063lerk\"", "canonical"},               // \u for a plain letter
      {"\"version\":1", "\"version\":01", "leading zero"},
      {"\"version\":1", "\"version\":2", "unsupported version"},
      {"\"version\":1", "\"version\":1.0", "only integers"},
      {"\"version\":1", "\"version\":\"1\"", "unsupported version"},
      {"\"type\":\"read-notice\"", "\"type\":\"delivery-receipt\"", "expected a \"read-notice\""},
      {"\"reader_role\":\"clerk\",", "", "missing key \"reader_role\""},
      {"\"reader_role\":\"clerk\",", "\"reader_role\":\"clerk\",\"zz\":\"x\",", "unknown key \"zz\""},
      {"\"recipient\":\"cd-a\",", "\"recipient\":\"cd-a\",\"recipient\":\"cd-a\",", "duplicate key"},
      {"\"recipient\":\"cd-a\"", "\"recipient\":{\"a\":\"b\"}", "nested"},
      {"\"recipient\":\"cd-a\"", "\"recipient\":true", "only strings"},
      {"\"recipient\":\"cd-a\"", "\"recipient\":\"\"", "\"recipient\" is empty"},
      {"\"recipient\":\"cd-a\"", "\"recipient\":\"cd\\na\"", "not one line"},
      {"\"recipient\":\"cd-a\"", "\"recipient\":\"cd\xff\"", "ill-formed UTF-8"},
      {"\"recipient\":\"cd-a\"", "\"recipient\":\"\\ud800\"", "surrogate"},
      {"2026-11-18T11:06:40Z", "2026-02-29T11:06:40Z", "\"read_at\" is not"},
      {"2026-11-18T11:06:40Z", "2026-11-18 11:06:40Z", "\"read_at\" is not"},
      {"2026-11-18T11:06:40Z", "2026-11-18T11:06:40+00:00", "\"read_at\" is not"},
      {"\"clerk\"", "\"Clerk\"", "\"reader_role\" must start"},
      {"}", "}x", "trailing bytes"},
      {"}", "", "expected ',' or '}'"},
  };
  for (const BadNotice& c : cases) {
    std::string bad = good;
    size_t at = bad.find(c.from);
    ASSERT_NE(at, std::string::npos) << c.from;
    bad.replace(at, c.from.size(), c.to);
    auto r = ParseReadNotice(bad, "notice.json");
    ASSERT_FALSE(r.has_value()) << "accepted: " << bad;
    EXPECT_EQ(r.error().code(), Code::kDataError) << bad;
    EXPECT_NE(r.error().message().find(c.reason), std::string::npos)
        << bad << " -> " << r.error().message();
    EXPECT_EQ(r.error().message().rfind("notice.json", 0), 0u) << r.error().message();
  }
  EXPECT_NE(ParseReadNotice(std::string(kReceiptMaxBytes + 1, ' '), "n")
                .error()
                .message()
                .find("limit"),
            std::string::npos);
  EXPECT_FALSE(ParseReadNotice("", "n").has_value());
  EXPECT_FALSE(ParseReadNotice("[]", "n").has_value());
}

TEST_F(ReceiptTest, ParseReceiptWithBadCheckpointOrSignatureEncodingFails) {
  auto json = *SerializeDeliveryReceipt(Receipt(baichay_));
  std::string bad = json;
  bad.replace(bad.find("\\n42\\n"), 6, "\\n042\\n");
  auto r = ParseDeliveryReceipt(bad, "receipt.json");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("checkpoint"), std::string::npos) << r.error().message();
  bad = json;
  size_t at = bad.find("\"checkpoint_p7s\":\"") + 18;
  bad.insert(at, "!");
  r = ParseDeliveryReceipt(bad, "receipt.json");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("checkpoint_p7s"), std::string::npos) << r.error().message();
  // A delivery receipt is not a read notice and vice versa.
  auto n = ParseReadNotice(json, "x");
  ASSERT_FALSE(n.has_value());
  EXPECT_NE(n.error().message().find("is a \"delivery-receipt\""), std::string::npos);
}

TEST_F(ReceiptTest, IssueThenVerifySucceedsAndOpensslAgrees) {
  auto signed_receipt = IssueDeliveryReceipt(*baichay_.signer, KeyRef{"seal"},
                                             Receipt(baichay_), std::nullopt);
  ASSERT_TRUE(signed_receipt.has_value()) << signed_receipt.error().ToString();
  auto ok = VerifyDeliveryReceipt(*signed_receipt, Expect(baichay_), "receipt from cd-baichay");
  ASSERT_TRUE(ok.has_value()) << ok.error().ToString();
  EXPECT_EQ(ok->received_at, kNow);

  TempDir tmp;
  sealpost::testing::WriteTestFile(tmp.file("receipt.json"), signed_receipt->json);
  sealpost::testing::WriteTestFile(tmp.file("receipt.json.p7s"), signed_receipt->signature);
  sealpost::testing::WriteTestFile(tmp.file("ca.pem"), sealpost::testing::CertToPem(ca_.cert()));
  EXPECT_TRUE(sealpost::testing::OpensslCmsVerifies(tmp.file("receipt.json.p7s"),
                                                   tmp.file("receipt.json"), tmp.file("ca.pem"),
                                                   "-cades"));
  sealpost::testing::WriteTestFile(tmp.file("receipt.json"), signed_receipt->json + " ");
  EXPECT_FALSE(sealpost::testing::OpensslCmsVerifies(tmp.file("receipt.json.p7s"),
                                                    tmp.file("receipt.json"), tmp.file("ca.pem")));
}

TEST_F(ReceiptTest, IssueWithStoredReceiptReturnsItUnchangedWithoutSigning) {
  DeliveryReceipt r = Receipt(baichay_);
  auto first = IssueDeliveryReceipt(*baichay_.signer, KeyRef{"seal"}, r, std::nullopt);
  ASSERT_TRUE(first.has_value());
  const int signs = baichay_.signer->sign_count();
  // The redelivery comes a minute later: same receipt back, nothing signed.
  DeliveryReceipt later = r;
  later.received_at += 60;
  auto again = IssueDeliveryReceipt(*baichay_.signer, KeyRef{"seal"}, later, *first);
  ASSERT_TRUE(again.has_value()) << again.error().ToString();
  EXPECT_EQ(*again, *first);
  EXPECT_EQ(baichay_.signer->sign_count(), signs);
  // Without the stored one, a new signature is a different receipt: this is
  // why the daemon must store and re-send the first.
  auto fresh = IssueDeliveryReceipt(*baichay_.signer, KeyRef{"seal"}, later, std::nullopt);
  ASSERT_TRUE(fresh.has_value());
  EXPECT_NE(fresh->json, first->json);
  // A stored receipt for another document is refused.
  DeliveryReceipt other = r;
  other.document_id = "cd-quangninh/2026/0002";
  auto wrong = IssueDeliveryReceipt(*baichay_.signer, KeyRef{"seal"}, other, *first);
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().code(), Code::kFailedPrecondition);
}

TEST_F(ReceiptTest, VerifyTamperedFieldFailsSignatureCheck) {
  auto s = IssueDeliveryReceipt(*baichay_.signer, KeyRef{"seal"}, Receipt(baichay_), std::nullopt);
  ASSERT_TRUE(s.has_value());
  SignedReceipt tampered = *s;
  // Still canonical, still the expected document: only the time changed.
  size_t at = tampered.json.find("\"received_at\":\"2");
  ASSERT_NE(at, std::string::npos);
  tampered.json[at + 18] = tampered.json[at + 18] == '5' ? '4' : '5';  // another year
  auto r = VerifyDeliveryReceipt(tampered, Expect(baichay_), "receipt");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.error().message().find("does not verify over these bytes"), std::string::npos)
      << r.error().message();
  // A signature with a flipped byte in the signature value.
  tampered = *s;
  tampered.signature[tampered.signature.size() - 5] ^= 0x01;
  r = VerifyDeliveryReceipt(tampered, Expect(baichay_), "receipt");
  ASSERT_FALSE(r.has_value());
  // Garbage instead of a signature.
  tampered = *s;
  tampered.signature = "not cms";
  r = VerifyDeliveryReceipt(tampered, Expect(baichay_), "receipt");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kDataError);
  EXPECT_NE(r.error().message().find("not DER CMS"), std::string::npos) << r.error().message();
}

TEST_F(ReceiptTest, VerifyReceiptSignedByAnotherUnionFailsNamingTheSigner) {
  // Hồng Gai signs a receipt that claims to be from Bãi Cháy.
  auto s = IssueDeliveryReceipt(*hongai_.signer, KeyRef{"seal"}, Receipt(hongai_), std::nullopt);
  ASSERT_TRUE(s.has_value());
  auto r = VerifyDeliveryReceipt(*s, Expect(baichay_), "receipt");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.error().message().find("not by the seal"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("Con dấu"), std::string::npos) << r.error().message();
}

TEST_F(ReceiptTest, VerifyReceiptForAnotherDocumentFails) {
  DeliveryReceipt other = Receipt(baichay_);
  other.document_id = "cd-quangninh/2026/0002";
  auto s = IssueDeliveryReceipt(*baichay_.signer, KeyRef{"seal"}, other, std::nullopt);
  ASSERT_TRUE(s.has_value());
  auto r = VerifyDeliveryReceipt(*s, Expect(baichay_), "receipt");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.error().message().find("names document \"cd-quangninh/2026/0002\", expected "
                                     "\"cd-quangninh/2026/0001\""),
            std::string::npos)
      << r.error().message();
}

TEST_F(ReceiptTest, VerifyReceiptWithOtherContentHashOrRecipientFails) {
  auto s = IssueDeliveryReceipt(*baichay_.signer, KeyRef{"seal"}, Receipt(baichay_), std::nullopt);
  ASSERT_TRUE(s.has_value());
  ReceiptExpectation e = Expect(baichay_);
  e.content_sha256 = std::string(64, '0');
  auto r = VerifyDeliveryReceipt(*s, e, "receipt");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("names content SHA-256"), std::string::npos);
  e = Expect(baichay_);
  e.recipient = "cd-hongai";
  r = VerifyDeliveryReceipt(*s, e, "receipt");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("names recipient"), std::string::npos);
}

TEST_F(ReceiptTest, VerifyReceiptWhoseCheckpointIsSignedByAnotherKeyFails) {
  DeliveryReceipt r = Receipt(baichay_);
  r.checkpoint_signature = Receipt(hongai_).checkpoint_signature;  // same body, other seal
  auto s = IssueDeliveryReceipt(*baichay_.signer, KeyRef{"seal"}, r, std::nullopt);
  ASSERT_TRUE(s.has_value());
  auto v = VerifyDeliveryReceipt(*s, Expect(baichay_), "receipt");
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(v.error().message().find("checkpoint"), std::string::npos) << v.error().message();
}

TEST_F(ReceiptTest, SignedReadNoticeVerifiesAndIsNotAcceptedAsReceipt) {
  ReadNotice n{"cd-quangninh/2026/0001", "cd-baichay", "clerk", kNow};
  auto s = SignReadNotice(*baichay_.signer, KeyRef{"seal"}, n);
  ASSERT_TRUE(s.has_value()) << s.error().ToString();
  auto v = VerifyReadNotice(*s, Expect(baichay_), "notice");
  ASSERT_TRUE(v.has_value()) << v.error().ToString();
  EXPECT_EQ(*v, n);
  auto as_receipt = VerifyDeliveryReceipt(*s, Expect(baichay_), "notice");
  ASSERT_FALSE(as_receipt.has_value());
  EXPECT_EQ(as_receipt.error().code(), Code::kDataError);
  auto wrong = VerifyReadNotice(*s, Expect(hongai_), "notice");
  ASSERT_FALSE(wrong.has_value());
  EXPECT_NE(wrong.error().message().find("not by the seal"), std::string::npos);
  ReceiptExpectation e = Expect(baichay_);
  e.document_id = "other";
  wrong = VerifyReadNotice(*s, e, "notice");
  ASSERT_FALSE(wrong.has_value());
  EXPECT_NE(wrong.error().message().find("names document"), std::string::npos);
}

TEST_F(ReceiptTest, FuzzSeedsParseOrFailAsTheirNamesSay) {
  const std::string dir = std::string(SEALPOST_SOURCE_DIR) + "/tests/fuzz/seeds/receipt_parse_fuzz/";
  for (const char* name : {"delivery-receipt.json", "receipt-checkpoint-extension.json"}) {
    auto r = ParseDeliveryReceipt(sealpost::testing::ReadTestFile(dir + name), name);
    EXPECT_TRUE(r.has_value()) << r.error().ToString();
  }
  for (const char* name : {"read-notice.json", "quotes.json"}) {
    auto r = ParseReadNotice(sealpost::testing::ReadTestFile(dir + name), name);
    EXPECT_TRUE(r.has_value()) << r.error().ToString();
  }
  auto r = ParseReadNotice(sealpost::testing::ReadTestFile(dir + "control-character.json"), "c");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("not one line"), std::string::npos) << r.error().message();
}

}  // namespace
}  // namespace sealpost::crypto
