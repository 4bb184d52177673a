#!/usr/bin/env bash
# Builds every libFuzzer target (tests/fuzz/<name>_fuzz.cc) with clang and runs
# each briefly on its seed corpus: tests/fuzz/seeds/<name>_fuzz/ when present;
# the policy loader also gets examples/federation/*.yaml and
# tests/policy_corpus/*.yaml.
#   tests/fuzz/run.sh BUILD_DIR SECONDS   (SECONDS per target)
# Exits 0 when the run found nothing (or when no usable clang is installed:
# it then says so and skips), non-zero on a finding (the crashing input is
# left in BUILD_DIR/fuzz-artifacts/).
#
# Toolchain note: libstdc++ 12's <expected> needs __cpp_concepts >= 202002L
# and conditionally trivial special members (P0848). clang 14 has neither, so
# it cannot compile this project; clang 16 implements P0848 but still reports
# 201907L, so the macro is raised by hand for it (-D__cpp_concepts=202002L).
set -euo pipefail
BUILD=${1:?usage: run.sh BUILD_DIR SECONDS}
SECONDS_TO_RUN=${2:-30}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

CC_BIN=""
CXX_BIN=""
for v in 19 18 17 16; do
  if command -v "clang++-$v" >/dev/null 2>&1 && command -v "clang-$v" >/dev/null 2>&1; then
    CC_BIN="clang-$v"; CXX_BIN="clang++-$v"; break
  fi
done
if [ -z "$CXX_BIN" ] && command -v clang++ >/dev/null 2>&1; then CC_BIN=clang; CXX_BIN=clang++; fi
if [ -z "$CXX_BIN" ]; then
  echo "fuzz: skipped: no clang installed (scripts/install-deps.sh installs clang-16)"
  exit 0
fi

COMPAT="-D__cpp_concepts=202002L -Wno-macro-redefined -Wno-builtin-macro-redefined"
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <expected>\n#include <string>\nstd::expected<int, std::string> f() { return 1; }\nint main() { return f().value() - 1; }\n' >"$probe/p.cc"
if ! "$CXX_BIN" -std=c++2b $COMPAT -fsanitize=fuzzer-no-link,address "$probe/p.cc" -o "$probe/p" 2>"$probe/err"; then
  echo "fuzz: skipped: $CXX_BIN cannot compile std::expected with this libstdc++ (needs clang >= 16):"
  head -3 "$probe/err"
  exit 0
fi

FLAGS="-fsanitize=fuzzer-no-link,address -fno-omit-frame-pointer -g"
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSEALPOST_FUZZ=ON \
  -DCMAKE_C_COMPILER="$CC_BIN" -DCMAKE_CXX_COMPILER="$CXX_BIN" \
  -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_CXX_FLAGS="$FLAGS $COMPAT" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address" >"$BUILD/fuzz-configure.log" 2>&1 \
  || { cat "$BUILD/fuzz-configure.log"; exit 1; }
TARGETS=()
for src in "$ROOT"/tests/fuzz/*_fuzz.cc; do TARGETS+=("$(basename "$src" .cc)"); done
cmake --build "$BUILD" --target "${TARGETS[@]}" -j2 >"$BUILD/fuzz-build.log" 2>&1 \
  || { tail -40 "$BUILD/fuzz-build.log"; exit 1; }

for target in "${TARGETS[@]}"; do
  SEEDS="$BUILD/fuzz-seeds/$target"
  CORPUS="$BUILD/fuzz-corpus/$target"
  ARTIFACTS="$BUILD/fuzz-artifacts/$target"
  rm -rf "$SEEDS"
  mkdir -p "$SEEDS" "$CORPUS" "$ARTIFACTS"
  if [ -d "$ROOT/tests/fuzz/seeds/$target" ]; then
    cp -r "$ROOT/tests/fuzz/seeds/$target/." "$SEEDS"/
  fi
  if [ "$target" = policy_loader_fuzz ]; then
    cp "$ROOT"/examples/federation/*.yaml "$ROOT"/tests/policy_corpus/*.yaml "$SEEDS"/
    # One seed with the registry and the rules in two "files" (see the target).
    { cat "$ROOT"/examples/federation/federation.yaml; printf '\n#8<\n'; cat "$ROOT"/examples/federation/document_types.yaml; } >"$SEEDS/split.yaml"
  fi
  ASAN_OPTIONS=detect_leaks=1 "$BUILD/tests/fuzz/$target" \
    -max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 -max_len=262144 \
    -artifact_prefix="$ARTIFACTS/" -print_final_stats=1 "$CORPUS" "$SEEDS"
  echo "fuzz: $target ran ${SECONDS_TO_RUN}s with no finding"
done
