#!/usr/bin/env bash
# t0306-transfer-id.sh - a transfer id is unique (issue 12, finding 4): a
# second transfer with an id that exists is 409 naming it and moves no
# money, whatever its accounts and amount, also for an id the service
# made up; an Idempotency-Key still replays its 201; two requests racing
# with one id, on one process or on two, get exactly one 201; each
# transfer's own stream holds its one TransferMade, and raw appends may
# not write that category.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

J='Content-Type: application/json'
OUT=$TEST_TMP/out
mkdir -p "$OUT"

migrate_db
start_service CMD command-service BIND_ADDRESS=127.0.0.1 DB_POOL_SIZE=2
start_service CMD2 command-service BIND_ADDRESS=127.0.0.1 DB_POOL_SIZE=2

open_account()
{
	http POST "$CMD_URL/accounts" "{\"owner\":\"$1\",\"currency\":\"EUR\"}"
	expect_status 201
	jq -r .account_id <<<"$HTTP_BODY"
}

# balance ID: the fold of the account's stream in the log.
balance()
{
	psql_q "SELECT (data->>'balance_after')::bigint FROM events
		WHERE stream_id = 'account-$1' ORDER BY stream_version DESC
		LIMIT 1"
}

A=$(open_account alice)
B=$(open_account bob)
http POST "$CMD_URL/accounts/$A/deposits" '{"amount":100000}'
expect_status 201

say "a transfer id that exists is 409 naming it"
T=6d1e4c3a-1111-4e2f-9a0b-0c1d2e3f4a5b
http POST "$CMD_URL/transfers" \
	"{\"from\":\"$A\",\"to\":\"$B\",\"amount\":100,\"transfer_id\":\"$T\"}"
expect_status 201
expect_json .transfer_id "$T"
for body in \
	"{\"from\":\"$A\",\"to\":\"$B\",\"amount\":100,\"transfer_id\":\"$T\"}" \
	"{\"from\":\"$B\",\"to\":\"$A\",\"amount\":7,\"transfer_id\":\"$T\"}" \
	"{\"from\":\"$A\",\"to\":\"$B\",\"amount\":1,\"transfer_id\":\"${T^^}\"}"; do
	for url in "$CMD_URL" "$CMD2_URL"; do
		http POST "$url/transfers" "$body"
		expect_status 409
		expect_header Content-Type application/problem+json
		expect_json .detail "transfer '$T' already exists"
	done
done
expect_eq "$(balance "$A")|$(balance "$B")" "99900|100" "money moved once"
expect_eq "$(psql_q "SELECT string_agg(event_type || ' ' || stream_version,
	',') FROM events WHERE stream_id = 'transfer-$T'")" "TransferMade 1" \
	"the transfer's own stream"
expect_eq "$(psql_q "SELECT data - 'transfer_id' = jsonb_build_object(
	'from_account_id', '$A', 'to_account_id', '$B', 'amount', 100,
	'currency', 'EUR') FROM events WHERE stream_id = 'transfer-$T'")" t \
	"TransferMade's payload"

say "an id the service made up is taken too"
http POST "$CMD_URL/transfers" "{\"from\":\"$A\",\"to\":\"$B\",\"amount\":1}"
expect_status 201
G=$(jq -r .transfer_id <<<"$HTTP_BODY")
# time-ordered (version 7), so that its stream's index entries go near
# the last transfer's: the id's first 48 bits are the time in ms
[[ $G =~ $UUID7_RE ]] ||
	fail "a made-up transfer id is not version 7: $G"
ms=$((16#${G:0:8}${G:9:4}))
now=$(($(date +%s%3N)))
[ $((now - ms)) -ge 0 ] && [ $((now - ms)) -lt 60000 ] ||
	fail "transfer id $G names $ms ms, now is $now"
http POST "$CMD_URL/transfers" \
	"{\"from\":\"$A\",\"to\":\"$B\",\"amount\":1,\"transfer_id\":\"$G\"}"
expect_status 409
expect_json .detail "transfer '$G' already exists"

say "an Idempotency-Key replays its 201; another key is 409"
K=6d1e4c3a-2222-4e2f-9a0b-0c1d2e3f4a5b
body="{\"from\":\"$A\",\"to\":\"$B\",\"amount\":5,\"transfer_id\":\"$K\"}"
http POST "$CMD_URL/transfers" "$body" -H 'Idempotency-Key: t0306-k'
expect_status 201
first=$HTTP_BODY
for url in "$CMD_URL" "$CMD2_URL"; do
	http POST "$url/transfers" "$body" -H 'Idempotency-Key: t0306-k'
	expect_status 201
	expect_header Idempotent-Replayed true
	expect_eq "$HTTP_BODY" "$first" "replayed body"
done
http POST "$CMD_URL/transfers" "$body" -H 'Idempotency-Key: t0306-other'
expect_status 409
expect_json .detail "transfer '$K' already exists"

say "the transfer category is not for raw appends"
http POST "$CMD_URL/streams/transfer-$T/events" \
	'{"expected_version":"any","events":[{"type":"TransferMade","data":{}}]}'
expect_status 422
expect_json '.errors[0].field' stream_id

say "two requests racing with one id: exactly one 201"
N=24
pids=()
for i in $(seq "$N"); do
	id=$(printf '6d1e4c3a-3333-4e2f-9a0b-%012d' "$i")
	for side in 1 2; do
		# both on one process for odd ids, one on each for even ones
		url=$CMD_URL
		[ $((i % 2)) = 0 ] && [ "$side" = 2 ] && url=$CMD2_URL
		curl -s -o /dev/null -w '%{http_code}\n' --max-time 30 -X POST \
			-H "$J" -d "{\"from\":\"$A\",\"to\":\"$B\",\"amount\":1,\"transfer_id\":\"$id\"}" \
			"$url/transfers" >"$OUT/$i.$side" &
		pids+=($!)
	done
done
# not a bare wait: the services are children too
wait "${pids[@]}"
for i in $(seq "$N"); do
	expect_eq "$(sort "$OUT/$i.1" "$OUT/$i.2" | tr '\n' ' ')" "201 409 " \
		"answers to the two requests with id $i"
done
expect_eq "$(psql_q "SELECT count(*), count(DISTINCT data->>'transfer_id')
	FROM events WHERE event_type = 'TransferSent'
	AND data->>'transfer_id' LIKE '6d1e4c3a-3333-%'")" "$N|$N" \
	"one TransferSent per raced id"
expect_eq "$(psql_q "SELECT count(*) FROM events
	WHERE stream_id LIKE 'transfer-6d1e4c3a-3333-%'")" "$N" \
	"one TransferMade per raced id"
expect_eq "$(balance "$A")|$(balance "$B")" \
	"$((99900 - 1 - 5 - N))|$((100 + 1 + 5 + N))" "money moved once per id"
