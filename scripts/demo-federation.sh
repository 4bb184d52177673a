# The second half of the demo (sourced by scripts/demo.sh, in $WORK, after
# the CA, the chair's token and the district's seal token exist): the
# federation itself, four appliances on 127.0.0.1.
#
# Uses from demo.sh: SEALPOST SEALPOSTD SIGNER MODULE WORK CHAIR SEAL PIDS,
# say/ok/fail/spki, ca.pem ca.key ca.cnf ca.crl chair.pem seal.pem.


DISTRICT=ldld-huyen-demo
GRASSROOTS=(cd-mam-non cd-than cd-benh-vien)
UNIONS=("$DISTRICT" "${GRASSROOTS[@]}")
declare -A NAME=(
  [ldld-huyen-demo]="Liên đoàn Lao động huyện Demo"
  [cd-mam-non]="Công đoàn cơ sở Trường Mầm non Demo"
  [cd-than]="Công đoàn cơ sở Công ty Than Demo"
  [cd-benh-vien]="Công đoàn cơ sở Bệnh viện Demo"
)
declare -A PPORT UPORT SEALKEY SIGNER_PID DAEMON_PID

# curl against a union's user listener as its clerk: prints the HTTP status,
# the body goes to $WORK/http.body. The token is read from a 0600 header file
# (never on a command line).
api() {
  local u=$1 path=$2; shift 2
  curl -sS --max-time 60 --cacert "$WORK/ca.pem" -H @"$WORK/$u/clerk.hdr" \
    -o "$WORK/http.body" -w '%{http_code}' "$@" "https://127.0.0.1:${UPORT[$u]}$path"
}
# The same on a union's peer listener, with another union's TLS certificate.
peer_api() {
  local from=$1 to=$2 path=$3; shift 3
  curl -sS --max-time 60 --cacert "$WORK/ca.pem" --cert "$WORK/$from/tls.pem" \
    --key "$WORK/$from/tls-key.pem" -o "$WORK/http.body" -w '%{http_code}' "$@" \
    "https://127.0.0.1:${PPORT[$to]}$path"
}
body() { cat "$WORK/http.body"; }
urlenc() { jq -rn --arg v "$1" '$v|@uri'; }

