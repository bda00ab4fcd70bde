#!/usr/bin/env bash
# t0823-lost-commit-replay.sh - a lost COMMIT answer in a round whose
# first append is a replay: a raw append whose every event names a stored
# event id answers with the earlier transaction's id and position, whose
# event is another command's. The service must ask the server about its
# own transaction (the round's fresh append), not that one: asked about
# the replay's, it read "another transaction's" and answered 503 "nothing
# applied" for a deposit that then committed. A round of replays only
# stored no event (only its key's row): its answer stands, nobody asked;
# an answer without an append in such a round (its key's row lost with
# the COMMIT's answer) answers 503. A fresh raw append whose events carry
# ids is asked about.
#
# As t0822: the service reaches its database through tcp_proxy, commits
# wait for a synchronous standby that does not exist, the proxy is cut
# under a waiting COMMIT. Two connections (DB_POOL_SIZE=2): the requests
# sent while two deposits wait in COMMIT go into the next round together,
# in the order they came; cancelling one wait lets it finish (its COMMIT
# is local already) and frees its connection for them.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

J='Content-Type: application/json'
OUT=$TEST_TMP/out
mkdir -p "$OUT"

pg_own_start "$TEST_TMP/pg"
own_psql()
{
	psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$OWN_DATABASE_URL" -c "$1"
}
# send NAME PATH BODY KEY: POST in the background, status in $OUT/NAME.st
send()
{
	curl -s -o "$OUT/$1.body" -w '%{http_code}' --max-time 60 -X POST \
		-H "$J" -H "Idempotency-Key: $4" -d "$3" "$CMD_URL$2" \
		>"$OUT/$1.st" &
	track_pid $!
	eval "PID_$1=$!"
}

waiters()
{
	own_psql "SELECT count(*) FROM pg_stat_activity
		WHERE wait_event = 'SyncRep'
		AND application_name = 'tandem-command-service'"
}

queued()
{
	http GET "$CMD_URL/metrics"
	[ "$(awk '$1 == "tandem_db_pool_waiting" { print $2 }' \
		<<<"$HTTP_BODY")" = "$1" ]
}

sync_on()
{
	own_psql "ALTER SYSTEM SET synchronous_standby_names = 'nobody'"
	own_psql "SELECT pg_reload_conf()" >/dev/null
}

sync_off()
{
	own_psql "ALTER SYSTEM RESET synchronous_standby_names"
	own_psql "SELECT pg_reload_conf()" >/dev/null
}

outcomes()
{
	grep -c "\"event\":\"commit_outcome\".*\"status\":\"$1\"" \
		"$TEST_TMP/CMD.log" || true
}

# round_behind H1 H2 N1 PATH1 BODY1 N2 PATH2 BODY2 (commits waiting for the
# standby): deposits H1 and H2 take both connections and wait in COMMIT;
# N1 and N2 (each its name as its key) queue behind them; one wait is
# cancelled (it committed locally, and answers): its connection takes N1
# and N2 as one round, which then waits in COMMIT beside the other
round_behind()
{
	local h1=$1 h2=$2

	send "$1" "/accounts/$acc_b1/deposits" '{"amount":1,"reference":"'"$1"'"}' "$1"
	wait_for 10 eval '[ "$(waiters)" = 1 ]'
	send "$2" "/accounts/$acc_b2/deposits" '{"amount":1,"reference":"'"$2"'"}' "$2"
	wait_for 10 eval '[ "$(waiters)" = 2 ]'
	send "$3" "$4" "$5" "$3"
	wait_for 10 queued 1
	send "$6" "$7" "$8" "$6"
	wait_for 10 queued 2
	own_psql "SELECT pg_cancel_backend(min(pid)) FROM pg_stat_activity
		WHERE wait_event = 'SyncRep'" >/dev/null
	wait_for 10 eval '[ "$(cat "$OUT/$h1.st")$(cat "$OUT/$h2.st")" = 201 ]'
	# two jobs on one worker count one waiting (a queued one would too,
	# but nothing is free to take it: the answers tell which it was)
	wait_for 10 eval '[ "$(waiters)" = 2 ]'
	wait_for 10 queued 1
}

proxy_own_start
migrate_db "$OWN_DATABASE_URL"
start_service CMD command-service DATABASE_URL="$PX_URL" \
	BIND_ADDRESS=127.0.0.1 DB_POOL_SIZE=2 DB_QUEUE_TIMEOUT_MS=30000 \
	DB_STATEMENT_TIMEOUT_MS=0 NOTIFY_EVENTS=false
http POST "$CMD_URL/accounts" '{"owner":"cut","currency":"EUR"}'
expect_status 201
acc=$(jq -r .account_id <<<"$HTTP_BODY")
# the two that hold the connections: accounts of their own (two commands
# on one account do not run at once)
for b in b1 b2; do
	http POST "$CMD_URL/accounts" '{"owner":"'$b'","currency":"EUR"}'
	expect_status 201
	eval "acc_$b=$(jq -r .account_id <<<"$HTTP_BODY")"
done
EV=3b0c5f8e-6a1d-4c2e-9f7a-1d2e3f4a5b6c
RAW='{"expected_version":"any","events":[{"type":"Noted","data":{"n":1},"event_id":"'$EV'"}]}'
http POST "$CMD_URL/streams/notes-$acc/events" "$RAW"
expect_status 201
first=$(jq -c . <<<"$HTTP_BODY")
http POST "$CMD_URL/streams/notes-$acc/events" "$RAW"
replayed=$HTTP_STATUS
expect_eq "$(jq -c . <<<"$HTTP_BODY")" "$first" "a replay's answer"

