#!/usr/bin/env bash
# systemd/: the units verify cleanly and are hardened enough, and the
# sysusers.d / tmpfiles.d entries create what the units expect.
#
#   systemd-analyze verify --man=no            -> no output, status 0
#   systemd-analyze security --offline=true    -> sealpostd.service <= 1.5,
#                                                 sealpost-signer.service <= 1.0
#
# No systemd runs here (a container): both commands read unit files only.
# verify needs the ExecStart= binaries, so everything is laid out in a scratch
# root (the units at /lib/systemd/system next to a copy of the host's units,
# which verify needs for sysinit.target and the like; the built binaries at
# their installed paths) and the commands get --root=. With SEALPOST_ROOT_TREE
# set (tests/cli/package_deb.sh) that tree is the dpkg -x of the package.
set -euo pipefail

SRC=${SEALPOST_SOURCE_DIR:?SEALPOST_SOURCE_DIR not set}
DAEMON_LIMIT=1.5
SIGNER_LIMIT=1.0

fail() { echo "FAIL: $*" >&2; exit 1; }
command -v systemd-analyze >/dev/null || fail "systemd-analyze not installed (scripts/install-deps.sh: systemd)"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

if [ -n "${SEALPOST_ROOT_TREE:-}" ]; then
  root=$SEALPOST_ROOT_TREE
else
  root=$scratch/root
  : "${SEALPOSTD:?SEALPOSTD (the built sealpostd) not set}"
  : "${SEALPOST_SIGNER:?SEALPOST_SIGNER (the built sealpost-signer) not set}"
  mkdir -p "$root/lib/systemd/system" "$root/usr/sbin" "$root/usr/libexec/sealpost" \
           "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d"
  install -m 0755 "$SEALPOSTD" "$root/usr/sbin/sealpostd"
  install -m 0755 "$SEALPOST_SIGNER" "$root/usr/libexec/sealpost/sealpost-signer"
  install -m 0644 "$SRC"/systemd/*.service "$root/lib/systemd/system/"
  install -m 0644 "$SRC/systemd/sysusers.d/sealpost.conf" "$root/usr/lib/sysusers.d/"
  install -m 0644 "$SRC/systemd/tmpfiles.d/sealpost.conf" "$root/usr/lib/tmpfiles.d/"
fi
# The host's units (targets, pcscd.socket if installed) beside ours.
cp -rn /lib/systemd/system/. "$root/lib/systemd/system/" 2>/dev/null || true

# Both ExecStart= binaries at the paths the units name.
for unit in sealpostd sealpost-signer; do
  exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$root/lib/systemd/system/$unit.service")
  [ -x "$root$exe" ] || fail "$unit.service: ExecStart=$exe is not in the tree"
done

echo "== systemd-analyze verify"
out=$(systemd-analyze verify --man=no --root="$root" sealpostd.service sealpost-signer.service 2>&1) ||
  fail "systemd-analyze verify failed: $out"
[ -z "$out" ] || fail "systemd-analyze verify reports: $out"

# "→ Overall exposure level for sealpostd.service: 1.1 OK 🙂" -> 1.1
exposure() {
  local out
  out=$(systemd-analyze security --offline=true --root="$root" "$1" 2>&1) ||
    { echo "systemd-analyze security $1 failed: $out" >&2; return 1; }
  printf '%s\n' "$out" | sed -n "s/.*Overall exposure level for $1: \([0-9][0-9.]*\).*/\1/p"
}
check() {  # unit limit
  local got
  got=$(exposure "$1") || exit 1
  [ -n "$got" ] || fail "no exposure level found for $1"
  echo "$1: exposure $got (limit $2)"
  awk -v g="$got" -v l="$2" 'BEGIN { exit !(g <= l) }' || fail "$1: exposure $got above $2"
}
echo "== systemd-analyze security --offline=true"
check sealpostd.service "$DAEMON_LIMIT"
check sealpost-signer.service "$SIGNER_LIMIT"

# The check above must be able to fail: the daemon's unit without its
# [Service] hardening scores far above the limit.
sed '/^# The token is the signer/,/^SystemCallErrorNumber/d' \
  "$root/lib/systemd/system/sealpostd.service" >"$root/lib/systemd/system/sealpost-unhardened.service"
weak=$(exposure sealpost-unhardened.service)
rm -f "$root/lib/systemd/system/sealpost-unhardened.service"
awk -v g="$weak" -v l="$DAEMON_LIMIT" 'BEGIN { exit !(g > l) }' ||
  fail "the unhardened unit scored '$weak': the exposure check cannot tell"

# What the units rely on: the two users, the socket's group, the directories.
grep -q '^Group=sealpost$' "$root/lib/systemd/system/sealpost-signer.service" ||
  fail "sealpost-signer.service: the socket's group must be sealpost"
grep -q '^InaccessiblePaths=-/run/pcscd$' "$root/lib/systemd/system/sealpostd.service" ||
  fail "sealpostd.service must hide /run/pcscd"
grep -q '^PrivateNetwork=yes$' "$root/lib/systemd/system/sealpost-signer.service" ||
  fail "sealpost-signer.service must have no network"
grep -q '^LoadCredentialEncrypted=sealpost-token-pin:' "$root/lib/systemd/system/sealpost-signer.service" ||
  fail "sealpost-signer.service must load the PIN credential sealpost-token-pin"

echo "== sysusers.d and tmpfiles.d in a scratch root"
ur=$scratch/users
mkdir -p "$ur/etc" "$ur/usr/lib/sysusers.d" "$ur/usr/lib/tmpfiles.d"
touch "$ur/etc/passwd" "$ur/etc/group" "$ur/etc/shadow" "$ur/etc/gshadow"
cp "$root/usr/lib/sysusers.d/sealpost.conf" "$ur/usr/lib/sysusers.d/"
cp "$root/usr/lib/tmpfiles.d/sealpost.conf" "$ur/usr/lib/tmpfiles.d/"
systemd-sysusers --root="$ur" sealpost.conf >/dev/null 2>&1 || fail "systemd-sysusers failed"
uid() { awk -F: -v n="$1" '$1 == n { print $3 }' "$ur/etc/passwd"; }
gid() { awk -F: -v n="$1" '$1 == n { print $3 }' "$ur/etc/group"; }
d_uid=$(uid sealpost); s_uid=$(uid sealpost-signer); d_gid=$(gid sealpost)
[ -n "$d_uid" ] && [ -n "$s_uid" ] && [ -n "$d_gid" ] || fail "sysusers did not create sealpost and sealpost-signer"
out=$(systemd-tmpfiles --root="$ur" --create sealpost.conf 2>&1) || fail "systemd-tmpfiles: $out"
expect() {  # path mode uid gid
  local got
  got=$(stat -c '%a %u %g' "$ur$1") || fail "$1 not created"
  [ "$got" = "$2 $3 $4" ] || fail "$1: mode/owner '$got', want '$2 $3 $4'"
}
expect /etc/sealpost 750 0 "$d_gid"
expect /var/lib/sealpost 750 "$d_uid" "$d_gid"
expect /var/lib/sealpost-signer 700 "$s_uid" "$d_gid"
expect /run/sealpost 750 "$s_uid" "$d_gid"
echo "systemd units: OK"
