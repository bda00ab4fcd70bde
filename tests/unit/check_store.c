/*
 * check_store.c - what es_append.c and es_read.c decide before they talk
 * to the database: input validation of es_append_batch(), limits of the
 * reads. With no connection, input that passes validation fails as
 * ES_EUNAVAIL instead.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_log.h"
#include "es_append.h"
#include "es_read.h"

/*
 * es_append_batch() of one request of `n` streams, with no database: the
 * request's error, else the call's (ES_EUNAVAIL: it was sent). `err`
 * takes the one returned.
 */
static enum es_err batch_of_one(struct es_stream_append *sa, size_t n,
				struct es_error *err)
{
	struct es_append_req req = { .streams = sa,
				     .n = n,
				     .err = ES_ERROR_INIT };

	if (es_append_batch(NULL, &req, 1, err) == 0) {
		ck_assert_int_eq(req.ok, 0);
		*err = req.err; /* moved */
	} else {
		ck_assert_int_eq(req.err.code, ES_OK);
	}
	return err->code;
}

/*
 * One stream with `events` (JSON text) and no database: returns the
 * error code; the first field problem's name in `field`.
 */
static enum es_err try_append(const char *stream, long long expected,
			      const char *events, char *field, size_t len)
{
	struct es_error err = ES_ERROR_INIT;
	json_error_t jerr;
	json_t *evs = json_loads(events, JSON_DECODE_ANY, &jerr);
	struct es_stream_append sa = { stream, expected, evs, 0 };
	enum es_err code;

	ck_assert_msg(evs != NULL, "%s: %s", events, jerr.text);
	code = batch_of_one(&sa, 1, &err);
	if (field) {
		const json_t *f = json_array_get(err.fields, 0);

		snprintf(field, len, "%s",
			 f ? json_string_value(json_object_get(f, "field"))
			   : "");
	}
	es_error_release(&err);
	json_decref(evs);
	return code;
}

#define OK_EVENTS "[{\"type\":\"T\",\"data\":{}}]"

START_TEST(valid_input_reaches_the_database)
{
	static const char *const ok[] = {
		OK_EVENTS,
		"[{\"type\":\"T\",\"data\":{\"a\":[1,2]},\"metadata\":{}}]",
		"[{\"type\":\"T\",\"data\":{},"
		"\"event_id\":\"0a1B2c3D-0000-4000-8000-00000000000f\"}]",
		"[{\"type\":\"T\",\"data\":{}},{\"type\":\"U\",\"data\":{}}]",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++)
		ck_assert_msg(try_append("s-1", ES_ANY, ok[i], NULL, 0) ==
				      ES_EUNAVAIL,
			      "%s", ok[i]);
	ck_assert_int_eq(try_append("s-1", ES_NO_STREAM, OK_EVENTS, NULL, 0),
			 ES_EUNAVAIL);
	ck_assert_int_eq(try_append("s-1", 0, OK_EVENTS, NULL, 0), ES_EUNAVAIL);
	ck_assert_int_eq(try_append("s-1", 42, OK_EVENTS, NULL, 0),
			 ES_EUNAVAIL);
}
END_TEST

START_TEST(bad_events_name_their_field)
{
	static const struct {
		const char *events, *field;
	} bad[] = {
		{ "[]", "events" },
		{ "{}", "events" },
		{ "\"x\"", "events" },
		{ "[null]", "events[0]" },
		{ "[{\"type\":\"T\",\"data\":{}}, 5]", "events[1]" },
		{ "[{\"data\":{}}]", "events[0].type" },
		{ "[{\"type\":null,\"data\":{}}]", "events[0].type" },
		{ "[{\"type\":\"\",\"data\":{}}]", "events[0].type" },
		{ "[{\"type\":[\"T\"],\"data\":{}}]", "events[0].type" },
		{ "[{\"type\":\"T\"}]", "events[0].data" },
		{ "[{\"type\":\"T\",\"data\":null}]", "events[0].data" },
		{ "[{\"type\":\"T\",\"data\":\"{}\"}]", "events[0].data" },
		{ "[{\"type\":\"T\",\"data\":{},\"metadata\":[]}]",
		  "events[0].metadata" },
		{ "[{\"type\":\"T\",\"data\":{},\"metadata\":null}]",
		  "events[0].metadata" },
		{ "[{\"type\":\"T\",\"data\":{},\"event_id\":1}]",
		  "events[0].event_id" },
		{ "[{\"type\":\"T\",\"data\":{},\"event_id\":\"\"}]",
		  "events[0].event_id" },
		{ "[{\"type\":\"T\",\"data\":{},"
		  "\"event_id\":\"0a1b2c3d00004000800000000000000f\"}]",
		  "events[0].event_id" },
		{ "[{\"type\":\"T\",\"data\":{},"
		  "\"event_id\":\"0a1b2c3d-0000-4000-8000-00000000000\"}]",
		  "events[0].event_id" },
		{ "[{\"type\":\"T\",\"data\":{},"
		  "\"event_id\":\"0a1b2c3d-0000-4000-8000-00000000000fa\"}]",
		  "events[0].event_id" },
		{ "[{\"type\":\"T\",\"data\":{},"
		  "\"event_id\":\"0a1b2c3d-0000-4000-8000_00000000000f\"}]",
		  "events[0].event_id" },
		{ "[{\"type\":\"T\",\"data\":{},"
		  "\"event_id\":\"0a1b2c3d-0000-4000-8000-00000000000f\"},"
		  "{\"type\":\"T\",\"data\":{},"
		  "\"event_id\":\"0A1B2C3D-0000-4000-8000-00000000000F\"}]",
		  "event_id" },
	};
	char field[64];

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		ck_assert_msg(try_append("s-1", ES_ANY, bad[i].events, field,
					 sizeof(field)) == ES_EINVALID,
			      "accepted %s", bad[i].events);
		ck_assert_msg(strcmp(field, bad[i].field) == 0,
			      "%s: field '%s', not '%s'", bad[i].events, field,
			      bad[i].field);
	}
}
END_TEST

