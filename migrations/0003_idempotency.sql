-- 0003_idempotency.sql - stored answers of commands sent with an
-- Idempotency-Key (SPEC section 5).
--
-- Applied once by bin/migrate; never edit it after it has been applied
-- anywhere: add a new numbered migration instead.
--
-- The command service (command-service/cmd_routes.c) looks a key up
-- before running a command; a new key's row is inserted in the same
-- transaction as the command's events, after them, with
-- ON CONFLICT (key) DO NOTHING: a concurrent request with the same key
-- waits on the primary key until the first one commits, then finds the
-- row there, rolls its own events back and answers from the row. So the
-- events of one key are stored once.
--
--   key          the client's Idempotency-Key, 1-255 printable ASCII
--   fingerprint  sha256, hex, of "<method> <path>\n<body>": the same key
--                with another request is refused (422)
--   status       the HTTP status answered (201, or 404/409/412 decided
--                against the state)
--   response     the answer's body
--   headers      the answer's own headers (Location, ETag), {name: value}
--   created_at   for a future clean-up of old keys (created_at index)

CREATE TABLE idempotency_keys (
	key text
		CONSTRAINT idempotency_keys_pkey PRIMARY KEY
		CONSTRAINT idempotency_keys_key_check
		CHECK (octet_length(key) BETWEEN 1 AND 255),
	fingerprint text NOT NULL,
	status int NOT NULL,
	response jsonb NOT NULL,
	headers jsonb NOT NULL DEFAULT '{}',
	created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idempotency_keys_created_at_idx
	ON idempotency_keys (created_at);

COMMENT ON TABLE idempotency_keys IS
	'Tandem: answers of commands sent with an Idempotency-Key; see migrations/0003_idempotency.sql';

REVOKE ALL ON idempotency_keys FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON idempotency_keys TO tandem_writer;
