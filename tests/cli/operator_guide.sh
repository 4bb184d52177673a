#!/usr/bin/env bash
# docs/operator-guide.md, tested as a new operator would follow it: every
# fenced block marked `sh operator-step [NAME]` is extracted from the guide
# and run, in order, in one shell, against the built programs, a SoftHSM2
# token and a throwaway CA. The guide's paths are pointed at a scratch
# directory through the variables its first block defaults (ETC, STATE, ...).
# This script adds only what happens outside the appliance (an empty token is
# plugged in, the PIN is typed, the federation's CA issues certificates) and
# checks after some steps (hooks after_<NAME>) that what the guide claims is
# true; hooks before_<NAME> do what happens outside before a block (the new
# token of section 12 is plugged in). A block that fails fails the test.
set -euo pipefail

SRC=${SEALPOST_SOURCE_DIR:?SEALPOST_SOURCE_DIR not set}
: "${SEALPOST:?SEALPOST (the built CLI) not set}"
: "${SEALPOSTD:?SEALPOSTD (the built sealpostd) not set}"
: "${SEALPOST_SIGNER:?SEALPOST_SIGNER (the built sealpost-signer) not set}"
GUIDE=$SRC/docs/operator-guide.md
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so

fail() { echo "FAIL: $*" >&2; exit 1; }

scratch=$(mktemp -d)
SEALPOSTD_PID="" SIGNER_PID="" PIN_FILE="" NEW_PIN_FILE=""
cleanup() {
  for pid in $SEALPOSTD_PID $SIGNER_PID; do kill -KILL "$pid" 2>/dev/null || true; done
  [ -n "$PIN_FILE" ] && rm -f "$PIN_FILE"
  [ -n "$NEW_PIN_FILE" ] && rm -f "$NEW_PIN_FILE"
  if [ -n "${SEALPOST_GUIDE_KEEP:-}" ]; then echo "kept $scratch" >&2; else rm -rf "$scratch"; fi
}
trap cleanup EXIT

# --- The blocks, in order: "# --- block N NAME" before each.
awk '
  /^```sh operator-step( [a-z-]+)?$/ { n++; name = $3; print "# --- block " n " " (name == "" ? "-" : name); print "__before_block " n " " (name == "" ? "-" : name); inside = 1; next }
  inside && /^```$/ { inside = 0; print "__after_block " n " " (name == "" ? "-" : name); next }
  inside { print }
' "$GUIDE" > "$scratch/guide.sh"
blocks=$(grep -c '^# --- block ' "$scratch/guide.sh")
[ "$blocks" -ge 10 ] || fail "only $blocks operator-step blocks found in $GUIDE"
grep -q '^__after_block [0-9]* start$' "$scratch/guide.sh" || fail "no 'start' block in the guide"

# --- What the guide's variables point at (instead of /etc, /var/lib, /run).
mkdir -p "$scratch/bin" "$scratch/home" "$scratch/tokens"
ln -s "$SEALPOST" "$scratch/bin/sealpost"
export PATH=$scratch/bin:$PATH HOME=$scratch/home
export ETC=$scratch/etc STATE=$scratch/state RUN=$scratch/run SIGNER_STATE=$scratch/signer
export SIGNER=$SEALPOST_SIGNER SEALPOSTD BACKUP=$scratch/backup
SEALPOST_USER=$(id -un); export SEALPOST_USER
export MODULE=$SOFTHSM_MODULE UNION=ldld-ha-long
read -r PEER_PORT USER_PORT <<<"$(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')"
export PEER_PORT USER_PORT

