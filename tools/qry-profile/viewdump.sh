#!/bin/bash
# viewdump.sh OUT: the views' rows in a stable order
URL=$(cat /tmp/qh/url)
{
psql "$URL" -Atc "select * from view_accounts order by account_id"
psql "$URL" -Atc "select * from view_statement order by account_id, version"
psql "$URL" -Atc "select * from view_daily order by 1,2"
psql "$URL" -Atc "select * from view_audit order by 1,2"
psql "$URL" -Atc "select view, stream_id from parked_streams order by 1,2" 2>/dev/null
psql "$URL" -Atc "select view, applied from projection_checkpoints order by 1"
} > $1
md5sum $1; wc -l < $1
