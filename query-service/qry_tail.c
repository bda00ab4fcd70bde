/*
 * qry_tail.c - the one log reader of a query-service process, and the
 * projector: one thread that feeds every view.
 *
 * The in-memory account view (qry_memory.h) is fed always. Its state is
 * loaded from view_accounts and its checkpoint through the read session;
 * then each batch read from the log is folded into it and published with
 * the position it reaches.
 *
 * Follower: reads the log forward from the in-memory view's cursor (woken
 * by LISTEN tandem_events or every poll_ms), tries
 * pg_try_advisory_lock() on a dedicated read-database session every
 * leader_retry_ms and meanwhile follows the checkpoint rows of the table
 * views (LISTEN tandem_checkpoint plus a 200 ms poll) into qry_state.
 *
 * Leader: bumps projection_leader.epoch, loads the checkpoints, then reads
 * the log forward (es_read_forward) from a cursor every healthy view
 * (the in-memory one too) covers, folds each event into each view that
 * has not seen it, and
 * writes the views' changes and checkpoints in one read-database
 * transaction that first locks projection_leader and checks the epoch
 * (fencing) and moves each checkpoint only from the position it was read
 * at (compare-and-set: a rebuild swap makes it fail). Wakes on LISTEN
 * tandem_events (write database) or every poll_ms.
 *
 * That transaction runs on a second thread, the flusher: it takes the
 * views' batches and commits them while the reader goes on reading,
 * folding into fresh batches and publishing the in-memory view, so an
 * append becomes visible in memory without waiting for a table view's
 * flush. Its NOTIFY tandem_checkpoint, the followers' hint, goes after
 * its COMMIT in a statement of its own, never inside it: PostgreSQL
 * holds one cluster-wide lock from a NOTIFY transaction's commit until
 * that commit is flushed (or a synchronous standby answers), and every
 * other NOTIFY waits for it, the command service's tandem_events hint
 * that wakes this reader among them. One transaction is in flight at a
 * time; the next one starts from where it left the checkpoints.
 *
 * A view whose cursor is ahead of the read cursor (after a rebuild of that
 * view alone) collects its changes until a read's cursor covers its own,
 * and only then writes them and moves: a checkpoint always names exactly
 * what its tables reflect.
 *
 * Parked streams (qry_parked.h): an event a view cannot apply parks its
 * stream for that view, and the view skips the stream from that version
 * on while it folds every other one. The table views write their parked
 * streams in the transaction that moves their checkpoint past them; the
 * in-memory view starts from the accounts view's. A retry bumps
 * projection_leader.parked_gen: the leader's fence sees it (the batch is
 * read again with the parked streams reloaded), a follower's poll too,
 * and the in-memory view loads again.
 */
#include "qry_tail.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "es_array.h"
#include "es_buf.h"
#include "es_db.h"
#include "es_event.h"
#include "es_log.h"
#include "es_read.h"
#include "qry_checkpoint.h"
#include "qry_memory.h"
#include "views/payload.h"
#include "views/view.h"

/* pg_try_advisory_lock key of the projector ("tandemP1") */
#define LOCK_KEY "8386105358618021937"

#define FOLLOW_POLL_MS	200
#define BACKOFF_MIN_MS	250
#define BACKOFF_MAX_MS	2000
#define LISTEN_RETRY_MS 2000
/* how often the primary's WAL position is read for /status */
#define PRIMARY_LSN_MS	   1000
#define CONNECT_TIMEOUT_MS 10000

#define SQL_TRY_LOCK		"SELECT pg_try_advisory_lock(" LOCK_KEY ")"
#define SQL_GENERIC_PLANS	"SET plan_cache_mode = force_generic_plan"
#define SQL_LOCAL_GENERIC_PLANS "SET LOCAL plan_cache_mode = force_generic_plan"
#define SQL_CLAIM                                                      \
	"UPDATE projection_leader SET epoch = epoch + 1, holder = $1," \
	" since = now() WHERE id = 1 RETURNING epoch"
#define SQL_FENCE                                         \
	"SELECT epoch, parked_gen FROM projection_leader" \
	" WHERE id = 1 FOR UPDATE"
#define SQL_ADVANCE                                                         \
	"UPDATE projection_checkpoints c SET position = u.new, epoch = $2," \
	" applied = coalesce(c.applied, 0) + u.n, updated_at = now()"       \
	" FROM json_to_recordset($1::json)"                                 \
	" AS u(view text, old text, new text, n bigint)"                    \
	" WHERE c.view = u.view AND c.position = u.old"

enum conn { C_LOCK, C_READ, C_WRITE, C_LISTEN, C__COUNT };

static const char *const conn_app[C__COUNT] = {
	[C_LOCK] = "tandem-projector-lock",
	[C_READ] = "tandem-projector",
	[C_WRITE] = "tandem-projector-tail",
	[C_LISTEN] = "tandem-projector-listen",
};

struct tview {
	const struct view_ops *ops;
	int known; /* a checkpoint row was read */
	int healthy; /* not stopped */
	char *text; /* the stored position, compare-and-set key */
	struct es_cursor pos; /* what the view's tables reflect */
	void *batch; /* changes since pos not yet written, or NULL */
	long pending; /* events folded into batch */
	int ahead; /* ahead of the read cursor: collecting, not moving */
	struct qry_parked parked; /* its parked streams */
	size_t stored; /* parked[0, stored) are in parked_streams */
	long long applied; /* by this process */
	/*
	 * A follower's: what it serves is the reader's cursor, which holds
	 * the same events as pos (follow_link()); gap_seen: pos is behind
	 * the reader by events (the leader has yet to commit them)
	 */
	int linked;
	int gap_seen;
};

/* The in-memory account view as the reader feeds it. */
struct tmem {
	struct qry_memory *m; /* borrowed */
	int loaded; /* pos is known */
	struct es_cursor pos; /* what it has published */
	long pending; /* events folded into its stage */
	struct qry_parked parked; /* its parked streams */
	size_t published; /* parked[0, published) go with what it published */
	long long applied; /* by this process */
};

/*
 * One table-views transaction, handed to the flusher thread: the changes
 * it writes are taken from the views, so the reader goes on folding the
 * next reads into fresh batches while it commits.
 */
struct flush {
	int adv[QRY_VIEW_MAX]; /* views whose changes and checkpoints move */
	void *batch[QRY_VIEW_MAX]; /* their changes (taken), or NULL */
	long pending[QRY_VIEW_MAX]; /* events folded into batch[] */
	struct qry_parked parked[QRY_VIEW_MAX]; /* copies, when they grew */
	size_t stored[QRY_VIEW_MAX]; /* parked[i] from here on are new */
	struct es_cursor next; /* what the views reflect once committed */
	char *next_text;
	long events; /* read into it, for the log */
	double t_apply; /* when its first read was folded */
	int result; /* enum commit_result, or -1 with err */
	struct es_error err;
};

enum flush_state { FLUSH_IDLE, FLUSH_BUSY, FLUSH_DONE };

