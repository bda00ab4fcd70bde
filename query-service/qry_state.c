/*
 * qry_state.c - per-view positions and health, leadership, and the
 * read-your-writes waiters of one query-service process.
 *
 * One mutex guards it all: positions move once per batch, and waiters
 * are parked and woken in lists per view. Woken waiters are collected
 * under the lock and their done() callbacks run after it is dropped, so
 * a callback may call back into qry_state. One timer thread sleeps until
 * the earliest deadline of any parked waiter and expires the late ones.
 */
#include "qry_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The timer never sleeps longer than this, deadline or not. */
#define TIMER_MAX_SLEEP_MS 1000

struct waitq {
	pthread_t timer;
	pthread_cond_t cond; /* the timer sleeps on it, with st->lock */
	int running; /* the timer thread was started */
	int stop; /* the timer thread must exit */
	int closing; /* qry_state_cancel_waiters() ran: no new waiters */
	long count; /* parked waiters */
	int64_t next_ms; /* when the timer wakes up next */
	struct qry_waiter *head[QRY_VIEW_MAX];
};

int64_t qry_state_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The index of view `name`, or -1. st->lock held (names never change). */
static int view_index(const struct qry_state *st, const char *name)
{
	size_t i;

	if (!name)
		return -1;
	for (i = 0; i < st->nviews; i++)
		if (strcmp(st->views[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Whether the view at `pos` has passed what `w` waits for. */
static int waiter_covered(const struct es_cursor *pos,
			  const struct qry_waiter *w)
{
	return w->is_cursor ? es_cursor_covers(pos, &w->cur)
			    : es_cursor_covers_append(pos, &w->at);
}

/* Take `w` off its view's list. st->lock held. */
static void unlink_waiter(struct waitq *q, struct qry_waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		q->head[w->view] = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->prev = NULL;
	w->next = NULL;
	q->count--;
}

/* Push `w` on the singly linked list `*out` (through w->next). */
static void collect(struct qry_waiter **out, struct qry_waiter *w)
{
	w->next = *out;
	*out = w;
}

/* Call done(r) for each waiter of `list`; no lock held. */
static void finish(struct qry_waiter *list, enum qry_wait_result r)
{
	struct qry_waiter *w, *next;

	for (w = list; w; w = next) {
		next = w->next;
		w->next = NULL;
		es_cursor_release(&w->cur);
		w->done(w, r);
	}
}

static void *timer_main(void *arg)
{
	struct qry_state *st = arg;
	struct waitq *q = st->waiters;

	pthread_mutex_lock(&st->lock);
	while (!q->stop) {
		struct qry_waiter *late = NULL, *w, *next;
		int64_t now = qry_state_clock_ms();
		int64_t wake = now + TIMER_MAX_SLEEP_MS;
		struct timespec ts;
		size_t v;

		for (v = 0; v < st->nviews; v++) {
			for (w = q->head[v]; w; w = next) {
				next = w->next;
				if (w->deadline_ms <= now) {
					unlink_waiter(q, w);
					collect(&late, w);
				} else if (w->deadline_ms < wake) {
					wake = w->deadline_ms;
				}
			}
		}
		if (late) {
			pthread_mutex_unlock(&st->lock);
			finish(late, QRY_WAIT_TIMEOUT);
			pthread_mutex_lock(&st->lock);
			continue;
		}
		q->next_ms = wake;
		ts.tv_sec = (time_t)(wake / 1000);
		ts.tv_nsec = (long)(wake % 1000) * 1000000;
		pthread_cond_timedwait(&q->cond, &st->lock, &ts);
	}
	pthread_mutex_unlock(&st->lock);
	return NULL;
}

int qry_state_init(struct qry_state *st, const char *const *names)
{
	pthread_condattr_t attr;
	struct waitq *q;
	size_t i;

	memset(st, 0, sizeof(*st));
	for (i = 0; names && names[i]; i++) {
		struct qry_view_status *v;

		if (i == QRY_VIEW_MAX ||
		    strlen(names[i]) >= sizeof(st->views[0].name))
			return -1;
		v = &st->views[i];
		snprintf(v->name, sizeof(v->name), "%s", names[i]);
		es_cursor_init(&v->pos);
		v->error_position = -1;
	}
	st->nviews = i;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -1;
	if (pthread_mutex_init(&st->lock, NULL) != 0) {
		free(q);
		return -1;
	}
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cond, &attr);
	pthread_condattr_destroy(&attr);
	st->waiters = q;
	if (pthread_create(&q->timer, NULL, timer_main, st) != 0) {
		qry_state_release(st);
		return -1;
	}
	q->running = 1;
	return 0;
}

void qry_state_release(struct qry_state *st)
{
	struct waitq *q = st->waiters;
	size_t i;

	if (!q)
		return;
	qry_state_cancel_waiters(st);
	if (q->running) {
		pthread_mutex_lock(&st->lock);
		q->stop = 1;
		pthread_cond_signal(&q->cond);
		pthread_mutex_unlock(&st->lock);
		pthread_join(q->timer, NULL);
	}
	pthread_cond_destroy(&q->cond);
	free(q);
	st->waiters = NULL;
	for (i = 0; i < st->nviews; i++) {
		es_cursor_release(&st->views[i].pos);
		free(st->views[i].base);
		st->views[i].base = NULL;
		qry_parked_release(&st->views[i].parked);
	}
	es_snapshot_release(&st->done_cur);
	es_snapshot_release(&st->done_next);
	pthread_mutex_destroy(&st->lock);
}

void qry_state_set_pos(struct qry_state *st, const char *name,
		       const struct es_cursor *c, const char *base,
		       long long applied, int reset)
{
	struct waitq *q = st->waiters;
	struct qry_waiter *woken = NULL, *w, *next;
	struct qry_view_status *v;
	struct es_cursor copy;
	int i;

	if (es_cursor_copy(&copy, c, NULL) < 0)
		return;
	pthread_mutex_lock(&st->lock);
	i = view_index(st, name);
	if (i < 0) {
		pthread_mutex_unlock(&st->lock);
		es_cursor_release(&copy);
		return;
	}
	v = &st->views[i];
	if (!reset && v->loaded && !es_cursor_covers(&copy, &v->pos)) {
		pthread_mutex_unlock(&st->lock);
		es_cursor_release(&copy);
		return;
	}
	es_cursor_release(&v->pos);
	v->pos = copy;
	v->loaded = 1;
	free(v->base);
	/* out of memory: none, and reads report the checkpoint they read */
	v->base = base ? strdup(base) : NULL;
	if (applied >= 0)
		v->applied = applied;
	v->updated_ms = wall_ms();
	if (reset) {
		/* a rebuild swapped in a view that is whole again */
		v->stopped = 0;
		v->error[0] = '\0';
		v->error_position = -1;
	}
	for (w = q->head[i]; w; w = next) {
		next = w->next;
		if (waiter_covered(&v->pos, w)) {
			unlink_waiter(q, w);
			collect(&woken, w);
		}
	}
	pthread_mutex_unlock(&st->lock);
	finish(woken, QRY_WAIT_COVERED);
}

void qry_state_stop_view(struct qry_state *st, const char *name,
			 long long position, const char *why)
{
	int i;

	pthread_mutex_lock(&st->lock);
	i = view_index(st, name);
	if (i >= 0) {
		st->views[i].stopped = 1;
		st->views[i].error_position = position;
		snprintf(st->views[i].error, sizeof(st->views[i].error), "%s",
			 why ? why : "");
	}
	pthread_mutex_unlock(&st->lock);
}

void qry_state_set_primary_lsn(struct qry_state *st, const char *lsn)
{
	int64_t now = qry_state_clock_ms();

	pthread_mutex_lock(&st->lock);
	snprintf(st->primary_lsn, sizeof(st->primary_lsn), "%s",
		 lsn ? lsn : "");
	st->primary_lsn_ms = now;
	pthread_mutex_unlock(&st->lock);
}

void qry_state_primary_lsn(struct qry_state *st, int64_t max_age_ms, char *out,
			   size_t n)
{
	int64_t now = qry_state_clock_ms();

	pthread_mutex_lock(&st->lock);
	if (st->primary_lsn[0] && now - st->primary_lsn_ms <= max_age_ms)
		snprintf(out, n, "%s", st->primary_lsn);
	else if (n)
		out[0] = '\0';
	pthread_mutex_unlock(&st->lock);
}

void qry_state_offer_done(struct qry_state *st, const struct es_snapshot *done,
			  uint64_t lsn)
{
	struct es_snapshot copy = { 0 };

	if (es_snapshot_copy(&copy, done, NULL) < 0)
		return;
	pthread_mutex_lock(&st->lock);
	es_snapshot_release(&st->done_next);
	st->done_next = copy;
	st->next_lsn = lsn;
	st->have_next = 1;
	pthread_mutex_unlock(&st->lock);
}

void qry_state_set_log_standby(struct qry_state *st, int standby)
{
	pthread_mutex_lock(&st->lock);
	st->log_standby = standby;
	pthread_mutex_unlock(&st->lock);
}

int qry_state_log_standby(struct qry_state *st)
{
	int standby;

	pthread_mutex_lock(&st->lock);
	standby = st->log_standby;
	pthread_mutex_unlock(&st->lock);
	return standby;
}

int qry_state_take_done(struct qry_state *st, uint64_t replayed,
			struct es_snapshot *done)
{
	int ok;

	pthread_mutex_lock(&st->lock);
	if (st->have_next && replayed >= st->next_lsn) {
		es_snapshot_release(&st->done_cur);
		st->done_cur = st->done_next;
		memset(&st->done_next, 0, sizeof(st->done_next));
		st->cur_lsn = st->next_lsn;
		st->have_cur = 1;
		st->have_next = 0;
	}
	ok = st->have_cur && replayed >= st->cur_lsn &&
	     es_snapshot_copy(done, &st->done_cur, NULL) == 0;
	pthread_mutex_unlock(&st->lock);
	return ok;
}

void qry_state_set_parked(struct qry_state *st, const char *name,
			  const struct qry_parked *p)
{
	struct qry_parked copy = QRY_PARKED_INIT;
	int i;

	/* out of memory: the old list stays */
	if (qry_parked_copy(&copy, p, NULL) < 0) {
		qry_parked_release(&copy);
		return;
	}
	pthread_mutex_lock(&st->lock);
	i = view_index(st, name);
	if (i >= 0) {
		qry_parked_release(&st->views[i].parked);
		st->views[i].parked = copy;
		memset(&copy, 0, sizeof(copy));
	}
	pthread_mutex_unlock(&st->lock);
	qry_parked_release(&copy);
}

int qry_state_parked(struct qry_state *st, const char *name, const char *stream,
		     long long *position, char *why, size_t len)
{
	const struct qry_parked_stream *ps = NULL;
	int i;

	pthread_mutex_lock(&st->lock);
	i = view_index(st, name);
	if (i >= 0)
		ps = qry_parked_get(&st->views[i].parked, stream);
	if (ps) {
		*position = ps->position;
		snprintf(why, len, "%s", ps->error);
	}
	pthread_mutex_unlock(&st->lock);
	return ps != NULL;
}

void qry_state_add_apply(struct qry_state *st, const char *name, double seconds)
{
	int i;

	pthread_mutex_lock(&st->lock);
	i = view_index(st, name);
	if (i >= 0) {
		st->views[i].apply_seconds += seconds;
		st->views[i].batches++;
	}
	pthread_mutex_unlock(&st->lock);
}

char *qry_state_pos_token(struct qry_state *st, const char *name)
{
	char *s = NULL;
	int i;

	pthread_mutex_lock(&st->lock);
	i = view_index(st, name);
	if (i >= 0)
		s = es_cursor_format(&st->views[i].pos);
	pthread_mutex_unlock(&st->lock);
	return s;
}

int qry_state_pos(struct qry_state *st, const char *name, struct es_cursor *out)
{
	int i, ret = 0;

	es_cursor_init(out);
	pthread_mutex_lock(&st->lock);
	i = view_index(st, name);
	if (i >= 0 && st->views[i].loaded)
		ret = es_cursor_copy(out, &st->views[i].pos, NULL) < 0 ? -1 : 1;
	pthread_mutex_unlock(&st->lock);
	return ret;
}

char *qry_state_served_token(struct qry_state *st, const char *name,
			     const char *stored)
{
	char *s = NULL;
	int i;

	pthread_mutex_lock(&st->lock);
	i = view_index(st, name);
	if (i >= 0 && st->views[i].loaded && st->views[i].base && stored &&
	    strcmp(st->views[i].base, stored) == 0)
		s = es_cursor_format(&st->views[i].pos);
	pthread_mutex_unlock(&st->lock);
	return s;
}

void qry_state_served_pair(struct qry_state *st, const char *name, char **pos,
			   char **base)
{
	int i;

	*pos = NULL;
	*base = NULL;
	pthread_mutex_lock(&st->lock);
	i = view_index(st, name);
	if (i >= 0 && st->views[i].loaded && st->views[i].base) {
		*pos = es_cursor_format(&st->views[i].pos);
		*base = strdup(st->views[i].base);
	}
	pthread_mutex_unlock(&st->lock);
	if (!*pos || !*base) {
		free(*pos);
		free(*base);
		*pos = NULL;
		*base = NULL;
	}
}

char *qry_state_min_token(struct qry_state *st)
{
	char *s = NULL;
	size_t min = 0;

	pthread_mutex_lock(&st->lock);
	/* one log reader moves them all, so their positions are ordered */
	for (size_t i = 1; i < st->nviews; i++)
		if (!es_cursor_covers(&st->views[i].pos, &st->views[min].pos))
			min = i;
	if (st->nviews)
		s = es_cursor_format(&st->views[min].pos);
	pthread_mutex_unlock(&st->lock);
	return s;
}

/* Parse `token` into `w`: a read token has colons, an append token not. */
static int parse_token(struct qry_waiter *w, const char *token,
		       struct es_error *err)
{
	es_cursor_init(&w->cur);
	w->is_cursor = token && strchr(token, ':') != NULL;
	if (w->is_cursor)
		return es_cursor_parse(token, &w->cur, err);
	return es_append_token_parse(token, &w->at, err);
}

int qry_state_covers(struct qry_state *st, const char *name, const char *token,
		     struct es_error *err)
{
	struct qry_waiter w = { 0 };
	int i, ret;

	if (parse_token(&w, token, err) < 0)
		return -1;
	pthread_mutex_lock(&st->lock);
	i = view_index(st, name);
	ret = i < 0 ? -1 : waiter_covered(&st->views[i].pos, &w);
	pthread_mutex_unlock(&st->lock);
	es_cursor_release(&w.cur);
	if (ret < 0)
		es_error_set(err, ES_EINTERNAL, "unknown view '%s'",
			     name ? name : "");
	return ret;
}

int qry_state_park(struct qry_state *st, const char *name, const char *token,
		   struct qry_waiter *w, struct es_error *err)
{
	struct waitq *q = st->waiters;
	int i;

	if (parse_token(w, token, err) < 0)
		return -1;
	w->prev = NULL;
	w->next = NULL;
	pthread_mutex_lock(&st->lock);
	i = view_index(st, name);
	if (i < 0 || q->closing) {
		pthread_mutex_unlock(&st->lock);
		es_cursor_release(&w->cur);
		if (i < 0)
			return es_error_set(err, ES_EINTERNAL,
					    "unknown view '%s'",
					    name ? name : "");
		return es_error_set(err, ES_EUNAVAIL,
				    "the service is shutting down");
	}
	if (waiter_covered(&st->views[i].pos, w)) {
		pthread_mutex_unlock(&st->lock);
		es_cursor_release(&w->cur);
		return 1;
	}
	w->view = (size_t)i;
	w->next = q->head[i];
	if (w->next)
		w->next->prev = w;
	q->head[i] = w;
	q->count++;
	if (q->next_ms == 0 || w->deadline_ms < q->next_ms)
		pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&st->lock);
	return 0;
}

long qry_state_waiting(struct qry_state *st)
{
	struct waitq *q = st->waiters;
	long n;

	pthread_mutex_lock(&st->lock);
	n = q->count;
	pthread_mutex_unlock(&st->lock);
	return n;
}

void qry_state_cancel_waiters(struct qry_state *st)
{
	struct waitq *q = st->waiters;
	struct qry_waiter *all = NULL, *w;
	size_t v;

	pthread_mutex_lock(&st->lock);
	q->closing = 1;
	for (v = 0; v < st->nviews; v++) {
		while ((w = q->head[v])) {
			unlink_waiter(q, w);
			collect(&all, w);
		}
	}
	pthread_mutex_unlock(&st->lock);
	finish(all, QRY_WAIT_CANCELLED);
}
