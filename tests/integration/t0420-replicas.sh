#!/usr/bin/env bash
# t0420-replicas.sh - two query-service processes on one database:
#   - exactly one leads (projection_leader.holder, /status role);
#   - kill -9 of the leader under command load: the follower takes over
#     within 5 s and the views equal the fold of the events;
#   - a paused leader (SIGSTOP) whose lock session is cut (as by a network
#     partition) loses the lead to the other process; resumed (SIGCONT),
#     it commits nothing more (fencing by epoch and compare-and-set);
#   - fencing alone: the epoch bumped by hand while the leader is paused;
#     resumed, its next batch rolls back ("projector_fenced");
#   after each, the views equal the fold: nothing lost, nothing doubled.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/proj_lib.sh"

NACC=16
migrate_db
start_service CMD command-service DB_POOL_SIZE=8 MAX_CONNECTIONS=256
start_service QA query-service POLL_INTERVAL_MS=50 LEADER_RETRY_MS=200 \
	PROJECTOR_BATCH=200
start_service QB query-service POLL_INTERVAL_MS=50 LEADER_RETRY_MS=200 \
	PROJECTOR_BATCH=200

holder()
{
	psql_q "SELECT holder FROM projection_leader"
}
epoch()
{
	psql_q "SELECT epoch FROM projection_leader"
}

say "exactly one of the two leads"
proj_pick_leader QA QB
expect_eq "$(holder)" "$(hostname):$L_PID" "projection_leader.holder"

ACC=()
for i in $(seq 0 $((NACC - 1))); do
	http POST "$CMD_URL/accounts" "{\"owner\":\"r$((i % 3))\",\"currency\":\"EUR\"}"
	expect_status 201
	ACC+=("$(jq -r .account_id <<<"$HTTP_BODY")")
	http POST "$CMD_URL/accounts/${ACC[$i]}/deposits" '{"amount":100000}'
	expect_status 201
done

# load NAME COUNT: COUNT deposits and transfers, 8 at a time, in the
# background; `wait $LOAD_PID` for the end, statuses in $TEST_TMP/NAME.codes
load()
{
	local conf=$TEST_TMP/$1.conf n a b

	: >"$conf"
	for n in $(seq 1 "$2"); do
		a=$((RANDOM % NACC))
		b=$(((a + 1 + RANDOM % (NACC - 1)) % NACC))
		[ "$n" -eq 1 ] || echo next >>"$conf"
		if [ $((n % 3)) -eq 0 ]; then
			printf 'url = "%s/transfers"\ndata = "{\\"from\\":\\"%s\\",\\"to\\":\\"%s\\",\\"amount\\":%d}"\n' \
				"$CMD_URL" "${ACC[$a]}" "${ACC[$b]}" $((n % 97 + 1))
		else
			printf 'url = "%s/accounts/%s/deposits"\ndata = "{\\"amount\\":%d}"\n' \
				"$CMD_URL" "${ACC[$a]}" $((n % 89 + 1))
		fi >>"$conf"
		printf 'header = "Content-Type: application/json"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' >>"$conf"
	done
	with_auth "$conf"
	curl -q -s --parallel --parallel-max 8 --max-time 120 --config "$conf" \
		>"$TEST_TMP/$1.codes" 2>"$TEST_TMP/$1.err" &
	LOAD_PID=$!
	track_pid "$LOAD_PID"
}
load_done()
{
	wait "$LOAD_PID" || fail "curl: $(tail -3 "$TEST_TMP/$1.err")"
	bad=$(grep -vx 201 "$TEST_TMP/$1.codes" | sort | uniq -c || true)
	[ -z "$bad" ] || fail "commands answered other than 201: $bad"
}

