#!/usr/bin/env bash
# t0341-sigterm-held-commit.sh - SIGTERM while commits hang (issue 12,
# finding 3a). A private cluster holds every commit (synchronous
# replication to a standby that does not exist). Two deposits are in
# COMMIT on the pool's two workers, four more wait in its queue, then
# SIGTERM with SHUTDOWN_GRACE_MS=1000: the queued ones are answered 503
# and are not in the log; the two that were running get their true
# answer (the shutdown cancels their wait for the standby: 201, in the
# log), never 503; the service exits 0 within 10 s. Then a backend that
# stops answering at all (SIGSTOP, a stand-in for a dead network) while
# its deposit is in COMMIT: the client gets 504 outcome-unknown, and the
# service still exits 0 within 10 s, naming the worker it left behind.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

export MIGRATIONS_DIR=$TANDEM_ROOT/migrations
J='Content-Type: application/json'
OUT=$TEST_TMP/out
mkdir -p "$OUT"

pg_own_start
migrate_db "$OWN_DATABASE_URL"

own_psql()
{
	psql -X -A -t -q -d "$OWN_DATABASE_URL" -c "$1"
}

# in_log REF: how many events carry reference REF
in_log()
{
	own_psql "SELECT count(*) FROM events WHERE data->>'reference' = '$1'"
}

# held N: N connections of the command service wait for the standby
held()
{
	[ "$(own_psql "SELECT count(*) FROM pg_stat_activity
		WHERE wait_event = 'SyncRep'
		AND application_name = 'tandem-command-service'")" = "$1" ]
}

# pool_holds N: the pool has N jobs (running or queued)
pool_holds()
{
	local m

	m=$(curl -sf --max-time 5 "$CMD_URL/metrics") || return 1
	[ "$(awk '$1 == "tandem_db_pool_in_use" || $1 == "tandem_db_pool_waiting" { n += $2 } END { print n + 0 }' <<<"$m")" = "$1" ]
}

# deposit NAME ACCOUNT [curl args]: POST a deposit of 1 with reference
# NAME in the background; "STATUS" in $OUT/NAME.st, the body in NAME.body
deposit()
{
	local name=$1 acc=$2

	shift 2
	(
		st=$(curl -s -o "$OUT/$name.body" -w '%{http_code}' \
			--max-time 60 -X POST -H "$J" "$@" \
			-d "{\"amount\":1,\"reference\":\"$name\"}" \
			"$CMD_URL/accounts/$acc/deposits") || st=000
		echo "$st" >"$OUT/$name.st"
	) &
	DEPOSIT_PIDS+=($!)
}

# exits_within SECS PID: the service PID exits within SECS of SIGTERM;
# prints its exit status
exits_within()
{
	local secs=$1 pid=$2 t0 ms st

	t0=$(_lib_now_ms)
	kill -TERM "$pid"
	while [ ! -f "$_LIB/status.$pid" ]; do
		ms=$(($(_lib_now_ms) - t0))
		[ "$ms" -lt $((secs * 1000)) ] ||
			fail "the service did not exit within $secs s of SIGTERM"
		sleep 0.1
	done
	st=$(stop_pid "$pid")
	say "exited $st after $(($(_lib_now_ms) - t0)) ms"
	echo "$st"
}

start_service CMD command-service DATABASE_URL="$OWN_DATABASE_URL" \
	BIND_ADDRESS=127.0.0.1 DB_POOL_SIZE=2 DB_QUEUE_TIMEOUT_MS=60000 \
	DB_STATEMENT_TIMEOUT_MS=0 SHUTDOWN_GRACE_MS=1000
for a in 1 2; do
	http POST "$CMD_URL/accounts" "{\"owner\":\"held $a\",\"currency\":\"EUR\"}"
	expect_status 201
	jq -r .account_id <<<"$HTTP_BODY" >"$OUT/acc.$a"
done
A1=$(cat "$OUT/acc.1")
A2=$(cat "$OUT/acc.2")

say "commits wait for a standby that does not exist"
own_psql "ALTER SYSTEM SET synchronous_standby_names = 'nobody'"
own_psql "SELECT pg_reload_conf()" >/dev/null

DEPOSIT_PIDS=()
deposit run-1 "$A1"
# one at a time: two at once may share a round, and a worker
wait_for 10 held 1
deposit run-2 "$A2" -H 'Idempotency-Key: run-2'
wait_for 10 held 2
for i in 1 2 3 4; do
	deposit "queued-$i" "$A1"
done
wait_for 10 pool_holds 6

say "SIGTERM with two deposits in COMMIT and four queued"
expect_eq "$(exits_within 10 "$CMD_PID")" 0 "command-service exit status"
for p in "${DEPOSIT_PIDS[@]}"; do
	wait "$p" || true
done
for name in run-1 run-2; do
	st=$(cat "$OUT/$name.st")
	say "$name: $st $(cat "$OUT/$name.body")"
	[ "$st" != 503 ] || fail "$name was in COMMIT and got 503"
	expect_eq "$st" 201 "answer to $name (its commit stands)"
	expect_eq "$(in_log "$name")" 1 "$name in the log"
done
for i in 1 2 3 4; do
	st=$(cat "$OUT/queued-$i.st")
	expect_eq "$st" 503 "answer to queued-$i"
	jq -e '.status == 503' "$OUT/queued-$i.body" >/dev/null ||
		fail "queued-$i: body $(cat "$OUT/queued-$i.body")"
	expect_eq "$(in_log "queued-$i")" 0 "queued-$i (answered 503) in the log"
done
grep -q '"event":"stopped"' "$TEST_TMP/CMD.log" || fail "no stopped line"

say "a backend that no longer answers: 504, and the service still exits"
start_service CMD command-service DATABASE_URL="$OWN_DATABASE_URL" \
	BIND_ADDRESS=127.0.0.1 DB_POOL_SIZE=2 DB_QUEUE_TIMEOUT_MS=60000 \
	DB_STATEMENT_TIMEOUT_MS=0 SHUTDOWN_GRACE_MS=1000 NOTIFY_EVENTS=false
DEPOSIT_PIDS=()
deposit stuck-1 "$A1" -H 'Idempotency-Key: stuck-1'
wait_for 10 held 1
backend=$(own_psql "SELECT pid FROM pg_stat_activity
	WHERE wait_event = 'SyncRep'
	AND application_name = 'tandem-command-service'")
at_exit "kill -CONT $backend 2>/dev/null"
kill -STOP "$backend"
expect_eq "$(exits_within 10 "$CMD_PID")" 0 "command-service exit status"
wait "${DEPOSIT_PIDS[0]}" || true
say "stuck-1: $(cat "$OUT/stuck-1.st") $(cat "$OUT/stuck-1.body")"
expect_eq "$(cat "$OUT/stuck-1.st")" 504 "answer to the deposit stuck in COMMIT"
expect_eq "$(jq -r .type "$OUT/stuck-1.body")" \
	https://tandem.dev/problems/outcome-unknown "its problem type"
grep -q '"event":"workers_abandoned"' "$TEST_TMP/CMD.log" ||
	fail "no workers_abandoned line"
kill -CONT "$backend"
own_psql "ALTER SYSTEM RESET synchronous_standby_names"
own_psql "SELECT pg_reload_conf()" >/dev/null
! grep -E 'Sanitizer|runtime error' "$TEST_TMP/CMD.log.prev" "$TEST_TMP/CMD.log" ||
	fail "a sanitizer report in the command service's log"
