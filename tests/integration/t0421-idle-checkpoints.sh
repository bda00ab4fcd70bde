#!/usr/bin/env bash
# t0421-idle-checkpoints.sh - an idle projector commits nothing, and the
# table views of leader and follower still answer read tokens taken after
# the last event:
#   - with nothing appended, the leader writes no checkpoint and sends no
#     NOTIFY tandem_checkpoint for 3 s (it used to commit an empty window
#     and a NOTIFY every second, forever: each commit's transaction ids
#     were news to the next read);
#   - after transactions without events, a read token (a snapshot, a
#     GET /events' X-Position) waits on neither replica: each serves a
#     position that covers it, and answers with it as X-Position; the
#     stored checkpoints hold every event of it (though they do not
#     cover it);
#   - a deposit then: the follower's views have it (its append token), and
#     still cover the read tokens they answered before; idle again, a new
#     read token is answered too;
#   - events between the checkpoint and the follower's read (the leader's
#     commit held up by a lock on projection_leader): the follower does
#     not serve its read, a token after them is 503 on its table views;
#     once the leader commits, 200 with the deposit;
#   - a follower restarted while idle answers one as well.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/proj_lib.sh"

migrate_db
start_service CMD command-service DB_POOL_SIZE=4
start_service QA query-service POLL_INTERVAL_MS=50 LEADER_RETRY_MS=200
start_service QB query-service POLL_INTERVAL_MS=50 LEADER_RETRY_MS=200
proj_pick_leader QA QB
eval "L_URL=\$${L}_URL"

cmd /accounts '{"owner":"Ida","currency":"EUR"}'
A=$(jq -r .account_id <<<"$HTTP_BODY")
for amt in 100 200 300; do
	cmd "/accounts/$A/deposits" "{\"amount\":$amt}"
done
QRY_URL=$F_URL ryw "/accounts/$A/transactions"
expect_json '.items | length' 3

# checkpoints: every view's position and when it was last written
checkpoints()
{
	psql_q "SELECT string_agg(view || '=' || position || '@' || updated_at,
		' ' ORDER BY view) FROM projection_checkpoints"
}
# notified SECONDS: the NOTIFY tandem_checkpoint a session listening
# for SECONDS receives
notified()
{
	local out

	out=$(psql -X -q -d "$DATABASE_URL" -c "LISTEN tandem_checkpoint" \
		-c "SELECT pg_sleep($1)" -c "SELECT 'listened'" 2>&1) ||
		fail "psql: $out"
	[[ $out == *listened* ]] || fail "psql did not run: $out"
	grep -c 'Asynchronous notification' <<<"$out" || true
}
# served URL TOKEN: every view's position in URL's /status covers TOKEN
served()
{
	local pos

	http GET "$1/status"
	expect_status 200
	for pos in $(jq -r '.views[].position' <<<"$HTTP_BODY"); do
		[ "$("$PROJ_COVERS" "$pos" "$2")" = 1 ] || return 1
	done
}
# burn N: N transactions that append nothing, each with an id of its own
burn()
{
	local _

	for _ in $(seq 1 "$1"); do
		psql_q "SELECT pg_current_xact_id()" >/dev/null
	done
}
# answered URL TOKEN: the table views at URL answer reads at TOKEN, with
# an X-Position that covers it (the checkpoint the rows were read at does
# not: the position served, which holds the same events, is given)
answered()
{
	local path

	for path in "/accounts/$A/transactions" /owners/Ida/accounts; do
		http GET "$1$path" "" -H "X-Min-Position: $2" -H 'X-Wait-Ms: 5000'
		expect_status 200
		expect_eq "$("$PROJ_COVERS" "$(header X-Position)" "$2")" 1 \
			"X-Position of $path covers $2"
	done
}

say "idle: no checkpoint written, no NOTIFY sent for 3 s"
# the window with the deposits is committed first
wait_for 10 proj_covered "$DATABASE_URL" "$TOKEN"
before=$(checkpoints)
expect_eq "$(notified 3)" 0 "checkpoint NOTIFYs in 3 s idle"
expect_eq "$(checkpoints)" "$before" "the checkpoints after 3 s idle"

