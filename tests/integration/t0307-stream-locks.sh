#!/usr/bin/env bash
# t0307-stream-locks.sh - the stream locks (0014_append_stream_locks.sql):
# every append takes pg_advisory_xact_lock_shared(ES_STREAM_LOCK_CLASS,
# hashtext(stream_id)) on each of its streams, so a writer that holds the
# lock exclusive is never overtaken: an append to its stream waits for its
# commit, then reads its write. This is what lets a command that lost a
# race to another process win its next try (t0305).
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

CLASS=1416520813

migrate_db
start_service CMD command-service

HOLD_IN=$TEST_TMP/hold.in
HOLD_OUT=$TEST_TMP/hold.out

# hold_begin SQL: a psql session that runs SQL in an open transaction and
# keeps it open until hold_end
hold_begin()
{
	rm -f "$HOLD_IN" "$HOLD_OUT"
	mkfifo "$HOLD_IN"
	psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" \
		<"$HOLD_IN" >"$HOLD_OUT" 2>&1 &
	HOLD_PID=$!
	track_pid "$HOLD_PID"
	exec 7>"$HOLD_IN"
	printf 'BEGIN;\n%s;\nSELECT %s;\n' "$1" "'held'" >&7
	wait_for 10 grep -qx held "$HOLD_OUT"
}

hold_end()
{
	printf 'COMMIT;\n' >&7
	exec 7>&-
	wait "$HOLD_PID" || fail "the holding psql failed: $(cat "$HOLD_OUT")"
}

# post NAME PATH BODY: a POST in the background; status in $TEST_TMP/NAME.st
post()
{
	curl -sS --max-time 60 -o "$TEST_TMP/$1.body" -w '%{http_code}\n' \
		-X POST -H 'Content-Type: application/json' \
		--data-binary "$3" "$CMD_URL$2" >"$TEST_TMP/$1.st" || true
}

# waiting MODE: how many sessions wait for a stream lock in MODE
waiting()
{
	psql_q "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
		AND classid = $CLASS AND objsubid = 2 AND mode = '$1'
		AND NOT granted"
}

waits_for_share()
{
	[ "$(waiting ShareLock)" = 1 ]
}

http POST "$CMD_URL/accounts" '{"owner":"locks","currency":"EUR"}'
expect_status 201
A=$(jq -r .account_id <<<"$HTTP_BODY")
http POST "$CMD_URL/accounts/$A/deposits" '{"amount":10}'
expect_status 201

say "a deposit waits while another session holds its stream's lock exclusive"
hold_begin "SELECT pg_advisory_xact_lock($CLASS, hashtext('account-$A'))"
post dep "/accounts/$A/deposits" '{"amount":5}' &
DEP=$!
wait_for 10 waits_for_share
expect_eq "$(cat "$TEST_TMP/dep.st" 2>/dev/null)" "" "no answer while held"
# the holder writes the stream itself: the service's cache is behind now
ver=$(psql_q "SELECT max(stream_version) FROM events
	WHERE stream_id = 'account-$A'")
expect_eq "$ver" 2 "opened and one deposit"
printf "%s;\n" "INSERT INTO events (stream_id, stream_version, event_id,
	event_type, data, metadata)
	SELECT stream_id, 3, gen_random_uuid(), event_type,
	jsonb_set(jsonb_set(data, '{amount}', '7'), '{balance_after}', '17'),
	metadata FROM events WHERE stream_id = 'account-$A'
	AND stream_version = 2" >&7
hold_end
wait "$DEP"
expect_eq "$(cat "$TEST_TMP/dep.st")" 201 "the deposit answered after"
expect_eq "$(jq -r .balance "$TEST_TMP/dep.body")" 22 \
	"it decided on the holder's write (10 + 7 + 5)"
expect_eq "$(psql_q "SELECT string_agg(stream_version || ':' ||
	coalesce(data->>'balance_after', '-'), ' ' ORDER BY stream_version)
	FROM events WHERE stream_id = 'account-$A'")" "1:- 2:10 3:17 4:22" \
	"versions and balances in order"

say "a raw append with event ids waits the same (tandem_append's path)"
S="order-$A"
hold_begin "SELECT pg_advisory_xact_lock($CLASS, hashtext('$S'))"
post raw "/streams/$S/events" '{"expected_version":"any","events":[{"type":"Placed","data":{},"event_id":"6f1f8a52-3d7e-4d55-9a3c-2b0a4d9e1c01"}]}' &
RAW=$!
wait_for 10 waits_for_share
expect_eq "$(cat "$TEST_TMP/raw.st" 2>/dev/null)" "" "no answer while held"
hold_end
wait "$RAW"
expect_eq "$(cat "$TEST_TMP/raw.st")" 201 "the append answered after"

say "a lock on another stream does not hold the append"
hold_begin "SELECT pg_advisory_xact_lock($CLASS, hashtext('account-other'))"
http POST "$CMD_URL/accounts/$A/deposits" '{"amount":1}'
expect_status 201
expect_eq "$(waiting ShareLock)" 0 "nobody waited"
hold_end

say "a client's own conflict does not send the stream under the locks"
R="ledger-$A"
http POST "$CMD_URL/streams/$R/events" \
	'{"expected_version":"no_stream","events":[{"type":"Opened","data":{}}]}'
expect_status 201
# twice expected_version 0 on a stream at 1: answered 409, not retried
for i in 1 2; do
	http POST "$CMD_URL/streams/$R/events" \
		'{"expected_version":0,"events":[{"type":"Late","data":{}}]}'
	expect_status 409
done
# a session holds the stream's lock shared, as an append would: another
# append goes on beside it; a command that took the lock exclusive (one
# its process thinks contended) would wait for the session's end
hold_begin "SELECT pg_advisory_xact_lock_shared($CLASS, hashtext('$R'))"
http POST "$CMD_URL/streams/$R/events" \
	'{"expected_version":"any","events":[{"type":"Next","data":{}}]}' \
	--max-time 5
expect_status 201
expect_eq "$(waiting ExclusiveLock)" 0 "nobody waited for the lock"
hold_end

say "the shared locks last until the append commits, nothing after"
expect_eq "$(psql_q "SELECT count(*) FROM pg_locks
	WHERE locktype = 'advisory' AND classid = $CLASS")" 0 \
	"no stream lock is held once the appends answered"
