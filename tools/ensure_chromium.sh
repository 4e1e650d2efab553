#!/usr/bin/env bash
# Make sure a headless Chromium exists for the book's browser check (Debian/Ubuntu).
set -euo pipefail
for c in "${CRAL_CHROMIUM:-}" chromium chromium-browser google-chrome google-chrome-stable; do
  if [ -n "$c" ] && command -v "$c" >/dev/null 2>&1; then
    echo "chromium: $(command -v "$c")"; exit 0
  fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "Chromium is missing and apt-get is not available: install Chromium and set CRAL_CHROMIUM to its path." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "Chromium is missing: run 'apt-get install -y chromium' as root, or set CRAL_CHROMIUM." >&2; exit 1
  fi
fi
echo "installing Chromium with apt-get (for the browser check)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
command -v chromium
