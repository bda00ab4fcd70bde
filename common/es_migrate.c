/* es_migrate.c - numbered SQL migrations, each applied once, in name order. */
#include "es_migrate.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "es_db.h"
#include "es_log.h"

#define SQL_TABLE_EXISTS "SELECT to_regclass('schema_migrations') IS NOT NULL"
#define SQL_CREATE_TABLE                                 \
	"CREATE TABLE IF NOT EXISTS schema_migrations (" \
	" name text PRIMARY KEY,"                        \
	" checksum text NOT NULL,"                       \
	" applied_at timestamptz NOT NULL DEFAULT now())"
#define SQL_AT                                    \
	"to_char(applied_at AT TIME ZONE 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define SQL_APPLIED \
	"SELECT name, checksum, " SQL_AT " FROM schema_migrations ORDER BY name"
#define SQL_RECORD                                                       \
	"INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)" \
	" RETURNING " SQL_AT
#define SQL_CHECKSUM "SELECT encode(sha256($1), 'hex')"
#define SQL_TRY_LOCK "SELECT pg_try_advisory_lock(" ES_MIGRATE_LOCK_KEY ")"
#define SQL_LOCK     "SELECT pg_advisory_lock(" ES_MIGRATE_LOCK_KEY ")"
#define SQL_UNLOCK   "SELECT pg_advisory_unlock(" ES_MIGRATE_LOCK_KEY ")"

#define BYTEAOID 17

static void migration_release(struct es_migration *m)
{
	free(m->name);
	free(m->sql);
	free(m->checksum);
	free(m->applied_checksum);
	free(m->applied_at);
	memset(m, 0, sizeof(*m));
}

void es_migration_list_release(struct es_migration_list *list)
{
	for (size_t i = 0; i < list->n; i++)
		migration_release(&list->items[i]);
	free(list->items);
	list->items = NULL;
	list->n = list->alloc = 0;
}

int es_migrate_name_valid(const char *name)
{
	size_t len = strlen(name), i;

	/* NNNN _ at least one [a-z0-9_] .sql */
	if (len < 4 + 1 + 1 + 4 || strcmp(name + len - 4, ".sql") != 0)
		return 0;
	for (i = 0; i < 4; i++)
		if (name[i] < '0' || name[i] > '9')
			return 0;
	if (name[4] != '_')
		return 0;
	for (i = 5; i < len - 4; i++)
		if (!(name[i] >= 'a' && name[i] <= 'z') &&
		    !(name[i] >= '0' && name[i] <= '9') && name[i] != '_')
			return 0;
	return 1;
}

