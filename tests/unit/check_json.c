/* check_json.c - strict request bodies, and text made printable. */
#include <check.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "es_json.h"

/* Parse a C string; the error detail is left in `err`. */
static json_t *parse(const char *s, struct es_error *err)
{
	return es_json_parse_object(s, strlen(s), err);
}

static void assert_malformed(const char *s, size_t len, const char *needle)
{
	struct es_error err = ES_ERROR_INIT;

	ck_assert_ptr_null(es_json_parse_object(s, len, &err));
	ck_assert_int_eq(err.code, ES_EMALFORMED);
	ck_assert_msg(strstr(err.detail, needle) != NULL,
		      "detail '%s' lacks '%s'", err.detail, needle);
	es_error_release(&err);
}

/* `depth` containers: {"a":[[...[1]...]]}, an object then arrays. */
static char *nested(int depth)
{
	char *s = malloc((size_t)depth * 2 + 16), *p = s;

	p += sprintf(p, "{\"a\":");
	for (int i = 1; i < depth; i++)
		*p++ = '[';
	*p++ = '1';
	for (int i = 1; i < depth; i++)
		*p++ = ']';
	strcpy(p, "}");
	return s;
}

START_TEST(valid_object_parses)
{
	struct es_error err = ES_ERROR_INIT;
	json_t *v = parse(" {\"amount\": 100, \"owner\": \"Zoë\"}\n", &err);

	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(err.code, ES_OK);
	ck_assert_int_eq(json_integer_value(json_object_get(v, "amount")), 100);
	ck_assert_str_eq(json_string_value(json_object_get(v, "owner")), "Zoë");
	json_decref(v);
}
END_TEST

START_TEST(empty_object_parses)
{
	json_t *v = parse("{}", NULL);

	ck_assert_ptr_nonnull(v);
	json_decref(v);
}
END_TEST

START_TEST(empty_body_is_malformed)
{
	assert_malformed("", 0, "request body is empty");
	assert_malformed(NULL, 0, "request body is empty");
	assert_malformed("   ", 3, "invalid JSON at line 1");
}
END_TEST

START_TEST(duplicate_keys_are_malformed)
{
	assert_malformed("{\"a\":1,\"a\":2}", 13, "duplicate object key");
	assert_malformed("{\"x\":{\"b\":1,\"b\":1}}", 19,
			 "duplicate object key");
}
END_TEST

START_TEST(depth_32_parses_and_33_does_not)
{
	struct es_error err = ES_ERROR_INIT;
	char *ok = nested(32), *deep = nested(33);
	json_t *v;

	ck_assert_int_eq(es_json_depth(ok, strlen(ok)), 32);
	v = parse(ok, &err);
	ck_assert_msg(v != NULL, "depth 32: %s", err.detail);
	json_decref(v);
	ck_assert_int_eq(es_json_depth(deep, strlen(deep)), 33);
	assert_malformed(deep, strlen(deep), "nested deeper than 32 levels");
	free(ok);
	free(deep);
}
END_TEST

START_TEST(depth_counts_objects_and_arrays_alike)
{
	char s[512], *p = s;
	struct es_error err = ES_ERROR_INIT;
	json_t *v;

	/* 17 objects and 16 arrays, alternating: 33 */
	for (int i = 0; i < 16; i++)
		p += sprintf(p, "{\"k\":[");
	p += sprintf(p, "{}");
	for (int i = 0; i < 16; i++)
		p += sprintf(p, "]}");
	ck_assert_int_eq(es_json_depth(s, strlen(s)), 33);
	assert_malformed(s, strlen(s), "nested deeper");
	/* siblings do not add up: many shallow containers are fine */
	p = s;
	p += sprintf(p, "{\"a\":[");
	for (int i = 0; i < 40; i++)
		p += sprintf(p, "%s[]", i ? "," : "");
	sprintf(p, "]}");
	ck_assert_int_eq(es_json_depth(s, strlen(s)), 3);
	v = parse(s, &err);
	ck_assert_ptr_nonnull(v);
	json_decref(v);
}
END_TEST

