#!/usr/bin/env bash
# The whole test suite: every crate's tests (the stress and kill -9 crash
# suites included: together they take well under a minute; their sizes can be
# changed with FLASHSALE_STRESS_ATTEMPTS and FLASHSALE_CRASH_CYCLES), then the
# loom models of the engine's stock gate, which need their own build with
# `--cfg loom` (kept in a separate target directory so the two builds don't
# evict each other).
set -euo pipefail
cd "$(dirname "$0")/.."

# The export's tests (gateway/tests/export_pg.rs) start a throwaway
# PostgreSQL cluster with Debian's initdb and pg_ctl. Install the package
# when they are missing (as root, or through sudo); without it those tests
# print a loud SKIP, and under CI=true they fail instead.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "== installing postgresql (for the export tests)"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    if command -v apt-get >/dev/null; then
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
        echo "no apt-get: install PostgreSQL (initdb, pg_ctl) yourself" >&2
    fi
fi

# The dashboard's browser test (gateway/tests/dashboard_browser.rs) drives
# Debian's headless chromium through chromedriver; without them it prints a
# loud SKIP, and under CI=true it fails instead.
if ! { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }; then
    echo "== installing chromium and chromium-driver (for the dashboard's browser test)"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    if command -v apt-get >/dev/null; then
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "no apt-get: install chromium and chromedriver yourself" >&2
    fi
fi

cargo test --workspace --locked

target="${CARGO_TARGET_DIR:-target}"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$target/loom" \
    cargo test -p engine --test loom --release --locked
