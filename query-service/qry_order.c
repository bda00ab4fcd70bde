/*
 * qry_order.c - a binary min-heap by position, and an es_table from
 * stream hashes (FNV-1a, 64 bits) to positions.
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

int qry_order_advance(struct qry_order_guard *g, const char *stream_id,
		      long long position)
{
	struct es_table_slot *s;
	int added;

	s = es_table_put_hash(&g->streams, es_hash_str(stream_id), &added);
	if (!s)
		return -1;
	if (!added && s->val.num >= position)
		return 0;
	s->val.num = position;
	return 1;
}

size_t qry_order_streams(const struct qry_order_guard *g)
{
	return g->streams.n;
}

void qry_order_guard_release(struct qry_order_guard *g)
{
	es_table_release(&g->streams);
}
