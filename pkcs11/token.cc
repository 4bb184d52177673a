#include "pkcs11/token.h"

#include <atomic>
#include <cstring>
#include <mutex>

#include <openssl/crypto.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "base/log.h"
#include "base/secret.h"
#include "crypto/certs.h"
#include "pkcs11/allowlist.h"
#include "pkcs11/pin.h"
#include "pkcs11/session.h"
#include "pkcs11/uri.h"

namespace sealpost::pkcs11 {

using internal::CkrName;
using internal::ModuleSession;
using internal::NeedsRebuild;
using internal::SlotRef;
using internal::TakeCkr;

struct Token::State {
  std::shared_ptr<ModuleSession> session;
  Uri selector;       // the opening URI (its token-selecting attributes count)
  std::string label;  // the token found
  std::string serial;
  SecretBytes pin;    // read only on the session thread
  std::atomic<bool> pin_refused{false};
  OpenOptions opts;
  std::mutex warn_mu;
  std::vector<std::string> warnings;

  Lang lang() const { return opts.lang; }
  void Warn(std::string text) {
    Log(LogLevel::kWarn, text, "token=\"" + label + "\"");
    std::lock_guard<std::mutex> lock(warn_mu);
    warnings.push_back(std::move(text));
  }
};

namespace {

using State = Token::State;

std::string L(Lang lang, std::string_view en, std::string_view vi) {
  return std::string(Tr(lang, en, vi));
}

std::string Quoted(const std::string& s) { return "'" + s + "'"; }

// A failed libp11 call: reads the CKR code from the OpenSSL error queue;
// "removed or reset" codes mark the context for a rebuild.
Status TokenError(State& st, const std::string& op, Code fallback) {
  std::string text;
  unsigned long rv = TakeCkr(&text);
  if (NeedsRebuild(rv)) {
    st.session->MarkStale();
    return Status::Unavailable(
        L(st.lang(), "token unavailable: ", "token không phản hồi: ") + op + " " +
        L(st.lang(), "failed", "thất bại") + " (" + CkrName(rv) + ") " +
        L(st.lang(), "on token ", "trên token ") + Quoted(st.label) + ": " +
        L(st.lang(), "it was removed or reset; the next operation reconnects",
          "token đã bị rút ra hoặc khởi động lại; thao tác sau sẽ kết nối lại"));
  }
  std::string m = op + " " + L(st.lang(), "failed on token ", "thất bại trên token ") +
                  Quoted(st.label);
  if (rv != 0) m += " (" + CkrName(rv) + ")";
  if (!text.empty()) m += ": " + text;
  return Status(fallback, m);
}

std::string Describe(EVP_PKEY* pkey) {
  if (pkey == nullptr) return "";
  int id = EVP_PKEY_get_base_id(pkey);
  int bits = EVP_PKEY_get_bits(pkey);
  if (id == EVP_PKEY_RSA) return "RSA-" + std::to_string(bits);
  if (id == EVP_PKEY_EC) {
    char group[64] = {0};
    size_t len = 0;
    if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &len) == 1) {
      std::string g(group, len);
      if (g == "prime256v1" || g == "P-256") return "EC P-256";
      if (g == "secp384r1" || g == "P-384") return "EC P-384";
      if (g == "secp521r1" || g == "P-521") return "EC P-521";
      return "EC " + g;
    }
    ClearOpenSslErrors();
    return "EC-" + std::to_string(bits);
  }
  return "";
}

// A software copy of a public key (no libp11 method attached).
EvpPkeyPtr SoftwarePublicCopy(EVP_PKEY* pkey) {
  if (pkey == nullptr) return nullptr;
  unsigned char* raw = nullptr;
  int len = i2d_PUBKEY(pkey, &raw);
  OpenSslBytesPtr der(raw);
  if (len <= 0) {
    ClearOpenSslErrors();
    return nullptr;
  }
  const unsigned char* p = der.get();
  EvpPkeyPtr out(d2i_PUBKEY(nullptr, &p, len));
  if (!out) ClearOpenSslErrors();
  return out;
}

bool Matches(const std::optional<std::string>& want, const char* have) {
  return !want || (have != nullptr && *want == have);
}

std::string SelectorText(const Uri& u) {
  Uri s;
  s.token = u.token;
  s.manufacturer = u.manufacturer;
  s.serial = u.serial;
  s.model = u.model;
  s.slot_id = u.slot_id;
  s.slot_description = u.slot_description;
  s.slot_manufacturer = u.slot_manufacturer;
  s.library_manufacturer = u.library_manufacturer;
  s.library_description = u.library_description;
  return FormatUri(s);
}

// ---- The following run on the session thread only. ----

