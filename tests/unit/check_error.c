/* check_error.c - error kinds, their HTTP table and the problem object. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "es_error.h"

static const struct {
	enum es_err code;
	unsigned int status;
	const char *type;
	const char *title;
} table[] = {
	{ ES_EMALFORMED, 400, "https://tandem.dev/problems/malformed",
	  "Malformed request" },
	{ ES_EUNAUTHORIZED, 401, "https://tandem.dev/problems/unauthorized",
	  "Unauthorized" },
	{ ES_EFORBIDDEN, 403, "https://tandem.dev/problems/forbidden",
	  "Forbidden" },
	{ ES_ENOTFOUND, 404, "https://tandem.dev/problems/not-found",
	  "Not found" },
	{ ES_EMETHOD, 405, "https://tandem.dev/problems/method-not-allowed",
	  "Method not allowed" },
	{ ES_ECONFLICT, 409, "https://tandem.dev/problems/conflict",
	  "Conflict" },
	{ ES_EPRECONDITION, 412,
	  "https://tandem.dev/problems/precondition-failed",
	  "Precondition failed" },
	{ ES_ETOOLARGE, 413, "https://tandem.dev/problems/too-large",
	  "Content too large" },
	{ ES_EMEDIATYPE, 415,
	  "https://tandem.dev/problems/unsupported-media-type",
	  "Unsupported media type" },
	{ ES_EINVALID, 422, "https://tandem.dev/problems/invalid-fields",
	  "Invalid fields" },
	{ ES_EUNAVAIL, 503, "https://tandem.dev/problems/unavailable",
	  "Service unavailable" },
	{ ES_EINTERNAL, 500, "https://tandem.dev/problems/internal",
	  "Internal error" },
	{ ES_EUNKNOWN, 504, "https://tandem.dev/problems/outcome-unknown",
	  "Outcome unknown" },
};

#define NTABLE (sizeof(table) / sizeof(*table))

static const char *str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

START_TEST(every_code_has_its_status_type_and_title)
{
	ck_assert_uint_eq(NTABLE, ES_ERR__COUNT - 1); /* all but ES_OK */
	for (size_t i = 0; i < NTABLE; i++) {
		ck_assert_uint_eq(es_error_status(table[i].code),
				  table[i].status);
		ck_assert_str_eq(es_error_type(table[i].code), table[i].type);
		ck_assert_str_eq(es_error_title(table[i].code), table[i].title);
	}
}
END_TEST

START_TEST(out_of_range_code_is_internal)
{
	ck_assert_uint_eq(es_error_status(ES_ERR__COUNT), 500);
	ck_assert_uint_eq(es_error_status((enum es_err) - 1), 500);
	ck_assert_str_eq(es_error_title(ES_ERR__COUNT), "Internal error");
	ck_assert_str_eq(es_error_type(ES_ERR__COUNT),
			 "https://tandem.dev/problems/internal");
}
END_TEST

START_TEST(problem_of_each_code)
{
	for (size_t i = 0; i < NTABLE; i++) {
		struct es_error err = ES_ERROR_INIT;
		json_t *p;

		ck_assert_int_eq(es_error_set(&err, table[i].code,
					      "cannot append to '%s'",
					      "account-42"),
				 -1);
		p = es_error_problem(&err);
		ck_assert_ptr_nonnull(p);
		ck_assert_str_eq(str(p, "type"), table[i].type);
		ck_assert_str_eq(str(p, "title"), table[i].title);
		ck_assert_int_eq(
			json_integer_value(json_object_get(p, "status")),
			table[i].status);
		ck_assert_str_eq(str(p, "detail"),
				 "cannot append to 'account-42'");
		ck_assert_ptr_null(json_object_get(p, "errors"));
		ck_assert_ptr_null(json_object_get(p, "current_version"));
		ck_assert_uint_eq(json_object_size(p), 4);
		json_decref(p);
		es_error_release(&err);
	}
}
END_TEST

START_TEST(problem_without_detail_uses_title)
{
	struct es_error err = ES_ERROR_INIT;
	json_t *p;

	err.code = ES_ENOTFOUND;
	p = es_error_problem(&err);
	ck_assert_str_eq(str(p, "detail"), "Not found");
	json_decref(p);
}
END_TEST

START_TEST(problem_of_no_error_is_internal)
{
	struct es_error err = ES_ERROR_INIT;
	json_t *p = es_error_problem(&err), *q = es_error_problem(NULL);

	ck_assert_int_eq(json_integer_value(json_object_get(p, "status")), 500);
	ck_assert_int_eq(json_integer_value(json_object_get(q, "status")), 500);
	json_decref(p);
	json_decref(q);
}
END_TEST

