#!/usr/bin/env bash
# t0822-lost-commit-answer.sh - the answer to a COMMIT is lost, but the
# commit is not (a network cut while the server waits for a synchronous
# standby). The command service reaches its database through a TCP proxy
# (tcp_proxy); synchronous_standby_names names a standby that does not
# exist, so a deposit's COMMIT waits in SyncRep; the proxy is killed (the
# server notices nothing) and started again. The service asks on a new
# connection what became of the transaction: "in progress" (committing),
# so it asks again, rather than "never happened" (its xid, the newest, is
# past every finished one; taking that for "in the future" answered 503
# for a deposit that then committed, and a retry without the key would
# have paid twice). Once the wait is released the deposit answers 201 and
# is in the log once.
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
proxy_own_start
migrate_db "$OWN_DATABASE_URL"
start_service CMD command-service DATABASE_URL="$PX_URL" \
	BIND_ADDRESS=127.0.0.1 DB_POOL_SIZE=1 DB_QUEUE_TIMEOUT_MS=30000 \
	DB_STATEMENT_TIMEOUT_MS=0 NOTIFY_EVENTS=false
http POST "$CMD_URL/accounts" '{"owner":"cut","currency":"EUR"}'
expect_status 201
acc=$(jq -r .account_id <<<"$HTTP_BODY")

say "commits wait for a standby that does not exist"
own_psql "ALTER SYSTEM SET synchronous_standby_names = 'nobody'"
own_psql "SELECT pg_reload_conf()" >/dev/null
curl -s -o "$OUT/cut.body" -w '%{http_code}' --max-time 60 -X POST \
	-H "$J" -H 'Idempotency-Key: cut' -d '{"amount":5,"reference":"cut"}' \
	"$CMD_URL/accounts/$acc/deposits" >"$OUT/cut.st" &
dep=$!
track_pid "$dep"
held()
{
	[ "$(own_psql "SELECT count(*) FROM pg_stat_activity
		WHERE wait_event = 'SyncRep'
		AND application_name = 'tandem-command-service'")" = 1 ]
}
wait_for 10 held

say "the network is cut under the waiting COMMIT, then comes back"
proxy_own_cut
proxy_own_start
asked()
{
	grep -q '"event":"commit_outcome".*"status":"in progress"' \
		"$TEST_TMP/CMD.log"
}
wait_for 10 asked
held || fail "the server stopped waiting"
expect_eq "$(cat "$OUT/cut.st" 2>/dev/null)" "" "no answer while it waits"

say "the standby wait ends: the commit shows, the deposit answers 201"
own_psql "ALTER SYSTEM RESET synchronous_standby_names"
own_psql "SELECT pg_reload_conf()" >/dev/null
wait "$dep" || true
expect_eq "$(cat "$OUT/cut.st")" 201 "answer to the deposit: $(cat "$OUT/cut.body")"
expect_eq "$(own_psql "SELECT count(*) FROM events
	WHERE data->>'reference' = 'cut'")" 1 "the deposit in the log"
grep -q '"event":"commit_outcome".*"status":"committed"' "$TEST_TMP/CMD.log" ||
	fail "no commit_outcome said committed"

say "sent again with its key: the same answer, nothing more in the log"
http POST "$CMD_URL/accounts/$acc/deposits" '{"amount":5,"reference":"cut"}' \
	-H 'Idempotency-Key: cut'
expect_status 201
expect_eq "$(own_psql "SELECT count(*) FROM events
	WHERE data->>'reference' = 'cut'")" 1 "still once in the log"
expect_eq "$(stop_pid "$CMD_PID")" 0 "exit status of CMD"