# --- Outside the appliance: an empty seal token is plugged in ...
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$scratch/tokens" > "$scratch/softhsm2.conf"
export SOFTHSM2_CONF=$scratch/softhsm2.conf
TOKEN_PIN=$(printf '%06d' $((RANDOM % 900000 + 100000)))
NEW_TOKEN_PIN=$(printf '%08d' $((RANDOM % 90000000 + 10000000)))
softhsm2-util --init-token --free --label union-seal --so-pin 87654321 --pin "$TOKEN_PIN" >/dev/null
# ... and the federation's CA (throwaway) will issue what is asked of it
# (for a year: sealpost doctor warns about certificates within 30 days of
# their expiry).
cat > "$scratch/ca.cnf" <<'CNF'
[ req ]
distinguished_name = dn
[ dn ]
[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ v3_seal ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = emailProtection,1.3.6.1.4.1.311.10.3.12
subjectAltName = email:vanthu@ldld-ha-long.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ v3_tls ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
CNF
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$scratch/ca.key" \
  -subj "/CN=CA Liên đoàn Lao động Quảng Ninh (test)/C=VN" -utf8 -config "$scratch/ca.cnf" \
  -extensions v3_ca -days 3650 -out "$scratch/ca.pem" 2>/dev/null

# --- Hooks, run in the guide's shell (its working directory) after a block.
after_tls-csr() {  # the CA answers both requests
  for what in seal:v3_seal appliance:v3_tls; do
    openssl x509 -req -in "${what%%:*}.csr" -CA "$scratch/ca.pem" -CAkey "$scratch/ca.key" \
      -CAcreateserial -days 365 -extfile "$scratch/ca.cnf" -extensions "${what#*:}" \
      -out "${what%%:*}.pem" 2>/dev/null || fail "the CA could not issue ${what%%:*}.pem"
  done
  cp "$scratch/ca.pem" federation-ca.pem
}
before_new-token() {  # section 12: the new, empty token is plugged in
  softhsm2-util --init-token --free --label union-seal-2 --so-pin 87654321 --pin "$NEW_TOKEN_PIN" >/dev/null
}
after_new-token() {  # ... and the CA answers its request
  openssl x509 -req -in seal-2.csr -CA "$scratch/ca.pem" -CAkey "$scratch/ca.key" \
    -CAcreateserial -days 365 -extfile "$scratch/ca.cnf" -extensions v3_seal \
    -out seal-2.pem 2>/dev/null || fail "the CA could not issue seal-2.pem"
}
after_change-seal() {
  [ "$(git -C "$STATE/archive" config --get sealpost.key)" = "$NEW_SEAL_KEY" ] ||
    fail "the archive does not remember the new seal key"
  sealpost archive list "$STATE/archive" --kind key-change --json | jq -e 'length == 2' >/dev/null ||
    fail "the archive does not hold two key-change entries"
}
health() { curl -sS --cacert "$ETC/tls/federation-ca.pem" "https://127.0.0.1:$USER_PORT/api/v1/health"; }
after_start() {
  local h; h=$(health) || fail "sealpostd does not answer after 'start': $(tail -n 5 sealpostd.log)"
  jq -e '.status == "ok" and .archive == "present" and .signer == "reachable"' <<<"$h" >/dev/null ||
    fail "health after 'start' is not ok: $h"
  echo "check: health $h"
}
after_mirror() {
  [ "$(git -C "$BACKUP/archive.git" rev-parse main)" = "$(git -C "$STATE/archive" rev-parse main)" ] ||
    fail "the mirror's main is not the archive's"
  git -C "$BACKUP/archive.git" fsck --strict 2>&1 || fail "git fsck --strict on the mirror"
}
after_restart-new-seal() {
  after_restart
  # The signer serves the new seal (the daemon's documents service opened
  # the archive with it, above); the token holds the new certificate.
  sealpost token keys "$NEW_SEAL_KEY" --pin-file "$NEW_PIN_FILE" | grep -q 'Hạ Long' ||
    fail "the new token does not show its certificate"
}
after_restart() {
  after_start
  # The daemon opens the restored archive with the seal on the token (the
  # exchange is opened on first use: a bundle that is not there is a 404,
  # an archive it cannot open a 503).
  local tok st
  tok=$(sealpost admin token create --state "$STATE" --role clerk --name "Văn thư" 2>/dev/null)
  printf 'Authorization: Bearer %s\n' "$tok" > "$scratch/clerk.hdr"
  st=$(curl -sS --cacert "$ETC/tls/federation-ca.pem" -H @"$scratch/clerk.hdr" -o "$scratch/body" -w '%{http_code}' \
       "https://127.0.0.1:$USER_PORT/api/v1/documents/bundle?id=00000000-0000-4000-8000-000000000000")
  [ "$st" = 404 ] || fail "after the restore, the documents service answered $st: $(cat "$scratch/body")"
  [ "$(sealpost archive list "$STATE/archive" | wc -l)" -ge 1 ] || fail "the restored archive lists nothing"
}
# `sealpost doctor` is another engineer's work (issue 6); until it is in the
# build its block is reported and skipped.
DOCTOR=1
"$SEALPOST" --help | grep -q '^ *doctor ' || DOCTOR=""
__before_block() {
  local name=$2
  if declare -F "before_$name" >/dev/null; then "before_$name"; fi
}
__after_block() {
  local n=$1 name=$2
  echo "== guide block $n ($name): done"
  if declare -F "after_$name" >/dev/null; then "after_$name"; fi
}
# Turns the doctor block into a notice when the command does not exist.
if [ -z "$DOCTOR" ]; then
  awk '/^# --- block [0-9]+ doctor$/ { print; print "echo \"not yet: sealpost doctor (not in this build)\""; skip = 1; next }
       skip && /^__after_block/ { skip = 0 } !skip { print }' "$scratch/guide.sh" > "$scratch/guide2.sh"
  mv "$scratch/guide2.sh" "$scratch/guide.sh"
fi

echo "== running $blocks blocks of docs/operator-guide.md"
# The PIN is "typed" on stdin (the guide's `read -rs`).
printf '%s\n%s\n' "$TOKEN_PIN" "$NEW_TOKEN_PIN" > "$scratch/typed-pin"
# shellcheck disable=SC1091
source "$scratch/guide.sh" < "$scratch/typed-pin"

# After the guide: the processes it started are gone, the PIN file too.
[ ! -e "$PIN_FILE" ] || fail "the guide left the PIN file $PIN_FILE"
[ -n "$NEW_PIN_FILE" ] && [ ! -e "$NEW_PIN_FILE" ] || fail "the guide left the PIN file $NEW_PIN_FILE"
for pid in $SEALPOSTD_PID $SIGNER_PID; do
  ! kill -0 "$pid" 2>/dev/null || fail "process $pid still runs after the guide's clean-up"
done
SEALPOSTD_PID="" SIGNER_PID=""
grep -q -e "$TOKEN_PIN" -e "$NEW_TOKEN_PIN" "$scratch"/home/sealpost-setup/*.log && fail "a PIN is in a log"
echo "operator guide: OK ($blocks blocks)"
