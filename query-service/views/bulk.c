/*
 * bulk.c - writing many view rows in one statement: COPY binary rows,
 * array literals and table names.
 */
#include "bulk.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "es_db.h"
#include "es_uuid.h"

/* Bytes handed to PQputCopyData() at once. */
#define COPY_CHUNK (256 * 1024)

/*
 * Room for `n` more bytes at the end of `b`, or NULL (b->failed). Every
 * value of a COPY row is a few bytes: one reserve and plain stores cost a
 * fraction of an es_buf_add() per byte group.
 */
static unsigned char *room(struct es_buf *b, size_t n)
{
	unsigned char *p;

	if (!es_buf_reserve(b, n))
		return NULL;
	p = (unsigned char *)b->s + b->len;
	b->len += n;
	b->s[b->len] = '\0';
	return p;
}

static void store_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static void put_u16(struct es_buf *b, uint16_t v)
{
	unsigned char *p = room(b, 2);

	if (p) {
		p[0] = (unsigned char)(v >> 8);
		p[1] = (unsigned char)v;
	}
}

static void put_u32(struct es_buf *b, uint32_t v)
{
	unsigned char *p = room(b, 4);

	if (p)
		store_u32(p, v);
}

/* A field of 8 bytes: its length, then `v` big-endian. */
static void put_field_u64(struct es_buf *b, uint64_t v)
{
	unsigned char *p = room(b, 12);

	if (p) {
		store_u32(p, 8);
		store_u32(p + 4, (uint32_t)(v >> 32));
		store_u32(p + 8, (uint32_t)v);
	}
}

void view_bin_begin(struct es_buf *b)
{
	/* signature, flags, header extension length */
	es_buf_add(b, "PGCOPY\n\377\r\n\0", 11);
	put_u32(b, 0);
	put_u32(b, 0);
}

void view_bin_row(struct es_buf *b, int nfields)
{
	put_u16(b, (uint16_t)nfields);
}

void view_bin_ll(struct es_buf *b, long long v)
{
	put_field_u64(b, (uint64_t)v);
}

void view_bin_text(struct es_buf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	unsigned char *p;

	if (!s) {
		put_u32(b, UINT32_MAX); /* -1: NULL */
		return;
	}
	p = room(b, 4 + n);
	if (p) {
		store_u32(p, (uint32_t)n);
		memcpy(p + 4, s, n);
	}
}

void view_bin_jsonb(struct es_buf *b, const char *s, size_t n)
{
	unsigned char *p = room(b, 5 + n);

	if (p) {
		store_u32(p, (uint32_t)(n + 1));
		p[4] = 1; /* jsonb's binary form: version 1, then the text */
		memcpy(p + 5, s, n);
	}
}

int view_bin_uuid(struct es_buf *b, const char *s)
{
	unsigned char out[16], *p;

	if (!s || !*s) {
		put_u32(b, UINT32_MAX);
		return 0;
	}
	if (es_uuid_bytes(s, out) < 0)
		return -1;
	p = room(b, 20);
	if (p) {
		store_u32(p, 16);
		memcpy(p + 4, out, 16);
	}
	return 0;
}

/* `n` digits at `s` as a number, or -1. */
static long digits_at(const char *s, int n)
{
	long v = 0;
	int i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar. */
static long long days_from_civil(long y, long m, long d)
{
	long era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (long long)era * 146097 + doe - 719468;
}

int view_bin_time(struct es_buf *b, const char *s)
{
	/* PostgreSQL counts microseconds from 2000-01-01 00:00:00 UTC */
	const long long pg_epoch_days = 10957;
	long y, mo, d, h, mi, se, frac = 0, scale = 1000000;
	size_t len = s ? strlen(s) : 0, i;
	long long us;

	if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
	    s[13] != ':' || s[16] != ':' || s[len - 1] != 'Z')
		return -1;
	y = digits_at(s, 4);
	mo = digits_at(s + 5, 2);
	d = digits_at(s + 8, 2);
	h = digits_at(s + 11, 2);
	mi = digits_at(s + 14, 2);
	se = digits_at(s + 17, 2);
	if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 ||
	    mi < 0 || mi > 59 || se < 0 || se > 59)
		return -1;
	if (len > 20) {
		if (s[19] != '.' || len < 22 || len > 27)
			return -1;
		for (i = 20; i < len - 1; i++) {
			if (s[i] < '0' || s[i] > '9')
				return -1;
			frac = frac * 10 + (s[i] - '0');
			scale /= 10;
		}
		frac *= scale;
	}
	us = ((days_from_civil(y, mo, d) - pg_epoch_days) * 86400 + h * 3600 +
	      mi * 60 + se) *
		     1000000LL +
	     frac;
	put_field_u64(b, (uint64_t)us);
	return 0;
}

void view_bin_end(struct es_buf *b)
{
	put_u16(b, UINT16_MAX); /* -1: no more rows */
}

void view_arr_open(struct es_buf *b)
{
	es_buf_reset(b);
	es_buf_add(b, "{", 1);
}