Result<SlotRef> FindSlot(State& st) {
  ModuleSession& ms = *st.session;
  const Uri& sel = st.selector;
  if (sel.library_version) {
    return Err(Status::InvalidArgument("PKCS#11 URI: attribute 'library-version' is not supported"));
  }
  PKCS11_CTX* ctx = ms.ctx();
  if (!Matches(sel.library_manufacturer, ctx->manufacturer) ||
      !Matches(sel.library_description, ctx->description)) {
    return Err(Status::NotFound(L(st.lang(), "module ", "mô-đun ") + ms.path() +
                                L(st.lang(), " does not match the URI's library attributes",
                                  " không khớp thuộc tính library của URI")));
  }
  std::vector<SlotRef> found;
  std::string present;
  for (PKCS11_SLOT* slot : ms.Slots()) {
    PKCS11_TOKEN* tok = slot->token;
    if (tok == nullptr || !tok->initialized) continue;
    unsigned long id = PKCS11_get_slotid_from_slot(slot);
    if (!present.empty()) present += ", ";
    present += Quoted(tok->label ? tok->label : "") + " (serial " +
               (tok->serialnr ? tok->serialnr : "") + ")";
    if (!Matches(sel.token, tok->label) || !Matches(sel.manufacturer, tok->manufacturer) ||
        !Matches(sel.serial, tok->serialnr) || !Matches(sel.model, tok->model) ||
        !Matches(sel.slot_description, slot->description) ||
        !Matches(sel.slot_manufacturer, slot->manufacturer) || (sel.slot_id && *sel.slot_id != id)) {
      continue;
    }
    found.push_back(SlotRef{slot, id, tok->label ? tok->label : "", tok->serialnr ? tok->serialnr : ""});
  }
  if (found.empty()) {
    // libp11's slot list is a snapshot: look again from scratch next time.
    ms.MarkStale();
    if (present.empty()) {
      // Nothing plugged in (or the token was pulled out): unavailable rather
      // than "no such token".
      return Err(Status::Unavailable(
          L(st.lang(), "token unavailable: no initialised token is present in module ",
            "token không phản hồi: không có token nào (đã khởi tạo) trong mô-đun ") +
          ms.path() + L(st.lang(), " (looking for ", " (đang tìm ") + SelectorText(sel) + ")"));
    }
    return Err(Status::NotFound(
        L(st.lang(), "no token matches ", "không có token nào khớp ") + SelectorText(sel) +
        L(st.lang(), " in module ", " trong mô-đun ") + ms.path() + "; " +
        (present.empty() ? L(st.lang(), "no initialised token is present",
                             "không có token nào (đã khởi tạo) được cắm")
                         : L(st.lang(), "tokens present: ", "các token hiện có: ") + present)));
  }
  if (found.size() > 1) {
    return Err(Status::InvalidArgument(
        std::to_string(found.size()) +
        L(st.lang(), " tokens match ", " token cùng khớp ") + SelectorText(sel) + " (" + present +
        L(st.lang(), "); add serial= to the URI", "); hãy thêm serial= vào URI")));
  }
  return found.front();
}

