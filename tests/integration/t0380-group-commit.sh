#!/usr/bin/env bash
# t0380-group-commit.sh - group commit (issue 7): commands that a worker
# takes together are decided and appended in one transaction, and each
# still gets its own answer: a round of mixed outcomes (201s, 404, 409s,
# 422s, an Idempotency-Key stored, another replayed, raw appends with and
# without event ids, the same account twice) answers each as if it had
# run alone; a command whose events cannot commit does not take its
# round-mates down; many clients on two processes keep every money
# invariant, and every 201 names the event it wrote.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

J='Content-Type: application/json'
OUT=$TEST_TMP/out
mkdir -p "$OUT"

migrate_db
# DB_POOL_SIZE=1 is two workers (the least the service runs): while one
# is stuck on the locked table, the other takes what comes until it is
# stuck too, and the rest queue up for the next rounds
start_service CMD command-service BIND_ADDRESS=127.0.0.1 DB_POOL_SIZE=1 \
	COMMIT_BATCH_MAX=64 DB_STATEMENT_TIMEOUT_MS=60000 \
	DB_QUEUE_TIMEOUT_MS=60000

open_account()
{
	http POST "$CMD_URL/accounts" "{\"owner\":\"$1\",\"currency\":\"EUR\"}"
	expect_status 201
	jq -r .account_id <<<"$HTTP_BODY"
}

deposit()
{
	http POST "$CMD_URL/accounts/$1/deposits" "{\"amount\":$2}"
	expect_status 201
}

# Commands in the pool: running or waiting.
pool_holds()
{
	local m

	m=$(curl -sf --max-time 5 "$CMD_URL/metrics") || return 1
	[ "$(awk '$1 == "tandem_db_pool_in_use" || $1 == "tandem_db_pool_waiting" { n += $2 } END { print n + 0 }' <<<"$m")" = "$1" ]
}

# Commands that reached the service: in the pool, or answered already (a
# rejection decided without an append is not held up by the lock).
# Answers are counted first, so that one answered in between is missed
# rather than counted twice.
arrived()
{
	local answered

	answered=$(find "$OUT" -name '*.st' -size +0 | wc -l)
	pool_holds $(($1 - answered))
}

# The worker runs one command and holds no other: the plug went alone,
# so what comes after it waits in the queue for the next round.
plug_running()
{
	local m

	m=$(curl -sf --max-time 5 "$CMD_URL/metrics") || return 1
	[ "$(awk '$1 == "tandem_db_pool_in_use" || $1 == "tandem_db_pool_waiting" { print $1, $2 }' <<<"$m" | sort | paste -sd' ')" = \
		"tandem_db_pool_in_use 1 tandem_db_pool_waiting 0" ]
}

# Hold INSERTs into events (reads go on), in a psql session fed by a FIFO.
lock_events()
{
	local fifo=$TEST_TMP/hold.$1

	mkfifo "$fifo"
	psql -X -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" <"$fifo" \
		>"$TEST_TMP/hold.$1.out" 2>&1 &
	track_pid $!
	HOLDER=$!
	exec 7>"$fifo"
	echo "BEGIN; LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE;" >&7
	wait_for 10 bash -c "[ \"\$(psql -X -A -t -d '$DATABASE_URL' -c \
		\"SELECT count(*) FROM pg_locks WHERE relation = 'events'::regclass
		AND mode = 'ShareRowExclusiveLock' AND granted\")\" = 1 ]"
}

unlock_events()
{
	echo "COMMIT;" >&7
	exec 7>&-
	wait "$HOLDER" || fail "the lock holding psql session failed:" \
		"$(cat "$TEST_TMP"/hold.*.out)"
}

# post NAME PATH BODY [curl args...]: in the background; the status in
# $OUT/NAME.st, the body in $OUT/NAME.body, the headers in $OUT/NAME.hd
PIDS=()
post()
{
	local name=$1 path=$2 body=$3

	shift 3
	curl -sS --max-time 60 -o "$OUT/$name.body" -D "$OUT/$name.hd" \
		-w '%{http_code}' -X POST -H "$J" --data-binary "$body" "$@" \
		"$CMD_URL$path" >"$OUT/$name.st" 2>"$OUT/$name.err" &
	PIDS+=($!)
}

st()
{
	cat "$OUT/$1.st"
}

