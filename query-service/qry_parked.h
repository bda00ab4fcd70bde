/*
 * qry_parked.h - parked streams (SPEC section 3, guarantee 6): an event
 * a view cannot apply parks its stream for that view, from that event's
 * version on; later events of the stream wait with it, every other
 * stream and view goes on.
 *
 * A struct qry_parked is one view's set, as the projector (qry_tail.c)
 * keeps it; the table views' sets live in parked_streams, written with
 * their checkpoints. `query-service parked list` and `parked retry VIEW
 * STREAM` are the operator's side.
 */
#ifndef QRY_PARKED_H
#define QRY_PARKED_H

#include <libpq-fe.h>
#include <stddef.h>

#include "es_error.h"
#include "es_store.h"

struct qry_parked_stream {
	char *stream;
	long long version; /* the event that could not be applied */
	long long position; /* its global_position */
	char *error;
	long long since; /* seconds since the Unix epoch */
};

struct qry_parked {
	struct qry_parked_stream *v;
	size_t n, alloc;
};

#define QRY_PARKED_INIT \
	{               \
		0       \
	}

/* The entry of `stream`, or NULL. ownership: borrowed from `p`. */
const struct qry_parked_stream *qry_parked_get(const struct qry_parked *p,
					       const char *stream);

/* Whether `ev` waits: its stream is parked at its version or before. */
int qry_parked_holds(const struct qry_parked *p, const struct es_event *ev);

/*
 * Park the stream of `ev`, which cannot be applied for `why`, now.
 * ES_EINTERNAL when out of memory. ownership: copies everything.
 */
int qry_parked_add(struct qry_parked *p, const struct es_event *ev,
		   const char *why, struct es_error *err);

/*
 * The 503 for a read of account `id`, whose stream a view parked at
 * `position` for `why`: never its older state passed off as current.
 * Returns -1.
 */
int qry_parked_account_error(struct es_error *err, const char *id,
			     long long position, const char *why);

/* Keep the first `n` entries. */
void qry_parked_truncate(struct qry_parked *p, size_t n);

/* A copy of `src` into `dst` (released first). */
int qry_parked_copy(struct qry_parked *dst, const struct qry_parked *src,
		    struct es_error *err);

void qry_parked_release(struct qry_parked *p);

/*
 * Replace `out` with the rows of view `view` in parked_streams on `db`.
 * On failure `out` is as it was.
 */
int qry_parked_load(PGconn *db, const char *view, struct qry_parked *out,
		    struct es_error *err);

/*
 * Insert the entries of `p` from index `from` on as view `view`'s, in
 * the caller's open transaction (the one moving its checkpoint).
 */
int qry_parked_store(PGconn *db, const char *view, const struct qry_parked *p,
		     size_t from, struct es_error *err);

/*
 * projection_leader.parked_gen: moves with every retry, which the
 * projector checks to reload its parked streams.
 */
int qry_parked_gen(PGconn *db, long long *gen, struct es_error *err);

/*
 * `query-service parked list`: one JSON object per parked stream on
 * stdout, {view, stream, version, position, error, since}.
 */
int qry_parked_list(const char *read_url, struct es_error *err);

/*
 * `query-service parked retry VIEW STREAM`, after a fix is deployed: in
 * one read-database transaction that holds the projector off (the
 * projection_leader row), fold the stream's events the view's
 * checkpoint has passed from the parked version on into the view, and
 * delete the parked row; the projector takes the stream's later events.
 * If an event still cannot be applied, the row is updated to it and its
 * error instead and *still is 1 (else 0). ES_ENOTFOUND for an unknown
 * view or a stream that is not parked.
 */
int qry_parked_retry(const char *write_url, const char *read_url,
		     const char *view, const char *stream, int *still,
		     struct es_error *err);

#endif