say "Part 2: the federation — an appliance seal token per union, keys made on the tokens"
# Appliance seals carry no CRL distribution point: `sealpost audit` checks the
# seal on every commit against the trust anchors alone (it keeps no CRL for
# commit seals yet), and a distribution point without a CRL at hand would
# make every commit INDETERMINATE. The officers' certificates keep theirs:
# the CRL the district checked them with is archived with each document.
# The seal also signs the union's S/MIME mail (docs/email.md): its address
# as an rfc822Name and the emailProtection extended key usage.
cat > seal.cnf <<'CNF'
[ v3_appliance_seal ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = emailProtection
subjectAltName = email:$ENV::SEAL_EMAIL
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
for u in "${UNIONS[@]}"; do
  mkdir -p "$u"
  pin=$(printf '%06d' $((RANDOM % 900000 + 100000)))
  printf '%s\n' "$pin" > "$u/seal.pin"
  softhsm2-util --init-token --free --label "seal-$u" --so-pin 11223344 --pin "$pin" >/dev/null
  pkcs11-tool --module "$MODULE" --token-label "seal-$u" --login --pin "$pin" \
    --keypairgen --key-type EC:prime256v1 --id 01 --label seal >/dev/null 2>&1
  SEALKEY[$u]="pkcs11:token=seal-$u;object=seal;type=private?module-path=$MODULE"
  "$SEALPOST" token csr "${SEALKEY[$u]}&pin-source=file:$WORK/$u/seal.pin" \
    --subject "/CN=${NAME[$u]}/O=${NAME[$u]}/C=VN" -o "$u/seal.csr"
  SEAL_EMAIL="$u@demo.example" openssl x509 -req -in "$u/seal.csr" -CA ca.pem -CAkey ca.key \
    -CAcreateserial -days 365 -extfile seal.cnf -extensions v3_appliance_seal -out "$u/seal.pem" 2>/dev/null
  "$SEALPOST" token import-cert "${SEALKEY[$u]}&pin-source=file:$WORK/$u/seal.pin" "$u/seal.pem"
  ok "$u: $(openssl x509 -in "$u/seal.pem" -noout -subject -nameopt utf8,sep_comma_plus_space | sed 's/^subject=//')"
done

# The accountant of the kindergarten's union signs its financial report.
printf '975310\n' > accountant.pin
softhsm2-util --init-token --free --label accountant-token --so-pin 11223344 --pin 975310 >/dev/null
pkcs11-tool --module "$MODULE" --token-label accountant-token --login --pin 975310 \
  --keypairgen --key-type EC:prime256v1 --id 01 --label accountant >/dev/null 2>&1
ACCOUNTANT="pkcs11:token=accountant-token;object=accountant;type=private?module-path=$MODULE&pin-source=file:$WORK/accountant.pin"
"$SEALPOST" token csr "$ACCOUNTANT" --subject "/CN=Trần Thị Lan/title=Kế toán/O=${NAME[cd-mam-non]}/C=VN" -o accountant.csr
openssl x509 -req -in accountant.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
  -extfile ca.cnf -extensions v3_signer -out accountant.pem 2>/dev/null
"$SEALPOST" token import-cert "$ACCOUNTANT" accountant.pem
ok "the accountant of ${NAME[cd-mam-non]}: her own token, P-256"

say "TLS certificates for the four appliances, and a port pair each on 127.0.0.1"
cat > tls.cnf <<'CNF'
[ v3_tls ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
CNF
# Free ports, all held open until every one is known.
read -r -a PORTS <<< "$(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(8)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)"
i=0
for u in "${UNIONS[@]}"; do
  PPORT[$u]=${PORTS[$i]}; UPORT[$u]=${PORTS[$((i + 1))]}; i=$((i + 2))
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$u/tls-key.pem" \
    -subj "/CN=127.0.0.1/OU=$u appliance/O=${NAME[$u]}/C=VN" -utf8 -out "$u/tls.csr" 2>/dev/null
  openssl x509 -req -in "$u/tls.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile tls.cnf -extensions v3_tls -out "$u/tls.pem" 2>/dev/null
  ok "$u: peers on 127.0.0.1:${PPORT[$u]}, people on 127.0.0.1:${UPORT[$u]}"
done

say "One federation policy: registry (endpoint, TLS identity, seal of every union) and the rules"
{
  cat <<YAML
federation: {id: ldld-tinh-demo, name: "Liên đoàn Lao động tỉnh Demo"}
trust:
  anchors:
    - {id: demo-ca, name: "CA Liên đoàn Lao động Demo", sha256: "$CA_SHA"}
unions:
  - {id: ldld-tinh-demo, name: "Liên đoàn Lao động tỉnh Demo", level: province}
YAML
  for u in "${UNIONS[@]}"; do
    if [ "$u" = "$DISTRICT" ]; then level=district; parent=ldld-tinh-demo; else level=grassroots; parent=$DISTRICT; fi
    cat <<YAML
  - id: $u
    name: "${NAME[$u]}"
    level: $level
    parent: $parent
    endpoint: "https://127.0.0.1:${PPORT[$u]}"
    tls_identity: {spki_sha256: "$(spki "$u/tls.pem")"}
    seal: {spki_sha256: "$(spki "$u/seal.pem")"}
    email: "$u@demo.example"
YAML
  done
  cat <<YAML
officers:
  - id: nguyen-thi-duyen
    name: "Nguyễn Thị Duyên"
    role: chair
    union: $DISTRICT
    certificate: {spki_sha256: "$(spki chair.pem)"}
    mandate: {from: 2023-01-01, until: 2032-12-31}
  - id: tran-thi-lan
    name: "Trần Thị Lan"
    role: accountant
    union: cd-mam-non
    certificate: {spki_sha256: "$(spki accountant.pem)"}
    mandate: {from: 2023-01-01, until: 2032-12-31}
document_types:
  - id: directive
    name: "Chỉ thị"
    name_en: "Directive"
    issuers: {levels: [district]}
    recipients: {relations: [children]}
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
    issuers: {levels: [grassroots]}
    recipients: {relations: [parent]}
    signatures:
      officers:
        - {roles: [accountant], count: 1}
      seal: true
    max_size_bytes: 52428800
    media_types: [text/plain, application/pdf]
    retention_years: 20
    reference: "{seq}/{year}/BCTC-{union}"
YAML
} > federation.yaml
"$SEALPOST" policy check federation.yaml
ok "federation.yaml: 5 unions, 2 officers, 2 document types"

say "Each appliance: sealpost-signer (alone holds the token PIN) and sealpostd"
for u in "${UNIONS[@]}"; do
  cat > "$u/sealpostd.yaml" <<YAML
union: $u
state_dir: $WORK/$u/state
language: vi
policy: [$WORK/federation.yaml]
signer_socket: $WORK/$u/signer.sock
seal_key: "${SEALKEY[$u]}"
listeners:
  peer: {address: 127.0.0.1, port: ${PPORT[$u]}, certificate: $WORK/$u/tls.pem, key: $WORK/$u/tls-key.pem, client_ca: $WORK/ca.pem}
  user: {address: 127.0.0.1, port: ${UPORT[$u]}, certificate: $WORK/$u/tls.pem, key: $WORK/$u/tls-key.pem}
verify:
  trust_anchors: [$WORK/ca.pem]
  crls: [$WORK/ca.crl]
YAML
  mkdir -p "$u/state"
  "$SIGNER" --key "${SEALKEY[$u]}" --socket "$u/signer.sock" --pin-file "$u/seal.pin" \
    --journal "$u/signer-journal.jsonl" 2>>"$u/signer.log" &
  PIDS+=($!); SIGNER_PID[$u]=$!
  "$SEALPOST" admin token create --state "$u/state" --role clerk --name "Văn thư $u" 2>/dev/null > "$u/clerk.token"
  printf 'Authorization: Bearer %s\n' "$(cat "$u/clerk.token")" > "$u/clerk.hdr"
done
for u in "${UNIONS[@]}"; do
  for _ in $(seq 100); do [ -S "$u/signer.sock" ] && break; sleep 0.1; done
  [ -S "$u/signer.sock" ] || fail "$u: sealpost-signer did not come up: $(tail -n 5 "$u/signer.log")"
  "$SEALPOSTD" --config "$u/sealpostd.yaml" 2>>"$u/sealpostd.log" &
  PIDS+=($!); DAEMON_PID[$u]=$!
done
for u in "${UNIONS[@]}"; do
  up=""
  for _ in $(seq 150); do
    if [ "$(api "$u" /api/v1/health 2>/dev/null)" = 200 ]; then up=1; break; fi
    sleep 0.2
  done
  [ -n "$up" ] || fail "$u: sealpostd not answering: $(tail -n 5 "$u/sealpostd.log")"
  if [ "$(body | jq -r .archive)" != present ]; then
    # The archive is created (its first commit signed by the seal) when the
    # documents service is first used: ask for a document that is not there.
    api "$u" "/api/v1/documents/bundle?id=00000000-0000-4000-8000-000000000000" >/dev/null || true
    api "$u" /api/v1/health >/dev/null
  fi
  body | jq -e '.status == "ok"' >/dev/null || fail "$u: health is not ok: $(body)"
  ok "$u: sealpostd pid ${DAEMON_PID[$u]}, signer pid ${SIGNER_PID[$u]}: $(body | jq -c '{status, signer, archive}')"
done

# ---------------------------------------------------------------------------
say "The district issues a directive: signed by the chair on her own token, sealed by the district"
cat > chi-thi-02.txt <<'DOC'
LIÊN ĐOÀN LAO ĐỘNG HUYỆN DEMO

CHỈ THỊ
Về việc tổ chức Tháng Công nhân năm 2027

Các Công đoàn cơ sở trực thuộc triển khai Tháng Công nhân, báo cáo kết quả
và báo cáo tài chính quý về Liên đoàn Lao động huyện trước ngày 15/6/2027.
DOC
"$SEALPOST" sign --key "$CHAIR" chi-thi-02.txt
ok "chi-thi-02.txt.p7s: Nguyễn Thị Duyên (Chủ tịch) signed on her PC"

# submit FROM TYPE SUBJECT TO FILE P7S: the document id on stdout.
submit() {
  local from=$1 type=$2 subject=$3 to=$4 file=$5 p7s=$6
  printf 'Sealpost-Signature: %s\n' "$(base64 -w0 "$p7s")" > sig.hdr
  local q="type=$type&subject=$(urlenc "$subject")&recipients=$to&name=$(urlenc "$file")&media_type=text/plain"
  local st
  st=$(api "$from" "/api/v1/documents?$q" -X POST -H 'Content-Type: application/octet-stream' \
       -H @sig.hdr --data-binary @"$file")
  [ "$st" = 201 ] || fail "$from: submission answered $st: $(body)"
  body | jq -r .id
}
TO=$(IFS=,; echo "${GRASSROOTS[*]}")
DIRECTIVE=$(submit "$DISTRICT" directive "Chỉ thị về Tháng Công nhân năm 2027" "$TO" chi-thi-02.txt chi-thi-02.txt.p7s)
ok "accepted by the district's appliance: $(body | jq -c '{reference, seq, seal: .seal.subject, recipients}')"
ok "the policy was checked, the seal added by sealpost-signer, the document archived and queued for 3 unions"

# The delivery state of DOCUMENT sent by FROM, one line per recipient; 1 if
# the document API is not in this build.
delivery_states() {
  local from=$1 id=$2 st
  st=$(api "$from" "/api/v1/documents/$id")
  [ "$st" = 200 ] || return 1
  body | jq -r '(.deliveries // .recipients // [])[] | select(type == "object") |
                "\(.recipient // .union) \(.state)"' 2>/dev/null
}
# Waits until every recipient of ID (sent by FROM) is in one of STATES.
wait_states() {
  local from=$1 id=$2 states=$3 n=$4
  for _ in $(seq 150); do
    delivery_states "$from" "$id" > states.txt || return 1
    if [ "$(grep -cE " ($states)\$" states.txt)" -ge "$n" ]; then return 0; fi
    sleep 0.2
  done
  return 2
}

say "Delivery: the district's outbox sends the bundle to each grassroots appliance (mutual TLS)"
rc=0; wait_states "$DISTRICT" "$DIRECTIVE" "delivered|read" 3 || rc=$?
[ $rc -eq 1 ] && fail "the district's delivery states could not be read: $(body)"
[ $rc -eq 2 ] && { cat states.txt; fail "the directive was not delivered to all three unions within 30 s"; }
sed 's/^/    /' states.txt
ok "three signed receipts came back, verified against each union's seal and archived by the district"

say "Each grassroots clerk opens the directive; a read notice signed by their seal goes back"
for u in "${GRASSROOTS[@]}"; do
  st=$(api "$u" "/api/v1/documents/$DIRECTIVE/content")
  [ "$st" = 200 ] || fail "$u: opening the received directive answered $st: $(body)"
  cmp -s "$WORK/http.body" chi-thi-02.txt || fail "$u: the received content differs from the original"
  ok "$u: read it, the same bytes the chair signed"
done
rc=0; wait_states "$DISTRICT" "$DIRECTIVE" "read" 3 || rc=$?
[ $rc -eq 1 ] && fail "the district's delivery states could not be read: $(body)"
[ $rc -eq 2 ] && { sed 's/^/    /' states.txt; fail "the district's delivery states did not all turn to read within 30 s"; }
sed 's/^/    /' states.txt
ok "the district sees, per union: delivered, then read"
st=$(api "$DISTRICT" "/api/v1/documents/$DIRECTIVE/receipts")
[ "$st" = 200 ] || fail "listing the directive's archived receipts answered $st: $(body)"
body | jq -r '.receipts[] | "\(.fields.receipt_type) of \(.fields.recipient), archived \(.archived_at) as entry \(.seq)"' \
  | sed 's/^/    /'
n=$(body | jq '[.receipts[] | select(.fields.receipt_type == "read-notice")] | length')
[ "$n" -ge 3 ] || fail "the district archived $n read notices for the directive, not 3"
ok "the receipts and read notices are archived with the directive on the district's appliance"

say "A grassroots union reports upward: a financial report signed by its accountant, sealed by the union"
cat > bao-cao-tai-chinh-q2.txt <<'DOC'
CÔNG ĐOÀN CƠ SỞ TRƯỜNG MẦM NON DEMO

BÁO CÁO TÀI CHÍNH QUÝ II/2027
Thu kinh phí công đoàn:   48.600.000 đ
Chi hoạt động phong trào: 31.250.000 đ
Tồn quỹ cuối quý:         17.350.000 đ
DOC
"$SEALPOST" sign --key "$ACCOUNTANT" bao-cao-tai-chinh-q2.txt
REPORT=$(submit cd-mam-non financial-report "Báo cáo tài chính quý II/2027" "$DISTRICT" \
         bao-cao-tai-chinh-q2.txt bao-cao-tai-chinh-q2.txt.p7s)
ok "accepted by cd-mam-non: $(body | jq -c '{reference, seal: .seal.subject, recipients}')"
rc=0; wait_states cd-mam-non "$REPORT" "delivered|read" 1 || rc=$?
[ $rc -eq 1 ] && fail "cd-mam-non's delivery states could not be read: $(body)"
[ $rc -eq 2 ] && { cat states.txt; fail "the report was not delivered to the district within 30 s"; }
sed 's/^/    /' states.txt
ok "the district's appliance verified it (accountant, seal, policy, checkpoint) and answered with its receipt"

say "A recipient without an appliance checks the directive's bundle"
st=$(api "$DISTRICT" "/api/v1/documents/bundle?id=$DIRECTIVE")
[ "$st" = 200 ] || fail "bundle download answered $st"
cp "$WORK/http.body" chi-thi-02.asics
rm -rf bundle && mkdir bundle && (cd bundle && unzip -q ../chi-thi-02.asics)
ls -1 bundle bundle/META-INF bundle/META-INF/sealpost | sed 's/^/    /'
content=$(cd bundle && ls document* | head -n 1)
"$SEALPOST" verify "bundle/$content" bundle/META-INF/signature.p7s --trust ca.pem --crl ca.crl --lang vi
ok "the content: signed by the chair and sealed by the district (sealpost verify)"
"$SEALPOST" verify bundle/META-INF/sealpost/document.json bundle/META-INF/sealpost/document.json.p7s \
  --trust ca.pem --crl ca.crl --json | jq -e '.indication == "PASSED"' >/dev/null \
  || fail "document.json: the district's seal does not verify"
ok "document.json (reference, recipients, content hash): $(jq -c '{reference, issuer, type}' bundle/META-INF/sealpost/document.json)"
openssl cms -verify -binary -inform DER -in bundle/META-INF/sealpost/checkpoint.p7s \
  -content bundle/META-INF/sealpost/checkpoint -CAfile ca.pem -purpose any -out /dev/null 2>/dev/null \
  || fail "the district's checkpoint signature (openssl)"
ok "the district's signed checkpoint: $(sed -n 2p bundle/META-INF/sealpost/checkpoint) entries (openssl cms -verify)"
st=$(curl -sS --max-time 60 --cacert ca.pem -o "$WORK/http.body" -w '%{http_code}' -H 'Accept: text/plain' \
     -H 'Accept-Language: vi' -F "file=@bundle/$content" -F "signature=@bundle/META-INF/signature.p7s" \
     "https://127.0.0.1:${UPORT[cd-benh-vien]}/api/v1/verify")
[ "$st" = 200 ] || fail "verification desk answered $st: $(body)"
head -n 6 "$WORK/http.body" | sed 's/^/    /'
ok "the public verification desk of cd-benh-vien agrees (no account needed)"

say "Shutdown: SIGTERM to every sealpostd (requests in flight finish), then every signer"
for u in "${UNIONS[@]}"; do
  kill -TERM "${DAEMON_PID[$u]}"
  rc=0; wait "${DAEMON_PID[$u]}" || rc=$?
  [ $rc -eq 0 ] || fail "$u: sealpostd exited $rc: $(tail -n 5 "$u/sealpostd.log")"
  kill -TERM "${SIGNER_PID[$u]}"
  rc=0; wait "${SIGNER_PID[$u]}" || rc=$?
  [ $rc -eq 0 ] || fail "$u: sealpost-signer exited $rc"
  ok "$u: sealpostd and sealpost-signer exited 0; $(wc -l < "$u/signer-journal.jsonl") seal signatures in the signer's journal"
done

say "The auditor checks every archive offline: signatures, Merkle log, checkpoints, receipts"
for u in "${UNIONS[@]}"; do
  "$SEALPOST" audit "$u/state/archive" --trust ca.pem --lang en > "$u/audit.txt" 2>&1 \
    || { cat "$u/audit.txt"; fail "$u: sealpost audit"; }
  ok "$u: $(grep -v '^\s*$' "$u/audit.txt" | tail -n 1)"
done
