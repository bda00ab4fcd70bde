/*
 * check_qry_json.c - qry_json_load() gives what json_loadb(...,
 * JSON_DECODE_ANY, ...) gives, value for value and in the same key order,
 * on the payloads events carry and on every kind of text its fast path
 * leaves to jansson; and it fails where jansson fails.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../query-service/qry_json.h"

/* JSON texts, each compared with jansson's reading of it. */
static const char *const texts[] = {
	/* as PostgreSQL prints jsonb payloads */
	"{\"amount\": 100, \"currency\": \"EUR\", \"reference\": \"seed 1\","
	" \"balance_after\": 100}",
	"{\"amount\": 5, \"currency\": \"USD\", \"transfer_id\":"
	" \"0f8fad5b-d9cb-469f-a165-70867728950e\", \"balance_after\": -5,"
	" \"to_account_id\": \"7c9e6679-7425-40de-944b-e07fc1f90ae7\"}",
	"{\"owner\": \"owner-1\", \"currency\": \"EUR\", \"account_id\":"
	" \"7c9e6679-7425-40de-944b-e07fc1f90ae7\", \"overdraft_limit\": 0}",
	"{}",
	"[]",
	" {\"a\" :1 ,\"b\":[1, 2,{\"c\":null}],\"d\":true,\"e\":false}\r\n",
	"{\"\": \"\"}",
	"{\"a\": 1, \"a\": 2}",
	"{\"b\": 1, \"a\": 2, \"c\": 3}",
	"[1, -1, 0, -0, 999999999999999999, -999999999999999999]",
	"\"top-level string\"",
	"42",
	"true",
	"null",
	"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
	"]]]]]]]]]]",
	/* left to jansson: still read, as jansson reads them */
	"{\"amount\": 1.5}",
	"{\"amount\": 1e3}",
	"{\"amount\": 1E-3}",
	"{\"amount\": 9223372036854775807}",
	"{\"amount\": -9223372036854775808}",
	"{\"owner\": \"Zo\xc3\xab \\\"Zed\\\" \\u00d8rsted, {x}\\\\y\"}",
	"{\"k\\u0041\": \"\\ud83d\\ude00 \\n\\t\\/\"}",
	"{\"amount\": 1000000000000000000}",
	/* errors, for both */
	"",
	"   ",
	"{",
	"{\"a\": 1,}",
	"{\"a\" 1}",
	"{\"a\": 01}",
	"{\"a\": -}",
	"{\"a\": 1x}",
	"{\"a\": truex}",
	"{\"a\": tru}",
	"{\"a\": 99999999999999999999}",
	"{\"a\": \"\\u0000\"}",
	"{\"a\": \"tab\there\"}",
	"{\"a\": \"bad \xff utf-8\"}",
	"[1, 2",
	"[1 2]",
	"{} {}",
	"{\"a\": 1}}",
	"nul",
	"'single'",
};

/* jansson's reading of `s`: its compact, ordered text, or "error". */
static char *dump(json_t *v)
{
	char *s;

	if (!v)
		return strdup("error");
	s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(v);
	return s;
}

START_TEST(fast_path_equals_jansson)
{
	const char *t = texts[_i];
	json_error_t jerr;
	char *want, *got;

	want = dump(json_loadb(t, strlen(t), JSON_DECODE_ANY, &jerr));
	got = dump(qry_json_load(t, strlen(t), &jerr));
	ck_assert_ptr_nonnull(want);
	ck_assert_ptr_nonnull(got);
	ck_assert_msg(strcmp(want, got) == 0, "'%s': jansson %s, fast %s", t,
		      want, got);
	free(want);
	free(got);
}
END_TEST

/*
 * Rebuild jansson's object from a flat one: what the views read of a
 * flat payload is what they would read of jansson's.
 */
