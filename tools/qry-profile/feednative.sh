#!/bin/bash
# feednative.sh BIN TB URLFILE: eps, service cpu, pg cpu for GET /events over the log
BIN=$1; TB=$2; URL=$(cat $3)
PORT=$((20000 + RANDOM % 10000))
DATABASE_URL=$URL AUTH=off LOG_LEVEL=warn PORT=$PORT taskset -c 0 $BIN > /tmp/qh/fn.log 2>&1 &
P=$!
for i in $(seq 1 100); do curl -sf http://127.0.0.1:$PORT/health >/dev/null && break; sleep 0.2; done
sleep 3
c0=$(awk '{print $14+$15}' /proc/$P/stat); p0=$(/tmp/qh/pgcpu.sh)
taskset -c 1 $TB feed --query http://127.0.0.1:$PORT --limit 1000 | tail -1
c1=$(awk '{print $14+$15}' /proc/$P/stat); p1=$(/tmp/qh/pgcpu.sh)
echo "service cpu $(echo "($c1 - $c0)/100" | bc -l | cut -c1-5) s, pg cpu $(echo "$p1 - $p0" | bc) s"
kill $P; wait $P
