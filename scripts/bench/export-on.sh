#!/usr/bin/env bash
# Runs BIN (`flashsale serve ...`) with the export on, into EXPORT_PG_URL,
# under a table prefix of its own, so that each server (a fresh log each
# time in ab.sh) exports into fresh tables rather than meeting another
# log's cursor. For `scripts/bench/ab.sh OFF_BIN ON_WRAPPER`, where
# ON_WRAPPER is a copy of this script with BIN and EXPORT_PG_URL filled in,
# or: `EXPORT_PG_URL=... BIN=... scripts/bench/ab.sh BIN scripts/bench/export-on.sh`.
set -euo pipefail
: "${EXPORT_PG_URL:?set EXPORT_PG_URL to the database to export into}"
: "${BIN:?set BIN to the flashsale binary}"
export FLASHSALE_EXPORT_POSTGRES_URL="$EXPORT_PG_URL"
export FLASHSALE_EXPORT_TABLE_PREFIX="ab_$(date +%s%N | tail -c 10)_"
exec "$BIN" "$@"
