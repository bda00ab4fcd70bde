-- 0006_view_sums_numeric.sql - view_daily's sums become numeric: exact at
-- any size (SPEC section 3, guarantee 6). As bigint, a day's sum past
-- 2^63 - 1 made PostgreSQL refuse the projector's batch (SQLSTATE 22003)
-- and every table view stopped.
--
-- Applied once by bin/migrate; never edit it after it has been applied
-- anywhere: add a new numbered migration instead.
--
-- The counts stay bigint: one per event, they cannot pass 2^63 - 1.

ALTER TABLE view_daily
	ALTER COLUMN deposits_sum TYPE numeric,
	ALTER COLUMN withdrawals_sum TYPE numeric,
	ALTER COLUMN transfers_sum TYPE numeric;