START_TEST(brackets_inside_strings_do_not_count)
{
	char s[256], *p = s;
	struct es_error err = ES_ERROR_INIT;
	json_t *v;

	p += sprintf(p, "{\"a\":\"\\\"");
	for (int i = 0; i < 40; i++)
		*p++ = i % 2 ? '{' : '[';
	strcpy(p, "\\\\\", \"b\":\"]]]\"}");
	ck_assert_int_eq(es_json_depth(s, strlen(s)), 1);
	v = parse(s, &err);
	ck_assert_msg(v != NULL, "%s: %s", s, err.detail);
	ck_assert_int_eq(strlen(json_string_value(json_object_get(v, "a"))),
			 42);
	json_decref(v);
}
END_TEST

START_TEST(invalid_utf8_is_malformed)
{
	assert_malformed("{\"a\":\"\xff\"}", 9, "invalid JSON");
	/* an overlong encoding of '/' and a lone continuation byte */
	assert_malformed("{\"a\":\"\xc0\xaf\"}", 10, "invalid JSON");
	assert_malformed("{\"\x80\":1}", 7, "invalid JSON");
}
END_TEST

START_TEST(detail_never_echoes_invalid_bytes)
{
	struct es_error err = ES_ERROR_INIT;

	ck_assert_ptr_null(es_json_parse_object("{\xff\xfe}", 4, &err));
	for (const char *c = err.detail; *c; c++)
		ck_assert_msg((unsigned char)*c >= 0x20 &&
				      (unsigned char)*c < 0x7f,
			      "byte %02x in detail", (unsigned char)*c);
	es_error_release(&err);
}
END_TEST

START_TEST(nul_escape_and_nul_byte_are_malformed)
{
	assert_malformed("{\"a\":\"x\\u0000y\"}", 16,
			 "\\u0000 is not allowed in strings");
	assert_malformed("{\"a\":1}\0", 8, "NUL byte");
	assert_malformed("{\"a\":\"x\0y\"}", 11, "NUL byte");
}
END_TEST

START_TEST(top_level_must_be_an_object)
{
	assert_malformed("[1,2]", 5, "must be a JSON object, not an array");
	assert_malformed("\"s\"", 3, "must be a JSON object, not a string");
	assert_malformed("42", 2, "must be a JSON object, not a number");
	assert_malformed("1.5", 3, "must be a JSON object, not a number");
	assert_malformed("true", 4, "must be a JSON object, not a boolean");
	assert_malformed("null", 4, "must be a JSON object, not null");
}
END_TEST

START_TEST(trailing_garbage_is_malformed)
{
	assert_malformed("{} x", 4, "end of file expected");
	assert_malformed("{}{}", 4, "end of file expected");
}
END_TEST

START_TEST(syntax_error_gives_line_and_column)
{
	assert_malformed("{\n  \"a\": tru\n}", 14, "line 2, column");
	assert_malformed("{\"a\":", 5, "invalid JSON at line 1");
}
END_TEST

/* The bytes jansson writes, for every kind of value. */
static void same_as_jansson(const char *text)
{
	json_error_t jerr;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
	char *want, *got;
	size_t len = 0;

	ck_assert_msg(v != NULL, "%s: %s", text, jerr.text);
	want = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	got = es_json_dump_sorted(v, &len);
	ck_assert_ptr_nonnull(want);
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(got, want);
	ck_assert_uint_eq(len, strlen(want));
	free(want);
	free(got);
	json_decref(v);
}

