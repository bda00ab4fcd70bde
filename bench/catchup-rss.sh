#!/usr/bin/env bash
# bench/catchup-rss.sh - the query service's peak memory and time to
# catch up with a backlog, for one or more PROJECTOR_BATCH values.
#
#   bench/catchup-rss.sh REPO BATCH [BATCH...]     STEPS=39
#
# REPO is a built checkout (its bin/ and migrations/). A throwaway
# cluster (scripts/pg of this checkout) on CPU 0 holds a database
# migrated by REPO's migrate and seeded by bench/seed.sql with 10,000
# accounts of STEPS deposits each (400,000 events by default). For each
# BATCH, the views are emptied (their checkpoints back to the start of
# the log) and REPO's query service starts on CPU 0 with
# PROJECTOR_BATCH=BATCH, folds the whole log, and prints "PROJECTOR_BATCH=
# BATCH caught up in S s: VmHWM: K VmRSS: K" (KiB, from /proc) once every
# view and the in-memory one have no lag.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STEPS=${STEPS:-39}
[ $# -ge 2 ] || { echo "usage: $0 REPO BATCH [BATCH...]" >&2; exit 2; }
REPO=$1
shift
# shellcheck source=bench/ab-lib.sh
. "$ROOT/bench/ab-lib.sh" catchup-rss 1 1

psql -q -c "CREATE DATABASE d1" >/dev/null
MIGRATIONS_DIR=$REPO/migrations DATABASE_URL=$(url 1) LOG_LEVEL=warn \
	"$REPO/bin/migrate" >/dev/null
psql -q -d d1 -v tag=acct -v accounts=10000 -v steps="$STEPS" \
	-v mix=deposits -v chunk=1000 -f "$ROOT/bench/seed.sql" >/dev/null
psql -q -d d1 -c "VACUUM ANALYZE"
echo "events: $(psql -Atd d1 -c 'SELECT count(*) FROM events')"
for b in "$@"; do
	psql -q -d d1 -c "TRUNCATE view_accounts, view_statement, view_daily,
		view_audit, parked_streams" -c "UPDATE projection_checkpoints
		SET position = '0:0:', applied = 0, stopped_error = NULL,
		stopped_position = NULL"
	start "$REPO" query-service /health DATABASE_URL="$(url 1)" \
		PROJECTOR_BATCH="$b"
	t0=$SECONDS
	until curl -sf "http://127.0.0.1:$port/status" | jq -e '[.views[],
		.memory] | all(.lag_events == 0 and .loaded)' >/dev/null; do
		[ $((SECONDS - t0)) -lt 600 ] ||
			{ echo "no catch-up in 600 s" >&2; exit 1; }
		sleep 0.5
	done
	echo "PROJECTOR_BATCH=$b caught up in $((SECONDS - t0)) s:" \
		"$(awk '/VmHWM|VmRSS/ { printf "%s %s ", $1, $2 }' \
			"/proc/$svc/status")"
	stop
done
