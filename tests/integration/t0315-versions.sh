#!/usr/bin/env bash
# t0315-versions.sh - the client's own concurrency checks (SPEC section 5):
# expected_version in the body (409 with current_version), If-Match (412
# with current_version and ETag), and the raw append's three expected
# version modes, its account-category refusal and its event-id retries.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

migrate_db
start_service CMD command-service

post()
{
	local path=$1 body=$2

	shift 2
	http POST "$CMD_URL$path" "$body" "$@"
}

count()
{
	psql_q "SELECT count(*) FROM events WHERE stream_id = '$1'"
}

post /accounts '{"owner":"Ann","currency":"EUR"}'
expect_status 201
A=$(jq -r .account_id <<<"$HTTP_BODY")
SA=account-$A
post "/accounts/$A/deposits" '{"amount":100}'
expect_json .version 2

say "expected_version in the body"
post "/accounts/$A/deposits" '{"amount":10,"expected_version":2}'
expect_status 201
expect_json .version 3
post "/accounts/$A/withdrawals" '{"amount":10,"expected_version":3}'
expect_status 201
expect_json .version 4
for stale in 2 0 5 99; do
	post "/accounts/$A/deposits" "{\"amount\":10,\"expected_version\":$stale}"
	expect_status 409
	expect_header Content-Type application/problem+json
	expect_json .current_version 4
done
post "/accounts/$A/withdrawals" '{"amount":10,"expected_version":1}'
expect_status 409
expect_json .current_version 4
expect_eq "$(count "$SA")" 4 "mismatches store nothing"
post "/accounts/$A/deposits" '{"amount":10,"expected_version":-1}'
expect_status 422
expect_json '.errors[0].field' expected_version
post "/accounts/$A/deposits" '{"amount":10,"expected_version":"4"}'
expect_status 422
# a matching version does not excuse a rule
post "/accounts/$A/withdrawals" '{"amount":1000,"expected_version":4}'
expect_status 409
expect_json 'has("current_version")' false

say "If-Match"
post "/accounts/$A/deposits" '{"amount":10}' -H 'If-Match: "4"'
expect_status 201
expect_json .version 5
expect_header ETag '"5"'
post "/accounts/$A/deposits" '{"amount":10}' -H 'If-Match: "4"'
expect_status 412
expect_header Content-Type application/problem+json
expect_json .status 412
expect_json .current_version 5
expect_header ETag '"5"'
post "/accounts/$A/withdrawals" '{"amount":10}' -H 'If-Match: "9"'
expect_status 412
expect_json .current_version 5
expect_eq "$(count "$SA")" 5 "a 412 stores nothing"
for bad in '4' 'W/"5"' '"5", "6"' '*' '"abc"' '"-1"' '"05"' '""'; do
	post "/accounts/$A/deposits" '{"amount":10}' -H "If-Match: $bad"
	expect_status 400
done
post /transfers "{\"from\":\"$A\",\"to\":\"$A\",\"amount\":1}" -H 'If-Match: "5"'
expect_status 400
expect_eq "$(count "$SA")" 5 "malformed If-Match stores nothing"

say "close with expected_version and If-Match"
post "/accounts/$A/withdrawals" '{"amount":110}'
expect_status 201
expect_json .balance 0
expect_json .version 6
post "/accounts/$A/close" '{"expected_version":5}'
expect_status 409
expect_json .current_version 6
post "/accounts/$A/close" '{}' -H 'If-Match: "5"'
expect_status 412
expect_json .current_version 6
expect_header ETag '"6"'
post "/accounts/$A/close" '{}' -H 'If-Match: "6"'
expect_status 201
expect_json .version 7

say "raw append: no_stream"
E1='{"type":"OrderPlaced","data":{"sku":"x-1"},"metadata":{"by":"shop"}}'
post /streams/order-1/events "{\"expected_version\":\"no_stream\",\"events\":[$E1]}"
expect_status 201
expect_json 'keys | sort | join(",")' position,version
expect_json .version 1
[[ $(jq -r .position <<<"$HTTP_BODY") =~ ^[0-9]+\.[0-9]+$ ]] || fail "position"
expect_header ETag '"1"'
post /streams/order-1/events "{\"expected_version\":\"no_stream\",\"events\":[$E1]}"
expect_status 409
expect_json .current_version 1
post /streams/order-1/events "{\"expected_version\":0,\"events\":[$E1]}"
expect_status 409
expect_json .current_version 1
expect_eq "$(count order-1)" 1 "no_stream on an existing stream stores nothing"
meta=$(psql_q "SELECT metadata::text FROM events WHERE stream_id = 'order-1'")
expect_eq "$(jq -r .by <<<"$meta")" shop "the client's metadata is kept"
[[ $(jq -r .command_id <<<"$meta") =~ ^[0-9a-f-]{36}$ ]] ||
	fail "no command_id in $meta"

