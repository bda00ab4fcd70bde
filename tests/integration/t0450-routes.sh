#!/usr/bin/env bash
# t0450-routes.sh - every GET route of the query service (SPEC section 6)
# on traffic sent through the command service: the bodies, the list
# shape {"items", "next"} and paging to the end, limit (default 100, at
# most 1000, 422 beyond or below 1), 404 for an unknown account or
# stream, 400 for a malformed cursor, token or X-Wait-Ms, 422 for bad
# fields, 405 for a wrong method, problem+json throughout, X-Position on
# every view's answers (errors included) and ETags; /status, /metrics,
# /health and /ready (X-Position too); a malformed event parks its
# account's stream in the in-memory account view, whose read of it is
# then 503 naming the position and the reason, and /status and /metrics
# show where and why.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

migrate_db
start_service CMD command-service DB_POOL_SIZE=4
start_service QRY query-service POLL_INTERVAL_MS=50 READ_POOL_SIZE=3

SNAP_RE='^[0-9]+:[0-9]+:[0-9,]*$'
TOKEN=

# get PATH [curl args]: GET from the query service, waiting for $TOKEN
get()
{
	local path=$1

	shift
	http GET "$QRY_URL$path" "" -H "X-Min-Position: $TOKEN" "$@"
}

# expect_problem STATUS DETAIL_REGEX
expect_problem()
{
	expect_status "$1"
	expect_header Content-Type application/problem+json
	expect_json .status "$1"
	[[ $(jq -r .detail <<<"$HTTP_BODY") =~ $2 ]] ||
		fail "detail does not match '$2': $HTTP_BODY"
}

# expect_invalid FIELD: 422 problem+json naming FIELD in its errors
expect_invalid()
{
	expect_problem 422 .
	jq -e --arg f "$1" 'any(.errors[]; .field == $f)' <<<"$HTTP_BODY" \
		>/dev/null || fail "422 does not name '$1': $HTTP_BODY"
}

# expect_not_modified LEN: 304 without a body, and a Content-Length that is
# absent or LEN, the length of the 200's body (RFC 9110 section 8.6)
expect_not_modified()
{
	expect_status 304
	[ -z "$HTTP_BODY" ] || fail "304 with a body: $HTTP_BODY"
	! has_header Content-Length || expect_header Content-Length "$1"
}

