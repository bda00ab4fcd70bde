#!/usr/bin/env bash
# t0310-idempotency.sh - Idempotency-Key (SPEC section 5): a repeat gets
# the first answer again with Idempotent-Replayed: true and stores
# nothing; the key with another request is 422; concurrent requests with
# one key store their events once; stored rejections replay; bad keys 400.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

migrate_db
start_service CMD command-service DB_POOL_SIZE=8
start_service CMD2 command-service DB_POOL_SIZE=8

OUT=$TEST_TMP/out
mkdir -p "$OUT"

post()
{
	local path=$1 body=$2

	shift 2
	http POST "$CMD_URL$path" "$body" "$@"
}

nevents()
{
	psql_q "SELECT count(*) FROM events"
}

post /accounts '{"owner":"Ann","currency":"EUR"}'
expect_status 201
A=$(jq -r .account_id <<<"$HTTP_BODY")

say "a repeat replays the first answer and stores nothing"
post "/accounts/$A/deposits" '{"amount":100}' -H 'Idempotency-Key: dep-1'
expect_status 201
! has_header Idempotent-Replayed || fail "the first answer is no replay"
first=$HTTP_BODY
etag=$(header ETag)
n=$(nevents)
for i in 1 2; do
	post "/accounts/$A/deposits" '{"amount":100}' -H 'Idempotency-Key: dep-1' \
		-H "X-Correlation-Id: again-$i"
	expect_status 201
	expect_header Idempotent-Replayed true
	expect_header ETag "$etag"
	expect_header Content-Type application/json
	expect_header X-Correlation-Id "again-$i"
	expect_eq "$HTTP_BODY" "$first" "replayed body"
done
# also through the other process
http POST "$CMD2_URL/accounts/$A/deposits" '{"amount":100}' -H 'Idempotency-Key: dep-1'
expect_status 201
expect_header Idempotent-Replayed true
expect_eq "$HTTP_BODY" "$first" "replayed body, other process"
expect_eq "$(nevents)" "$n" "replays store nothing"
expect_eq "$(psql_q "SELECT status || ' ' || length(fingerprint) || ' ' ||
	(response->>'version') FROM idempotency_keys WHERE key = 'dep-1'")" \
	"201 64 2" "the stored row"

say "an open replays its Location"
post /accounts '{"owner":"Bo","currency":"EUR"}' -H 'Idempotency-Key: open-1'
expect_status 201
B=$(jq -r .account_id <<<"$HTTP_BODY")
first=$HTTP_BODY
post /accounts '{"owner":"Bo","currency":"EUR"}' -H 'Idempotency-Key: open-1'
expect_status 201
expect_header Idempotent-Replayed true
expect_header Location "/accounts/$B"
expect_eq "$HTTP_BODY" "$first" "replayed open"
expect_eq "$(psql_q "SELECT count(*) FROM events
	WHERE event_type = 'AccountOpened' AND data->>'owner' = 'Bo'")" 1 \
	"one account opened"

say "the same key with another request is 422"
n=$(nevents)
post "/accounts/$A/deposits" '{"amount":101}' -H 'Idempotency-Key: dep-1'
expect_status 422
expect_header Content-Type application/problem+json
expect_json '.errors[0].field' Idempotency-Key
post "/accounts/$A/withdrawals" '{"amount":100}' -H 'Idempotency-Key: dep-1'
expect_status 422
post "/accounts/$B/deposits" '{"amount":100}' -H 'Idempotency-Key: dep-1'
expect_status 422
post "/accounts/$A/deposits" '{"amount":100,"reference":"x"}' \
	-H 'Idempotency-Key: dep-1'
expect_status 422
expect_eq "$(nevents)" "$n" "nothing stored"

# issue 12: requests are compared as JSON values, not as bytes
say "the same JSON value in other bytes is the same request"
post "/accounts/$A/deposits" '{"amount":700,"reference":"r"}' \
	-H 'Idempotency-Key: dep-json'
