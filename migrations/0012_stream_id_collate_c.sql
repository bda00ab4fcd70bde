-- 0012_stream_id_collate_c.sql - events.stream_id compares as bytes
-- (COLLATE "C"): every probe and insert of the stream index is cheaper.
--
-- Applied once by bin/migrate; never edit it after it has been applied
-- anywhere: add a new numbered migration instead.
--
-- Every append descends events_stream_id_stream_version_key at least
-- twice (the head probe of 0011's step 2, then the insert and its
-- uniqueness check), and a command service's cache miss three times
-- (command-service/account_repo.c). Under the database's collation each
-- comparison of two stream ids on the way down goes through strcoll()
-- (PostgreSQL 15 treats only "C" and "POSIX" as plain bytes, not
-- C.UTF-8, nor en_US.UTF-8 of the postgres image); a larger log makes
-- the index one level deeper, so more of them. Under "C" a comparison is
-- a memcmp().
--
-- Nothing a reader sees changes: equality is byte equality under any
-- deterministic collation, so the unique constraint admits exactly the
-- same rows, and the appends already order streams with COLLATE "C" (no
-- deadlock between batches). Only an ORDER BY stream_id without a
-- COLLATE clause sorts as bytes now (as C.UTF-8 did already); no part of
-- Tandem sorts events by stream_id. Comparisons with text of the default
-- collation (parameters, other columns) take the column's "C" and so use
-- the index.
--
-- The type stays text, so the table is not rewritten; the two indexes on
-- stream_id are rebuilt and the CHECK on it is validated again, under an
-- ACCESS EXCLUSIVE lock: on a large log this reads the table and holds
-- off appends and reads for its duration.
--
-- Waiting for that lock queues every later append and read behind it, and
-- a transaction may legally stay open on events for minutes (SPEC 3.4):
-- the migration gives up after 10 s of waiting (55P03, nothing changed)
-- rather than stop the service; run bin/migrate again at a quieter time.
SET LOCAL lock_timeout = '10s';
ALTER TABLE events ALTER COLUMN stream_id TYPE text COLLATE "C";

-- The new type drops the column's statistics: take them again, so that
-- plans over events (the query side's reads) need not wait for autovacuum.
ANALYZE events;
