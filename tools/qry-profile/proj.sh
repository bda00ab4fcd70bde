#!/bin/bash
# proj.sh BIN TAG: projector catch-up over 100k events under callgrind; PG cpu too
BIN=$1; TAG=$2
. /tmp/qh/env; export PGHOST PGPORT PGUSER
export PATH=/usr/lib/postgresql/15/bin:$PATH
DB=proj_$TAG
psql -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB TEMPLATE proj0"
URL="postgresql://$PGUSER@127.0.0.1:$PGPORT/$DB"
PORT=$((20000 + RANDOM % 10000))
rm -f /tmp/qh/cg.proj.$TAG*
p0=$(/tmp/qh/pgcpu.sh); t0=$(date +%s.%N)
DATABASE_URL=$URL AUTH=off LOG_LEVEL=warn PORT=$PORT ${VG-valgrind --tool=callgrind --callgrind-out-file=/tmp/qh/cg.proj.$TAG} $BIN > /tmp/qh/proj.$TAG.log 2>&1 &
VPID=$!
while :; do
  n=$(psql -d $DB -Atc "select min(applied) from projection_checkpoints" 2>/dev/null)
  [ "${n:-0}" -ge 100000 ] && break
  sleep 0.5
done
t1=$(date +%s.%N); p1=$(/tmp/qh/pgcpu.sh)
kill -TERM $VPID; wait $VPID
grep -h 'Collected' /tmp/qh/proj.$TAG.log
echo "wall $(echo "$t1 - $t0" | bc) pg cpu $(echo "$p1 - $p0" | bc)"
psql -d $DB -Atc "select view, applied, position from projection_checkpoints"
