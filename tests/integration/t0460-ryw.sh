#!/usr/bin/env bash
# t0460-ryw.sh - read-your-writes on the query service: after every
# command of a scripted session through the command service, a GET with
# the command's position token (X-Min-Position or ?min_position=) sees
# it in every view at once; a parked request is answered as soon as the
# view passes its token, and one of the raw log (/streams, /events) as
# soon as the log read covers it (a psql transaction holding an event
# commits while the GETs wait); an unreachable token is 503 with
# Retry-After within the wait bound, on the raw log too; 304 on a matching ETag; /status names the pid of
# the held transaction; 1,000 parked requests do not keep other GETs
# from answering, and all of them end 503 with Retry-After.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

PARKED=1000
# each curl process drives at most 300 transfers at once
PER_CURL=250
[ "$(ulimit -n)" -ge $((PARKED + 200)) ] || ulimit -n $((PARKED + 200)) ||
	fail "cannot raise the file limit to $((PARKED + 200))"

migrate_db
start_service CMD command-service DB_POOL_SIZE=4
# all $PARKED waiting clients come from 127.0.0.1: no per-address limit
start_service QRY query-service POLL_INTERVAL_MS=100 READ_POOL_SIZE=2 \
	MAX_CONNECTIONS=$((PARKED + 100)) PER_IP_CONNECTION_LIMIT=0

TOKEN=

# ryw_covers PATH: ryw (lib.sh) with the last command's token, no retry
ryw_covers()
{
	ryw "$1"
	has_header X-Position || fail "no X-Position on $1"
	# the view's position covers the token it was asked for
	expect_eq "$("$TANDEM_BUILD/tests/qry_token_covers" "$(header X-Position)" "$TOKEN")" \
		1 "X-Position of $1 covers $TOKEN"
}

TODAY=$(psql_q "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')")

say "a scripted session: every command is visible at once in every view"
cmd /accounts '{"owner":"Rita","currency":"EUR"}'
A=$(jq -r .account_id <<<"$HTTP_BODY")
ryw_covers "/accounts/$A"
expect_json .version 1
expect_json .balance 0
ryw_covers "/owners/Rita/accounts"
expect_json '.items | length' 1
cmd /accounts '{"owner":"Rita","currency":"EUR"}'
B=$(jq -r .account_id <<<"$HTTP_BODY")
ryw_covers "/owners/Rita/accounts"
expect_json '.items | length' 2
bal_a=0 bal_b=0 dep=0 ndep=0 wd=0 nwd=0 tr=0 ntr=0 ver_a=1 ver_b=1
for i in $(seq 1 12); do
	case $((i % 4)) in
	0)
		amt=$((i * 100))
		cmd "/accounts/$A/deposits" "{\"amount\":$amt}"
		bal_a=$((bal_a + amt)) dep=$((dep + amt)) ndep=$((ndep + 1))
		ver_a=$((ver_a + 1))
		;;
	1)
		amt=$((i * 7 + 1000))
		cmd "/accounts/$B/deposits" "{\"amount\":$amt}"
		bal_b=$((bal_b + amt)) dep=$((dep + amt)) ndep=$((ndep + 1))
		ver_b=$((ver_b + 1))
		;;
	2)
		amt=$((i * 3))
		cmd /transfers "{\"from\":\"$B\",\"to\":\"$A\",\"amount\":$amt}"
		bal_b=$((bal_b - amt)) bal_a=$((bal_a + amt))
		tr=$((tr + amt)) ntr=$((ntr + 1))
		ver_a=$((ver_a + 1)) ver_b=$((ver_b + 1))
		;;
	3)
		amt=$i
		cmd "/accounts/$B/withdrawals" "{\"amount\":$amt}"
		bal_b=$((bal_b - amt)) wd=$((wd + amt)) nwd=$((nwd + 1))
		ver_b=$((ver_b + 1))
		;;
	esac
	ryw_covers "/accounts/$A"
	expect_json .balance "$bal_a"
	expect_json .version "$ver_a"
	http GET "$QRY_URL/accounts/$B?min_position=$TOKEN"
	expect_status 200
	expect_json .balance "$bal_b"
	expect_json .version "$ver_b"
	ryw_covers "/accounts/$B/transactions?limit=1000"
	expect_json '.items[-1].version' "$ver_b"
	expect_json '.items[-1].balance_after' "$bal_b"
	ryw_covers "/owners/Rita/accounts"
	expect_json '.totals[0].balance' $((bal_a + bal_b))
	ryw_covers "/stats/daily?from=$TODAY&to=$TODAY"
	expect_json '.items[0].deposits.sum' "$dep"
	expect_json '.items[0].deposits.count' "$ndep"
	expect_json '.items[0].withdrawals.sum' "$wd"
	expect_json '.items[0].withdrawals.count' "$nwd"
	expect_json '.items[0].transfers.sum' "$tr"
	expect_json '.items[0].transfers.count' "$ntr"
	ryw_covers "/audit/large-transactions?min_amount=1"
	expect_json '[.items[].version] | length' $((ver_a - 1 + ver_b - 1))
