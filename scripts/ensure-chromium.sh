#!/usr/bin/env bash
# Make sure Debian's Chromium is installed: the web UI's tests (tests/ui/browser) drive it
# headless through Playwright, launched from /usr/bin/chromium (no browser download; we never
# run `playwright install`). Installs the Debian package when it can (apt-get, as root or with
# sudo); otherwise says why the browser tests will be skipped (under CI they fail instead).
# Never prompts, and exits 0 either way: the tests decide what a missing browser means.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

say() { echo "ensure-chromium: $*"; }
skip() {
    say "$1: the browser tests will be skipped (or fail under CI)"
    exit 0
}

[[ -x "$CHROMIUM" ]] && exit 0
if [[ "$(id -u)" -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    as_root=(sudo -n)
else
    skip "$CHROMIUM is not installed, and not root (nor sudo without a password) to install it"
fi
command -v apt-get >/dev/null 2>&1 || skip "$CHROMIUM is not installed, and no apt-get to install it"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
apt_get() {
    # Wait a while for another apt (unattended upgrades on a fresh machine) rather than fail.
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y \
        -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold "$@" </dev/null >>"$log" 2>&1
}
say "installing the chromium package for the browser tests (apt-get)"
if ! apt_get install --no-install-recommends chromium; then
    # A fresh machine may have no package lists yet.
    if ! { apt_get update && apt_get install --no-install-recommends chromium; }; then
        tail -n 20 "$log" >&2
        skip "apt-get could not install chromium (output above)"
    fi
fi
[[ -x "$CHROMIUM" ]] || skip "the chromium package is installed but $CHROMIUM is not there"
say "installed $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
