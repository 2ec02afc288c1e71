#!/usr/bin/env bash
# Runs flashsale with the dashboard open: the server, plus one niced curl
# subscribed to GET /v1/admin/stream for the whole run, as a browser tab on
# the dashboard would be. Made to be ab.sh's B_BIN, so that
#
#   scripts/bench/ab.sh target/release/flashsale scripts/bench/with_dashboard.sh 10
#
# alternates durable admissions with the dashboard closed (A) and open (B)
# in the same session (BENCHMARKS.md, "Dashboard").
#
# Usage: with_dashboard.sh serve --config FILE   (what ab.sh passes a binary)
# Env:   FLASHSALE_BIN (the server; default target/release/flashsale)
# Needs: curl. The admin token is read from FILE's `admin_token`.
#
# Its stderr is the server's (ab.sh looks for "listening on" there), then,
# at the end, how many snapshots the subscriber received and whether it was
# still subscribed. It exits with the server's status; SIGTERM is passed on.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${FLASHSALE_BIN:-$ROOT/target/release/flashsale}
[[ -x "$BIN" ]] || { echo "with_dashboard.sh: not an executable: $BIN" >&2; exit 2; }

config=
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [[ "${args[$i]}" == "--config" ]] && config=${args[$((i + 1))]:-}
done
[[ -n "$config" && -f "$config" ]] || { echo "with_dashboard.sh: needs serve --config FILE" >&2; exit 2; }
token=$(sed -n 's/^admin_token *= *"\(.*\)"/\1/p' "$config" | head -1)
[[ -n "$token" ]] || { echo "with_dashboard.sh: no admin_token in $config" >&2; exit 2; }

work=$(mktemp -d /tmp/flashsale-dashboard.XXXXXX)
server_pid= curl_pid= tail_pid=
subscribed=no
check_subscribed() { # before the server stops, which ends every stream
  if [[ -n "$curl_pid" ]] && kill -0 "$curl_pid" 2>/dev/null; then subscribed=yes; else subscribed=no; fi
}
finish() {
  local status=${1:-0}
  [[ -n "$curl_pid" ]] && { kill "$curl_pid" 2>/dev/null || true; wait "$curl_pid" 2>/dev/null || true; }
  if [[ -f "$work/events" ]]; then
    echo "with_dashboard.sh: the subscriber received $(grep -c '^event: snapshot' "$work/events" || true) snapshots; still subscribed at the end: $subscribed" >&2
  fi
  [[ -n "$tail_pid" ]] && kill "$tail_pid" 2>/dev/null || true
  rm -rf "$work"
  exit "$status"
}
stop() { # SIGTERM/SIGINT from ab.sh: stop the server, report, exit with its status
  local status=0
  check_subscribed
  if [[ -n "$server_pid" ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" || status=$?
  fi
  finish "$status"
}
trap stop TERM INT

"$BIN" "$@" 2>"$work/server.log" &
server_pid=$!
tail -n +1 -f "$work/server.log" >&2 &
tail_pid=$!

addr=
for _ in $(seq 1 1200); do
  addr=$(grep -o 'listening on [0-9.]*:[0-9]*' "$work/server.log" | head -1 | cut -d' ' -f3 || true)
  [[ -n "$addr" ]] && break
  kill -0 "$server_pid" 2>/dev/null || { wait "$server_pid" || finish $?; finish 1; }
  sleep 0.1
done
[[ -n "$addr" ]] || { echo "with_dashboard.sh: the server did not log its address" >&2; kill "$server_pid"; finish 1; }

# The dashboard's client: niced, as a browser on another machine would not
# compete with the server for its cores at all.
nice -n 19 curl -sN -H "Authorization: Bearer $token" "http://$addr/v1/admin/stream" >"$work/events" &
curl_pid=$!
for _ in $(seq 1 100); do
  grep -q '^event: snapshot' "$work/events" 2>/dev/null && break
  sleep 0.1
done
grep -q '^event: snapshot' "$work/events" || {
  echo "with_dashboard.sh: the stream sent no snapshot within 10 s" >&2
  kill -TERM "$server_pid"; wait "$server_pid" || true; finish 1
}

# Wait for the server (or a signal); `wait` returns early on a trapped one.
status=0
wait "$server_pid" || status=$?
server_pid=
check_subscribed
finish "$status"
