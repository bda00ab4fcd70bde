/*
 * audit.h - the audit view: every command a principal caused, read from
 * the events' metadata (SPEC section 11): `principal` {"sub", "iss",
 * "roles"} and `command_id`, which every event of one command shares.
 * One row per (principal, command) in table view_audit: the command's
 * position (its first event's global_position), that event's
 * recorded_at and correlation_id, and its events (position, stream,
 * version, type, amount). GET /audit/principals/{sub}/actions pages
 * through a principal's rows by position.
 *
 * The fold never fails on metadata: an event whose metadata has no
 * principal object, or one whose sub is not a string of 1 to
 * VIEW_AUDIT_SUB_MAX bytes, is skipped; a command_id or correlation_id
 * that is not a string of 1 to VIEW_AUDIT_ID_MAX bytes counts as absent.
 * An event without a command_id is a command of its own. An event's
 * amount is the integer `amount` of its payload, for the streams whose
 * payloads the views decode (view_payload_wanted()); none otherwise.
 */
#ifndef VIEW_AUDIT_H
#define VIEW_AUDIT_H

#include <jansson.h>
#include <stddef.h>

#include "es_buf.h"
#include "es_error.h"
#include "es_store.h"
#include "payload.h"
#include "view.h"

/* Longest principal sub, and command or correlation id, in bytes. */
#define VIEW_AUDIT_SUB_MAX 256
#define VIEW_AUDIT_ID_MAX  256

/* What an event's metadata tells the view. */
struct view_audit_meta {
	char sub[VIEW_AUDIT_SUB_MAX + 1];
	char command_id[VIEW_AUDIT_ID_MAX + 1]; /* "" when absent */
	char correlation_id[VIEW_AUDIT_ID_MAX + 1]; /* "" when absent */
};

/*
 * Read `len` bytes of metadata text `s` (may be NULL) into `m` (pure):
 * 1 when it names a principal the view lists, else 0. Never fails.
 */
int view_audit_meta_read(const char *s, size_t len, struct view_audit_meta *m);

/* One event of a command. */
struct view_audit_event {
	long long position, version;
	char *stream_id, *type; /* owned by the batch */
	int has_amount;
	long long amount;
};

/* One command of one principal, as a batch has folded it so far. */
struct view_audit_action {
	char *sub; /* owned */
	char *command_id; /* owned; NULL: the event had none */
	char *correlation_id; /* owned; NULL when none */
	long long position; /* of its first event */
	char recorded_at[VIEW_TIME_MAX]; /* of its first event */
	struct view_audit_event *ev; /* position order */
	size_t nev, alloc;
	char *key; /* owned: the batch's key of sub and command_id */
	/* an event of a transaction an earlier batch may have begun */
	int resumed;
};

/*
 * The commands of a batch of view_audit_ops, in the order first seen.
 * ownership: borrowed from the batch, valid until it changes.
 */
const struct view_audit_action *view_audit_actions(const void *batch,
						   size_t *n);

/*
 * The events of `a` as the JSON text view_audit stores (jsonb):
 * [{"position", "stream", "version", "type", "amount"}] in position
 * order, amount null when the event has none. Appended to `out`.
 */
void view_audit_events_json(const struct view_audit_action *a,
			    struct es_buf *out);

/*
 * An item of the route from a row: {position, recorded_at, command_id,
 * correlation_id, streams, events}, `streams` the distinct streams of
 * `events` (the stored JSON text) in the order they first appear, null
 * for a missing id. Caller frees with json_decref(); NULL when out of
 * memory or `events` is not a JSON array.
 */
json_t *view_audit_item_json(long long position, const char *recorded_at,
			     const char *command_id, const char *correlation_id,
			     const char *events);

extern const struct view_ops view_audit_ops;

/* GET /audit/principals/{sub}/actions (qry_read.h). */
struct qry_read_def;
extern const struct qry_read_def view_audit_read;

#endif
