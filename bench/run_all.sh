#!/usr/bin/env bash
# Runs every benchmark and prints its figures (see docs/performance.md).
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
echo "== large file: sign and verify vs openssl dgst =="
bash "$ROOT/bench/large_file.sh" "$BUILD" "${BENCH_SIZE_MIB:-1024}"
echo
echo "== many small signatures: library verify vs bare CMS_verify =="
"$ROOT/$BUILD/bench/bench_verify_many" "${BENCH_FILES:-10000}"
echo
echo "== policy loading and decisions =="
"$ROOT/$BUILD/bench/bench_policy"
echo; echo "== archive audit vs bare CMS_verify, 100k entries, incremental =="; "$ROOT/$BUILD/bench/bench_audit" --entries "${BENCH_AUDIT_ENTRIES:-100000}"
echo
echo "== archive: durable appends (16 appenders, sequential, git loop), disk =="
"$ROOT/$BUILD/bench/bench_archive" --dir "${TMPDIR:-/tmp}/sealpost-bench-archive" \
  --entries "${BENCH_ARCHIVE_ENTRIES:-2000}" --git-loop "${BENCH_GIT_LOOP:-20}" \
  --prefill "${BENCH_ARCHIVE_PREFILL:-10000}"
if [ -x "$ROOT/$BUILD/bench/bench_upload" ]; then
  echo
  echo "== daemon: RSS growth of sealpostd while a 100 MiB upload is sealed and archived =="
  "$ROOT/$BUILD/bench/bench_upload" --mib "${BENCH_UPLOAD_MIB:-100}"
fi
if [ -x "$ROOT/$BUILD/bench/bench_daemon" ]; then
  echo
  echo "== daemon: 4 KiB submissions over keep-alive, 16 clients; fan-out to ${BENCH_RECIPIENTS:-128} appliances =="
  "$ROOT/$BUILD/bench/bench_daemon" --clients 16 --seconds "${BENCH_DAEMON_SECONDS:-10}" \
    --recipients "${BENCH_RECIPIENTS:-128}"
fi
