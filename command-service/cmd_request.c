/*
 * cmd_request.c - a command request: metadata from the headers, the
 * parsed command, the answer and its sending.
 */
#include "cmd_request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_metrics.h"
#include "cmd_parse.h"
#include "es_event.h"
#include "es_http.h"
#include "es_json.h"
#include "es_uuid.h"

/* 1 to `max` characters of printable ASCII without spaces. */
static int printable_id(const char *s, size_t max)
{
	size_t n;

	if (!s)
		return 0;
	for (n = 0; s[n]; n++)
		if (n == max || s[n] < 0x21 || s[n] > 0x7e)
			return 0;
	return n > 0;
}

static int lower_hex(const char *s, size_t n)
{
	size_t i;
	int nonzero = 0;

	for (i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return -1;
		nonzero |= s[i] != '0';
	}
	return nonzero;
}

/*
 * W3C trace context, version 00:
 * ^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$, trace and parent ids not
 * all zero.
 */
static int valid_traceparent(const char *s)
{
	return s && strlen(s) == 55 && s[0] == '0' && s[1] == '0' &&
	       s[2] == '-' && s[35] == '-' && s[52] == '-' &&
	       lower_hex(s + 3, 32) == 1 && lower_hex(s + 36, 16) == 1 &&
	       lower_hex(s + 53, 2) >= 0;
}

/* snprintf(dst, size, "%s", src) without printf's machinery. */
static void copy_str(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void request_free(struct cmd_request *cr)
{
	if (!cr)
		return;
	cmd_decision_release(&cr->decision);
	cmd_release(&cr->cmd);
	json_decref(cr->metadata);
	json_decref(cr->body);
	json_decref(cr->headers);
	free(cr);
}

struct cmd_request *cmd_request_new(struct es_request *req,
				    const struct cmd_kind *kind)
{
	struct es_error err = ES_ERROR_INIT;
	struct cmd_request *cr;
	const char *s;

	cr = calloc(1, sizeof(*cr));
	if (!cr) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		cmd_request_fail(req, NULL, &err);
		return NULL;
	}
	cr->req = req;
	cr->kind = kind;
	cr->cmd.if_match = -1;
	/*
	 * Time-ordered: the audit view's unique index on (sub, command_id)
	 * then takes a principal's commands at its end, not at random pages
	 */
	es_uuid_v7_text(cr->command_id);
	s = es_request_header(req, "X-Correlation-Id");
	copy_str(cr->correlation_id, sizeof(cr->correlation_id),
		 printable_id(s, CMD_ID_MAX) ? s : cr->command_id);
	es_http_add_header(req, "X-Correlation-Id", cr->correlation_id);
	s = es_request_header(req, "X-Causation-Id");
	/* printable ASCII all three: no UTF-8 check needed */
	cr->metadata = json_object();
	if (cr->metadata &&
	    (json_object_set_new_nocheck(cr->metadata, ES_M_COMMAND_ID,
					 json_string_nocheck(cr->command_id)) <
		     0 ||
	     json_object_set_new_nocheck(
		     cr->metadata, ES_M_CORRELATION_ID,
		     json_string_nocheck(cr->correlation_id)) < 0 ||
	     json_object_set_new_nocheck(
		     cr->metadata, ES_M_CAUSATION_ID,
		     json_string_nocheck(printable_id(s, CMD_ID_MAX)
						 ? s
						 : cr->command_id)) < 0)) {
		json_decref(cr->metadata);
		cr->metadata = NULL;
	}
	cr->headers = json_object();
	if (!cr->metadata || !cr->headers) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		goto fail;
	}
	/* who: the verified principal, never a client's header */
	if (!req->principal ||
	    json_object_set_new(cr->metadata, ES_M_PRINCIPAL,
				es_principal_json(req->principal)) < 0) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		goto fail;
	}
	copy_str(cr->iss, sizeof(cr->iss), req->principal->iss);
	copy_str(cr->sub, sizeof(cr->sub), req->principal->sub);
	if (!(req->principal->roles & ES_ROLE_MANAGER))
		copy_str(cr->cmd.holder, sizeof(cr->cmd.holder),
			 req->principal->sub);
	s = es_request_header(req, "traceparent");
	if (valid_traceparent(s))
		json_object_set_new(cr->metadata, "traceparent",
				    json_string(s));
	s = es_request_header(req, "Idempotency-Key");
	if (s) {
		if (!printable_id(s, CMD_KEY_MAX)) {
			es_error_set(
				&err, ES_EMALFORMED,
				"Idempotency-Key must be 1 to %d characters of printable ASCII without spaces",
				CMD_KEY_MAX);
			goto fail;
		}
		copy_str(cr->key, sizeof(cr->key), s);
	}
	if (cmd_parse_if_match(es_request_header(req, "If-Match"),
			       &cr->cmd.if_match, &err) < 0 ||
	    kind->parse(req, &cr->cmd, &err) < 0)
		goto fail;
	return cr;