js()
{
	jq -r "$2" "$OUT/$1.body"
}

hd()
{
	tr -d '\r' <"$OUT/$1.hd" | awk -F': ' -v h="${2,,}" 'tolower($1) == h { print $2 }'
}

xid()
{
	js "$1" .position | cut -d. -f1
}

say "one round of mixed outcomes: each command its own answer"
for n in 1 2 3 4 5 6 7 8 9; do
	A[n]=$(open_account "batch $n")
	deposit "${A[n]}" 100
done
http POST "$CMD_URL/accounts/${A[9]}/deposits" '{"amount":5}' \
	-H 'Idempotency-Key: gc-k0'
expect_status 201
K0_BODY=$HTTP_BODY
http POST "$CMD_URL/streams/gc-order-3/events" \
	'{"expected_version":"no_stream","events":[{"type":"Placed","data":{}}]}'
expect_status 201
U=00000000-0000-4000-8000-000000000000
E1=0a1b2c3d-0000-4000-8000-000000000001

lock_events 1
post plug "/accounts/${A[9]}/deposits" '{"amount":1}'
wait_for 15 plug_running
post dep1a "/accounts/${A[1]}/deposits" '{"amount":10}'
post dep1b "/accounts/${A[1]}/deposits" '{"amount":20}'
post dep2 "/accounts/${A[2]}/deposits" '{"amount":10}'
post broke "/accounts/${A[3]}/withdrawals" '{"amount":1000}'
post stale "/accounts/${A[4]}/deposits" '{"amount":10,"expected_version":1}'
post nobody "/accounts/$U/deposits" '{"amount":10}'
post keyed "/accounts/${A[5]}/deposits" '{"amount":10}' \
	-H 'Idempotency-Key: gc-k1'
post replay "/accounts/${A[9]}/deposits" '{"amount":5}' \
	-H 'Idempotency-Key: gc-k0'
post reused "/accounts/${A[9]}/deposits" '{"amount":6}' \
	-H 'Idempotency-Key: gc-k0'
post transfer /transfers \
	"{\"from\":\"${A[6]}\",\"to\":\"${A[7]}\",\"amount\":30}"
post raw1 /streams/gc-order-1/events \
	'{"expected_version":"no_stream","events":[{"type":"Placed","data":{"n":1}}]}'
post raw2 /streams/gc-order-2/events \
	"{\"expected_version\":\"no_stream\",\"events\":[{\"type\":\"Placed\",\"data\":{\"n\":2},\"event_id\":\"$E1\"}]}"
post raw3 /streams/gc-order-3/events \
	'{"expected_version":"no_stream","events":[{"type":"Placed","data":{"n":3}}]}'
post zero "/accounts/${A[8]}/deposits" '{"amount":0}'
post take "/accounts/${A[8]}/withdrawals" '{"amount":50}'
# all but the 422 answered on the HTTP thread are in the pool now, or
# were answered by the other worker
wait_for 15 arrived 16
unlock_events
for p in "${PIDS[@]}"; do
	wait "$p" || fail "a client failed: $(cat "$OUT"/*.err)"
done
PIDS=()

expect_eq "$(st plug)" 201 "plug"
expect_eq "$(st dep1a) $(st dep1b)" "201 201" "two deposits to one account"
expect_eq "$(printf '%s\n' "$(js dep1a .version)" "$(js dep1b .version)" |
	sort | paste -sd' ')" "3 4" "their versions"
[ "$(js dep1a .balance)" = 130 ] || [ "$(js dep1b .balance)" = 130 ] ||
	fail "no deposit to account 1 answered balance 130"
expect_eq "$(st dep2) $(js dep2 .balance) $(js dep2 .version)" "201 110 3" "dep2"
expect_eq "$(st broke)" 409 "withdrawal beyond the balance"
js broke .detail | grep -q "insufficient funds" ||
	fail "broke: $(cat "$OUT/broke.body")"
expect_eq "$(st stale)" 409 "deposit with a stale expected_version"
js stale .detail | grep -q "is at version 2, expected 1" ||
	fail "stale: $(cat "$OUT/stale.body")"
