#!/usr/bin/env bash
# t0330-outage.sh - the command service and its database going away: with
# the cluster stopped, commands are 503 problem+json with Retry-After,
# answered at once (not after the queue timeout), and /ready is 503; once
# the cluster is back on the same port, the same process serves commands
# again within seconds. A restart of the cluster while the pool holds
# connections costs no command a failure at all.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

export MIGRATIONS_DIR=$TANDEM_ROOT/migrations
J='Content-Type: application/json'

expect_unavailable()
{
	expect_status 503
	expect_header Content-Type application/problem+json
	expect_json .status 503
	expect_json '.type | startswith("https://")' true
	has_header Retry-After || fail "503 without Retry-After"
	[[ $(header Retry-After) =~ ^[1-9][0-9]*$ ]] ||
		fail "Retry-After '$(header Retry-After)' is not a number of seconds"
}

# deposit AMOUNT: POST a deposit to $ACC, sets HTTP_* and SECS (duration).
deposit()
{
	local t0=$EPOCHREALTIME

	http POST "$CMD_URL/accounts/$ACC/deposits" "{\"amount\":$1}"
	SECS=$(perl -e 'printf "%.3f", $ARGV[1] - $ARGV[0]' "$t0" \
		"$EPOCHREALTIME")
}

# A command answered 201 (for wait_for: quiet, no fail()).
deposit_ok()
{
	[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST \
		-H "$J" -d '{"amount":1}' \
		"$CMD_URL/accounts/$ACC/deposits")" = 201 ]
}

ready_is()
{
	[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
		"$CMD_URL/ready")" = "$1" ]
}

# metric NAME: its value in the last GET /metrics.
metric()
{
	curl -sf --max-time 5 "$CMD_URL/metrics" |
		awk -v n="$1" '$1 == n { print $2 }'
}

say "service up with the database up"
pg_own_start
migrate_db "$OWN_DATABASE_URL"
# a queue timeout far above what the test allows for an answer
start_service CMD command-service DATABASE_URL="$OWN_DATABASE_URL" \
	BIND_ADDRESS=127.0.0.1 DB_POOL_SIZE=4 DB_QUEUE_TIMEOUT_MS=30000
pid=$CMD_PID
http GET "$CMD_URL/ready"
expect_status 200
http POST "$CMD_URL/accounts" '{"owner":"Outage","currency":"EUR"}'
expect_status 201
ACC=$(jq -r .account_id <<<"$HTTP_BODY")
deposit 100
expect_status 201
expect_json .balance 100

say "cluster stopped: commands are 503 with Retry-After, at once"
pg_own_stop
for i in 1 2 3 4 5 6; do
	deposit 7
	expect_unavailable
	perl -e 'exit($ARGV[0] < 2 ? 0 : 1)' "$SECS" ||
		fail "a 503 took $SECS s"
done
http POST "$CMD_URL/accounts" '{"owner":"Nobody","currency":"EUR"}'
expect_unavailable
http POST "$CMD_URL/transfers" \
	"{\"from\":\"$ACC\",\"to\":\"$ACC\",\"amount\":1}"
[ "$HTTP_STATUS" = 503 ] || [ "$HTTP_STATUS" = 409 ] ||
	[ "$HTTP_STATUS" = 422 ] ||
	fail "transfer while down: unexpected status $HTTP_STATUS"

say "a burst of 40 concurrent commands while down: every one answered"
seq 1 40 | xargs -P 40 -I{} curl -s -o /dev/null --max-time 10 \
	-w '%{http_code} %{time_total}\n' -X POST -H "$J" -d '{"amount":3}' \
	"$CMD_URL/accounts/$ACC/deposits" >"$TEST_TMP/burst" || true
expect_eq "$(wc -l <"$TEST_TMP/burst")" 40 "answers to the burst"
expect_eq "$(awk '$1 != 503' "$TEST_TMP/burst" | wc -l)" 0 \
	"answers other than 503 in the burst: $(sort "$TEST_TMP/burst" | uniq -c)"
awk '$2 >= 3 { bad = 1 } END { exit bad }' "$TEST_TMP/burst" ||
	fail "a 503 of the burst took 3 s or more: $(sort -k2 -n "$TEST_TMP/burst" | tail -3)"

say "/ready is 503, /health 200, the process runs on"
http GET "$CMD_URL/ready"
expect_unavailable
http GET "$CMD_URL/health"
expect_status 200
expect_eq "$(metric tandem_db_pool_connected)" 0 "pool connections while down"
kill -0 "$pid" 2>/dev/null || fail "command-service died while the database was down"

say "cluster back on the same port: recovery without a restart"
port=$OWN_PGPORT
pg_own_start
expect_eq "$OWN_PGPORT" "$port" "cluster port after the restart"
wait_for 10 deposit_ok
wait_for 10 ready_is 200
deposit 10
expect_status 201
expect_json .balance 111
expect_eq "$CMD_PID" "$pid" "command-service PID"
kill -0 "$pid" 2>/dev/null || fail "command-service is not running"
# nothing was appended while the database was down
expect_eq "$(psql -X -A -t -d "$OWN_DATABASE_URL" -c \
	"SELECT count(*) FROM events WHERE stream_id = 'account-$ACC'")" 4 \
	"events in the account's stream"

say "a cluster restart while the pool is connected: no command fails"
for i in 1 2 3 4 5 6 7 8; do
	deposit_ok || fail "deposit before the restart failed"
done
[ "$(metric tandem_db_pool_connected)" -ge 1 ] ||
	fail "no pool connection open before the restart"
pg_own_restart
for i in 1 2 3 4 5 6 7 8; do
	deposit 1
	expect_status 201
done
expect_json .balance 127

say "SIGTERM: clean exit"
expect_eq "$(stop_pid "$pid")" 0 "command-service exit status"
if grep -v '^{' "$TEST_TMP/CMD.log" | grep -q .; then
	fail "non-JSON lines in the log: $(grep -v '^{' "$TEST_TMP/CMD.log" | head -3)"
fi
