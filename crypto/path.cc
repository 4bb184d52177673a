#include "crypto/path.h"

#include <cstdint>

#include <openssl/x509v3.h>

#include "crypto/algorithms.h"
#include "crypto/certs.h"

namespace sealpost::crypto {
namespace {

// Per-validation state the verify callback fills in (X509_STORE_CTX app data).
struct CallbackState {
  bool require_crl_for_every_cert = false;
  uint64_t crl_missing_with_dp = 0;     // bit per depth
  uint64_t crl_missing_without_dp = 0;  // bit per depth
  int first_error = X509_V_OK;
  int first_error_depth = -1;
  X509* first_error_cert = nullptr;  // borrowed from the ctx's chain
};

uint64_t DepthBit(int depth) { return depth >= 0 && depth < 64 ? (uint64_t{1} << depth) : 0; }

bool HasCrlDistributionPoint(X509* cert) {
  return X509_get_ext_by_NID(cert, NID_crl_distribution_points, -1) >= 0 ||
         X509_get_ext_by_NID(cert, NID_freshest_crl, -1) >= 0;
}

int VerifyCallback(int ok, X509_STORE_CTX* ctx) {
  auto* state = static_cast<CallbackState*>(X509_STORE_CTX_get_app_data(ctx));
  if (ok || state == nullptr) return ok;
  int err = X509_STORE_CTX_get_error(ctx);
  int depth = X509_STORE_CTX_get_error_depth(ctx);
  X509* cert = X509_STORE_CTX_get_current_cert(ctx);
  if (err == X509_V_ERR_UNABLE_TO_GET_CRL && cert != nullptr &&
      !state->require_crl_for_every_cert) {
    // Decided per certificate (DESIGN.md "Revocation"), after the path is
    // known: record and go on, so that other errors still surface.
    if (HasCrlDistributionPoint(cert)) {
      state->crl_missing_with_dp |= DepthBit(depth);
    } else {
      state->crl_missing_without_dp |= DepthBit(depth);
    }
    return 1;
  }
  if (state->first_error == X509_V_OK) {
    state->first_error = err;
    state->first_error_depth = depth;
    state->first_error_cert = cert;
  }
  return 0;
}

struct ErrorMapping {
  SubIndication sub;
  Reason reason;
};

ErrorMapping MapVerifyError(int err) {
  switch (err) {
    case X509_V_ERR_CERT_REVOKED:
      return {SubIndication::kRevoked, Reason::kRevoked};
    case X509_V_ERR_CERT_HAS_EXPIRED:
      // No proof of existence of the signature before expiry (no timestamp
      // at level B-B): EN 319 102-1 says OUT_OF_BOUNDS_NO_POE.
      return {SubIndication::kOutOfBoundsNoPoe, Reason::kCertExpired};
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return {SubIndication::kNotYetValid, Reason::kCertNotYetValid};
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
      return {SubIndication::kNoCertificateChainFound, Reason::kNoChain};
    case X509_V_ERR_UNABLE_TO_GET_CRL:
      return {SubIndication::kTryLater, Reason::kCrlMissing};
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
      return {SubIndication::kTryLater, Reason::kCrlOutdated};
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_CRL_PATH_VALIDATION_ERROR:
      return {SubIndication::kCertificateChainGeneralFailure, Reason::kCrlInvalid};
    case X509_V_ERR_EE_KEY_TOO_SMALL:
    case X509_V_ERR_CA_KEY_TOO_SMALL:
    case X509_V_ERR_CA_MD_TOO_WEAK:
      return {SubIndication::kCryptoConstraintsFailure, Reason::kWeakKey};
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
    case X509_V_ERR_OUT_OF_MEM:
      return {SubIndication::kCertificateChainGeneralFailure, Reason::kChainInvalid};
    default:
      // Basic constraints, path length, key usage of CAs, name constraints,
      // policies, unhandled critical extensions, strict-mode findings.
      return {SubIndication::kChainConstraintsFailure, Reason::kChainInvalid};
  }
}

std::string Describe(int err, int depth, X509* cert) {
  std::string out = X509_verify_cert_error_string(err);
  out += " at depth " + std::to_string(depth);
  if (cert != nullptr) out += " (" + DisplayName(cert) + ")";
  return out;
}

// The algorithm policy on every certificate of a built chain. The trust
// anchor's self-signature is not part of the path; its key is.
PathResult CheckChainAlgorithms(STACK_OF(X509)* chain) {
  PathResult r;
  int n = sk_X509_num(chain);
  for (int i = 0; i < n; ++i) {
    X509* cert = sk_X509_value(chain, i);
    AlgorithmRefusal refusal = CheckKey(X509_get0_pubkey(cert));
    if (!refusal.refused() && i + 1 < n) {
      int md_nid = NID_undef;
      if (X509_get_signature_info(cert, &md_nid, nullptr, nullptr, nullptr) == 1) {
        refusal = CheckDigestNid(md_nid);
      }
    }
    if (refusal.refused()) {
      r.sub_indication = SubIndication::kCryptoConstraintsFailure;
      r.reason = refusal.reason;
      r.detail = refusal.detail + " in certificate " + DisplayName(cert);
      return r;
    }
  }
  return r;
}

struct EkuDeleter {
  void operator()(EXTENDED_KEY_USAGE* e) const { EXTENDED_KEY_USAGE_free(e); }
};

bool IsOid(const ASN1_OBJECT* obj, const char* dotted) {
  char buf[80];
  int n = OBJ_obj2txt(buf, sizeof buf, obj, 1);
  return n > 0 && static_cast<size_t>(n) < sizeof buf && std::string_view(buf, n) == dotted;
}

}  // namespace

Reason CheckSigningUsage(X509* cert) {
  // X509_get_key_usage returns UINT32_MAX when the extension is absent.
  uint32_t ku = X509_get_key_usage(cert);
  if (ku != UINT32_MAX && (ku & (KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION)) == 0) {
    return Reason::kKeyUsageRefused;
  }
  int crit = 0;
  std::unique_ptr<EXTENDED_KEY_USAGE, EkuDeleter> eku(static_cast<EXTENDED_KEY_USAGE*>(
      X509_get_ext_d2i(cert, NID_ext_key_usage, &crit, nullptr)));
  if (!eku) {
    // crit == -1: absent; anything else means present but undecodable.
    return crit == -1 ? Reason::kNone : Reason::kExtKeyUsageRefused;
  }
  bool admits = false;
  for (int i = 0; i < sk_ASN1_OBJECT_num(eku.get()) && !admits; ++i) {
    const ASN1_OBJECT* obj = sk_ASN1_OBJECT_value(eku.get(), i);
    int nid = OBJ_obj2nid(obj);
    admits = nid == NID_anyExtendedKeyUsage || nid == NID_email_protect ||
             nid == NID_client_auth || IsOid(obj, "1.3.6.1.5.5.7.3.36") ||
             IsOid(obj, "1.3.6.1.4.1.311.10.3.12");
  }
  return admits ? Reason::kNone : Reason::kExtKeyUsageRefused;
}

Result<TrustStore> TrustStore::Create(X509StackPtr anchors, X509StackPtr untrusted,
                                      X509CrlStackPtr crls, const TrustOptions& options) {
  if (!anchors || sk_X509_num(anchors.get()) == 0) {
    return Err(Status::InvalidArgument("no trust anchor given"));
  }
  X509StorePtr store(X509_STORE_new());
  if (!store) return Err(OpenSslStatus(Code::kInternal, "cannot create certificate store"));
  for (int i = 0; i < sk_X509_num(anchors.get()); ++i) {
    if (X509_STORE_add_cert(store.get(), sk_X509_value(anchors.get(), i)) != 1) {
      return Err(OpenSslStatus(Code::kInternal, "cannot add trust anchor"));
    }
  }
  // CRLs are handed to each validation as a list (X509_STORE_CTX_set0_crls)
  // rather than put in the store: the store looks CRLs up by the
  // certificate's issuer name only, which misses indirect CRLs (cRLIssuer).
  if (!crls) crls.reset(sk_X509_CRL_new_null());
  if (!crls) return Err(Status::Internal("out of memory"));
  // OpenSSL's defaults get NIST PKITS cases wrong without extended CRL
  // support and delta CRLs (DESIGN.md "Formats"). X509_V_FLAG_X509_STRICT is
  // deliberately off: it refuses what RFC 5280 lets a verifier accept (e.g.
  // a CA whose basicConstraints is not critical, PKITS 4.6.4).
  unsigned long flags = X509_V_FLAG_EXTENDED_CRL_SUPPORT | X509_V_FLAG_USE_DELTAS;
  if (options.check_revocation) flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
  if (X509_STORE_set_flags(store.get(), flags) != 1 ||
      X509_STORE_set_purpose(store.get(), X509_PURPOSE_ANY) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "cannot set verification flags"));
  }
  if (!untrusted) untrusted.reset(sk_X509_new_null());
  if (!untrusted) return Err(Status::Internal("out of memory"));
  return TrustStore(std::move(store), std::move(untrusted), std::move(crls), options);
}

