#!/usr/bin/env bash
# t0402-flush-hint.sh - a table-view commit that cannot finish does not
# hold back the hint that wakes the log reader. PostgreSQL holds one
# cluster-wide lock from a NOTIFY transaction's commit until that commit
# is flushed (or a synchronous standby answers), and every other NOTIFY
# waits for it: so the projector's NOTIFY tandem_checkpoint goes after its
# COMMIT, never inside it. A private cluster holds the query service's
# commits (synchronous replication to a standby that does not exist; the
# command service commits locally), and the query service polls only
# every 60 s: an append while the flusher's commit hangs is still hinted
# (no session waits on the NOTIFY lock) and is visible in GET
# /accounts/{id} with its X-Min-Position at once; the table views follow
# once the standby requirement goes, with nothing lost or applied twice.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

export MIGRATIONS_DIR=$TANDEM_ROOT/migrations

pg_own_start
migrate_db "$OWN_DATABASE_URL"

own_psql()
{
	psql -X -A -t -q -d "$OWN_DATABASE_URL" -c "$1"
}

# flusher_held: the projector's transaction waits for the standby
flusher_held()
{
	[ "$(own_psql "SELECT count(*) FROM pg_stat_activity
		WHERE wait_event = 'SyncRep'
		AND application_name = 'tandem-projector'")" = 1 ]
}

# caught_up: every view, the in-memory one too, has no lag
caught_up()
{
	curl -sf --max-time 5 "$QRY_URL/status" |
		jq -e '[.views[], .memory] | all(.lag_events == 0 and .loaded)' \
			>/dev/null
}

start_service CMD command-service DATABASE_URL="$OWN_DATABASE_URL" \
	PGOPTIONS='-c synchronous_commit=local'
start_service QRY query-service DATABASE_URL="$OWN_DATABASE_URL" \
	POLL_INTERVAL_MS=60000
wait_for 15 caught_up

cmd /accounts '{"owner":"Hint","currency":"EUR"}'
A=$(jq -r .account_id <<<"$HTTP_BODY")
ryw "/accounts/$A"
expect_json .version 1
ryw "/accounts/$A/transactions"
wait_for 10 caught_up

say "the query service's commits wait for a standby that does not exist"
at_exit "own_psql 'ALTER SYSTEM RESET synchronous_standby_names' &&
	own_psql 'SELECT pg_reload_conf()' >/dev/null"
own_psql "ALTER SYSTEM SET synchronous_standby_names = 'nobody'"
own_psql "SELECT pg_reload_conf()" >/dev/null

cmd "/accounts/$A/deposits" '{"amount":10}'
ryw "/accounts/$A"
expect_json .balance 10
wait_for 10 flusher_held

say "an append while the flusher's commit hangs"
cmd "/accounts/$A/deposits" '{"amount":20}'
TOKEN2=$TOKEN
# the reader is woken by the hint (its poll is 60 s away): 200, not 503
http GET "$QRY_URL/accounts/$A" "" -H "X-Min-Position: $TOKEN2" \
	-H 'X-Wait-Ms: 3000'
expect_status 200
expect_json .balance 30
expect_json .version 3
expect_eq "$(own_psql "SELECT count(*) FROM pg_stat_activity
	WHERE wait_event_type = 'Lock' AND wait_event = 'object'")" 0 \
	"sessions waiting on the NOTIFY lock"
flusher_held || fail "the flusher's commit no longer waits for the standby"
# the statement view is the flusher's: not there yet
http GET "$QRY_URL/accounts/$A/transactions" "" \
	-H "X-Min-Position: $TOKEN2" -H 'X-Wait-Ms: 0'
expect_status 503

say "the standby requirement goes: the table views follow"
own_psql "ALTER SYSTEM RESET synchronous_standby_names"
own_psql "SELECT pg_reload_conf()" >/dev/null
TOKEN=$TOKEN2
ryw "/accounts/$A/transactions"
expect_json '[.items[].amount] | join(",")' "10,20"
wait_for 10 caught_up
expect_eq "$(own_psql "SELECT count(*) FROM view_statement
	WHERE account_id = '$A'")" 2 "statement rows of $A"
http GET "$QRY_URL/accounts/$A"
expect_status 200
expect_json .balance 30
! grep -E 'Sanitizer|runtime error' "$TEST_TMP/QRY.log" "$TEST_TMP/CMD.log" ||
	fail "a sanitizer report in a service's log"
