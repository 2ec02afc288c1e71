#!/usr/bin/env bash
# Runs the comparison described in loadtest/BENCHMARKS-loadtest.md, in
# alternating rounds because this 2-core machine is shared and noisy:
#   (a) flashsale purchase endpoint under wrk + wrk/purchase.lua (needs the binary)
#   (b) nginx returning a fixed JSON body, under wrk
#   (c) Redis + Lua stock deduction (bench/redis_stock.lua) under redis-benchmark EVALSHA
#   (d) flashsale-loadtest's own ceiling: against nginx, and against its in-process trivial server
#   (e) flashsale under flashsale-loadtest's full verified scenario (needs the binary)
#
# Usage: loadtest/bench/compare.sh [PATH/TO/flashsale]
# Env:   DURATION=10 (s per wrk run)  CONNECTIONS=256  ROUNDS=2
#        REDIS_REQUESTS=2000000  FLASHSALE_PORT=8080  FSYNC=always
#        LOADTEST_BIN (default: built with cargo)
# Only 127.0.0.1 is ever targeted; every server started here is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# wait_http (and the other bench helpers; those this script defines below
# take precedence).
. "$ROOT/scripts/bench/lib.sh"
FLASHSALE_BIN=${1:-${FLASHSALE_BIN:-}}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-256}
ROUNDS=${ROUNDS:-2}
REDIS_REQUESTS=${REDIS_REQUESTS:-2000000}
FLASHSALE_PORT=${FLASHSALE_PORT:-8080}
FSYNC=${FSYNC:-always}
TOKEN=bench-token

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx || ! need redis-server || ! need redis-benchmark || ! need curl; then
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk nginx-light redis-server curl
fi

if [[ -z "${LOADTEST_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release -p loadtest --bin flashsale-loadtest)
  LOADTEST_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/flashsale-loadtest"
  [[ "$LOADTEST_BIN" = /* ]] || LOADTEST_BIN="$ROOT/$LOADTEST_BIN"
fi

TMP=$(mktemp -d /tmp/flashsale-compare.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(uname -r); $(date -u +%FT%TZ); load: $(cut -d' ' -f1-3 /proc/loadavg)"
# CPU time of each client, so its cost per request can be compared even when
# the shared machine is too noisy for req/s alone to mean much.
TIMEFORMAT='   client cpu: user %U s + sys %S s over %R s wall' 

# (b) nginx
mkdir -p "$TMP/nginx"
nginx -p "$TMP/nginx" -c "$ROOT/loadtest/bench/nginx.conf" 2>"$TMP/nginx.log" &
PIDS+=($!)
wait_http http://127.0.0.1:8081/ 10

# (c) redis, no persistence (its default benchmark setting)
redis-server --bind 127.0.0.1 --port 6380 --save '' --appendonly no --daemonize no >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do redis-cli -p 6380 ping >/dev/null 2>&1 && break; sleep 0.1; done
SHA=$(redis-cli -p 6380 SCRIPT LOAD "$(cat "$ROOT/loadtest/bench/redis_stock.lua")")

# (a) flashsale
if [[ -n "$FLASHSALE_BIN" ]]; then
  mkdir -p "$TMP/wal"
  # Only what this comparison sets on purpose; every other key is the
  # binary's own default (no copies here to drift). Listen address, WAL dir
  # and token go in the environment below, which wins over the file.
  cat >"$TMP/flashsale.toml" <<TOML
[rate_limit]
# Off: the comparison measures the server, not its limiter.
global_rps = 0
per_client_rps = 0
[wal]
fsync = "$FSYNC"
TOML
  FLASHSALE_SERVER_LISTEN=127.0.0.1:$FLASHSALE_PORT FLASHSALE_WAL_DIR=$TMP/wal \
    FLASHSALE_SERVER_ADMIN_TOKEN=$TOKEN "$FLASHSALE_BIN" serve --config "$TMP/flashsale.toml" >"$TMP/flashsale.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$FLASHSALE_PORT/readyz" 30
else
  echo "(no flashsale binary given: skipping (a) and (e))"
fi

for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "-- (b) nginx fixed body, wrk -t2 -c$CONNECTIONS -d${DURATION}s"
  time wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency http://127.0.0.1:8081/ | tee -a "$TMP/out" | grep -E "Requests/sec|requests in|Latency  |99%"

  echo "-- (c) redis EVALSHA stock deduction, redis-benchmark -c$CONNECTIONS --threads 2 -n$REDIS_REQUESTS"
  redis-cli -p 6380 SET stock 1000000000000 >/dev/null
  redis-cli -p 6380 DEL buyers >/dev/null
  # -r must fit a C int (redis-benchmark truncates larger values); 1e9 ids
  # over 2M requests collide ~0.1% of the time, which then hit the limit path.
  # --threads 2 like wrk -t2: a single-threaded redis-benchmark was the
  # bottleneck here (plain SET/GET topped out at the same ~19k req/s).
  redis-benchmark -h 127.0.0.1 -p 6380 -c "$CONNECTIONS" --threads 2 -n "$REDIS_REQUESTS" -r 1000000000 -q \
    EVALSHA "$SHA" 2 stock buyers __rand_int__ 1 2>&1 | tr '\r' '\n' | grep "requests per second"
  echo "   admitted (SCARD buyers): $(redis-cli -p 6380 SCARD buyers), stock left: $(redis-cli -p 6380 GET stock)"

  if [[ -n "$FLASHSALE_BIN" ]]; then
    SKU="bench-r$round-$$"
    curl -fs -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
      -d "{\"sku\":\"$SKU\",\"stock\":1000000000000,\"per_user_limit\":1}" \
      "http://127.0.0.1:$FLASHSALE_PORT/v1/admin/sales" >/dev/null
    echo "-- (a) flashsale purchase, wrk -t2 -c$CONNECTIONS -d${DURATION}s -s purchase.lua (sku $SKU)"
    time wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$ROOT/loadtest/wrk/purchase.lua" \
      "http://127.0.0.1:$FLASHSALE_PORT" -- "$SKU" | tee -a "$TMP/out" | grep -E "Requests/sec|Latency  |99%|Non-2xx"
  fi

  echo "-- (d) generator ceiling vs nginx, flashsale-loadtest --ceiling -c$CONNECTIONS"
  time "$LOADTEST_BIN" --quiet --ceiling --ceiling-target http://127.0.0.1:8081 -c "$CONNECTIONS" \
    --ceiling-secs "$DURATION" | grep -E "total|  all"
  echo "-- (d) generator ceiling vs in-process trivial server, -c64"
  time "$LOADTEST_BIN" --quiet --ceiling -c 64 --ceiling-secs "$DURATION" | grep -E "total|  all"

  if [[ -n "$FLASHSALE_BIN" ]]; then
    echo "-- (e) flashsale, full verified scenario (100k users, 5k stock), -c$CONNECTIONS"
    "$LOADTEST_BIN" --quiet --target "http://127.0.0.1:$FLASHSALE_PORT" --admin-token "$TOKEN" \
      -c "$CONNECTIONS" | grep -E "phase|total|  all|purchase  |PASS|FAIL"
  fi
done
