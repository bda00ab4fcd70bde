-- bench/pgbench-append.sql - the baseline of the deposits figure: the
-- single-event INSERT that a deposit's transaction makes (tandem_append,
-- migrations/0002_append.sql), as one autocommit statement, without the
-- version lookup and the checks around it: the database's own ceiling.
--
--   pgbench -n -M prepared -f bench/pgbench-append.sql -D run=R -D n=0 ...
--
-- Same columns as a deposit (transaction_id, global_position and
-- recorded_at from their defaults; event_id from gen_random_uuid(), as
-- tandem_append makes it when the command gives none). stream_id has the
-- length of 'account-<uuid>'; each client appends to its own stream, one
-- per run R (bench/run numbers its runs) and client, at versions 1, 2, ...
-- (n is per client and persists across its transactions), so no two
-- transactions ever conflict. data and metadata have the size of a real
-- deposit's (a 3-digit amount, a 5-digit balance_after; metadata with
-- command_id, correlation_id, causation_id and the principal of bench/run's
-- token, as the command service records it with auth on): bench/run
-- compares them with a deposit it made and records both sizes.
\set n :n + 1
INSERT INTO events (stream_id, stream_version, event_id, event_type, data, metadata)
VALUES ('account-' || lpad((:run * 1000 + :client_id)::text, 36, '0'), :n,
	gen_random_uuid(), 'MoneyDeposited',
	'{"amount": 100, "currency": "EUR", "balance_after": 12345}',
	'{"principal": {"iss": "https://bench.tandem.test", "sub": "tandem-bench", "roles": ["manager", "auditor", "service", "operator"]}, "command_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21", "causation_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21", "correlation_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21"}');
