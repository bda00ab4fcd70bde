#!/usr/bin/env bash
# bench/lag-profile.sh - where CPU 0 goes at a steady deposit rate with
# both services running (the conditions of `make bench`'s lag figure):
# per PostgreSQL session and per statement.
#
#   bench/lag-profile.sh REPO     RATE=2600 SECS=10
#
# REPO is a built checkout (its bin/ and migrations/). A throwaway
# cluster (scripts/pg of this checkout, fsync and synchronous_commit on,
# pg_stat_statements loaded with track = all) on CPU 0 holds a database
# migrated by REPO's migrate and seeded with 10,000 accounts
# (bench/seed.sql). REPO's query and command services run on CPU 0
# (AUTH=off, LOG_LEVEL=warn); after 3 s of wrk deposits and a
# CHECKPOINT, this checkout's `tandem-bench lag --rate RATE --seconds
# SECS --conns 64` runs on CPU 1. It prints tandem-bench's line, then,
# per event appended in the run (and 1 s after it, for the views to fold
# the last ones): the cluster's, the command service's and the query
# service's CPU (utime + stime from /proc); the CPU of the PostgreSQL
# sessions open when the run ended, by application_name; transactions
# committed; and pg_stat_statements' top 25 by execution time, with calls
# and microseconds of execution per event (wall time: on a busy core it
# includes waiting for the CPU; statements inside PL/pgSQL count too).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RATE=${RATE:-2600}
SECS=${SECS:-10}
TB=$ROOT/build/rel/bench/tandem-bench
[ -x "$TB" ] || { echo "lag-profile: build first (make)" >&2; exit 1; }
# shellcheck source=bench/ab-lib.sh
. "$ROOT/bench/ab-lib.sh" lag-profile $# 1
REPO=$1

psql -q -c "ALTER SYSTEM SET shared_preload_libraries = pg_stat_statements"
eval "$(taskset -c 0 "$ROOT/scripts/pg" restart "$WORK/pg")"
PM=$TANDEM_PG_PID
psql -q -c "ALTER SYSTEM SET pg_stat_statements.track = 'all'" \
	-c "SELECT pg_reload_conf()" >/dev/null
accounts_db 1 "$REPO"
psql -q -d d1 -c "CREATE EXTENSION pg_stat_statements"
start "$REPO" query-service /ready DATABASE_URL="$(url 1)"
qsvc=$svc qport=$port
start "$REPO" command-service /health DATABASE_URL="$(url 1)"
deposits 3
psql -q -c CHECKPOINT
# PID NAME TICKS of each of the database's sessions now; a session
# without an application_name goes by its last statement
sessions()
{
	local pid app

	psql -Atd d1 -F ' ' -c "SELECT pid, coalesce(nullif(application_name,
		''), 'unnamed:' || translate(left(query, 24), E' \t\n', '___'))
		FROM pg_stat_activity WHERE datname = 'd1'
		AND backend_type = 'client backend'
		AND pid <> pg_backend_pid()" | while read -r pid app; do
		echo "$pid $app $(ticks "$pid")"
	done
}
count() { psql -Atd d1 -c "SELECT count(*) FROM events"; }
xacts() { psql -Atd d1 -c "SELECT xact_commit FROM pg_stat_database
	WHERE datname = 'd1'"; }

sessions >"$WORK/sessions0"
e0=$(count) x0=$(xacts)
p0=$(pg_ticks) c0=$(ticks "$svc") q0=$(ticks "$qsvc")
psql -qd d1 -c "SELECT pg_stat_statements_reset()" >/dev/null
taskset -c 1 "$TB" lag --command "http://127.0.0.1:$port" \
	--query "http://127.0.0.1:$qport" --accounts "$WORK/accounts.txt" \
	--rate "$RATE" --seconds "$SECS" --conns 64 --seed 1 | tail -n 1
sleep 1
p1=$(pg_ticks) c1=$(ticks "$svc") q1=$(ticks "$qsvc")
sessions >"$WORK/sessions1"
e=$(($(count) - e0)) x=$(($(xacts) - x0))
echo "events $e, transactions committed $x"
[ "$e" -gt 0 ] || { echo "lag-profile: no event was appended" >&2; exit 1; }
awk -v e="$e" -v hz="$HZ" -v p=$((p1 - p0)) -v c=$((c1 - c0)) \
	-v q=$((q1 - q0)) 'BEGIN { printf "CPU us/event: PostgreSQL %.1f," \
	" command service %.1f, query service %.1f\n", p * 1e6 / hz / e,
	c * 1e6 / hz / e, q * 1e6 / hz / e }'
# by name, the sessions open at the end (one opened during the run
# counts from 0; one closed during it is not counted)
awk -v e="$e" -v hz="$HZ" 'NR == FNR { t0[$1] = $3; next }
	{ s[$2] += $3 - ($1 in t0 ? t0[$1] : 0) }
	END { for (a in s) printf "  %-28s %6.1f us/event\n", a,
		s[a] * 1e6 / hz / e }' "$WORK/sessions0" "$WORK/sessions1" | sort
psql -d d1 -c "SELECT calls,
	round(calls::numeric / $e, 3) AS per_event,
	round((total_exec_time * 1000 / $e)::numeric, 1) AS exec_us_event,
	left(regexp_replace(query, '\s+', ' ', 'g'), 80) AS statement
	FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 25"
