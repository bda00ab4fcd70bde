#!/usr/bin/env bash
# t0458-session-names.sh - every PostgreSQL session of the services and of
# `query-service rebuild` says whose it is in application_name (README,
# Operations): an operator reading pg_stat_activity, or GET /status's
# open transactions, can tell the command service's NOTIFY session from
# its pool, and the query service's table reads, its readiness probe and
# a rebuild from its projector.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

migrate_db
start_service CMD command-service
start_service QRY query-service POLL_INTERVAL_MS=100

# sessions: the application names of this database's client sessions
# other than this test's own, one per line, sorted, without repeats; an
# unnamed one as "(unnamed)"
sessions()
{
	psql_q "SELECT DISTINCT coalesce(nullif(application_name, ''),
		'(unnamed)') FROM pg_stat_activity
		WHERE datname = current_database()
		AND backend_type = 'client backend'
		AND application_name NOT IN ('psql', 't0458-lock')
		ORDER BY 1"
}
# only_named WANT: every session's name matches the extended regex WANT
only_named()
{
	local other

	other=$(sessions | grep -Ev "$1" || true)
	[ -z "$other" ] ||
		fail "sessions named otherwise: $(tr '\n' ' ' <<<"$other")"
}

say "commands, a table view read and both readiness probes"
http POST "$CMD_URL/accounts" '{"owner":"t0458","currency":"EUR"}'
expect_status 201
id=$(jq -r .account_id <<<"$HTTP_BODY")
cmd "/accounts/$id/deposits" '{"amount":250}'
ryw "/accounts/$id/transactions"
expect_json '.items | length' 1
http GET "$CMD_URL/ready"
expect_status 200
http GET "$QRY_URL/ready"
expect_status 200

# the hint's session connects on the first hint
has() { sessions | grep -qx "$1"; }
wait_for 10 has tandem-command-notify
for name in tandem-command-service tandem-command-notify tandem-projector \
	tandem-projector-tail tandem-projector-listen tandem-projector-lock \
	tandem-query-read tandem-ready; do
	has "$name" || fail "no session named $name: $(sessions | tr '\n' ' ')"
done
# and nothing unnamed or named otherwise
want='command-service|command-notify|projector|projector-tail'
want+='|projector-listen|projector-lock|query-read|ready'
only_named "^tandem-($want)\$"

say "a rebuild's sessions, held up by a lock on the events table"
mkfifo "$TEST_TMP/lock.in"
PGAPPNAME=t0458-lock psql -X -A -t -q -v ON_ERROR_STOP=1 \
	-d "$DATABASE_URL" <"$TEST_TMP/lock.in" >"$TEST_TMP/lock.out" 2>&1 &
LOCKER=$!
track_pid "$LOCKER"
exec 7>"$TEST_TMP/lock.in"
echo "BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE; SELECT 'locked';" >&7
wait_for 10 grep -q '^locked' "$TEST_TMP/lock.out"
"$TANDEM_BIN/query-service" rebuild 2>"$TEST_TMP/rebuild.log" 7>&- &
REBUILD=$!
track_pid "$REBUILD"
waiting() {
	kill -0 "$REBUILD" 2>/dev/null ||
		fail "the rebuild ended early: $(tail -n 5 "$TEST_TMP/rebuild.log")"
	[ "$(psql_q "SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database()
		AND application_name = 'tandem-rebuild'
		AND wait_event_type = 'Lock'")" -ge 1 ]
}
wait_for 20 waiting
# every session of the rebuild open now is named too
only_named "^tandem-($want|rebuild)\$"
echo "ROLLBACK;" >&7
exec 7>&-
wait "$LOCKER" || fail "the locking session failed: $(cat "$TEST_TMP/lock.out")"
wait "$REBUILD" ||
	fail "the rebuild failed: $(tail -n 5 "$TEST_TMP/rebuild.log")"
ryw "/accounts/$id/transactions"
expect_json '.items | length' 1
