/*
 * cmd_parse.h - parse and validate command bodies into commands.
 *
 * Every bad field is listed (es_error_field(), 422); a path id that is
 * not a UUID is ES_ENOTFOUND (404). Amounts are JSON integers with
 * 0 < amount <= 10^12 (1.5, "10", 1e3, negatives and numbers beyond
 * int64 are refused); owner 1-200 characters of UTF-8; currency
 * ^[A-Z]{3}$; overdraft_limit an integer >= 0 (default 0);
 * reference <= 200 characters; expected_version an integer >= 0;
 * UUIDs are accepted in any case and stored lower-case. Unknown fields
 * are refused too, so that a typo does not pass silently.
 * ownership: the commands borrow strings from `body`.
 */
#ifndef CMD_PARSE_H
#define CMD_PARSE_H

#include <jansson.h>

#include "account_decide.h"
#include "es_error.h"

int cmd_parse_open(const json_t *body, struct open_cmd *cmd,
		   struct es_error *err);
int cmd_parse_money(const char *path_id, const json_t *body,
		    struct money_cmd *cmd, struct es_error *err);
int cmd_parse_transfer(const json_t *body, struct transfer_cmd *cmd,
		       struct es_error *err);
int cmd_parse_close(const char *path_id, const json_t *body,
		    struct close_cmd *cmd, struct es_error *err);
/* overdraft_limit is required here, in the same range as an opening's. */
int cmd_parse_overdraft_limit(const char *path_id, const json_t *body,
			      struct overdraft_cmd *cmd, struct es_error *err);

/*
 * If-Match: "<version>" (a strong entity tag holding a version >= 0).
 * Sets *version, or -1 when the header is absent (NULL). A malformed
 * value is ES_EMALFORMED (400).
 */
int cmd_parse_if_match(const char *header, long long *version,
		       struct es_error *err);

/* The raw append: POST /streams/{stream_id}/events. */
struct raw_append_cmd {
	const char *stream_id;
	long long expected; /* ES_ANY, ES_NO_STREAM or N >= 0 (es_store.h) */
	const json_t *events; /* [{type, data, metadata?, event_id?}] */
};

/*
 * Stream ids: 1-200 characters of printable ASCII without '/', and not
 * in the account category ("account-..."), which only account commands
 * write (422). expected_version is required: "any", "no_stream" or N.
 */
int cmd_parse_raw_append(const char *stream_id, const json_t *body,
			 struct raw_append_cmd *cmd, struct es_error *err);

#endif
