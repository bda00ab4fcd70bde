#!/usr/bin/env bash
# t0480-poison.sh - one event never stops the read side (SPEC section 3,
# guarantee 6).
#   1. Any valid JSON value in a stream the views do not fold is data:
#      raw appends carrying 1e19 and 1e308 (jsonb keeps them as 20- and
#      309-digit integers) and a 21-digit integer written by a plain
#      INSERT stop no view; /streams and /events serve them as stored; a
#      restart and a rebuild go through them.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

migrate_db
start_service CMD command-service
start_service QRY query-service POLL_INTERVAL_MS=50

TOKEN=
cmd()
{
	http POST "$CMD_URL$1" "$2"
	expect_status 201
	TOKEN=$(jq -r .position <<<"$HTTP_BODY")
}

# GET with the last command's token: 200 expected
ryw()
{
	http GET "$QRY_URL$1" "" -H "X-Min-Position: $TOKEN" -H 'X-Wait-Ms: 5000'
	expect_status 200
}

# the body holds `text` exactly
expect_text()
{
	[[ $HTTP_BODY == *"$1"* ]] ||
		fail "expected '$1' in the body: $(_lib_short "$HTTP_BODY")"
}

# a deposit of `amount` to account $1 is visible in every view at once
deposit_visible()
{
	local id=$1 amount=$2 bal

	http GET "$QRY_URL/accounts/$id"
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
