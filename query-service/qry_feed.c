/*
 * qry_feed.c - the rebuild's reader: one session, one snapshot, one COPY
 * ... TO STDOUT (FORMAT binary) decoded row by row into chunks of events.
 *
 * The reader thread fills chunks; the caller folds them and gives them
 * back; the reader clears given-back chunks and fills them again, so a
 * chunk's memory is allocated and freed on one thread, block by block.
 */
#include "qry_feed.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_read.h"
#include "es_db.h"
#include "es_log.h"
#include "qry_json.h"
#include "es_pgbin.h"
#include "views/payload.h"

/* chunks read ahead of the caller */
#define CHUNKS_AHEAD 4
/* a chunk's memory is carved out of blocks of this size */
#define ARENA_BLOCK (1024 * 1024)

/*
 * The snapshot the read sees (as a read token), then every event of it:
 * in position order (per stream that is version order, the order folds
 * depend on) through the primary key, or as the rows lie in the table.
 * Never a parallel plan, whose workers would interleave their rows, nor
 * a scan synchronized with another one, which would start mid-table.
 */
#define SQL_FEED_BEGIN                                     \
	"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;" \
	" SET LOCAL max_parallel_workers_per_gather = 0;"  \
	" SET LOCAL synchronize_seqscans = off; SET LOCAL enable_sort = off"
#define SQL_FEED_COLUMNS                                           \
	"COPY (SELECT global_position, stream_id, stream_version," \
	" event_type, data::text, recorded_at%s FROM events"
#define SQL_FEED_METADATA ", metadata::text"
/* the metadata of the events that have member %s (jsonb's ?, no text) */
#define SQL_FEED_METADATA_OF \
	", CASE WHEN metadata ? '%s' THEN metadata::text END"
#define SQL_FEED_ORDERED                                        \
	SQL_FEED_COLUMNS " ORDER BY global_position) TO STDOUT" \
			 " (FORMAT binary)"
#define SQL_FEED_PHYSICAL SQL_FEED_COLUMNS ") TO STDOUT (FORMAT binary)"
/* the fields of a row, without and with the metadata */
#define FEED_NFIELDS	 6
#define FEED_NFIELDS_MAX 7

struct arena_block {
	struct arena_block *next;
	size_t used, cap;
	_Alignas(16) char mem[];
};

/* Blocks kept for reuse: reset() rewinds to the first one. */
struct arena {
	struct arena_block *head, *cur;
};

/* `n` bytes aligned for any object, or NULL. */
static void *arena_alloc(struct arena *a, size_t n)
{
	struct arena_block *b = a->cur;
	void *p;

	n = (n + 15) & ~(size_t)15;
	while (b && b->cap - b->used < n) {
		b = b->next;
		if (b)
			b->used = 0;
	}
	if (!b) {
		size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;

		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->used = 0;
		b->cap = cap;
		/* after the current block: the chain keeps its order */
		if (a->cur) {
			b->next = a->cur->next;
			a->cur->next = b;
		} else {
			b->next = a->head;
			a->head = b;
		}
	}
	a->cur = b;
	p = b->mem + b->used;
	b->used += n;
	return p;
}

static char *arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

static int arena_owns(const struct arena *a, const void *p)
{
	const struct arena_block *b;
	const char *c = p;

	for (b = a->head; b; b = b->next)
		if (c >= b->mem && c < b->mem + b->cap)
			return 1;
	return 0;
}

static void arena_reset(struct arena *a)
{
	a->cur = a->head;
	if (a->cur)
		a->cur->used = 0;
}

static void arena_release(struct arena *a)
{
	struct arena_block *b, *next;

	for (b = a->head; b; b = next) {
		next = b->next;
		free(b);
	}
	a->head = a->cur = NULL;
}

