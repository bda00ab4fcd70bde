/* check_router.c - (method, path) to route, without a daemon. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "es_router.h"

static void h_any(struct es_request *req)
{
	(void)req;
}

static const struct es_route routes[] = {
	{ "GET", "/health", h_any, 0, NULL, 0 },
	{ "POST", "/accounts", h_any, ES_ROUTE_JSON, NULL, 0 },
	{ "GET", "/accounts/stats", h_any, 0, NULL, 0 },
	{ "GET", "/accounts/{id}", h_any, 0, NULL, 0 },
	{ "POST", "/accounts/{id}/deposits", h_any, ES_ROUTE_JSON, NULL, 0 },
	{ "GET", "/accounts/{id}/transactions", h_any, 0, NULL, 0 },
	{ "DELETE", "/accounts/{id}", h_any, 0, NULL, 0 },
	{ "POST", "/streams/{stream}/events/{event}", h_any, 0, NULL, 0 },
	{ "GET", "/", h_any, 0, NULL, 0 },
};

#define N (sizeof(routes) / sizeof(*routes))

static struct es_match m;

static const struct es_route *match(const char *method, const char *path,
				    struct es_error *err)
{
	memset(&m, 0xaa, sizeof(m)); /* no leftovers from an earlier match */
	if (es_router_match(routes, N, method, path, &m, err) < 0)
		return NULL;
	return m.route;
}

static void assert_code(const char *method, const char *path, enum es_err code)
{
	struct es_error err = ES_ERROR_INIT;

	ck_assert_msg(match(method, path, &err) == NULL, "%s %s matched",
		      method, path);
	ck_assert_int_eq(err.code, code);
}

START_TEST(literal_path_matches)
{
	struct es_error err = ES_ERROR_INIT;

	ck_assert_ptr_eq(match("GET", "/health", &err), &routes[0]);
	ck_assert_uint_eq(m.nparams, 0);
	ck_assert_ptr_eq(match("POST", "/accounts", &err), &routes[1]);
	ck_assert_uint_eq(routes[1].flags & ES_ROUTE_JSON, ES_ROUTE_JSON);
	ck_assert_ptr_eq(match("GET", "/", &err), &routes[8]);
	ck_assert_int_eq(err.code, ES_OK);
}
END_TEST

START_TEST(capture_takes_one_segment)
{
	struct es_error err = ES_ERROR_INIT;

	ck_assert_ptr_eq(match("GET", "/accounts/acc-42", &err), &routes[3]);
	ck_assert_uint_eq(m.nparams, 1);
	ck_assert_str_eq(es_match_param(&m, "id"), "acc-42");
	ck_assert_ptr_null(es_match_param(&m, "i"));
	ck_assert_ptr_null(es_match_param(&m, "idx"));
	ck_assert_ptr_eq(match("POST", "/accounts/7/deposits", &err),
			 &routes[4]);
	ck_assert_str_eq(es_match_param(&m, "id"), "7");
}
END_TEST

START_TEST(several_captures)
{
	struct es_error err = ES_ERROR_INIT;

	ck_assert_ptr_eq(match("POST", "/streams/order-1/events/e9", &err),
			 &routes[7]);
	ck_assert_uint_eq(m.nparams, 2);
	ck_assert_str_eq(es_match_param(&m, "stream"), "order-1");
	ck_assert_str_eq(es_match_param(&m, "event"), "e9");
}
END_TEST

START_TEST(capture_keeps_bytes_as_they_are)
{
	struct es_error err = ES_ERROR_INIT;

	ck_assert_ptr_eq(match("GET", "/accounts/a%20b:c", &err), &routes[3]);
	ck_assert_str_eq(es_match_param(&m, "id"), "a%20b:c");
}
END_TEST

START_TEST(first_matching_row_wins)
{
	struct es_error err = ES_ERROR_INIT;

	ck_assert_ptr_eq(match("GET", "/accounts/stats", &err), &routes[2]);
	ck_assert_uint_eq(m.nparams, 0);
}
END_TEST

START_TEST(unknown_path_is_not_found)
{
	struct es_error err = ES_ERROR_INIT;

	ck_assert_ptr_null(match("GET", "/nowhere", &err));
	ck_assert_int_eq(err.code, ES_ENOTFOUND);
	ck_assert_str_eq(err.detail, "no route for '/nowhere'");
	assert_code("GET", "/accounts/1/deposits/x", ES_ENOTFOUND);
	assert_code("GET", "/health/x", ES_ENOTFOUND);
	assert_code("GET", "/healthz", ES_ENOTFOUND);
	assert_code("GET", "/Health", ES_ENOTFOUND);
	assert_code("GET", "health", ES_ENOTFOUND);
	assert_code("GET", "", ES_ENOTFOUND);
}
END_TEST