fail:
	cmd_request_fail(req, cr, &err);
	es_error_release(&err);
	return NULL;
}

void cmd_request_fail(struct es_request *req, struct cmd_request *cr,
		      const struct es_error *err)
{
	es_http_send_problem(req, err);
	cmd_metrics_command(cr ? cr->kind->name : "other",
			    es_error_status(err->code));
	request_free(cr);
}

int cmd_request_add_metadata(struct cmd_request *cr, json_t *events,
			     struct es_error *err)
{
	json_t *ev, *meta;
	size_t i;

	json_array_foreach(events, i, ev)
	{
		meta = json_object_get(ev, "metadata");
		if (!json_is_object(meta)) {
			meta = json_object();
			if (!meta || json_object_set_new(ev, "metadata", meta))
				return es_error_set(err, ES_EINTERNAL,
						    "out of memory");
		}
		/* ours win over a client's keys of the same name */
		if (json_object_update(meta, cr->metadata) < 0)
			return es_error_set(err, ES_EINTERNAL, "out of memory");
	}
	return 0;
}

/* ---- answers ---- */

void cmd_reply(struct cmd_request *cr, unsigned int status, json_t *body,
	       const json_t *headers)
{
	json_decref(cr->body);
	cr->body = body;
	cr->status = status;
	json_object_clear(cr->headers);
	if (headers)
		json_object_update(cr->headers, (json_t *)headers);
	cr->retry_after = 0;
}

void cmd_reply_error(struct cmd_request *cr, const struct es_error *err)
{
	json_t *p = es_error_problem(err);
	char etag[32];

	if (!p) {
		/* the detail may echo bytes that are not UTF-8 */
		struct es_error tmp = *err;

		es_json_printable(tmp.detail);
		p = es_error_problem(&tmp);
	}
	cmd_reply(cr, es_error_status(err->code), p, NULL);
	if (err->code == ES_EPRECONDITION && err->current_version >= 0) {
		snprintf(etag, sizeof(etag), "\"%lld\"", err->current_version);
		json_object_set_new(cr->headers, "ETag", json_string(etag));
	}
	if (err->code == ES_EUNAVAIL)
		cr->retry_after = err->retry_after > 0 ? err->retry_after : 1;
}

/*
 * The answer's body as sent (and stored, as jsonb): compact with sorted
 * keys, so that a replay from the jsonb column is byte for byte the same.
 */
static char *body_text(const struct cmd_request *cr, size_t *len)
{
	return es_json_dump_sorted(cr->body, len);
}

/* Headers an answer carries at most: its own (ETag, Location) and ours. */
#define SEND_HEADERS_MAX 8

void cmd_request_send(struct cmd_request *cr)
{
	struct es_request *req = cr->req;
	const char *hv[2 * SEND_HEADERS_MAX];
	const char *name;
	json_t *value;
	char *text = NULL;
	char retry[16];
	size_t len = 0, n = 0;

	if (cr->body)
		text = body_text(cr, &len);
	if (!text) {
		struct es_error err = ES_ERROR_INIT;

		es_error_set(&err, ES_EINTERNAL, "cannot encode the answer");
		es_http_send_problem(req, &err);
		cmd_metrics_command(cr->kind->name, 500);
		goto out;
	}
	json_object_foreach(cr->headers, name, value)
	{
		if (n == SEND_HEADERS_MAX - 2) {
			es_http_add_header(req, name, json_string_value(value));
			continue;
		}
		hv[2 * n] = name;
		hv[2 * n + 1] = json_string_value(value);
		n++;
	}
	if (cr->replayed) {
		hv[2 * n] = "Idempotent-Replayed";
		hv[2 * n + 1] = "true";
		n++;
	}
	if (cr->status == 503) {
		snprintf(retry, sizeof(retry), "%d",
			 cr->retry_after > 0 ? cr->retry_after : 1);
		hv[2 * n] = "Retry-After";
		hv[2 * n + 1] = retry;
		n++;
	}
	/* the text goes out as it is, not copied */
	es_http_send_buffer_with(req, cr->status,
				 cr->status >= 400 ? "application/problem+json"
						   : "application/json",
				 text, len, hv, n);
	text = NULL;
	cmd_metrics_command(cr->kind->name, cr->status);
	if (cr->replayed)
		cmd_metrics_replay();
out:
	free(text);
	request_free(cr);
	es_http_resume(req);
}