/*
 * Parsing an event's data builds a dozen small jansson values, and
 * freeing them costs as much again: while the reader thread parses, it
 * points jansson's allocator (json_set_alloc_funcs(), for the length of
 * the feed) at the chunk's arena. Values made there are never
 * freed one by one (no json_decref() on a chunk's data): the chunk's
 * arena is reset when the chunk is reused. Any other value, made by
 * another thread or outside a parse, is plain malloc()ed as before.
 */
static _Thread_local struct arena *json_arena;

static void *json_arena_malloc(size_t n)
{
	return json_arena ? arena_alloc(json_arena, n) : malloc(n);
}

/* What jansson frees while parsing (scratch buffers) stays in the arena. */
static void json_arena_free(void *p)
{
	if (!json_arena || !arena_owns(json_arena, p))
		free(p);
}

/* A chunk with its memory; `pub` first, so either converts to the other. */
struct chunk {
	struct qry_feed_chunk pub;
	struct arena mem;
	struct chunk *next; /* in the feed's queue or spare list */
};

static void chunk_clear(struct chunk *c)
{
	c->pub.evs.n = 0;
	c->pub.pending = 0;
	c->pub.next = NULL;
	arena_reset(&c->mem);
}

static void chunk_free(struct chunk *c)
{
	if (!c)
		return;
	arena_release(&c->mem);
	free(c->pub.evs.v);
	free(c);
}

static struct chunk *chunk_new(void)
{
	struct chunk *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->pub.evs.v = calloc(QRY_FEED_CHUNK, sizeof(*c->pub.evs.v));
	if (!c->pub.evs.v) {
		free(c);
		return NULL;
	}
	c->pub.evs.alloc = QRY_FEED_CHUNK;
	return c;
}

static const char copy_signature[11] = "PGCOPY\n\377\r\n";

/*
 * Decode one COPY row of SQL_FEED_COLUMNS (the first also holding the
 * header, while `*header` is set) into the next event of `c`: 1, or 0 for
 * the trailer. The event's payload comes out as view_payload_decode()
 * makes it (qry_json_load() is json_loadb() made fast); its data text is
 * not kept. With `metadata` the row has the metadata text too, which is
 * kept as it is.
 */
static int take_row(struct chunk *c, const char *row, int len, int *header,
		    int metadata, struct es_error *err)
{
	const unsigned char *p = (const unsigned char *)row, *end = p + len;
	const unsigned char *v[FEED_NFIELDS_MAX];
	size_t n[FEED_NFIELDS_MAX];
	struct es_event *e;
	char time[ES_PGBIN_TIME_LEN + 1];
	json_error_t jerr;
	int k, nfields = metadata ? FEED_NFIELDS_MAX : FEED_NFIELDS;

	if (*header) {
		if (len < 19 || memcmp(p, copy_signature, 11) != 0 ||
		    es_pgbin_u32(p + 15) > (uint32_t)(len - 19))
			return es_error_set(err, ES_EINTERNAL,
					    "unexpected COPY header");
		p += 19 + es_pgbin_u32(p + 15);
		*header = 0;
	}
	if (end - p < 2)
		return es_error_set(err, ES_EINTERNAL, "truncated COPY row");
	if (es_pgbin_u16(p) == UINT16_MAX)
		return 0;
	if (es_pgbin_u16(p) != nfields)
		return es_error_set(err, ES_EINTERNAL,
				    "unexpected COPY row of %d fields",
				    es_pgbin_u16(p));
	p += 2;
	for (k = 0; k < nfields; k++) {
		/* the metadata may be NULL (SQL_FEED_METADATA_OF) */
		if (k == 6 && end - p >= 4 && es_pgbin_u32(p) == UINT32_MAX) {
			v[k] = NULL;
			n[k] = 0;
			p += 4;
			continue;
		}
		if (es_pgbin_field(&p, end, &v[k], &n[k]) < 0)
			return es_error_set(err, ES_EINTERNAL,
					    "unexpected COPY row");
	}
	if (n[0] != 8 || n[2] != 8 || n[5] != 8)
		return es_error_set(err, ES_EINTERNAL,
				    "unexpected COPY field sizes");
	e = &c->pub.evs.v[c->pub.evs.n];
	memset(e, 0, sizeof(*e));
	e->position = (long long)es_pgbin_u64(v[0]);
	e->version = (long long)es_pgbin_u64(v[2]);
	if (es_pgbin_time((int64_t)es_pgbin_u64(v[5]), time) < 0)
		return es_error_set(err, ES_EINTERNAL,
				    "event %lld: unexpected recorded_at",
				    e->position);
	e->stream_id = arena_strndup(&c->mem, (const char *)v[1], n[1]);
	e->type = arena_strndup(&c->mem, (const char *)v[3], n[3]);
	e->recorded_at = arena_strndup(&c->mem, time, ES_PGBIN_TIME_LEN);
	if (metadata && v[6]) {
		e->metadata = arena_strndup(&c->mem, (const char *)v[6], n[6]);
		e->metadata_len = n[6];
	}
	if (!e->stream_id || !e->type || !e->recorded_at ||
	    (metadata && v[6] && !e->metadata))
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	/* as view_payload_decode() does, in the chunk's arena */
	view_event_check(e);
	if (view_payload_wanted(e->stream_id)) {
		json_arena = &c->mem;
		e->payload_flat = qry_json_flat((const char *)v[4], n[4],
						json_arena_malloc);
		if (!e->payload_flat)
			e->payload =
				qry_json_load((const char *)v[4], n[4], &jerr);
		json_arena = NULL;
		if (!e->payload && !e->payload_flat) {
			e->payload_error = arena_strndup(&c->mem, jerr.text,
							 strlen(jerr.text));
			if (!e->payload_error)
				return es_error_set(err, ES_EINTERNAL,
						    "out of memory");
		}
	}
	c->pub.evs.n++;
	return 1;
}

