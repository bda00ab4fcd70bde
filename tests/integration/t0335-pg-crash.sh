#!/usr/bin/env bash
# t0335-pg-crash.sh - PostgreSQL crashes under load (issue 12, finding 3
# and the fault suite), with and without Idempotency-Keys. First, one at
# a time: a deposit whose commit is held (synchronous replication to a
# standby that does not exist) when the cluster gets an immediate
# shutdown (SIGQUIT to the postmaster, what `pg_ctl -m immediate stop`
# sends) gets its real 201 after the restart, keyed or not; one that
# waits on a lock when the cluster dies is a 503 and not in the log; held
# deposits of a cluster that stays down past the 15 s the service waits
# are 504 outcome-unknown, never 503, and were applied. Then 16 clients
# (half keyed, half not) send deposits while the cluster crashes and
# comes back 2 s later. Every 201 is in the log, no deposit answered 503
# is in the log (a 503 with Retry-After means "not applied": a command
# lost mid-commit gets its real outcome from pg_xact_status(), or 504
# outcome-unknown), every 503 carries Retry-After, both services recover
# without a restart, and the query side's balances equal the log's.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

export MIGRATIONS_DIR=$TANDEM_ROOT/migrations
J='Content-Type: application/json'
OUT=$TEST_TMP/out
mkdir -p "$OUT"
NCLIENTS=16

pg_own_start
migrate_db "$OWN_DATABASE_URL"
start_service CMD command-service DATABASE_URL="$OWN_DATABASE_URL" \
	BIND_ADDRESS=127.0.0.1 DB_POOL_SIZE=4 DB_QUEUE_TIMEOUT_MS=30000
start_service QRY query-service DATABASE_URL="$OWN_DATABASE_URL" \
	BIND_ADDRESS=127.0.0.1
cmd_pid=$CMD_PID
qry_pid=$QRY_PID

for c in $(seq "$NCLIENTS"); do
	http POST "$CMD_URL/accounts" "{\"owner\":\"crash $c\",\"currency\":\"EUR\"}"
	expect_status 201
	jq -r .account_id <<<"$HTTP_BODY" >"$OUT/acc.$c"
done

own_psql()
{
	psql -X -A -t -q -d "$OWN_DATABASE_URL" -c "$1"
}

# A commit held by synchronous replication to a standby that does not
# exist is flushed to the WAL yet not acknowledged: the crash breaks the
# connection mid-COMMIT of a transaction that did commit.
hold_commits()
{
	own_psql "ALTER SYSTEM SET synchronous_standby_names = 'nobody'"
	own_psql "SELECT pg_reload_conf()" >/dev/null
}

# held NAME ACCOUNT [CURL ARGS...]: a deposit of 5 with reference NAME in
# the background ($held is its PID); its status in $OUT/NAME.st, its
# body in $OUT/NAME.body
held()
{
	local name=$1 acc=$2

	shift 2
	curl -s -o "$OUT/$name.body" -w '%{http_code}' --max-time 40 -X POST \
		-H "$J" "$@" -d "{\"amount\":5,\"reference\":\"$name\"}" \
		"$CMD_URL/accounts/$acc/deposits" >"$OUT/$name.st" &
	held=$!
}

# waiting N WAIT_EVENT: N statements of the command service wait on
# WAIT_EVENT (the query service's commits wait too: they must be the
# deposits' COMMIT, or the append statement of a round without keys)
waiting()
{
	[ "$(own_psql "SELECT count(*) FROM pg_stat_activity
		WHERE wait_event = '$2' AND (query = 'COMMIT'
		OR query LIKE '%tandem_append_batch%')
		AND application_name = 'tandem-command-service'")" = "$1" ]
}

crash()
{
	kill -QUIT "$OWN_PG_PID"
	wait_for 10 eval "! kill -0 $OWN_PG_PID 2>/dev/null"
}

restart()
{
	pg_own_start
	expect_eq "$OWN_PGPORT" "$port" "cluster port after the restart"
	own_psql "ALTER SYSTEM RESET synchronous_standby_names"
	own_psql "SELECT pg_reload_conf()" >/dev/null
}

logged()
{
	own_psql "SELECT count(*) FROM events WHERE data->>'reference' = '$1'"
}

port=$OWN_PGPORT