struct es_migration *es_migration_list_get(struct es_migration_list *list,
					   const char *name)
{
	size_t lo = 0, hi = list->n;
	struct es_migration *m;
	char *copy;

	/* binary search for the first entry not below `name` */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(list->items[mid].name, name);

		if (c == 0)
			return &list->items[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (list->n == list->alloc) {
		size_t alloc = list->alloc ? 2 * list->alloc : 16;
		struct es_migration *items =
			realloc(list->items, alloc * sizeof(*items));

		if (!items)
			return NULL;
		list->items = items;
		list->alloc = alloc;
	}
	copy = strdup(name);
	if (!copy)
		return NULL;
	m = &list->items[lo];
	memmove(m + 1, m, (list->n - lo) * sizeof(*m));
	list->n++;
	memset(m, 0, sizeof(*m));
	m->name = copy;
	return m;
}

/* Read all of `path` into a NUL-terminated buffer. */
static char *read_file(const char *path, size_t *len, struct es_error *err)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL, *grown;
	size_t n = 0, alloc = 0, got;

	if (!f) {
		es_error_set(err, ES_EINTERNAL, "cannot open '%s': %s", path,
			     strerror(errno));
		return NULL;
	}
	do {
		if (alloc - n < 4096) {
			alloc = alloc ? 2 * alloc : 16384;
			grown = realloc(buf, alloc + 1);
			if (!grown) {
				es_error_set(err, ES_EINTERNAL,
					     "out of memory reading '%s'",
					     path);
				goto fail;
			}
			buf = grown;
		}
		got = fread(buf + n, 1, alloc - n, f);
		n += got;
	} while (got > 0);
	if (ferror(f)) {
		es_error_set(err, ES_EINTERNAL, "cannot read '%s'", path);
		goto fail;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
fail:
	fclose(f);
	free(buf);
	return NULL;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcmp(s + n - k, suffix) == 0;
}

int es_migrate_scan_dir(struct es_migration_list *list, const char *dir,
			struct es_error *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char *path = NULL;
	int ret = -1;

	if (!d)
		return es_error_set(err, ES_EINTERNAL,
				    "cannot open migrations directory '%s': %s",
				    dir, strerror(errno));
	while ((errno = 0, de = readdir(d))) {
		struct es_migration *m;
		struct stat st;
		size_t plen;

		if (de->d_name[0] == '.' || !ends_with(de->d_name, ".sql"))
			continue;
		if (!es_migrate_name_valid(de->d_name)) {
			es_log(ES_LOG_WARN, "migration_ignored", "{s:s, s:s}",
			       "name", de->d_name, "reason",
			       "name does not match NNNN_lower_case.sql");
			continue;
		}
		plen = strlen(dir) + 1 + strlen(de->d_name) + 1;
		free(path);
		path = malloc(plen);
		if (!path) {
			es_error_set(err, ES_EINTERNAL, "out of memory");
			goto out;
		}
		snprintf(path, plen, "%s/%s", dir, de->d_name);
		if (stat(path, &st) < 0) {
			es_error_set(err, ES_EINTERNAL, "cannot stat '%s': %s",
				     path, strerror(errno));
			goto out;
		}
		if (!S_ISREG(st.st_mode)) {
			es_log(ES_LOG_WARN, "migration_ignored", "{s:s, s:s}",
			       "name", de->d_name, "reason",
			       "not a regular file");
			continue;
		}
		m = es_migration_list_get(list, de->d_name);
		if (!m) {
			es_error_set(err, ES_EINTERNAL, "out of memory");
			goto out;
		}
		free(m->sql);
		m->sql = read_file(path, &m->len, err);
		if (!m->sql)
			goto out;
		if (memchr(m->sql, '\0', m->len)) {
			es_error_set(err, ES_EINTERNAL,
				     "'%s' contains a NUL byte", path);
			goto out;
		}
	}
	if (errno) {
		es_error_set(err, ES_EINTERNAL,
			     "cannot read directory '%s': %s", dir,
			     strerror(errno));
		goto out;
	}
	ret = 0;
out:
	free(path);
	closedir(d);
	return ret;
}

static int set_copy(char **dst, const char *src, struct es_error *err)
{
	char *copy = strdup(src);

	if (!copy)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	free(*dst);
	*dst = copy;
	return 0;
}

int es_migrate_mark_applied(struct es_migration_list *list, const char *name,
			    const char *checksum, const char *applied_at,
			    struct es_error *err)
{
	struct es_migration *m = es_migration_list_get(list, name);

	if (!m)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	if (set_copy(&m->applied_checksum, checksum, err) < 0 ||
	    set_copy(&m->applied_at, applied_at, err) < 0)
		return -1;
	return 0;
}

enum es_migration_state es_migration_state(const struct es_migration *m)
{
	if (!m->applied_at)
		return ES_MIGRATION_PENDING;
	if (!m->sql)
		return ES_MIGRATION_MISSING;
	if (!m->checksum || !m->applied_checksum ||
	    strcmp(m->checksum, m->applied_checksum) != 0)
		return ES_MIGRATION_EDITED;
	return ES_MIGRATION_APPLIED;
}

const char *es_migration_state_name(enum es_migration_state state)
{
	switch (state) {
	case ES_MIGRATION_PENDING:
		return "pending";
	case ES_MIGRATION_APPLIED:
		return "applied";
	case ES_MIGRATION_EDITED:
		return "edited";
	case ES_MIGRATION_MISSING:
		return "missing";
	}
	return "unknown";
}

/* Run a one-row, one-column query; returns the result, or NULL with err. */
static PGresult *query_one(PGconn *db, const char *sql, struct es_error *err)
{
	PGresult *res = PQexec(db, sql);

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
		PQclear(res);
		return NULL;
	}
	if (PQntuples(res) != 1 || PQnfields(res) != 1) {
		PQclear(res);
		es_error_set(err, ES_EINTERNAL, "unexpected answer to '%s'",
			     sql);
		return NULL;
	}
	return res;
}

static int table_exists(PGconn *db, struct es_error *err)
{
	PGresult *res = query_one(db, SQL_TABLE_EXISTS, err);
	int ret;

	if (!res)
		return -1;
	ret = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return ret;
}

int es_migrate_load_applied(PGconn *db, struct es_migration_list *list,
			    struct es_error *err)
{
	PGresult *res = NULL;
	int exists = table_exists(db, err), ret = -1;

	if (exists <= 0)
		return exists;
	res = PQexec(db, SQL_APPLIED);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
		goto out;
	}
	for (int i = 0; i < PQntuples(res); i++)
		if (es_migrate_mark_applied(list, PQgetvalue(res, i, 0),
					    PQgetvalue(res, i, 1),
					    PQgetvalue(res, i, 2), err) < 0)
			goto out;
	ret = 0;
out:
	PQclear(res);
	return ret;
}

int es_migrate_checksums(PGconn *db, struct es_migration_list *list,
			 struct es_error *err)
{
	const Oid types[1] = { BYTEAOID };
	const int formats[1] = { 1 };

