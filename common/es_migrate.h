/* es_migrate.h - numbered SQL migrations, each applied once, in name order. */
#ifndef ES_MIGRATE_H
#define ES_MIGRATE_H

#include <libpq-fe.h>
#include <stddef.h>

#include "es_error.h"

/* session-level pg_advisory_lock key held for a whole run ("tandem01") */
#define ES_MIGRATE_LOCK_KEY "8386105358618013745"

/* One migration: a file in the directory, a row in schema_migrations, both. */
struct es_migration {
	char *name; /* owned: "0001_events.sql" */
	char *sql; /* owned: the file's bytes plus a NUL, or NULL if missing */
	size_t len; /* bytes in sql, without the NUL */
	char *checksum; /* owned: SHA-256 hex of the file, or NULL */
	char *applied_checksum; /* owned: as recorded when applied, or NULL */
	char *applied_at; /* owned: when it was applied, or NULL if pending */
};

enum es_migration_state {
	ES_MIGRATION_PENDING, /* in the directory, not applied */
	ES_MIGRATION_APPLIED, /* applied, file unchanged */
	ES_MIGRATION_EDITED, /* applied, file changed since */
	ES_MIGRATION_MISSING /* applied, file gone */
};

/* Migrations sorted by name, names unique. */
struct es_migration_list {
	struct es_migration *items;
	size_t n, alloc;
};

#define ES_MIGRATION_LIST_INIT \
	{                      \
		NULL, 0, 0     \
	}

/* Free every entry and make the list empty again. */
void es_migration_list_release(struct es_migration_list *list);

/* Whether `name` matches ^[0-9]{4}_[a-z0-9_]+\.sql$. */
int es_migrate_name_valid(const char *name);

/*
 * Find `name`, or add an empty entry for it at its place in name order.
 * Returns NULL when out of memory.
 * ownership: borrows `name` (copied); the entry belongs to the list and
 * stays valid until the next call that adds to it.
 */
struct es_migration *es_migration_list_get(struct es_migration_list *list,
					   const char *name);

/*
 * Add every regular file of `dir` whose name is valid, with its contents.
 * A *.sql file with an invalid name is skipped with a warning in the log;
 * other files (README, dot files) are skipped silently.
 * ES_EINTERNAL when the directory or a file cannot be read, or a file holds
 * a NUL byte.
 */
int es_migrate_scan_dir(struct es_migration_list *list, const char *dir,
			struct es_error *err);

/*
 * Record that `name` was applied at `applied_at` with `checksum`.
 * ownership: borrows all (copied).
 */
int es_migrate_mark_applied(struct es_migration_list *list, const char *name,
			    const char *checksum, const char *applied_at,
			    struct es_error *err);

/* Where `m` stands: needs `checksum` filled in for files that exist. */
enum es_migration_state es_migration_state(const struct es_migration *m);

/* "pending", "applied", "edited" or "missing". */
const char *es_migration_state_name(enum es_migration_state state);

/*
 * Fill list->items[i].applied_checksum/applied_at from schema_migrations.
 * No table yet counts as nothing applied.
 */
int es_migrate_load_applied(PGconn *db, struct es_migration_list *list,
			    struct es_error *err);

/* Fill each file's checksum: SHA-256 hex of its bytes, by the server. */
int es_migrate_checksums(PGconn *db, struct es_migration_list *list,
			 struct es_error *err);

/*
 * Take the advisory lock for this database (waits for other runs) and
 * create schema_migrations if it does not exist yet.
 */
int es_migrate_lock(PGconn *db, struct es_error *err);

/* Release the lock; closing the connection does it too. */
int es_migrate_unlock(PGconn *db, struct es_error *err);

/*
 * Run `m`'s file and record it in schema_migrations, in one transaction:
 * on failure nothing of it remains. The detail names the file and gives
 * the server's message and the line it points at.
 * ownership: borrows both; on success fills m->applied_*.
 */
int es_migrate_apply(PGconn *db, struct es_migration *m, struct es_error *err);

#endif
