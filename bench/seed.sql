-- bench/seed.sql - account traffic written straight into events, quickly,
-- shaped like what the command service writes (bench/run uses it):
--
--   psql -v tag=T -v accounts=N -v steps=S -v mix=traffic|deposits \
--        -v chunk=C -f bench/seed.sql
--
-- N accounts, ids md5(T || ':' || i)::uuid (lower case, as the services print
-- them), streams 'account-<id>'. Each is opened (AccountOpened, version 1)
-- and then given S money events, versions 2 .. S + 1:
--   mix=traffic   in turn deposits, a withdrawal and a transfer between the
--                 two accounts of a pair (TransferSent on the even one,
--                 TransferReceived on the odd one, same transfer id and
--                 amount); pairs share a currency;
--   mix=deposits  deposits only (an account with a long history).
-- balance_after is the running balance, and every money event carries its
-- currency, like the events of command-service/account_decide.c; metadata
-- is {command_id, correlation_id, causation_id}, one uuid, as a command
-- without those headers gets. Event ids and command ids are md5 uuids of
-- the tag and the event's number (cheaper than gen_random_uuid()): use a
-- new tag for each seeding of one database. Events are written round by round (every
-- account's k-th event, then every account's k+1-th), so accounts
-- interleave in the log as under real traffic, in transactions of C events
-- (one transaction id each, like a stream of commands), with
-- synchronous_commit off for this session only: the caller takes a
-- CHECKPOINT afterwards. N * (S + 1) events in all.
\set ON_ERROR_STOP on
SET synchronous_commit = off;

-- The plan: one row per event, numbered in log order.
CREATE TEMP TABLE seed_plan AS
WITH acc AS (
	SELECT a, md5(:'tag' || ':' || a)::uuid AS id,
		CASE WHEN (a / 2) % 3 = 0 THEN 'USD' ELSE 'EUR' END AS cur
	FROM generate_series(0, :accounts - 1) a
), ev AS (
	SELECT acc.a, acc.id, acc.cur, k,
		CASE WHEN k = 0 THEN 'AccountOpened'
		     WHEN :'mix' = 'deposits' THEN 'MoneyDeposited'
		     WHEN k % 4 = 3 AND acc.a % 2 = 0
			AND acc.a + 1 < :accounts THEN 'TransferSent'
		     WHEN k % 4 = 3 AND acc.a % 2 = 1 THEN 'TransferReceived'
		     WHEN k % 4 = 2 THEN 'MoneyWithdrawn'
		     ELSE 'MoneyDeposited' END AS type
	FROM acc, generate_series(0, :steps) k
), amt AS (
	SELECT *,
		CASE type
		WHEN 'AccountOpened' THEN 0
		WHEN 'TransferSent' THEN -(500 + k % 3 * 25)
		WHEN 'TransferReceived' THEN 500 + k % 3 * 25
		WHEN 'MoneyWithdrawn' THEN -(1000 + k % 7 * 100)
		ELSE 2500 + k % 50 * 10 END AS delta
	FROM ev
)
SELECT row_number() OVER (ORDER BY k, a) AS n, a, id, cur, k, type, delta,
	sum(delta) OVER (PARTITION BY a ORDER BY k) AS after
FROM amt;

CREATE INDEX ON seed_plan (n);
ANALYZE seed_plan;

SELECT format($q$
INSERT INTO events (stream_id, stream_version, event_id, event_type, data,
	metadata, recorded_at)
SELECT 'account-' || p.id, p.k + 1, md5(%1$L || ':e' || p.n)::uuid, p.type,
	CASE p.type
	WHEN 'AccountOpened' THEN jsonb_build_object('account_id', p.id,
		'owner', 'owner-' || (p.a %% 997), 'currency', p.cur,
		'overdraft_limit', 0)
	WHEN 'TransferSent' THEN jsonb_build_object(
		'transfer_id', md5(%1$L || ':t' || (p.a / 2) || '.' || p.k)::uuid,
		'to_account_id', md5(%1$L || ':' || (p.a + 1))::uuid,
		'amount', abs(p.delta), 'balance_after', p.after,
		'currency', p.cur)
	WHEN 'TransferReceived' THEN jsonb_build_object(
		'transfer_id', md5(%1$L || ':t' || (p.a / 2) || '.' || p.k)::uuid,
		'from_account_id', md5(%1$L || ':' || (p.a - 1))::uuid,
		'amount', abs(p.delta), 'balance_after', p.after,
		'currency', p.cur)
	ELSE jsonb_build_object('amount', abs(p.delta),
		'balance_after', p.after, 'currency', p.cur)
	END,
	jsonb_build_object('command_id', u.id, 'correlation_id', u.id,
		'causation_id', u.id),
	timestamptz '2024-03-01 00:00:00+00' + p.k * interval '37 minutes'
		+ p.a * interval '10 ms'
FROM seed_plan p, LATERAL (SELECT md5(%1$L || ':c' || p.n)::uuid::text AS id) u
WHERE p.n > %2$s AND p.n <= %3$s
ORDER BY p.n$q$, :'tag', lo, lo + :chunk)
FROM generate_series(0, :accounts * (:steps + 1) - 1, :chunk) lo
\gexec

DROP TABLE seed_plan;
