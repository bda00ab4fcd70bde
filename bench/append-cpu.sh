#!/usr/bin/env bash
# bench/append-cpu.sh - PostgreSQL's CPU per appended event: the group
# commit's statement before 0011 (tandem_append_batch over one jsonb),
# the one es_append.c sends now (tandem_append_batch_rows over arrays)
# and a plain prepared 12-row INSERT, 12 deposit-like events a
# transaction, interleaved round by round (bench/append-cpu.c says how).
#
#   bench/append-cpu.sh            ROUNDS=5 BATCHES=1000 PRELOAD=200000
#
# ACCOUNTS (default 1200), APPEND_CPU_ONLY and APPEND_CPU_EXISTING go to
# the driver, as in bench/append-callgrind.sh.
#
# Starts a throwaway cluster (scripts/pg, fsync and synchronous_commit on)
# in a temporary directory, migrates it, loads PRELOAD events of 12,000
# other streams so that the indexes are not tiny, runs the rounds and
# removes the cluster. Needs the binaries built (make) and /proc of the
# server's backends readable (the same user or root). Prints the
# driver's lines: "round N MODE us_stat us_sched" and the medians.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-5}
BATCHES=${BATCHES:-1000}
PRELOAD=${PRELOAD:-200000}
ACCOUNTS=${ACCOUNTS:-1200}
BUILD=${TANDEM_BUILD:-$ROOT/build/rel}
BIN=${TANDEM_BIN:-$ROOT/bin}

[ -x "$BUILD/bench/append-cpu" ] && [ -x "$BIN/migrate" ] ||
	{ echo "append-cpu: build first (make)" >&2; exit 1; }
dir=$(mktemp -d /tmp/tandem-append-cpu.XXXXXX)
trap '"$ROOT/scripts/pg" destroy "$dir/pg" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
eval "$("$ROOT/scripts/pg" start "$dir/pg")"
MIGRATIONS_DIR=$ROOT/migrations "$BIN/migrate" 2>/dev/null
psql -qX -v ON_ERROR_STOP=1 -v n="$PRELOAD" -f "$ROOT/bench/append-preload.sql"
echo "# $(psql -qXAtc 'SELECT version()' | cut -d' ' -f1-2), preload $PRELOAD events, $ROUNDS rounds of $BATCHES batches of 12 per mode"
echo "# columns: mode, backend us/event from utime+stime, from schedstat"
"$BUILD/bench/append-cpu" "$ROUNDS" "$BATCHES" "$ACCOUNTS" 2>/dev/null
