-- 0011_append_batch_rows.sql - tandem_append_batch_rows(): group commit
-- over arrays, one element per stream and per event, instead of one jsonb
-- document (0005_append_batch.sql, which stays for other callers).
--
-- Applied once by bin/migrate; never edit it after it has been applied
-- anywhere: add a new numbered migration instead.
--
-- Called by common/es_append.c (es_append_batch) as a prepared statement
--   SELECT * FROM tandem_append_batch_rows($1, $2, $3, $4, $5, $6, $7, $8, $9)
-- with the arrays in binary form (no text to unescape) and
--   s_cmd int[], s_stream text[], s_expected bigint[]
--       one element per stream: the number of its command (unique per
--       command in the call), its stream_id, its expected version (-2 any,
--       -1 or 0 no stream, N > 0 exactly N);
--   e_stream int[], e_id uuid[], e_type text[], e_data jsonb[],
--   e_meta jsonb[]
--       one element per event: the 1-based index of its stream in the s_
--       arrays, its event_id (made by the caller), type, data and metadata
--       (NULL: '{}'); a stream's events in the order they are to be stored;
--   x jsonb
--       the commands whose events carry client event ids, as 0005 takes
--       them: [{"i": <number>, "s": <tandem_append() argument>}, ...], or
--       NULL.
-- The C side has validated the shapes and made sure that no stream is
-- named by two commands of one call, nor twice by one command.
--
-- Returns one row per command, as tandem_append_batch() does: its number,
-- and either the transaction id, its greatest position and each stream's
-- version after it (in the order of its streams in the s_ arrays), or
-- error_code 'TDV01' / 'TDI01' with error_message and current_version. A
-- command that fails stores nothing; the others are appended all the
-- same, in the caller's transaction (or the statement's own, in
-- autocommit mode). Arrays of different lengths raise 22023, an event
-- naming no stream 23502 (stream_id NULL); nothing is stored then.
--
-- How (0005's rules, kept):
--   1. Commands of `x` through tandem_append() one by one, each in a
--      subtransaction of its own: its idempotent-retry rules (replay of
--      the original outcome, TDI01) need it.
--   2. The others in one statement: every stream's head (version and
--      transaction id) read first by one index probe, then one INSERT of
--      the events of every command whose streams are all where it expects
--      them, versions head + 1, + 2, ... per stream, in stream_id order
--      (COLLATE "C"), so that two batches cannot deadlock. The head is
--      read even when the expected version is exact: the unique
--      constraint alone would let an expectation ahead of the stream
--      leave a version gap, and proving there is none costs the same
--      probe. When a concurrent writer takes one of our versions between
--      the read and the INSERT, events_stream_id_stream_version_key fails
--      the whole statement (SQLSTATE 23505, nothing stored) and the caller
--      runs the batch again, where that command gets its TDV01.
--
-- Order: a transaction without an id before step 2 gets one at the
-- INSERT, after reading heads that committed before it. If it had one
-- (the caller wrote before, or step 1 did), a stream whose last writer is
-- younger gets TDV01 with "... younger transaction; retry in a new
-- transaction", as tandem_append() raises it.
--
-- Plans: the statement of step 2 is planned once per session and kept
-- (plan_cache_mode is left alone: its generic plan wins, the arrays'
-- lengths being unknown to either plan).

CREATE FUNCTION tandem_append_batch_rows(s_cmd integer[], s_stream text[],
					 s_expected bigint[],
					 e_stream integer[], e_id uuid[],
					 e_type text[], e_data jsonb[],
					 e_meta jsonb[], x jsonb)
RETURNS TABLE (cmd integer, transaction_id xid8, last_position bigint,
	       versions bigint[], error_code text, error_message text,
	       current_version bigint)
LANGUAGE plpgsql
ROWS 64
AS $$
#variable_conflict use_column
DECLARE
	c record;
	r record;
	st text;
	msg text;
	det text;
	mine xid8;
	ns integer := coalesce(cardinality(s_cmd), 0);
	ne integer := coalesce(cardinality(e_stream), 0);
