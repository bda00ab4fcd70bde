-- 0001_events.sql - the event log: one append-only table, the source of truth.
--
-- Applied once by bin/migrate, in one transaction; never edit this file
-- after it has been applied anywhere (bin/migrate refuses a changed file):
-- add a new numbered migration instead.
--
-- Guarantees (SPEC section 3), each enforced by the database itself:
--   * append-only: UPDATE, DELETE and TRUNCATE are refused by triggers, for
--     every role including the owner and superusers; the triggers are
--     ENABLE ALWAYS, so `SET session_replication_role = replica` does not
--     switch them off either;
--   * optimistic concurrency: (stream_id, stream_version) is unique, under
--     the constraint name events_stream_id_stream_version_key, which
--     common/es_db.c turns into a version conflict;
--   * idempotent appends: event_id is unique (events_event_id_key).
--
-- The deliberate bypass (legal erasure of personal data, and nothing else):
-- a superuser or the table's owner, inside ONE transaction, so that no other
-- session ever sees the table without its guard (ALTER TABLE holds an ACCESS
-- EXCLUSIVE lock until COMMIT, which also blocks every reader meanwhile):
--
--   BEGIN;
--   ALTER TABLE events DISABLE TRIGGER events_append_only_row;
--   UPDATE events SET data = '{"erased": true}', metadata = '{}'
--    WHERE stream_id = 'account-...';          -- or DELETE ... WHERE ...
--   ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only_row;
--   COMMIT;
--
-- (TRUNCATE is guarded by events_append_only_truncate, disabled and
-- re-enabled the same way.) Prefer redacting payloads over deleting rows:
-- a DELETE leaves gaps in stream versions that the command side will not
-- fill. Either way the read models no longer match the log: every
-- projection must be rebuilt from the log afterwards, and any service that
-- built its own views from the log must be told to rebuild too.

CREATE TABLE events (
	global_position bigint GENERATED ALWAYS AS IDENTITY
		CONSTRAINT events_pkey PRIMARY KEY,
	transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
	stream_id text NOT NULL
		CONSTRAINT events_stream_id_check
		CHECK (char_length(stream_id) BETWEEN 1 AND 200),
	stream_version bigint NOT NULL
		CONSTRAINT events_stream_version_check
		CHECK (stream_version >= 1),
	event_id uuid NOT NULL,
	event_type text NOT NULL
		CONSTRAINT events_event_type_check
		CHECK (event_type <> ''),
	data jsonb NOT NULL,
	metadata jsonb NOT NULL DEFAULT '{}',
	recorded_at timestamptz NOT NULL DEFAULT now(),
	-- also the index for reading one stream in version order
	CONSTRAINT events_stream_id_stream_version_key
		UNIQUE (stream_id, stream_version),
	CONSTRAINT events_event_id_key UNIQUE (event_id)
);

-- Tailing (SPEC 3.4): rows whose transaction_id is >= a snapshot's xmax or
-- in its xip list, in position order within each transaction.
CREATE INDEX events_tail_idx ON events (transaction_id, global_position);

COMMENT ON TABLE events IS
	'Tandem event log: append-only (UPDATE, DELETE and TRUNCATE are refused by triggers), the single source of truth';

CREATE FUNCTION events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'events is append-only: % is not allowed', TG_OP
		USING ERRCODE = 'object_not_in_prerequisite_state',
		      HINT = 'events can only be appended to; see migrations/0001_events.sql for the erasure procedure';
END;
$$;

CREATE TRIGGER events_append_only_row
	BEFORE UPDATE OR DELETE ON events
	FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_append_only_truncate
	BEFORE TRUNCATE ON events
	FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- Fire even under session_replication_role = replica.
ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only_row;
ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only_truncate;

-- Group roles. Roles belong to the whole cluster, not to this database, and
-- several databases of one cluster may be migrated at the same moment (the
-- advisory lock of bin/migrate is per database): tolerate losing the race.
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['tandem_writer', 'tandem_reader'] LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
			BEGIN
				EXECUTE format('CREATE ROLE %I NOLOGIN', r);
			EXCEPTION WHEN duplicate_object OR unique_violation THEN
				NULL;
			END;
		END IF;
	END LOOP;
	-- the schema this migration runs in (public unless the operator's
	-- search_path says otherwise)
	EXECUTE format('GRANT USAGE ON SCHEMA %I TO tandem_writer, tandem_reader',
		       current_schema());
END;
$$;

REVOKE ALL ON events FROM PUBLIC;
GRANT SELECT, INSERT ON events TO tandem_writer;
GRANT SELECT ON events TO tandem_reader;
GRANT USAGE ON SEQUENCE events_global_position_seq TO tandem_writer;
