#!/usr/bin/env bash
# t0201-append-batch.sh - es_append_batch() over tandem_append_batch_rows()
# (migrations/0011_append_batch_rows.sql) against a real database: many
# requests in one call with mixed outcomes (exact, stale, ahead, no_stream,
# any, a multi-stream request failing on one stream, bad input, a stream
# twice), no version gap ever; insert order in stream_id order within the
# transaction; event ids made by the service (version 7, unique);
# requests naming event ids replayed through tandem_append() in the same
# call; two batches racing on the same streams (the loser's requests get
# their conflicts, the others get through), never deadlocking; the
# younger-transaction rule per request; the function's own refusals.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

migrate_db
SC=$TANDEM_BUILD/tests/store_check
[ -x "$SC" ] || fail "no $SC: build it with make"

# sc ARGS...: store_check; its "error ..." outcome (exit 2) is an answer
sc()
{
	"$SC" "$@" || [ $? -eq 2 ]
}

count()
{
	psql_q "SELECT count(*) FROM events WHERE stream_id = '$1'"
}

# no stream of the log has a gap or a repeated version
no_gaps()
{
	expect_eq "$(psql_q "SELECT count(*) FROM (SELECT stream_id
		FROM events GROUP BY stream_id
		HAVING max(stream_version) <> count(*)
		    OR count(DISTINCT stream_version) <> count(*)) g")" 0 \
		"streams with a version gap"
}

ONE='[{"type":"Deposited","data":{"amount":1}}]'
TWO='[{"type":"Deposited","data":{"amount":1}},{"type":"Deposited","data":{"amount":2},"metadata":{"by":"t0201"}}]'

say "setup: four streams at version 2"
for s in m-1 m-2 m-3 m-4; do
	out=$(sc batch "$s" no_stream "$TWO")
	[[ $out =~ ^1\ ok\ 2\ [0-9]+\.[0-9]+$ ]] || fail "setup $s: '$out'"
done

say "one call, many requests, each with its own outcome"
before=$(psql_q "SELECT count(*) FROM events")
out=$(sc batch m-1 2 "$ONE" -- m-2 1 "$ONE" -- m-3 5 "$ONE" \
	-- m-4 no_stream "$ONE" -- m-5 any "$TWO" -- m-6 no_stream "$ONE" \
	m-10 9 "$ONE" -- m-7 any '[{"type":"T"}]' -- m-8 0 "$TWO" \
	-- m-8 any "$ONE" -- m-9 1 "$ONE")
printf '%s\n' "$out" >"$TEST_TMP/mixed"
lines=()
mapfile -t lines <"$TEST_TMP/mixed"
expect_eq "${#lines[@]}" 10 "one line per request"
[[ ${lines[0]} =~ ^1\ ok\ 3\ ([0-9]+)\.[0-9]+$ ]] || fail "m-1: '${lines[0]}'"
xid=${BASH_REMATCH[1]}
expect_eq "${lines[1]}" "2 error ECONFLICT 2 stream 'm-2' is at version 2, expected 1"
# an expectation ahead of the stream is a conflict, not a gap
expect_eq "${lines[2]}" "3 error ECONFLICT 2 stream 'm-3' is at version 2, expected 5"
expect_eq "${lines[3]}" "4 error ECONFLICT 2 stream 'm-4' is at version 2, expected 0"
[[ ${lines[4]} =~ ^5\ ok\ 2\ $xid\.[0-9]+$ ]] || fail "m-5: '${lines[4]}'"
# a multi-stream request fails on the stream that fails, stores nothing
expect_eq "${lines[5]}" "6 error ECONFLICT 0 stream 'm-10' is at version 0, expected 9"
[[ ${lines[6]} == "7 error EINVALID -1 one or more fields are invalid" ]] ||
	fail "m-7: '${lines[6]}'"
[[ ${lines[7]} =~ ^8\ ok\ 2\ $xid\.[0-9]+$ ]] || fail "m-8: '${lines[7]}'"
expect_eq "${lines[8]}" "9 error EINTERNAL -1 stream 'm-8' is in one batch twice"
expect_eq "${lines[9]}" "10 error ECONFLICT 0 stream 'm-9' is at version 0, expected 1"
expect_eq "$(psql_q "SELECT count(*) FROM events")" "$((before + 5))" \
	"the call stored the events of requests 1, 5 and 8 alone"
expect_eq "$(count m-1)|$(count m-2)|$(count m-3)|$(count m-4)|$(count m-5)" \
	"3|2|2|2|2" "versions after the call"
expect_eq "$(count m-6)|$(count m-10)|$(count m-7)|$(count m-8)|$(count m-9)" "0|0|0|2|0" \
	"refused requests stored nothing"
expect_eq "$(psql_q "SELECT count(DISTINCT transaction_id) FROM events
	WHERE global_position > (SELECT max(global_position) - 5 FROM events)")" \
	1 "one transaction"
