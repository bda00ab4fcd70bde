#!/usr/bin/env bash
# t0710-holder-isolation.sh - a holder can never see or move another
# holder's money (SPEC section 11), under concurrency: 8 holders, each a
# concurrent client, try every route on each other's accounts while they
# move their own money (deposits, withdrawals, transfers to the others,
# which a holder may make). Then:
# - every attempt on another's account or owner list was 404 (403 for
#   opening an account in another's name), none was served;
# - every own command was 201;
# - the log holds, on each account, only commands of its owner (and the
#   manager's opening deposit), and a TransferReceived only as the other
#   half of a TransferSent of the sender; every event's principal is the
#   token's;
# - money is conserved and each balance equals the sum of its events.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

HOLDERS=8
ROUNDS=${ROUNDS:-12}
START=100000

migrate_db
start_service CMD command-service DB_POOL_SIZE=4
start_service QRY query-service

MANAGER=$(mint mia manager)
declare -a TOK ACC1 ACC2
for h in $(seq 1 "$HOLDERS"); do
	TOK[h]=$(mint "h$h" holder)
	for k in 1 2; do
		AS=$MANAGER http POST "$CMD_URL/accounts" \
			"{\"owner\":\"h$h\",\"currency\":\"EUR\"}"
		expect_status 201
		id=$(jq -r .account_id <<<"$HTTP_BODY")
		AS=$MANAGER http POST "$CMD_URL/accounts/$id/deposits" \
			"{\"amount\":$START}"
		expect_status 201
		if [ "$k" = 1 ]; then ACC1[h]=$id; else ACC2[h]=$id; fi
	done
done
before=$(psql_q "SELECT count(*) FROM events")
before_pos=$(psql_q "SELECT max(global_position) FROM events")

# req TOKEN METHOD URL [BODY]: the status only (no shared files: the
# clients run at once)
req()
{
	local args=(-q -sS --max-time 30 -o /dev/null -w '%{http_code}'
		-H "Authorization: Bearer $1" -X "$2")

	[ -z "${4-}" ] ||
		args+=(-H 'Content-Type: application/json' --data-binary "$4")
	curl "${args[@]}" --url "$3" || echo 000
}

# client H: holder H's session; one line per request in c.H:
# "own|other EXPECTED GOT WHAT"
client()
{
	local h=$1 t=${TOK[$1]} r o x y out=$TEST_TMP/c.$1 st

	: >"$out"
	for r in $(seq 1 "$ROUNDS"); do
		o=$(((h + r - 1) % HOLDERS + 1))
		[ "$o" != "$h" ] || o=$((o % HOLDERS + 1))
		x=${ACC1[o]}
		y=${ACC2[o]}
		{
			# another's: every route, as if it did not exist
			echo "other 404 $(req "$t" GET "$QRY_URL/accounts/$x") GET account"
			echo "other 404 $(req "$t" GET "$QRY_URL/accounts/$y/transactions") GET statement"
			echo "other 404 $(req "$t" GET "$QRY_URL/owners/h$o/accounts") GET owner list"
			echo "other 404 $(req "$t" POST "$CMD_URL/accounts/$x/deposits" '{"amount":1}') deposit"
			echo "other 404 $(req "$t" POST "$CMD_URL/accounts/$x/withdrawals" '{"amount":1}') withdrawal"
			echo "other 404 $(req "$t" POST "$CMD_URL/accounts/$y/close" '{}') close"
			echo "other 404 $(req "$t" POST "$CMD_URL/transfers" "{\"from\":\"$x\",\"to\":\"${ACC1[h]}\",\"amount\":5}") transfer from"
			echo "other 403 $(req "$t" POST "$CMD_URL/accounts" "{\"owner\":\"h$o\",\"currency\":\"EUR\"}") open for"
			echo "other 403 $(req "$t" GET "$QRY_URL/stats/daily") daily stats"
			echo "other 403 $(req "$t" GET "$QRY_URL/events") the log"
			# its own: served
			echo "own 201 $(req "$t" POST "$CMD_URL/accounts/${ACC1[h]}/deposits" "{\"amount\":$((r * 3))}") deposit"
			echo "own 201 $(req "$t" POST "$CMD_URL/accounts/${ACC2[h]}/withdrawals" "{\"amount\":$r}") withdrawal"
			echo "own 201 $(req "$t" POST "$CMD_URL/transfers" "{\"from\":\"${ACC1[h]}\",\"to\":\"$y\",\"amount\":$((r + h))}") transfer to another"
			echo "own 200 $(req "$t" GET "$QRY_URL/accounts/${ACC2[h]}") GET own account"
			echo "own 200 $(req "$t" GET "$QRY_URL/owners/h$h/accounts") GET own list"
		} >>"$out"
	done
}

