/*
 * check_log.c - es_log_write(): the line it writes directly is, byte for
 * byte, the one jansson builds from the same format and arguments
 * ({"ts", "level", "service", "event", ...fields in order}, compact,
 * reals with 6 digits), and what it cannot write directly (other
 * formats, bad strings, a key given twice) still comes out as before.
 */
#include <check.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "es_log.h"

/* Redirect stderr to a fresh file; returns it, `saved` the old fd. */
static FILE *redirect(int *saved)
{
	FILE *f = tmpfile();

	ck_assert_ptr_nonnull(f);
	fflush(stderr);
	*saved = dup(STDERR_FILENO);
	dup2(fileno(f), STDERR_FILENO);
	return f;
}

/* Restore stderr; the first line written to `f` (caller frees). */
static char *restore(FILE *f, int saved)
{
	char *line = NULL;
	size_t cap = 0;

	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(f);
	if (getline(&line, &cap, f) < 0) {
		free(line);
		line = NULL;
	}
	fclose(f);
	return line;
}

/*
 * The line jansson builds for `fields` (an object in order) after the
 * four common fields, with the timestamp `line` carries.
 */
static char *jansson_line(const char *line, const char *level,
			  const char *event, json_t *fields)
{
	json_t *got = json_loads(line, 0, NULL), *base;
	char *text, *out;

	ck_assert_ptr_nonnull(got);
	base = json_pack("{s:O, s:s, s:s, s:s}", "ts",
			 json_object_get(got, "ts"), "level", level, "service",
			 "check-log", "event", event);
	json_object_update(base, fields);
	text = json_dumps(base, JSON_COMPACT | JSON_PRESERVE_ORDER |
					JSON_REAL_PRECISION(6));
	ck_assert_ptr_nonnull(text);
	out = malloc(strlen(text) + 2);
	strcpy(out, text);
	strcat(out, "\n");
	free(text);
	json_decref(base);
	json_decref(got);
	return out;
}

#define SAME_AS_JANSSON(level, lname, event, fmt, ...)             \
	do {                                                       \
		int saved_;                                        \
		FILE *f_ = redirect(&saved_);                      \
		char *got_, *want_;                                \
		json_t *fields_;                                   \
                                                                   \
		es_log_write(level, event, fmt, __VA_ARGS__);      \
		got_ = restore(f_, saved_);                        \
		ck_assert_ptr_nonnull(got_);                       \
		fields_ = json_pack_ex(NULL, 0, fmt, __VA_ARGS__); \
		ck_assert_ptr_nonnull(fields_);                    \
		want_ = jansson_line(got_, lname, event, fields_); \
		ck_assert_str_eq(got_, want_);                     \
		json_decref(fields_);                              \
		free(got_);                                        \
		free(want_);                                       \
	} while (0)

START_TEST(direct_lines_are_jansson_lines)
{
	SAME_AS_JANSSON(ES_LOG_INFO, "info", "request",
			"{s:s, s:s?, s:s?, s:i, s:f, s:s?}", "request_id",
			"abc-1", "method", "POST", "route", NULL, "status", 201,
			"duration_ms", 0.123456789, "correlation_id", NULL);
	SAME_AS_JANSSON(ES_LOG_WARN, "warn", "odd \"name\"",
			"{s:s, s:I, s:b, s:b, s:n}", "text",
			"tab\tquote\" back\\ \x01 \xc3\xa9", "big",
			(json_int_t)-9223372036854775807LL, "yes", 1, "no", 0,
			"nothing");
	SAME_AS_JANSSON(ES_LOG_ERROR, "error", "reals",
			"{s:f, s:f, s:f, s:f, s:f, s:f}", "a", 1.0, "b", 1e21,
			"c", 1.5e-7, "d", -0.0, "e", 123456789.0, "f", 100.0);
}
END_TEST

START_TEST(other_formats_go_through_jansson)
{
	int saved;
	FILE *f;
	char *got;
	json_t *v;

	/* "o": a value of the caller's, not written directly */
	f = redirect(&saved);
	es_log_write(ES_LOG_INFO, "obj", "{s:o}", "v",
		     json_pack("[i, s]", 1, "x"));
	got = restore(f, saved);
	v = json_loads(got, 0, NULL);
	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(json_string_value(json_object_get(v, "event")), "obj");
	ck_assert_int_eq(json_array_size(json_object_get(v, "v")), 2);
	json_decref(v);
	free(got);

	/* a key of the four: jansson replaces it in place, as before */
	f = redirect(&saved);
	es_log_write(ES_LOG_INFO, "first", "{s:s, s:i}", "event", "second", "n",
		     1);
	got = restore(f, saved);
	ck_assert_ptr_nonnull(strstr(got, "\"event\":\"second\",\"n\":1}"));
	free(got);

	/* no fields at all */
	f = redirect(&saved);
	es_log_write(ES_LOG_INFO, "bare", NULL);
	got = restore(f, saved);
	ck_assert_ptr_nonnull(strstr(got, "\"event\":\"bare\"}\n"));
	free(got);
}
END_TEST

static Suite *log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("log");

	tcase_add_test(tc, direct_lines_are_jansson_lines);
	tcase_add_test(tc, other_formats_go_through_jansson);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(log_suite());
	int failed;

	es_log_set_service("check-log");
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
