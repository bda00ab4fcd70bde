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
-- Returns rows of two kinds, in no particular order:
--   * cmd set: one per command of `x` (as tandem_append_batch() returns
--     it: transaction_id, last_position and versions, in the order of its
--     streams, or error_code 'TDV01' / 'TDI01' with error_message and
--     current_version), and one per failing command of the arrays:
--     error_code 'TDV01', error_message ("stream 'X' is at version N,
--     expected M", or "... was appended to by a younger transaction;
--     retry in a new transaction") and current_version, for its first
--     failing stream in stream_id order;
--   * cmd NULL: one per event stored from the arrays: its transaction_id,
--     its global_position in last_position, its stream_id and
--     stream_version. The caller adds them up per command (greatest
--     position, each stream's greatest version): no join back in SQL.
-- A command that fails stores nothing; the others are appended all the
-- same, in the caller's transaction (or the statement's own, in
-- autocommit mode). Arrays of different lengths, or an event naming no
-- stream, raise 22023 and nothing is stored.
--
-- How (0005's rules, kept):
--   1. Commands of `x` through tandem_append() one by one, each in a
--      subtransaction of its own: its idempotent-retry rules (replay of
--      the original outcome, TDI01) need it.
--   2. Every stream's head (version and transaction id), by one index
--      probe each, in one statement, before anything of the arrays is
--      written. The head is read even when the expected version is exact:
--      the unique constraint alone would let an expectation ahead of the
--      stream leave a version gap, and proving there is none costs the
--      same probe.
--   3. The checks, per stream, in PL/pgSQL over the arrays (a statement
--      of CTEs, sorts and joins cost more to start than to run at a dozen
--      rows): a failing command is dropped whole.
--   4. Versions head + 1, + 2, ... for each stream's events, in their
--      order, so no gap whatever the caller sends.
--   5. One INSERT of the events of every command left, in stream_id order
--      (COLLATE "C"), so that two batches cannot deadlock. When a
--      concurrent writer takes one of our versions between step 2 and the
--      INSERT, events_stream_id_stream_version_key fails the whole
--      statement (SQLSTATE 23505, nothing stored) and the caller runs the
--      batch again, where that command gets its TDV01.
--
-- Order: a transaction without an id before step 2 gets one at the
-- INSERT, after reading heads that committed before it. If it had one
-- (the caller wrote before, or step 1 did), a stream whose last writer is
-- younger fails its command with TDV01, as tandem_append() refuses it.
--
-- Plans: PL/pgSQL keeps each statement's plan for the session; their
-- generic plans win (the arrays' lengths are unknown to either plan), so
-- nothing is planned per call. The caller prepares its SELECT once per
-- session too.

CREATE FUNCTION tandem_append_batch_rows(s_cmd integer[], s_stream text[],
					 s_expected bigint[],
					 e_stream integer[], e_id uuid[],
					 e_type text[], e_data jsonb[],
					 e_meta jsonb[], x jsonb)
RETURNS TABLE (cmd integer, transaction_id xid8, last_position bigint,
	       versions bigint[], error_code text, error_message text,
	       current_version bigint, stream_id text, stream_version bigint)
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
	at bigint[];
	at_xid xid8[];
	bad integer[]; -- per command number: its first failing stream
	head bigint[]; -- per stream: its version as the events are counted
	sid text[]; -- per event: its stream, NULL when its command fails
	ver bigint[]; -- per event: its version
	i integer;
	k integer;
	v bigint;
	nins integer := 0;
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
						    NULL::bigint, NULL::text,
						    NULL::bigint;
			EXCEPTION WHEN SQLSTATE 'TDV01' OR SQLSTATE 'TDI01' THEN
				GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE,
							msg = MESSAGE_TEXT,
							det = PG_EXCEPTION_DETAIL;
				RETURN QUERY SELECT c.i, NULL::xid8, NULL::bigint,
						    NULL::bigint[], st, msg,
						    CASE WHEN det ~ '^-?[0-9]+$'
							 THEN det::bigint END,
						    NULL::text, NULL::bigint;
			END;
		END LOOP;
	END IF;
	IF ns = 0 THEN
		RETURN;
	END IF;

	-- 2. Every stream's head, by one index probe each.
	mine := pg_current_xact_id_if_assigned();
	SELECT array_agg(coalesce(h.v, 0) ORDER BY s.ord),
	       array_agg(h.x ORDER BY s.ord)
	  INTO at, at_xid
	  FROM unnest(s_stream) WITH ORDINALITY s(sid, ord)
	  LEFT JOIN LATERAL (
		SELECT e.stream_version AS v, e.transaction_id AS x
		  FROM events e
		 WHERE e.stream_id = s.sid
		 ORDER BY e.stream_version DESC
		 LIMIT 1) h ON true;

	-- 3. Each failing command's first failing stream, in stream_id order.
	FOR i IN 1 .. ns LOOP
		IF (s_expected[i] >= -1 AND at[i] <> greatest(s_expected[i], 0))
		   OR (mine IS NOT NULL AND at_xid[i] > mine) THEN
			k := bad[s_cmd[i]];
			IF k IS NULL
			   OR s_stream[i] COLLATE "C" < s_stream[k] COLLATE "C" THEN
				bad[s_cmd[i]] := i;
			END IF;
		END IF;
	END LOOP;

	-- 4. Versions: each stream's events after its head, in their order.
	-- sid and ver are as long as the e_ arrays, from 1 (unnest() below
	-- pairs elements by place, whatever the subscripts).
	head := at;
	sid := array_fill(NULL::text, ARRAY[ne]);
	ver := array_fill(NULL::bigint, ARRAY[ne]);
	FOR k IN 1 .. ne LOOP
		i := e_stream[k];
		IF i IS NULL OR i < 1 OR i > ns THEN
			RAISE EXCEPTION 'tandem_append_batch_rows: event % names no stream', k
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF bad[s_cmd[i]] IS NULL THEN
			v := head[i] + 1;
			head[i] := v;
			ver[k] := v;
			sid[k] := s_stream[i];
			nins := nins + 1;
		END IF;
	END LOOP;

	-- 5. One INSERT, in stream_id order; a row per event stored.
	IF nins > 0 THEN
		RETURN QUERY
		WITH ins AS (
			INSERT INTO events AS e (stream_id, stream_version,
						 event_id, event_type, data,
						 metadata)
			SELECT ev.sid, ev.ver, ev.id, ev.type, ev.data,
			       coalesce(ev.meta, '{}'::jsonb)
			  FROM unnest(sid, ver, e_id, e_type, e_data, e_meta)
				WITH ORDINALITY ev(sid, ver, id, type, data,
						   meta, ord)
			 WHERE ev.ver IS NOT NULL
			 ORDER BY ev.sid COLLATE "C", ev.ord
			RETURNING e.transaction_id, e.global_position,
				  e.stream_id, e.stream_version)
		SELECT NULL::integer, ins.transaction_id, ins.global_position,
		       NULL::bigint[], NULL::text, NULL::text, NULL::bigint,
		       ins.stream_id, ins.stream_version
		  FROM ins;
	END IF;

	-- 6. A row per failing command.
	IF bad IS NOT NULL THEN
		FOR k IN array_lower(bad, 1) .. array_upper(bad, 1) LOOP
			i := bad[k];
			CONTINUE WHEN i IS NULL;
			cmd := k;
			transaction_id := NULL;
			last_position := NULL;
			versions := NULL;
			error_code := 'TDV01';
			error_message := CASE
				WHEN mine IS NOT NULL AND at_xid[i] > mine
				THEN format('stream ''%s'' was appended to by a younger transaction; retry in a new transaction',
					    s_stream[i])
				ELSE format('stream ''%s'' is at version %s, expected %s',
					    s_stream[i], at[i],
					    greatest(s_expected[i], 0))
				END;
			current_version := at[i];
			stream_id := NULL;
			stream_version := NULL;
			RETURN NEXT;
		END LOOP;
	END IF;
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
