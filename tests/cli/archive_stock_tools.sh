#!/usr/bin/env bash
# `sealpost archive` end to end with stock tools only around it: a seal key
# generated on a SoftHSM2 token, its certificate from a throwaway openssl CA;
# a document signed by `openssl cms` (an officer with a software key);
# the archive checked with git fsck, its checkpoint with openssl cms, an
# inclusion proof verified offline, a mirror cloned and read back.
# ctest sets SEALPOST to the binary under test. Exits non-zero on failure.
set -euo pipefail
MODULE=/usr/lib/softhsm/libsofthsm2.so
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sealpost-archive-sh.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
umask 077
fail() { echo "FAILED: $*" >&2; exit 1; }

cat > ca.cnf <<'CNF'
[ req ]
distinguished_name = dn
string_mask = utf8only
utf8 = yes
[ dn ]
[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
[ v3_signer ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
CNF
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
  -subj "/CN=CA Thử nghiệm/C=VN" -utf8 -config ca.cnf -extensions v3_ca -days 30 -out ca.pem 2>/dev/null

mkdir tokens
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$WORK" > softhsm2.conf
export SOFTHSM2_CONF=$WORK/softhsm2.conf
printf '135790\n' > seal.pin
softhsm2-util --init-token --free --label seal --so-pin 11223344 --pin 135790 >/dev/null
pkcs11-tool --module "$MODULE" --token-label seal --login --pin 135790 \
  --keypairgen --key-type EC:prime256v1 --id 01 --label seal >/dev/null 2>&1
SEAL="pkcs11:token=seal;object=seal;type=private?module-path=$MODULE&pin-source=file:$WORK/seal.pin"
"$SEALPOST" token csr "$SEAL" --subject "/CN=Công đoàn Bãi Cháy/O=Công đoàn Bãi Cháy/C=VN" -o seal.csr >/dev/null
openssl x509 -req -in seal.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -extfile ca.cnf -extensions v3_signer -out seal.pem 2>/dev/null
"$SEALPOST" token import-cert "$SEAL" seal.pem >/dev/null

# An officer signs with openssl (software key: stands for any other tool).
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout officer.key \
  -subj "/CN=Trần Văn Hùng/C=VN" -utf8 -out officer.csr 2>/dev/null
openssl x509 -req -in officer.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -extfile ca.cnf -extensions v3_signer -out officer.pem 2>/dev/null
printf 'Biên bản họp ngày 28/11\n' > "Biên bản.txt"
openssl cms -sign -binary -cades -in "Biên bản.txt" -signer officer.pem -inkey officer.key \
  -outform DER -out "Biên bản.txt.p7s" 2>/dev/null

"$SEALPOST" archive init a.git --key "$SEAL" --origin cd-baichay.vn/archive --trust ca.pem >/dev/null
out=$("$SEALPOST" archive append a.git "Biên bản.txt" --type bien-ban --subject "Biên bản họp" \
  --from cd-baichay --to ld-quangninh)
echo "$out" | grep -q '^seq 2$' || fail "append: $out"
git -C a.git fsck --strict --no-dangling >/dev/null 2>&1 || fail "git fsck"
[ "$(git -C a.git cat-file blob main:entries/00/00/00/2/content)" = "Biên bản họp ngày 28/11" ] || fail "content"

# A tampered document is refused and the head does not move.
head=$(git -C a.git rev-parse main)
cp "Biên bản.txt.p7s" other.txt.p7s; printf 'khác\n' > other.txt
rc=0; "$SEALPOST" archive append a.git other.txt --type t --subject s >/dev/null 2>&1 || rc=$?
[ $rc = 1 ] || fail "tampered append exit $rc"
[ "$(git -C a.git rev-parse main)" = "$head" ] || fail "head moved"

# Checkpoint checked by openssl; proof verified offline against it.
"$SEALPOST" archive checkpoint a.git -o cp >/dev/null
openssl cms -verify -binary -inform DER -in cp.p7s -content cp -CAfile ca.pem -purpose any \
  -out /dev/null 2>/dev/null || fail "openssl checkpoint"
"$SEALPOST" archive prove a.git 2 --checkpoint cp -o proof >/dev/null
"$SEALPOST" archive verify-proof proof --checkpoint cp | grep -q PASSED || fail "verify-proof"

# A mirror, cloned: the clone reads as the same archive.
git init -q --bare m.git
"$SEALPOST" archive mirror a.git m.git >/dev/null
git clone -q m.git c
[ "$(git -C c rev-parse HEAD)" = "$head" ] || fail "clone head"
"$SEALPOST" archive list c --json | grep -q '"subject":"Biên bản họp"' || fail "list of the clone"
[ -z "$(git -C c status --porcelain)" ] || fail "the index was left in the clone's work tree"
[ -f c/.git/sealpost-index.sqlite ] || fail "no index in the clone's git directory"
echo "archive_stock_tools: ok"
