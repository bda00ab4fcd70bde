#!/usr/bin/env bash
# t0810-standby-reads.sh - query services that read the log from a hot
# standby (LOG_DATABASE_URL) and keep their views, checkpoints and leader
# lock on the primary (READ_DATABASE_URL), SPEC section 12:
#   - the log reads go to the standby (its pg_stat_activity), the views
#     and the lock to the primary;
#   - a psql session on the primary holds a transaction that appended an
#     event while 8 clients deposit: the views pass the other commits (no
#     stall), a POST's token in X-Min-Position on the follower answers 200
#     with the deposit, and so does every POST-then-GET pair through the
#     gateway (nginx, both replicas behind it); after the commit the held event follows and the
#     views equal the fold of the log (no skip);
#   - GET /events paged on the standby past the held transaction, then
#     resumed after its commit, returns every event once; /streams/{id}
#     answers from the standby;
#   - kill -9 of the leader while it catches up with ~6,000 events: the
#     other takes over and the views equal the fold;
#   - /status shows the standby's replay lag in bytes and ms (against the
#     primary's WAL position), 0 once it has replayed everything, next to
#     the views' lag; a query service on the primary says it is none.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/proj_lib.sh"

NACC=8
pg_own_start "$TEST_TMP/prim"
P_URL=$OWN_DATABASE_URL
pg_own_standby "$TEST_TMP/prim" "$TEST_TMP/stby"
S_URL=$OWN_DATABASE_URL
export DATABASE_URL=$P_URL
migrate_db "$P_URL"
start_service CMD command-service DB_POOL_SIZE=8 MAX_CONNECTIONS=256
QENV=(LOG_DATABASE_URL="$S_URL" READ_DATABASE_URL="$P_URL"
	POLL_INTERVAL_MS=50 LEADER_RETRY_MS=200 PROJECTOR_BATCH=200)
start_service QA query-service "${QENV[@]}"
start_service QB query-service "${QENV[@]}"

proj_pick_leader QA QB
expect_eq "$(psql_q "SELECT holder FROM projection_leader")" \
	"$(hostname):$L_PID" "projection_leader.holder on the primary"

ACC=()
for i in $(seq 0 $((NACC - 1))); do
	http POST "$CMD_URL/accounts" "{\"owner\":\"s$((i % 3))\",\"currency\":\"EUR\"}"
	expect_status 201
	ACC+=("$(jq -r .account_id <<<"$HTTP_BODY")")
done

say "the log is read from the standby, the views live on the primary"
apps()
{
	proj_psql "$1" "SELECT string_agg(DISTINCT application_name, ','
		ORDER BY application_name) FROM pg_stat_activity
		WHERE application_name LIKE 'tandem-projector%'"
}
wait_for 10 eval "[[ \"\$(apps \"$S_URL\")\" == *tandem-projector-tail* ]]"
[[ "$(apps "$P_URL")" != *tandem-projector-tail* ]] ||
	fail "the projector reads the log from the primary: $(apps "$P_URL")"
[[ "$(apps "$P_URL")" == *tandem-projector-lock* ]] ||
	fail "no leader lock session on the primary: $(apps "$P_URL")"
wait_for 10 eval "[ \"\$(psql_q \"SELECT count(*) FROM view_accounts\")\" = $NACC ]"

say "a psql session on the primary holds a transaction that appended an event"
proj_hold "$P_URL" t0810-held

say "8 clients deposit while it stays open: the views pass their commits"
proj_load first 400 "${ACC[@]}"
tokens=()
for i in 1 2 3 4 5; do
	http POST "$CMD_URL/accounts/${ACC[0]}/deposits" "{\"amount\":$((1000 + i))}"
	expect_status 201
	tokens+=("$(jq -r .position <<<"$HTTP_BODY")")
	ver=$(jq -r .version <<<"$HTTP_BODY")
done
say "read-your-writes on the follower ($F) with the last deposit's token"
http GET "$F_URL/accounts/${ACC[0]}" "" -H "X-Min-Position: ${tokens[4]}" \
	-H 'X-Wait-Ms: 10000'
