/* check_config.c - the environment table and the shared command line. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "es_config.h"
#include "es_http.h"

/* A fake environment: "NAME=value" strings, NULL-terminated. */
static const char *fake_env(const char *name, void *data)
{
	const char *const *env = data;
	size_t n = strlen(name);

	for (; *env; env++)
		if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
			return *env + n + 1;
	return NULL;
}

struct svc {
	const char *url;
	const char *level;
	long workers;
	int verbose;
	struct es_http_config http;
};

static struct svc c;
static struct es_error err;

static const struct es_config_var vars[] = {
	{ "DATABASE_URL", ES_CONFIG_STR, &c.url, NULL, 0, 0, "db" },
	ES_HTTP_CONFIG_VARS(&c.http, "8081"),
	{ "LOG_LEVEL", ES_CONFIG_STR, &c.level, "info", 0, 0, "" },
	{ "WORKERS", ES_CONFIG_INT, &c.workers, "4", 1, 64, "" },
	{ "VERBOSE", ES_CONFIG_BOOL, &c.verbose, "false", 0, 0, "" },
};
#define NVARS (sizeof(vars) / sizeof(*vars))

static int load(const char *const *env)
{
	memset(&c, 0, sizeof(c));
	es_error_release(&err);
	return es_config_load(vars, NVARS, fake_env, (void *)env, &err);
}

static void setup(void)
{
	err = (struct es_error)ES_ERROR_INIT;
}

START_TEST(defaults_fill_what_is_not_set)
{
	const char *env[] = { "DATABASE_URL=postgresql://x/y", NULL };

	ck_assert_int_eq(load(env), 0);
	ck_assert_str_eq(c.url, "postgresql://x/y");
	ck_assert_str_eq(c.level, "info");
	ck_assert_int_eq(c.workers, 4);
	ck_assert_int_eq(c.verbose, 0);
	ck_assert_int_eq(c.http.port, 8081);
	ck_assert_str_eq(c.http.bind_address, "0.0.0.0");
	ck_assert_int_eq(c.http.threads, 0);
	ck_assert_int_eq(c.http.max_connections, 1024);
	ck_assert_int_eq(c.http.per_ip_connections, 256);
	ck_assert_int_eq(c.http.connection_memory, 32768);
	ck_assert_int_eq(c.http.idle_timeout, 30);
	ck_assert_int_eq(c.http.max_body, 65536);
}
END_TEST

START_TEST(environment_overrides_defaults)
{
	const char *env[] = { "DATABASE_URL=u",	   "PORT=9000",
			      "MAX_BODY_BYTES=10", "BIND_ADDRESS=127.0.0.1",
			      "WORKERS=64",	   NULL };

	ck_assert_int_eq(load(env), 0);
	ck_assert_int_eq(c.http.port, 9000);
	ck_assert_int_eq(c.http.max_body, 10);
	ck_assert_str_eq(c.http.bind_address, "127.0.0.1");
	ck_assert_int_eq(c.workers, 64);
}
END_TEST

START_TEST(empty_value_counts_as_unset)
{
	const char *env[] = { "DATABASE_URL=u", "PORT=", NULL };

	ck_assert_int_eq(load(env), 0);
	ck_assert_int_eq(c.http.port, 8081);
}
END_TEST

START_TEST(missing_required_is_named)
{
	const char *env[] = { "PORT=9000", NULL };
	const char *empty[] = { "DATABASE_URL=", NULL };

	ck_assert_int_eq(load(env), -1);
	ck_assert_int_eq(err.code, ES_EINVALID);
	ck_assert_str_eq(err.detail, "'DATABASE_URL' is required");
	ck_assert_int_eq(load(empty), -1);
	ck_assert_str_eq(err.detail, "'DATABASE_URL' is required");
}
END_TEST

START_TEST(int_out_of_range_message)
{
	const char *env[] = { "DATABASE_URL=u", "PORT=70000", NULL };

	ck_assert_int_eq(load(env), -1);
	ck_assert_int_eq(err.code, ES_EINVALID);
	ck_assert_str_eq(
		err.detail,
		"'PORT' must be an integer in [1, 65535], got '70000'");
}
END_TEST

