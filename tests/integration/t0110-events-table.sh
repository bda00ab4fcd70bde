#!/usr/bin/env bash
# t0110-events-table.sh - the events table contract (SPEC 3): defaults fill
# themselves in, the database refuses UPDATE, DELETE and TRUNCATE whoever
# asks, (stream_id, stream_version) and event_id are unique, the group roles
# have exactly their rights, and the documented erasure bypass works.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

MIGRATIONS_DIR=$TANDEM_ROOT/migrations migrate_db "$DATABASE_URL"

# sql SQL: run it (several statements allowed), print rows as a|b
sql()
{
	psql_q "$1"
}

# refused SQL PATTERN MSG: SQL must fail with an error containing PATTERN
refused()
{
	local out

	if out=$(psql_q "$1" 2>&1); then
		fail "$3: succeeded: $out"
	fi
	case $out in
	*"$2"*) ;;
	*) fail "$3: expected '$2', got: $out" ;;
	esac
}

# append STREAM VERSION [EVENT_ID]: the plain six-column INSERT
append()
{
	sql "INSERT INTO events (stream_id, stream_version, event_id,
		event_type, data, metadata)
	VALUES ('$1', $2, ${3:-gen_random_uuid()}, 'Tested',
		'{\"n\": $2}', '{\"by\": \"t0110\"}')"
}

expect_eq "$(sql "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")" \
	t "the test must run as a superuser"

# A plain INSERT of six columns fills in the other three.
row=$(sql "BEGIN;
	INSERT INTO events (stream_id, stream_version, event_id, event_type,
		data, metadata)
	VALUES ('t0110-a', 1, '00000000-0000-4000-8000-000000000001',
		'Tested', '{\"n\": 1}', '{}');
	SELECT global_position IS NOT NULL,
		transaction_id = pg_current_xact_id(),
		recorded_at = now()
	FROM events WHERE event_id = '00000000-0000-4000-8000-000000000001';
	COMMIT;")
expect_eq "$row" "t|t|t" "defaults of global_position, transaction_id, recorded_at"
append t0110-a 2
expect_eq "$(sql "SELECT count(DISTINCT global_position),
	bool_and(global_position > 0),
	max(global_position) FILTER (WHERE stream_version = 2) >
	max(global_position) FILTER (WHERE stream_version = 1)
	FROM events WHERE stream_id = 't0110-a'")" "2|t|t" \
	"global_position grows in insertion order"
sql "INSERT INTO events (stream_id, stream_version, event_id, event_type, data)
	VALUES ('t0110-a', 3, gen_random_uuid(), 'Tested', '{}')"
expect_eq "$(sql "SELECT metadata FROM events
	WHERE stream_id = 't0110-a' AND stream_version = 3")" "{}" \
	"metadata defaults to {}"
refused "INSERT INTO events (global_position, stream_id, stream_version,
	event_id, event_type, data)
	VALUES (999999, 't0110-a', 4, gen_random_uuid(), 'Tested', '{}')" \
	global_position "global_position is generated always"

# Append-only, for the superuser, with and without replica mode.
append t0110-c 1
count=$(sql "SELECT count(*) FROM events")
snapshot=$(sql "SELECT global_position, stream_id, stream_version, event_id,
	data, metadata FROM events ORDER BY global_position")
for prefix in "" "SET session_replication_role = replica;"; do
	refused "$prefix UPDATE events SET data = '{\"forged\": true}'" \
		"events is append-only: UPDATE is not allowed" \
		"UPDATE ($prefix)"
	refused "$prefix UPDATE events SET stream_version = stream_version + 100
		WHERE stream_id = 't0110-a' AND stream_version = 1" \
		"events is append-only: UPDATE is not allowed" \
		"UPDATE of one row ($prefix)"
	refused "$prefix DELETE FROM events" \
		"events is append-only: DELETE is not allowed" \
		"DELETE ($prefix)"
	refused "$prefix DELETE FROM events WHERE stream_id = 't0110-a'" \
		"events is append-only: DELETE is not allowed" \
		"DELETE of one stream ($prefix)"
	refused "$prefix TRUNCATE events" \
		"events is append-only: TRUNCATE is not allowed" \
		"TRUNCATE ($prefix)"
	refused "$prefix INSERT INTO events (stream_id, stream_version,
		event_id, event_type, data)
		VALUES ('t0110-c', 1, gen_random_uuid(), 'Tested', '{}')
		ON CONFLICT (stream_id, stream_version)
		DO UPDATE SET data = '{\"forged\": true}'" \
		"events is append-only: UPDATE is not allowed" \
		"INSERT ... ON CONFLICT DO UPDATE ($prefix)"
done
expect_eq "$(sql "SELECT global_position, stream_id, stream_version, event_id,
	data, metadata FROM events ORDER BY global_position")" "$snapshot" \
	"refused statements changed rows"