static json_t *flat_as_json(const struct qry_flat *f)
{
	json_t *o = json_object();
	size_t k;

	for (k = 0; k < f->n; k++) {
		const struct qry_flat_member *m = &f->m[k];
		json_t *v = NULL;

		ck_assert_uint_eq(strlen(qry_flat_text(f, m->key)), m->key_len);
		switch (m->type) {
		case QRY_FLAT_NULL:
			v = json_null();
			break;
		case QRY_FLAT_TRUE:
			v = json_true();
			break;
		case QRY_FLAT_FALSE:
			v = json_false();
			break;
		case QRY_FLAT_INT:
			v = json_integer(m->i);
			break;
		case QRY_FLAT_STR:
			ck_assert_uint_eq(strlen(qry_flat_text(f, m->str)),
					  m->str_len);
			v = json_stringn(qry_flat_text(f, m->str), m->str_len);
			break;
		}
		ck_assert_ptr_nonnull(v);
		json_object_set_new(o, qry_flat_text(f, m->key), v);
		/* the name finds this member or a later one of that name */
		ck_assert_ptr_nonnull(
			qry_flat_get(f, qry_flat_text(f, m->key)));
	}
	return o;
}

START_TEST(flat_is_janssons_object_or_nothing)
{
	const char *t = texts[_i];
	json_error_t jerr;
	struct qry_flat *f = qry_json_flat(t, strlen(t), malloc);
	json_t *j = json_loadb(t, strlen(t), JSON_DECODE_ANY, &jerr);
	char *want, *got;

	if (!f) {
		json_decref(j);
		return;
	}
	/* a flat text is an object for jansson, with the same members */
	ck_assert_msg(json_is_object(j), "'%s' flat, not an object", t);
	want = dump(j);
	got = dump(flat_as_json(f));
	ck_assert_msg(strcmp(want, got) == 0, "'%s': jansson %s, flat %s", t,
		      want, got);
	/* its bytes are the whole of it */
	{
		struct qry_flat *c = malloc(f->size);

		memcpy(c, f, f->size);
		free(f);
		free(got);
		got = dump(flat_as_json(c));
		ck_assert_str_eq(want, got);
		free(c);
	}
	free(want);
	free(got);
}
END_TEST

START_TEST(flat_takes_the_payloads_and_leaves_the_rest)
{
	static const char *const flat[] = {
		"{}",
		" {\"a\" :1 ,\"b\":\"x\",\"d\":true,\"e\":false,\"n\":null}\r\n",
		"{\"a\": 1, \"a\": \"two\"}",
		"{\"amount\": -0}",
	};
	static const char *const not_flat[] = {
		"[]",
		"{\"b\": [1]}",
		"{\"b\": {}}",
		"{\"amount\": 1.5}",
		"{\"s\": \"esc\\\"aped\"}",
		"{\"s\": \"Zo\xc3\xab\"}",
		"{\"amount\": 1000000000000000000}",
		"{\"a\": 1,}",
		"{\"a\": 1} x",
		"\"top\"",
		"",
	};
	char many[64 * 12] = "{";
	struct qry_flat *f;
	const struct qry_flat_member *m;
	size_t i, at = 1;

	for (i = 0; i < sizeof(flat) / sizeof(*flat); i++) {
		f = qry_json_flat(flat[i], strlen(flat[i]), malloc);
		ck_assert_msg(f != NULL, "'%s' not flat", flat[i]);
		free(f);
	}
	for (i = 0; i < sizeof(not_flat) / sizeof(*not_flat); i++)
		ck_assert_msg(qry_json_flat(not_flat[i], strlen(not_flat[i]),
					    malloc) == NULL,
			      "'%s' flat", not_flat[i]);
	f = qry_json_flat(flat[2], strlen(flat[2]), malloc);
	m = qry_flat_get(f, "a");
	ck_assert_int_eq(m->type, QRY_FLAT_STR);
	ck_assert_str_eq(qry_flat_text(f, m->str), "two");
	ck_assert_ptr_null(qry_flat_get(f, "b"));
	free(f);
	/* QRY_FLAT_MAX members, then one more */
	for (i = 0; i < QRY_FLAT_MAX; i++)
		at += (size_t)sprintf(many + at, "%s\"k%zu\": %zu",
				      i ? ", " : "", i, i);
	strcpy(many + at, "}");
	f = qry_json_flat(many, strlen(many), malloc);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->n, QRY_FLAT_MAX);
	ck_assert_int_eq(qry_flat_get(f, "k31")->i, 31);
	free(f);
	sprintf(many + at, ", \"k%d\": 0}", QRY_FLAT_MAX);
	ck_assert_ptr_null(qry_json_flat(many, strlen(many), malloc));
}
END_TEST