struct qry_tail {
	char *write_url, *read_url, *listen_url;
	long batch, poll_ms, leader_retry_ms;
	struct qry_state *st;
	pthread_t thread;
	int wake[2];
	atomic_int stopping;
	pthread_mutex_t lock; /* guards cancel[], done */
	pthread_cond_t cond;
	int done;
	/*
	 * The flusher thread commits `fl` on the read session while the
	 * reader goes on; guarded by lock. While FLUSH_BUSY the reader does
	 * not touch the read session nor the views' stored positions.
	 */
	pthread_t flusher;
	int flusher_started;
	pthread_cond_t fl_cond;
	enum flush_state fl_state;
	int fl_quit;
	int fl_pipe[2]; /* a byte when fl is done */
	struct flush fl;
	long fold_events; /* read since the last hand-over */
	double fold_since; /* when the first of them was folded, or 0 */
	PGcancel *cancel[C__COUNT];
	struct es_db_link link[C__COUNT]; /* the sessions, and how to reopen */
	PGconn *db[C__COUNT]; /* link[].db while open, else NULL */
	int leader;
	long long epoch;
	char holder[300];
	struct tview views[QRY_VIEW_MAX];
	size_t nviews;
	struct tmem mem;
	struct es_cursor reader; /* where the next read starts */
	int have_reader;
	int64_t next_lock_ms;
	int64_t next_listen_ms;
	int64_t next_lsn_ms; /* when to read the primary's WAL position */
	/* C_WRITE's server: -1 not known, 0 a primary, 1 a standby */
	int log_standby;
	struct es_snapshot witness; /* the witness of the last read */
	int64_t next_follow_ms; /* when to read the checkpoints again */
	int64_t next_link_ms; /* follow_link()'s next statement, not before */
	int link_failing; /* its last statement failed (logged once) */
	int64_t next_check_ms; /* an idle leader's lead_check(), not before */
	int checkpoint_hint; /* a NOTIFY on the checkpoint channel came */
	long long parked_gen; /* projection_leader.parked_gen last read */
	int have_gen;
	long backoff_ms;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int stopping(struct qry_tail *t)
{
	return atomic_load(&t->stopping);
}

/* ---- connections ---- */

static void conn_close(struct qry_tail *t, enum conn which)
{
	pthread_mutex_lock(&t->lock);
	if (t->cancel[which])
		PQfreeCancel(t->cancel[which]);
	t->cancel[which] = NULL;
	t->db[which] = NULL;
	pthread_mutex_unlock(&t->lock);
	es_db_link_close(&t->link[which]);
}

/*
 * Connect through the session's es_db_link: the handshake polls the
 * socket and the wake pipe, so a stop cuts it short; keepalives make a
 * dead peer show up as a broken session. The link does not wait after a
 * failure: the thread keeps one backoff (backoff()) for all its sessions.
 */
static int conn_open(struct qry_tail *t, enum conn which, struct es_error *err)
{
	PGconn *db;

	if (t->db[which])
		return 0;
	db = es_db_link_get(&t->link[which], err);
	if (!db)
		return -1;
	/*
	 * The log reader's session runs nothing but the window reads,
	 * prepared once per session (es_read.h): planned once too, not at
	 * every window for the few events it holds. A new session (after a
	 * lost one) prepares them again.
	 */
	if (which == C_WRITE && es_db_exec(db, SQL_GENERIC_PLANS, err) < 0) {
		es_db_link_close(&t->link[which]);
		return -1;
	}
	if (which == C_WRITE)
		t->log_standby = -1; /* a new session: maybe another server */
	pthread_mutex_lock(&t->lock);
	t->db[which] = db;
	t->cancel[which] = PQgetCancel(db);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

/* Drop every notification already received on `which`. */
static void drain_notifies(struct qry_tail *t, enum conn which)
{
	PGnotify *n;

	if (!t->db[which])
		return;
	while ((n = PQnotifies(t->db[which])))
		PQfreemem(n);
}

/*
 * Whether the session is still there, without blocking: reads what the
 * server sent (a termination notice, EOF) and drops notifications.
 */
static int conn_alive(struct qry_tail *t, enum conn which)
{
	PGconn *db = t->db[which];

	if (es_db_broken(db))
		return 0;
	if (!PQconsumeInput(db) || es_db_broken(db))
		return 0;
	return 1;
}

#define ON(c) (1u << (c))
/* in wait_for()'s mask: the flusher finished its transaction */
#define WOKE_FLUSHER (1u << C__COUNT)

/*
 * Sleep up to `ms`, waking early on a notification on one of the
 * sessions in `listen` (a mask of ON(conn), 0: none), on anything from
 * the lock session, on the flusher finishing (WOKE_FLUSHER), or on
 * qry_tail_stop(). Returns the mask of the sessions a notification came
 * on, with WOKE_FLUSHER.
 */
static unsigned int wait_for(struct qry_tail *t, long ms, unsigned int listen)
{
	struct pollfd p[C__COUNT + 2];
	enum conn which[C__COUNT + 2];
	unsigned int notified = 0;
	int n = 0, i, c;

	if (ms < 0)
		ms = 0;
	p[n].fd = t->wake[0];
	p[n].events = POLLIN;
	which[n++] = C__COUNT;
	p[n].fd = t->fl_pipe[0];
	p[n].events = POLLIN;
	which[n++] = C__COUNT;
	for (c = 0; c < C__COUNT; c++) {
		PGnotify *nt;

		if (!(listen & ON(c)) || !t->db[c] ||
		    PQstatus(t->db[c]) != CONNECTION_OK)
			continue;
		/* notifications read along with an earlier result */
		while ((nt = PQnotifies(t->db[c]))) {
			PQfreemem(nt);
			notified |= ON(c);
		}
		p[n].fd = PQsocket(t->db[c]);
		p[n].events = POLLIN;
		which[n++] = (enum conn)c;
	}
	if (notified)
		return notified;
	if (t->leader && t->db[C_LOCK] &&
	    PQstatus(t->db[C_LOCK]) == CONNECTION_OK) {
		p[n].fd = PQsocket(t->db[C_LOCK]);
		p[n].events = POLLIN;
		which[n++] = C_LOCK;
	}
	for (i = 0; i < n; i++)
		p[i].revents = 0;
	if (poll(p, (nfds_t)n, (int)ms) <= 0)
		return 0;
	if (p[1].revents) {
		char buf[64];

		/* the flusher is done: the caller collects */
		while (read(t->fl_pipe[0], buf, sizeof(buf)) > 0)
			;
		notified |= WOKE_FLUSHER;
	}
	for (i = 2; i < n; i++) {
		PGnotify *nt;

		if (!p[i].revents)
			continue;
		if (!PQconsumeInput(t->db[which[i]]))
			continue; /* broken: noticed by the caller */
		while ((nt = PQnotifies(t->db[which[i]]))) {
			PQfreemem(nt);
			if (listen & ON(which[i]))
				notified |= ON(which[i]);
		}
	}
	return notified;
}

static void backoff(struct qry_tail *t)
{
	if (t->backoff_ms < BACKOFF_MIN_MS)
		t->backoff_ms = BACKOFF_MIN_MS;
	wait_for(t, t->backoff_ms, 0);
	t->backoff_ms *= 2;
	if (t->backoff_ms > BACKOFF_MAX_MS)
		t->backoff_ms = BACKOFF_MAX_MS;
}

/* Run a statement that returns nothing of interest; es_db_error() else. */
static int exec_ok(PGconn *db, const char *sql, struct es_error *err)
{
	return es_db_exec(db, sql, err);
}

/* Append `s` (UTF-8) to `b` as a JSON string. */
static void add_jstr(struct es_buf *b, const char *s)
{
	es_buf_add_jstr(b, s, strlen(s));
}

/* Read and drop the results of a query sent with PQsendQuery(). */
static void drain_results(PGconn *db)
{
	PGresult *res;

	while ((res = PQgetResult(db)))
		PQclear(res);
}

/* Leave a failed or abandoned transaction on the read session. */
static void rollback(struct qry_tail *t)
{
	PGconn *db = t->db[C_READ];
	PGresult *res;

	if (!db || PQstatus(db) != CONNECTION_OK)
		return;
	if (PQtransactionStatus(db) == PQTRANS_IDLE)
		return;
	res = PQexec(db, "ROLLBACK");
	PQclear(res);
}

/* ---- views ---- */

static void view_drop_batch(struct tview *v)
{
	if (v->batch)
		v->ops->batch_free(v->batch);
	v->batch = NULL;
	v->pending = 0;
	v->ahead = 0;
	/* streams parked in a read that is not written are parked again */
	qry_parked_truncate(&v->parked, v->stored);
}

static void mem_drop(struct qry_tail *t);
static void flush_abandon(struct qry_tail *t);
static int flush_busy(struct qry_tail *t);

static void views_drop_batches(struct qry_tail *t)
{
	size_t i;

	for (i = 0; i < t->nviews; i++)
		view_drop_batch(&t->views[i]);
	mem_drop(t);
	es_cursor_release(&t->reader);
	t->have_reader = 0;
	t->fold_events = 0;
	t->fold_since = 0;
}

static void views_release(struct qry_tail *t)
{
	size_t i;

	for (i = 0; i < t->nviews; i++) {
		view_drop_batch(&t->views[i]);
		qry_parked_release(&t->views[i].parked);
		t->views[i].stored = 0;
		free(t->views[i].text);
		t->views[i].text = NULL;
		es_cursor_release(&t->views[i].pos);
		t->views[i].known = 0;
	}
	es_cursor_release(&t->reader);
	t->have_reader = 0;
	es_cursor_release(&t->mem.pos);
	qry_parked_release(&t->mem.parked);
}

static void set_leader(struct qry_tail *t, int leader, long long epoch)
{
	t->leader = leader;
	t->epoch = epoch;
	pthread_mutex_lock(&t->st->lock);
	t->st->leader = leader;
	t->st->epoch = leader ? epoch : 0;
	pthread_mutex_unlock(&t->st->lock);
}

/* Whether checkpoint row `c` is what view `v` already has (text, health). */
static int checkpoint_same(const struct tview *v,
			   const struct qry_checkpoint *c)
{
	return v->known && v->text && strcmp(v->text, c->text) == 0 &&
	       v->healthy == !c->stopped_error;
}

/*
 * A follower's new checkpoint of healthy view `v` that covers the one
 * before: serve it. What was served holds the events of the checkpoint
 * before (the reader's cursor past it with no event between, or a
 * former leader's empty window), so the union of the two holds exactly
 * the new one's events, and covers what was served: a token answered
 * before is still covered. A mid-window checkpoint that does not cover
 * what was served leaves no union: what was served stays (its events are
 * in the checkpoint too) until a later checkpoint, and reads meanwhile
 * report the checkpoint they read at.
 */
static void serve_checkpoint(struct qry_tail *t, struct tview *v)
{
	struct es_cursor served, u;
	int r = qry_state_pos(t->st, v->ops->name, &served);

	es_cursor_init(&u);
	if (r > 0 && !served.mid && !v->pos.mid &&
	    !es_cursor_covers(&v->pos, &served) &&
	    es_snapshot_union(&u.lo, &v->pos.lo, &served.lo, NULL) == 0)
		qry_state_set_pos(t->st, v->ops->name, &u, v->text, 0, 0);
	else
		qry_state_set_pos(t->st, v->ops->name, &v->pos, v->text, 0,
				  r <= 0);
	es_cursor_release(&u);
	es_cursor_release(&served);
}

/*
 * Take the checkpoint rows into the views and qry_state. `follow`: a
 * position that does not cover the one we know is a rebuild's swap
 * (reset); as leader every loaded position is authoritative.
 */
static void views_take(struct qry_tail *t, struct qry_checkpoint *cps, size_t n,
		       int follow)
{
	size_t i, k;

	for (i = 0; i < t->nviews; i++) {
		struct tview *v = &t->views[i];
		struct qry_checkpoint *c = NULL;
		int reset = 1, was_healthy = v->healthy || !v->known;

		for (k = 0; k < n; k++)
			if (strcmp(cps[k].view, v->ops->name) == 0)
				c = &cps[k];
		if (!c)
			continue;
		/*
		 * Unchanged: what is served stays (it holds this checkpoint's
		 * events, or it is the checkpoint), for a leader reloading
		 * after another view's rebuild or a retry too
		 */
		if (checkpoint_same(v, c))
			continue;
		if (follow && v->known)
			reset = !es_cursor_covers(&c->pos, &v->pos);
		free(v->text);
		v->text = c->text;
		c->text = NULL;
		es_cursor_release(&v->pos);
		v->pos = c->pos;
		memset(&c->pos, 0, sizeof(c->pos));
		v->known = 1;
		v->linked = 0;
		v->gap_seen = 0;
		v->healthy = !c->stopped_error;
		if (!v->healthy) {
			if (was_healthy || !follow) {
				qry_state_stop_view(t->st, v->ops->name,
						    c->stopped_position,
						    c->stopped_error);
				es_log(ES_LOG_ERROR, "view_stopped",
				       "{s:s, s:I, s:s}", "view", v->ops->name,
				       "position",
				       (json_int_t)c->stopped_position, "error",
				       c->stopped_error);
			}
			continue;
		}
		/* a stopped view that a rebuild brought back: reset */
		if (!was_healthy)
			reset = 1;
		if (follow && !reset)
			serve_checkpoint(t, v);
		else
			qry_state_set_pos(t->st, v->ops->name, &v->pos, v->text,
					  0, 1);
	}
}

/*
 * Read the parked streams of the table views (the leader's to skip, a
 * follower's to show), and parked_gen: when a retry moved it, the
 * in-memory view loads again (the retried stream may have changed).
 */
static int load_parked(struct qry_tail *t, struct es_error *err)
{
	long long gen;
	size_t i;

	if (qry_parked_gen(t->db[C_READ], &gen, err) < 0)
		return -1;
	for (i = 0; i < t->nviews; i++) {
		struct tview *v = &t->views[i];

		if (qry_parked_load(t->db[C_READ], v->ops->name, &v->parked,
				    err) < 0)
			return -1;
		v->stored = v->parked.n;
		qry_state_set_parked(t->st, v->ops->name, &v->parked);
	}
	if (t->have_gen && gen != t->parked_gen && t->mem.loaded) {
		es_log(ES_LOG_INFO, "parked_streams_changed", NULL);
		t->mem.loaded = 0;
	}
	t->parked_gen = gen;
	t->have_gen = 1;
	return 0;
}

/* Read the checkpoints (inserting missing rows first when leader). */
static int load_checkpoints(struct qry_tail *t, int follow,
			    struct es_error *err)
{
	struct qry_checkpoint cps[QRY_CHECKPOINT_SLOTS];
	size_t n = 0, i;

	if (!follow && qry_checkpoint_ensure(t->db[C_READ], err) < 0)
		return -1;
	if (qry_checkpoint_load(t->db[C_READ], 0, cps, QRY_CHECKPOINT_SLOTS, &n,
				err) < 0)
		return -1;
	views_take(t, cps, n, follow);
	for (i = 0; i < n; i++)
		qry_checkpoint_release(&cps[i]);
	return load_parked(t, err);
}

/*
 * The positions of the healthy views this process feeds now: the table
 * views' when leading, and the in-memory view's.
 */
static size_t fed_positions(struct qry_tail *t, const struct es_cursor **pos)
{
	size_t i, n = 0;

	for (i = 0; t->leader && i < t->nviews; i++)
		if (t->views[i].known && t->views[i].healthy)
			pos[n++] = &t->views[i].pos;
	if (t->mem.loaded)
		pos[n++] = &t->mem.pos;
	return n;
}

/*
 * Choose where to read from: a cursor every healthy view covers, as far
 * on as possible. Candidates are the views' cursors and the snapshots
 * their mid-window cursors started from; the beginning of the log is
 * always covered (then each view skips what it has seen, only slower).
 */
static int pick_reader(struct qry_tail *t, struct es_error *err)
{
	const struct es_cursor *pos[QRY_VIEW_MAX + 1];
	struct es_cursor cand[2 * (QRY_VIEW_MAX + 1)];
	size_t np = fed_positions(t, pos), nc = 0, i, j, best = SIZE_MAX;
	int ret = -1;

	memset(cand, 0, sizeof(cand));
	for (i = 0; i < np; i++) {
		if (es_cursor_copy(&cand[nc++], pos[i], err) < 0)
			goto out;
		if (pos[i]->mid) {
			if (es_snapshot_copy(&cand[nc].lo, &pos[i]->lo, err) <
			    0)
				goto out;
			nc++;
		}
	}
	if (nc == 0) {
		ret = 0; /* nothing to feed */
		goto out;
	}
	for (i = 0; i < nc; i++) {
		int ok = 1;

		for (j = 0; j < np && ok; j++)
			if (!es_cursor_covers(pos[j], &cand[i]))
				ok = 0;
		if (!ok)
			continue;
		if (best == SIZE_MAX || es_cursor_covers(&cand[i], &cand[best]))
			best = i;
	}
	es_cursor_release(&t->reader);
	/* served cursors linked to the old reader stay where they are */
	for (i = 0; i < t->nviews; i++)
		t->views[i].linked = 0;
	if (best == SIZE_MAX) {
		es_log(ES_LOG_WARN, "projector_restart_from_start", "{s:s}",
		       "reason",
		       "the views' checkpoints have no common cursor");
		es_cursor_init(&t->reader);
	} else {
		t->reader = cand[best];
		memset(&cand[best], 0, sizeof(cand[best]));
	}
	t->have_reader = 1;
	ret = 0;
out:
	for (i = 0; i < nc + 1 && i < ARRAY_SIZE(cand); i++)
		es_cursor_release(&cand[i]);
	return ret;
}

typedef int apply_fn(void *batch, const struct es_event *ev,
		     struct es_error *err);

/*
 * Fold the events of `evs` that `pos` does not cover with apply(batch,
 * ev), counting them in *pending, but none of a stream `parked` holds.
 * An event the view `name` cannot apply (ES_EINVALID) parks its stream
 * there (guarantee 6): the others go on. 0; -1 with `err` for what is not
 * the event's fault (retry).
 */
static int fold_view(const char *name, const struct es_events *evs,
		     const struct es_cursor *pos, apply_fn *apply, void *batch,
		     long *pending, struct qry_parked *parked,
		     struct es_error *err)
{
	size_t k;

	for (k = 0; k < evs->n; k++) {
		const struct es_event *ev = &evs->v[k];
		struct es_append_token at = { ev->xid, ev->position };
		struct es_error e = ES_ERROR_INIT;

		if (es_cursor_covers_append(pos, &at) ||
		    qry_parked_holds(parked, ev))
			continue;
		if (apply(batch, ev, &e) < 0) {
			if (e.code != ES_EINVALID) {
				es_error_set(err, e.code, "%s", e.detail);
				es_error_release(&e);
				return -1;
			}
			es_log(ES_LOG_ERROR, "stream_parked",
			       "{s:s, s:s, s:I, s:I, s:s}", "view", name,
			       "stream", ev->stream_id, "position",
			       (json_int_t)ev->position, "version",
			       (json_int_t)ev->version, "error", e.detail);
			if (qry_parked_add(parked, ev, e.detail, err) < 0) {
				es_error_release(&e);
				return -1;
			}
			es_error_release(&e);
			continue;
		}
		(*pending)++;
	}
	return 0;
}

/* ---- the in-memory view ---- */

static int mem_apply(void *m, const struct es_event *ev, struct es_error *err)
{
	return qry_memory_apply(m, ev, err);
}

static void mem_drop(struct qry_tail *t)
{
	qry_memory_discard(t->mem.m);
	t->mem.pending = 0;
	qry_parked_truncate(&t->mem.parked, t->mem.published);
}

/*
 * Load the in-memory view through the read session (outside any
 * transaction). The reader is picked again: it may now need to start
 * further back.
 */
static int mem_load(struct qry_tail *t, struct es_error *err)
{
	struct es_cursor pos;

	/*
	 * It starts from the accounts view's rows: with its parked streams
	 * (loaded after the rows, so that none is missed: an entry holds
	 * only the versions from its own on).
	 */
	if (conn_open(t, C_READ, err) < 0 ||
	    qry_memory_load(t->mem.m, t->db[C_READ], &pos, err) < 0 ||
	    qry_parked_load(t->db[C_READ], "accounts", &t->mem.parked, err) <
		    0) {
		es_log(ES_LOG_WARN, "memory_load_failed", "{s:s}", "error",
		       err->detail);
		return -1;
	}
	es_cursor_release(&t->mem.pos);
	t->mem.pos = pos;
	t->mem.loaded = 1;
	t->mem.pending = 0;
	t->mem.published = t->mem.parked.n;
	qry_state_set_parked(t->st, QRY_MEMORY_VIEW, &t->mem.parked);
	qry_state_set_pos(t->st, QRY_MEMORY_VIEW, &t->mem.pos, NULL, 0, 1);
	views_drop_batches(t);
	return 0;
}

/* Fold the events the in-memory view has not seen into its stage. */
static int mem_fold(struct qry_tail *t, const struct es_events *evs,
		    struct es_error *err)
{
	struct tmem *mv = &t->mem;

	if (!mv->loaded)
		return 0;
	return fold_view(QRY_MEMORY_VIEW, evs, &mv->pos, mem_apply, mv->m,
			 &mv->pending, &mv->parked, err);
}

/*
 * After a read to `next`: once `next` covers what it has published, it
 * publishes its stage and parked streams at `next` (until then, ahead of
 * the read, it collects).
 */
static int mem_advance(struct qry_tail *t, const struct es_cursor *next,
		       double seconds, struct es_error *err)
{
	struct tmem *mv = &t->mem;
	struct es_cursor c;

	if (!mv->loaded)
		return 0;
	if (!es_cursor_covers(next, &mv->pos))
		return 0;
	if (es_cursor_copy(&c, next, err) < 0)
		return -1;
	if (qry_memory_publish(mv->m, next, err) < 0) {
		es_cursor_release(&c);
		return -1;
	}
	es_cursor_release(&mv->pos);
	mv->pos = c;
	if (mv->published != mv->parked.n) {
		qry_state_set_parked(t->st, QRY_MEMORY_VIEW, &mv->parked);
		mv->published = mv->parked.n;
	}
	mv->applied += mv->pending;
	qry_state_set_pos(t->st, QRY_MEMORY_VIEW, next, NULL, mv->applied, 0);
	if (mv->pending > 0)
		qry_state_add_apply(t->st, QRY_MEMORY_VIEW, seconds);
	mv->pending = 0;
	return 0;
}

/* ---- leadership ---- */

static void step_down(struct qry_tail *t, const char *why)
{
	flush_abandon(t);
	if (t->leader)
		es_log(ES_LOG_WARN, "projector_step_down", "{s:s, s:I}",
		       "reason", why, "epoch", (json_int_t)t->epoch);
	rollback(t);
	set_leader(t, 0, 0);
	views_drop_batches(t);
	/* closing the session releases the advisory lock */
	conn_close(t, C_LOCK);
	/* reopened with LISTEN tandem_checkpoint by follow() */
	conn_close(t, C_READ);
	conn_close(t, C_LISTEN);
	conn_close(t, C_WRITE);
	t->next_lock_ms = now_ms() + t->leader_retry_ms;
}

/*
 * As follower: try the advisory lock; if won, claim the next epoch and
 * load the checkpoints. 1 when now leader, 0 not, -1 on errors.
 */
static int try_lead(struct qry_tail *t, struct es_error *err)
{
	const char *params[1] = { t->holder };
	PGresult *res = NULL;
	long long epoch;
	int ret = -1;

	if (conn_open(t, C_LOCK, err) < 0)
		return -1;
	res = PQexec(t->db[C_LOCK], SQL_TRY_LOCK);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		es_db_error(t->db[C_LOCK], res, err);
		conn_close(t, C_LOCK);
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		ret = 0;
		goto out;
	}
	PQclear(res);
	res = PQexecParams(t->db[C_LOCK], SQL_CLAIM, 1, NULL, params, NULL,
			   NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			es_error_set(err, ES_EINTERNAL,
				     "projection_leader has no row");
		else
			es_db_error(t->db[C_LOCK], res, err);
		conn_close(t, C_LOCK);
		goto out;
	}
	epoch = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	set_leader(t, 1, epoch);
	if (load_checkpoints(t, 0, err) < 0) {
		step_down(t, "cannot load checkpoints");
		goto out;
	}
	/* our own NOTIFYs would pile up on the read session */
	if (exec_ok(t->db[C_READ], "UNLISTEN *", err) < 0) {
		step_down(t, "read database unavailable");
		goto out;
	}
	drain_notifies(t, C_READ);
	/* read again from where every view, the table ones too, has been */
	views_drop_batches(t);
	es_log(ES_LOG_INFO, "projector_leader", "{s:I, s:s}", "epoch",
	       (json_int_t)epoch, "holder", t->holder);
	ret = 1;
out:
	PQclear(res);
	return ret;
}

/* ---- leading ---- */

/* Fold the events into every healthy view that has not seen them. */
static int fold(struct qry_tail *t, const struct es_events *evs,
		struct es_error *err)
{
	size_t i;