START_TEST(trailing_slash_does_not_match)
{
	assert_code("GET", "/health/", ES_ENOTFOUND);
	assert_code("GET", "/accounts/42/", ES_ENOTFOUND);
	assert_code("GET", "//", ES_ENOTFOUND);
}
END_TEST

START_TEST(empty_segment_is_not_captured)
{
	assert_code("POST", "/accounts//deposits", ES_ENOTFOUND);
	assert_code("GET", "/accounts/", ES_ENOTFOUND);
	assert_code("GET", "//accounts/1", ES_ENOTFOUND);
}
END_TEST

START_TEST(wrong_method_lists_allowed_ones)
{
	struct es_error err = ES_ERROR_INIT;

	ck_assert_ptr_null(match("POST", "/health", &err));
	ck_assert_int_eq(err.code, ES_EMETHOD);
	ck_assert_str_eq(m.allow, "GET, HEAD");
	ck_assert_str_eq(err.detail, "'POST' is not allowed on '/health'");
	assert_code("PUT", "/accounts/9", ES_EMETHOD);
	ck_assert_str_eq(m.allow, "GET, HEAD, DELETE");
	assert_code("GET", "/accounts", ES_EMETHOD);
	ck_assert_str_eq(m.allow, "POST");
	assert_code("GET", "/accounts/9/deposits", ES_EMETHOD);
	ck_assert_str_eq(m.allow, "POST");
	/* "/accounts/stats" fits two rows, both GET: listed once */
	assert_code("POST", "/accounts/stats", ES_EMETHOD);
	ck_assert_str_eq(m.allow, "GET, HEAD, DELETE");
}
END_TEST

START_TEST(head_is_served_by_get)
{
	struct es_error err = ES_ERROR_INIT;

	ck_assert_ptr_eq(match("HEAD", "/health", &err), &routes[0]);
	ck_assert_ptr_eq(match("HEAD", "/accounts/3", &err), &routes[3]);
	ck_assert_str_eq(es_match_param(&m, "id"), "3");
	assert_code("HEAD", "/accounts", ES_EMETHOD);
	ck_assert_str_eq(m.allow, "POST");
}
END_TEST

START_TEST(methods_are_case_sensitive)
{
	assert_code("get", "/health", ES_EMETHOD);
}
END_TEST

START_TEST(very_long_capture_is_not_found)
{
	char path[3000] = "/accounts/";

	memset(path + 10, 'x', 2000);
	path[2010] = '\0';
	assert_code("GET", path, ES_ENOTFOUND);
}
END_TEST

START_TEST(allow_lists_many_methods_without_overflow)
{
	static const struct es_route many[] = {
		{ "GET", "/x", h_any, 0, NULL, 0 },
		{ "PUT", "/x", h_any, 0, NULL, 0 },
		{ "PATCH", "/x", h_any, 0, NULL, 0 },
		{ "DELETE", "/x", h_any, 0, NULL, 0 },
		{ "OPTIONS", "/x", h_any, 0, NULL, 0 },
		{ "GETX", "/x", h_any, 0, NULL, 0 },
	};
	struct es_error err = ES_ERROR_INIT;
	struct es_match mm;

	ck_assert_int_eq(es_router_match(many, 6, "POST", "/x", &mm, &err), -1);
	ck_assert_str_eq(mm.allow,
			 "GET, HEAD, PUT, PATCH, DELETE, OPTIONS, GETX");
}
END_TEST

static Suite *router_suite(void)
{
	Suite *s = suite_create("router");
	TCase *tc = tcase_create("match");

	tcase_add_test(tc, literal_path_matches);
	tcase_add_test(tc, capture_takes_one_segment);
	tcase_add_test(tc, several_captures);
	tcase_add_test(tc, capture_keeps_bytes_as_they_are);
	tcase_add_test(tc, first_matching_row_wins);
	tcase_add_test(tc, unknown_path_is_not_found);
	tcase_add_test(tc, trailing_slash_does_not_match);
	tcase_add_test(tc, empty_segment_is_not_captured);
	tcase_add_test(tc, wrong_method_lists_allowed_ones);
	tcase_add_test(tc, head_is_served_by_get);
	tcase_add_test(tc, methods_are_case_sensitive);
	tcase_add_test(tc, very_long_capture_is_not_found);
	tcase_add_test(tc, allow_lists_many_methods_without_overflow);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(router_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