/* A byte the fast path must not take, at every offset of a string. */
START_TEST(string_bytes_are_judged_at_every_offset)
{
	static const unsigned char odd[] = { 0x7f, 0x1f, 0x01, '\\', 0x80,
					     0xc3, 0xff, '~',  ' ' };
	char t[80];
	json_error_t jerr;
	size_t at, k;

	for (k = 0; k < sizeof(odd); k++) {
		for (at = 0; at < 40; at++) {
			char *want, *got;
			struct qry_flat *f;

			memcpy(t, "{\"k\": \"", 7);
			memset(t + 7, 'a', 40);
			t[7 + at] = (char)odd[k];
			memcpy(t + 47, "\", \"n\": 1}", 10);
			want = dump(json_loadb(t, 57, JSON_DECODE_ANY, &jerr));
			got = dump(qry_json_load(t, 57, &jerr));
			ck_assert_msg(strcmp(want, got) == 0,
				      "byte %02x at %zu: jansson %s, fast %s",
				      odd[k], at, want, got);
			f = qry_json_flat(t, 57, malloc);
			/* printable ASCII only, and no backslash */
			ck_assert_int_eq(f != NULL, odd[k] >= 0x20 &&
							    odd[k] < 0x7f &&
							    odd[k] != '\\');
			free(f);
			free(want);
			free(got);
		}
	}
}
END_TEST

START_TEST(types_are_janssons)
{
	json_error_t jerr;
	const char *t = "{\"i\": 7, \"s\": \"7\", \"r\": 7.0, \"t\": true,"
			" \"n\": null}";
	json_t *v = qry_json_load(t, strlen(t), &jerr);

	ck_assert_ptr_nonnull(v);
	ck_assert(json_is_integer(json_object_get(v, "i")));
	ck_assert_int_eq(json_integer_value(json_object_get(v, "i")), 7);
	ck_assert(json_is_string(json_object_get(v, "s")));
	ck_assert(json_is_real(json_object_get(v, "r")));
	ck_assert(json_is_true(json_object_get(v, "t")));
	ck_assert(json_is_null(json_object_get(v, "n")));
	json_decref(v);
}
END_TEST

START_TEST(reads_only_len_bytes)
{
	json_error_t jerr;
	const char buf[] = "{\"a\": 12}trailing";
	json_t *v = qry_json_load(buf, 9, &jerr);

	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(json_integer_value(json_object_get(v, "a")), 12);
	json_decref(v);
	/* cut before the closing brace: an error, as for jansson */
	v = qry_json_load(buf, 7, &jerr);
	ck_assert_ptr_null(v);
	v = qry_json_load("123456", 2, &jerr);
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(json_integer_value(v), 12);
	json_decref(v);
}
END_TEST

START_TEST(error_is_janssons)
{
	json_error_t want, got;
	const char *t = "{\"a\": 1,}";

	ck_assert_ptr_null(json_loadb(t, strlen(t), JSON_DECODE_ANY, &want));
	ck_assert_ptr_null(qry_json_load(t, strlen(t), &got));
	ck_assert_str_eq(got.text, want.text);
	ck_assert_int_eq(got.position, want.position);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("qry_json");
	TCase *tc = tcase_create("load");

	tcase_add_loop_test(tc, fast_path_equals_jansson, 0,
			    (int)(sizeof(texts) / sizeof(texts[0])));
	tcase_add_loop_test(tc, flat_is_janssons_object_or_nothing, 0,
			    (int)(sizeof(texts) / sizeof(*texts)));
	tcase_add_test(tc, flat_takes_the_payloads_and_leaves_the_rest);
	tcase_add_test(tc, string_bytes_are_judged_at_every_offset);
	tcase_add_test(tc, types_are_janssons);
	tcase_add_test(tc, reads_only_len_bytes);
	tcase_add_test(tc, error_is_janssons);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