say "a crash mid-COMMIT of a committed keyed deposit: its 201 after the restart"
acc=$(cat "$OUT/acc.1")
hold_commits
held held-1 "$acc" -H 'Idempotency-Key: held-1'
wait_for 10 waiting 1 SyncRep
crash
sleep 2
restart
wait "$held" || true
expect_eq "$(cat "$OUT/held-1.st")" 201 "answer to the keyed deposit held in COMMIT"
expect_eq "$(jq -r .balance "$OUT/held-1.body")" 5 "its balance"
expect_eq "$(logged held-1)" 1 "the held deposit in the log"
http POST "$CMD_URL/accounts/$acc/deposits" '{"amount":5,"reference":"held-1"}' \
	-H 'Idempotency-Key: held-1'
expect_status 201
expect_header Idempotent-Replayed true

# Without a key the round commits in its append statement: the service
# learns the transaction id from the statement's rows, which the server
# sends before it commits.
say "the same without an Idempotency-Key: its 201, with the body it would have had"
acc=$(cat "$OUT/acc.2")
hold_commits
held held-2 "$acc"
wait_for 10 waiting 1 SyncRep
crash
sleep 2
restart
wait "$held" || true
expect_eq "$(cat "$OUT/held-2.st")" 201 "answer to the unkeyed deposit held in its commit"
expect_eq "$(jq -r .balance "$OUT/held-2.body")" 5 "its balance"
expect_eq "$(jq -r .version "$OUT/held-2.body")" 2 "its version"
expect_eq "$(jq -r .position "$OUT/held-2.body")" \
	"$(own_psql "SELECT transaction_id || '.' || global_position
		FROM events WHERE data->>'reference' = 'held-2'")" \
	"its position token"
expect_eq "$(logged held-2)" 1 "the held deposit in the log"

say "a deposit waiting on a lock when the cluster dies: 503, not applied"
acc=$(cat "$OUT/acc.3")
psql -X -q -d "$OWN_DATABASE_URL" -c "BEGIN" \
	-c "LOCK TABLE events IN EXCLUSIVE MODE" -c "SELECT pg_sleep(60)" \
	>/dev/null 2>&1 &
locker=$!
wait_for 10 eval "[ \"\$(own_psql \"SELECT count(*) FROM pg_locks
	WHERE relation = 'events'::regclass AND mode = 'ExclusiveLock'
	AND granted\")\" = 1 ]"
held locked-3 "$acc" -D "$OUT/locked-3.headers"
wait_for 10 eval "[ \"\$(own_psql \"SELECT count(*) FROM pg_stat_activity
	WHERE wait_event_type = 'Lock' AND query LIKE '%tandem_append_batch%'
	AND application_name = 'tandem-command-service'\")\" = 1 ]"
crash
wait "$locker" || true
sleep 2
restart
wait "$held" || true
expect_eq "$(cat "$OUT/locked-3.st")" 503 "answer to the deposit that waited on a lock"
grep -qi '^retry-after: [1-9]' "$OUT/locked-3.headers" ||
	fail "its 503 has no Retry-After"
expect_eq "$(logged locked-3)" 0 "the deposit answered 503 in the log"

say "held commits of a cluster that stays down: 504 outcome-unknown, applied"
hold_commits
held down-4 "$(cat "$OUT/acc.4")"
plain=$held
wait_for 10 waiting 1 SyncRep
held down-5 "$(cat "$OUT/acc.5")" -H 'Idempotency-Key: down-5'
keyed=$held
wait_for 10 waiting 2 SyncRep
crash
wait "$plain" "$keyed" || true
for name in down-4 down-5; do
	expect_eq "$(cat "$OUT/$name.st")" 504 "answer to $name"
	expect_eq "$(jq -r .type "$OUT/$name.body")" \
		https://tandem.dev/problems/outcome-unknown "type of $name"
done
grep -q 'no Idempotency-Key' "$OUT/down-4.body" ||
	fail "the unkeyed 504 does not say it had no key: $(cat "$OUT/down-4.body")"
grep -q 'retry with the same Idempotency-Key' "$OUT/down-5.body" ||
	fail "the keyed 504 does not say to retry: $(cat "$OUT/down-5.body")"
restart
expect_eq "$(logged down-4)|$(logged down-5)" "1|1" "the 504'd deposits in the log"
http POST "$CMD_URL/accounts/$(cat "$OUT/acc.5")/deposits" \
	'{"amount":5,"reference":"down-5"}' -H 'Idempotency-Key: down-5'
expect_status 201
expect_header Idempotent-Replayed true
expect_json .balance 5

