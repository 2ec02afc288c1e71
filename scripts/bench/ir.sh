#!/usr/bin/env bash
# Server user-space instructions per durable admission, under cachegrind.
#
# A count of instructions does not depend on what else the shared machine is
# doing, so it shows changes of 1-2 % on the request path that req/s cannot.
# For each BIN: the server under `valgrind --tool=cachegrind --cache-sim=no`
# with a fresh data dir, one sale with stock for every request, `wrk -t1
# -c32 -d6s -s loadtest/wrk/purchase.lua`, then SIGTERM (cachegrind writes
# its counts at exit); total Ir divided by flashsale_admissions_total from
# /metrics. Start-up and shutdown are included (< 1 % of the total).
# Counts drift by 1-2 % between sessions (start-up, map growth), so compare
# only binaries measured in one invocation; give them in turn (A B A B) to
# see the run-to-run spread.
#
# Usage: scripts/bench/ir.sh BIN [BIN...]
# Env:   FSYNC=never (or always, interval)  DURATION=6  CONNECTIONS=32
#        KEEP_DIR=dir: keep each run's cachegrind.out there (N.cachegrind.out,
#        N counting from 1), for cg_annotate or cg_diff
# Output: one line per BIN: `BIN instructions_per_admission admissions`
# Needs: valgrind wrk curl (apt-get install -y valgrind wrk curl)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/scripts/bench/lib.sh"

FSYNC=${FSYNC:-never}
DURATION=${DURATION:-6}
CONNECTIONS=${CONNECTIONS:-32}

[[ $# -ge 1 ]] || { echo "usage: $0 BIN [BIN...]" >&2; exit 2; }
need valgrind valgrind
bench_init

for bin in "$@"; do
  [[ -x "$bin" ]] || { echo "not an executable: $bin" >&2; exit 2; }
  new_server_dir
  start_server "$(realpath "$bin")" "$FSYNC" \
    valgrind --tool=cachegrind --cache-sim=no \
    --cachegrind-out-file="$SERVER_DIR/cachegrind.out" --log-file="$SERVER_DIR/valgrind.log"
  create_sale ir
  run_wrk "$SERVER_DIR/wrk.out" 1 "$CONNECTIONS" "$DURATION" -s "$PURCHASE_LUA" "http://$ADDR" -- ir
  admitted=$(admissions)
  stop_server 120
  ir=$(awk '/^summary:/ { print $2 }' "$SERVER_DIR/cachegrind.out")
  if [[ -n "${KEEP_DIR:-}" ]]; then
    run=$((${run:-0} + 1))
    mkdir -p "$KEEP_DIR" && cp "$SERVER_DIR/cachegrind.out" "$KEEP_DIR/$run.cachegrind.out"
  fi
  [[ -n "$ir" && "${admitted:-0}" -gt 0 ]] || { echo "no count for $bin (Ir '$ir', admissions '$admitted')" >&2; exit 1; }
  awk -v b="$bin" -v ir="$ir" -v n="$admitted" 'BEGIN { printf "%s %.0f %d\n", b, ir / n, n }'
done
