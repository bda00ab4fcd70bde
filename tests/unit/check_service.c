/*
 * check_service.c - `--routes`: es_router_write() and how
 * es_service_configure() answers it.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "es_router.h"
#include "es_service.h"

static void h_any(struct es_request *req)
{
	(void)req;
}

static const struct es_route routes[] = {
	{ "GET", "/health", h_any, 0, NULL, 0 },
	{ "POST", "/accounts", h_any, ES_ROUTE_JSON, NULL, 0 },
	{ "GET", "/accounts/{id}", h_any, 0, NULL, 0 },
	{ "POST", "/streams/{stream_id}/events", h_any, ES_ROUTE_JSON, NULL,
	  0 },
};

#define NROUTES (sizeof(routes) / sizeof(*routes))

static const char expected[] = "GET /health\n"
			       "POST /accounts\n"
			       "GET /accounts/{id}\n"
			       "POST /streams/{stream_id}/events\n";

/* Run es_router_write() into a string. Caller frees `*out`. */
static int write_routes(const struct es_route *r, size_t n, char **out,
			struct es_error *err)
{
	size_t len = 0;
	FILE *f = open_memstream(out, &len);
	int rc;

	ck_assert_ptr_nonnull(f);
	rc = es_router_write(f, r, n, err);
	ck_assert_int_eq(fclose(f), 0);
	return rc;
}

START_TEST(one_line_per_row_in_table_order)
{
	struct es_error err = ES_ERROR_INIT;
	char *out = NULL;

	ck_assert_int_eq(write_routes(routes, NROUTES, &out, &err), 0);
	ck_assert_str_eq(out, expected);
	ck_assert_int_eq(err.code, ES_OK);
	free(out);
}
END_TEST

START_TEST(empty_table_writes_nothing)
{
	struct es_error err = ES_ERROR_INIT;
	char *out = NULL;

	ck_assert_int_eq(write_routes(routes, 0, &out, &err), 0);
	ck_assert_str_eq(out, "");
	free(out);
}
END_TEST

START_TEST(malformed_row_is_an_error)
{
	static const struct es_route no_slash[] = {
		{ "GET", "/health", h_any, 0, NULL, 0 },
		{ "GET", "health", h_any, 0, NULL, 0 },
	};
	static const struct es_route no_method[] = {
		{ "", "/health", h_any, 0, NULL, 0 },
	};
	static const struct es_route null_pattern[] = {
		{ "GET", NULL, h_any, 0, NULL, 0 },
	};
	struct es_error err = ES_ERROR_INIT;
	char *out = NULL;

	ck_assert_int_eq(write_routes(no_slash, 2, &out, &err), -1);
	ck_assert_int_eq(err.code, ES_EINTERNAL);
	ck_assert_msg(strstr(err.detail, "route 1") != NULL, "detail: %s",
		      err.detail);
	/* the rows before the bad one are out, the bad one is not */
	ck_assert_str_eq(out, "GET /health\n");
	free(out);
	es_error_release(&err);
	ck_assert_int_eq(write_routes(no_method, 1, &out, &err), -1);
	ck_assert_str_eq(out, "");
	free(out);
	es_error_release(&err);
	ck_assert_int_eq(write_routes(null_pattern, 1, &out, &err), -1);
	free(out);
	es_error_release(&err);
}
END_TEST

START_TEST(write_failure_is_an_error)
{
	struct es_error err = ES_ERROR_INIT;
	FILE *f = fopen("/dev/null", "r"); /* not open for writing */

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(es_router_write(f, routes, NROUTES, &err), -1);
	ck_assert_int_eq(err.code, ES_EINTERNAL);
	fclose(f);
	es_error_release(&err);
}
END_TEST

/* ---- es_service_configure() ---- */

static const char *database_url;
static const char *log_level;
static long port_value;

/* DATABASE_URL is required: --routes must not need it. */
static const struct es_config_var vars[] = {
	{ "CHECK_SERVICE_DATABASE_URL", ES_CONFIG_STR, &database_url, NULL, 0,
	  0, "required" },
	{ "CHECK_SERVICE_LOG_LEVEL", ES_CONFIG_STR, &log_level, "off", 0, 0,
	  "log level" },
};

#define NVARS (sizeof(vars) / sizeof(*vars))

/*
 * Run es_service_configure() with stdout and stderr captured into `out`;
 * returns what it returns, *status its exit status.
 */
static int configure(char **argv, int argc, int *status, char *out, size_t size)
{
	char path[] = "/tmp/check_service.XXXXXX";
	int fd = mkstemp(path), saved_out, saved_err, rc;
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	fflush(stdout);
	fflush(stderr);
	saved_out = dup(1);
	saved_err = dup(2);
	dup2(fd, 1);
	dup2(fd, 2);
	*status = -100;
	rc = es_service_configure(argc, argv, "svc", "Does things.", vars,
				  NVARS, routes, NROUTES, &port_value,
				  &log_level, status);
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, 1);
	dup2(saved_err, 2);
	close(saved_out);
	close(saved_err);
	lseek(fd, 0, SEEK_SET);
	n = read(fd, out, size - 1);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return rc;
}