START_TEST(first_error_wins)
{
	struct es_error err = ES_ERROR_INIT;

	ck_assert(!es_error_isset(&err));
	es_error_set(&err, ES_ECONFLICT, "first");
	es_error_set(&err, ES_EINTERNAL, "second");
	ck_assert(es_error_isset(&err));
	ck_assert_int_eq(err.code, ES_ECONFLICT);
	ck_assert_str_eq(err.detail, "first");
	/* a field problem after another error does not change it */
	ck_assert_int_eq(es_error_field(&err, "amount", "is required"), -1);
	ck_assert_int_eq(err.code, ES_ECONFLICT);
	ck_assert_ptr_null(err.fields);
	es_error_release(&err);
}
END_TEST

START_TEST(null_error_is_allowed)
{
	ck_assert_int_eq(es_error_set(NULL, ES_EINTERNAL, "x"), -1);
	ck_assert_int_eq(es_error_field(NULL, "f", "x"), -1);
	ck_assert(!es_error_isset(NULL));
	es_error_release(NULL);
}
END_TEST

START_TEST(fields_make_422_with_errors_list)
{
	struct es_error err = ES_ERROR_INIT;
	json_t *p, *errors;

	es_error_field(&err, "amount", "must be in [1, %d]", 10);
	es_error_field(&err, "currency", "is required");
	ck_assert_int_eq(err.code, ES_EINVALID);
	ck_assert_uint_eq(es_error_status(err.code), 422);
	p = es_error_problem(&err);
	ck_assert_int_eq(json_integer_value(json_object_get(p, "status")), 422);
	ck_assert_str_eq(str(p, "detail"), "one or more fields are invalid");
	errors = json_object_get(p, "errors");
	ck_assert_uint_eq(json_array_size(errors), 2);
	ck_assert_str_eq(str(json_array_get(errors, 0), "field"), "amount");
	ck_assert_str_eq(str(json_array_get(errors, 0), "message"),
			 "must be in [1, 10]");
	ck_assert_str_eq(str(json_array_get(errors, 1), "field"), "currency");
	json_decref(p);
	es_error_release(&err);
}
END_TEST

START_TEST(later_set_does_not_hide_fields)
{
	struct es_error err = ES_ERROR_INIT;

	es_error_field(&err, "owner", "is required");
	es_error_set(&err, ES_EUNAVAIL, "database unavailable");
	ck_assert_int_eq(err.code, ES_EINVALID);
	ck_assert_uint_eq(json_array_size(err.fields), 1);
	es_error_release(&err);
}
END_TEST

START_TEST(current_version_is_reported)
{
	struct es_error err = ES_ERROR_INIT;
	json_t *p;

	es_error_set(&err, ES_EPRECONDITION, "version mismatch");
	err.current_version = 7;
	p = es_error_problem(&err);
	ck_assert_int_eq(json_integer_value(json_object_get(p, "status")), 412);
	ck_assert_int_eq(
		json_integer_value(json_object_get(p, "current_version")), 7);
	json_decref(p);
	es_error_release(&err);
}
END_TEST

START_TEST(release_resets_everything)
{
	struct es_error err = ES_ERROR_INIT;

	es_error_field(&err, "x", "bad");
	err.current_version = 3;
	err.retry_after = 5;
	es_error_release(&err);
	ck_assert_int_eq(err.code, ES_OK);
	ck_assert_str_eq(err.detail, "");
	ck_assert_ptr_null(err.fields);
	ck_assert_int_eq(err.current_version, -1);
	ck_assert_int_eq(err.retry_after, 0);
	/* usable again */
	es_error_set(&err, ES_ENOTFOUND, "again");
	ck_assert_int_eq(err.code, ES_ENOTFOUND);
}
END_TEST

START_TEST(long_detail_is_truncated)
{
	struct es_error err = ES_ERROR_INIT;
	char big[400];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	es_error_set(&err, ES_EMALFORMED, "%s", big);
	ck_assert_uint_eq(strlen(err.detail), sizeof(err.detail) - 1);
}
END_TEST

static Suite *error_suite(void)
{
	Suite *s = suite_create("error");
	TCase *tc = tcase_create("table");

	tcase_add_test(tc, every_code_has_its_status_type_and_title);
	tcase_add_test(tc, out_of_range_code_is_internal);
	tcase_add_test(tc, problem_of_each_code);
	tcase_add_test(tc, problem_without_detail_uses_title);
	tcase_add_test(tc, problem_of_no_error_is_internal);
	suite_add_tcase(s, tc);
	tc = tcase_create("set");
	tcase_add_test(tc, first_error_wins);
	tcase_add_test(tc, null_error_is_allowed);
	tcase_add_test(tc, fields_make_422_with_errors_list);
	tcase_add_test(tc, later_set_does_not_hide_fields);
	tcase_add_test(tc, current_version_is_reported);
	tcase_add_test(tc, release_resets_everything);
	tcase_add_test(tc, long_detail_is_truncated);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(error_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
