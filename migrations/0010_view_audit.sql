-- 0010_view_audit.sql - the audit view (SPEC section 11): every command a
-- principal caused, from the events' metadata (principal.sub and
-- command_id), for GET /audit/principals/{sub}/actions.
--
-- Applied once by bin/migrate; never edit it after it has been applied
-- anywhere: add a new numbered migration instead.
--
-- Written only by the projecting query service, from the pure fold in
-- query-service/views/audit.c, in the transaction that moves the view's
-- checkpoint; a rebuild fills view_audit_rebuild (see 0004_views.sql).
-- Events without a principal object in their metadata are not listed.

-- One row per command of a principal: the command's events (all that
-- share its command_id; an event without one is a command of its own),
-- in position order, as [{"position", "stream", "version", "type",
-- "amount"}], amount null where the event has none.
CREATE TABLE view_audit (
	sub text NOT NULL, -- metadata.principal.sub, 1 to 256 bytes
	position bigint NOT NULL, -- global_position of its first event
	command_id text, -- NULL: the event had none
	correlation_id text, -- the first event's, NULL when none
	recorded_at timestamptz NOT NULL, -- the first event's
	events jsonb NOT NULL,
	-- GET /audit/principals/{sub}/actions pages by position
	CONSTRAINT view_audit_pkey PRIMARY KEY (sub, position),
	-- the rest of a command a later batch reads joins its row
	CONSTRAINT view_audit_sub_command_id_key UNIQUE (sub, command_id)
);

COMMENT ON TABLE view_audit IS
	'Tandem view: every command a principal caused (metadata principal.sub, command_id), one row per command; written by the query service projector, see query-service/views/audit.c';

-- The view projects the whole log from its beginning (the projector reads
-- from the oldest checkpoint; the other views skip what they have seen).
INSERT INTO projection_checkpoints (view, position)
VALUES ('audit', '0:0:')
ON CONFLICT (view) DO NOTHING;

REVOKE ALL ON view_audit FROM PUBLIC;
GRANT SELECT ON view_audit TO tandem_reader;