	for (size_t i = 0; i < list->n; i++) {
		struct es_migration *m = &list->items[i];
		const char *values[1] = { m->sql };
		int lengths[1] = { (int)m->len };
		PGresult *res;
		int ret;

		if (!m->sql)
			continue;
		if (m->len > 0x7fffffff)
			return es_error_set(err, ES_EINTERNAL,
					    "'%s' is too large", m->name);
		res = PQexecParams(db, SQL_CHECKSUM, 1, types, values, lengths,
				   formats, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK ||
		    PQntuples(res) != 1) {
			es_db_error(db, res, err);
			PQclear(res);
			return -1;
		}
		ret = set_copy(&m->checksum, PQgetvalue(res, 0, 0), err);
		PQclear(res);
		if (ret < 0)
			return -1;
	}
	return 0;
}

int es_migrate_lock(PGconn *db, struct es_error *err)
{
	PGresult *res = query_one(db, SQL_TRY_LOCK, err);
	int got, exists;

	if (!res)
		return -1;
	got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!got) {
		es_log(ES_LOG_INFO, "migrate_lock_wait", "{s:s}", "reason",
		       "another migrate run holds the lock");
		res = query_one(db, SQL_LOCK, err);
		if (!res)
			return -1;
		PQclear(res);
	}
	/* under the lock: no other run creates it meanwhile */
	exists = table_exists(db, err);
	if (exists < 0)
		return -1;
	if (!exists && es_db_exec(db, SQL_CREATE_TABLE, err) < 0)
		return -1;
	return 0;
}

int es_migrate_unlock(PGconn *db, struct es_error *err)
{
	PGresult *res = query_one(db, SQL_UNLOCK, err);

	if (!res)
		return -1;
	PQclear(res);
	return 0;
}

/* 1-based line of the 1-based character `pos` in UTF-8 `sql`. */
static int line_of(const char *sql, long pos)
{
	int line = 1;
	long chars = 0;

	for (const unsigned char *p = (const unsigned char *)sql; *p; p++) {
		if ((*p & 0xc0) == 0x80)
			continue; /* continuation byte */
		if (++chars >= pos)
			break;
		if (*p == '\n')
			line++;
	}
	return line;
}

/* Describe a failed statement of `m` in err, the whole story in the log. */
static int apply_error(PGconn *db, const struct es_migration *m,
		       const PGresult *res, struct es_error *err)
{
	const char *state = NULL, *msg = NULL, *pos = NULL, *ctx = NULL;
	const char *detail = NULL, *hint = NULL;
	int line = 0;

	if (res) {
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
		ctx = PQresultErrorField(res, PG_DIAG_CONTEXT);
		detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
		hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
	}
	if (!msg)
		msg = PQerrorMessage(db);
	if (pos)
		line = line_of(m->sql, strtol(pos, NULL, 10));
	es_log(ES_LOG_ERROR, "migration_failed",
	       "{s:s, s:s, s:s, s:i, s:s, s:s, s:s}", "name", m->name,
	       "sqlstate", state ? state : "", "error", msg, "line", line,
	       "detail", detail ? detail : "", "hint", hint ? hint : "",
	       "context", ctx ? ctx : "");
	if (line)
		return es_error_set(err, ES_EINTERNAL,
				    "cannot apply '%s': line %d: %s", m->name,
				    line, msg);
	return es_error_set(err, ES_EINTERNAL, "cannot apply '%s': %s", m->name,
			    msg);
}

static int ok_status(const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ||
	       st == PGRES_EMPTY_QUERY;
}

int es_migrate_apply(PGconn *db, struct es_migration *m, struct es_error *err)
{
	const char *params[2] = { m->name, m->checksum };
	PGresult *res = NULL;
	int ret = -1;

	if (!m->sql || !m->checksum)
		return es_error_set(err, ES_EINTERNAL,
				    "cannot apply '%s': not read", m->name);
	if (es_db_exec(db, "BEGIN", err) < 0)
		return -1;
	/* simple query protocol: the file may hold many statements */
	res = PQexec(db, m->sql);
	if (!ok_status(res)) {
		apply_error(db, m, res, err);
		goto out_rollback;
	}
	if (PQtransactionStatus(db) != PQTRANS_INTRANS) {
		/* a COMMIT in the file: what came before it stays applied */
		es_error_set(
			err, ES_EINTERNAL,
			"cannot apply '%s': it ended the transaction itself (COMMIT or ROLLBACK in the file); the statements before that were kept",
			m->name);
		goto out_rollback;
	}
	PQclear(res);
	res = PQexecParams(db, SQL_RECORD, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		apply_error(db, m, res, err);
		goto out_rollback;
	}
	if (set_copy(&m->applied_at, PQgetvalue(res, 0, 0), err) < 0 ||
	    set_copy(&m->applied_checksum, m->checksum, err) < 0)
		goto out_rollback;
	PQclear(res);
	/* deferred constraints are checked here */
	res = PQexec(db, "COMMIT");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		apply_error(db, m, res, err);
		goto out_rollback;
	}
	ret = 0;
	goto out;
out_rollback:
	free(m->applied_at);
	free(m->applied_checksum);
	m->applied_at = m->applied_checksum = NULL;
	if (PQtransactionStatus(db) != PQTRANS_IDLE)
		es_db_exec(db, "ROLLBACK", NULL);
out:
	PQclear(res);
	return ret;
}
