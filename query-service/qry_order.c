/*
 * qry_order.c - a binary min-heap by position, and a hash table from
 * stream hashes (FNV-1a, 64 bits) to positions: open addressing, linear
 * probing, at most half full.
 */
#include "qry_order.h"

#include <stdlib.h>
#include <string.h>

#include "es_hash.h"

int qry_order_push(struct qry_order_heap *h, long long position, void *item)
{
	struct qry_order_entry e = { position, item }, *v;
	size_t i, parent;

	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 1024;

		v = realloc(h->v, cap * sizeof(*v));
		if (!v)
			return -1;
		h->v = v;
		h->cap = cap;
	}
	/* sift up: for positions that mostly grow, no move at all */
	for (i = h->n++; i > 0; i = parent) {
		parent = (i - 1) / 2;
		if (h->v[parent].position <= position)
			break;
		h->v[i] = h->v[parent];
	}
	h->v[i] = e;
	return 0;
}

int qry_order_pop(struct qry_order_heap *h, struct qry_order_entry *out)
{
	struct qry_order_entry last;
	size_t i = 0, child;

	if (!h->n)
		return 0;
	*out = h->v[0];
	last = h->v[--h->n];
	/* sift the last entry down from the root */
	for (;;) {
		child = 2 * i + 1;
		if (child >= h->n)
			break;
		if (child + 1 < h->n &&
		    h->v[child + 1].position < h->v[child].position)
			child++;
		if (last.position <= h->v[child].position)
			break;
		h->v[i] = h->v[child];
		i = child;
	}
	if (h->n)
		h->v[i] = last;
	return 1;
}

void qry_order_heap_release(struct qry_order_heap *h)
{
	free(h->v);
	memset(h, 0, sizeof(*h));
}

static uint64_t hash_of(const char *s)
{
	uint64_t h = es_hash_str(s);

	/* 0 marks a free slot */
	return h ? h : 1;
}

static struct qry_order_slot *slot_of(struct qry_order_slot *v, size_t cap,
				      uint64_t hash)
{
	size_t i = (size_t)(hash ^ hash >> 32) & (cap - 1);

	while (v[i].hash && v[i].hash != hash)
		i = (i + 1) & (cap - 1);
	return &v[i];
}

static int grow(struct qry_order_guard *g)
{
	size_t cap = g->cap ? g->cap * 2 : 4096, i;
	struct qry_order_slot *v = calloc(cap, sizeof(*v));

	if (!v)
		return -1;
	for (i = 0; i < g->cap; i++)
		if (g->v[i].hash)
			*slot_of(v, cap, g->v[i].hash) = g->v[i];
	free(g->v);
	g->v = v;
	g->cap = cap;
	return 0;
}

int qry_order_advance(struct qry_order_guard *g, const char *stream_id,
		      long long position)
{
	uint64_t hash = hash_of(stream_id);
	struct qry_order_slot *s;

	if ((g->n + 1) * 2 > g->cap && grow(g) < 0)
		return -1;
	s = slot_of(g->v, g->cap, hash);
	if (s->hash) {
		if (s->position >= position)
			return 0;
	} else {
		s->hash = hash;
		g->n++;
	}
	s->position = position;
	return 1;
}

size_t qry_order_streams(const struct qry_order_guard *g)
{
	return g->n;
}

void qry_order_guard_release(struct qry_order_guard *g)
{
	free(g->v);
	memset(g, 0, sizeof(*g));
}
