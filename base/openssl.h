// Owning handles for OpenSSL objects, and capture of the OpenSSL error queue.
// Every OpenSSL object is owned from the line that creates it by one of these.
#ifndef SEALPOST_BASE_OPENSSL_H_
#define SEALPOST_BASE_OPENSSL_H_

#include <memory>
#include <string>
#include <string_view>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "base/handle.h"
#include "base/status.h"

namespace sealpost {

template <auto Fn>
using OsslDeleter = CDeleter<Fn>;

using BioPtr = std::unique_ptr<BIO, OsslDeleter<BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, OsslDeleter<X509_free>>;
using X509CrlPtr = std::unique_ptr<X509_CRL, OsslDeleter<X509_CRL_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, OsslDeleter<X509_STORE_free>>;
using X509StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, OsslDeleter<X509_STORE_CTX_free>>;
using X509ReqPtr = std::unique_ptr<X509_REQ, OsslDeleter<X509_REQ_free>>;
using X509NamePtr = std::unique_ptr<X509_NAME, OsslDeleter<X509_NAME_free>>;
using X509ExtensionPtr = std::unique_ptr<X509_EXTENSION, OsslDeleter<X509_EXTENSION_free>>;
using X509AttributePtr = std::unique_ptr<X509_ATTRIBUTE, OsslDeleter<X509_ATTRIBUTE_free>>;
using X509VerifyParamPtr = std::unique_ptr<X509_VERIFY_PARAM, OsslDeleter<X509_VERIFY_PARAM_free>>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, OsslDeleter<EVP_PKEY_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OsslDeleter<EVP_PKEY_CTX_free>>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, OsslDeleter<EVP_MD_CTX_free>>;
using EvpMdPtr = std::unique_ptr<EVP_MD, OsslDeleter<EVP_MD_free>>;
using CmsPtr = std::unique_ptr<CMS_ContentInfo, OsslDeleter<CMS_ContentInfo_free>>;
using Asn1OctetStringPtr = std::unique_ptr<ASN1_OCTET_STRING, OsslDeleter<ASN1_OCTET_STRING_free>>;
using Asn1IntegerPtr = std::unique_ptr<ASN1_INTEGER, OsslDeleter<ASN1_INTEGER_free>>;
using Asn1TimePtr = std::unique_ptr<ASN1_TIME, OsslDeleter<ASN1_TIME_free>>;
using Asn1ObjectPtr = std::unique_ptr<ASN1_OBJECT, OsslDeleter<ASN1_OBJECT_free>>;

// Memory OpenSSL allocated for us (i2d_* output, ASN1_STRING_to_UTF8, BN_bn2hex).
struct OpenSslFree {
  void operator()(void* p) const { OPENSSL_free(p); }
};
using OpenSslBytesPtr = std::unique_ptr<unsigned char, OpenSslFree>;
using OpenSslCharPtr = std::unique_ptr<char, OpenSslFree>;
using BignumPtr = std::unique_ptr<BIGNUM, OsslDeleter<BN_free>>;

struct X509StackDeleter {
  void operator()(STACK_OF(X509)* s) const { if (s) sk_X509_pop_free(s, X509_free); }
};
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackDeleter>;

struct X509CrlStackDeleter {
  void operator()(STACK_OF(X509_CRL)* s) const { if (s) sk_X509_CRL_pop_free(s, X509_CRL_free); }
};
using X509CrlStackPtr = std::unique_ptr<STACK_OF(X509_CRL), X509CrlStackDeleter>;

// Drains the OpenSSL error queue of this thread into one line
// ("error:...:reason; error:...") and clears it. Empty if the queue was empty.
std::string DrainOpenSslErrors();

// A Status of the given code whose message is `what` followed by the drained
// OpenSSL error queue, if any.
Status OpenSslStatus(Code code, std::string_view what);

// Discards anything left on this thread's OpenSSL error queue.
void ClearOpenSslErrors();

}  // namespace sealpost

#endif  // SEALPOST_BASE_OPENSSL_H_