expect_eq "$(psql_q "SELECT data::text || metadata::text FROM events
	WHERE stream_id = 'm-8' AND stream_version = 2")" \
	'{"amount": 2}{"by": "t0201"}' "payload and metadata stored as given"
expect_eq "$(psql_q "SELECT metadata::text FROM events
	WHERE stream_id = 'm-8' AND stream_version = 1")" '{}' \
	"no metadata is {}"
no_gaps

say "each event stored with its own stream, whoever failed before it"
out=$(sc batch al-1 5 '[{"type":"A1","data":{"n":1}}]' \
	-- al-2 any '[{"type":"B1","data":{"n":2}},{"type":"B2","data":{"n":3}}]' \
	-- al-3 7 '[{"type":"C1","data":{"n":4}}]' \
	-- al-4 no_stream '[{"type":"D1","data":{"n":5}}]')
[[ $out =~ ^1\ error\ ECONFLICT.*$'\n'2\ ok\ 2\ .*$'\n'3\ error\ ECONFLICT.*$'\n'4\ ok\ 1\  ]] ||
	fail "al: '$out'"
expect_eq "$(psql_q "SELECT string_agg(stream_id || ':' || stream_version || ':'
	|| event_type || ':' || data::text, ',' ORDER BY global_position)
	FROM events WHERE stream_id LIKE 'al-%'")" \
	'al-2:1:B1:{"n": 2},al-2:2:B2:{"n": 3},al-4:1:D1:{"n": 5}' \
	"events and their streams"

say "inside a transaction, events go in stream_id order"
out=$(sc batch --tx o-zz any "$TWO" -- o-aa any "$ONE" o-Mm any "$ONE" \
	-- o-mm any "$TWO")
[[ $out =~ ^1\ ok\ 2\ [0-9.]+$'\n'2\ ok\ 1\ 1\ [0-9.]+$'\n'3\ ok\ 2\ [0-9.]+$ ]] ||
	fail "outcomes: '$out'"
expect_eq "$(psql_q "SELECT string_agg(stream_id || ':' || stream_version, ','
	ORDER BY global_position) FROM events WHERE stream_id LIKE 'o-%'")" \
	"o-Mm:1,o-aa:1,o-mm:1,o-mm:2,o-zz:1,o-zz:2" "insert order"
expect_eq "$(psql_q "SELECT count(DISTINCT transaction_id) FROM events
	WHERE stream_id LIKE 'o-%'")" 1 "one transaction"

say "event ids: made by the service, version 7, unique, in time order"
expect_eq "$(psql_q "SELECT count(*) FILTER (WHERE substr(event_id::text, 15, 1) <> '7'
	OR substr(event_id::text, 20, 1) NOT IN ('8', '9', 'a', 'b')),
	count(DISTINCT event_id) = count(*) FROM events
	WHERE stream_id LIKE 'o-%' OR stream_id LIKE 'm-%'")" "0|t" \
	"version 7 ids"
# the first 48 bits are the Unix time in ms, within a minute of now
expect_eq "$(psql_q "SELECT bool_and(abs(('x' || replace(substr(event_id::text, 1, 13), '-', ''))::bit(48)::bigint
	- (extract(epoch FROM now()) * 1000)::bigint) < 60000) FROM events
	WHERE stream_id LIKE 'o-%'")" t "ids carry the time"

say "requests with event ids go through tandem_append() in the same call"
ID1=11111111-1111-4111-8111-111111111111
ID2=22222222-2222-4222-8222-222222222222
X="[{\"type\":\"Paid\",\"data\":{},\"event_id\":\"$ID1\"},{\"type\":\"Paid\",\"data\":{},\"event_id\":\"$ID2\"}]"
first=$(sc batch x-1 no_stream "$X" -- x-2 no_stream "$ONE")
[[ $first =~ ^1\ ok\ 2\ ([0-9]+)\.([0-9]+)$'\n'2\ ok\ 1\ ([0-9]+)\.[0-9]+$ ]] ||
	fail "first: '$first'"
[ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[3]}" ] ||
	fail "the two requests did not share the transaction: '$first'"
xtoken=$(head -1 <<<"$first" | cut -d' ' -f4)
# again: the first request replays its outcome, the second conflicts
out=$(sc batch x-1 no_stream "$X" -- x-2 no_stream "$ONE" -- x-3 any "$ONE")
expect_eq "$(head -2 <<<"$out")" "1 ok 2 $xtoken replay
2 error ECONFLICT 1 stream 'x-2' is at version 1, expected 0" "replay"
[[ $(sed -n 3p <<<"$out") =~ ^3\ ok\ 1\  ]] || fail "x-3: '$out'"
expect_eq "$(count x-1)|$(count x-2)|$(count x-3)" "2|1|1" "a replay stored nothing"
# an id stored by another append, next to a request that gets through
out=$(sc batch x-4 any "$X" -- x-5 any "$ONE")
expect_eq "$(head -1 <<<"$out")" \
	"1 error ECONFLICT -1 event '$ID1' is already stored in stream 'x-1' at version 1, by another append" \
	"an id stored elsewhere"