done

say "304 on a matching ETag, 200 once the view changed"
ryw_covers "/accounts/$A"
ETAG=$(header ETag)
expect_eq "$ETAG" "\"$ver_a\"" "account ETag"
http GET "$QRY_URL/accounts/$A" "" -H "If-None-Match: $ETAG"
expect_status 304
[ -z "$HTTP_BODY" ] || fail "304 with a body: $HTTP_BODY"
ryw_covers "/accounts/$A/transactions"
SETAG=$(header ETag)
http GET "$QRY_URL/accounts/$A/transactions" "" -H "If-None-Match: $SETAG"
expect_status 304
expect_header ETag "$SETAG"
cmd "/accounts/$A/deposits" '{"amount":5}'
http GET "$QRY_URL/accounts/$A" "" -H "If-None-Match: $ETAG" -H "X-Min-Position: $TOKEN"
expect_status 200
http GET "$QRY_URL/accounts/$A/transactions" "" -H "If-None-Match: $SETAG" \
	-H "X-Min-Position: $TOKEN"
expect_status 200

say "an unreachable token: 503 with Retry-After within the wait bound"
FAR=999999999999.1
for path in "/accounts/$A" "/accounts/$A/transactions" /stats/daily \
	/owners/Rita/accounts "/streams/account-$A" /events; do
	t0=$(date +%s%N)
	http GET "$QRY_URL$path" "" -H "X-Min-Position: $FAR" -H 'X-Wait-Ms: 400'
	ms=$((($(date +%s%N) - t0) / 1000000))
	expect_status 503
	expect_header Content-Type application/problem+json
	expect_header Retry-After 1
	has_header X-Position || fail "503 without X-Position"
	[ "$ms" -ge 400 ] || fail "$path answered 503 after $ms ms, before the wait"
	[ "$ms" -lt 5000 ] || fail "$path answered after $ms ms"
done
http GET "$QRY_URL/accounts/$A" "" -H 'X-Min-Position: 999999999:999999999:' \
	-H 'X-Wait-Ms: 0'
expect_status 503

say "a held transaction: pending in /status; parked GETs answered at its commit"
mkfifo "$TEST_TMP/psql.in"
psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" \
	<"$TEST_TMP/psql.in" >"$TEST_TMP/psql.out" 2>&1 &
PSQL=$!
track_pid "$PSQL"
exec 7>"$TEST_TMP/psql.in"
echo "BEGIN;
INSERT INTO events (stream_id, stream_version, event_id, event_type, data, metadata)
VALUES ('held-1', 1, gen_random_uuid(), 'Held', '{}', '{}');
SELECT 'held ' || pg_backend_pid() || ' ' || pg_current_xact_id() || '.' ||
	(SELECT max(global_position) FROM events WHERE stream_id = 'held-1');" >&7
wait_for 10 grep -q '^held ' "$TEST_TMP/psql.out"
read -r _ HPID HTOKEN < <(grep '^held ' "$TEST_TMP/psql.out")
say "held: pid $HPID, token $HTOKEN"
http GET "$QRY_URL/status"
expect_status 200
jq -e --argjson p "$HPID" 'any(.pending_transactions[]; .pid == $p and
	(.age_ms | type) == "number" and (.xid | type) == "string" and
	.application_name == "psql" and (has("query") | not))' \
	<<<"$HTTP_BODY" >/dev/null ||
	fail "/status does not name pid $HPID: $HTTP_BODY"
say "later commands are readable at once while it is held"
cmd "/accounts/$A/deposits" '{"amount":7}'
ryw_covers "/accounts/$A"
ryw_covers "/accounts/$A/transactions"
say "GETs parked on the held token, then COMMIT"
# the raw log too: /streams/held-1 is 404 until the commit
for path in "/accounts/$A" "/accounts/$A/transactions" "/stats/daily" \
	/streams/held-1 "/events?limit=1000"; do
	curl -sS --max-time 15 -o /dev/null -w '%{http_code}\n' \
		-H "X-Min-Position: $HTOKEN" -H 'X-Wait-Ms: 10000' \
		"$QRY_URL$path" >>"$TEST_TMP/parked.out" 2>&1 &
	track_pid $!