/* A comma before every element but the first. */
static void arr_sep(struct es_buf *b)
{
	if (b->len > 1)
		es_buf_add(b, ",", 1);
}

void view_arr_ll(struct es_buf *b, long long v)
{
	arr_sep(b);
	es_buf_add_int(b, v);
}

void view_arr_str(struct es_buf *b, const char *s)
{
	const char *run;

	if (!s) {
		view_arr_null(b);
		return;
	}
	arr_sep(b);
	es_buf_add(b, "\"", 1);
	for (run = s; *s; s++) {
		if (*s != '"' && *s != '\\')
			continue;
		es_buf_add(b, run, (size_t)(s - run));
		es_buf_add(b, "\\", 1);
		run = s;
	}
	es_buf_add(b, run, (size_t)(s - run));
	es_buf_add(b, "\"", 1);
}

void view_arr_word(struct es_buf *b, const char *s)
{
	arr_sep(b);
	es_buf_adds(b, s);
}

void view_arr_null(struct es_buf *b)
{
	arr_sep(b);
	es_buf_add(b, "NULL", 4);
}

void view_arr_close(struct es_buf *b)
{
	es_buf_add(b, "}", 1);
}

/* Whether `s` is a plain lower-case name of at most `max` bytes. */
static int word(const char *s, size_t max)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return i <= max;
}

int view_table_name(char *out, size_t len, const char *table,
		    const char *suffix, struct es_error *err)
{
	size_t n = suffix ? strlen(suffix) : 0;

	if (!word(table, 40) || (suffix && !word(suffix, 20)) ||
	    strlen(table) + n >= len)
		return es_error_set(err, ES_EINTERNAL,
				    "bad table suffix '%.40s' for %s",
				    suffix ? suffix : "", table);
	memcpy(out, table, strlen(table));
	memcpy(out + strlen(table), suffix ? suffix : "", n + 1);
	return 0;
}

#define SQL_SHADOW_INFO                                             \
	"SELECT coalesce(array_to_string(c.reloptions, ', '), '')," \
	" to_regclass($2) IS NOT NULL FROM pg_class c"              \
	" WHERE c.oid = $1::regclass"

int view_shadow_create(PGconn *db, const char *table, const char *suffix,
		       int defer_indexes, struct es_error *err)
{
	char name[64], sql[512];
	const char *params[2];
	const char *opts;
	PGresult *res;
	int exists;

	if (view_table_name(name, sizeof(name), table, suffix, err) < 0)
		return -1;
	if (!strcmp(name, table))
		return es_error_set(err, ES_EINTERNAL,
				    "a shadow of %s needs a suffix", table);
	params[0] = table;
	params[1] = name;
	res = PQexecParams(db, SQL_SHADOW_INFO, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		es_db_error(db, res, err);
		PQclear(res);
		return -1;
	}
	opts = PQgetvalue(res, 0, 0);
	exists = PQgetvalue(res, 0, 1)[0] == 't';
	snprintf(sql, sizeof(sql),
		 "%s%s%sCREATE TABLE %s (LIKE %s INCLUDING ALL%s)%s%s%s",
		 exists ? "DROP TABLE " : "", exists ? name : "",
		 exists ? "; " : "", name, table,
		 defer_indexes ? " EXCLUDING INDEXES" : "",
		 *opts ? " WITH (" : "", opts, *opts ? ")" : "");
	PQclear(res);
	return es_db_exec(db, sql, err);
}

/*
 * The statements that give the shadow $2 the indexes of table $1, each
 * named as LIKE names them: $2 in place of the leading $1, else the
 * index's name followed by the suffix $3. Column 0 builds an index;
 * column 1, when not NULL, then makes it the constraint it is on $1
 * (ADD CONSTRAINT ... USING INDEX: primary keys and unique constraints
 * that are not deferrable), so that builds can run side by side. Other
 * constraints are built by ALTER TABLE in column 0.
 */
#define SQL_SHADOW_INDEXES                                                    \
	"SELECT CASE WHEN c.oid IS NOT NULL AND NOT (c.contype IN ('p', 'u')" \
	"  AND NOT c.condeferrable) THEN"                                     \
	"  format('ALTER TABLE %I ADD CONSTRAINT %I %s', $2::text, n.name,"   \
	"   pg_get_constraintdef(c.oid))"                                     \
	" ELSE format('CREATE %sINDEX %I ON %I%s',"                           \
	"  CASE WHEN x.indisunique THEN 'UNIQUE ' ELSE '' END, n.name,"       \
	"  $2::text, substring(pg_get_indexdef(x.indexrelid)"                 \
	"   FROM ' USING .*$')) END,"                                         \
	" CASE WHEN c.contype IN ('p', 'u') AND NOT c.condeferrable THEN"     \
	"  format('ALTER TABLE %I ADD CONSTRAINT %I %s USING INDEX %I',"      \
	"   $2::text, n.name, CASE c.contype WHEN 'p' THEN 'PRIMARY KEY'"     \
	"   ELSE 'UNIQUE' END, n.name) END"                                   \
	" FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"            \
	" LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid"             \
	"  AND c.conrelid = x.indrelid"                                       \
	" CROSS JOIN LATERAL (SELECT CASE"                                    \
	"  WHEN left(i.relname, length($1::text)) = $1::text"                 \
	"  THEN $2::text || substr(i.relname, length($1::text) + 1)"          \
	"  ELSE i.relname || $3::text END AS name) n"                         \
	" WHERE x.indrelid = $1::regclass ORDER BY c.oid IS NULL, i.relname"

