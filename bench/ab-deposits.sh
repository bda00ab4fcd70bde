#!/usr/bin/env bash
# bench/ab-deposits.sh - PostgreSQL's and the command service's CPU per
# deposit, two or more builds side by side on one cluster.
#
#   bench/ab-deposits.sh REPO_A REPO_B [...]     ROUNDS=3 SECS=10
#
# Each REPO is a built checkout (its bin/ and migrations/). One throwaway
# cluster (scripts/pg of this checkout, fsync and synchronous_commit on)
# on CPU 0 holds a database per REPO, migrated by that REPO's migrate and
# seeded with 10,000 accounts (bench/seed.sql). Each round runs each
# REPO's command service in turn on CPU 0 (AUTH=off, LOG_LEVEL=warn),
# warms it with 3 s of wrk, checkpoints, then runs `wrk -t1 -c64 -dSECS
# -s bench/deposits.lua` on CPU 1, and prints one line per REPO:
# "REPO events=N rps=R pg_us=P svc_us=S", CPU (utime + stime from /proc,
# the postmaster and its children; the service) per appended event. The
# order within a round moves the figures too: run it again with the REPOs
# the other way round before reading a difference.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${SECS:-10}
# shellcheck source=bench/ab-lib.sh
. "$ROOT/bench/ab-lib.sh" ab-deposits $#
maxpos() { psql -Atd "d$1" -c "SELECT max(global_position) FROM events"; }

n=0
for repo in "$@"; do
	n=$((n + 1))
	accounts_db "$n" "$repo"
done
for _ in $(seq 1 "$ROUNDS"); do
	n=0
	for repo in "$@"; do
		n=$((n + 1))
		start "$repo" command-service /health DATABASE_URL="$(url "$n")"
		deposits 3
		psql -q -c CHECKPOINT
		e0=$(maxpos "$n")
		# shellcheck disable=SC2046 # one PID a word
		p0=$(ticks "$PM" $(pgrep -P "$PM"))
		s0=$(ticks "$svc")
		deposits "$SECS"
		# shellcheck disable=SC2046
		p1=$(ticks "$PM" $(pgrep -P "$PM"))
		s1=$(ticks "$svc")
		e1=$(maxpos "$n")
		stop
		ev=$((e1 - e0))
		awk -v r="$repo" -v ev="$ev" -v secs="$SECS" -v hz="$HZ" \
			-v p="$((p1 - p0))" -v s="$((s1 - s0))" 'BEGIN {
			printf "%s events=%d rps=%d pg_us=%.1f svc_us=%.1f\n",
				r, ev, ev / secs, p * 1e6 / hz / ev, s * 1e6 / hz / ev }'
	done
done
