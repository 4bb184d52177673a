#!/usr/bin/env bash
# sealpost demo (the README's main command, `make demo`).
#
# On an embedded default, with nothing but throwaway material:
#   1. a throwaway CA (with a CRL),
#   2. two SoftHSM2 tokens: the district chair's personal token and the
#      district union's seal token; keys are generated ON the tokens,
#   3. certificate requests made by the token keys (`sealpost token csr`),
#      issued by the CA and stored back on the tokens (`token import-cert`),
#   4. a directive signed by the chair, then sealed by the union (co-signed,
#      `sealpost sign --append`),
#   5. verified by `sealpost verify` (English, Vietnamese, JSON) and by openssl,
#   6. the federation policy applied (allowed; and refused for the wrong type),
#   7. a tampered copy refused.
# Then the federation itself, on 127.0.0.1:
#   8. four appliances (the district and three grassroots unions), each with
#      its own SoftHSM2 seal token, TLS certificate, sealpost-signer and
#      sealpostd, one shared federation policy listing every endpoint,
#   9. a directive signed by the chair and sealed by the district, delivered
#      to the three grassroots unions, with their receipts and read notices,
#  10. a financial report from a grassroots union up to the district,
#  11. a bundle verified the way a recipient without an appliance would,
#  12. `sealpost audit` on every archive, and a clean shutdown.
# A step whose feature is genuinely not in this build prints "not yet: ..."
# (and is listed at the end); every other failure exits non-zero.
# Exits non-zero if any step fails.
set -euo pipefail

BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SEALPOST=${SEALPOST:-$ROOT/$BUILD/cli/sealpost}
MODULE=/usr/lib/softhsm/libsofthsm2.so
SEALPOSTD=${SEALPOSTD:-$(dirname "$SEALPOST")/../daemon/sealpostd}
SIGNER=${SEALPOST_SIGNER:-$(dirname "$SEALPOST")/../daemon/signer/sealpost-signer}
for exe in "$SEALPOST" "$SEALPOSTD" "$SIGNER"; do
  [ -x "$exe" ] || { echo "demo: $exe not built (run make build)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sealpost-demo.XXXXXX")