say "$HOLDERS holders at once, $ROUNDS rounds each"
pids=()
for h in $(seq 1 "$HOLDERS"); do
	client "$h" &
	pids+=("$!")
	track_pid "$!"
done
for p in "${pids[@]}"; do
	wait "$p" || fail "a client failed"
done

say "every attempt on another's was refused, every own command served"
n=0
for h in $(seq 1 "$HOLDERS"); do
	while read -r kind want got what; do
		n=$((n + 1))
		[ "$got" = "$want" ] ||
			fail "holder h$h, $kind $what: expected $want, got $got"
	done <"$TEST_TMP/c.$h"
done
expect_eq "$n" $((HOLDERS * ROUNDS * 15)) "answers checked"

say "the log holds only the holders' own commands"
# 3 own commands a round (a transfer appends 3 events) per holder
expect_eq "$(psql_q "SELECT count(*) FROM events")" \
	$((before + HOLDERS * ROUNDS * 5)) "events after the sessions"
# every command event of an account stream is its owner's (the manager's
# opening deposits aside); a TransferReceived is the sender's
expect_eq "$(psql_q "
	WITH owner AS (
		SELECT stream_id, data->>'owner' AS owner FROM events
		WHERE event_type = 'AccountOpened')
	SELECT count(*) FROM events e JOIN owner o USING (stream_id)
	WHERE e.global_position > $before_pos
	  AND e.event_type <> 'TransferReceived'
	  AND e.metadata->'principal'->>'sub' IS DISTINCT FROM o.owner")" 0 \
	"events on an account not by its owner"
expect_eq "$(psql_q "
	SELECT count(*) FROM events r
	JOIN events s ON s.event_type = 'TransferSent'
		AND s.data->>'transfer_id' = r.data->>'transfer_id'
	JOIN events o ON o.event_type = 'AccountOpened' AND o.stream_id = s.stream_id
	WHERE r.event_type = 'TransferReceived'
	  AND r.metadata->'principal'->>'sub' IS DISTINCT FROM o.data->>'owner'")" \
	0 "transfers received not caused by the sender's owner"
expect_eq "$(psql_q "SELECT count(*) FROM events
	WHERE metadata->'principal'->'roles' <> '[\"holder\"]'::jsonb
	  AND metadata->'principal'->>'sub' <> 'mia'")" 0 \
	"holders' events with other roles"

say "money is conserved, balances are their events' sums"
# the manager's 1 more, for a position to read at
AS=$MANAGER http POST "$CMD_URL/accounts/${ACC1[1]}/deposits" '{"amount":1}'
expect_status 201
TOKEN=$(jq -r .position <<<"$HTTP_BODY")
total=0
sum=0
for h in $(seq 1 "$HOLDERS"); do
	for id in "${ACC1[h]}" "${ACC2[h]}"; do
		AS=$MANAGER ryw "/accounts/$id"
		b=$(jq -r .balance <<<"$HTTP_BODY")
		want=$(psql_q "SELECT coalesce(sum(CASE
			WHEN event_type IN ('MoneyDeposited','TransferReceived') THEN (data->>'amount')::bigint
			WHEN event_type IN ('MoneyWithdrawn','TransferSent') THEN -(data->>'amount')::bigint
			ELSE 0 END), 0) FROM events WHERE stream_id = 'account-$id'")
		expect_eq "$b" "$want" "balance of $id"
		sum=$((sum + b))
	done
	total=$((total + 2 * START))
done
withdrawn=$(psql_q "SELECT coalesce(sum((data->>'amount')::bigint), 0)
	FROM events WHERE event_type = 'MoneyWithdrawn'")
deposited=$(psql_q "SELECT coalesce(sum((data->>'amount')::bigint), 0)
	FROM events WHERE event_type = 'MoneyDeposited'")
expect_eq "$sum" $((deposited - withdrawn)) "sum of balances"
[ "$deposited" -gt "$total" ] || fail "the holders' deposits are missing"
