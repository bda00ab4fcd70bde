/*
 * qry_read.h - the pipeline of every database-backed GET route, and what
 * a view's read code uses to parse parameters and answer.
 *
 * A route is one const struct qry_read_def (its view, its prepared
 * statements, how to parse and run it), given as the es_route's `arg` to
 * the one handler qry_read_route(). The handler runs three steps: parse
 * (on the HTTP thread: bad input is answered at once), wait (only with a
 * read-your-writes token the view has not passed: the request is
 * suspended and parked in qry_state, no thread held), run (on a read
 * worker of qry_readpool.h, which answers and resumes the request). The
 * per-request state is one struct qry_read that travels through those
 * steps and is freed after the answer.
 *
 * Read-your-writes: X-Min-Position (or ?min_position=) takes an append or
 * a read token; X-Wait-Ms (default 2000) an integer in [0, 10000], else
 * 400. A request whose view has not passed the token after the wait is
 * 503 with Retry-After: 1. Routes without a view (the raw log) wait
 * for the log reader (the in-memory view) to pass the token, then check
 * that the snapshot they read in covers it (qry_read_check_covers()).
 */
#ifndef QRY_READ_H
#define QRY_READ_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>

#include "es_buf.h"
#include "es_error.h"
#include "es_http.h"
#include "qry_memory.h"
#include "qry_readpool.h"
#include "qry_state.h"

#define QRY_LIMIT_DEFAULT 100
#define QRY_LIMIT_MAX	  1000

/* What the routes reach through es_request.ctx. */
struct qry_ctx {
	struct qry_state *st; /* borrowed */
	struct qry_memory *mem; /* borrowed */
	struct qry_readpool *pool; /* borrowed */
	struct es_http *_Atomic http; /* for /metrics, once it runs */
};

/*
 * The tail of a route's SELECT that reads the rows and view `view`'s
 * checkpoint (column cp.cp_position) in one statement, one snapshot, so
 * that X-Position is never older than what the rows show: LATERAL-join
 * the rows to it.
 */
#define QRY_READ_FROM_CHECKPOINT(view)                                   \
	" FROM (SELECT 1) one LEFT JOIN (SELECT position AS cp_position" \
	" FROM projection_checkpoints WHERE view = '" view "') cp ON true"

/*
 * A statement prepared on every read worker's connection to `db`; a
 * route runs it with qry_read_prepared().
 */
struct qry_read_stmt {
	enum qry_db db;
	const char *name, *sql;
};

struct qry_read;

/* How one database-backed route parses and runs. */
struct qry_read_def {
	const char *view; /* whose position it answers with, NULL: none */
	int ryw; /* takes X-Min-Position */
	const struct qry_read_stmt *stmts; /* NULL-named end, or NULL */
	size_t size; /* bytes of its parsed parameters, zeroed */
	/* parameters into `p`; 0, or -1 with `err` (answered for it) */
	int (*parse)(struct qry_read *r, void *p, struct es_error *err);
	/* on a read worker: answer the request (never resume it) */
	void (*run)(struct qry_read *r, void *p, struct qry_worker *w);
	void (*release)(void *p); /* what `p` owns; may be NULL */
};

/* One request on its way. Views read req, ctx and def. */
struct qry_read {
	struct qry_job base; /* for the pool */
	struct qry_waiter wait; /* for read-your-writes */
	struct es_request *req;
	struct qry_ctx *ctx;
	const struct qry_read_def *def;
	char *min_token; /* owned copy: outlives the request's memory */
	char *served; /* qry_read_position()'s answer when it made one */
	/* a waiting read's view position and its base as the read began */
	char *early_pos, *early_base;
	long wait_ms;
	char canon[160]; /* the parameters, for the ETag */
	void *params; /* def->size bytes, after the struct */
};

/* The es_route handler of every route whose `arg` is a qry_read_def. */
void qry_read_route(struct es_request *req);

/*
 * The same pipeline for `def`, from another handler (GET /accounts/{id}
 * past the memory view's cap). `suspended`: the caller already holds
 * `req` suspended (a waiter's callback): the pipeline answers and resumes
 * it, and the caller must not.
 */
void qry_read_start(struct es_request *req, const struct qry_read_def *def,
		    int suspended);

/*
 * Prepare the statements of `defs` (a NULL-terminated list) for `which`
 * on a new read worker connection. 0, or -1 with `err`.
 */
int qry_read_prepare(PGconn *db, enum qry_db which,
		     const struct qry_read_def *const *defs,
		     struct es_error *err);

/* ---- parameters ---- */

/* A decimal integer, optional '-', no spaces, no overflow. 0 or -1. */
int qry_parse_ll(const char *s, long long *out);

/*
 * Whether `s` is UTF-8 of 1 to `max` characters, as es_utf8_chars()
 * judges it (control characters allowed).
 */
int qry_utf8_ok(const char *s, size_t max);

