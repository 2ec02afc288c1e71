#!/usr/bin/env bash
# The whole test suite: every crate's tests (the stress and kill -9 crash
# suites included: together they take well under a minute; their sizes can be
# changed with FLASHSALE_STRESS_ATTEMPTS and FLASHSALE_CRASH_CYCLES), then the
# loom models of the engine's stock gate, which need their own build with
# `--cfg loom` (kept in a separate target directory so the two builds don't
# evict each other).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked

target="${CARGO_TARGET_DIR:-target}"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$target/loom" \
    cargo test -p engine --test loom --release --locked