expect_eq "$(st nobody)" 404 "deposit to no account"
expect_eq "$(st keyed) $(js keyed .balance)" "201 110" "keyed deposit"
expect_eq "$(st replay) $(hd replay Idempotent-Replayed)" "201 true" "replay"
expect_eq "$(cat "$OUT/replay.body")" "$K0_BODY" "replayed body"
expect_eq "$(st reused) $(js reused '.errors[0].field')" \
	"422 Idempotency-Key" "a key reused for another body"
expect_eq "$(st transfer) $(js transfer .from_version) $(js transfer .to_version)" \
	"201 3 3" "transfer"
expect_eq "$(st raw1) $(js raw1 .version)" "201 1" "raw append"
expect_eq "$(st raw2) $(js raw2 .version)" "201 1" "raw append with event ids"
expect_eq "$(st raw3) $(js raw3 .status)" "409 409" "raw append at a stale version"
expect_eq "$(st zero)" 422 "deposit of 0"
expect_eq "$(st take) $(js take .balance)" "201 50" "withdrawal"

# Which commands share a round is the planner's (check_round tests the
# membership of this very round); how the worker's takes fall is timing.
# What holds however they fall: the plug went alone, the two deposits to
# account 1 never share a transaction, nor does any account get two
# events in one, the commands that were queued together did share one,
# and those transactions hold the events of the 201s and nothing else.
expect_eq "$(psql_q "SELECT count(*) FROM events
	WHERE transaction_id = '$(xid plug)'")" 1 "the plug's transaction"
[ "$(xid dep1a)" != "$(xid dep1b)" ] ||
	fail "both deposits to account 1 in one round"
xids=$(for n in plug dep1a dep1b dep2 keyed transfer raw1 raw2 take; do
	printf "'%s'," "$(xid "$n")"
done)
xids=${xids%,}
expect_eq "$(psql_q "SELECT count(*) FROM (SELECT transaction_id, stream_id
	FROM events WHERE transaction_id IN ($xids)
	GROUP BY 1, 2 HAVING count(*) > 1) x")" 0 \
	"streams with two events in one transaction"
expect_eq "$(psql_q "SELECT max(n) > 1 FROM (SELECT count(DISTINCT
	metadata->>'command_id') n FROM events WHERE transaction_id IN ($xids)
	GROUP BY transaction_id) x")" t "a transaction of several commands"
expect_eq "$(psql_q "SELECT count(*) FROM events
	WHERE transaction_id IN ($xids)")" 11 \
	"events of those transactions (one per 201, three for the transfer)"
expect_eq "$(psql_q "SELECT status || ' ' || (response->>'balance')
	FROM idempotency_keys WHERE key = 'gc-k1'")" "201 110" "the stored key"
expect_eq "$(psql_q "SELECT event_id FROM events
	WHERE stream_id = 'gc-order-2'")" "$E1" "the given event id"
expect_eq "$(psql_q "SELECT count(*) FROM events
	WHERE stream_id IN ('account-${A[3]}', 'account-${A[4]}')")" 4 \
	"nothing appended for the 409s"

say "a command that cannot commit does not take its round-mates down"
psql_q "CREATE FUNCTION gc_poison() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	IF NEW.data->>'reference' = 'poison' THEN
		RAISE EXCEPTION 'poisoned at commit';
	END IF;
	RETURN NULL;
END \$\$;
CREATE CONSTRAINT TRIGGER gc_poison AFTER INSERT ON events
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gc_poison();"
lock_events 2
post plug2 "/accounts/${A[9]}/deposits" '{"amount":1}'
wait_for 15 pool_holds 1
for n in 1 2 3 4 5 6; do
	post "good$n" "/accounts/${A[n]}/deposits" '{"amount":7}' \
		-H "X-Correlation-Id: gc-good-$n"
done
post poison "/accounts/${A[7]}/deposits" '{"amount":7,"reference":"poison"}'
post goodkey "/accounts/${A[8]}/deposits" '{"amount":7}' \
	-H 'Idempotency-Key: gc-k2'
wait_for 15 pool_holds 9
unlock_events
for p in "${PIDS[@]}"; do
	wait "$p" || fail "a client failed: $(cat "$OUT"/*.err)"
done
PIDS=()
for n in 1 2 3 4 5 6; do
	expect_eq "$(st "good$n")" 201 "deposit $n beside the poisoned one"
