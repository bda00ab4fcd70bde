-- bench/pgbench-transfer.sql - the baseline of the transfers figure: the
-- rows a transfer appends (command-service/cmd_kinds.c, transfer_decide:
-- TransferSent on the payer's stream, TransferReceived on the payee's,
-- TransferMade as the first event of the stream "transfer-<transfer id>"),
-- as one autocommit INSERT of three rows: one transaction, one round trip,
-- without the version lookups and the checks around it.
--
--   pgbench -n -M prepared -f bench/pgbench-transfer.sql -D run=R -D n=0 ...
--
-- Same columns as bench/pgbench-append.sql (event_id from
-- gen_random_uuid()). Each client has its own two account streams per run
-- R, ids of the length of 'account-<uuid>' (ending in 'a' and 'b', so
-- that they never meet the all-digit streams of pgbench-append.sql), at
-- versions 1, 2, ... (n is per client and persists across its
-- transactions), and a transfer stream of the length of
-- 'transfer-<uuid>' per transaction, at version 1: no two transactions
-- ever conflict. data and metadata have the sizes of a real transfer's
-- events (bench/transfers.lua: a 2-digit amount, a 4-digit balance_after,
-- metadata with the principal of bench/run's token): bench/run compares
-- them with a transfer it made and records both.
\set n :n + 1
INSERT INTO events (stream_id, stream_version, event_id, event_type, data, metadata)
VALUES ('account-' || lpad((:run * 1000 + :client_id)::text || 'a', 36, '0'), :n,
	gen_random_uuid(), 'TransferSent',
	'{"amount": 10, "currency": "EUR", "transfer_id": "6a0c3e1b-8f2d-4d7a-9c5e-1b3f7a2d4e60", "balance_after": 2500, "to_account_id": "c4f1a9e2-3b7d-4e58-a1c6-9d2e7f3b5a81"}',
	'{"principal": {"iss": "https://bench.tandem.test", "sub": "tandem-bench", "roles": ["manager", "auditor", "service", "operator"]}, "command_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21", "causation_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21", "correlation_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21"}'),
	('account-' || lpad((:run * 1000 + :client_id)::text || 'b', 36, '0'), :n,
	gen_random_uuid(), 'TransferReceived',
	'{"amount": 10, "currency": "EUR", "transfer_id": "6a0c3e1b-8f2d-4d7a-9c5e-1b3f7a2d4e60", "balance_after": 2520, "from_account_id": "8e2b5d71-6c3a-4f09-b7d4-2a9c1e6f8b35"}',
	'{"principal": {"iss": "https://bench.tandem.test", "sub": "tandem-bench", "roles": ["manager", "auditor", "service", "operator"]}, "command_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21", "causation_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21", "correlation_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21"}'),
	('transfer-' || lpad((:run * 1000 + :client_id)::text || '.' || :n, 36, '0'), 1,
	gen_random_uuid(), 'TransferMade',
	'{"amount": 10, "currency": "EUR", "transfer_id": "6a0c3e1b-8f2d-4d7a-9c5e-1b3f7a2d4e60", "to_account_id": "c4f1a9e2-3b7d-4e58-a1c6-9d2e7f3b5a81", "from_account_id": "8e2b5d71-6c3a-4f09-b7d4-2a9c1e6f8b35"}',
	'{"principal": {"iss": "https://bench.tandem.test", "sub": "tandem-bench", "roles": ["manager", "auditor", "service", "operator"]}, "command_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21", "causation_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21", "correlation_id": "2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21"}');