static void setup(void)
{
	unsetenv("CHECK_SERVICE_DATABASE_URL");
	unsetenv("CHECK_SERVICE_LOG_LEVEL");
	port_value = 0;
}

START_TEST(routes_flag_prints_the_table_and_exits_0)
{
	char *argv[] = { "svc", "--routes", NULL };
	char out[1024];
	int status;

	/* CHECK_SERVICE_DATABASE_URL is not set: not needed */
	ck_assert_int_eq(configure(argv, 2, &status, out, sizeof(out)), -1);
	ck_assert_int_eq(status, 0);
	ck_assert_str_eq(out, expected);
}
END_TEST

START_TEST(routes_flag_after_port_is_answered)
{
	char *argv[] = { "svc", "--port", "9100", "--routes", NULL };
	char *eq[] = { "svc", "--port=9100", "--routes", NULL };
	char out[1024];
	int status;

	ck_assert_int_eq(configure(argv, 4, &status, out, sizeof(out)), -1);
	ck_assert_int_eq(status, 0);
	ck_assert_str_eq(out, expected);
	ck_assert_int_eq(configure(eq, 3, &status, out, sizeof(out)), -1);
	ck_assert_int_eq(status, 0);
	ck_assert_str_eq(out, expected);
}
END_TEST

START_TEST(first_of_help_version_routes_wins)
{
	char *help[] = { "svc", "--help", "--routes", NULL };
	char *version[] = { "svc", "--version", "--routes", NULL };
	char *bad[] = { "svc", "--bogus", "--routes", NULL };
	/* "--routes" as the value of --port is a bad port, not the option */
	char *port_value_arg[] = { "svc", "--port", "--routes", NULL };
	char out[4096];
	int status;

	ck_assert_int_eq(configure(help, 3, &status, out, sizeof(out)), -1);
	ck_assert_int_eq(status, 0);
	ck_assert_msg(strncmp(out, "Usage: svc", 10) == 0, "out: %s", out);
	ck_assert_int_eq(configure(version, 3, &status, out, sizeof(out)), -1);
	ck_assert_int_eq(status, 0);
	ck_assert_msg(strncmp(out, "svc ", 4) == 0, "out: %s", out);
	ck_assert_int_eq(configure(bad, 3, &status, out, sizeof(out)), -1);
	ck_assert_int_eq(status, 2);
	ck_assert_msg(strstr(out, "unknown argument '--bogus'"), "out: %s",
		      out);
	ck_assert_int_eq(
		configure(port_value_arg, 3, &status, out, sizeof(out)), -1);
	ck_assert_int_eq(status, 2);
	ck_assert_msg(strstr(out, "GET /health") == NULL, "out: %s", out);
}
END_TEST

START_TEST(help_mentions_routes_flag)
{
	char *argv[] = { "svc", "--help", NULL };
	char out[4096];
	int status;

	ck_assert_int_eq(configure(argv, 2, &status, out, sizeof(out)), -1);
	ck_assert_int_eq(status, 0);
	ck_assert_msg(strstr(out, "Does things.\n`svc --routes` prints") !=
			      NULL,
		      "out: %s", out);
	/* the environment table still follows, for t0020 */
	ck_assert_msg(strstr(out, "\nEnvironment:\n") != NULL, "out: %s", out);
}
END_TEST

START_TEST(without_routes_flag_configuration_goes_on)
{
	char *argv[] = { "svc", "--port", "9100", NULL };
	char out[1024];
	int status;

	setenv("CHECK_SERVICE_DATABASE_URL", "postgresql:///x", 1);
	ck_assert_int_eq(configure(argv, 3, &status, out, sizeof(out)), 0);
	ck_assert_int_eq(port_value, 9100);
	ck_assert_str_eq(database_url, "postgresql:///x");
	ck_assert_str_eq(out, "");
}
END_TEST

static Suite *service_suite(void)
{
	Suite *s = suite_create("service");
	TCase *tc = tcase_create("router_write");

	tcase_add_test(tc, one_line_per_row_in_table_order);
	tcase_add_test(tc, empty_table_writes_nothing);
	tcase_add_test(tc, malformed_row_is_an_error);
	tcase_add_test(tc, write_failure_is_an_error);
	suite_add_tcase(s, tc);
	tc = tcase_create("configure");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, routes_flag_prints_the_table_and_exits_0);
	tcase_add_test(tc, routes_flag_after_port_is_answered);
	tcase_add_test(tc, first_of_help_version_routes_wins);
	tcase_add_test(tc, help_mentions_routes_flag);
	tcase_add_test(tc, without_routes_flag_configuration_goes_on);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(service_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
