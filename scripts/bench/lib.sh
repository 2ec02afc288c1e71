# Shared helpers for scripts/bench/*.sh; sourced, not run.
#
# Starts flashsale servers on 127.0.0.1 with a fresh data directory each,
# creates a sale, runs wrk, and stops everything it started on exit (also on
# failure). Only 127.0.0.1 is ever targeted.
#
# The caller sets ROOT (workspace root) before sourcing and calls
# bench_init once.

TOKEN=bench-token
# Buyer authentication of the servers started: "body" (the client names the
# buyer, the old path) or "jwt" (a token per request; TOKENS, minted by
# start_server, is the file purchase.lua picks them from). MODE is read by
# start_server; ab.sh sets it per build (A_MODE, B_MODE).
MODE=${MODE:-body}
JWT_SECRET=bench-secret-0123456789abcdef0123456789abcdef
# Tokens minted for a jwt run, reused round the list (the sale's per-user
# limit is raised to match).
JWT_USERS=${JWT_USERS:-200000}
# Stock large enough that every request in a run is an admission (409
# sold_out is a different, cheaper path); STOCK=0 measures that path instead.
STOCK=${STOCK:-1000000000000}
PURCHASE_LUA="$ROOT/loadtest/wrk/purchase.lua"

need() { command -v "$1" >/dev/null 2>&1 || { echo "missing: $1 (apt-get install -y $2)" >&2; exit 1; }; }

bench_init() {
  need curl curl
  need wrk wrk
  TMP=$(mktemp -d /tmp/flashsale-bench.XXXXXX)
  PIDS=()
  RUN=0
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}

forget_pid() { # pid: no longer ours to stop
  local p keep=()
  for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# A port nothing listens on now (for nginx, whose config needs a number;
# flashsale binds port 0 and reports what it got).
free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$(( 20000 + RANDOM % 40000 ))
    [[ -z "$(ss -Htln "sport = :$p")" ]] && { echo "$p"; return 0; }
  done
  echo "no free port found" >&2
  return 1
}

wait_http() { # url seconds
  local i
  for i in $(seq 1 $(( $2 * 10 ))); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "no answer from $1 after $2 s" >&2
  return 1
}

# new_server_dir: a fresh directory for the next server, in SERVER_DIR.
new_server_dir() {
  RUN=$(( RUN + 1 ))
  SERVER_DIR="$TMP/run-$RUN"
  mkdir -p "$SERVER_DIR/wal"
}

# start_server BIN FSYNC [WRAPPER...]: starts BIN (under WRAPPER, e.g.
# valgrind, if given) with its data in SERVER_DIR (see new_server_dir); sets
# SERVER_PID and ADDR (host:port). Only the keys a benchmark changes are
# written; everything else is the server's default.
start_server() {
  local bin=$1 fsync=$2; shift 2
  cat >"$SERVER_DIR/flashsale.toml" <<TOML
[server]
listen = "127.0.0.1:0"
admin_token = "$TOKEN"
[rate_limit]
global_rps = 0
per_client_rps = 0
[wal]
dir = "$SERVER_DIR/wal"
fsync = "$fsync"
TOML
  # A build from before buyer_auth refuses the section: MODE=legacy.
  if [[ "$MODE" != legacy ]]; then
    printf '[buyer_auth]\nmode = "%s"\nsecret = "%s"\n' "$MODE" "$JWT_SECRET" >>"$SERVER_DIR/flashsale.toml"
  fi
  if [[ "$MODE" == jwt ]]; then
    "$bin" token --config "$SERVER_DIR/flashsale.toml" --user w --count "$JWT_USERS" --ttl 2h \
      >"$SERVER_DIR/tokens" || { echo "minting tokens with $bin failed" >&2; return 1; }
    export TOKENS="$SERVER_DIR/tokens"
  else
    export TOKENS=
  fi
  "$@" "$bin" serve --config "$SERVER_DIR/flashsale.toml" >"$SERVER_DIR/server.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  # Port 0: the server logs the address it bound; no race for a port.
  ADDR=
  local i
  for i in $(seq 1 1200); do
    ADDR=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$SERVER_DIR/server.log" | head -1 | cut -d' ' -f3 || true)
    [[ -n "$ADDR" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SERVER_DIR/server.log" >&2; echo "server $bin exited at start" >&2; return 1; }
    sleep 0.1
  done
  [[ -n "$ADDR" ]] || { cat "$SERVER_DIR/server.log" >&2; echo "server $bin did not log its address" >&2; return 1; }
  wait_http "http://$ADDR/readyz" 120
}

# stop_server [SECONDS]: SIGTERM (the server drains, syncs its log and
# exits; under cachegrind this is when the counts are written), then waits.
stop_server() {
  local limit=${1:-60} i
  kill -TERM "$SERVER_PID"
  for i in $(seq 1 $(( limit * 10 ))); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "server did not exit within $limit s of SIGTERM" >&2
    return 1
  fi
  wait "$SERVER_PID" || { echo "server exited with status $?" >&2; tail -5 "$SERVER_DIR/server.log" >&2; return 1; }
  forget_pid "$SERVER_PID"
}

create_sale() { # sku
  # jwt runs reuse their tokens: each buyer buys many times.
  local limit=1
  [[ "$MODE" == jwt ]] && limit=1000000
  curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"sku\":\"$1\",\"stock\":$STOCK,\"per_user_limit\":$limit}" \
    "http://$ADDR/v1/admin/sales" >/dev/null
}

admissions() { # from the running server's /metrics
  curl -fsS "http://$ADDR/metrics" | awk '$1 == "flashsale_admissions_total" { print $2 }'
}

# run_wrk OUT THREADS CONNECTIONS SECONDS URL [-- ARGS...]: wrk with
# --latency, its output kept in OUT; warns if any answer was not 2xx.
run_wrk() {
  local out=$1 t=$2 c=$3 d=$4; shift 4
  wrk -t"$t" -c"$c" -d"${d}s" --latency "$@" >"$out" 2>&1 || { cat "$out" >&2; return 1; }
  if [[ "$STOCK" -gt 0 ]] && grep -q 'Non-2xx' "$out"; then
    echo "warning: $(grep 'Non-2xx' "$out" | tr -s ' ') (not every request was an admission)" >&2
  fi
}

wrk_rps() { awk '/^Requests\/sec:/ { printf "%.0f\n", $2 }' "$1"; }
wrk_p99() { awk '$1 == "99%" { print $2 }' "$1"; }

median() { # numbers on stdin, one a line
  sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