	for (i = 0; i < t->nviews; i++) {
		struct tview *v = &t->views[i];

		if (!v->known || !v->healthy)
			continue;
		if (!v->batch) {
			v->batch = v->ops->batch_new();
			if (!v->batch)
				return es_error_set(err, ES_EINTERNAL,
						    "out of memory");
		}
		/* t->reader: where this read began */
		if (v->ops->batch_resume)
			v->ops->batch_resume(v->batch,
					     t->reader.mid ? t->reader.xid : 0);
		if (fold_view(v->ops->name, evs, &v->pos, v->ops->apply,
			      v->batch, &v->pending, &v->parked, err) < 0)
			return -1;
	}
	return 0;
}

enum commit_result { COMMIT_OK, COMMIT_FENCED, COMMIT_MOVED };

/*
 * One transaction for `f`: fence, move the checkpoints of the views in
 * f->adv (compare-and-set), write the views' changes and the streams
 * they parked; once it is committed, hint the followers (NOTIFY
 * tandem_checkpoint, alone: see the top of this file). COMMIT_FENCED:
 * projection_leader has another epoch; COMMIT_MOVED: a checkpoint is
 * not where we read it. -1 with `err` on database errors. Runs on the
 * flusher thread.
 */
static int commit_batch(struct qry_tail *t, struct flush *f,
			struct es_error *err)
{
	PGconn *db = t->db[C_READ];
	char epoch[24];
	const char *params[2];
	struct es_buf rows = ES_BUF_INIT;
	PGresult *res = NULL;
	int ret = -1, nadv = 0;
	size_t i;