Status EnsureLogin(State& st, const SlotRef& slot) {
  ModuleSession& ms = *st.session;
  if (ms.logged_in().count(slot.key())) return Status::Ok();
  const std::string tok = Quoted(slot.label);
  if (st.pin_refused) {
    return Status::PermissionDenied(
        L(st.lang(), "the PIN was refused earlier by token ", "PIN đã bị token ") + tok +
        L(st.lang(), "; it is not tried again", " từ chối trước đó; không thử lại"));
  }
  if (st.pin.empty()) {
    return Status::PermissionDenied(L(st.lang(), "no PIN for token ", "không có PIN cho token ") + tok);
  }
  // libp11's flags are a snapshot from enumeration: ask the module now.
  CK_TOKEN_INFO info;
  std::memset(&info, 0, sizeof info);
  CK_RV rv = ms.FreshTokenInfo(slot.slot_id, &info);
  if (rv != CKR_OK) {
    if (NeedsRebuild(rv)) ms.MarkStale();
    return Status::Unavailable(L(st.lang(), "token unavailable: C_GetTokenInfo failed (",
                                 "token không phản hồi: C_GetTokenInfo thất bại (") +
                               CkrName(rv) + ") " + L(st.lang(), "for token ", "với token ") + tok);
  }
  if (info.flags & CKF_USER_PIN_LOCKED) {
    return Status::PermissionDenied(
        L(st.lang(), "the user PIN of token ", "PIN người dùng của token ") + tok +
        L(st.lang(), " is locked (CKF_USER_PIN_LOCKED); unblock it with the SO PIN; no login attempted",
          " đã bị khoá (CKF_USER_PIN_LOCKED); hãy mở khoá bằng SO PIN; chưa thử đăng nhập"));
  }
  if (info.flags & CKF_USER_PIN_FINAL_TRY) {
    return Status::PermissionDenied(
        L(st.lang(), "token ", "token ") + tok +
        L(st.lang(),
          " has one PIN attempt left (CKF_USER_PIN_FINAL_TRY); refusing to log in so that a wrong "
          "PIN cannot lock it; check the PIN, then log in once with the token's own tool",
          " chỉ còn một lần thử PIN (CKF_USER_PIN_FINAL_TRY); từ chối đăng nhập để PIN sai không "
          "làm khoá token; hãy kiểm tra PIN rồi đăng nhập một lần bằng công cụ của token"));
  }
  if (info.flags & CKF_USER_PIN_COUNT_LOW) {
    st.Warn(L(st.lang(), "warning: token ", "cảnh báo: token ") + tok +
            L(st.lang(), " reports failed PIN attempts (CKF_USER_PIN_COUNT_LOW); few tries remain",
              " báo đã có lần nhập PIN sai (CKF_USER_PIN_COUNT_LOW); chỉ còn ít lần thử"));
  }
  if (st.opts.read_write && PKCS11_open_session(slot.slot, 1) != 0) {
    return TokenError(st, "C_OpenSession", Code::kUnavailable);
  }
  // libp11 wants a NUL-terminated PIN: a wiped copy.
  std::vector<char> z(st.pin.data(), st.pin.data() + st.pin.size());
  z.push_back('\0');
  int r = PKCS11_login(slot.slot, 0, z.data());
  OPENSSL_cleanse(z.data(), z.size());
  if (r == 0) {
    ms.logged_in().insert(slot.key());
    return Status::Ok();
  }
  std::string text;
  unsigned long ckr = TakeCkr(&text);
  if (ckr == CKR_USER_ALREADY_LOGGED_IN) {
    ms.logged_in().insert(slot.key());
    return Status::Ok();
  }
  if (ckr == CKR_PIN_INCORRECT || ckr == CKR_PIN_INVALID || ckr == CKR_PIN_LEN_RANGE) {
    st.pin_refused = true;
    st.pin.Wipe();
    return Status::PermissionDenied(
        L(st.lang(), "PIN incorrect for token ", "PIN không đúng cho token ") + tok + " (" +
        CkrName(ckr) + L(st.lang(), "); it was tried once and will not be retried",
                         "); đã thử một lần và sẽ không thử lại"));
  }
  if (ckr == CKR_PIN_LOCKED) {
    st.pin_refused = true;
    st.pin.Wipe();
    return Status::PermissionDenied(L(st.lang(), "the user PIN of token ", "PIN người dùng của token ") +
                                    tok + L(st.lang(), " is locked (CKR_PIN_LOCKED)",
                                            " đã bị khoá (CKR_PIN_LOCKED)"));
  }
  if (NeedsRebuild(ckr)) {
    ms.MarkStale();
    return Status::Unavailable(L(st.lang(), "token unavailable: C_Login failed (",
                                 "token không phản hồi: C_Login thất bại (") +
                               CkrName(ckr) + ") " + L(st.lang(), "for token ", "với token ") + tok);
  }
  return Status::Unavailable("C_Login " + L(st.lang(), "failed for token ", "thất bại với token ") +
                             tok + (ckr ? " (" + CkrName(ckr) + ")" : "") +
                             (text.empty() ? "" : ": " + text));
}

// Loads (or rebuilds) the context, finds the token, logs in.
Result<SlotRef> Prepare(State& st, bool login = true) {
  Status s = st.session->EnsureLoaded(st.lang());
  if (!s.ok()) return Err(s);
  auto slot = FindSlot(st);
  if (!slot) return Err(slot.error());
  if (login) {
    Status l = EnsureLogin(st, *slot);
    if (!l.ok()) return Err(l);
  }
  return slot;
}

Status CheckSameToken(State& st, const Uri& k) {
  auto differs = [](const std::optional<std::string>& want, const std::string& have) {
    return want && *want != have;
  };
  if (differs(k.token, st.label) || differs(k.serial, st.serial)) {
    return Status::InvalidArgument(L(st.lang(), "key URI names another token than the open one (",
                                     "URI của khoá chỉ đến token khác với token đang mở (") +
                                   Quoted(st.label) + ")");
  }
  if (k.type && *k.type != ObjectType::kPrivate) {
    return Status::InvalidArgument("PKCS#11 URI: a signing key needs type=private (or no type), not type=" +
                                   std::string(ObjectTypeName(*k.type)));
  }
  return Status::Ok();
}

