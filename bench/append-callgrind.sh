#!/usr/bin/env bash
# bench/append-callgrind.sh - instructions per appended event in the
# PostgreSQL backend, counted by callgrind (repeatable on a loaded machine,
# unlike CPU time): the same three ways as bench/append-cpu.sh (old
# tandem_append_batch, new tandem_append_batch_rows through
# es_append_batch(), plain 12-row INSERT), the same driver.
#
#   bench/append-callgrind.sh      B1=100 B2=300 PRELOAD=200000
#
# ACCOUNTS (default 1200) and APPEND_CPU_ONLY / APPEND_CPU_EXISTING go to
# the driver (bench/append-cpu.c says what they do): e.g.
#   APPEND_CPU_ONLY=new APPEND_CPU_EXISTING=1 ACCOUNTS=3996 PRELOAD=1000000
# appends to 3996 streams spread over a 1,000,000-event log. PG_SETTINGS
# (e.g. "wal_compression=lz4") are passed to the server as -c options.
#
# Makes and loads a throwaway cluster as append-cpu.sh does, then runs its
# postmaster under valgrind --tool=callgrind (every backend it forks is
# counted, in a file of its own), runs bench/append-cpu once with B1
# batches per way and once with B2, and prints per way
#   MODE instructions_per_event
# = (instructions of the B2 backend - those of the B1 backend) / ((B2 -
# B1) * 12): connection start, warm-up and exit cancel out. Needs valgrind.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
B1=${B1:-100}
B2=${B2:-300}
PRELOAD=${PRELOAD:-200000}
ACCOUNTS=${ACCOUNTS:-1200}
MODES=${APPEND_CPU_ONLY:-old new plain}
settings=()
for s in ${PG_SETTINGS:-}; do
	settings+=(-c "$s")
done
BUILD=${TANDEM_BUILD:-$ROOT/build/rel}
BIN=${TANDEM_BIN:-$ROOT/bin}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

[ -x "$BUILD/bench/append-cpu" ] && [ -x "$BIN/migrate" ] ||
	{ echo "append-callgrind: build first (make)" >&2; exit 1; }
command -v valgrind >/dev/null ||
	{ echo "append-callgrind: no valgrind" >&2; exit 1; }
dir=$(mktemp -d /tmp/tandem-append-cg.XXXXXX)
chmod 755 "$dir"
vpid=
data=
# the postmaster's own PID (runuser does not pass signals on): fast stop
stop_server()
{
	local pm

	pm=$(head -1 "$data/postmaster.pid" 2>/dev/null) || return 0
	kill -INT "$pm" 2>/dev/null || true
	wait "$vpid" 2>/dev/null || true
	vpid=
}
cleanup()
{
	[ -z "$vpid" ] || stop_server
	"$ROOT/scripts/pg" destroy "$dir/pg" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT
eval "$("$ROOT/scripts/pg" start "$dir/pg" 2>/dev/null)"
MIGRATIONS_DIR=$ROOT/migrations "$BIN/migrate" 2>/dev/null
psql -qX -v ON_ERROR_STOP=1 -v n="$PRELOAD" -f "$ROOT/bench/append-preload.sql"
"$ROOT/scripts/pg" stop "$dir/pg" >/dev/null
data=$(cat "$dir/pg/realdir" 2>/dev/null || echo "$dir/pg")/data
mkdir "$dir/cg"
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
	chown postgres: "$dir/cg"
	as_pg=(runuser -u postgres --)
fi
(cd / && exec "${as_pg[@]}" valgrind --tool=callgrind -q \
	--callgrind-out-file="$dir/cg/cg.%p" "$PGBIN/postgres" -D "$data" \
	-c autovacuum=off "${settings[@]}" >"$dir/cg/server.log" 2>&1) &
vpid=$!
for _ in $(seq 600); do
	psql -qXAtc 'SELECT 1' >/dev/null 2>&1 && break
	sleep 0.5
done
echo "# $("$PGBIN/postgres" --version) ${PG_SETTINGS:-}, preload $PRELOAD events, $B1 and $B2 batches of 12 per way, instructions per event"
for b in "$B1" "$B2"; do
	"$BUILD/bench/append-cpu" 1 "$b" "$ACCOUNTS" >/dev/null 2>"$dir/pids.$b"
done
stop_server
for mode in $MODES; do
	ir=()
	for b in "$B1" "$B2"; do
		pid=$(sed -n "s/^$mode: backend //p" "$dir/pids.$b")
		ir+=("$(sed -n 's/^totals: *//p' "$dir/cg/cg.$pid")")
	done
	echo "$mode $(( (ir[1] - ir[0]) / ((B2 - B1) * 12) ))"
done
