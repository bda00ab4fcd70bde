-- 0014_append_stream_locks.sql - tandem_append_batch_rows() (0011, 0013)
-- takes a shared advisory lock on each stream it appends to, so that a
-- writer holding the exclusive one cannot be overtaken.
--
-- Applied once by bin/migrate; never edit it after it has been applied
-- anywhere: add a new numbered migration instead.
--
-- The stream locks: pg_advisory_xact_lock(1416520813, hashtext(stream_id))
-- (the class is 'Tndm'; ES_STREAM_LOCK_CLASS in common/es_append.h). This
-- function takes them shared, every distinct stream of the batch (those
-- of commands with event ids too) in ascending key order, before it reads
-- any head, and holds them to the end of the transaction. A writer that
-- must not lose a race takes them exclusive, in the same order, before it
-- reads the state it decides on (the command service, for a command that
-- lost to another process or on an account another process writes: see
-- cmd_round_serialize() in command-service/cmd_round.h). Then:
--
-- - no append to those streams commits between its read and its append,
--   so its append meets the version it read: it cannot conflict;
-- - an append that waited for it reads the head after its commit and
--   fails with a version conflict (TDV01), which tells the loser's
--   process that the stream is contended, so it takes the exclusive
--   locks too and the processes go in turn.
--
-- Without the shared locks here, only writers that took the exclusive
-- locks waited for each other: a process whose commands kept winning from
-- its cache never saw a conflict, never took a lock, and kept winning,
-- while the other's command, locked or not, conflicted on every try until
-- COMMAND_RETRIES ran out (t0305, 2 of 500 deposits answered 503 in CI).
--
-- Both orders are ascending keys, so no two holders wait for each other in
-- a cycle (two keys equal by chance, hashtext being 32 bits, can make
-- one: PostgreSQL breaks it with 40P01, and the loser decides again).
-- A transaction holds one lock per distinct stream of its batch: up to 3 x
-- COMMIT_BATCH_MAX (a transfer names two accounts and its own stream) per
-- command-service connection;
-- PostgreSQL's lock table holds max_locks_per_transaction x
-- max_connections of them in all (6,400 by default), shared by every
-- session. Writers outside the protocol (tandem_append() called directly)
-- stay correct, versions are still checked; they are only not waited for.
--
-- Everything else is 0013's function, unchanged.

CREATE OR REPLACE FUNCTION tandem_append_batch_rows(s_cmd integer[], s_stream text[],
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
	hx xid8;
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

	-- 0. The stream locks (see the head of 0014_append_stream_locks.sql),
	-- in one ascending order over every stream of the batch. (A stream
	-- named twice takes its lock twice: that costs less than DISTINCT.)
	IF x IS NULL THEN
		PERFORM pg_advisory_xact_lock_shared(1416520813, q.k)
		   FROM (SELECT hashtext(a.sid) AS k
			   FROM unnest(s_stream) a(sid)
			  ORDER BY 1) q;
	ELSE
		PERFORM pg_advisory_xact_lock_shared(1416520813, q.k)
		   FROM (SELECT hashtext(a.sid) AS k
			   FROM (SELECT unnest(s_stream) AS sid
				 UNION ALL
				 SELECT st->>'stream_id'
				   FROM jsonb_array_elements(x) t(c),
					jsonb_array_elements(t.c->'s') st) a
			  ORDER BY 1) q;
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

	-- 2. Every stream's head, by one index probe each, from the version
	-- expected (see the head of 0013_head_probe_from_expected.sql); a
	-- stream behind what its command expects, by a second probe.
	mine := pg_current_xact_id_if_assigned();
	SELECT array_agg(h.v ORDER BY s.ord), array_agg(h.x ORDER BY s.ord)
	  INTO at, at_xid
	  FROM unnest(s_stream, s_expected) WITH ORDINALITY s(sid, exp, ord)
	  LEFT JOIN LATERAL (
		SELECT e.stream_version AS v, e.transaction_id AS x
		  FROM events e
		 WHERE e.stream_id = s.sid
		   AND e.stream_version >= greatest(s.exp, 1)
		 ORDER BY e.stream_version DESC
		 LIMIT 1) h ON true;
	-- (one test for the whole batch: a deposit round has no NULL)
	IF array_position(at, NULL) IS NOT NULL THEN
		FOR i IN 1 .. ns LOOP
			CONTINUE WHEN at[i] IS NOT NULL;
			v := NULL;
			hx := NULL;
			IF s_expected[i] > 1 THEN
				SELECT e.stream_version, e.transaction_id
				  INTO v, hx
				  FROM events e
				 WHERE e.stream_id = s_stream[i]
				 ORDER BY e.stream_version DESC
				 LIMIT 1;
			END IF;
			at[i] := coalesce(v, 0);
			at_xid[i] := hx;
		END LOOP;
	END IF;

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