Result<PKCS11_KEY*> FindKey(State& st, const SlotRef& slot, const Uri& k) {
  PKCS11_KEY* keys = nullptr;
  unsigned int n = 0;
  if (PKCS11_enumerate_keys(slot.slot->token, &keys, &n) != 0) {
    return Err(TokenError(st, "C_FindObjects", Code::kUnavailable));
  }
  std::vector<PKCS11_KEY*> match;
  for (unsigned int i = 0; i < n; ++i) {
    PKCS11_KEY* key = &keys[i];
    if (!key->isPrivate) continue;
    if (k.object && (key->label == nullptr || *k.object != key->label)) continue;
    if (k.id && std::string(reinterpret_cast<const char*>(key->id), key->id_len) != *k.id) continue;
    match.push_back(key);
  }
  std::string what = k.object ? "object=" + *k.object : "";
  if (k.id) what += (what.empty() ? "" : " ") + std::string("id=") + PercentEncode(*k.id);
  if (match.empty()) {
    return Err(Status::NotFound(L(st.lang(), "no private key ", "không có khoá riêng ") +
                                (what.empty() ? "" : what + " ") +
                                L(st.lang(), "on token ", "trên token ") + Quoted(st.label)));
  }
  if (match.size() > 1) {
    return Err(Status::InvalidArgument(
        std::to_string(match.size()) + L(st.lang(), " private keys match ", " khoá riêng cùng khớp ") +
        (what.empty() ? std::string("the URI") : what) +
        L(st.lang(), " on token ", " trên token ") + Quoted(st.label) +
        L(st.lang(), "; name one with object= or id=", "; hãy chỉ rõ bằng object= hoặc id=")));
  }
  return match.front();
}

std::string KeyCacheKey(const SlotRef& slot, PKCS11_KEY* key) {
  return slot.key() + "\x1f" + std::string(reinterpret_cast<const char*>(key->id), key->id_len) +
         "\x1f" + (key->label ? key->label : "");
}

Result<EVP_PKEY*> PrivateKey(State& st, const SlotRef& slot, PKCS11_KEY* key) {
  auto& cache = st.session->key_cache();
  std::string ck = KeyCacheKey(slot, key);
  if (auto it = cache.find(ck); it != cache.end()) return it->second.get();
  EvpPkeyPtr pkey(PKCS11_get_private_key(key));
  if (!pkey) return Err(TokenError(st, "C_GetAttributeValue", Code::kUnavailable));
  EVP_PKEY* raw = pkey.get();
  cache[ck] = std::move(pkey);
  return raw;
}

// Never PKCS11_get_public_key: in libp11 0.4.12 it leaks the object it
// creates and, through it, the slot and a copy of the PIN (seen with LSan).
// The private key's EVP_PKEY carries the public parts (RSA n/e, EC point).
Result<EvpPkeyPtr> PublicOf(State& st, const SlotRef& slot, PKCS11_KEY* key) {
  auto priv = PrivateKey(st, slot, key);
  if (priv) {
    if (EvpPkeyPtr copy = SoftwarePublicCopy(*priv)) return copy;
  }
  // Last resort: the certificate stored with the key.
  if (PKCS11_CERT* cert = PKCS11_find_certificate(key); cert != nullptr && cert->x509 != nullptr) {
    if (EvpPkeyPtr copy = SoftwarePublicCopy(X509_get0_pubkey(cert->x509))) return copy;
  }
  ClearOpenSslErrors();
  return Err(Status::NotFound(L(st.lang(), "cannot read the public key of ",
                                "không đọc được khoá công khai của ") +
                              Quoted(key->label ? key->label : "") +
                              L(st.lang(), " on token ", " trên token ") + Quoted(st.label)));
}

Result<std::vector<PKCS11_CERT*>> CertsWithId(State& st, const SlotRef& slot, PKCS11_KEY* key) {
  PKCS11_CERT* certs = nullptr;
  unsigned int n = 0;
  if (PKCS11_enumerate_certs(slot.slot->token, &certs, &n) != 0) {
    return Err(TokenError(st, "C_FindObjects", Code::kUnavailable));
  }
  std::vector<PKCS11_CERT*> out;
  std::string id(reinterpret_cast<const char*>(key->id), key->id_len);
  for (unsigned int i = 0; i < n; ++i) {
    std::string cid(reinterpret_cast<const char*>(certs[i].id), certs[i].id_len);
    bool same = key->id_len > 0 ? cid == id
                                : (certs[i].label && key->label && std::strcmp(certs[i].label, key->label) == 0);
    if (same && certs[i].x509 != nullptr) out.push_back(&certs[i]);
  }
  return out;
}

