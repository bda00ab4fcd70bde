#!/usr/bin/env bash
# bench/ab-fold.sh - the projector's CPU per event (the query service and
# PostgreSQL), two or more builds side by side on one cluster.
#
#   bench/ab-fold.sh REPO_A REPO_B [...]     ROUNDS=3 SECS=10 BATCH=100
#
# Each REPO is a built checkout (its bin/ and migrations/). One throwaway
# cluster (scripts/pg of this checkout, fsync and synchronous_commit on)
# on CPU 0 holds a database per REPO, migrated by that REPO's migrate,
# seeded with 10,000 accounts (bench/seed.sql) and then SECS seconds of
# deposits through that REPO's command service (AUTH=off; `wrk -t1 -c64
# -s bench/deposits.lua` on CPU 1), so that its events carry the metadata
# that REPO writes. Each round empties every REPO's views (TRUNCATE, the
# checkpoints back to the start of the log), checkpoints, and runs that
# REPO's query service on CPU 0 (PROJECTOR_BATCH=BATCH: windows of about
# the size a live projector folds at a few thousand deposits a second)
# until every view has folded the whole log, with nobody reading. It
# prints one line per REPO: "REPO events=N pg_us=P svc_us=S sum_us=T
# wal_b=W", CPU (utime + stime from /proc: the postmaster and its
# children; the service, all threads) and WAL bytes written per event
# of the log (the WAL figure moves little from run to run: read it when
# the CPU figures are noise). The order within a round
# moves the figures too: run it again with the REPOs the other way round
# before reading a difference.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${SECS:-10}
BATCH=${BATCH:-100}
# shellcheck source=bench/ab-lib.sh
. "$ROOT/bench/ab-lib.sh" ab-fold $#

n=0
for repo in "$@"; do
	n=$((n + 1))
	accounts_db "$n" "$repo"
	start "$repo" command-service /health DATABASE_URL="$(url "$n")"
	deposits "$SECS"
	stop
	psql -q -d "d$n" -c "VACUUM ANALYZE"
done
for _ in $(seq 1 "$ROUNDS"); do
	n=0
	for repo in "$@"; do
		n=$((n + 1))
		psql -q -d "d$n" -c "TRUNCATE view_accounts, view_statement,
			view_daily, view_audit, parked_streams" -c "UPDATE
			projection_checkpoints SET position = '0:0:',
			applied = 0, stopped_error = NULL,
			stopped_position = NULL"
		psql -q -c CHECKPOINT
		ev=$(psql -Atd "d$n" -c "SELECT count(*) FROM events")
		l0=$(psql -At -c "SELECT pg_current_wal_insert_lsn()")
		p0=$(pg_ticks)
		start "$repo" query-service /health DATABASE_URL="$(url "$n")" \
			PROJECTOR_BATCH="$BATCH"
		s0=0 # all of the new process's CPU
		end=$((SECONDS + 600))
		# GET /status counts each view's lag in the log, a scan as
		# long as the lag: asked only once the checkpoints stand still
		prev=-1
		while :; do
			sum=$(psql -Atd "d$n" -c "SELECT sum(applied)
				FROM projection_checkpoints")
			if [ "$sum" = "$prev" ] && curl -sf \
				"http://127.0.0.1:$port/status" | jq -e '[.views[],
				.memory] | all(.lag_events == 0 and .loaded)' \
				>/dev/null; then
				break
			fi
			prev=$sum
			if [ "$SECONDS" -ge "$end" ] || ! kill -0 "$svc" 2>/dev/null; then
				echo "the query service of $repo did not fold" \
					"the log; its log ends:" >&2
				tail -n 5 "$WORK/query-service.log" >&2
				exit 1
			fi
			sleep 0.5
		done
		s1=$(ticks "$svc")
		p1=$(pg_ticks)
		wal=$(psql -At -c "SELECT pg_wal_lsn_diff(
			pg_current_wal_insert_lsn(), '$l0')")
		stop
		awk -v r="$repo" -v ev="$ev" -v hz="$HZ" -v p="$((p1 - p0))" \
			-v s="$((s1 - s0))" -v w="$wal" 'BEGIN {
			printf "%s events=%d pg_us=%.1f svc_us=%.1f sum_us=%.1f" \
				" wal_b=%.0f\n", r, ev, p * 1e6 / hz / ev,
				s * 1e6 / hz / ev, (p + s) * 1e6 / hz / ev, w / ev }'
	done
done
