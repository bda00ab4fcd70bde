#!/bin/sh
# standby.sh - entrypoint of the postgres-standby service (docker-compose.yml,
# `--profile replica`), in the postgres:15 image: on a data volume without
# a finished base backup, copy the primary (pg_basebackup -R -X stream:
# consistent, and writes standby.signal and primary_conninfo), then run it
# as a hot standby streaming from the primary. Asynchronous: the primary
# does not wait for it (see README, "Docker compose").
#
# PRIMARY_HOST, PRIMARY_PORT, POSTGRES_USER and PGPASSWORD (the primary's
# password) come from the environment.
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data}
done_file=$PGDATA/tandem-standby.done

if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA"
	chown postgres:postgres "$PGDATA"
	chmod 700 "$PGDATA"
	exec gosu postgres sh "$0" "$@"
fi

if [ ! -f "$done_file" ]; then
	# nothing yet, or a copy cut short: start over (a failure exits, and
	# compose's restart policy tries again)
	find "$PGDATA" -mindepth 1 -delete
	pg_basebackup -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$POSTGRES_USER" \
		-D "$PGDATA" -R -X stream -c fast
	chmod 700 "$PGDATA"
	: >"$done_file"
fi
exec postgres -c hot_standby=on -c max_locks_per_transaction=256 "$@"