/* Whether `s` is "YYYY-MM-DD", a real date. */
int qry_date_ok(const char *s);

/* Whether `s` is three upper-case letters. */
int qry_currency_ok(const char *s);

/*
 * X-Min-Position (or ?min_position=) into *token (borrowed from `req`
 * until it is suspended: copy it to keep it; NULL without) and X-Wait-Ms
 * into *ms. -1 with a 400 for a wait that is not an integer in
 * [0, 10000]; the token is checked by the caller.
 */
int qry_read_parse_wait(struct es_request *req, const char **token, long *ms,
			struct es_error *err);

/* ?limit=: default 100, an integer in [1, 1000], else -1 with a 422. */
int qry_read_limit(struct qry_read *r, long *limit, struct es_error *err);

/*
 * The sub of a caller who reads only its own accounts (a holder that is
 * neither manager nor auditor: SPEC section 11), else NULL (any). An
 * account or owner list not its own is answered 404, as if it did not
 * exist. ownership: points into the request.
 */
const char *qry_read_holder(const struct es_request *req);

/* ---- answering, on the worker ---- */

/*
 * Before a read of the log on `db` whose snapshot is taken after this
 * call: the `done` of es_read_forward_done() into *done (zeroed before;
 * the caller releases it) and 1, when the log database is a standby that
 * had replayed past the log reader's witness (qry_state_log_done()); else
 * 0, and the read lists its running transactions without it.
 */
int qry_read_done(const struct qry_read *r, PGconn *db,
		  struct es_snapshot *done);

/*
 * For a route without a view: whether `position`, the read token of what
 * it read, covers the request's X-Min-Position (if any). 0, or -1 with a
 * 503 (Retry-After: 1) in `err`, never to answer data that does not
 * cover the token.
 */
int qry_read_check_covers(const struct qry_read *r, const char *position,
			  struct es_error *err);

/* X-Position of `pos` (may be NULL: none). */
void qry_read_add_position(struct es_request *req, const char *pos);

/* X-Position of view `view` as qry_state knows it (NULL: none). */
void qry_read_add_view_position(struct es_request *req, struct qry_ctx *ctx,
				const char *view);

/* Whether If-None-Match lists `etag` (weak comparison) or is "*". */
int qry_etag_matches(const char *inm, const char *etag);

/*
 * Run prepared statement `name` on the read database; NULL when it
 * failed, and then the error is answered. ownership: caller frees the
 * result with PQclear().
 */
PGresult *qry_read_prepared(struct qry_read *r, struct qry_worker *w,
			    const char *name, int n, const char *const *params);

/* Answer `err` (or out of memory when unset) with the view's position. */
void qry_read_fail(struct qry_read *r, struct es_error *err);

/* The checkpoint column (0) of `res`, "0:0:" without one. */
const char *qry_read_checkpoint(const PGresult *res);

/*
 * The position a read of `r`'s view at the checkpoint column of `res`
 * reflects: what the view serves, when that holds the checkpoint's
 * events (qry_state_served_token(): past an empty window, a read token
 * of later transactions without events is covered too), as the read
 * began (for a read that waited for a token: what it waited for) or
 * now, else the checkpoint. ownership: valid while `r` and `res` are.
 */
const char *qry_read_position(struct qry_read *r, const PGresult *res);

/* Rows of `res` that hold a view row (column `col` not NULL). */
int qry_read_rows(const PGresult *res, int col);

/*
 * Append the item of row `i` of a page, whose view columns start at
 * `col`, to `out` as JSON, and the cursor that pages on after it into
 * next[QRY_CURSOR_MAX]. 0, or -1 with `err`.
 */
#define QRY_CURSOR_MAX 64
typedef int qry_read_item_fn(const PGresult *res, int i, int col, char *next,
			     struct es_buf *out, struct es_error *err);

/* Append `v` (taken) to `out` as compact JSON; -1 and `err` if it cannot. */
int qry_read_add_json(struct es_buf *out, json_t *v, struct es_error *err);

/*
 * Answer one page of `res` (rows of a query asked for limit + 1, whose
 * view columns start at `col`, checkpoint in column 0): {"items", "next"}
 * with the items of `item` and the cursor after the last when more rows
 * follow. ownership: borrows `res`.
 */
void qry_read_page(struct qry_read *r, const PGresult *res, int col, long limit,
		   qry_read_item_fn *item);

/*
 * Answer 200 with `len` bytes of JSON `text` (taken) read at `position`,
 * with a weak ETag of the path, r->canon and the body; 304 when
 * If-None-Match has it.
 */
void qry_read_answer_text(struct qry_read *r, const char *position, char *text,
			  size_t len);

/*
 * The same for a list whose items are written into `body` after
 * "{\"items\":[" and which ends with `next` (or null); `body` is emptied.
 */
void qry_read_answer_list(struct qry_read *r, const char *position,
			  struct es_buf *body, const char *next);

#endif
