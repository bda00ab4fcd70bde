/*
 * bulk.h - writing many view rows in one statement: COPY binary rows
 * (into an es_buf), array literals for unnest() parameters, and the table
 * names of live and shadow (rebuild) tables.
 */
#ifndef VIEW_BULK_H
#define VIEW_BULK_H

#include <libpq-fe.h>
#include <stddef.h>

#include "es_buf.h"
#include "es_error.h"

/*
 * COPY binary format, which spares the server parsing text (times above
 * all): view_bin_begin() writes the header, view_bin_row() starts a row of
 * `nfields` fields, each view_bin_*() adds one field, view_bin_end()
 * writes the trailer. view_bin_jsonb() takes the `n` bytes of a JSON
 * text at `s` (the server parses it). view_bin_text() and view_bin_uuid()
 * take NULL or "" (uuid) as a SQL NULL; view_bin_uuid() takes a
 * lower-case UUID, and
 * view_bin_time() a time in the form view_event_time() accepts (as a
 * timestamptz); -1 (nothing written) when the value is not of that form.
 */
void view_bin_begin(struct es_buf *b);
void view_bin_row(struct es_buf *b, int nfields);
void view_bin_ll(struct es_buf *b, long long v);
void view_bin_text(struct es_buf *b, const char *s);
void view_bin_jsonb(struct es_buf *b, const char *s, size_t n);
int view_bin_uuid(struct es_buf *b, const char *s);
int view_bin_time(struct es_buf *b, const char *s);
void view_bin_end(struct es_buf *b);

/*
 * Array literals ("{1,2,NULL}") for parameters like $1::bigint[]:
 * view_arr_open() empties `b` and starts one, each view_arr_*() adds an
 * element, view_arr_close() ends it. view_arr_str() quotes and escapes
 * any text (NULL is a SQL NULL); view_arr_word() adds text known to need
 * no quoting (UUIDs, times, codes: no space, comma, quote, brace or
 * backslash).
 */
void view_arr_open(struct es_buf *b);
void view_arr_ll(struct es_buf *b, long long v);
void view_arr_str(struct es_buf *b, const char *s);
void view_arr_word(struct es_buf *b, const char *s);
void view_arr_null(struct es_buf *b);
void view_arr_close(struct es_buf *b);

/*
 * "<table><suffix>" into `out`. The suffix is "" (live tables) or a short
 * word of [a-z0-9_] ("_rebuild"); anything else is ES_EINTERNAL.
 */
int view_table_name(char *out, size_t len, const char *table,
		    const char *suffix, struct es_error *err);

/*
 * Create "<table><suffix>" for a rebuild, empty: CREATE TABLE ... (LIKE
 * <table> INCLUDING ALL) WITH (<table>'s storage parameters, such as
 * view_accounts' fillfactor, which LIKE does not copy), after dropping a
 * leftover one of that name. With `defer_indexes` the copy gets no
 * indexes (primary key included) until view_shadow_index(): filling a
 * table first and indexing it afterwards is several times faster than
 * keeping its indexes up to date row by row (for 1,000,000 statement rows
 * here: 4 s instead of 9 s). Only for a table whose flush needs no index:
 * of view_all[], view_statement (COPY appends); view_accounts and
 * view_daily need their keys (ON CONFLICT, UPDATE ... FROM).
 * Runs in the caller's transaction if one is open. ES_EINTERNAL for a bad
 * name, else es_db_error()'s errors.
 */
int view_shadow_create(PGconn *db, const char *table, const char *suffix,
		       int defer_indexes, struct es_error *err);

/*
 * Give the copy made with `defer_indexes` the indexes and primary key of
 * <table>, under the names LIKE would have given them ("<table><suffix>"
 * in place of "<table>" at the start of each name). The server's
 * maintenance_work_mem bounds the memory each index build sorts in.
 */
int view_shadow_index(PGconn *db, const char *table, const char *suffix,
		      struct es_error *err);

/*
 * view_shadow_index() as a plan, for building the indexes side by side
 * once the shadow is committed: one row per index, column 0 the
 * statement that builds it (each independent of the others), column 1
 * NULL or the statement to run after every build, which makes the index
 * the constraint it is on <table> (primary key, unique). NULL with
 * `err` on failure. ownership: caller PQclear()s.
 */
PGresult *view_shadow_index_plan(PGconn *db, const char *table,
				 const char *suffix, struct es_error *err);

/*
 * Send `rows` on `db` in the middle of a COPY ... FROM STDIN, in pieces
 * of a size libpq takes at once: 0, or -1 when a send failed (the COPY's
 * result, or the connection's state, says why).
 */
int view_copy_data(PGconn *db, const struct es_buf *rows);

/*
 * Run `sql`, a COPY ... FROM STDIN, sending `rows` (in the format `sql`
 * names).
 * Errors are those of es_db_error() with a detail "cannot write <table>:
 * <the server's message>".
 * ownership: borrows everything.
 */
int view_copy_run(PGconn *db, const char *table, const char *sql,
		  const struct es_buf *rows, struct es_error *err);

/*
 * view_copy_run(), but a row a unique index of the table has already
 * (SQLSTATE 23505) returns 1 and sets no error: the transaction is
 * aborted, for the caller to roll back to a savepoint of its own.
 */
int view_copy_try(PGconn *db, const char *table, const char *sql,
		  const struct es_buf *rows, struct es_error *err);

/*
 * Run `sql` with `n` text parameters; `*affected` (may be NULL) gets the
 * number of rows it inserted or updated. With `stmt` (a short word, or
 * NULL), `sql` is prepared once per session as "<table>_<stmt>"
 * (es_db_exec_prepared()): for a live table, written at every window of
 * a few events, where parsing a statement cost more than running it.
 * Errors as for view_copy_run().
 */
int view_exec(PGconn *db, const char *table, const char *stmt, const char *sql,
	      int n, const char *const *params, long long *affected,
	      struct es_error *err);

#endif