say "kill -9 of the leader ($L) under command load"
load first 1500
sleep 1
n0=$(psql_q "SELECT count(*) FROM events")
t0=$(_lib_now_ms)
expect_eq "$(stop_pid "$L_PID" KILL)" 137 "kill -9 of $L"
takeover()
{
	[ "$(holder)" = "$(hostname):$F_PID" ] && [ "$(proj_role "$F_URL")" = leader ]
}
wait_for 10 takeover
took=$(($(_lib_now_ms) - t0))
say "$F took over after $took ms ($n0 events when the leader died)"
[ "$took" -le 5000 ] || fail "the takeover took $took ms, over 5 s"
load_done first
proj_fold_equal 30 "$DATABASE_URL"
expect_eq "$(psql_q "SELECT count(DISTINCT epoch) FROM projection_checkpoints")" \
	1 "one epoch on the checkpoints"
expect_eq "$(psql_q "SELECT min(epoch) FROM projection_checkpoints")" \
	"$(epoch)" "the checkpoints carry the new leader's epoch"

say "the killed one comes back as a follower"
start_service $L query-service POLL_INTERVAL_MS=50 LEADER_RETRY_MS=200 \
	PROJECTOR_BATCH=200
eval "L_PID=\$${L}_PID L_URL=\$${L}_URL"
wait_for 5 eval "[ \"\$(proj_role $L_URL)\" = follower ]"
expect_eq "$(holder)" "$(hostname):$F_PID" "the leader stays"

# pause PID: SIGSTOP it while it does not hold the projection_leader row
# (between batches), so that others can lock the row; prints nothing
pause()
{
	local i

	for i in $(seq 1 50); do
		kill -STOP "$1"
		if psql_q "SET lock_timeout = '300ms';
			SELECT 1 FROM projection_leader FOR UPDATE" >/dev/null 2>&1; then
			return 0
		fi
		kill -CONT "$1"
		sleep 0.05
	done
	fail "could not pause $1 between batches"
}

say "a paused leader ($F) whose lock session is cut loses the lead to $L"
E1=$(epoch)
pause "$F_PID"
expect_eq "$(psql_q "SELECT count(pg_terminate_backend(a.pid))
	FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
	WHERE l.locktype = 'advisory' AND l.granted
	AND a.application_name = 'tandem-projector-lock'")" 1 \
	"the paused leader's lock session cut"
wait_for 5 eval "[ \"\$(holder)\" = \"$(hostname):$L_PID\" ]"
load second 300
load_done second
proj_fold_equal 20 "$DATABASE_URL"
say "resume $F"
kill -CONT "$F_PID"
wait_for 5 eval "[ \"\$(proj_role $F_URL)\" = follower ]"
load third 200
load_done third
proj_fold_equal 20 "$DATABASE_URL"
expect_eq "$(psql_q "SELECT count(*) FROM projection_checkpoints
	WHERE epoch <= $E1")" 0 \
	"no checkpoint written by the former leader after the takeover"
grep -q '"event":"projector_step_down"' "$TEST_TMP/$F.log" ||
	fail "$F did not log that it stepped down"

say "fencing: the epoch bumped by hand while the leader ($L) is paused"
E2=$(epoch)
pause "$L_PID"
t_bump=$(psql_q "UPDATE projection_leader SET epoch = epoch + 1
	RETURNING now()")
load fourth 300
load_done fourth
kill -CONT "$L_PID"
wait_for 10 eval "grep -q '\"event\":\"projector_fenced\"' $TEST_TMP/$L.log"
proj_fold_equal 20 "$DATABASE_URL"
expect_eq "$(psql_q "SELECT count(*) FROM projection_checkpoints
	WHERE epoch = $E2 AND updated_at >= '$t_bump'")" 0 \
	"no batch committed under the fenced epoch"
[ "$(epoch)" -gt $((E2 + 1)) ] || fail "nobody took the lead again"
say "leader now $(holder), epoch $(epoch)"
wait_for 5 proj_one_leads "$QA_URL" "$QB_URL"

expect_eq "$(stop_pid "$QA_PID")" 0 "exit status of QA"
expect_eq "$(stop_pid "$QB_PID")" 0 "exit status of QB"
expect_eq "$(stop_pid "$CMD_PID")" 0 "exit status of CMD"