expect_status 200
expect_json .version "$ver"
http GET "$F_URL/accounts/${ACC[0]}/transactions?limit=1&after=$((ver - 1))" \
	"" -H "X-Min-Position: ${tokens[4]}" -H 'X-Wait-Ms: 10000'
expect_status 200
expect_json '.items[0].amount' 1005
say "read-your-writes through the gateway, both replicas behind it"
GW_DIR=$TEST_TMP/gw
GW_PORT=$(free_port)
"$TANDEM_ROOT/scripts/gateway" conf "$GW_DIR" "$GW_PORT" "127.0.0.1:$CMD_PORT" \
	"127.0.0.1:$QA_PORT,127.0.0.1:$QB_PORT" ||
	fail "scripts/gateway conf failed"
"$TANDEM_ROOT/scripts/gateway" exec "$GW_DIR" 2>"$GW_DIR/stderr.log" &
GW_PID=$!
track_pid "$GW_PID"
at_exit 'kill -TERM "$GW_PID" 2>/dev/null || true; sleep 0.3'
GW=http://127.0.0.1:$GW_PORT
wait_for 10 curl -fsS --max-time 2 -o /dev/null "$GW/health"
for i in 1 2 3 4 5 6; do
	http POST "$GW/accounts/${ACC[2]}/deposits" "{\"amount\":$((2000 + i))}"
	expect_status 201
	tok=$(jq -r .position <<<"$HTTP_BODY")
	gver=$(jq -r .version <<<"$HTTP_BODY")
	http GET "$GW/accounts/${ACC[2]}" "" -H "X-Min-Position: $tok" \
		-H 'X-Wait-Ms: 10000'
	expect_status 200
	[ "$(jq -r .version <<<"$HTTP_BODY")" -ge "$gver" ] ||
		fail "GET through the gateway did not see deposit $i: $HTTP_BODY"
done
proj_held_open t0810-held || fail "the held transaction ended early"
kill -TERM "$GW_PID"
wait "$GW_PID" 2>/dev/null || true

covered_all()
{
	local t

	for t in "${tokens[@]}"; do
		proj_covered "$P_URL" "$t" || return 1
	done
}
wait_for 10 covered_all
proj_load_done first
expect_eq "$(psql_q "SELECT count(*) FROM view_accounts
	WHERE account_id = '$HELD'")" 0 "the held account is not yet visible"
proj_held_open t0810-held || fail "the held transaction ended early"

# feed: page GET /events on the follower from $AFTER until a page is
# empty; appends the positions to $TEST_TMP/feed.pos
feed()
{
	local i n

	for i in $(seq 1 200); do
		http GET "$F_URL/events?limit=500${AFTER:+&after=$AFTER}"
		expect_status 200
		n=$(jq '.items | length' <<<"$HTTP_BODY")
		jq -r '.items[].position' <<<"$HTTP_BODY" >>"$TEST_TMP/feed.pos"
		AFTER=$(jq -r .next <<<"$HTTP_BODY" | jq -Rr @uri)
		[ "$n" -gt 0 ] || return 0
	done
	fail "GET /events did not end"
}
say "GET /events on the follower pages past the held transaction"
AFTER=
: >"$TEST_TMP/feed.pos"
feed
expect_eq "$(wc -l <"$TEST_TMP/feed.pos" | tr -d ' ')" \
	"$(psql_q "SELECT count(*) FROM events")" "events paged while held"

say "the held transaction commits; its event follows (no skip)"
proj_hold_commit
wait_for 10 eval "[ \"\$(psql_q \"SELECT owner FROM view_accounts
	WHERE account_id = '$HELD'\")\" = held ]"
proj_fold_equal 30 "$P_URL"
say "GET /events resumes and brings the held event; /streams/{id} has it"
wait_for 10 eval "[ \"\$(proj_psql \"$S_URL\" \"SELECT count(*) FROM events
	WHERE stream_id = 'account-$HELD'\")\" = 1 ]"