# expect_position: the answer carries X-Position, a read token
expect_position()
{
	local p

	p=$(header X-Position)
	[ -n "$p" ] || fail "no X-Position: $HTTP_HEADERS"
	[[ $p =~ $SNAP_RE ]] || [[ $p == */*/* ]] ||
		fail "X-Position '$p' is not a read token"
}

say "traffic: three accounts, two owners, every kind of movement"
cmd /accounts '{"owner":"Ann Smith","currency":"EUR","overdraft_limit":100}'
A=$(jq -r .account_id <<<"$HTTP_BODY")
cmd /accounts '{"owner":"Ann Smith","currency":"USD"}'
B=$(jq -r .account_id <<<"$HTTP_BODY")
cmd /accounts '{"owner":"Bob","currency":"EUR"}'
C=$(jq -r .account_id <<<"$HTTP_BODY")
cmd "/accounts/$A/deposits" '{"amount":1000,"reference":"salary"}'
cmd "/accounts/$A/withdrawals" '{"amount":300}'
cmd /transfers "{\"from\":\"$A\",\"to\":\"$C\",\"amount\":250,\"reference\":\"rent\"}"
cmd "/accounts/$B/deposits" '{"amount":5000}'
cmd "/accounts/$C/withdrawals" '{"amount":250}'
cmd "/accounts/$C/close" '{}'
for i in 1 2 3 4 5; do
	cmd "/accounts/$A/deposits" "{\"amount\":$((i * 10))}"
done
TODAY=$(psql_q "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')")

say "GET /accounts/{id}: from memory, ETag \"<version>\", 304"
get "/accounts/$A"
expect_status 200
expect_header Content-Type application/json
expect_position
expect_header ETag '"9"'
expect_json .id "$A"
expect_json .owner "Ann Smith"
expect_json .currency EUR
expect_json .balance 600
expect_json .overdraft_limit 100
expect_json .status open
expect_json .version 9
[[ $(jq -r .opened_at <<<"$HTTP_BODY") =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T.*Z$ ]] ||
	fail "opened_at: $HTTP_BODY"
LEN200=${#HTTP_BODY}
get "/accounts/$A" -H 'If-None-Match: "9"'
expect_not_modified "$LEN200"
expect_header ETag '"9"'
expect_position
get "/accounts/$A" -H 'If-None-Match: "8", W/"9"'
expect_not_modified "$LEN200"
http HEAD "$QRY_URL/accounts/$A" "" -H 'If-None-Match: "9"'
expect_not_modified "$LEN200"
get "/accounts/$A" -H 'If-None-Match: "8"'
expect_status 200
get "/accounts/${C^^}"
expect_status 200
expect_json .id "$C"
expect_json .status closed
expect_json .balance 0
get /accounts/00000000-0000-4000-8000-000000000000
expect_problem 404 "does not exist"
expect_position
get /accounts/not-a-uuid
expect_problem 404 "does not exist"
expect_position

say "read-your-writes tokens and X-Wait-Ms are checked"
http GET "$QRY_URL/accounts/$A" "" -H 'X-Min-Position: junk'
expect_problem 400 "malformed position token"
expect_position
http GET "$QRY_URL/accounts/$A?min_position=1.x"
expect_problem 400 "malformed position token"
for w in abc -1 10001 1.5 ''; do
	http GET "$QRY_URL/accounts/$A" "" -H "X-Wait-Ms: $w"
	if [ -z "$w" ]; then
		# curl sends no header for an empty value
		expect_status 200
	else
		expect_problem 400 "X-Wait-Ms"
	fi
done
http GET "$QRY_URL/accounts/$A?min_position=$TOKEN" "" -H 'X-Wait-Ms: 10000'
expect_status 200
http GET "$QRY_URL/stats/daily" "" -H 'X-Min-Position: 1:2'
expect_problem 400 "malformed position token"
expect_position

say "GET /accounts/{id}/transactions: the statement, paged"
get "/accounts/$A/transactions"
expect_status 200
expect_position
[[ $(header ETag) =~ ^W/\"[0-9a-f]{16}\"$ ]] || fail "ETag: $HTTP_HEADERS"
expect_json '.items | length' 8
expect_json .next null
expect_json '[.items[].kind] | join(",")' \
	deposit,withdrawal,transfer_out,deposit,deposit,deposit,deposit,deposit
expect_json '[.items[].balance_after] | join(",")' 1000,700,450,460,480,510,550,600
expect_json '[.items[].version] | join(",")' 2,3,4,5,6,7,8,9
expect_json '.items[0].reference' salary
expect_json '.items[0].amount' 1000
expect_json '.items[0].currency' EUR
expect_json '.items[2].counterparty' "$C"
[[ $(jq -r '.items[2].transfer_id' <<<"$HTTP_BODY") =~ $UUID_RE ]] ||
	fail "transfer_id: $HTTP_BODY"
ETAG=$(header ETag)
LEN200=${#HTTP_BODY}
get "/accounts/$A/transactions" -H "If-None-Match: $ETAG"
expect_not_modified "$LEN200"
expect_header ETag "$ETAG"
expect_position
get "/accounts/$A/transactions?limit=3"
expect_json '.items | length' 3
NEXT=$(jq -r .next <<<"$HTTP_BODY")
expect_eq "$NEXT" 4 "next cursor"
[ "$(header ETag)" != "$ETAG" ] || fail "another page, the same ETag"
seen=3
while [ "$NEXT" != null ]; do
	get "/accounts/$A/transactions?limit=3&after=$NEXT"
	expect_status 200
	seen=$((seen + $(jq '.items | length' <<<"$HTTP_BODY")))
	NEXT=$(jq -r .next <<<"$HTTP_BODY")
	[ "$seen" -le 8 ] || fail "paging does not end"
done
expect_eq "$seen" 8 "paged items"
get "/accounts/$C/transactions"
expect_json '[.items[].kind] | join(",")' transfer_in,withdrawal
expect_json '.items[0].counterparty' "$A"
get "/accounts/$A/transactions?limit=1001"
expect_invalid limit
expect_position
for l in 0 -1 abc 1e3; do
	get "/accounts/$A/transactions?limit=$l"
	expect_invalid limit
done
get "/accounts/$A/transactions?limit=1000"
expect_status 200
get "/accounts/$A/transactions?after=abc"
expect_problem 400 "malformed cursor"
expect_position
get /accounts/00000000-0000-4000-8000-000000000000/transactions
expect_problem 404 "does not exist"
expect_position
get /accounts/nope/transactions
expect_problem 404 "does not exist"

say "GET /owners/{owner}/accounts: accounts and totals per currency"
get "/owners/Ann%20Smith/accounts"
expect_status 200
expect_position
expect_json .owner "Ann Smith"
expect_json '.items | length' 2
expect_json .next null
expect_json '[.items[].id] | sort | join(",")' "$(printf '%s\n' "$A" "$B" | sort | paste -sd,)"
expect_json '.totals | map("\(.currency)=\(.balance)/\(.accounts)") | join(",")' \
	"EUR=600/1,USD=5000/1"
get "/owners/Ann%20Smith/accounts?limit=1"
expect_json '.items | length' 1
expect_json '.totals | length' 2
NEXT=$(jq -r .next <<<"$HTTP_BODY")
FIRST=$(jq -r '.items[0].id' <<<"$HTTP_BODY")
expect_eq "$NEXT" "$FIRST" "owner cursor"
get "/owners/Ann%20Smith/accounts?limit=1&after=$NEXT"
expect_json '.items | length' 1
expect_json .next null
[ "$(jq -r '.items[0].id' <<<"$HTTP_BODY")" != "$FIRST" ] || fail "same page twice"
get /owners/Nobody/accounts
expect_status 200
expect_json '.items | length' 0
expect_json '.totals | length' 0
get /owners/Bob/accounts?after=xyz
expect_problem 400 "malformed cursor"
get /owners/Bob/accounts?limit=5000
expect_invalid limit

say "GET /stats/daily"
get "/stats/daily?from=$TODAY&to=$TODAY"
expect_status 200
expect_position
expect_json '.items | length' 2
expect_json '[.items[] | "\(.day) \(.currency)"] | join(",")' "$TODAY EUR,$TODAY USD"
expect_json '.items[0].deposits.sum' 1150
expect_json '.items[0].deposits.count' 6
expect_json '.items[0].withdrawals.sum' 550
expect_json '.items[0].withdrawals.count' 2
expect_json '.items[0].transfers.sum' 250
expect_json '.items[0].transfers.count' 1
expect_json '.items[1].deposits.sum' 5000
get "/stats/daily"
expect_json '.items | length' 2
get "/stats/daily?limit=1"
expect_json '.items | length' 1
NEXT=$(jq -r .next <<<"$HTTP_BODY")
expect_eq "$NEXT" "$TODAY.EUR" "daily cursor"
get "/stats/daily?limit=1&after=$NEXT"
expect_json '.items[0].currency' USD
expect_json .next null
get "/stats/daily?from=2000-01-01&to=2000-12-31"
expect_json '.items | length' 0
for bad in 'from=2024-13-01' 'to=2024-02-30' 'from=yesterday' 'from=2024-1-1' \
	'from=2024-05-02&to=2024-05-01'; do
	get "/stats/daily?$bad"
	expect_problem 422 .
	jq -e 'any(.errors[]; .field == "from" or .field == "to")' \
		<<<"$HTTP_BODY" >/dev/null || fail "422 names no date: $HTTP_BODY"
	expect_position
done
get "/stats/daily?from=2024-02-29&to=2024-02-29"
expect_status 200
get "/stats/daily?after=2024-01-01"
expect_problem 400 "malformed cursor"

say "GET /audit/large-transactions"
get "/audit/large-transactions?min_amount=250"
expect_status 200
expect_position
expect_json '[.items[:3][] | "\(.amount) \(.kind)"] | join(",")' \
	"5000 deposit,1000 deposit,300 withdrawal"
# equal amounts come in log order (a transfer's two legs in either)
expect_json '[.items[3:][] | "\(.amount) \(.kind)"] | sort | join(",")' \
	"250 transfer_in,250 transfer_out,250 withdrawal"
expect_json '.items[5].kind' withdrawal
expect_json '.items[0].account_id' "$B"
P=$(jq -r '[.items[].position] | join(",")' <<<"$HTTP_BODY")
[ "$(tr , '\n' <<<"${P#*,*,*,}" | sort -n | paste -sd,)" = "${P#*,*,*,}" ] ||
	fail "equal amounts are not in log order: $P"
get "/audit/large-transactions?min_amount=250&limit=4"
expect_json '.items | length' 4
NEXT=$(jq -r .next <<<"$HTTP_BODY")
[[ $NEXT =~ ^250\.[0-9]+$ ]] || fail "large cursor: $NEXT"
get "/audit/large-transactions?min_amount=250&limit=4&after=$NEXT"
expect_json '.items | length' 2
expect_json .next null
get "/audit/large-transactions?min_amount=100000"
expect_json '.items | length' 0
get "/audit/large-transactions"
expect_invalid min_amount
get "/audit/large-transactions?min_amount=-5"
expect_invalid min_amount
get "/audit/large-transactions?min_amount=1&after=1.2.3"
expect_problem 400 "cursor"
get "/audit/large-transactions?min_amount=1&limit=1001"
expect_invalid limit

say "GET /streams/{stream_id}: raw events, the read's snapshot"
get "/streams/account-$A"
expect_status 200
expect_position
expect_json '.items | length' 9
expect_json '[.items[].version] | join(",")' 1,2,3,4,5,6,7,8,9
expect_json '.items[0].type' AccountOpened
expect_json '.items[0].stream_id' "account-$A"
expect_json '.items[0].data.owner' "Ann Smith"
expect_json '.items[0] | keys | join(",")' \
	data,event_id,metadata,position,recorded_at,stream_id,transaction_id,type,version
get "/streams/account-$A?from_version=8"
expect_json '[.items[].version] | join(",")' 8,9
get "/streams/account-$A?limit=4"
expect_json .next 4
get "/streams/account-$A?limit=4&after=4"
expect_json '[.items[].version] | join(",")' 5,6,7,8
expect_json .next 8
get "/streams/account-$A?limit=4&after=8"
expect_json '[.items[].version] | join(",")' 9
expect_json .next null
get "/streams/account-$A?from_version=50"
expect_status 200
expect_json '.items | length' 0
get /streams/no-such-stream
expect_problem 404 "does not exist"
expect_position
get "/streams/account-$A?limit=1001"
expect_invalid limit
get "/streams/account-$A?from_version=x"
expect_invalid from_version
get "/streams/account-$A?after=x"
expect_problem 400 "malformed cursor"
http POST "$CMD_URL/streams/other-1/events" \
	'{"expected_version":"no_stream","events":[{"type":"Ping","data":{"n":1}}]}'
expect_status 201
http GET "$QRY_URL/streams/other-1"
expect_status 200
expect_json '.items[0].type' Ping
expect_position

say "GET /events: the whole log, paged by position token, none skipped"
N=$(psql_q "SELECT count(*) FROM events")
http GET "$QRY_URL/events?limit=1001"
expect_invalid limit
http GET "$QRY_URL/events?after=garbage"
expect_problem 400 "malformed position token"
seen=0
AFTER=
POSITIONS=
for i in $(seq 1 40); do
	http GET "$QRY_URL/events?limit=3${AFTER:+&after=$AFTER}"
	expect_status 200
	expect_position
	n=$(jq '.items | length' <<<"$HTTP_BODY")
	[ "$n" -le 3 ] || fail "more than limit: $n"
	POSITIONS+=$(jq -r '.items[].position' <<<"$HTTP_BODY")$'\n'
	NEXT=$(jq -r .next <<<"$HTTP_BODY")
	expect_eq "$(header X-Position)" "$NEXT" "X-Position is the page's cursor"
	seen=$((seen + n))
	AFTER=$(jq -rn --arg s "$NEXT" '$s|@uri')
	[ "$n" -gt 0 ] || break
done
expect_eq "$seen" "$N" "events seen by paging"
expect_eq "$(grep -c . <<<"$POSITIONS" | tr -d ' ')" "$N" "positions"
expect_eq "$(grep . <<<"$POSITIONS" | sort -u | wc -l | tr -d ' ')" "$N" \
	"no event twice"
http GET "$QRY_URL/events?limit=1"
expect_json '.items[0] | keys | join(",")' \
	data,event_id,metadata,position,recorded_at,stream_id,transaction_id,type,version

say "/status, /metrics, /health, /ready; wrong methods, unknown routes"
http GET "$QRY_URL/status"
expect_status 200
expect_json .role leader
expect_json '[.views[].name] | join(",")' accounts,statement,daily,audit
expect_json '.memory.name' accounts-memory
expect_json '[.views[].stopped] | unique | join(",")' false
wait_for 10 bash -c "curl -s $QRY_URL/status | jq -e '[.views[].lag_events, .memory.lag_events] | all(. == 0)'"
http GET "$QRY_URL/status"
expect_json '.views[0] | keys | join(",")' \
	applied,batches,error,error_position,lag_events,lag_ms,loaded,name,parked,position,stopped
expect_json '.pending_transactions | type' array
# This process projected the whole log: each view counts every event once.
N=$(psql_q "SELECT count(*) FROM events")
[ "$N" -gt 0 ] || fail "no events"
expect_json "[.views[].applied] | map(. == $N) | all" true
http GET "$QRY_URL/metrics"
expect_status 200
for v in accounts statement daily audit; do
	grep -q "^tandem_events_projected_total{view=\"$v\"} $N\$" <<<"$HTTP_BODY" ||
		fail "projected $v: $(grep projected_total <<<"$HTTP_BODY")"
done
for m in tandem_events_projected_total tandem_projection_apply_seconds_sum \
	tandem_projection_lag_events tandem_waiting_requests tandem_leader \
	http_requests_total; do
	grep -q "^$m" <<<"$HTTP_BODY" || fail "no $m in /metrics"
done
grep -q '^tandem_leader 1$' <<<"$HTTP_BODY" || fail "not the leader"
grep -q '^tandem_projection_lag_events{view="statement"} 0$' <<<"$HTTP_BODY" ||
	fail "lag: $(grep lag <<<"$HTTP_BODY")"
http GET "$QRY_URL/health"
expect_status 200
http GET "$QRY_URL/ready"
expect_status 200
expect_json .status ready
# every GET carries X-Position (SPEC section 6): here the position all
# views have passed, which covers the last command once they caught up
for p in /status /metrics /health /ready; do
	http GET "$QRY_URL$p"
	expect_status 200
	expect_position
	expect_eq "$("$TANDEM_BUILD/tests/qry_token_covers" "$(header X-Position)" \
		"$TOKEN")" 1 "X-Position of $p covers the last command"
done
http POST "$QRY_URL/accounts/$A" '{}'
expect_problem 405 "."
has_header Allow || fail "405 without Allow"
http GET "$QRY_URL/nothing/here"
expect_problem 404 "."
http HEAD "$QRY_URL/accounts/$A"
expect_status 200
expect_position

say "a malformed event parks its stream in the in-memory view; /status says where and why"
# until issue 12 it stopped the view, which went on serving the account
# as it was before the event
BAD=$(psql_q "INSERT INTO events (stream_id, stream_version, event_id,
	event_type, data, metadata) VALUES ('account-$A', 10, gen_random_uuid(),
	'MoneyDeposited', '{\"amount\": 1, \"balance_after\": \"lots\",
	\"currency\": \"EUR\"}', '{}') RETURNING global_position")
memory_parked()
{
	curl -s "$QRY_URL/status" | jq -e '.memory.parked | length == 1' >/dev/null
}
wait_for 10 memory_parked
http GET "$QRY_URL/status"
expect_json .memory.parked[0].position "$BAD"
expect_json .memory.parked[0].stream "account-$A"
expect_json .memory.stopped false
[[ $(jq -r .memory.parked[0].error <<<"$HTTP_BODY") =~ balance_after ]] ||
	fail "the error does not name the field: $HTTP_BODY"
grep -q '"event":"stream_parked".*"view":"accounts-memory"' "$TEST_TMP/QRY.log" ||
	fail "no stream_parked log line"
# what it had is not passed off as current
http GET "$QRY_URL/accounts/$A"
expect_problem 503 "parked at position $BAD"
[[ $(jq -r .detail <<<"$HTTP_BODY") =~ balance_after ]] ||
	fail "the 503 does not say why: $HTTP_BODY"
http GET "$QRY_URL/metrics"
grep -qx 'tandem_projection_stopped{view="accounts-memory"} 0' <<<"$HTTP_BODY" ||
	fail "metrics: $(grep stopped <<<"$HTTP_BODY")"
grep -qx 'tandem_parked_streams{view="accounts-memory"} 1' <<<"$HTTP_BODY" ||
	fail "metrics: $(grep parked <<<"$HTTP_BODY")"

say "SIGTERM: exit 0"
expect_eq "$(stop_pid "$QRY_PID")" 0 "query-service exit status"
expect_eq "$(stop_pid "$CMD_PID")" 0 "command-service exit status"
