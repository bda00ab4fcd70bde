#!/usr/bin/env bash
# t0455-log-json.sh - GET /events and GET /streams/{stream_id} write each
# event's data and metadata as stored (the jsonb text, without its
# whitespace: 1.50 stays 1.50, an integer past 64 bits is served whole
# instead of failing the page), escape stream ids and types as JSON
# strings, and give recorded_at as to_char(... 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
# in UTC, for dates before 2000 and after 2038 too. Every field of every
# event matches the events table.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

migrate_db
start_service QRY query-service POLL_INTERVAL_MS=50

WEIRD='weird "q" \ é	tab'
psql_q "INSERT INTO events (stream_id, stream_version, event_id,
	event_type, data, metadata, recorded_at) VALUES
	('$WEIRD', 1, gen_random_uuid(), 'Ünïcødé ✓',
	 '{\"s\": \"a \\\"q\\\" \\\\ \\n \\u0001 é\", \"n\": 1.50,
	   \"big\": 123456789012345678901234567890, \"neg\": -0.0001,
	   \"arr\": [1, {\"x\": null}], \"t\": true, \"k e y\": \"v a l\"}',
	 '{\"k\": \"v\", \"nested\": {\"deep\": [\"x\", 2]}}',
	 '1999-12-31 23:59:59.999999+00'),
	('$WEIRD', 2, gen_random_uuid(), E'ctl\\x01type', '{}', '{}',
	 '1970-01-01 00:00:00+00'),
	('other-1', 1, gen_random_uuid(), 'T', '[]', '{}',
	 '2024-02-29 12:34:56.000001+00'),
	('other-1', 2, gen_random_uuid(), 'T', '\"just a string\"', '{}',
	 '2038-01-19 03:14:08.5+00'),
	('other-1', 3, gen_random_uuid(), 'T', '{\"n\": 7}', '{}',
	 '9999-12-31 23:59:59.999999+00'),
	('other-1', 4, gen_random_uuid(), 'T', '{\"n\": 8}', '{}',
	 '0001-01-01 00:00:00+00')" >/dev/null
N=$(psql_q "SELECT count(*) FROM events")

# the table's view of every event, in position order, as JSON
table_json()
{
	psql_q "SELECT coalesce(json_agg(json_build_object(
		'position', global_position,
		'transaction_id', transaction_id::text::bigint,
		'stream_id', stream_id, 'version', stream_version,
		'event_id', event_id, 'type', event_type,
		'data', data, 'metadata', metadata,
		'recorded_at', to_char(recorded_at AT TIME ZONE 'UTC',
			'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))
		ORDER BY global_position), '[]') FROM events $1" | jq -S -c .
}

say "GET /events: every field as the table has it"
http GET "$QRY_URL/events?limit=1000"
expect_status 200
expect_json '.items | length' "$N"
expect_eq "$(jq -S -c '.items | sort_by(.position)' <<<"$HTTP_BODY")" \
	"$(table_json "")" "the events as served"
# the stored text itself, not a re-encoding of it
grep -qF '"n":1.50,' <<<"$HTTP_BODY" || fail "1.50 was not kept: $HTTP_BODY"
grep -qF '"big":123456789012345678901234567890' <<<"$HTTP_BODY" ||
	fail "the big integer was not kept: $HTTP_BODY"
grep -qF '"k e y":"v a l"' <<<"$HTTP_BODY" ||
	fail "whitespace inside strings was lost: $HTTP_BODY"
grep -qF '"type":"ctl\u0001type"' <<<"$HTTP_BODY" ||
	fail "a control character is not escaped: $HTTP_BODY"
grep -qF '"recorded_at":"0001-01-01T00:00:00.000000Z"' <<<"$HTTP_BODY" ||
	fail "year 1: $HTTP_BODY"
# no whitespace outside strings (the jsonb text has ": " and ", ")
! grep -qE '(": |, ")' <<<"$HTTP_BODY" ||
	fail "whitespace outside strings: $HTTP_BODY"

say "GET /events page by page: the same events"
all=
AFTER=
for i in $(seq 1 10); do
	http GET "$QRY_URL/events?limit=2${AFTER:+&after=$AFTER}"
	expect_status 200
	n=$(jq '.items | length' <<<"$HTTP_BODY")
	all+=$(jq -c '.items[]' <<<"$HTTP_BODY")$'\n'
	AFTER=$(jq -r '.next | @uri' <<<"$HTTP_BODY")
	[ "$n" -gt 0 ] || break
done
expect_eq "$(grep . <<<"$all" | jq -S -c -s 'sort_by(.position)')" \
	"$(table_json "")" "the events read in pages of 2"

say "GET /streams/{stream_id}: the same, for an id that needs escaping"
ENC=$(jq -rn --arg s "$WEIRD" '$s | @uri')
http GET "$QRY_URL/streams/$ENC"
expect_status 200
expect_json '.items | length' 2
expect_json .next null
expect_eq "$(jq -S -c .items <<<"$HTTP_BODY")" \
	"$(table_json "WHERE stream_id = '$WEIRD'")" "the stream as served"
http GET "$QRY_URL/streams/other-1?limit=3"
expect_status 200
expect_json .next 3
expect_eq "$(jq -S -c .items <<<"$HTTP_BODY")" \
	"$(table_json "WHERE stream_id = 'other-1' AND stream_version <= 3")" \
	"a page of a stream"
http GET "$QRY_URL/streams/other-1?after=3"
expect_json '[.items[].version] | join(",")' 4
expect_json .next null