START_TEST(dump_sorted_writes_what_jansson_writes)
{
	json_t *v;
	char *got;

	same_as_jansson("{}");
	same_as_jansson("[]");
	same_as_jansson("{\"version\":3,\"position\":\"12.34\",\"balance\":"
			"-9223372036854775807,\"account_id\":\"a-b\"}");
	same_as_jansson("{\"b\":[1,true,false,null,{\"z\":1,\"a\":[]}],"
			"\"a\":{\"y\":\"\\u0001\\t\\n\\r\\b\\f\\\"\\\\/\"}}");
	same_as_jansson(
		"{\"\\u00e9t\u00e9\":\"\\u2028 \\ud83d\\ude00 \\u007f\"}");
	same_as_jansson("{\"ab\":1,\"a\":2,\"b\":3,\"aa\":4,\"\":5}");
	same_as_jansson("{\"r\":1.5,\"e\":1e300,\"n\":-0.0}");
	same_as_jansson("\"text\"");
	same_as_jansson(
		"{\"k0\":0,\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,"
		"\"k6\":6,\"k7\":7,\"k8\":8,\"k9\":9,\"ka\":10,\"kb\":11,"
		"\"kc\":12,\"kd\":13,\"ke\":14,\"kf\":15,\"kg\":16,\"kh\":17}");
	/* a string that is not UTF-8 fails, as in jansson */
	v = json_pack("{s:o}", "k", json_string_nocheck("\xff"));
	got = es_json_dump_sorted(v, NULL);
	ck_assert_ptr_null(got);
	ck_assert_ptr_null(json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS));
	json_decref(v);
}
END_TEST

START_TEST(dump_sorted_to_appends_the_same_text)
{
	const char *text = "{\"z\":[1,{\"b\":null,\"a\":\"\\u00e9\"}],"
			   "\"amount\":12,\"r\":0.25}";
	json_t *v = json_loads(text, 0, NULL), *bad;
	struct es_buf b = ES_BUF_INIT;
	char *want;
	size_t len;

	ck_assert_ptr_nonnull(v);
	want = es_json_dump_sorted(v, &len);
	ck_assert_ptr_nonnull(want);
	es_buf_add(&b, "head", 4);
	ck_assert_int_eq(es_json_dump_sorted_to(&b, v), 0);
	ck_assert_uint_eq(b.len, 4 + len);
	ck_assert_mem_eq(b.s, "head", 4);
	ck_assert_mem_eq(b.s + 4, want, len);
	/* what es_json_dump_sorted() refuses, it refuses too */
	bad = json_pack("{s:o}", "k", json_string_nocheck("\xff"));
	ck_assert_int_eq(es_json_dump_sorted_to(&b, bad), -1);
	ck_assert_int_eq(es_json_dump_sorted_to(&b, NULL), -1);
	json_decref(bad);
	es_buf_release(&b);
	free(want);
	json_decref(v);
}
END_TEST

START_TEST(printable_replaces_control_and_non_ascii_bytes)
{
	char s[] = "a\x01\xff\tb~";

	es_json_printable(s);
	ck_assert_str_eq(s, "a???b~");
}
END_TEST

static Suite *json_suite(void)
{
	Suite *s = suite_create("json");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, valid_object_parses);
	tcase_add_test(tc, empty_object_parses);
	tcase_add_test(tc, empty_body_is_malformed);
	tcase_add_test(tc, duplicate_keys_are_malformed);
	tcase_add_test(tc, depth_32_parses_and_33_does_not);
	tcase_add_test(tc, depth_counts_objects_and_arrays_alike);
	tcase_add_test(tc, brackets_inside_strings_do_not_count);
	tcase_add_test(tc, invalid_utf8_is_malformed);
	tcase_add_test(tc, detail_never_echoes_invalid_bytes);
	tcase_add_test(tc, nul_escape_and_nul_byte_are_malformed);
	tcase_add_test(tc, top_level_must_be_an_object);
	tcase_add_test(tc, trailing_garbage_is_malformed);
	tcase_add_test(tc, syntax_error_gives_line_and_column);
	suite_add_tcase(s, tc);
	tc = tcase_create("printable");
	tcase_add_test(tc, printable_replaces_control_and_non_ascii_bytes);
	tcase_add_test(tc, dump_sorted_writes_what_jansson_writes);
	tcase_add_test(tc, dump_sorted_to_appends_the_same_text);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(json_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
