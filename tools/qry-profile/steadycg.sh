#!/bin/bash
# steadycg.sh BIN TAG RATE SECS: the service under callgrind at a steady rate; instructions per event
BIN=$1; TAG=$2; RATE=${3:-20}; SECS=${4:-20}
. /tmp/qh/env; export PGHOST PGPORT PGUSER
export PATH=/usr/lib/postgresql/15/bin:$PATH
DB=st_$TAG
psql -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB TEMPLATE proj_v3" 2>/dev/null
URL="postgresql://$PGUSER@127.0.0.1:$PGPORT/$DB"
PORT=$((20000 + RANDOM % 10000))
rm -f /tmp/qh/cg.st.$TAG*
DATABASE_URL=$URL AUTH=off LOG_LEVEL=warn PORT=$PORT valgrind --tool=callgrind --callgrind-out-file=/tmp/qh/cg.st.$TAG $BIN > /tmp/qh/stcg.$TAG.log 2>&1 &
P=$!
for i in $(seq 1 300); do curl -sf http://127.0.0.1:$PORT/health >/dev/null && break; sleep 0.2; done
sleep 8
n0=$(psql -d $DB -Atc "select count(*) from events")
callgrind_control -z $P >/dev/null
pgbench -n -c 1 -R $RATE -T $SECS -f /tmp/qh/dep.sql $DB > /tmp/qh/stcg.$TAG.pgb 2>&1
sleep 2
callgrind_control -d $P >/dev/null
n1=$(psql -d $DB -Atc "select count(*) from events")
kill $P; wait $P
n=$((n1 - n0))
ir=$(callgrind_annotate $(ls -t /tmp/qh/cg.st.$TAG.* | head -1) 2>/dev/null | grep -m1 "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
echo "$TAG: events $n, Ir $ir, Ir/event $((ir / n))"
