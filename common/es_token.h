/* es_token.h - position tokens: what an append wrote, what a read has seen. */
#ifndef ES_TOKEN_H
#define ES_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "es_error.h"

/*
 * Three textual forms, all opaque to clients (SPEC section 3, guarantee 5):
 *
 *   append token   "<xid>.<position>": the appending transaction's xid8 and
 *                  the greatest global_position it wrote.
 *   read token     "<xmin>:<xmax>:<xip>,<xip>,..." (pg_snapshot text, xip
 *                  ascending): the reader has seen exactly the events of
 *                  the transactions visible in that snapshot. The beginning
 *                  of the log is "0:0:".
 *   mid-window     "<lo>/<hi>/<xid>.<position>", lo and hi snapshots: all
 *                  of lo, plus those events visible in hi but not in lo
 *                  that come up to (xid, position) in (transaction_id,
 *                  global_position) order. A window read in several pages.
 *
 * Numbers are plain decimal without sign or leading zeros, so every token
 * has exactly one spelling. Anything else is ES_EMALFORMED.
 */

/* Longest token accepted or produced (a snapshot with many xips). */
#define ES_TOKEN_MAX (64 * 1024)
/* Room for any append token and its NUL: 20 + 1 + 19 + 1 digits and dot. */
#define ES_APPEND_TOKEN_MAX 48
/* The read token of the beginning of the log. */
#define ES_CURSOR_START "0:0:"

/* A pg_snapshot: xids below xmax and not in xip are finished. */
struct es_snapshot {
	uint64_t xmin, xmax;
	uint64_t *xip; /* owned, strictly ascending, each in [xmin, xmax) */
	size_t nxip;
};

/* A read token. A full one keeps its snapshot in `lo` (hi is empty). */
struct es_cursor {
	struct es_snapshot lo, hi;
	int mid; /* 1: mid-window, (xid, pos) is the last event read */
	uint64_t xid;
	int64_t pos;
};

struct es_append_token {
	uint64_t xid;
	int64_t pos;
};

/*
 * Parse a snapshot. ES_EMALFORMED for junk, overflow, xmin > xmax, an xip
 * outside [xmin, xmax), unsorted or duplicate xips, over ES_TOKEN_MAX.
 * ownership: caller frees `out` with es_snapshot_release(); untouched on
 * failure.
 */
int es_snapshot_parse(const char *s, struct es_snapshot *out,
		      struct es_error *err);

/* The text form. Caller frees with free(); NULL when out of memory. */
char *es_snapshot_format(const struct es_snapshot *s);

/* Deep copy; -1 (ES_EINTERNAL) when out of memory. */
int es_snapshot_copy(struct es_snapshot *dst, const struct es_snapshot *src,
		     struct es_error *err);

/* Free the xip list and empty `s`. */
void es_snapshot_release(struct es_snapshot *s);

/* Whether transaction `xid` had finished when `s` was taken. */
int es_snapshot_visible(const struct es_snapshot *s, uint64_t xid);

/* Whether every transaction visible in `b` is visible in `a` (exact). */
int es_snapshot_covers(const struct es_snapshot *a,
		       const struct es_snapshot *b);

int es_snapshot_equal(const struct es_snapshot *a, const struct es_snapshot *b);

/*
 * `out` = the snapshot in which exactly the transactions visible in `a`
 * or in `b` are visible: it covers both. Sound as a read token only when
 * a reader at `a` and one at `b` hold the same events, or those of one
 * include the other's (the union's events are then the larger set).
 * ownership: caller frees `out` with es_snapshot_release(); untouched on
 * failure (-1, ES_EINTERNAL: out of memory).
 */
int es_snapshot_union(struct es_snapshot *out, const struct es_snapshot *a,
		      const struct es_snapshot *b, struct es_error *err);

/* Make `c` the beginning of the log, "0:0:" (nothing seen). */
void es_cursor_init(struct es_cursor *c);

/*
 * Parse a read token of either form. A mid-window token must also be
 * consistent: hi covers lo, and (xid) is visible in hi but not in lo.
 * ownership: caller frees `out` with es_cursor_release(); untouched on
 * failure.
 */
int es_cursor_parse(const char *s, struct es_cursor *out, struct es_error *err);

/* The text form. Caller frees with free(); NULL when out of memory. */
char *es_cursor_format(const struct es_cursor *c);

/* Deep copy; -1 (ES_EINTERNAL) when out of memory. */
int es_cursor_copy(struct es_cursor *dst, const struct es_cursor *src,
		   struct es_error *err);

/* Free what `c` owns and make it the beginning of the log again. */
void es_cursor_release(struct es_cursor *c);

/* Whether a reader at `c` has seen every event of the append `a`. */
int es_cursor_covers_append(const struct es_cursor *c,
			    const struct es_append_token *a);

/*
 * Whether a reader at `a` has seen every event a reader at `b` has seen.
 * Sound, and conservative for mid-window cursors: it may answer 0 although
 * `a` has in fact seen all of `b` (the answer turns 1 once `a` finishes
 * its window).
 */
int es_cursor_covers(const struct es_cursor *a, const struct es_cursor *b);

/* Parse "<xid>.<position>"; ES_EMALFORMED otherwise. */
int es_append_token_parse(const char *s, struct es_append_token *out,
			  struct es_error *err);

/*
 * Write "<xid>.<position>" into `buf` (ES_APPEND_TOKEN_MAX is enough).
 * Returns its length, or -1 if `len` is too small.
 */
int es_append_token_format(const struct es_append_token *a, char *buf,
			   size_t len);

/*
 * Whether `read_token` (a read token) covers `token`, which may be an
 * append token or another read token. 1 or 0; -1 and ES_EMALFORMED when
 * either does not parse.
 */
int es_token_covers(const char *read_token, const char *token,
		    struct es_error *err);

#endif