done
expect_eq "$(st goodkey) $(js goodkey .balance)" "201 57" "keyed deposit beside it"
expect_eq "$(st poison)" 500 "the poisoned deposit"
expect_eq "$(psql_q "SELECT count(*) FROM events
	WHERE metadata->>'correlation_id' LIKE 'gc-good-%'")" 6 \
	"the good deposits' events"
expect_eq "$(psql_q "SELECT count(*) FROM events
	WHERE data->>'reference' = 'poison'")" 0 "the poisoned event"
expect_eq "$(psql_q "SELECT count(*) FROM idempotency_keys
	WHERE key = 'gc-k2'")" 1 "the good deposit's key"
psql_q "DROP TRIGGER gc_poison ON events; DROP FUNCTION gc_poison()"
# the cache did not keep the poisoned decision
http POST "$CMD_URL/accounts/${A[7]}/deposits" '{"amount":1}'
expect_status 201
expect_json .balance 131
expect_eq "$(stop_pid "$CMD_PID")" 0 "exit status of the one-worker service"

say "many clients on two processes: invariants, and each 201 is its own"
start_service CMD command-service BIND_ADDRESS=127.0.0.1 DB_POOL_SIZE=4
start_service CMD2 command-service BIND_ADDRESS=127.0.0.1 DB_POOL_SIZE=4 \
	COMMIT_BATCH_MAX=1
NACC=12
for ((n = 0; n < NACC; n++)); do
	M[n]=$(open_account "many $n")
	deposit "${M[n]}" 1000
done
base=$(psql_q "SELECT max(global_position) FROM events")

# client C URL: 15 random deposits, withdrawals and transfers; one line
# per answer in $OUT/many.C.log: "<status> <kind> <body>"
client()
{
	local c=$1 url=$2 i op a b amt path body code

	RANDOM=$((c * 7919 + 17))
	for ((i = 0; i < 15; i++)); do
		op=$((RANDOM % 3))
		a=$((RANDOM % NACC))
		b=$(((a + 1 + RANDOM % (NACC - 1)) % NACC))
		amt=$((RANDOM % 300 + 1))
		case $op in
		0)
			path=/accounts/${M[a]}/deposits
			body="{\"amount\":$((amt % 50 + 1))}"
			;;
		1)
			path=/accounts/${M[a]}/withdrawals
			body="{\"amount\":$amt}"
			;;
		2)
			path=/transfers
			body="{\"from\":\"${M[a]}\",\"to\":\"${M[b]}\",\"amount\":$amt}"
			;;
		esac
		code=$(curl -sS --max-time 60 -o "$OUT/many.$c.cur" \
			-w '%{http_code}' -X POST -H "$J" --data-binary "$body" \
			"$url$path") || code=000
		printf '%s %s %s\n' "$code" "$op" \
			"$(jq -c . "$OUT/many.$c.cur" 2>/dev/null ||
				echo null)" >>"$OUT/many.$c.log"
	done
}

for ((c = 0; c < 24; c++)); do
	url=$CMD_URL
	[ $((c % 2)) -eq 0 ] || url=$CMD2_URL
	client "$c" "$url" &
	PIDS+=($!)
done
for p in "${PIDS[@]}"; do
	wait "$p" || fail "a client failed"
done
PIDS=()
cat "$OUT"/many.*.log >"$OUT/all"
expect_eq "$(wc -l <"$OUT/all")" 360 "answers"
expect_eq "$(awk '$1 != 201 && $1 != 409' "$OUT/all" | wc -l)" 0 \
	"answers other than 201 and 409: $(awk '$1 != 201 && $1 != 409' "$OUT/all" | head -3)"
expect_eq "$(awk '$1 == 409' "$OUT/all" | cut -d' ' -f3- |
	jq -r 'select(.detail | test("insufficient funds") | not)' | wc -l)" 0 \
	"409s not about funds"

# every 201 names the event it wrote: account, version, balance_after
awk '$1 == 201 && $2 != 2' "$OUT/all" | cut -d' ' -f3- |
	jq -r '"(\u0027account-\(.account_id)\u0027, \(.version), \(.balance))"' |
	paste -sd, >"$OUT/money.values"
awk '$1 == 201 && $2 == 2' "$OUT/all" | cut -d' ' -f3- |
	jq -r '"(\u0027\(.transfer_id)\u0027, \(.from_version), \(.to_version))"' |
	paste -sd, >"$OUT/transfer.values"
