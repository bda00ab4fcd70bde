#!/usr/bin/env bash
# t0480-poison.sh - one event never stops the read side (SPEC section 3,
# guarantee 6).
#   1. Any valid JSON value in a stream the views do not fold is data:
#      raw appends carrying 1e19 and 1e308 (jsonb keeps them as 20- and
#      309-digit integers) and a 21-digit integer written by a plain
#      INSERT stop no view; /streams and /events serve them as stored; a
#      restart and a rebuild go through them; nothing is parked.
#   2. A malformed payload in an account stream (a balance_after of 21
#      digits, a string amount) parks that stream alone, for every view
#      that folds it, from that event on: its later events wait with it;
#      a deposit to another account is visible within the normal wait;
#      /status, /metrics and `parked list` name it; GET /accounts/{id}
#      and its transactions are 503 naming the position and the reason;
#      a restart and a rebuild keep it parked; `parked retry` re-parks it
#      with the same error (no fix for a malformed event is deployed
#      here).
#   3. A retry after a fix: the daily view parked on a sum past 2^63 - 1,
#      as it was before view_daily's sums became numeric (the row such a
#      projector left, written by hand), takes the stream's waiting
#      events on `parked retry daily STREAM`, with nothing appended
#      after the retry (an idle leader commits nothing, and still finds
#      it), and the next deposit too.
#   (A sum past 2^63 - 1 itself parks nothing any more: t0475.)
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

migrate_db
start_service CMD command-service
start_service QRY query-service POLL_INTERVAL_MS=50

# a deposit of `amount` to account $1 is visible in every view at once
deposit_visible()
{
	local id=$1 amount=$2 bal

	ryw "/accounts/$id"
	bal=$(jq -r .balance <<<"$HTTP_BODY")
	cmd "/accounts/$id/deposits" "{\"amount\":$amount}"
	ryw "/accounts/$id"
	expect_json .balance $((bal + amount))
	ryw "/accounts/$id/transactions?limit=1000"
	expect_json '.items[-1].balance_after' $((bal + amount))
	ryw "/stats/daily"
	ryw "/audit/large-transactions?min_amount=1"
}

E308=1$(printf '0%.0s' $(seq 1 308))
E19=10000000000000000000
D21=123456789012345678901

say "1. numbers of any size in a stream the views do not fold"
cmd /accounts '{"owner":"Poe","currency":"EUR"}'
A=$(jq -r .account_id <<<"$HTTP_BODY")
deposit_visible "$A" 100
cmd /streams/misc-2/events \
	'{"expected_version":"any","events":[{"type":"Note","data":{"x":1e19}}]}'
cmd /streams/misc-2/events \
	'{"expected_version":"any","events":[{"type":"Note","data":{"x":1e308},"metadata":{"y":1e19}}]}'
psql_q "INSERT INTO events (stream_id, stream_version, event_id, event_type,
	data, metadata) VALUES ('misc-3', 1, gen_random_uuid(), 'Note',
	'{\"n\": $D21, \"a\": [$E19, -$D21]}', '{\"m\": $D21}')" >/dev/null