START_TEST(a_type_of_200_characters_is_enough)
{
	char events[1024], type[512] = "";
	char field[64];

	for (int i = 0; i < 200; i++)
		strcat(type, "\xc3\xa9"); /* é, two bytes */
	snprintf(events, sizeof(events), "[{\"type\":\"%s\",\"data\":{}}]",
		 type);
	ck_assert_int_eq(try_append("s-1", ES_ANY, events, NULL, 0),
			 ES_EUNAVAIL);
	strcat(type, "x");
	snprintf(events, sizeof(events), "[{\"type\":\"%s\",\"data\":{}}]",
		 type);
	ck_assert_int_eq(
		try_append("s-1", ES_ANY, events, field, sizeof(field)),
		ES_EINVALID);
	ck_assert_str_eq(field, "events[0].type");
}
END_TEST

START_TEST(stream_ids_are_1_to_200_characters_of_utf8)
{
	static const char *const bad[] = {
		"",
		"\xff",
		"caf\xe9", /* Latin-1 */
		"\xc0\xaf", /* overlong '/' */
		"\xe0\x80\xaf", /* overlong '/' */
		"\xed\xa0\x80", /* a UTF-16 surrogate */
		"\xf4\x90\x80\x80", /* above U+10FFFF */
		"\xc3", /* cut short */
		"\xe2\x82", /* cut short */
	};
	char id[1024] = "", field[64];

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		ck_assert_msg(try_append(bad[i], ES_ANY, OK_EVENTS, field,
					 sizeof(field)) == ES_EINVALID,
			      "accepted stream id %zu", i);
		ck_assert_str_eq(field, "stream_id");
	}
	ck_assert_int_eq(
		try_append(NULL, ES_ANY, OK_EVENTS, field, sizeof(field)),
		ES_EINVALID);
	for (int i = 0; i < 200; i++)
		strcat(id, "\xe2\x82\xac"); /* €, three bytes */
	ck_assert_int_eq(try_append(id, ES_ANY, OK_EVENTS, NULL, 0),
			 ES_EUNAVAIL);
	strcat(id, "x");
	ck_assert_int_eq(
		try_append(id, ES_ANY, OK_EVENTS, field, sizeof(field)),
		ES_EINVALID);
	ck_assert_int_eq(try_append("\xf0\x9f\x98\x80-\xc3\xa9", ES_ANY,
				    OK_EVENTS, NULL, 0),
			 ES_EUNAVAIL);
}
END_TEST

START_TEST(expected_versions_below_any_are_refused)
{
	char field[64];

	ck_assert_int_eq(try_append("s-1", -3, OK_EVENTS, field, sizeof(field)),
			 ES_EINVALID);
	ck_assert_str_eq(field, "expected_version");
}
END_TEST

START_TEST(multi_stream_fields_say_which_stream)
{
	struct es_error err = ES_ERROR_INIT;
	json_t *good = json_loads(OK_EVENTS, 0, NULL);
	json_t *bad = json_loads("[{\"type\":\"T\"}]", 0, NULL);
	struct es_stream_append sa[2] = { { "a", ES_ANY, good, 0 },
					  { "b", ES_ANY, bad, 0 } };
	const json_t *f;

	ck_assert_int_eq(batch_of_one(sa, 2, &err), ES_EINVALID);
	f = json_array_get(err.fields, 0);
	ck_assert_str_eq(json_string_value(json_object_get(f, "field")),
			 "streams[1].events[0].data");
	es_error_release(&err);

	sa[1] = (struct es_stream_append){ "a", ES_ANY, good, 0 };
	ck_assert_int_eq(batch_of_one(sa, 2, &err), ES_EINVALID);
	f = json_array_get(err.fields, 0);
	ck_assert_str_eq(json_string_value(json_object_get(f, "message")),
			 "'a' is given twice");
	es_error_release(&err);

	ck_assert_int_eq(batch_of_one(sa, 0, &err), ES_EINVALID);
	es_error_release(&err);
	json_decref(good);
	json_decref(bad);
}
END_TEST