/* ---- the reader thread ---- */

struct qry_feed {
	const char *url;
	int ordered;
	int metadata; /* read the metadata column too */
	const char *metadata_key; /* only where it has this member */
	pthread_t thread;
	int started;
	json_malloc_t old_malloc; /* jansson's allocator before the feed */
	json_free_t old_free;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* chunks queued or given back, end, stop */
	struct chunk *head, *tail; /* read, waiting for the caller */
	size_t queued;
	struct chunk *spare; /* given back, for reuse */
	struct chunk *out; /* handed to the caller, not given back yet */
	int done; /* everything read and queued */
	int stop; /* the caller gave up */
	int failed;
	struct es_error err;
	char *snapshot; /* the read's snapshot, once known */
};

static void feed_fail(struct qry_feed *f, struct es_error *e)
{
	pthread_mutex_lock(&f->lock);
	if (!f->failed) {
		f->failed = 1;
		es_error_set(&f->err, e->code, "%s", e->detail);
	}
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

/* A chunk to fill: a given-back one (cleared here) or a new one. */
static struct chunk *feed_chunk(struct qry_feed *f, struct es_error *err)
{
	struct chunk *c;

	pthread_mutex_lock(&f->lock);
	c = f->spare;
	if (c)
		f->spare = c->next;
	pthread_mutex_unlock(&f->lock);
	if (c) {
		chunk_clear(c);
		c->next = NULL;
		return c;
	}
	c = chunk_new();
	if (!c)
		es_error_set(err, ES_EINTERNAL, "out of memory");
	return c;
}

/* Queue `c` (takes it), waiting while CHUNKS_AHEAD are. -1: stopped. */
static int feed_push(struct qry_feed *f, struct chunk *c)
{
	pthread_mutex_lock(&f->lock);
	while (f->queued >= CHUNKS_AHEAD && !f->stop)
		pthread_cond_wait(&f->cond, &f->lock);
	if (f->stop) {
		pthread_mutex_unlock(&f->lock);
		chunk_free(c);
		return -1;
	}
	c->next = NULL;
	if (f->tail)
		f->tail->next = c;
	else
		f->head = c;
	f->tail = c;
	f->queued++;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	return 0;
}

/* Read the snapshot and start the COPY on `db`. */
static int feed_begin(struct qry_feed *f, PGconn *db, struct es_error *err)
{
	PGresult *res;
	char *snap, sql[512], meta[128];

	if (es_db_exec(db, SQL_FEED_BEGIN, err) < 0)
		return -1;
	snap = es_read_snapshot(db, NULL, err);
	if (!snap)
		return -1;
	pthread_mutex_lock(&f->lock);
	f->snapshot = snap;
	pthread_mutex_unlock(&f->lock);
	meta[0] = '\0';
	if (f->metadata && f->metadata_key)
		snprintf(meta, sizeof(meta), SQL_FEED_METADATA_OF,
			 f->metadata_key);
	else if (f->metadata)
		snprintf(meta, sizeof(meta), "%s", SQL_FEED_METADATA);
	snprintf(sql, sizeof(sql),
		 f->ordered ? SQL_FEED_ORDERED : SQL_FEED_PHYSICAL, meta);
	res = PQexec(db, sql);
	if (PQresultStatus(res) != PGRES_COPY_OUT) {
		es_db_error(db, res, err);
		PQclear(res);
		return -1;
	}
	PQclear(res);
	return 0;
}

static void *feed_main(void *arg)
{
	struct qry_feed *f = arg;
	struct es_error err = ES_ERROR_INIT;
	struct chunk *c = NULL;
	PGresult *res = NULL;
	PGconn *db;
	char *row;
	int len, header = 1, r;

	db = es_db_connect(f->url, "tandem-rebuild", &err);
	if (!db || feed_begin(f, db, &err) < 0)
		goto fail;
	for (;;) {
		len = PQgetCopyData(db, &row, 0);
		if (len == -1)
			break;
		if (len < 0) {
			es_db_error(db, NULL, &err);
			goto fail;
		}
		if (!c)
			c = feed_chunk(f, &err);
		r = c ? take_row(c, row, len, &header, f->metadata, &err) : -1;
		PQfreemem(row);
		if (r < 0)
			goto fail;
		if (c->pub.evs.n == QRY_FEED_CHUNK) {
			r = feed_push(f, c);
			c = NULL;
			if (r < 0)
				goto out;
		}
	}
	res = PQgetResult(db);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		es_db_error(db, res, &err);
		goto fail;
	}
	PQclear(res);
	res = NULL;
	if (es_db_exec(db, "COMMIT", &err) < 0)
		goto fail;
	if (c && c->pub.evs.n) {
		r = feed_push(f, c);
		c = NULL;
		if (r < 0)
			goto out;
	}
	pthread_mutex_lock(&f->lock);
	f->done = 1;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	goto out;
fail:
	feed_fail(f, &err);
out:
	chunk_free(c);
	PQclear(res);
	es_error_release(&err);
	/* closing it mid-COPY ends the server's side too */
	if (db)
		PQfinish(db);
	return NULL;
}

