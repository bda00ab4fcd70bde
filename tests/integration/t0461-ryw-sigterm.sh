#!/usr/bin/env bash
# t0461-ryw-sigterm.sh - SIGTERM while reads wait for a position (issue
# 12, finding 12). Three GETs wait for a token the views never reach
# (X-Min-Position on the in-memory view and on the raw log, and
# ?min_position= as a query argument), longer than SHUTDOWN_GRACE_MS; a
# fourth client holds a request half-sent, so that the stop goes on
# waiting after it answered the three 503 and their waits run out
# meanwhile: the timer then reads each request's token, long after the
# connection's memory was freed. Each waiting GET gets a complete 503,
# the service exits 0, and its log holds no sanitizer report (the test
# bites under `make SANITIZE=1 test`: a plain build does not see a read
# of freed memory).
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

FAR=99999999999.1
GRACE=500
WAIT=6000
# SIGTERM this long after the reads began: their 503s go out 400 ms
# before their waits run out, and the stop then waits up to 1 s more for
# the stalled client
TERM_AT=$((WAIT - GRACE - 400))

migrate_db
start_service CMD command-service BIND_ADDRESS=127.0.0.1
start_service QRY query-service BIND_ADDRESS=127.0.0.1 \
	SHUTDOWN_GRACE_MS=$GRACE POLL_INTERVAL_MS=100
http POST "$CMD_URL/accounts" '{"owner":"Tess","currency":"EUR"}'
expect_status 201
A=$(jq -r .account_id <<<"$HTTP_BODY")

# waiting NAME URL [curl args]: a GET in the background; its status in
# $TEST_TMP/NAME.st, its body in NAME.body
PIDS=()
waiting()
{
	local name=$1 url=$2

	shift 2
	(
		st=$(curl -s -o "$TEST_TMP/$name.body" -w '%{http_code}' \
			--max-time 20 -H "X-Wait-Ms: $WAIT" "$@" "$url") ||
			st=000
		echo "$st" >"$TEST_TMP/$name.st"
	) &
	PIDS+=($!)
}

parked()
{
	curl -s --max-time 5 "$QRY_URL/metrics" |
		grep -qx "tandem_waiting_requests $1"
}

say "three reads wait for a position the views never reach"
t0=$(_lib_now_ms)
waiting memory "$QRY_URL/accounts/$A" -H "X-Min-Position: $FAR"
waiting log "$QRY_URL/streams/account-$A" -H "X-Min-Position: $FAR"
waiting query "$QRY_URL/events?limit=5&min_position=$FAR"
wait_for 10 parked 3

# a request line and half the headers, then nothing until well after the
# waits ran out
perl -MIO::Socket::INET -e '
	my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1",
		PeerPort => $ARGV[0]) or die "connect: $!";
	$s->autoflush(1);
	print $s "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n";
	sleep $ARGV[1];' "$QRY_PORT" $((WAIT / 1000 + 2)) &
STALLED=$!
track_pid "$STALLED"
left=$((t0 + TERM_AT - $(_lib_now_ms)))
[ "$left" -gt 100 ] || fail "the reads took too long to park"
sleep "$((left / 1000)).$(printf '%03d' $((left % 1000)))"

say "SIGTERM"
expect_eq "$(stop_pid "$QRY_PID")" 0 "query-service exit status"
for p in "${PIDS[@]}"; do
	wait "$p" || true
done
for name in memory log query; do
	expect_eq "$(cat "$TEST_TMP/$name.st")" 503 "answer to the $name read"
	jq -e '.status == 503' "$TEST_TMP/$name.body" >/dev/null ||
		fail "$name read: body $(cat "$TEST_TMP/$name.body")"
done
! grep -E 'Sanitizer|runtime error' "$TEST_TMP/QRY.log" ||
	fail "a sanitizer report in the query service's log"
grep -q '"event":"stopped"' "$TEST_TMP/QRY.log" || fail "no stopped line"
expect_eq "$(stop_pid "$CMD_PID")" 0 "command-service exit status"