/*
 * Each request of a batch has its own outcome: a bad one, or one naming
 * a stream an earlier request of the call names, is refused alone; with
 * nothing left to send, nothing is.
 */
START_TEST(a_batch_refuses_each_request_alone)
{
	struct es_error err = ES_ERROR_INIT;
	json_t *good = json_loads(OK_EVENTS, 0, NULL);
	json_t *bad = json_loads("[{\"type\":\"T\"}]", 0, NULL);
	struct es_stream_append s1 = { "a", ES_ANY, good, 0 };
	struct es_stream_append s2 = { "b", ES_ANY, bad, 0 };
	struct es_stream_append s3[2] = { { "c", ES_ANY, good, 0 },
					  { "a", ES_ANY, good, 0 } };
	struct es_append_req reqs[3] = {
		{ .streams = &s1, .n = 1, .err = ES_ERROR_INIT },
		{ .streams = &s2, .n = 1, .err = ES_ERROR_INIT },
		{ .streams = s3, .n = 2, .err = ES_ERROR_INIT },
	};

	/* the first is sent (and the missing connection fails the call) */
	ck_assert_int_eq(es_append_batch(NULL, reqs, 3, &err), -1);
	ck_assert_int_eq(err.code, ES_EUNAVAIL);
	es_error_release(&err);
	ck_assert_int_eq(reqs[0].err.code, ES_OK);
	ck_assert_int_eq(reqs[1].err.code, ES_EINVALID);
	ck_assert_int_eq(reqs[2].err.code, ES_EINTERNAL);
	ck_assert_str_eq(reqs[2].err.detail,
			 "stream 'a' is in one batch twice");
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(reqs[i].ok, 0);

	/* the bad ones alone: nothing to send, every outcome is known */
	ck_assert_int_eq(es_append_batch(NULL, reqs + 1, 1, &err), 0);
	ck_assert_int_eq(reqs[1].err.code, ES_EINVALID);
	ck_assert_int_eq(err.code, ES_OK);
	for (int i = 0; i < 3; i++)
		es_error_release(&reqs[i].err);
	json_decref(good);
	json_decref(bad);
}
END_TEST

START_TEST(read_limits_are_1_to_the_maximum)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_events ev = ES_EVENTS_INIT;
	struct es_cursor c, next;

	ck_assert_int_eq(es_read_stream(NULL, "s", 1, 0, &ev, &err), -1);
	ck_assert_int_eq(err.code, ES_EINVALID);
	es_error_release(&err);
	ck_assert_int_eq(
		es_read_stream(NULL, "s", 1, ES_READ_LIMIT_MAX + 1, &ev, &err),
		-1);
	ck_assert_int_eq(err.code, ES_EINVALID);
	es_error_release(&err);
	ck_assert_int_eq(es_read_stream(NULL, "s", 1, 10, &ev, &err), -1);
	ck_assert_int_eq(err.code, ES_EUNAVAIL);
	es_error_release(&err);

	es_cursor_init(&c);
	es_cursor_init(&next);
	ck_assert_int_eq(es_read_forward(NULL, &c, 0, &ev, &next, &err), -1);
	ck_assert_int_eq(err.code, ES_EINVALID);
	es_error_release(&err);
	ck_assert_int_eq(es_read_forward(NULL, &c, 100, &ev, &next, &err), -1);
	ck_assert_int_eq(err.code, ES_EUNAVAIL);
	es_error_release(&err);
	ck_assert_uint_eq(ev.n, 0);
	es_events_release(&ev);
	ck_assert_ptr_null(ev.v);
}
END_TEST

static Suite *store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("validation");

	tcase_add_test(tc, valid_input_reaches_the_database);
	tcase_add_test(tc, bad_events_name_their_field);
	tcase_add_test(tc, a_type_of_200_characters_is_enough);
	tcase_add_test(tc, stream_ids_are_1_to_200_characters_of_utf8);
	tcase_add_test(tc, expected_versions_below_any_are_refused);
	tcase_add_test(tc, multi_stream_fields_say_which_stream);
	tcase_add_test(tc, a_batch_refuses_each_request_alone);
	tcase_add_test(tc, read_limits_are_1_to_the_maximum);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(store_suite());
	int failed;

	es_log_threshold = ES_LOG_OFF;
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
