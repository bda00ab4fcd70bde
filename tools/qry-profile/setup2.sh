#!/bin/bash
# throwaway cluster + 200k-event seed db
set -euo pipefail
DB=${DB:-seed}
ROOT=${ROOT:-/work/w-i14-qry}
export PATH=/usr/lib/postgresql/15/bin:$PATH
eval "$($ROOT/scripts/pg start /tmp/qh/pg)"
env | grep -E '^PG' > /tmp/qh/env
psql -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
URL="postgresql://$PGUSER@127.0.0.1:$PGPORT/$DB"
echo "$URL" > /tmp/qh/url.$DB
MIGRATIONS_DIR=$ROOT/migrations DATABASE_URL=$URL LOG_LEVEL=warn $ROOT/bin/migrate
psql -q -d $DB -v tag=log -v accounts=${ACC:-10000} -v steps=${STEPS:-19} -v mix=traffic -v chunk=100 -f $ROOT/bench/seed.sql >/dev/null
psql -q -d $DB -c "VACUUM ANALYZE" -c "CHECKPOINT"
psql -d $DB -Atc "select count(*) from events"