PIDS=()   # every process this demo started (killed by pid on exit)
cleanup() {
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${SEALPOST_DEMO_KEEP:-}" ]; then echo "demo: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

step=0
say()  { step=$((step + 1)); printf '\n\033[1m[%d] %s\033[0m\n' "$step" "$*"; }
ok()   { printf '    ok: %s\n' "$*"; }
fail() { printf '    FAILED: %s\n' "$*" >&2; exit 1; }

cd "$WORK"
umask 077

say "A throwaway certificate authority for the federation"
cat > ca.cnf <<'CNF'
[ req ]
distinguished_name = dn
string_mask = utf8only
utf8 = yes
[ dn ]
[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ v3_signer ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = clientAuth,1.3.6.1.4.1.311.10.3.12
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
crlDistributionPoints = URI:http://127.0.0.1:8080/demo-ca.crl
CNF
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
  -subj "/CN=CA Liên đoàn Lao động Demo/O=Liên đoàn Lao động tỉnh Demo/C=VN" -utf8 \
  -config ca.cnf -extensions v3_ca -days 3650 -out ca.pem 2>/dev/null
ok "CA: $(openssl x509 -in ca.pem -noout -subject -nameopt utf8,sep_comma_plus_space | sed 's/^subject=//')"

say "Two SoftHSM2 tokens: the chair's personal token and the district union's seal"
mkdir -p tokens
cat > softhsm2.conf <<CNF
directories.tokendir = $WORK/tokens
objectstore.backend = file
log.level = ERROR
CNF
export SOFTHSM2_CONF=$WORK/softhsm2.conf
printf '246810\n' > chair.pin
printf '135790\n' > seal.pin
softhsm2-util --init-token --free --label chair-token --so-pin 11223344 --pin 246810 >/dev/null
softhsm2-util --init-token --free --label district-seal --so-pin 11223344 --pin 135790 >/dev/null
# Keys are generated on the tokens and never leave them.
pkcs11-tool --module "$MODULE" --token-label chair-token --login --pin 246810 \
  --keypairgen --key-type EC:prime256v1 --id 01 --label chair >/dev/null 2>&1
pkcs11-tool --module "$MODULE" --token-label district-seal --login --pin 135790 \
  --keypairgen --key-type rsa:3072 --id 01 --label seal >/dev/null 2>&1
CHAIR="pkcs11:token=chair-token;object=chair;type=private?module-path=$MODULE&pin-source=file:$WORK/chair.pin"
SEAL="pkcs11:token=district-seal;object=seal;type=private?module-path=$MODULE&pin-source=file:$WORK/seal.pin"
"$SEALPOST" token list
ok "chair: P-256 key, union seal: RSA-3072 key, both generated on their tokens"

say "Certificate requests signed by the token keys, issued by the CA, stored on the tokens"
"$SEALPOST" token csr "$CHAIR" --subject "/CN=Nguyễn Thị Duyên/title=Chủ tịch/O=Liên đoàn Lao động huyện Demo/C=VN" -o chair.csr
"$SEALPOST" token csr "$SEAL" --subject "/CN=Liên đoàn Lao động huyện Demo/O=Liên đoàn Lao động huyện Demo/C=VN" \
  --email vanthu@ldld-demo.example -o seal.csr
for who in chair seal; do
  openssl req -in $who.csr -verify -noout 2>/dev/null || fail "$who CSR self-signature"
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
    -extfile ca.cnf -extensions v3_signer -out $who.pem 2>/dev/null
  uri_var=${who^^}
  "$SEALPOST" token import-cert "${!uri_var}" $who.pem
done
"$SEALPOST" token keys "$CHAIR"
ok "chair: $(openssl x509 -in chair.pem -noout -subject -nameopt utf8,sep_comma_plus_space | sed 's/^subject=//')"

say "The CA publishes its CRL (nothing revoked yet)"
cat > ca-db.cnf <<CNF
[ ca ]
default_ca = demo
[ demo ]
database = $WORK/index.txt
crlnumber = $WORK/crlnumber
default_md = sha256
default_crl_days = 30
CNF
: > index.txt; echo 01 > crlnumber
openssl ca -config ca-db.cnf -gencrl -keyfile ca.key -cert ca.pem -out ca.crl 2>/dev/null
ok "CRL issued, next update in 30 days"

say "A directive: signed by the chair, then sealed by the district union"
cat > chi-thi-01.txt <<'DOC'
LIÊN ĐOÀN LAO ĐỘNG HUYỆN DEMO
Số: 01/CT-LĐLĐ

CHỈ THỊ
Về việc tổ chức Đại hội Công đoàn cơ sở nhiệm kỳ 2027–2032

Các Công đoàn cơ sở trực thuộc tổ chức Đại hội theo hướng dẫn kèm theo,
báo cáo kết quả về Liên đoàn Lao động huyện trước ngày 31/3/2027.
DOC
"$SEALPOST" sign --key "$CHAIR" chi-thi-01.txt
ok "chi-thi-01.txt.p7s: the chair's CAdES B-B signature"
"$SEALPOST" sign --key "$SEAL" --append chi-thi-01.txt.p7s chi-thi-01.txt
ok "the union seal added as a second signer"

say "The recipient verifies (English, then Vietnamese, then JSON for machines)"
"$SEALPOST" verify chi-thi-01.txt --trust ca.pem --crl ca.crl --lang en
"$SEALPOST" verify chi-thi-01.txt --trust ca.pem --crl ca.crl --lang vi
"$SEALPOST" verify chi-thi-01.txt --trust ca.pem --crl ca.crl --json > report.json
grep -q '"indication": *"PASSED"' report.json || fail "JSON report does not say PASSED"
ok "report.json: $(tr -d '\n' < report.json | cut -c1-120)..."

say "Peer check: openssl verifies both signers on its own"
openssl cms -verify -binary -inform DER -in chi-thi-01.txt.p7s -content chi-thi-01.txt \
  -CAfile ca.pem -purpose any -out /dev/null 2>/dev/null || fail "openssl cms -verify"
ok "openssl cms -verify: Verification successful"

say "The federation policy: may the district issue a directive to these unions, signed like this?"
spki() { openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1; }
CA_SHA=$(openssl x509 -in ca.pem -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1)
cat > policy.yaml <<YAML
federation: {id: ldld-tinh-demo, name: "Liên đoàn Lao động tỉnh Demo"}
trust:
  anchors:
    - {id: demo-ca, name: "CA Liên đoàn Lao động Demo", sha256: "$CA_SHA"}
unions:
  - {id: ldld-tinh-demo, name: "Liên đoàn Lao động tỉnh Demo", level: province}
  - id: ldld-huyen-demo
    name: "Liên đoàn Lao động huyện Demo"
    level: district
    parent: ldld-tinh-demo
    seal: {spki_sha256: "$(spki seal.pem)"}
  - {id: cd-mam-non, name: "Công đoàn cơ sở Trường Mầm non Demo", level: grassroots, parent: ldld-huyen-demo}
  - {id: cd-than, name: "Công đoàn cơ sở Công ty Than Demo", level: grassroots, parent: ldld-huyen-demo}
officers:
  - id: nguyen-thi-duyen
    name: "Nguyễn Thị Duyên"
    role: chair
    union: ldld-huyen-demo
    certificate: {spki_sha256: "$(spki chair.pem)"}
    mandate: {from: 2023-01-01, until: 2032-12-31}
document_types:
  - id: directive
    name: "Chỉ thị"
    name_en: "Directive"
    issuers: {levels: [province, district]}
    recipients: {relations: [descendants]}
    signatures:
      officers:
        - {roles: [chair, vice-chair], count: 1}
      seal: true
    max_size_bytes: 10485760
    media_types: [text/plain, application/pdf]
    retention_years: 20
    reference: "{seq}/{year}/CT-{union}"
  - id: financial-report
    name: "Báo cáo tài chính"
    name_en: "Financial report"
    issuers: {levels: [district, grassroots]}
    recipients: {relations: [parent]}
    signatures:
      officers:
        - {roles: [chair], count: 1}
        - {roles: [accountant], count: 1}
      seal: true
    max_size_bytes: 52428800
    media_types: [application/pdf]
    retention_years: 20
YAML
"$SEALPOST" policy check policy.yaml
"$SEALPOST" verify chi-thi-01.txt --trust ca.pem --crl ca.crl --lang vi \
  --policy policy.yaml --type directive --from ldld-huyen-demo --to cd-mam-non,cd-than | tail -n 12
ok "directive from the district to two grassroots unions: allowed by the policy"
set +e
"$SEALPOST" verify chi-thi-01.txt --trust ca.pem --crl ca.crl --json \
  --policy policy.yaml --type financial-report --from ldld-huyen-demo --to ldld-tinh-demo > refused.json
rc=$?
set -e
[ $rc -eq 1 ] || fail "a financial report without the accountant's signature: expected exit 1, got $rc"
grep -q '"subIndication":"NOT_AUTHORIZED_BY_POLICY"' refused.json || fail "JSON report lacks NOT_AUTHORIZED_BY_POLICY"
ok "the same file as a financial report: FAILED / NOT_AUTHORIZED_BY_POLICY (no accountant signed)"

say "A tampered copy is refused"
cp chi-thi-01.txt tampered.txt
sed -i 's/31\/3\/2027/31\/12\/2027/' tampered.txt
set +e
"$SEALPOST" verify tampered.txt chi-thi-01.txt.p7s --trust ca.pem --crl ca.crl --lang vi
rc=$?
set -e
[ $rc -eq 1 ] || fail "tampered document: expected exit 1 (FAILED), got $rc"
ok "tampered document: FAILED (exit 1), as it must be"

source "$ROOT/scripts/demo-federation.sh"

printf '\n\033[1mDemo finished: every step succeeded.\033[0m\n'