// The private key a signing URI names, looked up (C_FindObjects) at most
// once per kKeyRecheck per context: the lookup enumerates every private key
// on the token, and SoftHSM2 re-reads its object files for it, which was a
// fifth of the signer's CPU per signature (docs/performance.md). The cached
// handle is not trusted blindly: the module checks it in every C_SignInit
// (an object deleted or replaced fails with CKR_OBJECT_HANDLE_INVALID or
// CKR_KEY_HANDLE_INVALID, the failure drops the entry and the former marks
// the context for a rebuild, as before); a failed signature drops it; a
// rebuild (removal, re-insertion, lost session or login) empties the cache;
// and the URI is resolved again once the entry is kKeyRecheck old, so a key
// that became ambiguous or was replaced is seen as promptly as a new
// certificate would be.
constexpr std::chrono::seconds kKeyRecheck{1};

Result<EVP_PKEY*> SigningKey(State& st, const SlotRef& slot, const Uri& k, const std::string& ref) {
  auto& resolved = st.session->resolved_keys();
  const std::string rk = slot.key() + "\x1f" + ref;
  const auto now = std::chrono::steady_clock::now();
  if (auto it = resolved.find(rk); it != resolved.end()) {
    if (now - it->second.at < kKeyRecheck) return it->second.pkey;
    resolved.erase(it);
  }
  auto pk = FindKey(st, slot, k);
  if (!pk) return Err(pk.error());
  auto priv = PrivateKey(st, slot, *pk);
  if (!priv) return Err(priv.error());
  resolved[rk] = internal::ModuleSession::ResolvedKey{*priv, now};
  return *priv;
}

Result<std::string> SignDigest(State& st, EVP_PKEY* pkey, crypto::DigestAlg alg,
                               const std::string& digest) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(pkey, nullptr));
  if (!ctx) return Err(OpenSslStatus(Code::kInternal, "EVP_PKEY_CTX_new"));
  if (EVP_PKEY_sign_init(ctx.get()) != 1) return Err(TokenError(st, "C_SignInit", Code::kInternal));
  int id = EVP_PKEY_get_base_id(pkey);
  if (id == EVP_PKEY_RSA) {
    if (EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx.get(), crypto::DigestAlgMd(alg)) != 1) {
      return Err(OpenSslStatus(Code::kInternal, "setting RSA PKCS#1 v1.5 parameters"));
    }
  } else if (id != EVP_PKEY_EC) {
    return Err(Status::FailedPrecondition("key type is neither RSA nor EC"));
  }
  const auto* d = reinterpret_cast<const unsigned char*>(digest.data());
  size_t len = 0;
  if (EVP_PKEY_sign(ctx.get(), nullptr, &len, d, digest.size()) != 1 || len == 0) {
    return Err(TokenError(st, "C_Sign", Code::kInternal));
  }
  std::string sig(len, '\0');
  if (EVP_PKEY_sign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, d,
                    digest.size()) != 1) {
    return Err(TokenError(st, "C_Sign", Code::kInternal));
  }
  sig.resize(len);
  return sig;
}

template <typename T>
Result<T> RunOp(const std::shared_ptr<State>& st, const std::string& op,
                std::function<Result<T>(State&)> fn) {
  return st->session->thread().Run<T>(op, st->opts.call_timeout, st->opts.lang,
                                      [st, fn = std::move(fn)]() -> Result<T> {
                                        ClearOpenSslErrors();
                                        Result<T> r = fn(*st);
                                        ClearOpenSslErrors();
                                        return r;
                                      });
}

Result<Uri> ParseKeyRef(State& st, const crypto::KeyRef& key) {
  auto u = ParseUri(key.id);
  if (!u) return Err(u.error());
  Status s = CheckSameToken(st, *u);
  if (!s.ok()) return Err(s);
  return u;
}

Uri ObjectUri(const State& st, const std::string& path, const char* label, const unsigned char* id,
              size_t id_len, ObjectType type) {
  Uri u;
  u.token = st.label;
  u.serial = st.serial;
  if (label != nullptr && *label != '\0') u.object = label;
  if (id_len > 0) u.id = std::string(reinterpret_cast<const char*>(id), id_len);
  u.type = type;
  u.module_path = path;
  return u;
}

}  // namespace

std::string TokenFlagNames(unsigned long flags) {
  static const std::pair<unsigned long, const char*> kNames[] = {
      {CKF_RNG, "rng"},
      {CKF_WRITE_PROTECTED, "write-protected"},
      {CKF_LOGIN_REQUIRED, "login-required"},
      {CKF_USER_PIN_INITIALIZED, "user-pin-initialized"},
      {CKF_PROTECTED_AUTHENTICATION_PATH, "protected-auth-path"},
      {CKF_TOKEN_INITIALIZED, "token-initialized"},
      {CKF_USER_PIN_COUNT_LOW, "user-pin-count-low"},
      {CKF_USER_PIN_FINAL_TRY, "user-pin-final-try"},
      {CKF_USER_PIN_LOCKED, "user-pin-locked"},
      {CKF_USER_PIN_TO_BE_CHANGED, "user-pin-to-be-changed"},
      {CKF_SO_PIN_COUNT_LOW, "so-pin-count-low"},
      {CKF_SO_PIN_FINAL_TRY, "so-pin-final-try"},
      {CKF_SO_PIN_LOCKED, "so-pin-locked"},
  };
  std::string out;
  for (const auto& [bit, name] : kNames) {
    if (flags & bit) {
      if (!out.empty()) out += ',';
      out += name;
    }
  }
  return out;
}