# client C: deposits of 1 to its account, each with its own reference
# (and, for odd C, its own key), until $OUT/stop exists (at most 3000);
# one line per answer: "STATUS REFERENCE RETRY_AFTER" ("-" when there is
# none).
client()
{
	local c=$1 acc i st ra key=()

	acc=$(cat "$OUT/acc.$c")
	for i in $(seq 3000); do
		[ ! -e "$OUT/stop" ] || break
		[ $((c % 2)) -eq 0 ] || key=(-H "Idempotency-Key: crash-$c-$i")
		st=$(curl -s -o /dev/null -D "$OUT/h.$c" -w '%{http_code}' \
			--max-time 30 -X POST -H "$J" "${key[@]}" \
			-d "{\"amount\":1,\"reference\":\"crash-$c-$i\"}" \
			"$CMD_URL/accounts/$acc/deposits") || st=000
		ra=$(tr -d '\r' <"$OUT/h.$c" |
			awk -F': ' 'tolower($1) == "retry-after" { print $2 }')
		echo "$st crash-$c-$i ${ra:--}" >>"$OUT/answers.$c"
	done
}

say "$NCLIENTS clients of deposits, half of them keyed"
pids=()
for c in $(seq "$NCLIENTS"); do
	client "$c" &
	pids+=($!)
done
sleep 1.5

say "immediate shutdown of the cluster, back after 2 s"
crash
sleep 2
restart
say "cluster back"
sleep 3
touch "$OUT/stop"
wait "${pids[@]}"

cat "$OUT"/answers.* >"$OUT/answers"
say "answers: $(awk '{print $1}' "$OUT/answers" | sort | uniq -c | tr -s ' \n' ' ')"
awk '$1 == 201' "$OUT/answers" | grep -q . || fail "no deposit got through"
awk '$1 == 503' "$OUT/answers" | grep -q . ||
	say "no 503 this run (the crash caught no command mid-flight)"
# any status but these is a bug: 504 says the outcome is unknown
bad=$(awk '$1 != 201 && $1 != 503 && $1 != 504' "$OUT/answers" | head -5)
[ -z "$bad" ] || fail "unexpected answers: $bad"
bad=$(awk '$1 == 503 && $3 !~ /^[1-9][0-9]*$/' "$OUT/answers" | head -5)
[ -z "$bad" ] || fail "503 without Retry-After: $bad"

say "every 201 is in the log, no 503 is"
own_psql "SELECT data->>'reference'
	FROM events WHERE event_type = 'MoneyDeposited'
	AND data->>'reference' LIKE 'crash-%'" | sort >"$OUT/logged"
awk '$1 == 201 { print $2 }' "$OUT/answers" | sort >"$OUT/ok"
awk '$1 == 503 { print $2 }' "$OUT/answers" | sort >"$OUT/no"
lost=$(comm -23 "$OUT/ok" "$OUT/logged" | head -5)
[ -z "$lost" ] || fail "answered 201, not in the log: $lost"
applied=$(comm -12 "$OUT/no" "$OUT/logged" | head -5)
[ -z "$applied" ] || fail "answered 503, yet in the log: $applied"
expect_eq "$(sort -u "$OUT/logged" | wc -l)" "$(wc -l <"$OUT/logged")" \
	"no deposit stored twice"

say "both services recover without a restart"
acc=$(cat "$OUT/acc.1")
wait_for 15 eval "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
	-X POST -H '$J' -d '{\"amount\":1}' \
	'$CMD_URL/accounts/$acc/deposits')\" = 201 ]"
expect_eq "$CMD_PID|$QRY_PID" "$cmd_pid|$qry_pid" "service PIDs"
kill -0 "$cmd_pid" && kill -0 "$qry_pid" || fail "a service died"
http POST "$CMD_URL/accounts/$acc/deposits" '{"amount":1}'
expect_status 201
token=$(jq -r .position <<<"$HTTP_BODY")

say "the query side's balances equal the log's"
for c in $(seq "$NCLIENTS"); do
	acc=$(cat "$OUT/acc.$c")
	want=$(psql -X -A -t -d "$OWN_DATABASE_URL" -c "SELECT
		(data->>'balance_after')::bigint FROM events
		WHERE stream_id = 'account-$acc'
		ORDER BY stream_version DESC LIMIT 1")
	http GET "$QRY_URL/accounts/$acc" "" -H "X-Min-Position: $token" \
		-H 'X-Wait-Ms: 10000'
	expect_status 200
	expect_json .balance "${want:-0}"
done
