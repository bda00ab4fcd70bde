-- proj_seed.sql - append account traffic straight into events, for the
-- projector tests and the rebuild benchmark:
--   psql -v tag=T -v accounts=N -v steps=S -f proj_seed.sql
-- N accounts (streams account-md5(T || i)), each opened and then given S
-- money events in turn: deposits, a withdrawal, and a transfer between the
-- two accounts of a pair (TransferSent on the even one, TransferReceived
-- on the odd one, same transfer id and amount), balance_after being the
-- running balance. Pairs share a currency. recorded_at spreads the events
-- over several days. One transaction: run it several times with other
-- tags for several.
WITH acc AS (
	SELECT a, md5(:'tag' || a)::uuid AS id,
		CASE WHEN (a / 2) % 3 = 0 THEN 'USD' ELSE 'EUR' END AS cur
	FROM generate_series(0, :accounts - 1) a
), ev AS (
	SELECT acc.a, acc.id, acc.cur, k,
		CASE WHEN k = 0 THEN 'AccountOpened'
		     WHEN k % 4 = 3 AND acc.a % 2 = 0 THEN 'TransferSent'
		     WHEN k % 4 = 3 THEN 'TransferReceived'
		     WHEN k % 4 = 2 THEN 'MoneyWithdrawn'
		     ELSE 'MoneyDeposited' END AS type,
		CASE WHEN k = 0 THEN 0
		     WHEN k % 4 = 3 AND acc.a % 2 = 0 THEN -(5 + k % 3)
		     WHEN k % 4 = 3 THEN 5 + k % 3
		     WHEN k % 4 = 2 THEN -(10 + k % 7)
		     ELSE 100 + k % 50 END AS delta
	FROM acc, generate_series(0, :steps) k
), bal AS (
	SELECT *, sum(delta) OVER (PARTITION BY a ORDER BY k) AS after FROM ev
)
INSERT INTO events (stream_id, stream_version, event_id, event_type, data,
	recorded_at)
SELECT 'account-' || id, k + 1, gen_random_uuid(), type,
	CASE type
	WHEN 'AccountOpened' THEN jsonb_build_object('account_id', id,
		'owner', 'owner-' || (a % 97), 'currency', cur,
		'overdraft_limit', 0)
	WHEN 'TransferSent' THEN jsonb_build_object(
		'transfer_id', md5(:'tag' || 't' || (a / 2) || '.' || k)::uuid,
		'to_account_id', md5(:'tag' || (a + 1))::uuid,
		'amount', abs(delta), 'balance_after', after, 'currency', cur)
	WHEN 'TransferReceived' THEN jsonb_build_object(
		'transfer_id', md5(:'tag' || 't' || (a / 2) || '.' || k)::uuid,
		'from_account_id', md5(:'tag' || (a - 1))::uuid,
		'amount', abs(delta), 'balance_after', after, 'currency', cur)
	ELSE jsonb_build_object('amount', abs(delta), 'balance_after', after,
		'currency', cur, 'reference', 'seed ' || k)
	END,
	timestamptz '2024-03-01 00:00:00+00' + k * interval '37 minutes'
		+ a * interval '1 second'
FROM bal ORDER BY a, k;