Result<ModuleListing> ListModule(const std::string& module_path, const OpenOptions& opts) {
  auto real = ResolveAllowedModule(module_path, std::nullopt);
  if (!real) return Err(real.error());
  auto session = ModuleSession::Acquire(*real, opts.lang);
  if (!session) return Err(session.error());
  auto st = std::make_shared<State>();
  st->session = *session;
  st->opts = opts;
  return RunOp<ModuleListing>(st, "C_GetSlotList", [](State& s) -> Result<ModuleListing> {
    ModuleSession& ms = *s.session;
    Status l = ms.EnsureLoaded(s.lang());
    if (!l.ok()) return Err(l);
    ModuleListing out;
    out.path = ms.path();
    out.manufacturer = ms.ctx()->manufacturer ? ms.ctx()->manufacturer : "";
    out.description = ms.ctx()->description ? ms.ctx()->description : "";
    for (PKCS11_SLOT* slot : ms.Slots()) {
      SlotInfo si;
      si.slot_id = PKCS11_get_slotid_from_slot(slot);
      si.description = slot->description ? slot->description : "";
      si.manufacturer = slot->manufacturer ? slot->manufacturer : "";
      if (PKCS11_TOKEN* t = slot->token; t != nullptr) {
        si.token_present = true;
        si.token_initialized = t->initialized;
        si.token.label = t->label ? t->label : "";
        si.token.manufacturer = t->manufacturer ? t->manufacturer : "";
        si.token.model = t->model ? t->model : "";
        si.token.serial = t->serialnr ? t->serialnr : "";
        CK_TOKEN_INFO info;
        std::memset(&info, 0, sizeof info);
        if (ms.FreshTokenInfo(si.slot_id, &info) == CKR_OK) si.token.flags = info.flags;
        if (si.token_initialized) {
          Uri u;
          u.token = si.token.label;
          u.serial = si.token.serial;
          u.module_path = ms.path();
          si.token.uri = FormatUri(u);
        }
      }
      out.slots.push_back(std::move(si));
    }
    return out;
  });
}

Result<std::unique_ptr<Token>> Token::Open(const std::string& uri_text, const OpenOptions& opts) {
  auto uri = ParseUri(uri_text);
  if (!uri) return Err(uri.error());
  auto real = ResolveAllowedModule(uri->module_path, uri->module_name);
  if (!real) return Err(real.error());
  auto session = ModuleSession::Acquire(*real, opts.lang);
  if (!session) return Err(session.error());
  auto st = std::make_shared<State>();
  st->session = *session;
  st->selector = *uri;
  st->opts = opts;

  // Find the token first (no PIN needed), so the prompt can name it and a
  // locked token is refused before anyone types a PIN.
  auto found = RunOp<SlotRef>(st, "C_GetTokenInfo", [](State& s) -> Result<SlotRef> {
    auto slot = Prepare(s, /*login=*/false);
    if (!slot) return slot;
    CK_TOKEN_INFO info;
    std::memset(&info, 0, sizeof info);
    CK_RV rv = s.session->FreshTokenInfo(slot->slot_id, &info);
    if (rv == CKR_OK && (info.flags & CKF_USER_PIN_LOCKED)) {
      return Err(Status::PermissionDenied(
          L(s.lang(), "the user PIN of token ", "PIN người dùng của token ") + Quoted(slot->label) +
          L(s.lang(), " is locked (CKF_USER_PIN_LOCKED); no login attempted",
            " đã bị khoá (CKF_USER_PIN_LOCKED); chưa thử đăng nhập")));
    }
    return slot;
  });
  if (!found) return Err(found.error());
  st->label = found->label;
  st->serial = found->serial;

  PinRequest req;
  req.pin_file = opts.pin_file;
  req.pin_source = uri->pin_source;
  req.interactive = opts.interactive;
  req.token_label = st->label;
  req.lang = opts.lang;
  auto pin = ObtainPin(req);
  if (!pin) return Err(pin.error());
  if (std::memchr(pin->data(), '\0', pin->size()) != nullptr) {
    return Err(Status::DataError(L(opts.lang, "the PIN contains a NUL byte", "PIN chứa byte NUL")));
  }
  st->pin = std::move(*pin);

  auto login = RunOp<bool>(st, "C_Login", [](State& s) -> Result<bool> {
    auto slot = Prepare(s, /*login=*/true);
    if (!slot) return Err(slot.error());
    return true;
  });
  if (!login) return Err(login.error());
  return std::unique_ptr<Token>(new Token(std::move(st)));
}