expect_eq "$(sql "SELECT count(*) FROM events")" "$count" \
	"refused statements changed the row count"
expect_eq "$(sql "SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname)
	FROM pg_trigger WHERE tgrelid = 'events'::regclass
	AND tgname LIKE 'events_append_only%'")" \
	"events_append_only_row=A,events_append_only_truncate=A" \
	"append-only triggers are ENABLE ALWAYS"

# Optimistic concurrency and idempotency.
refused "INSERT INTO events (stream_id, stream_version, event_id, event_type, data)
	VALUES ('t0110-a', 2, gen_random_uuid(), 'Tested', '{}')" \
	'"events_stream_id_stream_version_key"' "duplicate stream version"
refused "INSERT INTO events (stream_id, stream_version, event_id, event_type, data)
	VALUES ('t0110-b', 1, '00000000-0000-4000-8000-000000000001',
		'Tested', '{}')" \
	'"events_event_id_key"' "duplicate event_id"
append t0110-b 1

# stream_id compares as bytes (0012): ids that differ only in case or in
# the form of an accented letter are different streams, and a probe with
# text of the database's collation (a parameter) can still use the index.
expect_eq "$(sql "SELECT attcollation::regcollation FROM pg_attribute
	WHERE attrelid = 'events'::regclass AND attname = 'stream_id'")" \
	'"C"' "stream_id has the C collation"
append t0110-Case 1
append t0110-case 1
append "t0110-$(printf 'e\xcc\x81')" 1
append "t0110-$(printf '\xc3\xa9')" 1
expect_eq "$(sql "SELECT string_agg(encode(convert_to(stream_id, 'UTF8'),
	'hex'), ',' ORDER BY stream_id)
	FROM events WHERE stream_id IN ('t0110-Case', 't0110-case',
	't0110-$(printf 'e\xcc\x81')', 't0110-$(printf '\xc3\xa9')')")" \
	74303131302d43617365,74303131302d63617365,74303131302d65cc81,74303131302dc3a9 \
	"four streams, in byte order"
plan=$(sql "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off;
	PREPARE head(text) AS SELECT stream_version FROM events
	WHERE stream_id = \$1 ORDER BY stream_version DESC LIMIT 1;
	EXPLAIN (COSTS OFF) EXECUTE head('t0110-a')")
case $plan in
*"Index"*"using events_stream_id_stream_version_key"*) ;;
*) fail "the head probe does not use the stream index: $plan" ;;
esac
expect_eq "$(sql "SET plan_cache_mode = force_generic_plan;
	PREPARE head(text) AS SELECT stream_version FROM events
	WHERE stream_id = \$1 ORDER BY stream_version DESC LIMIT 1;
	EXECUTE head('t0110-a')")" 3 "the head probe finds the head"

# Checks on the columns.
refused "INSERT INTO events (stream_id, stream_version, event_id, event_type, data)
	VALUES ('t0110-d', 0, gen_random_uuid(), 'Tested', '{}')" \
	events_stream_version_check "stream_version 0"
refused "INSERT INTO events (stream_id, stream_version, event_id, event_type, data)
	VALUES ('t0110-d', -1, gen_random_uuid(), 'Tested', '{}')" \
	events_stream_version_check "negative stream_version"
refused "INSERT INTO events (stream_id, stream_version, event_id, event_type, data)
	VALUES ('', 1, gen_random_uuid(), 'Tested', '{}')" \
	events_stream_id_check "empty stream_id"
refused "INSERT INTO events (stream_id, stream_version, event_id, event_type, data)
	VALUES (repeat('x', 201), 1, gen_random_uuid(), 'Tested', '{}')" \
	events_stream_id_check "stream_id of 201 characters"
append "$(printf 'é%.0s' $(seq 200))" 1
refused "INSERT INTO events (stream_id, stream_version, event_id, event_type, data)
	VALUES ('t0110-d', 1, gen_random_uuid(), '', '{}')" \
	events_event_type_check "empty event_type"
refused "INSERT INTO events (stream_id, stream_version, event_id, event_type)
	VALUES ('t0110-d', 1, gen_random_uuid(), 'Tested')" \
	'"data"' "data is required"
refused "INSERT INTO events (stream_id, stream_version, event_id, event_type,
	data, metadata) VALUES ('t0110-d', 1, gen_random_uuid(), 'Tested', '{}',
	NULL)" '"metadata"' "metadata must not be null"
expect_eq "$(sql "SELECT indexdef FROM pg_indexes
	WHERE indexname = 'events_tail_idx'")" \
	"CREATE INDEX events_tail_idx ON public.events USING btree (transaction_id, global_position)" \
	"tailing index"