struct qry_feed *qry_feed_start(const char *url, int ordered, int metadata,
				const char *metadata_key, struct es_error *err)
{
	struct qry_feed *f = calloc(1, sizeof(*f));

	if (!f) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	f->err = (struct es_error)ES_ERROR_INIT;
	f->url = url;
	f->ordered = ordered;
	f->metadata = metadata;
	/* a name that needs no quoting in the statement, or every event's */
	f->metadata_key =
		metadata_key && *metadata_key &&
				strspn(metadata_key,
				       "abcdefghijklmnopqrstuvwxyz_") ==
					strlen(metadata_key) &&
				strlen(metadata_key) < 64
			? metadata_key
			: NULL;
	json_get_alloc_funcs(&f->old_malloc, &f->old_free);
	json_set_alloc_funcs(json_arena_malloc, json_arena_free);
	if (pthread_create(&f->thread, NULL, feed_main, f) != 0) {
		es_error_set(err, ES_EINTERNAL,
			     "cannot start the rebuild reader");
		qry_feed_finish(f, NULL, NULL);
		return NULL;
	}
	f->started = 1;
	return f;
}

struct qry_feed_chunk *qry_feed_next(struct qry_feed *f)
{
	struct chunk *c = NULL;

	pthread_mutex_lock(&f->lock);
	while (!f->head && !f->done && !f->failed)
		pthread_cond_wait(&f->cond, &f->lock);
	if (f->head && !f->failed) {
		c = f->head;
		f->head = c->next;
		if (!f->head)
			f->tail = NULL;
		f->queued--;
		c->next = f->out;
		f->out = c;
		pthread_cond_broadcast(&f->cond);
	}
	pthread_mutex_unlock(&f->lock);
	return c ? &c->pub : NULL;
}

