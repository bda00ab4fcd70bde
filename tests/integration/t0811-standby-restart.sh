#!/usr/bin/env bash
# t0811-standby-restart.sh - the hot standby that two query services read
# the log from (LOG_DATABASE_URL; views on the primary) is restarted under
# load, once by a fast shutdown and once by a crash (SIGQUIT to its
# postmaster), SPEC section 12, issue 15's test (3):
#   - 8 clients deposit on the primary throughout: every answer is 201
#     (the standby is asynchronous, the command service never needs it);
#   - while the standby is down, the follower still answers account reads
#     from the views, and GET /events, which needs the log, is a 503
#     problem with Retry-After; the leader reports the lost log session
#     and neither service exits;
#   - after it is back: the views equal the fold of the log, one service
#     leads, a POST's token in X-Min-Position on the follower answers 200
#     with the deposit, and /status shows the standby replaying;
#   - a psql session on the primary holds an appended event across both
#     restarts: the tokens stay short meanwhile (the standby's snapshots
#     leave out what the primary's snapshot saw finished:
#     ES_SQL_SNAPSHOT_DONE), and after its commit the event is in the
#     views (no skip).
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/proj_lib.sh"

pg_own_start "$TEST_TMP/prim"
P_URL=$OWN_DATABASE_URL
pg_own_standby "$TEST_TMP/prim" "$TEST_TMP/stby"
S_URL=$OWN_DATABASE_URL
S_PID=$OWN_PG_PID
S_PORT=$OWN_PGPORT
export DATABASE_URL=$P_URL
migrate_db "$P_URL"
start_service CMD command-service DB_POOL_SIZE=8 MAX_CONNECTIONS=256
QENV=(LOG_DATABASE_URL="$S_URL" READ_DATABASE_URL="$P_URL"
	POLL_INTERVAL_MS=50 LEADER_RETRY_MS=200 PROJECTOR_BATCH=200)
start_service QA query-service "${QENV[@]}"
start_service QB query-service "${QENV[@]}"
proj_pick_leader QA QB

ACC=()
for i in 1 2 3 4 5 6 7 8; do
	http POST "$CMD_URL/accounts" "{\"owner\":\"r$((i % 3))\",\"currency\":\"EUR\"}"
	expect_status 201
	ACC+=("$(jq -r .account_id <<<"$HTTP_BODY")")
done
wait_for 10 eval "[ \"\$(psql_q \"SELECT count(*) FROM view_accounts\")\" = 8 ]"

say "a psql session on the primary holds a transaction that appended an event"
proj_hold "$P_URL" t0811-held

answered()
{
	[ "$(wc -l <"$TEST_TMP/$1.codes")" -ge "$2" ]
}

events_unavailable()
{
	http GET "$F_URL/events?limit=1"
	[ "$HTTP_STATUS" = 503 ]
}

standby_down()
{
	local errors

	errors=$(grep -c '"event":"projector_error"' "$TEST_TMP/$L.log" || true)
	case $1 in
	fast) pg_own_stop "$TEST_TMP/stby" ;;
	crash)
		kill -QUIT "$S_PID"
		wait_for 10 eval "! kill -0 $S_PID 2>/dev/null"
		;;
	esac
	say "the standby is down ($1): reads from the views go on"
	http GET "$F_URL/accounts/${ACC[0]}"
	expect_status 200
	expect_json .id "${ACC[0]}"
	# (a pooled connection to the log finds out when it is next used)
	wait_for 10 events_unavailable
	http GET "$F_URL/events?limit=1"
	expect_status 503
	expect_header Content-Type application/problem+json
	has_header Retry-After || fail "503 without Retry-After"
	wait_for 10 eval "[ \"\$(grep -c '\"event\":\"projector_error\"' \
		\"$TEST_TMP/$L.log\")\" -gt $errors ]"
	kill -0 "$L_PID" && kill -0 "$F_PID" ||
		fail "a query service exited with the standby down"
}

standby_up()
{
	pg_own_start "$TEST_TMP/stby" "$S_PORT"
	expect_eq "$OWN_PGPORT" "$S_PORT" "the standby's port after its start"
	S_PID=$OWN_PG_PID
	expect_eq "$(proj_psql "$S_URL" "SELECT pg_is_in_recovery()")" t \
		"a standby again"
}

# short_position WHAT: the last answer's X-Position lists fewer than 100
# running transactions (in all its snapshots: a mid-window token has two)
short_position()
{
	local xips

	[ -n "$(header X-Position)" ] || fail "$1: no X-Position"
	xips=$(header X-Position | tr -cd , | wc -c)
	[ "$xips" -lt 100 ] ||
		fail "$1: X-Position lists $xips running transactions"
}

# restart HOW: deposits under way, the standby down and up, then checks
restart()
{
	local tok ver n

	say "8 clients deposit; the standby goes down ($1) under them"
	# until stopped, after the checks
	proj_load "$1" 0 "${ACC[@]}"
	wait_for 30 answered "$1" 100
	standby_down "$1"
	n=$(wc -l <"$TEST_TMP/$1.codes")
	# deposits go on being answered with the standby down
	wait_for 10 answered "$1" $((n + 50))
	standby_up
	n=$(wc -l <"$TEST_TMP/$1.codes")
	wait_for 10 answered "$1" $((n + 50))
	proj_load_stop "$1"
	proj_held_open t0811-held || fail "the held transaction ended early"
	say "back after the $1 restart: the views equal the fold of the log"
	proj_fold_equal 30 "$P_URL"
	proj_one_leads "$L_URL" "$F_URL" || fail "not one leader"
	http POST "$CMD_URL/accounts/${ACC[1]}/deposits" '{"amount":4321}'
	expect_status 201
	tok=$(jq -r .position <<<"$HTTP_BODY")
	ver=$(jq -r .version <<<"$HTTP_BODY")
	http GET "$F_URL/accounts/${ACC[1]}" "" -H "X-Min-Position: $tok" \
		-H 'X-Wait-Ms: 10000'
	expect_status 200
	expect_json .version "$ver"
	# the held transaction, and what ran in the last second or so; not
	# every transaction committed without events since it began (the
	# projector's own: thousands by now, past what a header may hold)
	short_position "GET /accounts/{id}"
	http GET "$F_URL/events?limit=1"
	expect_status 200
	short_position "GET /events"
	http GET "$F_URL/streams/account-${ACC[1]}?limit=1"
	expect_status 200
	short_position "GET /streams/{id}"
	http GET "$F_URL/status"
	expect_status 200
	expect_json .log_database.standby true
}

eval "L_URL=\$${L}_URL"
restart fast
restart crash

say "the held transaction commits; its event follows (no skip)"
proj_hold_commit
wait_for 10 eval "[ \"\$(psql_q \"SELECT owner FROM view_accounts
	WHERE account_id = '$HELD'\")\" = held ]"
proj_fold_equal 30 "$P_URL"
expect_eq "$(proj_psql "$S_URL" "SELECT count(*), max(global_position)
	FROM events")" "$(psql_q "SELECT count(*), max(global_position)
	FROM events")" "the standby's log"

expect_eq "$(stop_pid "$F_PID")" 0 "exit status of $F"
expect_eq "$(stop_pid "$L_PID")" 0 "exit status of $L"
expect_eq "$(stop_pid "$CMD_PID")" 0 "exit status of CMD"