START_TEST(int_not_a_number_message)
{
	static const char *const bad[] = { "abc", "12x",
					   "1.5", "0x10",
					   "-",	  "99999999999999999999999" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		char port[64], want[128];
		const char *env[] = { "DATABASE_URL=u", port, NULL };

		snprintf(port, sizeof(port), "PORT=%s", bad[i]);
		snprintf(want, sizeof(want),
			 "'PORT' must be an integer in [1, 65535], got '%s'",
			 bad[i]);
		ck_assert_int_eq(load(env), -1);
		ck_assert_str_eq(err.detail, want);
	}
}
END_TEST

START_TEST(int_bounds_are_inclusive)
{
	const char *lo[] = { "DATABASE_URL=u", "PORT=1", "WORKERS=1", NULL };
	const char *hi[] = { "DATABASE_URL=u", "PORT=65535", NULL };
	const char *zero[] = { "DATABASE_URL=u", "WORKERS=0", NULL };

	ck_assert_int_eq(load(lo), 0);
	ck_assert_int_eq(c.http.port, 1);
	ck_assert_int_eq(load(hi), 0);
	ck_assert_int_eq(c.http.port, 65535);
	ck_assert_int_eq(load(zero), -1);
	ck_assert_str_eq(err.detail,
			 "'WORKERS' must be an integer in [1, 64], got '0'");
}
END_TEST

START_TEST(bool_parsing)
{
	static const char *const yes[] = { "1", "true", "TRUE", "yes", "On" };
	static const char *const no[] = { "0", "false", "No", "off", "OFF" };
	const char *env[] = { "DATABASE_URL=u", NULL, NULL };
	char kv[32];

	env[1] = kv;
	for (size_t i = 0; i < 5; i++) {
		snprintf(kv, sizeof(kv), "VERBOSE=%s", yes[i]);
		ck_assert_int_eq(load(env), 0);
		ck_assert_int_eq(c.verbose, 1);
		snprintf(kv, sizeof(kv), "VERBOSE=%s", no[i]);
		ck_assert_int_eq(load(env), 0);
		ck_assert_int_eq(c.verbose, 0);
	}
	snprintf(kv, sizeof(kv), "VERBOSE=maybe");
	ck_assert_int_eq(load(env), -1);
	ck_assert_str_eq(err.detail,
			 "'VERBOSE' must be true or false, got 'maybe'");
}
END_TEST

START_TEST(every_http_variable_is_bounded)
{
	static const char *const bad[] = {
		"HTTP_THREADS=-1",
		"MAX_CONNECTIONS=0",
		"PER_IP_CONNECTION_LIMIT=-1",
		"CONNECTION_MEMORY_BYTES=100",
		"IDLE_TIMEOUT_SECONDS=0",
		"HEADER_TIMEOUT_SECONDS=-1",
		"MAX_BODY_BYTES=0",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		const char *env[] = { "DATABASE_URL=u", bad[i], NULL };
		size_t n = strcspn(bad[i], "=");

		ck_assert_int_eq(load(env), -1);
		ck_assert_msg(strncmp(err.detail + 1, bad[i], n) == 0,
			      "detail '%s' does not name %.*s", err.detail,
			      (int)n, bad[i]);
	}
}
END_TEST