[[ $(sed -n 2p <<<"$out") =~ ^2\ ok\ 1\  ]] || fail "x-5: '$out'"
expect_eq "$(count x-4)|$(count x-5)" "0|1" "x-4 stored nothing"
expect_eq "$(psql_q "SELECT event_id FROM events WHERE stream_id = 'x-1'
	ORDER BY stream_version")" "$ID1
$ID2" "the client's ids are kept"

say "two batches racing on the same streams"
sc batch-race
out=$(sc batch-deadlock 150)
[[ $out =~ ^batches\ ([0-9]+)\ ([0-9]+)\ lost\ ([0-9]+)$ ]] ||
	fail "batch-deadlock: '$out'"
ok=$((BASH_REMATCH[1] + BASH_REMATCH[2]))
[ "$ok" -gt 0 ] || fail "no batch ever got through: '$out'"
expect_eq "$(psql_q "SELECT string_agg(DISTINCT count::text, ',') FROM
	(SELECT count(*) FROM events WHERE stream_id LIKE 'dl-%'
	GROUP BY stream_id) c")" "$ok" \
	"each stream holds one event per batch that got through"
sc batch-younger
no_gaps

say "long streams: the head probe starts at the expected version (0013)"
# 300 events each for L-1 and L-2, interleaved, so that each spans
# several leaves of the stream index with neighbours on them.
psql_q "INSERT INTO events (stream_id, stream_version, event_id, event_type,
	data) SELECT 'L-' || s, v, gen_random_uuid(), 'T', '{}'
	FROM generate_series(1, 300) v, generate_series(1, 2) s
	ORDER BY v, s" >/dev/null
# outcomes without the position tokens of ok lines
short()
{
	awk '$2 == "ok" { print $1, $2, $3; next } { print }'
}
expect_eq "$(sc batch L-1 300 "$ONE" | short)" "1 ok 301" "L-1 at its head"
expect_eq "$(sc batch L-1 10 "$ONE" -- L-2 305 "$ONE" | short)" \
	"1 error ECONFLICT 301 stream 'L-1' is at version 301, expected 10
2 error ECONFLICT 300 stream 'L-2' is at version 300, expected 305" \
	"behind and ahead of long streams"
expect_eq "$(sc batch L-2 300 "$TWO" -- L-1 301 "$ONE" -- L-3 1 "$ONE" \
	-- L-4 no_stream "$ONE" | short)" \
	"1 ok 302
2 ok 302
3 error ECONFLICT 0 stream 'L-3' is at version 0, expected 1
4 ok 1" "at their heads, an absent stream expected at 1, a new one"
expect_eq "$(count L-1)|$(count L-2)|$(count L-3)|$(count L-4)" \
	"302|302|0|1" "what the long-stream calls stored"
no_gaps

say "the function refuses what the C side never sends"
err=$(psql_q "SELECT * FROM tandem_append_batch_rows(ARRAY[1], ARRAY['f-1'],
	ARRAY[-2]::bigint[], ARRAY[1, 1], ARRAY[gen_random_uuid()],
	ARRAY['T'], ARRAY['{}']::jsonb[], ARRAY['{}']::jsonb[], NULL)" 2>&1) &&
	fail "arrays of different lengths: '$err'"
[[ $err == *"arrays of different lengths"* ]] || fail "22023: '$err'"
err=$(psql_q "SELECT * FROM tandem_append_batch_rows(ARRAY[1], ARRAY['f-1'],
	ARRAY[-2]::bigint[], ARRAY[1, 2], ARRAY[gen_random_uuid(), gen_random_uuid()],
	ARRAY['T', 'T'], ARRAY['{}', '{}']::jsonb[], ARRAY['{}', '{}']::jsonb[],
	NULL)" 2>&1) && fail "an event naming no stream: '$err'"
[[ $err == *"event 2 names no stream"* ]] || fail "22023: '$err'"
expect_eq "$(count f-1)" 0 "refused calls stored nothing"

say "tandem_writer may call it"
role=t0201_w_$$
at_exit "psql_q 'DROP ROLE IF EXISTS $role' >/dev/null"
psql_q "CREATE ROLE $role LOGIN IN ROLE tandem_writer" >/dev/null
wurl=${DATABASE_URL/\/\/$PGUSER@/\/\/$role@}
[ "$wurl" != "$DATABASE_URL" ] || fail "cannot make a URL for $role"
[[ $(DATABASE_URL=$wurl sc batch w-1 no_stream "$ONE" -- w-2 any "$X") =~ ^1\ ok\ 1\ .*$'\n'2\ error\ ECONFLICT ]] ||
	fail "tandem_writer cannot append"
expect_eq "$(count w-1)|$(count w-2)" "1|0" "tandem_writer's call"
