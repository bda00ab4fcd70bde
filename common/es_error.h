/* es_error.h - one error type for both services, and its HTTP mapping. */
#ifndef ES_ERROR_H
#define ES_ERROR_H

#include <jansson.h>

enum es_err {
	ES_OK = 0,
	ES_EMALFORMED, /* 400: body not JSON, bad cursor or token */
	ES_EUNAUTHORIZED, /* 401: no bearer token, or not a valid one */
	ES_EFORBIDDEN, /* 403: a valid token without a role the route admits */
	ES_ENOTFOUND, /* 404: unknown route, account, stream */
	ES_EMETHOD, /* 405: wrong method on a known route */
	ES_ECONFLICT, /* 409: rule broken by current state, version clash */
	ES_EPRECONDITION, /* 412: If-Match does not match */
	ES_ETOOLARGE, /* 413: body over the limit */
	ES_EMEDIATYPE, /* 415: wrong content type */
	ES_EINVALID, /* 422: fields missing, of wrong type, out of range */
	ES_EUNAVAIL, /* 503: database unreachable, pool exhausted, timeout */
	ES_EINTERNAL, /* 500: a bug or an unexpected database answer */
	ES_EUNKNOWN, /* 504: a command's transaction may have committed, and
		      * whether it did cannot be known in time */
	ES_ERR__COUNT
};

struct es_error {
	enum es_err code; /* ES_OK until the first es_error_set() */
	char detail[200]; /* shown to the client */
	json_t *fields; /* owned: [{field, message}] for 422, or NULL */
	long long
		current_version; /* with ES_ECONFLICT/ES_EPRECONDITION, or -1 */
	int retry_after; /* seconds, for ES_EUNAVAIL; 0 means the default */
};

#define ES_ERROR_INIT                                \
	{                                            \
		.code = ES_OK, .current_version = -1 \
	}

/*
 * Record an error unless one is already recorded (first error wins).
 * `err` may be NULL. Returns -1 so that `return es_error_set(...)` reads well.
 */
int es_error_set(struct es_error *err, enum es_err code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Add a field problem ({field, message}) and make the error ES_EINVALID
 * unless another code is already set. Returns -1.
 */
int es_error_field(struct es_error *err, const char *field, const char *fmt,
		   ...) __attribute__((format(printf, 3, 4)));

/* Whether any error (or field problem) has been recorded. */
int es_error_isset(const struct es_error *err);

/* Free what the error owns and make it ES_OK again. */
void es_error_release(struct es_error *err);

/* HTTP status, problem `type` URI and `title` of each code. */
unsigned int es_error_status(enum es_err code);
const char *es_error_title(enum es_err code);
const char *es_error_type(enum es_err code);

/*
 * The RFC 9457 problem object for `err`:
 * {type, title, status, detail, errors?, current_version?}.
 * Caller frees with json_decref().
 */
json_t *es_error_problem(const struct es_error *err);

#endif
