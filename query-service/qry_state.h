/*
 * qry_state.h - what the log reader and the HTTP routes of one
 * query-service process share: each view's position and health,
 * leadership, and the requests waiting for a position.
 *
 * The log reader (qry_tail.c) reports every view's progress here, the
 * in-memory one's too; routes read positions here and park
 * read-your-writes requests here until the view they read has passed
 * their token.
 */
#ifndef QRY_STATE_H
#define QRY_STATE_H

#include <pthread.h>
#include <stdint.h>

#include "es_error.h"
#include "es_token.h"
#include "qry_parked.h"

#define QRY_VIEW_MAX 8
/* The in-memory account view every replica keeps for GET /accounts/{id}. */
#define QRY_MEMORY_VIEW "accounts-memory"

struct qry_view_status {
	char name[32];
	struct es_cursor pos; /* what it reflects; ES_CURSOR_START at first */
	/*
	 * The stored checkpoint whose events pos holds (a table view's, the
	 * text of projection_checkpoints.position), or NULL: a read of the
	 * view's tables at that checkpoint reflects pos too
	 */
	char *base;
	int loaded; /* pos is known (checkpoint read) */
	struct qry_parked parked; /* its parked streams (owned) */
	int stopped; /* a malformed event stopped it */
	char error[200]; /* why, when stopped */
	long long error_position; /* global_position of that event, or -1 */
	long long applied; /* events applied by this process */
	int64_t updated_ms; /* when pos last moved (ms since the epoch) */
	double apply_seconds; /* time spent applying batches */
	long long batches; /* batches applied (qry_state_add_apply()) */
};

struct qry_state {
	pthread_mutex_t lock;
	int leader; /* this process projects the table views */
	long long epoch; /* the fencing epoch while leader */
	struct qry_view_status views[QRY_VIEW_MAX];
	size_t nviews;
	void *waiters; /* owned by qry_state.c */
	/*
	 * pg_current_wal_lsn() of the primary (DATABASE_URL) as the log
	 * reader last read it, "" when unknown; when (qry_state_clock_ms())
	 */
	char primary_lsn[32];
	int64_t primary_lsn_ms;
	/*
	 * Witnesses for log reads on a standby (es_read.h,
	 * ES_SQL_SNAPSHOT_DONE): snapshots of the primary with the insert
	 * LSN read after each; `cur` is the newest a read has seen the
	 * standby replay past, `next` a newer one not yet seen passed
	 */
	struct es_snapshot done_cur, done_next;
	uint64_t cur_lsn, next_lsn;
	int have_cur, have_next;
	int log_standby; /* the log reader found a standby */
};

/* Views named in `names` (NULL-terminated), all at ES_CURSOR_START. */
int qry_state_init(struct qry_state *st, const char *const *names);
void qry_state_release(struct qry_state *st);

/*
 * Record that view `name` has passed `c` and wake the requests waiting on
 * it that `c` satisfies. `c` is copied. A cursor that does not cover the
 * current one is ignored unless `reset` (after a rebuild swapped tables).
 * `base`: the stored checkpoint whose events `c` holds exactly, or NULL
 * (copied). `applied` is the view's count of applied events so far
 * (replaces it; -1 keeps it).
 */
void qry_state_set_pos(struct qry_state *st, const char *name,
		       const struct es_cursor *c, const char *base,
		       long long applied, int reset);

/* The primary's WAL position is `lsn` (pg_lsn text) now, or unknown (NULL). */
void qry_state_set_primary_lsn(struct qry_state *st, const char *lsn);

/*
 * Copy the primary's WAL position into `out` (size `n`) if it was set
 * within the last `max_age_ms`; else "".
 */
void qry_state_primary_lsn(struct qry_state *st, int64_t max_age_ms, char *out,
			   size_t n);

/*
 * A new witness: the primary's snapshot `done` (copied) and the insert
 * LSN read after it was taken. It waits as `next` until a read finds the
 * standby replayed past `lsn` (qry_state_take_done()).
 */
void qry_state_offer_done(struct qry_state *st, const struct es_snapshot *done,
			  uint64_t lsn);

/* Whether the log database is a hot standby, as the log reader found. */
void qry_state_set_log_standby(struct qry_state *st, int standby);
int qry_state_log_standby(struct qry_state *st);

/*
 * For a read of the log on a standby that had replayed up to `replayed`
 * before the read's snapshot: the newest witness at or below it, copied
 * into *done (zeroed before; the caller releases it): 1; else 0. Never an
 * older one than a read before it got, while the standby moves on (a
 * list of running transactions shrinks or stays, read after read: the
 * tokens of one read cover those of the reads before); after a standby
 * restart that replays from further back, none until it is past again.
 */
int qry_state_take_done(struct qry_state *st, uint64_t replayed,
			struct es_snapshot *done);