nmoney=$(awk '$1 == 201 && $2 != 2' "$OUT/all" | wc -l)
ntransfer=$(awk '$1 == 201 && $2 == 2' "$OUT/all" | wc -l)
[ "$nmoney" -gt 0 ] && [ "$ntransfer" -gt 0 ] ||
	fail "no mix of answers: $nmoney money, $ntransfer transfers"
expect_eq "$(psql_q "SELECT count(*) FROM (VALUES $(cat "$OUT/money.values"))
	a(stream, version, balance) LEFT JOIN events e
	ON e.stream_id = a.stream AND e.stream_version = a.version
	WHERE e.event_type NOT IN ('MoneyDeposited', 'MoneyWithdrawn')
	OR (e.data->>'balance_after')::bigint IS DISTINCT FROM a.balance")" 0 \
	"deposit and withdrawal answers that do not match their event"
expect_eq "$(psql_q "SELECT count(*) FROM (VALUES $(cat "$OUT/transfer.values"))
	a(id, fv, tv) WHERE 2 <> (SELECT count(*) FROM events e
	WHERE e.data->>'transfer_id' = a.id AND
	((e.event_type = 'TransferSent' AND e.stream_version = a.fv) OR
	 (e.event_type = 'TransferReceived' AND e.stream_version = a.tv)))")" 0 \
	"transfer answers that do not match their events"
expect_eq "$(psql_q "SELECT count(*) FROM events WHERE global_position > $base")" \
	$((nmoney + 3 * ntransfer)) "events written: one per 201, three per transfer"
ids=$(printf "'account-%s'," "${M[@]}")
ids=${ids%,}
expect_eq "$(psql_q "SELECT count(*) FROM (SELECT stream_id, count(*) n,
	max(stream_version) v FROM events WHERE stream_id IN ($ids)
	GROUP BY stream_id) s WHERE n <> v")" 0 "gap-free versions"
expect_eq "$(psql_q "SELECT count(*) FROM events WHERE stream_id IN ($ids)
	AND (data->>'balance_after')::bigint < 0")" 0 "no balance below 0"
expect_eq "$(psql_q "SELECT count(*) FROM (SELECT event_type,
	(data->>'amount')::bigint AS amount,
	(data->>'balance_after')::bigint AS after,
	lag((data->>'balance_after')::bigint, 1, 0::bigint) OVER
		(PARTITION BY stream_id ORDER BY stream_version) AS before
	FROM events WHERE stream_id IN ($ids)
	AND event_type <> 'AccountOpened') e
	WHERE after <> before + CASE WHEN event_type IN
	('MoneyDeposited', 'TransferReceived') THEN amount ELSE -amount END")" \
	0 "balances follow the amounts"
deposits=$(awk '$1 == 201 && $2 == 0' "$OUT/all" | wc -l)
in=$(psql_q "SELECT coalesce(sum((data->>'amount')::bigint), 0) FROM events
	WHERE global_position > $base AND event_type = 'MoneyDeposited'")
out=$(psql_q "SELECT coalesce(sum((data->>'amount')::bigint), 0) FROM events
	WHERE global_position > $base AND event_type = 'MoneyWithdrawn'")
expect_eq "$(psql_q "SELECT sum(b) FROM (SELECT DISTINCT ON (stream_id)
	(data->>'balance_after')::bigint AS b FROM events
	WHERE stream_id IN ($ids) ORDER BY stream_id, stream_version DESC) l")" \
	$((NACC * 1000 + in - out)) "money conserved ($deposits deposits)"
expect_eq "$(psql_q "SELECT count(*) FROM (SELECT data->>'transfer_id'
	FROM events WHERE global_position > $base
	AND event_type IN ('TransferSent', 'TransferReceived')
	GROUP BY 1 HAVING count(*) <> 2 OR count(DISTINCT transaction_id) <> 1) x")" \
	0 "both sides of each transfer in one transaction"

say "SIGTERM: clean exits"
expect_eq "$(stop_pid "$CMD_PID")" 0 "exit status of CMD"
expect_eq "$(stop_pid "$CMD2_PID")" 0 "exit status of CMD2"
for log in "$TEST_TMP/CMD.log" "$TEST_TMP/CMD2.log"; do
	! grep -q '"status":5[0-9][0-9]' "$log" || fail "$log has a 5xx"
done
