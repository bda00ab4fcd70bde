/* es_error.c - errors and the one table that maps them to HTTP. */
#include "es_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/*
 * vsnprintf() may cut the detail inside a UTF-8 sequence; drop the
 * partial character so that the problem body stays valid JSON.
 */
static void trim_partial_utf8(char *s)
{
	size_t len = strlen(s), i = len, need;
	unsigned char c;

	while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80 && len - i < 3)
		i--;
	if (i == 0)
		return;
	c = (unsigned char)s[i - 1];
	if (c < 0x80)
		return;
	need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
	if (len - (i - 1) < need)
		s[i - 1] = '\0';
}

static const struct {
	unsigned int status;
	const char *type;
	const char *title;
} problem_of[ES_ERR__COUNT] = {
	[ES_OK] = { 200, "about:blank", "OK" },
	[ES_EMALFORMED] = { 400, "https://tandem.dev/problems/malformed",
			    "Malformed request" },
	[ES_EUNAUTHORIZED] = { 401, "https://tandem.dev/problems/unauthorized",
			       "Unauthorized" },
	[ES_EFORBIDDEN] = { 403, "https://tandem.dev/problems/forbidden",
			    "Forbidden" },
	[ES_ENOTFOUND] = { 404, "https://tandem.dev/problems/not-found",
			   "Not found" },
	[ES_EMETHOD] = { 405, "https://tandem.dev/problems/method-not-allowed",
			 "Method not allowed" },
	[ES_ECONFLICT] = { 409, "https://tandem.dev/problems/conflict",
			   "Conflict" },
	[ES_EPRECONDITION] = { 412,
			       "https://tandem.dev/problems/precondition-failed",
			       "Precondition failed" },
	[ES_ETOOLARGE] = { 413, "https://tandem.dev/problems/too-large",
			   "Content too large" },
	[ES_EMEDIATYPE] = { 415,
			    "https://tandem.dev/problems/unsupported-media-type",
			    "Unsupported media type" },
	[ES_EINVALID] = { 422, "https://tandem.dev/problems/invalid-fields",
			  "Invalid fields" },
	[ES_EUNAVAIL] = { 503, "https://tandem.dev/problems/unavailable",
			  "Service unavailable" },
	[ES_EINTERNAL] = { 500, "https://tandem.dev/problems/internal",
			   "Internal error" },
	[ES_EUNKNOWN] = { 504, "https://tandem.dev/problems/outcome-unknown",
			  "Outcome unknown" },
};

int es_error_set(struct es_error *err, enum es_err code, const char *fmt, ...)
{
	va_list ap;

	if (!err || err->code != ES_OK)
		return -1;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
	va_end(ap);
	trim_partial_utf8(err->detail);
	return -1;
}

int es_error_field(struct es_error *err, const char *field, const char *fmt,
		   ...)
{
	char msg[200];
	va_list ap;

	if (!err)
		return -1;
	if (err->code == ES_OK) {
		err->code = ES_EINVALID;
		snprintf(err->detail, sizeof(err->detail),
			 "one or more fields are invalid");
	}
	if (err->code != ES_EINVALID)
		return -1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!err->fields)
		err->fields = json_array();
	json_array_append_new(err->fields, json_pack("{s:s, s:s}", "field",
						     field, "message", msg));
	return -1;
}

int es_error_isset(const struct es_error *err)
{
	return err && err->code != ES_OK;
}

void es_error_release(struct es_error *err)
{
	if (!err)
		return;
	json_decref(err->fields);
	err->fields = NULL;
	err->code = ES_OK;
	err->detail[0] = '\0';
	err->current_version = -1;
	err->retry_after = 0;
}

static int valid_code(enum es_err code)
{
	return (int)code >= 0 && code < ES_ERR__COUNT;
}

unsigned int es_error_status(enum es_err code)
{
	return valid_code(code) ? problem_of[code].status : 500;
}

const char *es_error_title(enum es_err code)
{
	return valid_code(code) ? problem_of[code].title : "Internal error";
}

const char *es_error_type(enum es_err code)
{
	return valid_code(code) ? problem_of[code].type
				: problem_of[ES_EINTERNAL].type;
}

json_t *es_error_problem(const struct es_error *err)
{
	enum es_err code = err ? err->code : ES_EINTERNAL;
	json_t *p;

	if (code == ES_OK)
		code = ES_EINTERNAL;
	p = json_pack("{s:s, s:s, s:i, s:s}", "type", es_error_type(code),
		      "title", es_error_title(code), "status",
		      (int)es_error_status(code), "detail",
		      err && err->detail[0] ? err->detail
					    : es_error_title(code));
	if (!p)
		return NULL;
	if (err && err->fields)
		json_object_set(p, "errors", err->fields);
	if (err && err->current_version >= 0)
		json_object_set_new(p, "current_version",
				    json_integer(err->current_version));
	return p;
}