say "a read token taken after transactions without events"
burn 3
T1=$(proj_snapshot "$DATABASE_URL")
if proj_covered "$DATABASE_URL" "$T1"; then
	fail "a checkpoint covers $T1: an empty window was committed"
fi
proj_holds "$DATABASE_URL" "$T1" ||
	fail "the checkpoints miss events of $T1"
answered "$F_URL" "$T1"
answered "$L_URL" "$T1"
wait_for 5 served "$F_URL" "$T1"
wait_for 5 served "$L_URL" "$T1"
http GET "$L_URL/events?limit=1000"
expect_status 200
T2=$(header X-Position)
burn 2
answered "$F_URL" "$T2"
expect_eq "$(checkpoints)" "$before" "the checkpoints after the reads"

say "a deposit after that, then idle again"
cmd "/accounts/$A/deposits" '{"amount":400}'
QRY_URL=$F_URL ryw "/accounts/$A/transactions"
expect_json '.items | length' 4
expect_json '[.items[].amount] | max' 400
served "$F_URL" "$T1" || fail "the follower's views went back behind $T1"
burn 3
T3=$(proj_snapshot "$DATABASE_URL")
answered "$F_URL" "$T3"
answered "$L_URL" "$T3"
wait_for 5 served "$F_URL" "$T3"

say "events the leader has not committed: the follower does not serve them"
mkfifo "$TEST_TMP/lock.in"
psql -X -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" <"$TEST_TMP/lock.in" \
	>"$TEST_TMP/lock.out" 2>&1 &
LOCK_PID=$!
track_pid "$LOCK_PID"
exec 3>"$TEST_TMP/lock.in"
echo "BEGIN; SELECT 1 FROM projection_leader WHERE id = 1 FOR UPDATE;" >&3
locked()
{
	[ "$(psql_q "SELECT count(*) FROM pg_locks l JOIN pg_class c
		ON c.oid = l.relation WHERE c.relname = 'projection_leader'
		AND l.mode = 'RowShareLock' AND l.pid <> pg_backend_pid()")" -ge 1 ]
}
wait_for 10 locked
cmd "/accounts/$A/deposits" '{"amount":500}'
T5=$(proj_snapshot "$DATABASE_URL")
# the follower has read the deposit (its in-memory view has it)...
http GET "$F_URL/accounts/$A" "" -H "X-Min-Position: $TOKEN" \
	-H 'X-Wait-Ms: 5000'
expect_status 200
expect_json .version 6
# ...and its table views, held at the checkpoint before it, wait
for path in "/accounts/$A/transactions" /owners/Ida/accounts; do
	http GET "$F_URL$path" "" -H "X-Min-Position: $T5" -H 'X-Wait-Ms: 1500'
	expect_status 503
done
http GET "$F_URL/status"
for v in accounts statement daily audit; do
	pos=$(jq -r --arg v "$v" '.views[] | select(.name == $v) | .position' \
		<<<"$HTTP_BODY")
	[ -n "$pos" ] || fail "no view $v in /status"
	expect_eq "$("$PROJ_COVERS" "$pos" "$TOKEN")" 0 \
		"the follower's $v view serves the uncommitted deposit"
done
echo "COMMIT;" >&3
exec 3>&-
wait "$LOCK_PID" || fail "psql: $(cat "$TEST_TMP/lock.out")"
answered "$F_URL" "$T5"
expect_json '.items | length' 1
http GET "$F_URL/accounts/$A/transactions" "" -H "X-Min-Position: $T5"
expect_status 200
expect_json '.items | length' 5
expect_json '[.items[].amount] | max' 500

say "a follower restarted while idle"
expect_eq "$(stop_pid "$F_PID")" 0 "exit status of the follower"
start_service QF query-service POLL_INTERVAL_MS=50 LEADER_RETRY_MS=200
burn 2
T4=$(proj_snapshot "$DATABASE_URL")
answered "$QF_URL" "$T4"
expect_eq "$(proj_role "$QF_URL")" follower "the restarted one follows"
proj_fold_equal 10 "$DATABASE_URL"
