# bench/ab-lib.sh - what the side-by-side scripts (bench/ab-*.sh) share,
# sourced after they set ROOT:
#
#   . "$ROOT/bench/ab-lib.sh" NAME $# [MIN]
#
# checks that the script was given MIN REPOs or more (default 2; else
# its usage, exit 2), sets ROUNDS (default 3), makes WORK (a scratch folder, NAME in
# its name, removed at exit), starts a throwaway cluster there on CPU 0
# (scripts/pg: PGHOST, PGPORT, PGUSER set; PM its postmaster) and stops it
# at exit, with every service `start` left running. Then:
#   ticks PID...        utime + stime of those processes, in clock ticks
#                       (HZ a second); one that has exited counts 0
#   pg_ticks            the same of the postmaster, its live children and
#                       those it has reaped
#   free_port           a free TCP port on 127.0.0.1
#   url N               the conninfo of database dN
#   accounts_db N REPO  database dN, migrated by REPO's migrate, with the
#                       10,000 accounts of bench/seed.sql (their ids in
#                       WORK/accounts.txt, as bench/deposits.lua reads them),
#                       vacuumed and analyzed
#   start REPO NAME PATH [VAR=VALUE...]
#                       REPO's bin/NAME on CPU 0 (AUTH=off, LOG_LEVEL=warn,
#                       on 127.0.0.1, its log WORK/NAME.log) until GET
#                       PATH answers; sets svc (its PID) and port
#   deposits SECS       wrk -t1 -c64 on CPU 1, SECS seconds of
#                       bench/deposits.lua against the service on port
#   stop [PID]          stop that service (default: svc)
# shellcheck shell=bash

if [ "${3:-2}" -ge 2 ]; then
	[ "$2" -ge "${3:-2}" ] || { echo "usage: $0 REPO_A REPO_B [...]" >&2; exit 2; }
else
	[ "$2" -eq 1 ] || { echo "usage: $0 REPO" >&2; exit 2; }
fi
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
chmod 755 "$WORK"
svc=
svcs=() # started, not yet stopped
ab_cleanup()
{
	local p

	for p in "${svcs[@]}"; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null || true
	done
	"$ROOT/scripts/pg" stop "$WORK/pg" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap ab_cleanup EXIT
eval "$(taskset -c 0 "$ROOT/scripts/pg" start "$WORK/pg")"
PM=$TANDEM_PG_PID
# shellcheck disable=SC2034 # for the scripts that source this
HZ=$(getconf CLK_TCK)

ticks()
{
	local s=0 p v

	for p in "$@"; do
		# a backend may exit between the listing and the reading
		v=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null) ||
			v=0
		s=$((s + ${v:-0}))
	done
	echo "$s"
}

pg_ticks()
{
	# shellcheck disable=SC2046 # one PID a word
	echo $(($(ticks $(pgrep -P "$PM")) +
		$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$PM/stat")))
}

free_port()
{
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

url() { echo "postgresql:///d$1?host=$PGHOST&port=$PGPORT&user=$PGUSER"; }

accounts_db()
{
	psql -q -c "CREATE DATABASE d$1" >/dev/null
	MIGRATIONS_DIR=$2/migrations DATABASE_URL=$(url "$1") LOG_LEVEL=warn \
		"$2/bin/migrate" >/dev/null
	psql -q -d "d$1" -v tag=acct -v accounts=10000 -v steps=0 \
		-v mix=traffic -v chunk=1000 -f "$ROOT/bench/seed.sql" >/dev/null
	psql -At -d "d$1" -c "SELECT md5('acct:' || a)::uuid
		FROM generate_series(0, 9999) a" >"$WORK/accounts.txt"
	psql -q -d "d$1" -c "VACUUM ANALYZE"
}

start()
{
	local repo=$1 name=$2 path=$3

	shift 3
	port=$(free_port)
	env "$@" AUTH=off LOG_LEVEL=warn PORT="$port" BIND_ADDRESS=127.0.0.1 \
		taskset -c 0 "$repo/bin/$name" >"$WORK/$name.log" 2>&1 &
	svc=$!
	svcs+=("$svc")
	for _ in $(seq 1 200); do
		curl -sf -o /dev/null "http://127.0.0.1:$port$path" && return 0
		sleep 0.1
	done
	echo "$name of $repo did not start (see $WORK/$name.log)" >&2
	exit 1
}

deposits()
{
	taskset -c 1 wrk -t1 -c64 -d"$1s" -s "$ROOT/bench/deposits.lua" \
		"http://127.0.0.1:$port" -- "$WORK/accounts.txt" >/dev/null
}

# shellcheck disable=SC2120 # PID is optional
stop()
{
	local p=${1:-$svc} q left=()

	kill "$p"
	wait "$p" 2>/dev/null || true
	for q in "${svcs[@]}"; do
		[ "$q" = "$p" ] || left+=("$q")
	done
	svcs=("${left[@]}")
	[ "$p" != "$svc" ] || svc=
}