feed
expect_eq "$(wc -l <"$TEST_TMP/feed.pos" | tr -d ' ')" \
	"$(psql_q "SELECT count(*) FROM events")" "events paged in all"
expect_eq "$(sort -u "$TEST_TMP/feed.pos" | wc -l | tr -d ' ')" \
	"$(psql_q "SELECT count(*) FROM events")" "no event twice"
grep -qx "$(psql_q "SELECT global_position FROM events
	WHERE stream_id = 'account-$HELD'")" "$TEST_TMP/feed.pos" ||
	fail "GET /events skipped the held event"
http GET "$F_URL/streams/account-$HELD"
expect_status 200
expect_json '.items[0].type' AccountOpened
# the standby holds the same log
expect_eq "$(proj_psql "$S_URL" "SELECT count(*), max(global_position)
	FROM events")" "$(psql_q "SELECT count(*), max(global_position)
	FROM events")" "the standby's log"

say "kill -9 of the leader ($L) while it catches up with ~6,000 events"
for tag in k1 k2 k3 k4 k5 k6; do
	proj_seed "$P_URL" "$tag" 10 99
done
expect_eq "$(stop_pid "$L_PID" KILL)" 137 "kill -9 of $L"
takeover()
{
	[ "$(psql_q "SELECT holder FROM projection_leader")" = \
		"$(hostname):$F_PID" ] && [ "$(proj_role "$F_URL")" = leader ]
}
wait_for 10 takeover
proj_fold_equal 60 "$P_URL"
expect_eq "$(psql_q "SELECT count(DISTINCT epoch) FROM projection_checkpoints")" \
	1 "one epoch on the checkpoints"

say "/status: the standby's replay lag next to the views' lag"
http GET "$F_URL/status"
expect_status 200
expect_json .log_database.standby true
expect_json '.log_database.replay_lag_bytes | type' number
expect_json '.log_database.replay_lag_ms | type' number
expect_json '.log_database.replay_lsn | type' string
expect_json '.views[0].lag_ms | type' number

say "replay paused on the standby: the lag shows in bytes and ms"
proj_psql "$S_URL" "SELECT pg_wal_replay_pause()" >/dev/null
http POST "$CMD_URL/accounts/${ACC[1]}/deposits" '{"amount":7}'
expect_status 201
lagging()
{
	http GET "$F_URL/status"
	[ "$(jq -r .log_database.replay_lag_bytes <<<"$HTTP_BODY")" -gt 0 ] &&
		[ "$(jq -r .log_database.replay_lag_ms <<<"$HTTP_BODY")" -gt 0 ]
}
wait_for 10 lagging
proj_psql "$S_URL" "SELECT pg_wal_replay_resume()" >/dev/null
# the primary's position, read on DATABASE_URL, is what it is measured by
replayed()
{
	http GET "$F_URL/status"
	[ "$(jq -r .log_database.primary_lsn <<<"$HTTP_BODY")" = \
		"$(psql_q "SELECT pg_current_wal_lsn()")" ] &&
		[ "$(jq -r .log_database.replay_lag_bytes <<<"$HTTP_BODY")" = 0 ] &&
		[ "$(jq -r .log_database.replay_lag_ms <<<"$HTTP_BODY")" = 0 ]
}
wait_for 10 replayed
start_service QP query-service READ_DATABASE_URL="$P_URL"
http GET "$QP_URL/status"
expect_status 200
expect_json .log_database.standby false
expect_json .log_database.replay_lag_bytes 0
expect_eq "$(stop_pid "$QP_PID")" 0 "exit status of QP"

# the running lists of the reads only shrink while the standby moves on
# (qry_state_take_done()): no read found the standby behind a token of
# its own
for q in QA QB; do
	! grep -q 'has not reached this position' "$TEST_TMP/$q.log" ||
		fail "$q: a read was behind the one before it:" \
			"$(grep -m1 'has not reached this position' "$TEST_TMP/$q.log")"
done
expect_eq "$(stop_pid "$F_PID")" 0 "exit status of $F"
expect_eq "$(stop_pid "$CMD_PID")" 0 "exit status of CMD"
