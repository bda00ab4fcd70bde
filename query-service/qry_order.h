/*
 * qry_order.h - putting events read in a table's physical order back in
 * log order, as far as folds need it: a min-heap of waiting events by
 * position, and a guard that knows, per stream, the position last folded.
 *
 * Folds depend on the order of the events of each stream only (which is
 * position order), so an event may be folded late (after events of other
 * streams with higher positions) as long as no later event of its own
 * stream was folded first: that is what the guard checks.
 */
#ifndef QRY_ORDER_H
#define QRY_ORDER_H

#include <stddef.h>
#include <stdint.h>

#include "es_table.h"

/* A min-heap of (position, item). */
struct qry_order_heap {
	struct qry_order_entry {
		long long position;
		void *item;
	} * v;
	size_t n, cap;
};

#define QRY_ORDER_HEAP_INIT \
	{                   \
		0           \
	}

/* Add `item` at `position`: 0, or -1 when out of memory. */
int qry_order_push(struct qry_order_heap *h, long long position, void *item);

/*
 * Take the entry of the lowest position into `*out` (of equal positions,
 * any one): 1, or 0 when the heap is empty.
 */
int qry_order_pop(struct qry_order_heap *h, struct qry_order_entry *out);

/* Free the entries (not the items); `h` is empty afterwards. */
void qry_order_heap_release(struct qry_order_heap *h);

/*
 * Per stream (by a 64-bit hash of its id: two streams of one hash are
 * treated as one, which can only refuse an order that was fine), the
 * highest position folded.
 */
struct qry_order_guard {
	struct es_table streams; /* by hash: the position in val.num */
};

#define QRY_ORDER_GUARD_INIT  \
	{                     \
		ES_TABLE_INIT \
	}

/*
 * Whether an event of `stream_id` at `position` may be folded now: 1 (and
 * `position` is recorded as the stream's last) when no event of the
 * stream at this or a higher position was; 0 when one was; -1 when out
 * of memory.
 */
int qry_order_advance(struct qry_order_guard *g, const char *stream_id,
		      long long position);

/* Streams the guard knows. */
size_t qry_order_streams(const struct qry_order_guard *g);

void qry_order_guard_release(struct qry_order_guard *g);

#endif
