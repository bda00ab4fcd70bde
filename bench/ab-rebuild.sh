#!/usr/bin/env bash
# bench/ab-rebuild.sh - `query-service rebuild` of two or more builds side
# by side over the same seeded log.
#
#   bench/ab-rebuild.sh REPO_A REPO_B [...]      ROUNDS=3 STEPS=19
#
# Each REPO is a built checkout. One throwaway cluster (scripts/pg of this
# checkout) on CPU 0 holds a log of 10,000 accounts and STEPS money events
# each (bench/seed.sql, 200,000 events by default), migrated by this
# checkout's migrate; each round runs each REPO's rebuild on it in turn,
# pinned to CPU 0, and prints "REPO SECONDS" (wall time of the process).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STEPS=${STEPS:-19}
# shellcheck source=bench/ab-lib.sh
. "$ROOT/bench/ab-lib.sh" ab-rebuild $#
psql -q -c "CREATE DATABASE seed" >/dev/null
URL="postgresql:///seed?host=$PGHOST&port=$PGPORT&user=$PGUSER"
DATABASE_URL=$URL LOG_LEVEL=warn "$ROOT/bin/migrate" >/dev/null
psql -q -d seed -v tag=log -v accounts=10000 -v steps="$STEPS" \
	-v mix=traffic -v chunk=100 -f "$ROOT/bench/seed.sql" >/dev/null
psql -q -d seed -c "VACUUM ANALYZE"
psql -q -c CHECKPOINT
echo "events: $(psql -Atd seed -c 'SELECT count(*) FROM events')"
for _ in $(seq 1 "$ROUNDS"); do
	for repo in "$@"; do
		a=$(date +%s.%N)
		DATABASE_URL=$URL LOG_LEVEL=warn taskset -c 0 \
			"$repo/bin/query-service" rebuild >/dev/null
		b=$(date +%s.%N)
		awk -v r="$repo" -v a="$a" -v b="$b" 'BEGIN { printf "%s %.2f\n", r, b - a }'
	done
done