expect_status 201
first=$HTTP_BODY
n=$(nevents)
for body in '{ "amount": 700, "reference": "r" }' \
	$'{\n\t"reference":"\\u0072",\n\t"amount":700\n}'; do
	post "/accounts/$A/deposits" "$body" -H 'Idempotency-Key: dep-json'
	expect_status 201
	expect_header Idempotent-Replayed true
	expect_eq "$HTTP_BODY" "$first" "replayed for $body"
done
expect_eq "$(nevents)" "$n" "nothing stored again"

say "keys: 1-255 printable ASCII, else 400"
long=$(printf 'k%.0s' {1..256})
post "/accounts/$A/deposits" '{"amount":1}' -H "Idempotency-Key: $long"
expect_status 400
expect_header Content-Type application/problem+json
post "/accounts/$A/deposits" '{"amount":1}' -H 'Idempotency-Key: a b'
expect_status 400
post "/accounts/$A/deposits" '{"amount":1}' -H $'Idempotency-Key: a\x01b'
expect_status 400
expect_eq "$(nevents)" "$n" "nothing stored"
post "/accounts/$A/deposits" '{"amount":1}' -H "Idempotency-Key: ${long:1}"
expect_status 201
post "/accounts/$A/deposits" '{"amount":1}' -H "Idempotency-Key: ${long:1}"
expect_status 201
expect_header Idempotent-Replayed true

say "rule rejections are stored and replay, invalid requests are not"
post "/accounts/$B/withdrawals" '{"amount":50}' -H 'Idempotency-Key: wd-1'
expect_status 409
rejected=$HTTP_BODY
post "/accounts/$B/deposits" '{"amount":500}'
expect_status 201
n=$(nevents)
post "/accounts/$B/withdrawals" '{"amount":50}' -H 'Idempotency-Key: wd-1'
expect_status 409
expect_header Idempotent-Replayed true
expect_header Content-Type application/problem+json
expect_eq "$HTTP_BODY" "$rejected" "replayed 409"
expect_eq "$(nevents)" "$n" "the replayed 409 withdrew nothing"
post "/accounts/00000000-0000-4000-8000-000000000001/deposits" '{"amount":5}' \
	-H 'Idempotency-Key: nf-1'
expect_status 404
post "/accounts/00000000-0000-4000-8000-000000000001/deposits" '{"amount":5}' \
	-H 'Idempotency-Key: nf-1'
expect_status 404
expect_header Idempotent-Replayed true
post "/accounts/$B/withdrawals" '{"amount":0}' -H 'Idempotency-Key: inv-1'
expect_status 422
post "/accounts/$B/withdrawals" '{"amount":20}' -H 'Idempotency-Key: inv-1'
expect_status 201
! has_header Idempotent-Replayed || fail "a 422 must not burn the key"
expect_eq "$(psql_q "SELECT string_agg(key || '=' || status, ',' ORDER BY key)
	FROM idempotency_keys WHERE key IN ('wd-1', 'nf-1', 'inv-1')")" \
	"inv-1=201,nf-1=404,wd-1=409" "stored statuses"

say "If-Match 412 is stored and replays with its ETag"
post "/accounts/$B/deposits" '{"amount":1}' -H 'If-Match: "1"' \
	-H 'Idempotency-Key: im-1'
expect_status 412
etag=$(header ETag)
post "/accounts/$B/deposits" '{"amount":1}' -H 'If-Match: "1"' \
	-H 'Idempotency-Key: im-1'
expect_status 412
expect_header Idempotent-Replayed true
expect_header ETag "$etag"

# concurrent NAME N URL... PATH BODY KEY: N requests at once with one key
concurrent()
{
	local name=$1 n=$2 path=$3 body=$4 key=$5 i url pids=()

	shift 5
	for ((i = 0; i < n; i++)); do
		url=$CMD_URL
		[ $((i % 2)) -eq 0 ] || url=$CMD2_URL
		curl -sS --max-time 60 -o "$OUT/$name.body.$i" \
			-w '%{http_code}\n' -X POST \
			-H 'Content-Type: application/json' \
			-H "Idempotency-Key: $key" --data-binary "$body" \
			"$url$path" >"$OUT/$name.st.$i" &
		pids+=($!)
	done
	wait "${pids[@]}"
	expect_eq "$(cat "$OUT/$name".st.* | sort | uniq -c |
		awk '{print $2 "x" $1}')" "201x$n" "$name: statuses"
	expect_eq "$(cat "$OUT/$name".body.* | sort -u | wc -l)" 1 \
		"$name: one answer for all"
}