Token::~Token() = default;

const std::string& Token::label() const { return state_->label; }
const std::string& Token::module_path() const { return state_->session->path(); }

std::vector<std::string> Token::TakeWarnings() {
  std::lock_guard<std::mutex> lock(state_->warn_mu);
  std::vector<std::string> out;
  out.swap(state_->warnings);
  return out;
}

Result<std::vector<ObjectInfo>> Token::ListObjects() {
  return RunOp<std::vector<ObjectInfo>>(state_, "C_FindObjects", [](State& st) -> Result<std::vector<ObjectInfo>> {
    auto slot = Prepare(st);
    if (!slot) return Err(slot.error());
    const std::string& path = st.session->path();
    std::vector<ObjectInfo> out;
    PKCS11_KEY* keys = nullptr;
    unsigned int n = 0;
    if (PKCS11_enumerate_keys(slot->slot->token, &keys, &n) != 0) {
      return Err(TokenError(st, "C_FindObjects", Code::kUnavailable));
    }
    for (unsigned int i = 0; i < n; ++i) {
      PKCS11_KEY* k = &keys[i];
      ObjectInfo o{ObjectInfo::Kind::kPrivateKey, k->label ? k->label : "",
                   std::string(reinterpret_cast<const char*>(k->id), k->id_len), "", "", ""};
      if (auto priv = PrivateKey(st, *slot, k)) o.algorithm = Describe(*priv);
      ClearOpenSslErrors();
      o.uri = FormatUri(ObjectUri(st, path, k->label, k->id, k->id_len, ObjectType::kPrivate));
      out.push_back(std::move(o));
    }
    PKCS11_KEY* pubs = nullptr;
    unsigned int np = 0;
    if (PKCS11_enumerate_public_keys(slot->slot->token, &pubs, &np) == 0) {
      for (unsigned int i = 0; i < np; ++i) {
        PKCS11_KEY* k = &pubs[i];
        ObjectInfo o{ObjectInfo::Kind::kPublicKey, k->label ? k->label : "",
                     std::string(reinterpret_cast<const char*>(k->id), k->id_len), "", "", ""};
        // The algorithm of the private key with the same id (see PublicOf
        // for why the public key object itself is not loaded).
        for (const auto& prev : out) {
          if (prev.kind == ObjectInfo::Kind::kPrivateKey && !o.id.empty() && prev.id == o.id) {
            o.algorithm = prev.algorithm;
          }
        }
        o.uri = FormatUri(ObjectUri(st, path, k->label, k->id, k->id_len, ObjectType::kPublic));
        out.push_back(std::move(o));
      }
    }
    ClearOpenSslErrors();
    PKCS11_CERT* certs = nullptr;
    unsigned int nc = 0;
    if (PKCS11_enumerate_certs(slot->slot->token, &certs, &nc) != 0) {
      return Err(TokenError(st, "C_FindObjects", Code::kUnavailable));
    }
    for (unsigned int i = 0; i < nc; ++i) {
      PKCS11_CERT* c = &certs[i];
      ObjectInfo o{ObjectInfo::Kind::kCertificate, c->label ? c->label : "",
                   std::string(reinterpret_cast<const char*>(c->id), c->id_len), "", "", ""};
      if (c->x509 != nullptr) {
        o.algorithm = Describe(X509_get0_pubkey(c->x509));
        o.subject = crypto::NameToUtf8(X509_get_subject_name(c->x509));
      }
      o.uri = FormatUri(ObjectUri(st, path, c->label, c->id, c->id_len, ObjectType::kCert));
      out.push_back(std::move(o));
    }
    return out;
  });
}

Result<EvpPkeyPtr> Token::PublicKey(const crypto::KeyRef& key) {
  auto u = ParseKeyRef(*state_, key);
  if (!u) return Err(u.error());
  return RunOp<EvpPkeyPtr>(state_, "C_GetAttributeValue", [k = *u](State& st) -> Result<EvpPkeyPtr> {
    auto slot = Prepare(st);
    if (!slot) return Err(slot.error());
    auto pk = FindKey(st, *slot, k);
    if (!pk) return Err(pk.error());
    return PublicOf(st, *slot, *pk);
  });
}

