-- 0002_append.sql - tandem_append(): one statement appends to many streams.
--
-- Called by common/es_store.c (es_append) as
--   SELECT * FROM tandem_append($1::jsonb)
-- with
--   [{"stream_id": "account-1", "expected": N,
--     "events": [{"type": "...", "data": {...}, "metadata": {...},
--                 "event_id": "uuid"}, ...]}, ...]
-- where expected is -2 (any version), -1 or 0 (the stream must have no
-- events) or N > 0 (the stream must be exactly at version N). The C side
-- has validated the shape; metadata and event_id are optional.
--
-- One statement, so one round trip, atomic in autocommit mode, and part of
-- the caller's transaction when there is one. Returns one row: the
-- appending transaction's id, the greatest global_position written, and
-- each stream's version after the append (in the order given); together
-- the first two are the append token "<xid>.<position>".
--
-- Errors (common/es_db.c and common/es_store.c turn them into es_errors):
--   TDV01  a stream is not at the expected version, or another writer
--          appended to it first: message "stream 'X' is at version N,
--          expected M" (or "..., another writer appended first" for any),
--          DETAIL the current version N as a bare integer. Also raised,
--          with HINT 'out of order', when this transaction already had an
--          id before the call and a younger transaction has appended to
--          the stream since: readers order the events of one snapshot
--          window by transaction id, so our later versions would come
--          before its earlier ones. Retrying in a new transaction succeeds.
--   TDI01  an event_id is already stored, but not as this very append.
--
-- Idempotent retry: when every event carries an event_id and all of them
-- are stored by one earlier transaction, in these streams at consecutive
-- versions in this order, nothing is stored and that append's row is
-- returned again, without checking expected versions (the retried
-- request's expectation was met by its first attempt).
--
-- Concurrency (READ COMMITTED): every stream's current version is read in
-- one statement before anything is written, so a transaction that gets
-- its id at its first INSERT here is younger than every writer whose
-- events it builds on (per stream, transaction ids grow with versions).
-- Then the streams are written in stream_id order, so two multi-stream
-- appends cannot deadlock on each other. A concurrent writer that inserts
-- the same version (or event_id) first makes our INSERT wait for it; if
-- it commits, ON CONFLICT skips the row and we raise TDV01 (or TDI01).
-- Plain INSERTs by other writers bypass these checks.

CREATE FUNCTION tandem_append(streams jsonb)
RETURNS TABLE (transaction_id xid8, last_position bigint, versions bigint[])
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
	had_xid xid8 := pg_current_xact_id_if_assigned();
	vers bigint[] := array_fill(0::bigint, ARRAY[jsonb_array_length(streams)]);
	total bigint;
	nfound bigint; -- not `found`: that would hide FOUND
	bad record;
	replay record;
	s record;
	inserted bigint;
	maxpos bigint;
	lastpos bigint := NULL;
	now_at bigint;
BEGIN
	-- 1. A retry of an append that is already stored?
	SELECT count(*), count(e.event_id)
	  INTO total, nfound
	  FROM tandem_append_request(streams) r
	  LEFT JOIN events e ON e.event_id = r.event_id;
	IF nfound > 0 THEN
		SELECT r.event_id, e.stream_id, e.stream_version INTO bad
		  FROM tandem_append_request(streams) r
		  JOIN events e ON e.event_id = r.event_id
		 ORDER BY r.sord, r.eord
		 LIMIT 1;
		IF nfound <> total THEN
			RAISE EXCEPTION 'event ''%'' is already stored in stream ''%'' at version %, by another append',
				bad.event_id, bad.stream_id, bad.stream_version
				USING ERRCODE = 'TDI01';
		END IF;
		-- every event is stored: by exactly this append?
		SELECT count(DISTINCT e.transaction_id) AS nxid,
		       bool_and(e.stream_id = r.stream_id) AS same_streams,
		       count(DISTINCT (r.sord, e.stream_version - r.eord)) AS nruns,
		       count(DISTINCT r.sord) AS nsord,
		       min(e.transaction_id::text) AS xid,
		       max(e.global_position) AS pos
		  INTO replay
		  FROM tandem_append_request(streams) r
		  JOIN events e ON e.event_id = r.event_id;
		IF replay.nxid <> 1 OR NOT replay.same_streams
		   OR replay.nruns <> replay.nsord THEN
			RAISE EXCEPTION 'event ''%'' is already stored in stream ''%'' at version %, by another append',
				bad.event_id, bad.stream_id, bad.stream_version
				USING ERRCODE = 'TDI01';
		END IF;
		RETURN QUERY
		SELECT replay.xid::xid8, replay.pos,
		       array_agg(v.last ORDER BY v.sord)
		  FROM (SELECT r.sord, max(e.stream_version) AS last
			  FROM tandem_append_request(streams) r
			  JOIN events e ON e.event_id = r.event_id
			 GROUP BY r.sord) v;
		RETURN;
	END IF;

	-- 2. Every stream's current version, read before we write anything,
	-- and checked against the expectation.
	FOR s IN
		SELECT t.ord, t.st->>'stream_id' AS stream_id,
		       (t.st->>'expected')::bigint AS expected,
		       t.st->'events' AS events,
		       coalesce(c.stream_version, 0) AS cur,
		       c.transaction_id AS cur_xid
		  FROM jsonb_array_elements(streams) WITH ORDINALITY t(st, ord)
		  LEFT JOIN LATERAL (
			SELECT e.stream_version, e.transaction_id
			  FROM events e
			 WHERE e.stream_id = t.st->>'stream_id'
			 ORDER BY e.stream_version DESC
			 LIMIT 1) c ON true
		 ORDER BY t.st->>'stream_id' COLLATE "C", t.ord
	LOOP
		IF s.expected >= -1 AND s.cur <> greatest(s.expected, 0) THEN
			RAISE EXCEPTION 'stream ''%'' is at version %, expected %',
				s.stream_id, s.cur, greatest(s.expected, 0)
				USING ERRCODE = 'TDV01', DETAIL = s.cur::text;
		END IF;
		-- Without an id before this call ours comes after cur_xid,
		-- which committed before we read it.
		IF had_xid IS NOT NULL AND s.cur_xid > had_xid THEN
			RAISE EXCEPTION 'stream ''%'' was appended to by a younger transaction; retry in a new transaction',
				s.stream_id
				USING ERRCODE = 'TDV01', DETAIL = s.cur::text,
				      HINT = 'out of order';
		END IF;

		-- 3. Write, in stream_id order.
		WITH ins AS (
			INSERT INTO events (stream_id, stream_version, event_id,
					    event_type, data, metadata)
			SELECT s.stream_id, s.cur + e.ord,
			       coalesce((e.ev->>'event_id')::uuid,
					gen_random_uuid()),
			       e.ev->>'type', e.ev->'data',
			       coalesce(e.ev->'metadata', '{}'::jsonb)
			  FROM jsonb_array_elements(s.events)
				WITH ORDINALITY e(ev, ord)
			 ORDER BY e.ord
			ON CONFLICT DO NOTHING
			RETURNING global_position)
		SELECT count(*), max(global_position) INTO inserted, maxpos
		  FROM ins;
		IF inserted <> jsonb_array_length(s.events) THEN
			-- An event_id stored by someone else (this new statement
			-- sees what committed meanwhile), or a concurrent writer
			-- took one of our versions.
			SELECT r.event_id, e.stream_id, e.stream_version
			  INTO bad
			  FROM tandem_append_request(streams) r
			  JOIN events e ON e.event_id = r.event_id
			 WHERE e.transaction_id <> pg_current_xact_id()
			 ORDER BY r.sord, r.eord
			 LIMIT 1;
			IF FOUND THEN
				RAISE EXCEPTION 'event ''%'' is already stored in stream ''%'' at version %, by another append',
					bad.event_id, bad.stream_id,
					bad.stream_version
					USING ERRCODE = 'TDI01';
			END IF;
			-- the version that stays when our rows are rolled back
			SELECT coalesce(max(e.stream_version), 0) INTO now_at
			  FROM events e
			 WHERE e.stream_id = s.stream_id
			   AND e.transaction_id <> pg_current_xact_id();
			IF s.expected = -2 THEN
				RAISE EXCEPTION 'stream ''%'' is at version %, another writer appended first',
					s.stream_id, now_at
					USING ERRCODE = 'TDV01',
					      DETAIL = now_at::text;
			END IF;
			RAISE EXCEPTION 'stream ''%'' is at version %, expected %',
				s.stream_id, now_at, greatest(s.expected, 0)
				USING ERRCODE = 'TDV01', DETAIL = now_at::text;
		END IF;
		vers[s.ord] := s.cur + inserted;
		lastpos := greatest(lastpos, maxpos);
	END LOOP;

	RETURN QUERY SELECT pg_current_xact_id(), lastpos, vers;
END;
$$;

-- The request's events, one row each: stream ordinal, event ordinal,
-- stream id and the given event_id (NULL when none).
CREATE FUNCTION tandem_append_request(streams jsonb)
RETURNS TABLE (sord bigint, eord bigint, stream_id text, event_id uuid)
LANGUAGE sql IMMUTABLE
AS $$
	SELECT t.ord, e.ord, t.st->>'stream_id', (e.ev->>'event_id')::uuid
	  FROM jsonb_array_elements(streams) WITH ORDINALITY t(st, ord),
	       jsonb_array_elements(t.st->'events') WITH ORDINALITY e(ev, ord)
$$;

COMMENT ON FUNCTION tandem_append(jsonb) IS
	'Tandem: append to several streams atomically with optimistic concurrency; see migrations/0002_append.sql';

REVOKE ALL ON FUNCTION tandem_append(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION tandem_append_request(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tandem_append(jsonb) TO tandem_writer;
GRANT EXECUTE ON FUNCTION tandem_append_request(jsonb) TO tandem_writer;
