-- 0007_parked_streams.sql - streams parked for a view (SPEC section 3,
-- guarantee 6): an event a view cannot apply (a malformed payload, a
-- number it cannot hold) parks its own stream for that view, from that
-- event's version on; the view goes on with every other stream.
--
-- Applied once by bin/migrate; never edit it after it has been applied
-- anywhere: add a new numbered migration instead.
--
-- A row is written by the leading projector (query-service/qry_tail.c) in
-- the transaction that moves the view's checkpoint past the event, so a
-- restart keeps the stream parked; `query-service parked retry VIEW
-- STREAM` folds the stream's waiting events again (after a fix is
-- deployed) and deletes the row, or records the new error.
CREATE TABLE parked_streams (
	view text NOT NULL,
	stream_id text NOT NULL,
	version bigint NOT NULL, -- the event that could not be applied
	position bigint NOT NULL, -- its global_position
	error text NOT NULL,
	since timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT parked_streams_pkey PRIMARY KEY (view, stream_id)
);

COMMENT ON TABLE parked_streams IS
	'Tandem: streams a projected view cannot apply an event of, from that event''s version on; see query-service/qry_parked.c';

-- Bumped by every `parked retry`, which holds the row locked while it
-- works: the projector checks it in its batch transaction (with the
-- epoch) and reloads the parked streams when it moved.
ALTER TABLE projection_leader
	ADD COLUMN parked_gen bigint NOT NULL DEFAULT 0;

-- A view an earlier version stopped on such an event starts again from
-- where it stopped, and now parks that event's stream instead.
UPDATE projection_checkpoints
SET stopped_error = NULL, stopped_position = NULL
WHERE stopped_error IS NOT NULL;

REVOKE ALL ON parked_streams FROM PUBLIC;
GRANT SELECT ON parked_streams TO tandem_reader;
