-- 0008_idempotency_principal.sql - Idempotency-Keys scoped to the
-- principal (SPEC section 11): one client can no longer take another's
-- key, nor read another's stored answer by sending its key.
--
-- Applied once by bin/migrate; never edit it after it has been applied
-- anywhere: add a new numbered migration instead.
--
--   iss, sub  the verified principal that sent the key (es_auth.h); ''
--             for rows stored before this migration, which no verified
--             principal's lookup matches any more
--
-- The primary key becomes (iss, sub, key): the same key sent by two
-- principals names two rows.

ALTER TABLE idempotency_keys
	ADD COLUMN iss text NOT NULL DEFAULT '',
	ADD COLUMN sub text NOT NULL DEFAULT '';

ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys
	ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (iss, sub, key);

COMMENT ON COLUMN idempotency_keys.iss IS
	'Tandem: the issuer of the principal that sent the key';
COMMENT ON COLUMN idempotency_keys.sub IS
	'Tandem: the sub of the principal that sent the key';
