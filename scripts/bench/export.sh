#!/usr/bin/env bash
# Export throughput: `flashsale export --once` of a log of many admissions
# into a local PostgreSQL (a throwaway cluster, fsync on, as the package
# installs it).
#
# Makes the log by running wrk's purchase script against BIN (fsync =
# "never", to make it fast; the log's records are the same) for SECONDS,
# stops the server, starts a cluster, and times the export. Prints
# `records N seconds S events_per_second E`, and the export's CPU time.
#
# LOG=DIR keeps the log made in DIR (if DIR has none yet) or exports the
# one already there, so several builds can be timed on the same log,
# alternated: `LOG=/tmp/log2m scripts/bench/export.sh OLD 15; LOG=/tmp/log2m
# scripts/bench/export.sh NEW; LOG=... OLD; ...`. Each run gets a new,
# empty database.
#
# PG_SETTINGS="name=value ..." starts the cluster with those settings on
# top of the package's defaults, e.g. PG_SETTINGS="shared_buffers=2GB
# max_wal_size=8GB" for a database sized for write-heavy work.
#
# Usage: [LOG=DIR] [PG_SETTINGS=...] scripts/bench/export.sh BIN [SECONDS]
# Needs: wrk curl postgresql (apt-get install -y wrk curl postgresql); root
# (the cluster runs as the postgres user)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/scripts/bench/lib.sh"

BIN=$(realpath "${1:?usage: $0 BIN [SECONDS]}")
SECONDS_OF_LOAD=${2:-30}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[[ -x "$PG_BIN/initdb" ]] || { echo "missing: postgresql (apt-get install -y postgresql)" >&2; exit 1; }

bench_init
PG_DIR="$TMP/pg"
pg_stop() { runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true; }
trap 'pg_stop; bench_cleanup' EXIT

if [[ -n "${LOG:-}" && -f "$LOG/admitted" ]]; then
  WAL_DIR="$LOG/wal"
  admitted=$(cat "$LOG/admitted")
else
  # One sale may make this many orders (the default cap is 10 million).
  export FLASHSALE_ENGINE_MAX_ORDERS_PER_SALE=1000000000
  new_server_dir
  start_server "$BIN" never
  create_sale export
  run_wrk "$SERVER_DIR/wrk.out" 2 256 "$SECONDS_OF_LOAD" -s "$PURCHASE_LUA" "http://$ADDR" -- export
  admitted=$(admissions)
  stop_server 120
  unset FLASHSALE_ENGINE_MAX_ORDERS_PER_SALE
  WAL_DIR="$SERVER_DIR/wal"
  if [[ -n "${LOG:-}" ]]; then
    mkdir -p "$LOG" && rm -rf "$LOG/wal" && mv "$WAL_DIR" "$LOG/wal"
    WAL_DIR="$LOG/wal"
    echo "$admitted" >"$LOG/admitted"
  fi
fi
OUT_DIR="$TMP/export" && mkdir -p "$OUT_DIR"

mkdir -p "$PG_DIR" && chown postgres "$PG_DIR" "$TMP"
PORT=$(free_port)
runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" \
  -o "-p $PORT -k $PG_DIR -c listen_addresses=127.0.0.1$(for kv in ${PG_SETTINGS:-}; do printf ' -c %s' "$kv"; done)" \
  -w start >/dev/null

start=$(date +%s.%N)
FLASHSALE_EXPORT_POSTGRES_URL="postgres://postgres@127.0.0.1:$PORT/postgres" \
  /usr/bin/time -f "export cpu: user %U s system %S s" -o "$OUT_DIR/time" \
  "$BIN" export --once --wal-dir "$WAL_DIR" --config /dev/null >"$OUT_DIR/export.out" 2>"$OUT_DIR/export.log" \
  || { cat "$OUT_DIR/export.log" >&2; exit 1; }
end=$(date +%s.%N)
records=$(( admitted + 1 ))
awk -v n="$records" -v s="$start" -v e="$end" -v a="$admitted" \
  'BEGIN { printf "records %d (admissions %d) seconds %.2f events_per_second %.0f\n", n, a, e - s, n / (e - s) }'
cat "$OUT_DIR/export.out" "$OUT_DIR/time"
