-- bench/append-preload.sql - :n deposit-like events in 12,000 streams of
-- their own, so that the indexes of bench/append-cpu.sh and
-- append-callgrind.sh are not tiny (payload sizes of pgbench-append.sql).
--
--   psql -v n=200000 -f bench/append-preload.sql
INSERT INTO events (stream_id, stream_version, event_id, event_type, data,
		    metadata)
SELECT 'account-preload-' || lpad((g % 12000)::text, 24, '0'), g / 12000 + 1,
       gen_random_uuid(), 'MoneyDeposited',
       '{"amount": 100, "currency": "EUR", "balance_after": 12345}',
       '{"command_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21", "causation_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21", "correlation_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21"}'
  FROM generate_series(0, :n - 1) g;
VACUUM ANALYZE events;
