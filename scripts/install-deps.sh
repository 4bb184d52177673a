#!/usr/bin/env bash
# Installs every Debian 12 package that the build, the tests and the demo use.
# Idempotent: does nothing (and needs no root) when everything is present.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake make pkg-config git ca-certificates
  # libraries
  libssl-dev libp11-dev libgtest-dev libgmock-dev libgit2-dev libsqlite3-dev sqlite3
  # tokens: SoftHSM2 (test token), OpenSC (pkcs11-tool, the opensc module), p11-kit
  softhsm2 opensc opensc-pkcs11 p11-kit libp11-kit-dev
  # peers that check what we produce
  openssl gpgsm gnutls-bin
  # policies/: libyaml's event parser; the policy fuzzer needs clang >= 16
  # (clang 14 cannot compile libstdc++ 12's <expected>; tests/fuzz/run.sh)
  libyaml-dev clang-16 libclang-rt-16-dev
  # client/ and daemon/: PoCo 1.11 (its CMake config also wants zlib, PCRE and
  # expat headers), sd_notify from libsystemd, zlib for bundles
  libpoco-dev zlib1g-dev libpcre3-dev libexpat1-dev libsystemd-dev
  # HTTP client used by tests and the demo
  curl
  # the SMTP server the e-mail tests send to (tests/support/smtp_sink.py)
  python3-aiosmtpd
  # the demo: JSON answers, bundles (zip), free ports
  jq unzip python3
  # systemd/: systemd-analyze verify|security, systemd-sysusers, systemd-tmpfiles
  # (tests/cli/systemd_units.sh; no running systemd needed)
  systemd
  # the Debian package (cpack -G DEB: dpkg-shlibdeps) and its man pages
  # (tests/cli/package_deb.sh renders them with man -l)
  dpkg-dev man-db
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: missing packages (${missing[*]}) and not root; run: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
