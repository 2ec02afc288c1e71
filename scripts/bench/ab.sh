#!/usr/bin/env bash
# Durable admissions per second, two builds alternated round by round.
#
# The machine these figures come from is shared and noisy (req/s moves by
# +-15 % between identical runs), so a build is only ever compared with
# another one run next to it: each round runs A, then B (then nginx with
# --nginx), each on a fresh data dir with a fresh sale whose stock covers
# every request, under `wrk -t2 -c256 -d8s -s loadtest/wrk/purchase.lua`;
# the answer is the per-round ratio B/A and its median.
#
# Usage: scripts/bench/ab.sh [--nginx] A_BIN B_BIN [ROUNDS]   (ROUNDS=5)
# Env:   FSYNC=always  DURATION=8  CONNECTIONS=256  THREADS=2
#        NGINX=1 (same as --nginx: also nginx answering a fixed body of an
#        admission's size, loadtest/bench/nginx.conf, with the same wrk script)
#        STOCK=0 (sales with no stock: sold-out rejections instead of
#        admissions; A_BIN may equal B_BIN, with --nginx for the ratio)
#        A_MODE=body B_MODE=body (buyer_auth.mode of each build's server;
#        "jwt" mints tokens with the build's `flashsale token` and wrk
#        sends one per request: A_MODE=body B_MODE=jwt with the same binary
#        twice is jwt mode against body mode; "legacy" writes no
#        [buyer_auth] section, for a build from before it)
#        A_LUA=... B_LUA=... (each build's wrk script, default
#        loadtest/wrk/purchase.lua: a build from before string user ids
#        needs the purchase.lua of its own commit, e.g.
#        `git show OLD:loadtest/wrk/purchase.lua >/tmp/old.lua`)
# Needs: wrk curl, and nginx-light for --nginx
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/scripts/bench/lib.sh"

NGINX=${NGINX:-0}
if [[ "${1:-}" == "--nginx" ]]; then NGINX=1; shift; fi
[[ $# -ge 2 && $# -le 3 ]] || { echo "usage: $0 [--nginx] A_BIN B_BIN [ROUNDS]" >&2; exit 2; }
A_BIN=$1 B_BIN=$2 ROUNDS=${3:-5}
FSYNC=${FSYNC:-always}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-256}
THREADS=${THREADS:-2}
for b in "$A_BIN" "$B_BIN"; do [[ -x "$b" ]] || { echo "not an executable: $b" >&2; exit 2; }; done
A_BIN=$(realpath "$A_BIN") B_BIN=$(realpath "$B_BIN")
bench_init

start_nginx() { # sets NGINX_URL; stays up for the whole run (idle between its turns)
  need nginx nginx-light
  local port
  port=$(free_port)
  mkdir -p "$TMP/nginx"
  sed "s/127\.0\.0\.1:8081/127.0.0.1:$port/" "$ROOT/loadtest/bench/nginx.conf" >"$TMP/nginx/nginx.conf"
  nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e stderr >"$TMP/nginx/nginx.log" 2>&1 &
  PIDS+=($!)
  NGINX_URL="http://127.0.0.1:$port"
  wait_http "$NGINX_URL/" 10
}

# One flashsale run; sets RPS and P99. (Not run in a subshell: the server
# it starts must stay in PIDS for the cleanup.)
run_flashsale() { # bin round label mode lua
  new_server_dir
  local MODE=$4 lua=$5
  start_server "$1" "$FSYNC"
  local sku="ab-$2-$3"
  create_sale "$sku"
  run_wrk "$SERVER_DIR/wrk.out" "$THREADS" "$CONNECTIONS" "$DURATION" -s "$lua" "http://$ADDR" -- "$sku"
  stop_server
  RPS=$(wrk_rps "$SERVER_DIR/wrk.out") P99=$(wrk_p99 "$SERVER_DIR/wrk.out")
}

run_nginx() { # round; sets RPS and P99
  local out="$TMP/nginx/wrk-$1.out"
  # Same script as flashsale: nginx reads and ignores the same POST bodies.
  run_wrk "$out" "$THREADS" "$CONNECTIONS" "$DURATION" -s "$PURCHASE_LUA" "$NGINX_URL" -- nginx
  RPS=$(wrk_rps "$out") P99=$(wrk_p99 "$out")
}

echo "== $(nproc) cores, $(uname -r), $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== A: $A_BIN"
echo "== B: $B_BIN"
echo "== buyer_auth: A ${A_MODE:-body}, B ${B_MODE:-body}"
echo "== fsync=$FSYNC, wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s -s loadtest/wrk/purchase.lua, $ROUNDS rounds"
[[ "$NGINX" == 1 ]] && start_nginx

RESULTS="$TMP/results" # round a_rps b_rps nginx_rps
for round in $(seq 1 "$ROUNDS"); do
  run_flashsale "$A_BIN" "$round" a "${A_MODE:-body}" "${A_LUA:-$PURCHASE_LUA}"; a=$RPS a99=$P99
  run_flashsale "$B_BIN" "$round" b "${B_MODE:-body}" "${B_LUA:-$PURCHASE_LUA}"; b=$RPS b99=$P99
  line="round $round: A $a req/s (p99 $a99)  B $b req/s (p99 $b99)"
  n=0
  if [[ "$NGINX" == 1 ]]; then
    run_nginx "$round"; n=$RPS n99=$P99
    line="$line  nginx $n req/s (p99 $n99)"
  fi
  echo "$line  (load $(cut -d' ' -f1 /proc/loadavg))"
  echo "$round $a $b $n" >>"$RESULTS"
done

echo "== per round"
if [[ "$NGINX" == 1 ]]; then
  awk '{ printf "round %d: B/A %.3f  A/nginx %.1f %%  B/nginx %.1f %%\n", $1, $3 / $2, 100 * $2 / $4, 100 * $3 / $4 }' "$RESULTS"
else
  awk '{ printf "round %d: B/A %.3f\n", $1, $3 / $2 }' "$RESULTS"
fi
echo "== median B/A: $(awk '{ printf "%.4f\n", $3 / $2 }' "$RESULTS" | median | xargs printf '%.3f')"
if [[ "$NGINX" == 1 ]]; then
  echo "== median A/nginx: $(awk '{ printf "%.4f\n", 100 * $2 / $4 }' "$RESULTS" | median | xargs printf '%.1f') %"
  echo "== median B/nginx: $(awk '{ printf "%.4f\n", 100 * $3 / $4 }' "$RESULTS" | median | xargs printf '%.1f') %"
fi