say "raw append: exact version N"
post /streams/order-1/events "{\"expected_version\":1,\"events\":[$E1,$E1]}"
expect_status 201
expect_json .version 3
post /streams/order-1/events "{\"expected_version\":1,\"events\":[$E1]}"
expect_status 409
expect_json .current_version 3
post /streams/order-1/events "{\"expected_version\":7,\"events\":[$E1]}"
expect_status 409
expect_json .current_version 3
post /streams/order-new/events "{\"expected_version\":2,\"events\":[$E1]}"
expect_status 409
expect_json .current_version 0

say "raw append: any"
post /streams/order-1/events "{\"expected_version\":\"any\",\"events\":[$E1]}"
expect_status 201
expect_json .version 4
post /streams/order-2/events "{\"expected_version\":\"any\",\"events\":[$E1]}"
expect_status 201
expect_json .version 1

say "raw append with If-Match"
post /streams/order-1/events "{\"expected_version\":\"any\",\"events\":[$E1]}" \
	-H 'If-Match: "4"'
expect_status 201
expect_json .version 5
post /streams/order-1/events "{\"expected_version\":\"any\",\"events\":[$E1]}" \
	-H 'If-Match: "4"'
expect_status 412
expect_json .current_version 5
expect_header ETag '"5"'
post /streams/order-1/events "{\"expected_version\":3,\"events\":[$E1]}" \
	-H 'If-Match: "5"'
expect_status 400

say "raw append: the account category is refused"
n=$(psql_q "SELECT count(*) FROM events")
for s in "account-$A" "account-x" "Account-1"; do
	post "/streams/$s/events" "{\"expected_version\":\"any\",\"events\":[$E1]}"
	expect_status 422
	expect_json '.errors[0].field' stream_id
done
post /streams/order-1/events '{"expected_version":"any","events":[]}'
expect_status 422
post /streams/order-1/events '{"events":[{"type":"T","data":{}}]}'
expect_status 422
expect_json '.errors[0].field' expected_version
post /streams/order-1/events '{"expected_version":"maybe","events":[{"type":"T","data":{}}]}'
expect_status 422
expect_eq "$(psql_q "SELECT count(*) FROM events")" "$n" "nothing stored"

say "raw append: a retry with the same event ids is stored once"
I1=11111111-2222-4333-8444-555555555501
I2=11111111-2222-4333-8444-555555555502
EV="[{\"type\":\"Shipped\",\"data\":{\"n\":1},\"event_id\":\"$I1\"},{\"type\":\"Billed\",\"data\":{\"n\":2},\"event_id\":\"$I2\"}]"
post /streams/order-3/events "{\"expected_version\":\"no_stream\",\"events\":$EV}"
expect_status 201
expect_json .version 2
first=$HTTP_BODY
# the retry's expectation was met by the first attempt: same answer
post /streams/order-3/events "{\"expected_version\":\"no_stream\",\"events\":$EV}"
expect_status 201
expect_eq "$HTTP_BODY" "$first" "the retry's answer"
post /streams/order-3/events "{\"expected_version\":\"any\",\"events\":$EV}"
expect_status 201
expect_json .version 2
expect_eq "$(count order-3)" 2 "stored once"
expect_eq "$(psql_q "SELECT string_agg(event_id || ':' || stream_version, ','
	ORDER BY stream_version) FROM events WHERE stream_id = 'order-3'")" \
	"$I1:1,$I2:2" "the ids kept"
# an id stored by another append is a conflict
post /streams/order-4/events "{\"expected_version\":\"any\",\"events\":[{\"type\":\"T\",\"data\":{},\"event_id\":\"$I1\"}]}"
expect_status 409
expect_eq "$(count order-4)" 0 "nothing stored"

say "SIGTERM: a clean exit (leak checks run under SANITIZE=1)"
expect_eq "$(stop_pid "$CMD_PID")" 0 "exit status of CMD"