NOTE=$(psql_q "SELECT transaction_id || '.' || global_position FROM events
	WHERE stream_id = 'misc-3'")
deposit_visible "$A" 5
http GET "$QRY_URL/streams/misc-2" "" -H "X-Min-Position: $NOTE"
expect_status 200
expect_json '.items | length' 2
expect_text "\"data\":{\"x\":$E19}"
expect_text "\"data\":{\"x\":$E308},\"metadata\":{\"y\":$E19"
http GET "$QRY_URL/streams/misc-3"
expect_status 200
expect_text "\"data\":{\"a\":[$E19,-$D21],\"n\":$D21},\"metadata\":{\"m\":$D21}"
http GET "$QRY_URL/events?limit=1000" "" -H "X-Min-Position: $NOTE"
expect_status 200
expect_text "\"data\":{\"x\":$E308}"
expect_text "\"metadata\":{\"m\":$D21}"
http GET "$QRY_URL/status"
expect_status 200
expect_json '[.views[] | select(.stopped)] | length' 0

say "a restart and a rebuild read through them"
stop_pid "$QRY_PID"
start_service QRY query-service POLL_INTERVAL_MS=50
deposit_visible "$A" 7
"$TANDEM_BIN/query-service" rebuild 2>"$TEST_TMP/rebuild.log" ||
	fail "rebuild failed: $(tail -3 "$TEST_TMP/rebuild.log")"
deposit_visible "$A" 9
http GET "$QRY_URL/accounts/$A/transactions?limit=1000"
expect_json '[.items[].amount] | add' $((100 + 5 + 7 + 9))
expect_eq "$("$TANDEM_BIN/query-service" parked list)" "" "parked streams"

say "2. malformed payloads in one account stream"
cmd /accounts '{"owner":"Poe","currency":"EUR"}'
B=$(jq -r .account_id <<<"$HTTP_BODY")
deposit_visible "$B" 50
# appended after B's version 2 as a plain INSERT can (the command side
# would not write it)
psql_q "INSERT INTO events (stream_id, stream_version, event_id, event_type,
	data, metadata) VALUES ('account-$B', 3, gen_random_uuid(),
	'MoneyDeposited', '{\"amount\": 5, \"currency\": \"EUR\",
	\"balance_after\": $D21}', '{}')" >/dev/null
BAD=$(psql_q "SELECT global_position FROM events
	WHERE stream_id = 'account-$B' AND stream_version = 3")
psql_q "INSERT INTO events (stream_id, stream_version, event_id, event_type,
	data, metadata) VALUES ('account-$B', 4, gen_random_uuid(),
	'MoneyDeposited', '{\"amount\": 1, \"currency\": \"EUR\",
	\"balance_after\": 56}', '{}')" >/dev/null
cmd /accounts '{"owner":"Poe","currency":"EUR"}'
D=$(jq -r .account_id <<<"$HTTP_BODY")
psql_q "INSERT INTO events (stream_id, stream_version, event_id, event_type,
	data, metadata) VALUES ('account-$D', 2, gen_random_uuid(),
	'MoneyDeposited', '{\"amount\": \"five\", \"currency\": \"EUR\",
	\"balance_after\": 5}', '{}')" >/dev/null
TOKEN=$(psql_q "SELECT transaction_id || '.' || global_position FROM events
	WHERE stream_id = 'account-$D' AND stream_version = 2")
DBAD=${TOKEN#*.}
say "the accounts view reads no amount: only statement and daily park it"
ryw "/accounts/$D"
expect_json .balance 5
say "another account's deposit is visible within the normal wait"
cmd "/accounts/$A/deposits" '{"amount":11}'
http GET "$QRY_URL/accounts/$A/transactions?limit=1000" "" \
	-H "X-Min-Position: $TOKEN"
expect_status 200
deposit_visible "$A" 12
say "the account's read says it is parked"
http GET "$QRY_URL/accounts/$B"
expect_status 503
expect_header Content-Type application/problem+json
expect_text "at position $BAD"
expect_text "too big integer"
# the statement too: 503, and nothing of B from the bad event on
http GET "$QRY_URL/accounts/$B/transactions"
expect_status 503
expect_header Content-Type application/problem+json
expect_text "at position $BAD"
expect_eq "$(psql_q "SELECT max(version) || ' ' || count(*) FROM view_statement
	WHERE account_id = '$B'")" "2 1" "B's statement rows"
http GET "$QRY_URL/status"
for view in accounts statement daily; do
	jq -e --arg v "$view" --arg s "account-$B" --argjson p "$BAD" \
		'any(.views[]; .name == $v and any(.parked[]; .stream == $s
		and .position == $p and (.error | test("too big integer")) and
		(.since | type) == "string"))' <<<"$HTTP_BODY" \
		>/dev/null || fail "/status does not park $view: $HTTP_BODY"
done
jq -e --arg s "account-$D" '[.views[] | select(any(.parked[]; .stream == $s and
	(.error | test("not an integer")))) | .name] == ["statement", "daily"]' \
	<<<"$HTTP_BODY" >/dev/null || fail "/status: $D parked wrong: $HTTP_BODY"
jq -e --arg s "account-$B" '.memory.parked[0].stream == $s' \
	<<<"$HTTP_BODY" >/dev/null || fail "memory view not parked: $HTTP_BODY"
http GET "$QRY_URL/metrics"
[[ $HTTP_BODY == *"tandem_parked_streams{view=\"accounts\"} 1"* ]] ||
	fail "no parked streams in /metrics"
grep -q "^tandem_parked_stream{view=\"daily\",stream=\"account-$B\",position=\"$BAD\",error=\".*too big integer" <<<"$HTTP_BODY" ||
	fail "/metrics does not name the parked stream"
LIST=$("$TANDEM_BIN/query-service" parked list)
expect_eq "$(jq -s -r '[.[] | .view + " " + .stream + " " + (.position | tostring)] | sort | join(",")' <<<"$LIST")" \
	"$(printf '%s\n' "accounts account-$B $BAD" "daily account-$B $BAD" \
		"daily account-$D $DBAD" "statement account-$B $BAD" \
		"statement account-$D $DBAD" | sort | paste -sd,)" "parked list"