say "20 concurrent deposits with one key, two processes"
n=$(nevents)
concurrent dep20 20 "/accounts/$A/deposits" '{"amount":7}' conc-dep
expect_eq "$(nevents)" "$((n + 1))" "the deposit stored once"
expect_eq "$(psql_q "SELECT count(*) FROM events WHERE stream_id = 'account-$A'
	AND data->>'amount' = '7'")" 1 "one deposit of 7"

say "20 concurrent opens with one key (each would make its own id)"
n=$(nevents)
concurrent open20 20 /accounts '{"owner":"Cy","currency":"EUR"}' conc-open
expect_eq "$(nevents)" "$((n + 1))" "one account opened"
expect_eq "$(psql_q "SELECT data->>'account_id' FROM events
	WHERE event_type = 'AccountOpened' AND data->>'owner' = 'Cy'")" \
	"$(jq -r .account_id "$OUT/open20.body.0")" "the answer names it"

say "20 concurrent transfers with one key"
n=$(nevents)
concurrent tr20 20 /transfers "{\"from\":\"$A\",\"to\":\"$B\",\"amount\":3}" conc-tr
# TransferSent, TransferReceived and the transfer's own TransferMade
expect_eq "$(nevents)" "$((n + 3))" "one transfer stored"

say "raw appends take keys too"
post /streams/orders-1/events '{"expected_version":"any","events":[{"type":"Placed","data":{}}]}' \
	-H 'Idempotency-Key: raw-1'
expect_status 201
first=$HTTP_BODY
post /streams/orders-1/events '{"expected_version":"any","events":[{"type":"Placed","data":{}}]}' \
	-H 'Idempotency-Key: raw-1'
expect_status 201
expect_header Idempotent-Replayed true
expect_eq "$HTTP_BODY" "$first" "raw append replay"
expect_eq "$(psql_q "SELECT count(*) FROM events WHERE stream_id = 'orders-1'")" \
	1 "stored once"

say "a round's many keys go in one statement"
# one client per key, many in flight: rounds of up to COMMIT_BATCH_MAX
seq 400 | xargs -P 64 -I@ curl -s -o /dev/null -w '%{http_code}\n' \
	--max-time 60 -X POST -H 'Content-Type: application/json' \
	-H 'Idempotency-Key: many-@' \
	-d '{"expected_version":"any","events":[{"type":"Many","data":{}}]}' \
	"$CMD_URL/streams/many-@/events" >"$OUT/many.st"
expect_eq "$(sort "$OUT/many.st" | uniq -c | awk '{print $2 "x" $1}')" \
	201x400 "statuses of the keyed appends"
expect_eq "$(psql_q "SELECT count(*) FROM idempotency_keys
	WHERE key LIKE 'many-%' AND status = 201")" 400 "keys stored"
expect_eq "$(psql_q "SELECT count(DISTINCT transaction_id) < 400
	FROM events WHERE stream_id LIKE 'many-%'")" t \
	"some appends shared a round"
post /streams/many-7/events \
	'{"expected_version":"any","events":[{"type":"Many","data":{}}]}' \
	-H 'Idempotency-Key: many-7'
expect_status 201
expect_header Idempotent-Replayed true

say "replays are counted"
http GET "$CMD_URL/metrics"
r1=$(awk '$1 == "tandem_idempotent_replays_total" {print $2}' <<<"$HTTP_BODY")
[ "${r1:-0}" -gt 0 ] || fail "no replays counted: $r1"

say "SIGTERM: a clean exit (leak checks run under SANITIZE=1)"
expect_eq "$(stop_pid "$CMD_PID")" 0 "exit status of CMD"
expect_eq "$(stop_pid "$CMD2_PID")" 0 "exit status of CMD2"
