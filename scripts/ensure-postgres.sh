#!/usr/bin/env bash
# Make sure a PostgreSQL server is installed for the tests, which start a throwaway cluster
# from its binaries (tests/postgres.py). Installs the Debian package when it can (as root,
# with apt-get); otherwise says why the PostgreSQL tests will be skipped (under CI they fail
# instead). Never prompts, and exits 0 either way: the tests decide what a missing server means.
set -euo pipefail

say() { echo "ensure-postgres: $*"; }
skip() {
    say "$1: the PostgreSQL tests will be skipped (or fail under CI)"
    exit 0
}
usable() { [[ -x "$1/initdb" && -x "$1/pg_ctl" ]]; }

if [[ -n "${ASSAY_TEST_POSTGRES_URL:-}" ]]; then
    exit 0  # the tests use that server
fi
if [[ -n "${ASSAY_TEST_PG_BIN:-}" ]]; then
    usable "$ASSAY_TEST_PG_BIN" && exit 0
    skip "no initdb and pg_ctl in ASSAY_TEST_PG_BIN=$ASSAY_TEST_PG_BIN"
fi
for dir in /usr/lib/postgresql/*/bin; do
    if usable "$dir"; then exit 0; fi
done
if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    exit 0
fi

[[ "$(id -u)" -eq 0 ]] || skip "no PostgreSQL server found, and not root to install one"
command -v apt-get >/dev/null 2>&1 || skip "no PostgreSQL server found, and no apt-get to install one"

export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
apt_get() {
    # Wait a while for another apt (unattended upgrades on a fresh machine) rather than fail.
    apt-get -q -y -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold "$@" </dev/null >>"$log" 2>&1
}
say "installing the postgresql package for the tests (apt-get)"
if ! apt_get install --no-install-recommends postgresql; then
    # A fresh machine may have no package lists yet.
    if ! { apt_get update && apt_get install --no-install-recommends postgresql; }; then
        tail -n 20 "$log" >&2
        skip "apt-get could not install postgresql (output above)"
    fi
fi
for dir in /usr/lib/postgresql/*/bin; do
    if usable "$dir"; then
        say "installed $("$dir/pg_ctl" --version)"
        exit 0
    fi
done
skip "the postgresql package is installed but no initdb and pg_ctl were found"
