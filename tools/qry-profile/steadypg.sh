#!/bin/bash
# steadypg.sh BIN TAG RATE SECS: projector at a steady append rate; CPU per event of
# the service and of its own PostgreSQL backends (application_name tandem-*), not pgbench's
BIN=$1; TAG=$2; RATE=${3:-100}; SECS=${4:-20}
. /tmp/qh/env; export PGHOST PGPORT PGUSER
export PATH=/usr/lib/postgresql/15/bin:$PATH
DB=st_$TAG
psql -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB TEMPLATE proj_v3" 2>/dev/null
URL="postgresql://$PGUSER@127.0.0.1:$PGPORT/$DB"
PORT=$((20000 + RANDOM % 10000))
DATABASE_URL=$URL AUTH=off LOG_LEVEL=warn PORT=$PORT $BIN > /tmp/qh/st.$TAG.log 2>&1 &
P=$!
for i in $(seq 1 100); do curl -sf http://127.0.0.1:$PORT/health >/dev/null && break; sleep 0.2; done
sleep 3
pids=$(psql -d $DB -Atc "select string_agg(pid::text,' ') from pg_stat_activity where application_name like 'tandem-%' and datname = '$DB'")
bcpu() { for b in $pids; do awk '{print $14+$15}' /proc/$b/stat; done | awk '{s+=$1} END {print s+0}'; }
n0=$(psql -d $DB -Atc "select count(*) from events")
c0=$(awk '{print $14+$15}' /proc/$P/stat); b0=$(bcpu)
pgbench -n -c 1 -R $RATE -T $SECS -f /tmp/qh/dep.sql $DB > /tmp/qh/st.$TAG.pgb 2>&1
sleep 1
c1=$(awk '{print $14+$15}' /proc/$P/stat); b1=$(bcpu)
n1=$(psql -d $DB -Atc "select count(*) from events")
pids2=$(psql -d $DB -Atc "select string_agg(pid::text,' ') from pg_stat_activity where application_name like 'tandem-%' and datname = '$DB'")
kill $P; wait $P
n=$((n1 - n0))
echo "$TAG: events $n, service $(echo "($c1 - $c0)*10000/$n" | bc) us/event, its backends $(echo "($b1 - $b0)*10000/$n" | bc) us/event (backends same: $([ "$pids" = "$pids2" ] && echo yes || echo no))"
