#!/usr/bin/env bash
# t0456-status-private.sh - GET /status lists the open transactions that
# hold a transaction id in the event store (pid, xid, age, application
# name, state) but never their SQL text: a psql session that wrote to
# events with a literal card number in its statement and stays idle in
# its transaction is listed, and the number appears nowhere in /status,
# /metrics or the service's log.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

SECRET=4111-1111-1111-1111
APP=t0456-terminal

migrate_db
start_service QRY query-service POLL_INTERVAL_MS=100

say "a session holds a transaction that wrote the secret"
mkfifo "$TEST_TMP/psql.in"
PGAPPNAME=$APP psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" \
	<"$TEST_TMP/psql.in" >"$TEST_TMP/psql.out" 2>&1 &
PSQL=$!
track_pid "$PSQL"
exec 7>"$TEST_TMP/psql.in"
# one statement, so that it stays the session's last query
echo "BEGIN;
WITH ins AS (INSERT INTO events (stream_id, stream_version, event_id,
	event_type, data, metadata) VALUES ('card-1', 1, gen_random_uuid(),
	'CardSeen', '{\"pan\": \"$SECRET\"}', '{}') RETURNING 1)
SELECT 'held ' || pg_backend_pid() || ' ' || pg_current_xact_id() FROM ins;" >&7
wait_for 10 grep -q '^held ' "$TEST_TMP/psql.out"
read -r _ HPID HXID < <(grep '^held ' "$TEST_TMP/psql.out")
# the database itself does show the text to a superuser
[ "$(psql_q "SELECT count(*) FROM pg_stat_activity
	WHERE pid = $HPID AND query LIKE '%$SECRET%'")" = 1 ] ||
	fail "pg_stat_activity does not show the secret: nothing to hide"

say "/status lists pid $HPID (xid $HXID) without its query"
sleep 0.2
http GET "$QRY_URL/status"
expect_status 200
jq -e --argjson p "$HPID" --arg x "$HXID" --arg app "$APP" '
	[.pending_transactions[] | select(.pid == $p)] | length == 1 and
	(.[0] | .xid == $x and (.age_ms | type) == "number" and
	.age_ms >= 200 and .application_name == $app and
	.state == "idle in transaction" and
	(keys == ["age_ms", "application_name", "pid", "state", "xid"]))' \
	<<<"$HTTP_BODY" >/dev/null ||
	fail "/status does not list pid $HPID as expected: $HTTP_BODY"
! grep -qF "$SECRET" <<<"$HTTP_BODY" ||
	fail "/status shows the secret: $HTTP_BODY"
! grep -qF "pan" <<<"$HTTP_BODY" ||
	fail "/status shows the statement: $HTTP_BODY"

http GET "$QRY_URL/metrics"
expect_status 200
! grep -qF "$SECRET" <<<"$HTTP_BODY" || fail "/metrics shows the secret"
! grep -qF "$SECRET" "$TEST_TMP/QRY.log" || fail "the log shows the secret"

echo "ROLLBACK;" >&7
exec 7>&-
wait "$PSQL" || fail "psql failed: $(cat "$TEST_TMP/psql.out")"
http GET "$QRY_URL/status"
jq -e --argjson p "$HPID" 'all(.pending_transactions[]; .pid != $p)' \
	<<<"$HTTP_BODY" >/dev/null || fail "pid $HPID still listed: $HTTP_BODY"
