\set a random(0, 1999)
BEGIN;
INSERT INTO events (stream_id, stream_version, event_id, event_type, data, metadata)
SELECT 'account-' || md5('log:' || :a)::uuid, max(stream_version) + 1, gen_random_uuid(), 'MoneyDeposited',
 jsonb_build_object('amount', 100, 'balance_after', 100 + max(stream_version), 'currency', 'USD'),
 jsonb_build_object('command_id', gen_random_uuid()::text, 'principal', jsonb_build_object('sub', 'bench', 'roles', jsonb_build_array('manager')))
FROM events WHERE stream_id = 'account-' || md5('log:' || :a)::uuid;
NOTIFY tandem_events;
COMMIT;