Result<X509Ptr> Token::Certificate(const crypto::KeyRef& key) {
  auto u = ParseKeyRef(*state_, key);
  if (!u) return Err(u.error());
  return RunOp<X509Ptr>(state_, "C_FindObjects", [k = *u](State& st) -> Result<X509Ptr> {
    auto slot = Prepare(st);
    if (!slot) return Err(slot.error());
    auto pk = FindKey(st, *slot, k);
    if (!pk) return Err(pk.error());
    auto certs = CertsWithId(st, *slot, *pk);
    if (!certs) return Err(certs.error());
    if (certs->empty()) {
      return Err(Status::NotFound(
          L(st.lang(), "no certificate with the id of key ", "không có chứng thư cùng id với khoá ") +
          Quoted((*pk)->label ? (*pk)->label : "") + " (id=" +
          PercentEncode(std::string(reinterpret_cast<const char*>((*pk)->id), (*pk)->id_len)) + ") " +
          L(st.lang(), "on token ", "trên token ") + Quoted(st.label)));
    }
    X509Ptr dup(X509_dup(certs->front()->x509));
    if (!dup) return Err(OpenSslStatus(Code::kInternal, "X509_dup"));
    return dup;
  });
}

Result<std::string> Token::Sign(const crypto::KeyRef& key, crypto::DigestAlg alg,
                                std::string_view digest) {
  if (digest.size() != crypto::DigestAlgSize(alg)) {
    return Err(Status::InvalidArgument("digest is " + std::to_string(digest.size()) +
                                       " bytes, " + std::string(crypto::DigestAlgName(alg)) +
                                       " needs " + std::to_string(crypto::DigestAlgSize(alg))));
  }
  auto u = ParseKeyRef(*state_, key);
  if (!u) return Err(u.error());
  return RunOp<std::string>(
      state_, "C_Sign",
      [k = *u, ref = key.id, alg, d = std::string(digest)](State& st) -> Result<std::string> {
        auto slot = Prepare(st);
        if (!slot) return Err(slot.error());
        auto priv = SigningKey(st, *slot, k, ref);
        if (!priv) return Err(priv.error());
        auto sig = SignDigest(st, *priv, alg, d);
        // Any failure: the next signature looks the key up afresh (and a
        // removed token, lost session or vanished object has already
        // marked the context for a rebuild, which empties the cache).
        if (!sig) st.session->resolved_keys().erase(slot->key() + "\x1f" + ref);
        return sig;
      });
}

Status Token::StoreCertificate(const crypto::KeyRef& key, X509* cert) {
  auto u = ParseKeyRef(*state_, key);
  if (!u) return u.error();
  X509Ptr copy(X509_dup(cert));
  if (!copy) return OpenSslStatus(Code::kInternal, "X509_dup");
  std::shared_ptr<X509> shared(copy.release(), X509_free);
  auto r = RunOp<bool>(state_, "C_CreateObject", [k = *u, shared](State& st) -> Result<bool> {
    auto slot = Prepare(st);
    if (!slot) return Err(slot.error());
    auto pk = FindKey(st, *slot, k);
    if (!pk) return Err(pk.error());
    PKCS11_KEY* key = *pk;
    const std::string name = Quoted(key->label ? key->label : "");
    auto pub = PublicOf(st, *slot, key);
    if (!pub) return Err(pub.error());
    EVP_PKEY* cert_key = X509_get0_pubkey(shared.get());
    if (cert_key == nullptr || EVP_PKEY_eq(cert_key, pub->get()) != 1) {
      ClearOpenSslErrors();
      return Err(Status::FailedPrecondition(
          L(st.lang(), "the certificate's public key does not match key ",
            "khoá công khai của chứng thư không khớp với khoá ") +
          name + L(st.lang(), " on token ", " trên token ") + Quoted(st.label)));
    }
    auto existing = CertsWithId(st, *slot, key);
    if (!existing) return Err(existing.error());
    for (PKCS11_CERT* c : *existing) {
      if (X509_cmp(c->x509, shared.get()) == 0) return true;  // already there
    }
    if (!existing->empty()) {
      return Err(Status::FailedPrecondition(
          L(st.lang(), "another certificate is already stored with the id of key ",
            "đã có chứng thư khác cùng id với khoá ") +
          name + L(st.lang(), "; remove it first (pkcs11-tool --delete-object --type cert)",
                   "; hãy xoá nó trước (pkcs11-tool --delete-object --type cert)")));
    }
    std::string lab = key->label ? key->label : "";
    std::vector<char> label(lab.begin(), lab.end());
    label.push_back('\0');
    std::vector<unsigned char> id(key->id, key->id + key->id_len);
    if (PKCS11_store_certificate(slot->slot->token, shared.get(), label.data(),
                                 id.empty() ? nullptr : id.data(), id.size(), nullptr) != 0) {
      return Err(TokenError(st, "C_CreateObject", Code::kUnavailable));
    }
    return true;
  });
  if (!r) return r.error();
  return Status::Ok();
}

bool TokenCallAbandoned() { return internal::AnyCallAbandoned(); }

}  // namespace sealpost::pkcs11