say "a restart and a rebuild keep it parked, and the rest moving"
stop_pid "$QRY_PID"
start_service QRY query-service POLL_INTERVAL_MS=50
deposit_visible "$A" 13
http GET "$QRY_URL/accounts/$B"
expect_status 503
"$TANDEM_BIN/query-service" rebuild 2>"$TEST_TMP/rebuild2.log" ||
	fail "rebuild failed: $(tail -3 "$TEST_TMP/rebuild2.log")"
grep -q '"event":"stream_parked"' "$TEST_TMP/rebuild2.log" ||
	fail "the rebuild did not park the stream"
deposit_visible "$A" 14
http GET "$QRY_URL/accounts/$B"
expect_status 503
expect_eq "$("$TANDEM_BIN/query-service" parked list | jq -s length)" 5 \
	"parked after the rebuild"
http GET "$QRY_URL/accounts/$B/transactions"
expect_status 503
expect_eq "$(psql_q "SELECT max(version) || ' ' || count(*) FROM view_statement
	WHERE account_id = '$B'")" "2 1" "B's statement rows after the rebuild"

say "retry without a fix: parked again, with the same error"
rc=0
"$TANDEM_BIN/query-service" parked retry statement "account-$B" \
	2>"$TEST_TMP/retry.log" || rc=$?
expect_eq "$rc" 2 "retry of a malformed event"
"$TANDEM_BIN/query-service" parked list >"$TEST_TMP/list"
jq -e -s --arg s "account-$B" --argjson p "$BAD" 'any(.[]; .view == "statement"
	and .stream == $s and .position == $p and
	(.error | test("too big integer")))' "$TEST_TMP/list" >/dev/null ||
	fail "not parked again: $(cat "$TEST_TMP/list")"
rc=0
"$TANDEM_BIN/query-service" parked retry statement account-nope 2>/dev/null ||
	rc=$?
expect_eq "$rc" 1 "retry of a stream that is not parked"
deposit_visible "$A" 15

say "3. a retry after the fix: daily, parked before its sums were numeric"
stop_pid "$QRY_PID"
cmd /accounts '{"owner":"Poe","currency":"USD"}'
C=$(jq -r .account_id <<<"$HTTP_BODY")
cmd "/accounts/$C/deposits" '{"amount":700}'
CV=$(psql_q "SELECT max(stream_version) FROM events WHERE stream_id = 'account-$C'")
psql_q "INSERT INTO parked_streams (view, stream_id, version, position, error)
	SELECT 'daily', stream_id, stream_version, global_position,
	'bigint out of range' FROM events
	WHERE stream_id = 'account-$C' AND stream_version = $CV" >/dev/null
start_service QRY query-service POLL_INTERVAL_MS=50
ryw "/accounts/$C/transactions"
expect_json '.items[-1].balance_after' 700
ryw "/stats/daily"
jq -e 'all(.items[]; .currency != "USD")' <<<"$HTTP_BODY" >/dev/null ||
	fail "the parked deposit is in the daily view: $HTTP_BODY"
"$TANDEM_BIN/query-service" parked retry daily "account-$C" \
	2>"$TEST_TMP/retry2.log" ||
	fail "retry failed: $(cat "$TEST_TMP/retry2.log")"
# with nothing appended after it: an idle leader commits nothing, and
# still finds the retry (lead_check()): its /status no longer lists the
# stream as parked for the daily view
daily_usd()
{
	http GET "$QRY_URL/stats/daily"
	jq -e --argjson n "$1" --argjson sum "$2" 'any(.items[];
		.currency == "USD" and .deposits.sum == $sum and
		.deposits.count == $n)' <<<"$HTTP_BODY" >/dev/null
}
retried()
{
	http GET "$QRY_URL/status"
	jq -e --arg s "account-$C" '.role == "leader" and all(.views[];
		.name != "daily" or all(.parked[]; .stream != $s))' \
		<<<"$HTTP_BODY" >/dev/null
}
wait_for 10 daily_usd 1 700
wait_for 10 retried
cmd "/accounts/$C/deposits" '{"amount":20}'
ryw "/stats/daily"
jq -e 'any(.items[]; .currency == "USD" and .deposits.sum == 720 and
	.deposits.count == 2)' <<<"$HTTP_BODY" >/dev/null ||
	fail "the retried stream is not in the daily view: $HTTP_BODY"
expect_eq "$("$TANDEM_BIN/query-service" parked list | jq -r -s '[.[].view] | join(",")')" \
	"accounts,daily,daily,statement,statement" "parked after the retry"
http GET "$QRY_URL/accounts/$B"
expect_status 503