	snprintf(epoch, sizeof(epoch), "%lld", t->epoch);
	/*
	 * Its statements are prepared once per session (the views' writes,
	 * the checkpoints'), and planned once too: a window of a few events
	 * cost the server more to plan them than to run them.
	 */
	res = PQexec(db, "BEGIN; " SQL_LOCAL_GENERIC_PLANS "; " SQL_FENCE);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			es_error_set(err, ES_EINTERNAL,
				     "projection_leader has no row");
		else
			es_db_error(db, res, err);
		goto out;
	}
	if (strtoll(PQgetvalue(res, 0, 0), NULL, 10) != t->epoch) {
		es_log(ES_LOG_WARN, "projector_fenced", "{s:I, s:s}", "epoch",
		       (json_int_t)t->epoch, "current", PQgetvalue(res, 0, 0));
		ret = COMMIT_FENCED;
		goto out;
	}
	/* a retry changed the parked streams: read them and the log again */
	if (strtoll(PQgetvalue(res, 0, 1), NULL, 10) != t->parked_gen) {
		ret = COMMIT_MOVED;
		goto out;
	}
	PQclear(res);
	res = NULL;

	/*
	 * [{view, old, new, n}] written out, not built with jansson: a
	 * third of the flusher's own instructions at a window of a few
	 * events
	 */
	for (i = 0; i < t->nviews; i++) {
		if (!f->adv[i])
			continue;
		es_buf_adds(&rows, nadv ? ",{\"view\":" : "[{\"view\":");
		add_jstr(&rows, t->views[i].ops->name);
		es_buf_adds(&rows, ",\"old\":");
		add_jstr(&rows, t->views[i].text);
		es_buf_adds(&rows, ",\"new\":");
		add_jstr(&rows, f->next_text);
		es_buf_adds(&rows, ",\"n\":");
		es_buf_add_int(&rows, f->pending[i]);
		es_buf_adds(&rows, "}");
		nadv++;
	}
	if (nadv > 0) {
		es_buf_adds(&rows, "]");
		if (es_buf_check(&rows, err) < 0)
			goto out;
		params[0] = rows.s;
		params[1] = epoch;
		/* once per session, as the window reads */
		res = es_db_exec_prepared(db, "qry_advance", SQL_ADVANCE, 2,
					  params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			es_db_error(db, res, err);
			goto out;
		}
		if (atoi(PQcmdTuples(res)) != nadv) {
			ret = COMMIT_MOVED;
			goto out;
		}
		PQclear(res);
		res = NULL;
	}
	for (i = 0; i < t->nviews; i++) {
		if (!f->adv[i])
			continue;
		if (f->pending[i] > 0 &&
		    t->views[i].ops->flush(f->batch[i], db, "", err) < 0)
			goto out;
		/* streams parked in these reads, with the checkpoint past them
		 */
		if (qry_parked_store(db, t->views[i].ops->name, &f->parked[i],
				     f->stored[i], err) < 0)
			goto out;
	}
	/*
	 * The NOTIFY goes in the same round trip, as a statement of its own
	 * after the COMMIT (the server commits a transaction block at its
	 * COMMIT, and runs what follows in a transaction of its own): a
	 * NOTIFY alone writes no WAL and waits for no flush, so it holds the
	 * cluster's NOTIFY lock only for as long as it takes. Lost (a broken
	 * session, a crash just after the commit), the followers still poll.
	 */
	if (!PQsendQuery(db, "COMMIT; NOTIFY " ES_CHANNEL_CHECKPOINT)) {
		es_db_error(db, NULL, err);
		goto out;
	}
	res = PQgetResult(db);
	if (PQresultStatus(res) != PGRES_COMMAND_OK ||
	    strcmp(PQcmdStatus(res), "COMMIT") != 0) {
		if (PQresultStatus(res) == PGRES_COMMAND_OK)
			es_error_set(err, ES_EINTERNAL, "transaction aborted");
		else
			es_db_error(db, res, err);
		drain_results(db);
		goto out;
	}
	ret = COMMIT_OK;
	PQclear(res);
	res = PQgetResult(db);
	if (res && PQresultStatus(res) != PGRES_COMMAND_OK)
		es_log(ES_LOG_DEBUG, "projector_hint_failed", "{s:s}", "error",
		       PQerrorMessage(db));
	drain_results(db);
out:
	if (ret != COMMIT_OK)
		rollback(t);
	PQclear(res);
	es_buf_release(&rows);
	return ret;
}