PathResult TrustStore::Validate(X509* leaf, STACK_OF(X509)* extra, std::time_t at,
                                Usage usage) const {
  PathResult result;
  // Candidates for path building: the embedded certificates first, then
  // the configured ones. References only; the stack owns one each.
  X509StackPtr candidates(extra != nullptr ? X509_chain_up_ref(extra) : sk_X509_new_null());
  if (!candidates) {
    result.sub_indication = SubIndication::kCertificateChainGeneralFailure;
    result.reason = Reason::kChainInvalid;
    result.detail = "out of memory";
    return result;
  }
  for (int i = 0; i < sk_X509_num(untrusted_.get()); ++i) {
    X509* c = sk_X509_value(untrusted_.get(), i);
    if (X509_up_ref(c) != 1 || sk_X509_push(candidates.get(), c) <= 0) {
      result.sub_indication = SubIndication::kCertificateChainGeneralFailure;
      result.reason = Reason::kChainInvalid;
      result.detail = "out of memory";
      return result;
    }
  }

  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  CallbackState state;
  state.require_crl_for_every_cert = options_.require_crl_for_every_cert;
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store_.get(), leaf, candidates.get()) != 1) {
    result.sub_indication = SubIndication::kCertificateChainGeneralFailure;
    result.reason = Reason::kChainInvalid;
    result.detail = DrainOpenSslErrors();
    return result;
  }
  X509_STORE_CTX_set0_crls(ctx.get(), crls_.get());  // borrowed, not freed by ctx
  // Without any CRL, OpenSSL's CRL machinery can only report "unable to get
  // CRL" for every certificate; classify the certificates directly instead
  // (same outcome, and the hot path of bulk verification stays lean).
  const bool no_crls = sk_X509_CRL_num(crls_.get()) == 0;
  if (no_crls) {
    X509_VERIFY_PARAM_clear_flags(X509_STORE_CTX_get0_param(ctx.get()),
                                  X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
  }
  X509_STORE_CTX_set_time(ctx.get(), 0, at);
  X509_STORE_CTX_set_app_data(ctx.get(), &state);
  X509_STORE_CTX_set_verify_cb(ctx.get(), VerifyCallback);

  int rc = X509_verify_cert(ctx.get());
  if (rc <= 0) {
    int err = state.first_error;
    int depth = state.first_error_depth;
    X509* cert = state.first_error_cert;
    if (err == X509_V_OK) {  // failed without the callback seeing it
      err = X509_STORE_CTX_get_error(ctx.get());
      depth = X509_STORE_CTX_get_error_depth(ctx.get());
      cert = X509_STORE_CTX_get_current_cert(ctx.get());
      if (err == X509_V_OK) err = X509_V_ERR_UNSPECIFIED;
    }
    ErrorMapping m = MapVerifyError(err);
    result.sub_indication = m.sub;
    result.reason = m.reason;
    result.detail = Describe(err, depth, cert);
    result.revocation = m.reason == Reason::kRevoked ? Revocation::kRevoked : Revocation::kUnknown;
    ClearOpenSslErrors();
    return result;
  }

  STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
  result.chain = std::shared_ptr<STACK_OF(X509)>(X509_chain_up_ref(chain), X509StackDeleter());
  if (usage == Usage::kDocumentSigning) {
    Reason r = CheckSigningUsage(leaf);
    if (r != Reason::kNone) {
      result.sub_indication = SubIndication::kChainConstraintsFailure;
      result.reason = r;
      result.detail = DisplayName(leaf);
      return result;
    }
  }
  if (!options_.allow_legacy) {
    PathResult alg = CheckChainAlgorithms(chain);
    if (!alg.ok()) return alg;
  }

  if (!options_.check_revocation) {
    result.revocation = Revocation::kDisabled;
    return result;
  }
  // The trust anchor (last in the chain) is not subject to revocation
  // checking (RFC 5280 6.1); ignore what OpenSSL reported for it.
  int n = sk_X509_num(chain);
  if (no_crls) {
    for (int depth = 0; depth + 1 < n && depth < 64; ++depth) {
      X509* cert = sk_X509_value(chain, depth);
      if (HasCrlDistributionPoint(cert) || options_.require_crl_for_every_cert) {
        state.crl_missing_with_dp |= DepthBit(depth);
      } else {
        state.crl_missing_without_dp |= DepthBit(depth);
      }
    }
  }
  uint64_t below_anchor = n - 1 >= 64 ? ~uint64_t{0} : (uint64_t{1} << (n - 1)) - 1;
  uint64_t with_dp = state.crl_missing_with_dp & below_anchor;
  uint64_t without_dp = state.crl_missing_without_dp & below_anchor;
  if (with_dp != 0) {
    int depth = 0;
    while (((with_dp >> depth) & 1) == 0) ++depth;
    result.sub_indication = SubIndication::kTryLater;
    result.reason = Reason::kCrlMissing;
    // Name the CA whose CRL is missing: for a path through an intermediate
    // it is not the anchor's CRL that is wanted.
    result.detail = Describe(X509_V_ERR_UNABLE_TO_GET_CRL, depth, sk_X509_value(chain, depth)) +
                    ": no CRL of \"" + DisplayName(sk_X509_value(chain, depth + 1)) +
                    "\" at hand";
    result.revocation = Revocation::kNoCrlAvailable;
    return result;
  }
  // A signer certificate that is itself a trust anchor: nothing was checked.
  result.revocation =
      without_dp != 0 || n < 2 ? Revocation::kNotChecked : Revocation::kGood;
  return result;
}

}  // namespace sealpost::crypto
