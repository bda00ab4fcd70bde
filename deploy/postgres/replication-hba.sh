#!/bin/sh
# replication-hba.sh - run once by the postgres:15 image on its first start
# (mounted into /docker-entrypoint-initdb.d by docker-compose.yml): lets
# the standby of `--profile replica` stream from this server. Its
# "host all all all" line does not cover replication connections, which
# need a line of their own; the same password check (scram-sha-256).
set -eu
echo "host replication all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
