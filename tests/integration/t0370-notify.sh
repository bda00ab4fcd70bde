#!/usr/bin/env bash
# t0370-notify.sh - after a commit the command service sends a coalesced
# NOTIFY tandem_events hint from its own connection (never inside the
# appending transaction); NOTIFY_EVENTS=false turns it off.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

migrate_db

# listen_count SECONDS: LISTEN for SECONDS while the caller's commands run
# in the background, print how many hints arrived.
listen_out="$TEST_TMP/listen.out"
listen_start()
{
	mkfifo "$TEST_TMP/listen.in"
	psql -X -q -d "$DATABASE_URL" <"$TEST_TMP/listen.in" >"$listen_out" 2>&1 &
	LISTEN_PID=$!
	track_pid "$LISTEN_PID"
	exec 7>"$TEST_TMP/listen.in"
	echo "LISTEN tandem_events; SELECT 'listening';" >&7
	wait_for 10 grep -q listening "$listen_out"
}
listen_poll()
{
	echo "SELECT 'poll';" >&7
	sleep 0.3
	grep -c 'notification "tandem_events"' "$listen_out" || true
}
listen_stop()
{
	echo '\q' >&7
	exec 7>&-
	wait "$LISTEN_PID" || true
	rm -f "$TEST_TMP/listen.in"
}

open_account()
{
	http POST "$CMD_URL/accounts" '{"owner":"n","currency":"EUR"}'
	expect_status 201
	jq -r .account_id <<<"$HTTP_BODY"
}

# on: a hint follows an append
start_service CMD command-service
listen_start
expect_eq "$(listen_poll)" 0 "no hint before any append"
id=$(open_account)
# the hint's session connects on its first hint: a wait, not a sleep
hinted() { [ "$(listen_poll)" -ge "$1" ]; }
wait_for 10 hinted 1
n=$(listen_poll)
# a refused command appends nothing and sends nothing
http POST "$CMD_URL/accounts/$id/withdrawals" '{"amount":5}'
expect_status 409
sleep 0.3
expect_eq "$(listen_poll)" "$n" "a refused command sent a hint"
# 40 concurrent deposits: at least one hint, at most one per commit
for i in $(seq 40); do
	curl -s -o /dev/null -w '%{http_code}\n' --max-time 20 -XPOST \
		-H 'Content-Type: application/json' -d '{"amount":1}' \
		"$CMD_URL/accounts/$id/deposits" >"$TEST_TMP/dep.$i" &
done
# wait_for takes a command: these are evaluated on every try
answered() { test "$(cat "$TEST_TMP"/dep.* | grep -c .)" = 40; }
stored() { test "$(psql_q "SELECT count(*) FROM events WHERE stream_id = 'account-$id'")" = $((ok + 1)); }
wait_for 30 answered
ok=$(cat "$TEST_TMP"/dep.* | grep -o 201 | wc -l)
[ "$ok" -ge 1 ] || fail "no deposit succeeded"
wait_for 20 stored
wait_for 10 hinted $((n + 1))
sleep 0.5
m=$(listen_poll)
[ "$m" -le $((n + ok)) ] || fail "more hints ($m) than commits ($ok)"
say "hints: $n after the open, $m after $ok of 40 deposits"
stop_pid "$CMD_PID" >/dev/null
listen_stop

# off: appends send nothing
rm -f "$listen_out"
start_service CMD command-service NOTIFY_EVENTS=false
listen_start
open_account >/dev/null
sleep 0.5
expect_eq "$(listen_poll)" 0 "NOTIFY_EVENTS=false still sent a hint"
listen_stop
expect_eq "$(stop_pid "$CMD_PID")" 0 "exit status"
