#!/bin/bash
set -euo pipefail
ROOT=${ROOT:-/work/w-i14-qry}
. /tmp/qh/env; export PGHOST PGPORT PGUSER
export PATH=/usr/lib/postgresql/15/bin:$PATH
psql -q -d postgres -c "DROP DATABASE IF EXISTS proj0" -c "CREATE DATABASE proj0"
URL="postgresql://$PGUSER@127.0.0.1:$PGPORT/proj0"
MIGRATIONS_DIR=$ROOT/migrations DATABASE_URL=$URL LOG_LEVEL=warn $ROOT/bin/migrate
psql -q -d proj0 -v tag=log -v accounts=2000 -v steps=49 -v mix=traffic -v chunk=100 -f $ROOT/bench/seed.sql >/dev/null
psql -q -d proj0 -c "VACUUM ANALYZE" -c "CHECKPOINT"
psql -d proj0 -Atc "select count(*) from events"
