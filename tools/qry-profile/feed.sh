#!/bin/bash
# feed.sh BIN TBENCH TAG: query service under callgrind, zero after start, feed, dump
BIN=$1; TB=$2; TAG=$3
URL=$(cat /tmp/qh/url)
PORT=$((20000 + RANDOM % 10000))
rm -f /tmp/qh/cg.feed.$TAG*
DATABASE_URL=$URL AUTH=off LOG_LEVEL=warn PORT=$PORT valgrind --tool=callgrind --callgrind-out-file=/tmp/qh/cg.feed.$TAG $BIN > /tmp/qh/feed.$TAG.log 2>&1 &
VPID=$!
for i in $(seq 1 300); do curl -sf http://127.0.0.1:$PORT/health >/dev/null && break; sleep 0.5; done
# let the projector settle (views caught up by a rebuild beforehand)
sleep 5
curl -s http://127.0.0.1:$PORT/events?limit=1 >/dev/null
callgrind_control -z $VPID >/dev/null
$TB feed --query http://127.0.0.1:$PORT --limit 1000 | tail -1
callgrind_control -d $VPID >/dev/null
kill -TERM $VPID; wait $VPID
ls /tmp/qh/cg.feed.$TAG*
