#!/usr/bin/env bash
# Make sure a headless Chromium exists for the book's browser check (make test, make book-check).
# Looks for one on the PATH (or $CRAL_CHROMIUM); otherwise installs Debian's/Ubuntu's `chromium`
# package with apt-get: as root directly, else through sudo. Exits non-zero with one line saying
# what to do when it cannot.
set -uo pipefail

# the same names as CHROMIUM_NAMES in tools/book.py
for c in "${CRAL_CHROMIUM:-}" chromium chromium-browser google-chrome google-chrome-stable; do
  if [ -n "$c" ] && command -v "$c" >/dev/null 2>&1; then
    echo "chromium: $(command -v "$c")"; exit 0
  fi
done

fail() {
  echo "Chromium is missing and could not be installed: $1." >&2
  echo "Install Chromium yourself (Debian/Ubuntu: apt-get install chromium) or set CRAL_CHROMIUM to its path." >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "apt-get is not available on this machine"
SUDO=()
if [ "$(id -u)" != "0" ]; then
  command -v sudo >/dev/null 2>&1 || fail "not root, and sudo is not installed"
  # without a terminal, sudo must not wait for a password that nobody can type
  if [ -t 0 ]; then SUDO=(sudo); else SUDO=(sudo -n); fi
fi

echo "installing Chromium with apt-get (for the browser check; about a minute)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"${SUDO[@]}" apt-get update -qq >"$log" 2>&1 || { tail -5 "$log" >&2; fail "apt-get update failed"; }
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >"$log" 2>&1 \
  || { tail -5 "$log" >&2; fail "apt-get install chromium failed"; }
command -v chromium >/dev/null 2>&1 || fail "apt-get installed the package but no chromium is on the PATH"
echo "chromium: $(command -v chromium) ($(chromium --version 2>/dev/null | head -1))"