void qry_feed_give_back(struct qry_feed *f, struct qry_feed_chunk *pub)
{
	struct chunk *c = (struct chunk *)pub, **p;

	pthread_mutex_lock(&f->lock);
	for (p = &f->out; *p && *p != c; p = &(*p)->next)
		;
	if (*p)
		*p = c->next;
	c->next = f->spare;
	f->spare = c;
	pthread_mutex_unlock(&f->lock);
}

static void chunks_free(struct chunk *c)
{
	struct chunk *next;

	for (; c; c = next) {
		next = c->next;
		chunk_free(c);
	}
}

int qry_feed_finish(struct qry_feed *f, char **snapshot, struct es_error *err)
{
	int ret = 0;

	if (snapshot)
		*snapshot = NULL;
	if (!f)
		return 0;
	if (f->started) {
		pthread_mutex_lock(&f->lock);
		f->stop = 1;
		pthread_cond_broadcast(&f->cond);
		pthread_mutex_unlock(&f->lock);
		pthread_join(f->thread, NULL);
	}
	/* no value made in an arena is left: jansson may have its own back */
	chunks_free(f->head);
	chunks_free(f->spare);
	chunks_free(f->out);
	json_set_alloc_funcs(f->old_malloc, f->old_free);
	if (f->failed)
		ret = es_error_set(err, f->err.code, "%s", f->err.detail);
	if (snapshot)
		*snapshot = f->snapshot;
	else
		free(f->snapshot);
	es_error_release(&f->err);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
	free(f);
	return ret;
}

int qry_feed_event_copy(struct es_event *dst, const struct es_event *src)
{
	*dst = *src;
	dst->stream_id = strdup(src->stream_id);
	dst->type = strdup(src->type);
	dst->recorded_at = strdup(src->recorded_at);
	dst->metadata = src->metadata
				? strndup(src->metadata, src->metadata_len)
				: NULL;
	/* made with malloc(): only the reader thread parses into an arena */
	dst->payload = src->payload ? json_deep_copy(src->payload) : NULL;
	dst->payload_flat = NULL;
	if (src->payload_flat) {
		const struct qry_flat *f = src->payload_flat;

		/* offsets, not pointers: a copy of the bytes is whole */
		dst->payload_flat = malloc(f->size);
		if (dst->payload_flat)
			memcpy(dst->payload_flat, f, f->size);
	}
	dst->payload_error =
		src->payload_error ? strdup(src->payload_error) : NULL;
	if (!dst->stream_id || !dst->type || !dst->recorded_at ||
	    (src->metadata && !dst->metadata) ||
	    (src->payload && !dst->payload) ||
	    (src->payload_flat && !dst->payload_flat) ||
	    (src->payload_error && !dst->payload_error)) {
		qry_feed_event_release(dst);
		return -1;
	}
	return 0;
}

void qry_feed_event_release(struct es_event *e)
{
	free(e->stream_id);
	free(e->type);
	free(e->recorded_at);
	free(e->metadata);
	json_decref(e->payload);
	free(e->payload_flat);
	free(e->payload_error);
	memset(e, 0, sizeof(*e));
}