BEGIN
	IF coalesce(cardinality(s_stream), 0) <> ns
	   OR coalesce(cardinality(s_expected), 0) <> ns
	   OR coalesce(cardinality(e_id), 0) <> ne
	   OR coalesce(cardinality(e_type), 0) <> ne
	   OR coalesce(cardinality(e_data), 0) <> ne
	   OR coalesce(cardinality(e_meta), 0) <> ne THEN
		RAISE EXCEPTION 'tandem_append_batch_rows: arrays of different lengths'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	-- 1. Commands that name event ids.
	IF x IS NOT NULL THEN
		FOR c IN
			SELECT (t.c->>'i')::integer AS i, t.c->'s' AS s
			  FROM jsonb_array_elements(x) t(c)
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
	END IF;
	IF ns = 0 THEN
		RETURN;
	END IF;

	-- 2. The others, in one statement.
	mine := pg_current_xact_id_if_assigned();
	RETURN QUERY
	WITH s AS MATERIALIZED (
		SELECT s.cmd, s.ord, s.sid, s.expected,
		       coalesce(h.stream_version, 0) AS at,
		       h.transaction_id AS at_xid
		  FROM unnest(s_cmd, s_stream, s_expected)
			WITH ORDINALITY s(cmd, sid, expected, ord)
		  LEFT JOIN LATERAL (
			SELECT e.stream_version, e.transaction_id
			  FROM events e
			 WHERE e.stream_id = s.sid
			 ORDER BY e.stream_version DESC
			 LIMIT 1) h ON true
	), bad AS MATERIALIZED (
		-- per failing command, its first failing stream
		SELECT DISTINCT ON (s.cmd) s.cmd, s.sid, s.at, s.expected,
		       (mine IS NOT NULL AND s.at_xid > mine) AS late
		  FROM s
		 WHERE (s.expected >= -1 AND s.at <> greatest(s.expected, 0))
		    OR (mine IS NOT NULL AND s.at_xid > mine)
		 ORDER BY s.cmd, s.sid COLLATE "C"
	), ins AS (
		INSERT INTO events AS e (stream_id, stream_version, event_id,
					 event_type, data, metadata)
		SELECT s.sid,
		       s.at + row_number() OVER (PARTITION BY s.sid COLLATE "C"
						ORDER BY ev.ord),
		       ev.id, ev.type, ev.data, coalesce(ev.meta, '{}'::jsonb)
		  FROM unnest(e_stream, e_id, e_type, e_data, e_meta)
			WITH ORDINALITY ev(si, id, type, data, meta, ord)
		  -- an event naming no stream gets a NULL stream_id: 23502
		  LEFT JOIN s ON s.ord = ev.si
		 WHERE NOT EXISTS (SELECT 1 FROM bad WHERE bad.cmd = s.cmd)
		 ORDER BY s.sid COLLATE "C", ev.ord
		RETURNING e.stream_id, e.stream_version, e.global_position
	), done AS (
		SELECT s.cmd, s.ord, max(ins.stream_version) AS ver,
		       max(ins.global_position) AS pos
		  FROM ins
		  JOIN s ON s.sid = ins.stream_id
		 GROUP BY s.cmd, s.ord
	)
	SELECT done.cmd, pg_current_xact_id(), max(done.pos),
	       array_agg(done.ver ORDER BY done.ord), NULL::text, NULL::text,
	       NULL::bigint
	  FROM done
	 GROUP BY done.cmd
	UNION ALL
	SELECT bad.cmd, NULL::xid8, NULL::bigint, NULL::bigint[], 'TDV01',
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

COMMENT ON FUNCTION tandem_append_batch_rows(integer[], text[], bigint[],
	integer[], uuid[], text[], jsonb[], jsonb[], jsonb) IS
	'Tandem: many independent appends in one statement over arrays, each with its own outcome; see migrations/0011_append_batch_rows.sql';

REVOKE ALL ON FUNCTION tandem_append_batch_rows(integer[], text[], bigint[],
	integer[], uuid[], text[], jsonb[], jsonb[], jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tandem_append_batch_rows(integer[], text[],
	bigint[], integer[], uuid[], text[], jsonb[], jsonb[], jsonb)
	TO tandem_writer;
