#!/usr/bin/env bash
# Make sure bubblewrap (bwrap) is installed: a multi-user `assay serve` runs every account's
# code in its sandbox (docs/design/security.md), and the tests run such a server. Installs the
# Debian package when it can (as root, with apt-get); otherwise says why the sandbox tests will
# be skipped (under CI they fail instead). Never prompts, and exits 0 either way.
set -euo pipefail

say() { echo "ensure-bwrap: $*"; }
skip() {
    say "$1: the sandbox tests will be skipped (or fail under CI)"
    exit 0
}

command -v bwrap >/dev/null 2>&1 && exit 0
[[ "$(id -u)" -eq 0 ]] || skip "bwrap is not installed, and not root to install it"
command -v apt-get >/dev/null 2>&1 || skip "bwrap is not installed, and no apt-get to install it"

export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
apt_get() {
    apt-get -q -y -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold "$@" </dev/null >>"$log" 2>&1
}
say "installing the bubblewrap package (apt-get)"
if ! apt_get install --no-install-recommends bubblewrap; then
    if ! { apt_get update && apt_get install --no-install-recommends bubblewrap; }; then
        tail -n 20 "$log" >&2
        skip "apt-get could not install bubblewrap (output above)"
    fi
fi
command -v bwrap >/dev/null 2>&1 || skip "the bubblewrap package is installed but bwrap is not on PATH"
say "installed $(bwrap --version)"
