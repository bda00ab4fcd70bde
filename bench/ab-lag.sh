#!/usr/bin/env bash
# bench/ab-lag.sh - append-to-visible lag and read-your-writes, two or
# more builds side by side on one cluster.
#
#   bench/ab-lag.sh REPO_A REPO_B [...]     ROUNDS=3 RATE=3000 SECS=12
#
# Each REPO is a built checkout (its bin/ and migrations/). One throwaway
# cluster (scripts/pg of this checkout, fsync and synchronous_commit on)
# on CPU 0 holds a database per REPO, migrated by that REPO's migrate and
# seeded with 10,000 accounts (bench/seed.sql). Each round runs each
# REPO's command service and query service in turn on CPU 0 (AUTH=off,
# LOG_LEVEL=warn), warms the command service's cache with 3 s of wrk
# deposits, checkpoints, then runs this checkout's `tandem-bench lag
# --rate RATE --seconds SECS --conns 64` on CPU 1, as `make bench` does
# for its lag figure, and prints one line per REPO: "REPO rate=R p50=
# p90= p99= ryw_p99= (ms) pg_us=P cmd_us=C qry_us=Q", R the deposits a
# second the client reached of RATE, and CPU per appended event over the
# run and 1 s after it (utime + stime from /proc: the postmaster and its
# children, the command service, the query service): the write and the
# projector path together on one core. Run it again with the REPOs the
# other way round before reading a difference.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RATE=${RATE:-3000}
SECS=${SECS:-12}
TB=$ROOT/build/rel/bench/tandem-bench
[ -x "$TB" ] || { echo "ab-lag: build first (make)" >&2; exit 1; }
# shellcheck source=bench/ab-lib.sh
. "$ROOT/bench/ab-lib.sh" ab-lag $#

n=0
for repo in "$@"; do
	n=$((n + 1))
	accounts_db "$n" "$repo"
done
for round in $(seq 1 "$ROUNDS"); do
	n=0
	for repo in "$@"; do
		n=$((n + 1))
		start "$repo" query-service /ready DATABASE_URL="$(url "$n")"
		qsvc=$svc qport=$port
		start "$repo" command-service /health \
			DATABASE_URL="$(url "$n")"
		deposits 3
		psql -q -c CHECKPOINT
		e0=$(psql -Atd "d$n" -c "SELECT count(*) FROM events")
		p0=$(pg_ticks) c0=$(ticks "$svc") q0=$(ticks "$qsvc")
		out=$(taskset -c 1 "$TB" lag --command "http://127.0.0.1:$port" \
			--query "http://127.0.0.1:$qport" \
			--accounts "$WORK/accounts.txt" --rate "$RATE" \
			--seconds "$SECS" --conns 64 --seed "$round" | tail -n 1)
		sleep 1 # the views fold the last deposits
		p1=$(pg_ticks) c1=$(ticks "$svc") q1=$(ticks "$qsvc")
		e1=$(psql -Atd "d$n" -c "SELECT count(*) FROM events")
		cpu="no events appended: no CPU per event"
		[ "$e1" -le "$e0" ] || cpu=$(awk -v e=$((e1 - e0)) -v hz="$HZ" \
			-v p=$((p1 - p0)) -v c=$((c1 - c0)) -v q=$((q1 - q0)) 'BEGIN {
			printf "pg_us=%.1f cmd_us=%.1f qry_us=%.1f", p * 1e6 / hz / e,
				c * 1e6 / hz / e, q * 1e6 / hz / e }')
		stop
		stop "$qsvc"
		jq -r --arg r "$repo" '"\($r) rate=\(.rate) p50=\(.p50_ms)" +
			" p90=\(.p90_ms) p99=\(.p99_ms) ryw_p99=\(.ryw_p99_ms)"' \
			<<<"$out" | sed "s/\$/ $cpu/"
	done
done
