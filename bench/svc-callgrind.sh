#!/bin/bash
# bench/svc-callgrind.sh - instructions the command service spends per
# deposit, counted by callgrind (repeatable on a loaded machine).
#
#   bench/svc-callgrind.sh REPO N LEVEL OUT
#
# Runs REPO/bin/command-service under valgrind --tool=callgrind with
# AUTH=off and LOG_LEVEL=LEVEL on a fresh database of a throwaway cluster
# (build/svc-cg-pg), opens 8 accounts, then 8 curl clients POST N/8
# deposits each on one connection; SIGTERM ends the service and its
# profile. Prints the total instructions and those in the service's own
# binary. Per deposit: run N=600 and N=1200 and divide the difference by
# 600 (start-up and shutdown cancel out).
set -euo pipefail
REPO=$1 N=$2 LEVEL=$3 OUT=$4
HERE=$(cd "$(dirname "$0")/.." && pwd)
eval "$("$HERE/scripts/pg" start "$HERE/build/svc-cg-pg")"
DB=cg$$
psql -q -c "CREATE DATABASE $DB" >/dev/null
URL="postgresql:///$DB?host=$PGHOST&port=$PGPORT&user=$PGUSER"
DATABASE_URL=$URL "$REPO/bin/migrate" >/dev/null 2>&1
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
DATABASE_URL=$URL AUTH=off LOG_LEVEL=$LEVEL PORT=$PORT \
	valgrind --tool=callgrind --callgrind-out-file="$OUT" \
	"$REPO/bin/command-service" 2>"$OUT.stderr" &
SVC=$!
for _ in $(seq 1 200); do
	curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break
	sleep 0.2
done
accs=()
for _ in 1 2 3 4 5 6 7 8; do
	accs+=("$(curl -s -X POST -H 'Content-Type: application/json' \
		--data '{"owner":"cg","currency":"EUR"}' \
		"http://127.0.0.1:$PORT/accounts" | jq -r .account_id)")
done
per=$((N / 8))
pids=()
for c in 0 1 2 3 4 5 6 7; do
	curl -sS -o /dev/null -w '%{http_code}\n' -X POST \
		-H 'Content-Type: application/json' --data '{"amount":5}' \
		"http://127.0.0.1:$PORT/accounts/${accs[$c]}/deposits?n=[1-$per]" \
		>"$OUT.st.$c" &
	pids+=($!)
done
wait "${pids[@]}"
ok=$(cat "$OUT".st.* | grep -c '^201$' || true)
rm -f "$OUT".st.*
kill -TERM "$SVC"
wait "$SVC" || true
psql -q -c "DROP DATABASE $DB" >/dev/null
callgrind_annotate --threshold=100 "$OUT" >"$OUT.txt" 2>/dev/null
tot=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}' "$OUT.txt")
own=$(awk -v b="[$REPO/bin/command-service]" \
	'$NF == b {gsub(",", "", $1); s += $1} END {print s}' "$OUT.txt")
echo "$REPO N=$N LEVEL=$LEVEL ok=$ok Ir=$tot own=$own"