/* ---- the flusher thread ---- */

static void *flusher_main(void *arg)
{
	struct qry_tail *t = arg;
	char c = 1;
	int r;

	pthread_mutex_lock(&t->lock);
	for (;;) {
		while (t->fl_state != FLUSH_BUSY && !t->fl_quit)
			pthread_cond_wait(&t->fl_cond, &t->lock);
		if (t->fl_state != FLUSH_BUSY)
			break;
		pthread_mutex_unlock(&t->lock);
		r = commit_batch(t, &t->fl, &t->fl.err);
		pthread_mutex_lock(&t->lock);
		t->fl.result = r;
		t->fl_state = FLUSH_DONE;
		pthread_cond_broadcast(&t->fl_cond);
		if (write(t->fl_pipe[1], &c, 1) < 0) {
			/* full: the reader has a byte to wake on already */
		}
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* Free what `f` holds and make it empty. */
static void flush_clear(struct qry_tail *t, struct flush *f)
{
	size_t i;

	for (i = 0; i < t->nviews; i++) {
		if (f->batch[i])
			t->views[i].ops->batch_free(f->batch[i]);
		qry_parked_release(&f->parked[i]);
	}
	es_cursor_release(&f->next);
	free(f->next_text);
	es_error_release(&f->err);
	memset(f, 0, sizeof(*f));
	es_cursor_init(&f->next);
	f->err = (struct es_error)ES_ERROR_INIT;
}

/* Wait until no transaction is in flight; the state then (not BUSY). */
static enum flush_state flush_wait(struct qry_tail *t)
{
	enum flush_state s;

	pthread_mutex_lock(&t->lock);
	while (t->fl_state == FLUSH_BUSY)
		pthread_cond_wait(&t->fl_cond, &t->lock);
	s = t->fl_state;
	pthread_mutex_unlock(&t->lock);
	return s;
}

/* Whether the flusher has finished a transaction not yet collected. */
static int flush_done(struct qry_tail *t)
{
	int done;

	pthread_mutex_lock(&t->lock);
	done = t->fl_state == FLUSH_DONE;
	pthread_mutex_unlock(&t->lock);
	return done;
}

static int flush_busy(struct qry_tail *t)
{
	int busy;

	pthread_mutex_lock(&t->lock);
	busy = t->fl_state == FLUSH_BUSY;
	pthread_mutex_unlock(&t->lock);
	return busy;
}

/*
 * Wait out a transaction in flight and forget it (its outcome is read
 * back with the checkpoints by whoever leads next): before the reader
 * uses the read session itself or gives up leading.
 */
static void flush_abandon(struct qry_tail *t)
{
	if (flush_wait(t) == FLUSH_IDLE)
		return;
	flush_clear(t, &t->fl);
	pthread_mutex_lock(&t->lock);
	t->fl_state = FLUSH_IDLE;
	pthread_mutex_unlock(&t->lock);
}

/*
 * The views in f->adv reflect f->next: `stored`, the checkpoints say so
 * too (after a commit); else an empty window (only what is served
 * moves).
 */
static int views_advance(struct qry_tail *t, const struct flush *f, int stored,
			 struct es_error *err)
{
	size_t i;

	for (i = 0; i < t->nviews; i++) {
		struct tview *v = &t->views[i];

		if (!f->adv[i])
			continue;
		v->applied += f->pending[i];
		if (stored && f->pending[i] > 0)
			qry_state_add_apply(t->st, v->ops->name,
					    now_s() - f->t_apply);
		if (stored) {
			struct es_cursor c;
			char *text = strdup(f->next_text);

			if (!text)
				return es_error_set(err, ES_EINTERNAL,
						    "out of memory");
			if (es_cursor_copy(&c, &f->next, err) < 0) {
				free(text);
				return -1;
			}
			free(v->text);
			v->text = text;
			es_cursor_release(&v->pos);
			v->pos = c;
			if (f->parked[i].n != f->stored[i]) {
				v->stored = f->parked[i].n;
				qry_state_set_parked(t->st, v->ops->name,
						     &f->parked[i]);
			}
		}
		qry_state_set_pos(t->st, v->ops->name, &f->next, v->text,
				  v->applied, 0);
	}
	return 0;
}

enum { PROJECT_MOVED = 1, PROJECT_FENCED };

/*
 * Take the outcome of the transaction the flusher finished. 0; or
 * PROJECT_MOVED when a checkpoint was not where we read it (reloaded:
 * read again), PROJECT_FENCED when another process leads (stepped
 * down); -1 with `err`.
 */
static int flush_collect(struct qry_tail *t, struct es_error *err)
{
	struct flush *f = &t->fl;
	int ret = -1;

	if (f->result < 0) {
		es_error_set(err,
			     f->err.code != ES_OK ? f->err.code : ES_EINTERNAL,
			     "%s", f->err.detail);
		goto out;
	}
	if (f->result == COMMIT_FENCED) {
		ret = PROJECT_FENCED;
		goto out;
	}
	if (f->result == COMMIT_MOVED) {
		es_log(ES_LOG_INFO, "projector_checkpoint_moved", NULL);
		views_drop_batches(t);
		ret = load_checkpoints(t, 0, err) < 0 ? -1 : PROJECT_MOVED;
		goto out;
	}
	t->next_check_ms = now_ms() + FOLLOW_POLL_MS;
	es_log(ES_LOG_DEBUG, "projector_batch", "{s:I}", "events",
	       (json_int_t)f->events);
	ret = views_advance(t, f, 1, err);
out:
	flush_clear(t, f);
	pthread_mutex_lock(&t->lock);
	t->fl_state = FLUSH_IDLE;
	pthread_mutex_unlock(&t->lock);
	if (ret == PROJECT_FENCED)
		step_down(t, "fenced: another process leads");
	return ret;
}

/*
 * With no transaction in flight: what the table views folded up to the
 * reader's cursor. Hand it to the flusher when anything changed: events
 * read (folded or not) or streams parked. An empty window only moves
 * what is served, never the checkpoints: committing it would take
 * transaction ids, which the next read's snapshot shows as news, so an
 * idle leader would commit once a second forever. A follower finds out
 * itself that nothing happened after a checkpoint (follow_link()).
 */
static int flush_start(struct qry_tail *t, struct es_error *err)
{
	struct flush *f = &t->fl;
	int any_adv = 0, must = 0;
	size_t i;

	flush_clear(t, f);
	f->next_text = es_cursor_format(&t->reader);
	if (!f->next_text || es_cursor_copy(&f->next, &t->reader, err) < 0) {
		flush_clear(t, f);
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	}
	for (i = 0; i < t->nviews; i++) {
		struct tview *v = &t->views[i];

		if (!v->known || !v->healthy)
			continue;
		/* a view ahead of the read collects until it is covered */
		if (!es_cursor_covers(&f->next, &v->pos)) {
			if (!v->ahead)
				es_log(ES_LOG_INFO, "projector_view_ahead",
				       "{s:s, s:s}", "view", v->ops->name,
				       "position", v->text);
			v->ahead = 1;
			continue;
		}
		v->ahead = 0;
		f->adv[i] = 1;
		any_adv = 1;
		if (v->pending > 0 || v->parked.n != v->stored)
			must = 1;
	}
	if (t->fold_events > 0 && any_adv)
		must = 1;
	if (!must) {
		int r = views_advance(t, f, 0, err);

		flush_clear(t, f);
		return r;
	}
	if (conn_open(t, C_READ, err) < 0) {
		flush_clear(t, f);
		return -1;
	}
	for (i = 0; i < t->nviews; i++) {
		struct tview *v = &t->views[i];

		if (!f->adv[i])
			continue;
		/* what the flusher stores; the reader may park more meanwhile
		 */
		if (v->parked.n != v->stored) {
			if (qry_parked_copy(&f->parked[i], &v->parked, err) <
			    0) {
				flush_clear(t, f);
				return -1;
			}
			f->stored[i] = v->stored;
		}
		f->batch[i] = v->batch;
		f->pending[i] = v->pending;
		v->batch = NULL;
		v->pending = 0;
	}
	f->events = t->fold_events;
	f->t_apply = t->fold_since;
	t->fold_events = 0;
	t->fold_since = 0;
	pthread_mutex_lock(&t->lock);
	t->fl_state = FLUSH_BUSY;
	pthread_cond_broadcast(&t->fl_cond);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

/*
 * As leader, after folding a read: collect the transaction in flight
 * if it is done, and start the next one. While one is in flight the
 * reader reads on (the in-memory view never waits for a table view's
 * flush) until it holds a full batch of unwritten events; then it waits.
 * Returns as flush_collect().
 */
static int project(struct qry_tail *t, struct es_error *err)
{
	enum flush_state s;
	int r;

	pthread_mutex_lock(&t->lock);
	s = t->fl_state;
	pthread_mutex_unlock(&t->lock);
	if (s == FLUSH_BUSY) {
		if (t->fold_events < t->batch)
			return 0;
		s = flush_wait(t);
	}
	if (s == FLUSH_DONE) {
		r = flush_collect(t, err);
		if (r != 0)
			return r;
	}
	return flush_start(t, err);
}

/*
 * On a log read from a hot standby, the primary's snapshot that the
 * read's snapshot is sure to postdate, or NULL (es_read_forward_done()):
 * the standby had replayed, before the read's statement, the primary's
 * WAL up to the insert position read after that snapshot was taken
 * (primary_lsn()). So every transaction finished in it had written its
 * end to the WAL there, and the standby had replayed that end: it is
 * finished in the read's snapshot too. The replay position is read on
 * the log session itself, every time (a restarted standby replays from
 * further back; a new session asks again whether its server is a
 * standby); a primary's snapshot lists its running transactions and
 * needs no witness.
 */
static const struct es_snapshot *done_witness(struct qry_tail *t)
{
	uint64_t replayed;
	int r;

	es_snapshot_release(&t->witness);
	if (t->log_standby == 0)
		return NULL;
	r = es_replay_lsn(t->db[C_WRITE], &replayed);
	if (r < 0)
		return NULL;
	if (r != t->log_standby)
		qry_state_set_log_standby(t->st, r);
	t->log_standby = r;
	return r > 0 && qry_state_take_done(t->st, replayed, &t->witness)
		       ? &t->witness
		       : NULL;
}

/*
 * As follower, after a read to `next` that found `n` events: a linked
 * view (its served cursor is the reader's, with its checkpoint's events)
 * moves on with an empty read; a read with events unlinks it until the
 * leader's checkpoint has them too (follow_link()).
 */
static void follow_extend(struct qry_tail *t, size_t n,
			  const struct es_cursor *next)
{
	size_t i;

	for (i = 0; i < t->nviews; i++) {
		struct tview *v = &t->views[i];

		if (!v->linked)
			continue;
		if (n > 0 || next->mid) {
			v->linked = 0;
			continue;
		}
		qry_state_set_pos(t->st, v->ops->name, next, v->text, -1, 0);
	}
}

/*
 * As follower, caught up: a table view whose checkpoint the reader's
 * cursor covers, with no event between the two, holds every event of
 * the reader's cursor, and serves that. The leader commits no empty
 * window (flush_start()), so without this a follower's views would stay
 * at the last checkpoint with events, and a read token taken since (an
 * empty window's X-Position, a GET /events) would wait in vain. One
 * statement for the views at the same checkpoint, at most one every
 * FOLLOW_POLL_MS (under load each of the leader's commits is a new
 * checkpoint, most with events after them); when the reader's
 * cursor is behind what is served, or events lie between (the leader
 * has yet to commit them), it waits: for the next read, or the next
 * checkpoint. Once linked, empty reads move the view on
 * (follow_extend()).
 */
static void follow_link(struct qry_tail *t)
{
	struct es_error err = ES_ERROR_INIT;
	int any[QRY_VIEW_MAX];
	size_t i, k;

	if (t->leader || !t->have_reader || t->reader.mid || !t->db[C_WRITE])
		return;
	for (i = 0; i < t->nviews; i++) {
		struct tview *v = &t->views[i];
		struct es_cursor served;
		int ok;

		any[i] = -1;
		if (!v->known || !v->healthy || v->linked || v->gap_seen ||
		    v->pos.mid || !es_cursor_covers(&t->reader, &v->pos))
			continue;
		if (qry_state_pos(t->st, v->ops->name, &served) <= 0) {
			es_cursor_release(&served);
			continue;
		}
		ok = es_cursor_covers(&t->reader, &served) &&
		     !es_cursor_covers(&served, &t->reader);
		es_cursor_release(&served);
		if (!ok)
			continue;
		for (k = 0; k < i; k++)
			if (any[k] >= 0 &&
			    strcmp(t->views[k].text, v->text) == 0)
				any[i] = any[k];
		if (any[i] < 0 && now_ms() < t->next_link_ms)
			continue;
		if (any[i] < 0)
			t->next_link_ms = now_ms() + FOLLOW_POLL_MS;
		if (any[i] < 0 &&
		    es_read_any_between(t->db[C_WRITE], &v->pos.lo,
					&t->reader.lo, &any[i], &err) < 0) {
			if (!t->link_failing)
				es_log(ES_LOG_WARN, "projector_link_failed",
				       "{s:s}", "error", err.detail);
			t->link_failing = 1;
			es_error_release(&err);
			return;
		}
		t->link_failing = 0;
		if (any[i]) {
			v->gap_seen = 1;
			continue;
		}
		qry_state_set_pos(t->st, v->ops->name, &t->reader, v->text, -1,
				  0);
		v->linked = 1;
	}
}

/*
 * Read one batch from the log and feed it to every view this process
 * feeds: the in-memory one always, the table views when leading. 1 when
 * the log may hold more right now (read again at once), 0 when caught
 * up; -1 with `err`. Fencing and moved checkpoints are handled here.
 */
static int read_once(struct qry_tail *t, struct es_error *err)
{
	struct es_events evs = ES_EVENTS_INIT;
	struct es_cursor next;
	int ret = -1, more, r;
	double t_apply;

	es_cursor_init(&next);
	if (!t->have_reader && pick_reader(t, err) < 0)
		goto out;
	if (!t->have_reader) {
		ret = 0; /* every view stopped */
		goto out;
	}
	if (conn_open(t, C_WRITE, err) < 0)
		goto out;
	if (es_read_forward_done(t->db[C_WRITE], &t->reader, (size_t)t->batch,
				 done_witness(t), &evs, &next, err) < 0 ||
	    view_payload_decode_all(&evs, err) < 0)
		goto out;
	/* a follower reads on through an unfinished window at once */
	more = evs.n >= (size_t)t->batch || (!t->leader && next.mid);
	t_apply = now_s();
	if ((t->leader && fold(t, &evs, err) < 0) || mem_fold(t, &evs, err) < 0)
		goto out;
	if (mem_advance(t, &next, now_s() - t_apply, err) < 0)
		goto out;
	if (!t->leader)
		follow_extend(t, evs.n, &next);
	es_cursor_release(&t->reader);
	t->reader = next;
	es_cursor_init(&next);
	if (t->leader) {
		if (evs.n > 0 && t->fold_events == 0)
			t->fold_since = t_apply;
		t->fold_events += (long)evs.n;
		r = project(t, err);
		if (r < 0)
			goto out;
		if (r > 0) {
			ret = r == PROJECT_MOVED;
			goto out;
		}
	}
	/* nothing left to feed: pick again when there is */
	if (!t->leader && !t->mem.loaded)
		views_drop_batches(t);
	ret = more;
out:
	if (ret < 0)
		views_drop_batches(t);
	es_cursor_release(&next);
	es_events_release(&evs);
	return ret;
}

/*
 * Now and then, the primary's WAL position on the LISTEN session (the
 * primary's: DATABASE_URL), for the replay lag /status shows when the log
 * comes from a standby, and its snapshot with the insert position after
 * it (done_witness()); not from a server in recovery, whose snapshot does
 * not list what runs. Notifications read along with it stay queued for
 * wait_for().
 */
#define SQL_PRIMARY_NOW                                                   \
	"SELECT pg_current_wal_lsn()::text, s::text,"                     \
	" pg_current_wal_insert_lsn()::text FROM pg_current_snapshot() s" \
	" WHERE NOT pg_is_in_recovery()"
static void primary_lsn(struct qry_tail *t)
{
	struct es_snapshot snap = { 0 };
	PGresult *res;
	uint64_t lsn;
	int ok;

	if (now_ms() < t->next_lsn_ms)
		return;
	t->next_lsn_ms = now_ms() + PRIMARY_LSN_MS;
	res = PQexec(t->db[C_LISTEN], SQL_PRIMARY_NOW);
	ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	qry_state_set_primary_lsn(t->st, ok ? PQgetvalue(res, 0, 0) : NULL);
	/* for log reads on a standby (done_witness(), qry_read_done()) */
	if (ok && !PQgetisnull(res, 0, 1) &&
	    (lsn = es_lsn_value(PQgetvalue(res, 0, 2))) > 0 &&
	    es_snapshot_parse(PQgetvalue(res, 0, 1), &snap, NULL) == 0) {
		qry_state_offer_done(t->st, &snap, lsn);
		es_snapshot_release(&snap);
	}
	PQclear(res);
}

/*
 * LISTEN for appends on a session of its own, retried now and then; when
 * it cannot (behind PgBouncer, say), polling alone.
 */
static void listen_events(struct qry_tail *t)
{
	struct es_error err = ES_ERROR_INIT;

	if (t->db[C_LISTEN] && !conn_alive(t, C_LISTEN)) {
		conn_close(t, C_LISTEN);
		qry_state_set_primary_lsn(t->st, NULL);
	}
	if (t->db[C_LISTEN]) {
		primary_lsn(t);
		return;
	}
	if (now_ms() < t->next_listen_ms)
		return;
	t->next_listen_ms = now_ms() + LISTEN_RETRY_MS;
	if (conn_open(t, C_LISTEN, &err) < 0 ||
	    exec_ok(t->db[C_LISTEN], "LISTEN " ES_CHANNEL_EVENTS, &err) < 0) {
		es_log(ES_LOG_DEBUG, "projector_listen_failed", "{s:s}",
		       "error", err.detail);
		conn_close(t, C_LISTEN);
	} else {
		t->next_lsn_ms = 0;
		primary_lsn(t);
	}
	es_error_release(&err);
}

/* Load the in-memory view if it is not; 0 when it is, or -1. */
static int mem_ensure(struct qry_tail *t, struct es_error *err)
{
	/* the read session is the flusher's while it commits */
	if (t->mem.loaded || flush_busy(t))
		return 0;
	return mem_load(t, err);
}

/*
 * As leader, caught up: wait for an append's NOTIFY, or poll_ms for the
 * poll, or a stop. A transaction the flusher finishes meanwhile is
 * collected here (and the next one started with what was read while it
 * ran), without a read of the log of its own: at a steady rate that
 * read found nothing, and cost as much as the one that found the
 * events. Returns as project(): 0 when it is time to read, else what
 * project() said.
 */
static int lead_wait(struct qry_tail *t, struct es_error *err)
{
	int64_t until = now_ms() + t->poll_ms;
	unsigned int woke;
	int r;

	for (;;) {
		woke = wait_for(t, (long)(until - now_ms()), ON(C_LISTEN));
		if (woke != WOKE_FLUSHER || stopping(t) || !t->leader ||
		    !flush_done(t))
			return 0;
		r = project(t, err);
		if (r != 0)
			return r;
		if (now_ms() >= until)
			return 0;
	}
}

#define SQL_LEAD_CHECK \
	"SELECT epoch, parked_gen FROM projection_leader WHERE id = 1"

/*
 * As leader, idle (nothing in flight, nothing committed for
 * FOLLOW_POLL_MS): what the fence of a commit would find. An idle leader
 * commits nothing (flush_start()), so a retry of parked streams
 * (parked_gen), a rebuild's new checkpoint (a stopped view back) or
 * another epoch would otherwise wait for the next append. Plain reads:
 * no lock, no transaction id. 0, or as project(): PROJECT_MOVED (the
 * checkpoints and parked streams read again), PROJECT_FENCED (stepped
 * down); -1 with `err`.
 */
static int lead_check(struct qry_tail *t, struct es_error *err)
{
	struct qry_checkpoint cps[QRY_CHECKPOINT_SLOTS];
	size_t n = 0, i, k;
	PGresult *res;
	int moved = 0;

	/* a finished transaction is lead_wait()'s to collect first */
	if (now_ms() < t->next_check_ms || flush_busy(t) || flush_done(t))
		return 0;
	t->next_check_ms = now_ms() + FOLLOW_POLL_MS;
	if (conn_open(t, C_READ, err) < 0)
		return -1;
	res = PQexec(t->db[C_READ], SQL_LEAD_CHECK);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			es_error_set(err, ES_EINTERNAL,
				     "projection_leader has no row");
		else
			es_db_error(t->db[C_READ], res, err);
		PQclear(res);
		return -1;
	}
	if (strtoll(PQgetvalue(res, 0, 0), NULL, 10) != t->epoch) {
		es_log(ES_LOG_WARN, "projector_fenced", "{s:I, s:s}", "epoch",
		       (json_int_t)t->epoch, "current", PQgetvalue(res, 0, 0));
		PQclear(res);
		step_down(t, "fenced: another process leads");
		return PROJECT_FENCED;
	}
	moved = strtoll(PQgetvalue(res, 0, 1), NULL, 10) != t->parked_gen;
	PQclear(res);
	if (qry_checkpoint_load(t->db[C_READ], 0, cps, QRY_CHECKPOINT_SLOTS, &n,
				err) < 0)
		return -1;
	for (i = 0; i < t->nviews; i++) {
		struct tview *v = &t->views[i];

		for (k = 0; k < n; k++)
			if (strcmp(cps[k].view, v->ops->name) == 0 &&
			    !checkpoint_same(v, &cps[k]))
				moved = 1;
	}
	for (k = 0; k < n; k++)
		qry_checkpoint_release(&cps[k]);
	if (!moved)
		return 0;
	es_log(ES_LOG_INFO, "projector_checkpoint_moved", NULL);
	views_drop_batches(t);
	return load_checkpoints(t, 0, err) < 0 ? -1 : PROJECT_MOVED;
}

static void lead(struct qry_tail *t)
{
	struct es_error err = ES_ERROR_INIT;
	int r;

	if (!conn_alive(t, C_LOCK)) {
		step_down(t, "lock session lost");
		return;
	}
	listen_events(t);
	/* the table views go on without it */
	if (mem_ensure(t, &err) < 0)
		es_error_release(&err);
	r = read_once(t, &err);
	if (r == 0 && t->leader) {
		r = lead_check(t, &err);
		if (r > 0)
			goto out;
		if (r < 0)
			views_drop_batches(t);
	}
	if (r == 0 && t->leader) {
		r = lead_wait(t, &err);
		if (r < 0)
			views_drop_batches(t);
		else
			r = 0;
	}
	if (r < 0) {
		if (stopping(t))
			goto out;
		es_log(ES_LOG_WARN, "projector_error", "{s:s}", "error",
		       err.detail);
		flush_abandon(t);
		if (es_db_broken(t->db[C_WRITE]))
			conn_close(t, C_WRITE);
		if (es_db_broken(t->db[C_READ]))
			conn_close(t, C_READ);
		backoff(t);
		if (!t->leader || stopping(t))
			goto out;
		es_error_release(&err);
		/* start over from what the checkpoints say */
		if (conn_open(t, C_READ, &err) < 0 ||
		    load_checkpoints(t, 0, &err) < 0) {
			if (es_db_broken(t->db[C_READ]))
				conn_close(t, C_READ);
		}
		goto out;
	}
	t->backoff_ms = 0;
out:
	es_error_release(&err);
}

/* ---- following ---- */

static void follow(struct qry_tail *t)
{
	struct es_error err = ES_ERROR_INIT;
	int64_t until;
	int r;

	if (!t->db[C_READ]) {
		if (conn_open(t, C_READ, &err) < 0 ||
		    exec_ok(t->db[C_READ], "LISTEN " ES_CHANNEL_CHECKPOINT,
			    &err) < 0) {
			conn_close(t, C_READ);
			goto fail;
		}
		t->checkpoint_hint = 1;
	}
	if (t->checkpoint_hint || now_ms() >= t->next_follow_ms) {
		if (load_checkpoints(t, 1, &err) < 0)
			goto fail;
		t->checkpoint_hint = 0;
		t->next_follow_ms = now_ms() + FOLLOW_POLL_MS;
	}
	if (now_ms() >= t->next_lock_ms) {
		r = try_lead(t, &err);
		t->next_lock_ms = now_ms() + t->leader_retry_ms;
		if (r < 0) {
			es_log(ES_LOG_WARN, "projector_lock_failed", "{s:s}",
			       "error", err.detail);
			es_error_release(&err);
		}
		if (r > 0)
			goto out;
		if (!t->db[C_READ])
			goto fail;
	}
	listen_events(t);
	if (mem_ensure(t, &err) < 0)
		goto fail;
	r = read_once(t, &err);
	if (r < 0)
		goto fail;
	t->backoff_ms = 0;
	if (r > 0)
		goto out;
	follow_link(t);
	until = now_ms() + t->poll_ms;
	if (t->next_follow_ms < until)
		until = t->next_follow_ms;
	if (t->next_lock_ms < until)
		until = t->next_lock_ms;
	if (wait_for(t, (long)(until - now_ms()), ON(C_READ) | ON(C_LISTEN)) &
	    ON(C_READ))
		t->checkpoint_hint = 1;
	if (!conn_alive(t, C_READ))
		conn_close(t, C_READ);
	goto out;
fail:
	if (stopping(t))
		goto out;
	es_log(ES_LOG_WARN, "projector_follow_error", "{s:s}", "error",
	       err.detail);
	if (es_db_broken(t->db[C_READ]))
		conn_close(t, C_READ);
	if (es_db_broken(t->db[C_WRITE]))
		conn_close(t, C_WRITE);
	backoff(t);
out:
	es_error_release(&err);
}

static void *tail_main(void *arg)
{
	struct qry_tail *t = arg;
	size_t i;

	while (!stopping(t)) {
		if (t->leader)
			lead(t);
		else
			follow(t);
	}
	pthread_mutex_lock(&t->lock);
	t->fl_quit = 1;
	pthread_cond_broadcast(&t->fl_cond);
	pthread_mutex_unlock(&t->lock);
	if (t->flusher_started)
		pthread_join(t->flusher, NULL);
	t->flusher_started = 0;
	flush_clear(t, &t->fl);
	if (t->leader)
		set_leader(t, 0, 0);
	rollback(t);
	for (i = 0; i < C__COUNT; i++)
		conn_close(t, (enum conn)i);
	pthread_mutex_lock(&t->lock);
	t->done = 1;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* ---- start and stop ---- */

static void tail_free(struct qry_tail *t)
{
	views_release(t);
	es_snapshot_release(&t->witness);
	if (t->wake[0] >= 0)
		close(t->wake[0]);
	if (t->wake[1] >= 0)
		close(t->wake[1]);
	if (t->fl_pipe[0] >= 0)
		close(t->fl_pipe[0]);
	if (t->fl_pipe[1] >= 0)
		close(t->fl_pipe[1]);
	flush_clear(t, &t->fl);
	pthread_cond_destroy(&t->fl_cond);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	free(t->write_url);
	free(t->read_url);
	free(t->listen_url);
	free(t);
}

struct qry_tail *qry_tail_start(const struct qry_tail_config *cfg,
				struct qry_state *st, struct es_error *err)
{
	struct qry_tail *t;
	char host[256];
	size_t i;

	if (!cfg->write_url || !*cfg->write_url) {
		es_error_set(err, ES_EINVALID, "no database to tail");
		return NULL;
	}
	if (!cfg->mem) {
		es_error_set(err, ES_EINVALID, "no in-memory view to feed");
		return NULL;
	}
	if (view_count > QRY_VIEW_MAX) {
		es_error_set(err, ES_EINTERNAL, "too many views");
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		return NULL;
	}
	t->wake[0] = t->wake[1] = -1;
	t->fl_pipe[0] = t->fl_pipe[1] = -1;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	pthread_cond_init(&t->fl_cond, NULL);
	es_cursor_init(&t->fl.next);
	t->fl.err = (struct es_error)ES_ERROR_INIT;
	atomic_init(&t->stopping, 0);
	t->write_url = strdup(cfg->write_url);
	t->read_url = strdup(cfg->read_url && *cfg->read_url ? cfg->read_url
							     : cfg->write_url);
	t->listen_url =
		strdup(cfg->listen_url && *cfg->listen_url ? cfg->listen_url
							   : cfg->write_url);
	if (!t->write_url || !t->read_url || !t->listen_url) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto fail;
	}
	t->batch = cfg->batch > 0 ? cfg->batch : 2000;
	if (t->batch > ES_READ_LIMIT_MAX)
		t->batch = ES_READ_LIMIT_MAX;
	t->poll_ms = cfg->poll_ms > 0 ? cfg->poll_ms : 100;
	t->leader_retry_ms =
		cfg->leader_retry_ms > 0 ? cfg->leader_retry_ms : 500;
	t->st = st;
	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "unknown");
	host[sizeof(host) - 1] = '\0';
	snprintf(t->holder, sizeof(t->holder), "%s:%ld", host, (long)getpid());
	for (i = 0; i < view_count; i++) {
		t->views[i].ops = view_all[i];
		t->views[i].healthy = 1;
		es_cursor_init(&t->views[i].pos);
	}
	t->nviews = view_count;
	t->mem.m = cfg->mem;
	es_cursor_init(&t->mem.pos);
	es_cursor_init(&t->reader);
	if (pipe(t->wake) < 0) {
		t->wake[0] = t->wake[1] = -1;
		es_error_set(err, ES_EINTERNAL, "cannot create a pipe");
		goto fail;
	}
	if (pipe(t->fl_pipe) < 0) {
		t->fl_pipe[0] = t->fl_pipe[1] = -1;
		es_error_set(err, ES_EINTERNAL, "cannot create a pipe");
		goto fail;
	}
	if (fcntl(t->fl_pipe[0], F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(t->fl_pipe[1], F_SETFL, O_NONBLOCK) < 0) {
		es_error_set(err, ES_EINTERNAL, "cannot set up a pipe");
		goto fail;
	}
	for (i = 0; i < C__COUNT; i++) {
		struct es_db_link *l = &t->link[i];

		*l = (struct es_db_link)ES_DB_LINK_INIT(
			i == C_WRITE	? t->write_url
			: i == C_LISTEN ? t->listen_url
					: t->read_url,
			t->wake[0]);
		l->app_name = conn_app[i];
		l->min_ms = l->max_ms = 0; /* backoff() waits */
		l->connect_ms = CONNECT_TIMEOUT_MS;
	}
	if (pthread_create(&t->flusher, NULL, flusher_main, t) != 0) {
		es_error_set(err, ES_EINTERNAL,
			     "cannot start the projector's flusher thread");
		goto fail;
	}
	t->flusher_started = 1;
	if (pthread_create(&t->thread, NULL, tail_main, t) != 0) {
		es_error_set(err, ES_EINTERNAL,
			     "cannot start the projector thread");
		pthread_mutex_lock(&t->lock);
		t->fl_quit = 1;
		pthread_cond_broadcast(&t->fl_cond);
		pthread_mutex_unlock(&t->lock);
		pthread_join(t->flusher, NULL);
		goto fail;
	}
	return t;
fail:
	tail_free(t);
	return NULL;
}

void qry_tail_stop(struct qry_tail *t)
{
	char c = 1;
	size_t i;

	if (!t)
		return;
	atomic_store(&t->stopping, 1);
	if (write(t->wake[1], &c, 1) < 0) {
		/* the thread still sees `stopping` within a poll interval */
	}
	/* cancel whatever query the thread waits on, until it is out */
	pthread_mutex_lock(&t->lock);
	while (!t->done) {
		struct timespec ts;
		char buf[256];

		for (i = 0; i < C__COUNT; i++)
			if (t->cancel[i])
				PQcancel(t->cancel[i], buf, sizeof(buf));
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&t->cond, &t->lock, &ts);
	}
	pthread_mutex_unlock(&t->lock);
	pthread_join(t->thread, NULL);
	tail_free(t);
}
