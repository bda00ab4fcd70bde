-- bench/append-explain.sql - where one batch's time goes inside
-- tandem_append_batch_rows() (0011): auto_explain prints the plan of its
-- statement with actual times and buffers as a NOTICE. 12 deposit-like
-- events to 12 new streams, rolled back afterwards.
--
--   psql -X -f bench/append-explain.sql "$DATABASE_URL"
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_timing = on;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
BEGIN;
SELECT cmd, last_position, versions, error_code
  FROM tandem_append_batch_rows(
	(SELECT array_agg(g) FROM generate_series(1, 12) g),
	(SELECT array_agg('account-explain-' || lpad(g::text, 24, '0'))
	   FROM generate_series(1, 12) g),
	array_fill(-1::bigint, ARRAY[12]),
	(SELECT array_agg(g) FROM generate_series(1, 12) g),
	(SELECT array_agg(gen_random_uuid()) FROM generate_series(1, 12) g),
	array_fill('MoneyDeposited'::text, ARRAY[12]),
	array_fill('{"amount": 100, "currency": "EUR", "balance_after": 12345}'::jsonb, ARRAY[12]),
	array_fill('{"command_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21", "causation_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21", "correlation_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21"}'::jsonb, ARRAY[12]),
	NULL);
ROLLBACK;