done
wait_for 5 bash -c "curl -s '$QRY_URL/metrics' | grep -qx 'tandem_waiting_requests 5'"
t0=$(date +%s%N)
echo "COMMIT;" >&7
exec 7>&-
wait_for 8 bash -c "[ \$(grep -c . '$TEST_TMP/parked.out') -eq 5 ]"
ms=$((($(date +%s%N) - t0) / 1000000))
expect_eq "$(sort -u "$TEST_TMP/parked.out")" 200 "parked GETs after the commit"
[ "$ms" -lt 5000 ] || fail "parked GETs took $ms ms after the commit"
say "answered $ms ms after the commit"
wait "$PSQL" || fail "psql failed: $(cat "$TEST_TMP/psql.out")"
http GET "$QRY_URL/status"
jq -e --argjson p "$HPID" 'all(.pending_transactions[]; .pid != $p)' \
	<<<"$HTTP_BODY" >/dev/null || fail "pid $HPID still pending: $HTTP_BODY"
http GET "$QRY_URL/streams/held-1" "" -H "X-Min-Position: $HTOKEN"
expect_status 200
expect_json '.items[0].type' Held

say "$PARKED parked requests; other GETs still answer"
FARTOK=99999999999.1
: >"$TEST_TMP/urls"
for path in "/accounts/$A" "/accounts/$A/transactions"; do
	for i in $(seq 1 $((PARKED / 2))); do
		printf 'url = "%s%s"\noutput = "/dev/null"\n' "$QRY_URL" "$path"
	done >>"$TEST_TMP/urls"
done
split -l $((PER_CURL * 2)) "$TEST_TMP/urls" "$TEST_TMP/urls."
# a wait long enough that the first are still parked when the last park,
# on a loaded machine too
for f in "$TEST_TMP"/urls.*; do
	curl -s --parallel --parallel-immediate --parallel-max $PER_CURL \
		--max-time 30 -H "X-Min-Position: $FARTOK" -H 'X-Wait-Ms: 8000' \
		-w '%{http_code} %header{retry-after}\n' --config "$f" \
		>"$f.out" 2>"$f.err" &
	track_pid $!
	echo $! >>"$TEST_TMP/curls"
done
wait_for 10 bash -c "curl -s '$QRY_URL/metrics' | grep -qx 'tandem_waiting_requests $PARKED'"
say "all $PARKED parked"
for i in $(seq 1 50); do
	case $((i % 3)) in
	0) path="/accounts/$A" ;;
	1) path="/accounts/$A/transactions" ;;
	2) path="/stats/daily" ;;
	esac
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$QRY_URL$path") ||
		fail "GET $path failed while $PARKED requests were parked"
	expect_eq "$code" 200 "GET $path while parked"
done
say "50 GETs answered; waiting for the parked ones"
while read -r pid; do
	wait "$pid" || true
done <"$TEST_TMP/curls"
cat "$TEST_TMP"/urls.*.out >"$TEST_TMP/parked.all"
expect_eq "$(grep -c . "$TEST_TMP/parked.all")" "$PARKED" "parked answers"
expect_eq "$(sort -u "$TEST_TMP/parked.all")" "503 1" "every parked request: 503, Retry-After: 1"
http GET "$QRY_URL/metrics"
grep -qx 'tandem_waiting_requests 0' <<<"$HTTP_BODY" ||
	fail "waiters left: $(grep waiting <<<"$HTTP_BODY")"

say "SIGTERM with requests parked: they are answered, exit 0"
curl -s --max-time 20 -o /dev/null -w '%{http_code}\n' \
	-H "X-Min-Position: $FARTOK" -H 'X-Wait-Ms: 10000' \
	"$QRY_URL/accounts/$A" >"$TEST_TMP/last.out" 2>&1 &
LAST=$!
wait_for 5 bash -c "curl -s '$QRY_URL/metrics' | grep -qx 'tandem_waiting_requests 1'"
expect_eq "$(stop_pid "$QRY_PID")" 0 "query-service exit status"
wait "$LAST" || true
expect_eq "$(cat "$TEST_TMP/last.out")" 503 "a parked request at shutdown"
expect_eq "$(stop_pid "$CMD_PID")" 0 "command-service exit status"
