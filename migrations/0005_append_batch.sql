-- 0005_append_batch.sql - tandem_append_batch(): many independent appends
-- in one statement, each with an outcome of its own (group commit).
--
-- Applied once by bin/migrate; never edit it after it has been applied
-- anywhere: add a new numbered migration instead.
--
-- Called by common/es_store.c (es_append_batch) as
--   SELECT * FROM tandem_append_batch($1::jsonb)
-- with
--   [{"i": 1, "s": [<stream>, ...]}, {"i": 2, "x": true, "s": [...]}, ...]
-- where each element is one command's append: "i" its number (unique in
-- the call), "s" exactly what tandem_append() (0002_append.sql) takes for
-- one append, and "x" true when one of its events carries an event_id.
-- The C side has validated the shape and made sure that no stream is
-- named by two commands of one call.
--
-- Returns one row per command: its number, and either the append's
-- transaction id, greatest position and each stream's version after it
-- (as tandem_append() returns them), or error_code 'TDV01' or 'TDI01'
-- with error_message and current_version as tandem_append() raises them
-- (the message, and the DETAIL as a number). A command that fails stores
-- nothing; the others are appended all the same, in the caller's
-- transaction (or the statement's own, in autocommit mode).
--
-- How:
--   1. Commands with "x" go through tandem_append() one by one, each in a
--      subtransaction of its own (its idempotent-retry rules need it).
--      They are rare: only raw appends name their event ids.
--   2. The others in one statement: every stream's current version read
--      first, then one INSERT of the events of every command whose
--      streams are all where it expects them, in stream_id order (so two
--      batches cannot deadlock), each event with a random event_id.
--      Without a subtransaction per command: when a concurrent writer
--      takes one of our versions between the read and the INSERT, the
--      unique constraint events_stream_id_stream_version_key fails the
--      whole statement (nothing stored, SQLSTATE 23505), and the caller
--      runs the batch again, where that command gets its TDV01.
--
-- Order (0002's guarantee: per stream, transaction ids grow with
-- versions): a transaction without an id before step 2 gets one at the
-- INSERT, after reading versions that committed before it. If it had
-- one (the caller wrote before, or step 1 did), a stream whose last
-- writer is younger gets TDV01 with the message "... younger
-- transaction; retry in a new transaction", as tandem_append() does.

CREATE FUNCTION tandem_append_batch(cmds jsonb)
RETURNS TABLE (cmd integer, transaction_id xid8, last_position bigint,
	       versions bigint[], error_code text, error_message text,
	       current_version bigint)
LANGUAGE plpgsql
ROWS 64
-- jsonb_array_elements() is estimated at 100 rows, and a join of three
-- of them costs enough to compile JIT code for a few milliseconds' work
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
	c record;
	r record;
	st text;
	msg text;
	det text;
	mine xid8;
BEGIN
	-- 1. Commands that name event ids.
	FOR c IN
		SELECT (t.c->>'i')::integer AS i, t.c->'s' AS s
		  FROM jsonb_array_elements(cmds) t(c)
		 WHERE coalesce((t.c->>'x')::boolean, false)
		 ORDER BY 1
	LOOP
		BEGIN
			SELECT * INTO r FROM tandem_append(c.s);
			RETURN QUERY SELECT c.i, r.transaction_id,
					    r.last_position, r.versions,
					    NULL::text, NULL::text,
					    NULL::bigint;
		EXCEPTION WHEN SQLSTATE 'TDV01' OR SQLSTATE 'TDI01' THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE,
						msg = MESSAGE_TEXT,
						det = PG_EXCEPTION_DETAIL;
			RETURN QUERY SELECT c.i, NULL::xid8, NULL::bigint,
					    NULL::bigint[], st, msg,
					    CASE WHEN det ~ '^-?[0-9]+$'
						 THEN det::bigint END;
		END;
	END LOOP;

	-- 2. The others, in one statement.
	mine := pg_current_xact_id_if_assigned();
	RETURN QUERY
	WITH s AS (
		SELECT (t.c->>'i')::integer AS i, st.ord AS sord,
		       st.v->>'stream_id' AS sid,
		       (st.v->>'expected')::bigint AS expected,
		       st.v->'events' AS events
		  FROM jsonb_array_elements(cmds) t(c),
		       jsonb_array_elements(t.c->'s') WITH ORDINALITY st(v, ord)
		 WHERE NOT coalesce((t.c->>'x')::boolean, false)
	), cur AS MATERIALIZED (
		SELECT s.i, s.sord, s.sid, s.expected, s.events,
		       coalesce(l.stream_version, 0) AS at,
		       l.transaction_id AS at_xid
		  FROM s
		  LEFT JOIN LATERAL (
			SELECT e.stream_version, e.transaction_id
			  FROM events e
			 WHERE e.stream_id = s.sid
			 ORDER BY e.stream_version DESC
			 LIMIT 1) l ON true
	), bad AS MATERIALIZED (
		-- per failing command, its first failing stream
		SELECT DISTINCT ON (cur.i) cur.i, cur.sid, cur.at, cur.expected,
		       (mine IS NOT NULL AND cur.at_xid > mine) AS late
		  FROM cur
		 WHERE (cur.expected >= -1 AND cur.at <> greatest(cur.expected, 0))
		    OR (mine IS NOT NULL AND cur.at_xid > mine)
		 ORDER BY cur.i, cur.sid COLLATE "C"
	), ins AS (
		INSERT INTO events AS e (stream_id, stream_version, event_id,
					 event_type, data, metadata)
		SELECT cur.sid, cur.at + ev.ord, gen_random_uuid(),
		       ev.v->>'type', ev.v->'data',
		       coalesce(ev.v->'metadata', '{}'::jsonb)
		  FROM cur,
		       jsonb_array_elements(cur.events) WITH ORDINALITY ev(v, ord)
		 WHERE NOT EXISTS (SELECT 1 FROM bad WHERE bad.i = cur.i)
		 ORDER BY cur.sid COLLATE "C", ev.ord
		RETURNING e.stream_id, e.stream_version, e.global_position
	), done AS (
		SELECT cur.i, cur.sord, max(ins.stream_version) AS ver,
		       max(ins.global_position) AS pos
		  FROM ins
		  JOIN cur ON cur.sid = ins.stream_id
		 GROUP BY cur.i, cur.sord
	)
	SELECT done.i, pg_current_xact_id(), max(done.pos),
	       array_agg(done.ver ORDER BY done.sord), NULL::text, NULL::text,
	       NULL::bigint
	  FROM done
	 GROUP BY done.i
	UNION ALL
	SELECT bad.i, NULL::xid8, NULL::bigint, NULL::bigint[], 'TDV01',
	       CASE WHEN bad.late
		    THEN format('stream ''%s'' was appended to by a younger transaction; retry in a new transaction',
				bad.sid)
		    ELSE format('stream ''%s'' is at version %s, expected %s',
				bad.sid, bad.at, greatest(bad.expected, 0))
	       END,
	       bad.at
	  FROM bad;
END;
$$;

COMMENT ON FUNCTION tandem_append_batch(jsonb) IS
	'Tandem: many independent appends in one statement, each with its own outcome; see migrations/0005_append_batch.sql';

REVOKE ALL ON FUNCTION tandem_append_batch(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tandem_append_batch(jsonb) TO tandem_writer;
