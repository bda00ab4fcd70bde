#!/usr/bin/env bash
# t0620-overdraft-limit.sh - POST /accounts/{id}/overdraft-limit
# (OverdraftLimitChanged) through the real services:
#
#   1. raising the limit lets a withdrawal go into it, and not one cent
#      further; the event is in the log with its payload; the answer is
#      shaped as the other account commands' (keys, ETag, no Location);
#   2. lowering the limit to exactly the debt is fine, below it is 409
#      naming balance and limit, and appends nothing;
#   3. a closed account is 409, an unknown one 404, bad bodies 400/415,
#      bad fields 422 (as for every command: SPEC section 7), all storing
#      nothing; Idempotency-Key, If-Match and expected_version work as for
#      the other commands;
#   4. a fresh command service (empty cache) loads the limit and the
#      balance from the log, whether the last event is the limit change or
#      a money event after it, and the load's third lookup can be served
#      by the partial index of migration 0009;
#   5. the query side: GET /accounts/{id} (read-your-writes) and the
#      accounts table show the new limit, also after a restart and a
#      rebuild; the statement has no row for a limit change; the daily
#      totals equal the sums of the money events; nothing parked.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

migrate_db
start_service CMD command-service DB_POOL_SIZE=4
start_service QRY query-service POLL_INTERVAL_MS=100

U=00000000-0000-4000-8000-000000000000

# post PATH BODY [curl args]: POST to the command service
post()
{
	local path=$1 body=$2

	shift 2
	http POST "$CMD_URL$path" "$body" "$@"
}

