#!/usr/bin/env bash
# Sign (SoftHSM2, P-256) and verify a large file, side by side with
# `openssl dgst -sha256` of the same file in the same run, the file in the
# page cache. Prints wall times, ratios and peak RSS.
#
#   bench/large_file.sh [BUILD_DIR] [SIZE_MIB]     (default build, 1024)
#
# Targets (issue 2): sign and verify each <= 1.15x the digest's wall time,
# peak RSS <= 32 MiB.
set -euo pipefail
BUILD=${1:-build}
SIZE_MIB=${2:-1024}
REPEAT=${REPEAT:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SEALPOST=$ROOT/$BUILD/cli/sealpost
MEASURE=$ROOT/$BUILD/bench/bench_measure
MODULE=/usr/lib/softhsm/libsofthsm2.so

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sealpost-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# Throwaway CA and a P-256 key generated on a SoftHSM2 token.
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
  -subj "/CN=Bench CA" -days 30 -out ca.pem 2>/dev/null
mkdir tokens
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$WORK" > softhsm2.conf
export SOFTHSM2_CONF=$WORK/softhsm2.conf
printf '1234\n' > pin
softhsm2-util --init-token --free --label bench --so-pin 5678 --pin 1234 >/dev/null
pkcs11-tool --module $MODULE --token-label bench --login --pin 1234 --keypairgen \
  --key-type EC:prime256v1 --id 01 --label signer >/dev/null 2>&1
URI="pkcs11:token=bench;object=signer;type=private?module-path=$MODULE&pin-source=file:$WORK/pin"
"$SEALPOST" token csr "$URI" --subject "/CN=Bench Signer" -o req.pem
printf 'keyUsage=critical,digitalSignature,nonRepudiation\n' > ext.cnf
openssl x509 -req -in req.pem -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -extfile ext.cnf -out signer.pem 2>/dev/null
"$SEALPOST" token import-cert "$URI" signer.pem

echo "creating a ${SIZE_MIB} MiB file..."
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > big.bin
cat big.bin > /dev/null  # into the page cache

median() { awk -F= '/^median_wall_s=/{split($2,a," "); print a[1]}'; }
maxrss() { awk '/^median_wall_s=/{for(i=1;i<=NF;i++) if($i ~ /^max_maxrss_kib=/){split($i,a,"="); print a[2]}}'; }

run() {  # label, command...
  local label=$1; shift
  local out
  out=$("$MEASURE" --repeat "$REPEAT" -- "$@")
  echo "$out" | sed "s/^/  $label: /" >&2
  echo "$(echo "$out" | median) $(echo "$out" | maxrss)"
}

read -r DGST DGST_RSS < <(run "openssl dgst" openssl dgst -sha256 big.bin)
read -r SIGN SIGN_RSS < <(run "sealpost sign" "$SEALPOST" sign --key "$URI" big.bin -o big.bin.p7s)
read -r VER VER_RSS < <(run "sealpost verify" "$SEALPOST" verify big.bin big.bin.p7s --trust ca.pem)

printf '\n%-34s %10s %8s %12s\n' "file: ${SIZE_MIB} MiB, median of $REPEAT" "wall (s)" "ratio" "peak RSS MiB"
row() { awk -v l="$1" -v w="$2" -v d="$DGST" -v r="$3" 'BEGIN{printf "%-34s %10.3f %7.2fx %12.1f\n", l, w, w/d, r/1024}'; }
row "openssl dgst -sha256 (reference)" "$DGST" "$DGST_RSS"
row "sealpost sign (SoftHSM2 P-256)" "$SIGN" "$SIGN_RSS"
row "sealpost verify" "$VER" "$VER_RSS"
echo "targets: sign and verify <= 1.15x, peak RSS <= 32 MiB"
