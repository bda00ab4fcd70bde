-- 0015_events_insert_columns.sql - tandem_writer inserts events but does
-- not choose their transaction_id, global_position or recorded_at.
--
-- Applied once by bin/migrate; never edit it after it has been applied
-- anywhere: add a new numbered migration instead.
--
-- A reader of the log trusts transaction_id: on a hot standby the list
-- of running transactions is made from it (ES_SQL_SNAPSHOT in
-- common/es_read.h: a transaction with an event it sees is not running),
-- so a committed row naming a running transaction's xid would make a
-- reader skip that transaction's events; and the tailing order is
-- (transaction_id, global_position). The defaults (pg_current_xact_id(),
-- the identity, now()) are the only values these columns may get from a
-- writer: INSERT is granted on the other columns only, which is what
-- tandem_append() and tandem_append_batch_rows() name. A superuser or the
-- table's owner is not bound by it.

REVOKE INSERT ON events FROM tandem_writer;
GRANT INSERT (stream_id, stream_version, event_id, event_type, data, metadata)
	ON events TO tandem_writer;
