#!/usr/bin/env bash
# t0475-exact-sums.sh - sums and totals are exact at any size (SPEC
# section 3, guarantee 6): a day's transfer sum pushed past 2^63 - 1 by
# maximum transfers shuttled between two accounts of one owner, and an
# owner's total past 2^63 - 1, are answered as exact integers (never a
# float, never an error) while the views go on moving.
#
# Reaching 2^63 - 1 with 10^12 a transfer takes 9.2 million transfers, so
# the test starts near it: the day's row is seeded as if those had been
# folded already, and two accounts get balances near 2^63 - 1 through the
# log itself (a plain INSERT into events, SPEC section 3), as 9.2 million
# maximum deposits would leave them.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

MAX=1000000000000 # the largest amount a command takes
NEAR=9223372036854775000

migrate_db
start_service CMD command-service
start_service QRY query-service POLL_INTERVAL_MS=50

TODAY=$(psql_q "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')")

say "two accounts of one owner, one deposit of the maximum"
cmd /accounts '{"owner":"Shuttle","currency":"EUR"}'
A=$(jq -r .account_id <<<"$HTTP_BODY")
cmd /accounts '{"owner":"Shuttle","currency":"EUR"}'
B=$(jq -r .account_id <<<"$HTTP_BODY")
cmd "/accounts/$A/deposits" "{\"amount\":$MAX}"
ryw "/stats/daily?from=$TODAY&to=$TODAY"
expect_json '.items[0].deposits.sum' "$MAX"

say "today's transfer sum seeded at $NEAR"
psql_q "INSERT INTO view_daily (day, currency, transfers_sum, transfers_count)
	VALUES ('$TODAY', 'EUR', $NEAR, 9223372)
	ON CONFLICT (day, currency) DO UPDATE
	SET transfers_sum = EXCLUDED.transfers_sum,
	transfers_count = EXCLUDED.transfers_count" >/dev/null

say "maximum transfers shuttled between the two push it past 2^63 - 1"
for i in 1 2 3 4; do
	if [ $((i % 2)) -eq 1 ]; then
		cmd /transfers "{\"from\":\"$A\",\"to\":\"$B\",\"amount\":$MAX}"
	else
		cmd /transfers "{\"from\":\"$B\",\"to\":\"$A\",\"amount\":$MAX}"
	fi
	# each in a batch of its own: the sum is added in SQL every time
	ryw "/stats/daily?from=$TODAY&to=$TODAY"
done
SUM=$(psql_q "SELECT $NEAR::numeric + 4 * $MAX")
[ "${#SUM}" -ge 19 ] && [ "$SUM" != "$NEAR" ] || fail "bad expected sum '$SUM'"
expect_text "\"transfers\":{\"sum\":$SUM,\"count\":9223376}"
expect_eq "$(psql_q "SELECT transfers_sum FROM view_daily
	WHERE day = '$TODAY' AND currency = 'EUR'")" "$SUM" "view_daily's sum"
say "the views go on: a deposit is visible in every view"
cmd "/accounts/$B/deposits" '{"amount":5}'
ryw "/accounts/$B"
expect_json .balance 5
ryw "/accounts/$B/transactions"
expect_json '.items[-1].balance_after' 5
ryw "/stats/daily?from=$TODAY&to=$TODAY"
expect_text "\"deposits\":{\"sum\":$((MAX + 5)),\"count\":2}"

say "an owner's total past 2^63 - 1"
BIG=9223372036854775000
for id in $(psql_q "SELECT gen_random_uuid() FROM generate_series(1, 2)"); do
	psql_q "INSERT INTO events (stream_id, stream_version, event_id,
		event_type, data, metadata) VALUES
	('account-$id', 1, gen_random_uuid(), 'AccountOpened',
	 '{\"account_id\":\"$id\",\"owner\":\"Whale\",\"currency\":\"USD\",\"overdraft_limit\":0}',
	 '{}'),
	('account-$id', 2, gen_random_uuid(), 'MoneyDeposited',
	 '{\"amount\":$BIG,\"balance_after\":$BIG,\"currency\":\"USD\"}', '{}')" \
		>/dev/null
	LAST=$id
done
TOKEN=$(psql_q "SELECT transaction_id || '.' || global_position FROM events
	WHERE stream_id = 'account-$LAST' AND stream_version = 2")
ryw "/owners/Whale/accounts"
TOTAL=$(psql_q "SELECT 2 * $BIG::numeric")
expect_text "\"totals\":[{\"currency\":\"USD\",\"balance\":$TOTAL,\"accounts\":2}]"
expect_json '.items | length' 2
ryw "/accounts/$LAST"
expect_text "\"balance\":$BIG,"
say "and the day's deposit sum past 2^63 - 1 too"
ryw "/stats/daily?from=$TODAY&to=$TODAY"
expect_text "\"currency\":\"USD\",\"deposits\":{\"sum\":$TOTAL,\"count\":2}"