/* Mark view `name` stopped at `position` with `why`. */
void qry_state_stop_view(struct qry_state *st, const char *name,
			 long long position, const char *why);

/* View `name`'s parked streams are now `p` (copied). */
void qry_state_set_parked(struct qry_state *st, const char *name,
			  const struct qry_parked *p);

/*
 * Whether view `name` has `stream` parked: 1 with its event's position
 * and the error (into why[len]), else 0.
 */
int qry_state_parked(struct qry_state *st, const char *name, const char *stream,
		     long long *position, char *why, size_t len);

/*
 * Copy view `name`'s position as a token into a new string.
 * ownership: caller frees with free(). NULL when unknown.
 */
char *qry_state_pos_token(struct qry_state *st, const char *name);

/*
 * Copy view `name`'s position into `out`: 1; 0 when it is not loaded yet
 * or `name` is unknown (`out` the start of the log); -1 out of memory.
 * ownership: caller frees `out` with es_cursor_release().
 */
int qry_state_pos(struct qry_state *st, const char *name,
		  struct es_cursor *out);

/*
 * For a read of view `name`'s tables at the stored checkpoint `stored`:
 * the token of view `name`'s position when it holds the same events as
 * `stored` (its base, qry_state_set_pos()), else NULL. A leader past an
 * empty window, or a follower past a checkpoint with no event after it,
 * serves a position that covers more read tokens than the checkpoint.
 * ownership: caller frees with free().
 */
char *qry_state_served_token(struct qry_state *st, const char *name,
			     const char *stored);

/*
 * View `name`'s position as a token and its base (qry_state_set_pos()),
 * both NULL when it has none. For qry_state_served_token()'s question
 * asked of the state before a read: a commit may move both meanwhile.
 * ownership: caller frees both with free().
 */
void qry_state_served_pair(struct qry_state *st, const char *name, char **pos,
			   char **base);

/*
 * The position every view has passed (that of the view furthest behind)
 * as a token, for the answers that read no one view (/health, /ready,
 * /metrics, /status). ownership: caller frees with free(). NULL when
 * there are no views.
 */
char *qry_state_min_token(struct qry_state *st);

/*
 * Whether view `name` has passed `token` (an append or a read token):
 * 1 yes, 0 not yet, -1 malformed token (ES_EMALFORMED) or unknown view.
 */
int qry_state_covers(struct qry_state *st, const char *name, const char *token,
		     struct es_error *err);

/*
 * One batch of view `name` took `seconds` to apply (for /metrics:
 * tandem_projection_apply_seconds).
 */
void qry_state_add_apply(struct qry_state *st, const char *name,
			 double seconds);

/* CLOCK_MONOTONIC in milliseconds, the clock of waiter deadlines. */
int64_t qry_state_clock_ms(void);

/*
 * Read-your-writes waits. A request whose view has not yet passed its
 * token is parked here (its HTTP request suspended by the caller) until
 * qry_state_set_pos() covers the token, its deadline passes (qry_state's
 * timer thread), or qry_state_cancel_waiters(). No thread is held per
 * waiter.
 */
enum qry_wait_result {
	QRY_WAIT_COVERED, /* the view passed the token */
	QRY_WAIT_TIMEOUT, /* the deadline passed first */
	QRY_WAIT_CANCELLED /* the service is stopping */
};

struct qry_waiter {
	/* set by the caller before qry_state_park() */
	int64_t deadline_ms; /* on qry_state_clock_ms() */
	/*
	 * Called exactly once, without any qry_state lock held, from the
	 * thread that moved the view (the log reader), the timer thread, or
	 * qry_state_cancel_waiters()'s caller: it must be quick (answer from
	 * memory, or hand the request to a worker). After it returns, or from
	 * within it, `w` may be freed.
	 */
	void (*done)(struct qry_waiter *w, enum qry_wait_result r);
	void *arg; /* for the caller */
	/* private to qry_state.c */
	size_t view;
	int is_cursor;
	struct es_append_token at;
	struct es_cursor cur;
	struct qry_waiter *prev, *next;
};

/*
 * Park `w` until view `name` passes `token` (an append or a read token).
 * Returns 1 when the view has passed it already (`w` is not parked and
 * done() is not called), 0 when parked (done() will be called exactly
 * once), -1 for a malformed token (ES_EMALFORMED), an unknown view
 * (ES_EINTERNAL) or a stopping service (ES_EUNAVAIL).
 * ownership: borrows `w` until done() is called; copies `token`.
 */
int qry_state_park(struct qry_state *st, const char *name, const char *token,
		   struct qry_waiter *w, struct es_error *err);

/* Requests parked right now. */
long qry_state_waiting(struct qry_state *st);

/*
 * Call done(QRY_WAIT_CANCELLED) for every parked request and refuse new
 * ones (for shutdown, once the HTTP server has stopped).
 */
void qry_state_cancel_waiters(struct qry_state *st);

#endif