/* Run es_config_cli() with stdout and stderr captured into `out`. */
static int cli(char **argv, int argc, long *port, char *out, size_t size)
{
	char path[] = "/tmp/check_config.XXXXXX";
	int fd = mkstemp(path), saved_out, saved_err, rc;
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	fflush(stdout);
	fflush(stderr);
	saved_out = dup(1);
	saved_err = dup(2);
	dup2(fd, 1);
	dup2(fd, 2);
	rc = es_config_cli(argc, argv, "svc", "Does things.", vars, NVARS,
			   port);
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

START_TEST(port_flag_is_taken)
{
	char *argv[] = { "svc", "--port", "9100", NULL };
	char *eq[] = { "svc", "--port=9200", NULL };
	char out[256];
	long port = 0;

	ck_assert_int_eq(cli(argv, 3, &port, out, sizeof(out)), 0);
	ck_assert_int_eq(port, 9100);
	ck_assert_int_eq(cli(eq, 2, &port, out, sizeof(out)), 0);
	ck_assert_int_eq(port, 9200);
}
END_TEST

START_TEST(port_flag_wins_over_port_variable)
{
	const char *env[] = { "DATABASE_URL=u", "PORT=8000", NULL };
	char *argv[] = { "svc", "--port", "9100", NULL };
	char out[256];
	long port = 0;

	/* what the mains do: load, then let --port override */
	ck_assert_int_eq(load(env), 0);
	ck_assert_int_eq(cli(argv, 3, &port, out, sizeof(out)), 0);
	if (port)
		c.http.port = port;
	ck_assert_int_eq(c.http.port, 9100);
}
END_TEST

START_TEST(no_port_flag_leaves_port_alone)
{
	char *argv[] = { "svc", NULL };
	char out[256];
	long port = 0;

	ck_assert_int_eq(cli(argv, 1, &port, out, sizeof(out)), 0);
	ck_assert_int_eq(port, 0);
}
END_TEST

START_TEST(bad_port_flag_is_a_usage_error)
{
	static const char *const bad[] = { "0", "65536", "x", "" };
	char out[256], want[128];

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		char *argv[] = { "svc", "--port", (char *)bad[i], NULL };
		long port = 0;

		ck_assert_int_eq(cli(argv, 3, &port, out, sizeof(out)), -1);
		ck_assert_int_eq(port, 0);
		snprintf(
			want, sizeof(want),
			"svc: '--port' must be an integer in [1, 65535], got '%s'\n",
			bad[i]);
		ck_assert_str_eq(out, want);
	}
}
END_TEST

START_TEST(port_flag_without_value_is_a_usage_error)
{
	char *argv[] = { "svc", "--port", NULL };
	char out[256];
	long port = 0;

	ck_assert_int_eq(cli(argv, 2, &port, out, sizeof(out)), -1);
	ck_assert_int_eq(port, 0);
}
END_TEST

START_TEST(unknown_argument_is_a_usage_error)
{
	char *argv[] = { "svc", "--frobnicate", NULL };
	char out[256];
	long port = 0;

	ck_assert_int_eq(cli(argv, 2, &port, out, sizeof(out)), -1);
	ck_assert_str_eq(out,
			 "svc: unknown argument '--frobnicate' (try --help)\n");
}
END_TEST

START_TEST(help_lists_every_variable)
{
	char *argv[] = { "svc", "--help", NULL };
	char out[4096];
	long port = 0;

	ck_assert_int_eq(cli(argv, 2, &port, out, sizeof(out)), 1);
	ck_assert_ptr_nonnull(strstr(out, "Usage: svc"));
	ck_assert_ptr_nonnull(strstr(out, "Does things."));
	for (size_t i = 0; i < NVARS; i++)
		ck_assert_msg(strstr(out, vars[i].name) != NULL,
			      "--help lacks %s", vars[i].name);
	ck_assert_ptr_nonnull(strstr(out, "(required)"));
	ck_assert_ptr_nonnull(strstr(out, "(default: 8081)"));
}
END_TEST

START_TEST(version_prints_name_and_version)
{
	char *argv[] = { "svc", "--version", NULL };
	char out[256], want[128];
	long port = 0;

	ck_assert_int_eq(cli(argv, 2, &port, out, sizeof(out)), 1);
	snprintf(want, sizeof(want), "svc %s\n", TANDEM_VERSION);
	ck_assert_str_eq(out, want);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("load");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, defaults_fill_what_is_not_set);
	tcase_add_test(tc, environment_overrides_defaults);
	tcase_add_test(tc, empty_value_counts_as_unset);
	tcase_add_test(tc, missing_required_is_named);
	tcase_add_test(tc, int_out_of_range_message);
	tcase_add_test(tc, int_not_a_number_message);
	tcase_add_test(tc, int_bounds_are_inclusive);
	tcase_add_test(tc, bool_parsing);
	tcase_add_test(tc, every_http_variable_is_bounded);
	suite_add_tcase(s, tc);
	tc = tcase_create("cli");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, port_flag_is_taken);
	tcase_add_test(tc, port_flag_wins_over_port_variable);
	tcase_add_test(tc, no_port_flag_leaves_port_alone);
	tcase_add_test(tc, bad_port_flag_is_a_usage_error);
	tcase_add_test(tc, port_flag_without_value_is_a_usage_error);
	tcase_add_test(tc, unknown_argument_is_a_usage_error);
	tcase_add_test(tc, help_lists_every_variable);
	tcase_add_test(tc, version_prints_name_and_version);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
