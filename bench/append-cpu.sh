#!/usr/bin/env bash
# bench/append-cpu.sh - PostgreSQL's CPU per appended event: the group
# commit's statement before 0011 (tandem_append_batch over one jsonb),
# the one es_append.c sends now (tandem_append_batch_rows over arrays)
# and a plain prepared 12-row INSERT, 12 deposit-like events a
# transaction, interleaved round by round (bench/append-cpu.c says how).
#
#   bench/append-cpu.sh            ROUNDS=5 BATCHES=1000 PRELOAD=200000
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
BUILD=${TANDEM_BUILD:-$ROOT/build/rel}
BIN=${TANDEM_BIN:-$ROOT/bin}

[ -x "$BUILD/bench/append-cpu" ] && [ -x "$BIN/migrate" ] ||
	{ echo "append-cpu: build first (make)" >&2; exit 1; }
dir=$(mktemp -d /tmp/tandem-append-cpu.XXXXXX)
trap '"$ROOT/scripts/pg" destroy "$dir/pg" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
eval "$("$ROOT/scripts/pg" start "$dir/pg")"
MIGRATIONS_DIR=$ROOT/migrations "$BIN/migrate" 2>/dev/null
psql -qX -v ON_ERROR_STOP=1 -v n="$PRELOAD" <<'SQL'
INSERT INTO events (stream_id, stream_version, event_id, event_type, data,
		    metadata)
SELECT 'account-preload-' || lpad((g % 12000)::text, 24, '0'), g / 12000 + 1,
       gen_random_uuid(), 'MoneyDeposited',
       '{"amount": 100, "currency": "EUR", "balance_after": 12345}',
       '{"command_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21", "causation_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21", "correlation_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21"}'
  FROM generate_series(0, :n - 1) g;
VACUUM ANALYZE events;
SQL
echo "# $(psql -qXAtc 'SELECT version()' | cut -d' ' -f1-2), preload $PRELOAD events, $ROUNDS rounds of $BATCHES batches of 12 per mode"
echo "# columns: mode, backend us/event from utime+stime, from schedstat"
"$BUILD/bench/append-cpu" "$ROUNDS" "$BATCHES" 1200 2>/dev/null