# limit ID BODY [curl args]
limit()
{
	local id=$1 body=$2

	shift 2
	post "/accounts/$id/overdraft-limit" "$body" "$@"
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

nevents()
{
	psql_q "SELECT count(*) FROM events"
}

# event ID VERSION: "type data" of one event of an account
event()
{
	psql_q "SELECT event_type || ' ' || data::text FROM events
		WHERE stream_id = 'account-$1' AND stream_version = $2"
}

say "open A with a limit of 100 and fund it"
cmd /accounts '{"owner":"Olga","currency":"EUR","overdraft_limit":100}'
A=$(jq -r .account_id <<<"$HTTP_BODY")
cmd "/accounts/$A/deposits" '{"amount":1000}'
post "/accounts/$A/withdrawals" '{"amount":1101}'
expect_problem 409 "insufficient funds.*overdraft limit 100"

say "1. raise the limit to 5000"
limit "$A" '{"overdraft_limit":5000}'
expect_status 201
expect_header Content-Type application/json
expect_json 'keys | sort | join(",")' account_id,overdraft_limit,position,version
expect_json .account_id "$A"
expect_json .version 3
expect_json .overdraft_limit 5000
expect_header ETag '"3"'
! has_header Location || fail "a limit change has no Location"
TOKEN=$(jq -r .position <<<"$HTTP_BODY")
[[ $TOKEN =~ ^[0-9]+\.[0-9]+$ ]] || fail "position: $HTTP_BODY"
ev=$(event "$A" 3)
expect_eq "${ev%% *}" OverdraftLimitChanged "event type"
expect_eq "$(jq -cS . <<<"${ev#* }")" \
	"{\"account_id\":\"$A\",\"balance\":1000,\"overdraft_limit\":5000,\"previous_overdraft_limit\":100}" \
	"payload of the limit change"
expect_eq "$(psql_q "SELECT metadata ?& ARRAY['command_id', 'correlation_id',
	'causation_id'] FROM events
	WHERE stream_id = 'account-$A' AND stream_version = 3")" t "metadata"

say "the query side shows the new limit (read-your-writes)"
ryw "/accounts/$A"
expect_json .overdraft_limit 5000
expect_json .balance 1000
expect_json .version 3
expect_header ETag '"3"'

say "withdraw into the new limit, and not one cent beyond it"
post "/accounts/$A/withdrawals" '{"amount":5500}'
expect_status 201
expect_json .balance -4500
n=$(nevents)
post "/accounts/$A/withdrawals" '{"amount":501}'
expect_problem 409 "insufficient funds.*balance -4500, overdraft limit 5000"
expect_eq "$(nevents)" "$n" "a refused withdrawal stores nothing"
post "/accounts/$A/withdrawals" '{"amount":500}'
expect_status 201
expect_json .balance -5000
expect_json .version 5
cmd "/accounts/$A/deposits" '{"amount":500}'
expect_json .balance -4500

say "2. lowering below the debt is 409 and appends nothing"
n=$(nevents)
limit "$A" '{"overdraft_limit":4499}'
expect_problem 409 "cannot be 4499: balance -4500 is below -4499"
limit "$A" '{"overdraft_limit":0}'
expect_problem 409 "balance -4500 is below 0"
expect_eq "$(nevents)" "$n" "a refused limit change stores nothing"
say "lowering to exactly the debt is fine, and binds"
limit "$A" '{"overdraft_limit":4500}'
expect_status 201
expect_json .version 7
expect_json .overdraft_limit 4500
ev=$(event "$A" 7)
expect_eq "$(jq -c '[.previous_overdraft_limit, .overdraft_limit, .balance]' \
	<<<"${ev#* }")" '[5000,4500,-4500]' "limit lowered to the debt"
post "/accounts/$A/withdrawals" '{"amount":1}'
expect_problem 409 "balance -4500, overdraft limit 4500"

say "4. a fresh command service loads limit and balance from the log"
# the last event is the limit change: its balance is the balance
stop_pid "$CMD_PID" >/dev/null
start_service CMD command-service DB_POOL_SIZE=4
cmd "/accounts/$A/deposits" '{"amount":3000}'
expect_json .balance -1500
post "/accounts/$A/withdrawals" '{"amount":3001}'
expect_problem 409 "balance -1500, overdraft limit 4500"
# the last event is a withdrawal after the limit change
cmd "/accounts/$A/withdrawals" '{"amount":2999}'
expect_json .balance -4499
stop_pid "$CMD_PID" >/dev/null
start_service CMD command-service DB_POOL_SIZE=4
cmd "/accounts/$A/withdrawals" '{"amount":1}'
expect_json .balance -4500
expect_json .version 10
post "/accounts/$A/withdrawals" '{"amount":1}'
expect_problem 409 "balance -4500, overdraft limit 4500"

say "the load's last-limit-change lookup can use the partial index"
expect_eq "$(psql_q "SELECT indexdef FROM pg_indexes
	WHERE indexname = 'events_overdraft_limit_idx'")" \
	"CREATE INDEX events_overdraft_limit_idx ON public.events USING btree (stream_id, stream_version) WHERE (event_type = 'OverdraftLimitChanged'::text)" \
	"the partial index"
plan=$(psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" <<'SQL'
SET enable_seqscan = off;
SET plan_cache_mode = force_generic_plan;
PREPARE last_limit(text) AS SELECT stream_version FROM events
	WHERE stream_id = $1 AND stream_version > 1
	AND event_type = 'OverdraftLimitChanged'
	ORDER BY stream_version DESC LIMIT 1;
EXPLAIN (COSTS OFF) EXECUTE last_limit('account-x');
SQL
)
[[ $plan == *"events_overdraft_limit_idx"* ]] ||
	fail "the last limit change is not looked up by the partial index: $plan"

say "3. closed, unknown, bad bodies and bad fields"
cmd /accounts '{"owner":"Olga","currency":"EUR"}'
B=$(jq -r .account_id <<<"$HTTP_BODY")
cmd "/accounts/$B/close" '{}'
n=$(nevents)
limit "$B" '{"overdraft_limit":100}'
expect_problem 409 "account '$B' is closed"
limit "$U" '{"overdraft_limit":100}'
expect_problem 404 "account '$U' does not exist"
limit not-a-uuid '{"overdraft_limit":100}'
expect_problem 404 "does not exist"
limit "$A" '{"overdraft_limit":'
expect_problem 400 ""
limit "$A" '[100]'
expect_problem 400 "must be a JSON object"
limit "$A" '{"overdraft_limit":9223372036854775808}'
expect_problem 400 ""
limit "$A" '{"overdraft_limit":100}' -H 'Content-Type: text/plain'
expect_problem 415 ""
http GET "$CMD_URL/accounts/$A/overdraft-limit"
expect_problem 405 ""
expect_header Allow POST
for bad in '{}' '{"overdraft_limit":null}' '{"overdraft_limit":"100"}' \
	'{"overdraft_limit":1.5}' '{"overdraft_limit":true}' \
	'{"overdraft_limit":-1}' '{"overdraft_limit":1000000000001}'; do
	limit "$A" "$bad"
	expect_problem 422 ""
	expect_json '[.errors[].field] | join(",")' overdraft_limit
done
limit "$A" '{"overdraft_limit":100,"limit":5,"expected_version":-1}'
expect_problem 422 ""
expect_json '[.errors[].field] | sort | join(",")' expected_version,limit
expect_eq "$(nevents)" "$n" "refused limit changes store nothing"

say "Idempotency-Key, If-Match and expected_version"
cmd /accounts '{"owner":"Olga","currency":"EUR"}'
C=$(jq -r .account_id <<<"$HTTP_BODY")
limit "$C" '{"overdraft_limit":700}' -H 'Idempotency-Key: t0620-key'
expect_status 201
first=$HTTP_BODY
limit "$C" '{"overdraft_limit":700}' -H 'Idempotency-Key: t0620-key'
expect_status 201
expect_header Idempotent-Replayed true
expect_eq "$HTTP_BODY" "$first" "the replayed answer"
limit "$C" '{"overdraft_limit":800}' -H 'Idempotency-Key: t0620-key'
expect_problem 422 ""
expect_eq "$(psql_q "SELECT count(*) FROM events WHERE stream_id =
	'account-$C' AND event_type = 'OverdraftLimitChanged'")" 1 \
	"one event for a replayed key"
limit "$C" '{"overdraft_limit":800}' -H 'If-Match: "1"'
expect_problem 412 "at version 2, If-Match wants 1"
expect_json .current_version 2
limit "$C" '{"overdraft_limit":800}' -H 'If-Match: "2"'
expect_status 201
expect_json .version 3
expect_header ETag '"3"'
limit "$C" '{"overdraft_limit":900,"expected_version":2}'
expect_problem 409 "at version 3, expected 2"
expect_json .current_version 3
limit "$C" '{"overdraft_limit":900,"expected_version":3}'
expect_status 201
expect_json .version 4
cmd "/accounts/$C/withdrawals" '{"amount":900}'
expect_json .balance -900

say "5. the query side: account, owner list, table, statement, daily"
cmd "/accounts/$A/deposits" '{"amount":4500}'
ryw "/accounts/$A"
expect_json .overdraft_limit 4500
expect_json .balance 0
AVER=$(psql_q "SELECT max(stream_version) FROM events
	WHERE stream_id = 'account-$A'")
expect_json .version "$AVER"
ryw "/accounts/$C"
expect_json .overdraft_limit 900
expect_json .balance -900
ryw /owners/Olga/accounts
expect_json "[.items[] | select(.id == \"$A\" or .id == \"$C\")
	| .overdraft_limit] | sort | join(\",\")" 900,4500
expect_eq "$(psql_q "SELECT string_agg(overdraft_limit::text, ','
	ORDER BY overdraft_limit) FROM view_accounts
	WHERE account_id IN ('$A', '$C')")" 900,4500 "view_accounts"

ryw "/accounts/$A/transactions?limit=1000"
expect_json '[.items[].kind] | unique | join(",")' deposit,withdrawal
expect_eq "$(jq -r '[.items[].version] | join(",")' <<<"$HTTP_BODY")" \
	"$(psql_q "SELECT string_agg(stream_version::text, ',' ORDER BY
	stream_version) FROM events WHERE stream_id = 'account-$A'
	AND event_type IN ('MoneyDeposited', 'MoneyWithdrawn')")" \
	"statement versions: the money events only"
expect_eq "$(jq -r --argjson v "$(psql_q "SELECT json_agg(stream_version)
	FROM events WHERE stream_id = 'account-$A'
	AND event_type = 'OverdraftLimitChanged'")" \
	'[.items[] | select(.version as $x | $v | index($x))] | length' \
	<<<"$HTTP_BODY")" 0 "no statement row for a limit change"
ryw "/accounts/$C/transactions?limit=1000"
expect_json '[.items[] | "\(.version):\(.kind):\(.balance_after)"] | join(",")' \
	5:withdrawal:-900

ryw /stats/daily
expect_json '[.items[] | select(.currency == "EUR")] | [
	(map(.deposits.sum) | add), (map(.deposits.count) | add),
	(map(.withdrawals.sum) | add), (map(.withdrawals.count) | add)]
	| join(",")' \
	"$(psql_q "SELECT concat_ws(',',
		sum((data->>'amount')::bigint)
			FILTER (WHERE event_type = 'MoneyDeposited'),
		count(*) FILTER (WHERE event_type = 'MoneyDeposited'),
		sum((data->>'amount')::bigint)
			FILTER (WHERE event_type = 'MoneyWithdrawn'),
		count(*) FILTER (WHERE event_type = 'MoneyWithdrawn'))
	FROM events")"

http GET "$QRY_URL/status"
expect_status 200
expect_json '[.views[] | select(.stopped)] | length' 0
expect_json '[.views[].parked[]] | length' 0
expect_json '[.memory.parked[]?] | length' 0
expect_eq "$("$TANDEM_BIN/query-service" parked list)" "" "parked streams"

say "a restarted query service and a rebuild show the same limits"
stop_pid "$QRY_PID" >/dev/null
start_service QRY query-service POLL_INTERVAL_MS=100
ryw "/accounts/$A"
expect_json .overdraft_limit 4500
ryw "/accounts/$C"
expect_json .overdraft_limit 900
"$TANDEM_BIN/query-service" rebuild 2>"$TEST_TMP/rebuild.log" ||
	fail "rebuild failed: $(tail -3 "$TEST_TMP/rebuild.log")"
expect_eq "$(psql_q "SELECT string_agg(overdraft_limit::text, ','
	ORDER BY overdraft_limit) FROM view_accounts
	WHERE account_id IN ('$A', '$C')")" 900,4500 "view_accounts rebuilt"
cmd "/accounts/$C/deposits" '{"amount":900}'
ryw "/accounts/$C"
expect_json .overdraft_limit 900
expect_json .balance 0
expect_eq "$(psql_q "SELECT count(*) FROM view_statement
	WHERE account_id IN ('$A', '$C')")" \
	"$(psql_q "SELECT count(*) FROM events WHERE stream_id IN
	('account-$A', 'account-$C') AND event_type IN ('MoneyDeposited',
	'MoneyWithdrawn')")" "rebuilt statement: money events only"

say "the services are still well"
for url in "$CMD_URL" "$QRY_URL"; do
	http GET "$url/health"
	expect_status 200
done
expect_eq "$(stop_pid "$CMD_PID")" 0 "exit status of CMD"
expect_eq "$(stop_pid "$QRY_PID")" 0 "exit status of QRY"
