#!/bin/bash
# throwaway cluster + 200k-event seed db
set -euo pipefail
ROOT=${ROOT:-/work/w-i14-qry}
export PATH=/usr/lib/postgresql/15/bin:$PATH
eval "$($ROOT/scripts/pg start /tmp/qh/pg)"
env | grep -E '^PG' > /tmp/qh/env
psql -q -d postgres -c "DROP DATABASE IF EXISTS seed" -c "CREATE DATABASE seed"
URL="postgresql://$PGUSER@127.0.0.1:$PGPORT/seed"
echo "$URL" > /tmp/qh/url
MIGRATIONS_DIR=$ROOT/migrations DATABASE_URL=$URL LOG_LEVEL=warn $ROOT/bin/migrate
psql -q -d seed -v tag=log -v accounts=${ACC:-10000} -v steps=${STEPS:-19} -v mix=traffic -v chunk=100 -f $ROOT/bench/seed.sql >/dev/null
psql -q -d seed -c "VACUUM ANALYZE" -c "CHECKPOINT"
psql -d seed -Atc "select count(*) from events"
