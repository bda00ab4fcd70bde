#!/bin/bash
# rebuild.sh BIN TAG [callgrind]: run `query-service rebuild`, print wall, service CPU, PG CPU, Ir
BIN=$1; TAG=$2; MODE=${3:-native}
URL=$(cat ${URLF:-/tmp/qh/url})
p0=$(/tmp/qh/pgcpu.sh)
if [ "$MODE" = callgrind ]; then
  /usr/bin/time -f "%e wall %U user %S sys" env DATABASE_URL=$URL LOG_LEVEL=info valgrind --tool=callgrind --callgrind-out-file=/tmp/qh/cg.rebuild.$TAG $BIN rebuild >/tmp/qh/rebuild.$TAG.log 2>&1
  grep -E 'Collected|rebuild_done' /tmp/qh/rebuild.$TAG.log | tail -2
else
  /usr/bin/time -o /tmp/qh/time.$TAG -f "%e wall %U user %S sys" env DATABASE_URL=$URL LOG_LEVEL=info ${TS:-} $BIN rebuild >/tmp/qh/rebuild.$TAG.log 2>&1
  cat /tmp/qh/time.$TAG; grep rebuild_done /tmp/qh/rebuild.$TAG.log
fi
p1=$(/tmp/qh/pgcpu.sh)
echo "pg cpu: $(echo "$p1 - $p0" | bc)"
