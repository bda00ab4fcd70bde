/*
 * cmd_streams.c - the raw append: POST /streams/{stream_id}/events with
 * {"expected_version": "any" | "no_stream" | N, "events": [...]}.
 *
 * No aggregate to decide for: parse, validate, append (in a group-commit
 * round, cmd_batch.h), respond. The store checks the expected version
 * (409 with current_version on a mismatch, 412 when it came from
 * If-Match) and makes a retry that carries the same event ids answer
 * like the first append did.
 */
#include "cmd_streams.h"

#include <stdio.h>

#include "cmd_parse.h"
#include "cmd_routes.h"
#include "es_http.h"
#include "es_store.h"

struct stream_req {
	struct cmd_request base;
	struct raw_append_cmd cmd;
	json_t *events; /* owned: the client's events with our metadata */
	int all_ids; /* every event carries an event_id */
};

/* 0 for "no_stream": the same expectation as version 0. */
static long long as_version(long long expected)
{
	return expected == ES_NO_STREAM ? 0 : expected;
}

/*
 * Whether a conflict may go away by itself: an "any" append lost a race
 * for a version, or (on the first decision) a twin with the same event
 * ids committed first, whose answer the next decision returns. An event
 * id that another append stored (current_version -1) stays a conflict.
 */
static int worth_retrying(const struct stream_req *r,
			  const struct es_error *err)
{
	return err->code == ES_ECONFLICT &&
	       ((r->cmd.expected == ES_ANY && err->current_version >= 0) ||
		(r->all_ids && r->base.attempts == 1));
}

static enum cmd_step append_decide(struct cmd_request *cr, PGconn *db,
				   int fresh)
{
	struct stream_req *r = (struct stream_req *)cr;

	(void)db;
	(void)fresh;
	cr->streams[0].stream_id = r->cmd.stream_id;
	cr->streams[0].expected = r->cmd.expected;
	cr->streams[0].events = r->events;
	cr->streams[0].version = 0;
	cr->nstreams = 1;
	return CMD_APPEND;
}

static enum cmd_step append_appended(struct cmd_request *cr, const char *token,
				     const struct es_error *err)
{
	struct stream_req *r = (struct stream_req *)cr;
	struct es_error pre = ES_ERROR_INIT;
	char etag[32];

	if (!err) {
		/* respond */
		cmd_reply(cr, 201,
			  json_pack("{s:I, s:s}", "version",
				    (json_int_t)cr->streams[0].version,
				    "position", token));
		snprintf(etag, sizeof(etag), "\"%lld\"",
			 cr->streams[0].version);
		cmd_reply_header(cr, "ETag", etag);
		return CMD_DONE;
	}
	if (worth_retrying(r, err))
		return CMD_AGAIN;
	/* a 409 or 412 is kept with its key */
	if (err->code == ES_ECONFLICT && cr->if_match >= 0 &&
	    err->current_version >= 0) {
		es_error_set(
			&pre, ES_EPRECONDITION,
			"stream '%s' is at version %lld, If-Match wants %lld",
			r->cmd.stream_id, err->current_version, cr->if_match);
		pre.current_version = err->current_version;
		cmd_reply_error(cr, &pre);
	} else {
		cmd_reply_error(cr, err);
	}
	es_error_release(&pre);
	return CMD_DONE;
}

static void stream_req_release(struct cmd_request *cr)
{
	struct stream_req *r = (struct stream_req *)cr;

	json_decref(r->events);
	r->events = NULL;
}

static const struct cmd_steps stream_steps = {
	.decide = append_decide,
	.appended = append_appended,
	.release = stream_req_release,
	.gave_up = "stream '%s' changed too often to append; try again",
};

/*
 * If-Match and the body's expected_version must agree; "any" in the body
 * leaves the expectation to If-Match.
 */
static int merge_if_match(struct stream_req *r, struct es_error *err)
{
	long long want = r->base.if_match;

	if (want < 0)
		return 0;
	if (r->cmd.expected == ES_ANY) {
		r->cmd.expected = want > 0 ? want : ES_NO_STREAM;
		return 0;
	}
	if (as_version(r->cmd.expected) != want)
		return es_error_set(
			err, ES_EMALFORMED,
			"If-Match wants version %lld but expected_version says %lld",
			want, as_version(r->cmd.expected));
	return 0;
}

void cmd_post_stream_events(struct es_request *req)
{
	struct es_error err = ES_ERROR_INIT;
	struct stream_req *r;
	json_t *ev;
	size_t i;

	r = (struct stream_req *)cmd_request_new(req, sizeof(*r), "append",
						 &stream_steps);
	if (!r)
		return;
	/* parse and validate; the rest runs on a worker */
	if (cmd_parse_raw_append(es_request_param(req, "stream_id"), req->json,
				 &r->cmd, &err) < 0 ||
	    merge_if_match(r, &err) < 0)
		goto fail;
	r->events = json_deep_copy(r->cmd.events);
	if (!r->events) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		goto fail;
	}
	if (cmd_add_metadata(&r->base, r->events, &err) < 0)
		goto fail;
	r->all_ids = 1;
	json_array_foreach(r->events, i, ev) r->all_ids &=
		json_object_get(ev, "event_id") != NULL;
	r->base.lock[0] = r->cmd.stream_id;
	cmd_request_submit(&r->base);
	return;
fail:
	cmd_request_fail(req, &r->base, &err);
	es_error_release(&err);
}
