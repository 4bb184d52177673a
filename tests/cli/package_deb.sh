#!/usr/bin/env bash
# The Debian package: `cpack -G DEB` in the build tree (output to a scratch
# directory), unpacked with `dpkg-deb -x` into a throwaway root; the files
# the operator guide relies on are there, the man pages render without a
# warning, the control data has dependencies from dpkg-shlibdeps and the
# conffiles, the packaged `sealpost --version` runs, and the packaged units
# pass tests/cli/systemd_units.sh (verify + security) against the packaged
# binaries.
set -euo pipefail

SRC=${SEALPOST_SOURCE_DIR:?SEALPOST_SOURCE_DIR not set}
BUILD=${SEALPOST_BUILD_DIR:?SEALPOST_BUILD_DIR not set}
fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in cpack dpkg-deb dpkg-shlibdeps man; do
  command -v "$tool" >/dev/null || fail "$tool not installed (scripts/install-deps.sh)"
done

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# The man pages are generated (gzip) by the build; everything else installed
# was built before ctest ran (install does not rebuild: see CMakeLists.txt).
cmake --build "$BUILD" --target sealpost_man >/dev/null
echo "== cpack -G DEB"
(cd "$BUILD" && cpack -G DEB -B "$scratch/pkg" >"$scratch/cpack.log" 2>&1) ||
  { cat "$scratch/cpack.log" >&2; fail "cpack failed"; }
deb=$(ls "$scratch"/pkg/sealpost_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || { cat "$scratch/cpack.log" >&2; fail "no sealpost_*.deb produced"; }
echo "$(basename "$deb"): $(stat -c %s "$deb") bytes"

root=$scratch/root
dpkg-deb -x "$deb" "$root"
for f in usr/bin/sealpost usr/sbin/sealpostd usr/libexec/sealpost/sealpost-signer \
         lib/systemd/system/sealpostd.service lib/systemd/system/sealpost-signer.service \
         usr/lib/sysusers.d/sealpost.conf usr/lib/tmpfiles.d/sealpost.conf \
         etc/sealpost/sealpostd.yaml etc/sealpost/signer.env \
         usr/share/man/man1/sealpost.1.gz usr/share/man/man8/sealpostd.8.gz \
         usr/share/doc/sealpost/copyright usr/share/doc/sealpost/operator-guide.md; do
  [ -f "$root/$f" ] || fail "/$f is not in the package"
done
[ -d "$root/var/lib/sealpost" ] || fail "/var/lib/sealpost is not in the package"
for exe in usr/bin/sealpost usr/sbin/sealpostd usr/libexec/sealpost/sealpost-signer; do
  [ -x "$root/$exe" ] || fail "/$exe is not executable"
done
# The default configuration is the commented example.
cmp -s "$root/etc/sealpost/sealpostd.yaml" "$SRC/examples/sealpostd.yaml" ||
  fail "/etc/sealpost/sealpostd.yaml is not examples/sealpostd.yaml"

echo "== control data"
dpkg-deb -e "$deb" "$scratch/control"
sed 's/^/    /' "$scratch/control/control"
depends=$(sed -n 's/^Depends: //p' "$scratch/control/control")
for lib in libssl3 libgit2 libsqlite3 libp11 libsystemd0 libpoco; do
  grep -q "$lib" <<<"$depends" || fail "Depends lacks $lib (dpkg-shlibdeps): $depends"
done
grep -qx '/etc/sealpost/sealpostd.yaml' "$scratch/control/conffiles" || fail "sealpostd.yaml is not a conffile"
grep -qx '/etc/sealpost/signer.env' "$scratch/control/conffiles" || fail "signer.env is not a conffile"
for script in postinst prerm postrm; do
  [ -x "$scratch/control/$script" ] || fail "$script missing or not executable"
  sh -n "$scratch/control/$script" || fail "$script: syntax"
done

echo "== man pages"
for page in usr/share/man/man1/sealpost.1.gz usr/share/man/man8/sealpostd.8.gz; do
  warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$root/$page" 2>&1 >"$scratch/page.txt") ||
    fail "man -l $page failed: $warnings"
  [ -z "$warnings" ] || fail "man -l $page warns: $warnings"
  grep -q '^NAME' "$scratch/page.txt" || fail "$page renders no NAME section"
done

echo "== the packaged binaries run"
version=$("$root/usr/bin/sealpost" --version) || fail "packaged sealpost --version failed"
[ "$version" = "sealpost $(sed -n 's/^Version: //p' "$scratch/control/control")" ] ||
  fail "sealpost --version says '$version', the package is $(sed -n 's/^Version: //p' "$scratch/control/control")"
echo "    $version"
"$root/usr/libexec/sealpost/sealpost-signer" --help >/dev/null || fail "packaged sealpost-signer --help failed"
rc=0; "$root/usr/sbin/sealpostd" >/dev/null 2>&1 || rc=$?
[ "$rc" = 64 ] || fail "packaged sealpostd without arguments exited $rc, not 64 (usage)"

echo "== the packaged units (tests/cli/systemd_units.sh on this tree)"
SEALPOST_ROOT_TREE=$root bash "$SRC/tests/cli/systemd_units.sh"
echo "package: OK"