say "a round of a replay, then a fresh deposit, waits in COMMIT"
sync_on
# both connections wait in COMMIT (DB_POOL_SIZE is at least 2)
round_behind b1 b2 replay "/streams/notes-$acc/events" "$RAW" \
	fresh "/accounts/$acc/deposits" '{"amount":5,"reference":"fresh"}'
expect_eq "$(cat "$OUT/replay.st")$(cat "$OUT/fresh.st")" "" \
	"no answer while the round waits"

say "the network is cut under that COMMIT: the round's own transaction is asked about"
proxy_own_cut
proxy_own_start
wait_for 10 eval '[ "$(outcomes "in progress")" -ge 1 ]'
expect_eq "$(outcomes "another transaction's")" 0 \
	"asked about the replay's transaction"
expect_eq "$(cat "$OUT/replay.st")$(cat "$OUT/fresh.st")" "" \
	"no answer while it is in progress"

say "the standby wait ends: both answer as committed"
sync_off
wait "$PID_fresh" || true
wait "$PID_replay" || true
wait "$PID_b1" || true
wait "$PID_b2" || true
expect_eq "$(cat "$OUT/b1.st") $(cat "$OUT/b2.st")" "201 201" "the first two"
expect_eq "$(cat "$OUT/fresh.st")" 201 "the deposit: $(cat "$OUT/fresh.body")"
expect_eq "$(cat "$OUT/replay.st")" "$replayed" \
	"the replay: $(cat "$OUT/replay.body")"
expect_eq "$(own_psql "SELECT count(*) FROM events
	WHERE data->>'reference' = 'fresh'")" 1 "the deposit in the log"
expect_eq "$(own_psql "SELECT count(*) FROM events
	WHERE event_id = '$EV'")" 1 "the replayed event in the log"

say "a round of a replay only: its answer stands, nothing to ask about"
asked=$(grep -c '"event":"commit_outcome"' "$TEST_TMP/CMD.log")
sync_on
send only "/streams/notes-$acc/events" "$RAW" only
wait_for 10 eval '[ "$(waiters)" = 1 ]'
proxy_own_cut
proxy_own_start
wait "$PID_only" || true
expect_eq "$(cat "$OUT/only.st")" "$replayed" \
	"the replay alone: $(cat "$OUT/only.body")"
expect_eq "$(jq -c . <"$OUT/only.body")" "$first" "the replay's answer"
expect_eq "$(grep -c '"event":"commit_outcome"' "$TEST_TMP/CMD.log")" \
	"$asked" "asked about a transaction"
sync_off
wait_for 10 eval '[ "$(waiters)" = 0 ]'
http POST "$CMD_URL/streams/notes-$acc/events" "$RAW" -H 'Idempotency-Key: only'
expect_eq "$HTTP_STATUS" "$replayed" "sent again with its key: $HTTP_BODY"
expect_eq "$(jq -c . <<<"$HTTP_BODY")" "$first" "the replay's answer"
expect_eq "$(own_psql "SELECT count(*) FROM events
	WHERE event_id = '$EV'")" 1 "still once in the log"

say "a replay and a stored refusal in one round: the replay stands, the refusal 503"
# the refusal's key row rode on the lost COMMIT: stored or not, not known,
# so it may not answer as if stored (a retry would decide again)
GHOST=00000000-0000-4000-8000-00000000dead
sync_on
round_behind b3 b4 again "/streams/notes-$acc/events" "$RAW" \
	ghost "/accounts/$GHOST/deposits" '{"amount":1}'
proxy_own_cut
proxy_own_start
wait "$PID_again" || true
wait "$PID_ghost" || true
expect_eq "$(cat "$OUT/again.st")" "$replayed" \
	"the replay: $(cat "$OUT/again.body")"
expect_eq "$(cat "$OUT/ghost.st")" 503 "the refusal: $(cat "$OUT/ghost.body")"
expect_eq "$(outcomes "another transaction's")" 0 \
	"asked about the replay's transaction"
sync_off
wait "$PID_b3" || true
wait "$PID_b4" || true
expect_eq "$(cat "$OUT/b3.st") $(cat "$OUT/b4.st")" "201 201" "the two that held"
http POST "$CMD_URL/accounts/$GHOST/deposits" '{"amount":1}' \
	-H 'Idempotency-Key: ghost'
expect_eq "$HTTP_STATUS" 404 "the refusal sent again with its key: $HTTP_BODY"

say "a round of a fresh raw append with event ids: its own transaction"
inprog=$(outcomes "in progress")
EV2=5d1e7a9b-2c3f-4e5a-8b6c-7d8e9f0a1b2c
RAW2='{"expected_version":"any","events":[{"type":"Noted","data":{"n":2},"event_id":"'$EV2'"}]}'
sync_on
send ids "/streams/notes-$acc/events" "$RAW2" ids
wait_for 10 eval '[ "$(waiters)" = 1 ]'
proxy_own_cut
proxy_own_start
# asked, not guessed: "in progress" while it waits for the standby
wait_for 10 eval '[ "$(outcomes "in progress")" -gt "$inprog" ]'
expect_eq "$(cat "$OUT/ids.st")" "" "no answer while it is in progress"
sync_off
wait "$PID_ids" || true
expect_eq "$(cat "$OUT/ids.st")" 201 "the append: $(cat "$OUT/ids.body")"
expect_eq "$(own_psql "SELECT count(*) FROM events
	WHERE event_id = '$EV2'")" 1 "the appended event in the log"
expect_eq "$(stop_pid "$CMD_PID")" 0 "exit status of CMD"