# The group roles.
expect_eq "$(sql "SELECT string_agg(rolname || ':' || rolcanlogin, ',' ORDER BY rolname)
	FROM pg_roles WHERE rolname IN ('tandem_reader', 'tandem_writer')")" \
	"tandem_reader:false,tandem_writer:false" "NOLOGIN group roles exist"
sql "SET ROLE tandem_writer;
	INSERT INTO events (stream_id, stream_version, event_id, event_type, data)
	VALUES ('t0110-w', 1, gen_random_uuid(), 'Tested', '{}');" ||
	fail "tandem_writer cannot INSERT"
expect_eq "$(sql "SET ROLE tandem_writer;
	SELECT count(*) FROM events WHERE stream_id = 't0110-w'")" 1 \
	"tandem_writer can SELECT"
# 0015: not the columns readers trust (transaction_id is the tailing
# order, and on a standby what says a transaction is not running)
refused "SET ROLE tandem_writer;
	INSERT INTO events (stream_id, stream_version, event_id, event_type,
		data, transaction_id)
	VALUES ('t0110-x', 1, gen_random_uuid(), 'Tested', '{}', '3')" \
	"permission denied" "tandem_writer choosing transaction_id"
refused "SET ROLE tandem_writer;
	INSERT INTO events (global_position, stream_id, stream_version,
		event_id, event_type, data) OVERRIDING SYSTEM VALUE
	VALUES (1, 't0110-x', 1, gen_random_uuid(), 'Tested', '{}')" \
	"permission denied" "tandem_writer choosing global_position"
refused "SET ROLE tandem_writer;
	INSERT INTO events (stream_id, stream_version, event_id, event_type,
		data, recorded_at)
	VALUES ('t0110-x', 1, gen_random_uuid(), 'Tested', '{}', now())" \
	"permission denied" "tandem_writer choosing recorded_at"
expect_eq "$(sql "SET ROLE tandem_writer; SELECT versions[1]
	FROM tandem_append('[{\"stream_id\": \"t0110-f\",
		\"expected_version\": \"no_stream\",
		\"events\": [{\"type\": \"Tested\", \"data\": {}}]}]')")" 1 \
	"tandem_writer appends through tandem_append()"
refused "SET ROLE tandem_writer; UPDATE events SET data = '{}'" \
	"permission denied" "tandem_writer UPDATE"
refused "SET ROLE tandem_writer; DELETE FROM events" \
	"permission denied" "tandem_writer DELETE"
refused "SET ROLE tandem_writer; TRUNCATE events" \
	"permission denied" "tandem_writer TRUNCATE"
expect_eq "$(sql "SET ROLE tandem_reader;
	SELECT count(*) FROM events WHERE stream_id = 't0110-w'")" 1 \
	"tandem_reader can SELECT"
refused "SET ROLE tandem_reader;
	INSERT INTO events (stream_id, stream_version, event_id, event_type, data)
	VALUES ('t0110-r', 1, gen_random_uuid(), 'Tested', '{}')" \
	"permission denied" "tandem_reader INSERT"
refused "SET ROLE tandem_reader; UPDATE events SET data = '{}'" \
	"permission denied" "tandem_reader UPDATE"
refused "SET ROLE tandem_reader; DELETE FROM events" \
	"permission denied" "tandem_reader DELETE"

# The documented bypass, for erasure: one transaction, superuser.
append t0110-erase 1
append t0110-erase 2
sql "BEGIN;
	ALTER TABLE events DISABLE TRIGGER events_append_only_row;
	UPDATE events SET data = '{\"erased\": true}', metadata = '{}'
		WHERE stream_id = 't0110-erase' AND stream_version = 1;
	DELETE FROM events WHERE stream_id = 't0110-erase' AND stream_version = 2;
	ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only_row;
	COMMIT;" || fail "the documented bypass failed"
expect_eq "$(sql "SELECT string_agg(stream_version || ':' || data::text, ',')
	FROM events WHERE stream_id = 't0110-erase'")" '1:{"erased": true}' \
	"the bypass erased"
expect_eq "$(sql "SELECT tgenabled FROM pg_trigger
	WHERE tgname = 'events_append_only_row'")" A "trigger enabled always again"
refused "UPDATE events SET data = '{}' WHERE stream_id = 't0110-erase'" \
	"events is append-only: UPDATE is not allowed" "UPDATE after the bypass"
refused "SET session_replication_role = replica;
	DELETE FROM events WHERE stream_id = 't0110-erase'" \
	"events is append-only: DELETE is not allowed" \
	"replica DELETE after the bypass"

# A bypass that is rolled back leaves the guard in place.
sql "BEGIN; ALTER TABLE events DISABLE TRIGGER events_append_only_row;
	ROLLBACK;"
refused "DELETE FROM events WHERE stream_id = 't0110-erase'" \
	"events is append-only: DELETE is not allowed" \
	"DELETE after a rolled-back bypass"