PGresult *view_shadow_index_plan(PGconn *db, const char *table,
				 const char *suffix, struct es_error *err)
{
	char name[64];
	const char *params[3];
	PGresult *res;

	if (view_table_name(name, sizeof(name), table, suffix, err) < 0)
		return NULL;
	params[0] = table;
	params[1] = name;
	params[2] = suffix;
	res = PQexecParams(db, SQL_SHADOW_INDEXES, 3, NULL, params, NULL, NULL,
			   0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 2) {
		es_db_error(db, res, err);
		PQclear(res);
		return NULL;
	}
	return res;
}

int view_shadow_index(PGconn *db, const char *table, const char *suffix,
		      struct es_error *err)
{
	PGresult *res = view_shadow_index_plan(db, table, suffix, err);
	int i, ret = 0;

	if (!res)
		return -1;
	for (i = 0; i < PQntuples(res) && ret == 0; i++)
		ret = es_db_exec(db, PQgetvalue(res, i, 0), err);
	for (i = 0; i < PQntuples(res) && ret == 0; i++)
		if (!PQgetisnull(res, i, 1))
			ret = es_db_exec(db, PQgetvalue(res, i, 1), err);
	PQclear(res);
	return ret;
}

/*
 * es_db_error(), with the server's message and the table in the detail
 * unless the database is unreachable: the detail ends up in the log and
 * in /status of a stopped view, not in a client's answer.
 */
static int db_fail(PGconn *db, const PGresult *res, const char *table,
		   struct es_error *err)
{
	struct es_error e = ES_ERROR_INIT;
	const char *msg =
		res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

	es_db_error(db, res, &e);
	if (e.code == ES_EUNAVAIL || !msg)
		es_error_set(err, e.code, "cannot write %s: %s", table,
			     e.detail);
	else
		es_error_set(err, e.code, "cannot write %s: %s", table, msg);
	es_error_release(&e);
	return -1;
}

int view_copy_data(PGconn *db, const struct es_buf *rows)
{
	size_t off, n;

	for (off = 0; off < rows->len; off += n) {
		n = rows->len - off < COPY_CHUNK ? rows->len - off : COPY_CHUNK;
		if (PQputCopyData(db, rows->s + off, (int)n) != 1)
			return -1;
	}
	return 0;
}

/* view_copy_try() when `dup_ok`, else view_copy_run() */
static int copy_run(PGconn *db, const char *table, const char *sql,
		    const struct es_buf *rows, int dup_ok, struct es_error *err)
{
	PGresult *res;
	const char *state;
	int sent, ret = 0;

	res = PQexec(db, sql);
	if (PQresultStatus(res) != PGRES_COPY_IN) {
		db_fail(db, res, table, err);
		PQclear(res);
		return -1;
	}
	PQclear(res);
	sent = view_copy_data(db, rows) == 0;
	/* After a failed send the server's answer below says why. */
	if (PQputCopyEnd(db, sent ? NULL : "cannot send the rows") != 1)
		sent = 0;
	/* The COPY's result, then NULL. */
	while ((res = PQgetResult(db))) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK && !ret) {
			state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
			if (dup_ok && sent && state &&
			    strcmp(state, "23505") == 0)
				ret = 1;
			else
				ret = db_fail(db, res, table, err);
		}
		PQclear(res);
	}
	if (!sent && !ret)
		ret = db_fail(db, NULL, table, err);
	return ret;
}

int view_copy_run(PGconn *db, const char *table, const char *sql,
		  const struct es_buf *rows, struct es_error *err)
{
	return copy_run(db, table, sql, rows, 0, err);
}

int view_copy_try(PGconn *db, const char *table, const char *sql,
		  const struct es_buf *rows, struct es_error *err)
{
	return copy_run(db, table, sql, rows, 1, err);
}

int view_exec(PGconn *db, const char *table, const char *stmt, const char *sql,
	      int n, const char *const *params, long long *affected,
	      struct es_error *err)
{
	char name[96];
	PGresult *res;

	if (stmt) {
		snprintf(name, sizeof(name), "%s_%s", table, stmt);
		res = es_db_exec_prepared(db, name, sql, n, params, NULL, NULL,
					  0);
	} else {
		res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
	}
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		db_fail(db, res, table, err);
		PQclear(res);
		return -1;
	}
	if (affected)
		*affected = strtoll(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return 0;
}
