/* check_metrics.c - the command service's counters and their text. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../command-service/cmd_metrics.h"
#include "../../command-service/cmd_pool.h"
#include "es_log.h"

/* cmd_metrics_write() into a string. Caller frees. */
static char *written(struct cmd_pool *pool)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(cmd_metrics_write(out, pool, NULL), 0);
	fclose(out);
	return text;
}

static void has_line(const char *text, const char *line)
{
	char want[256];
	const char *p;

	snprintf(want, sizeof(want), "%s\n", line);
	p = strstr(text, want);
	ck_assert_msg(p && (p == text || p[-1] == '\n'), "no line '%s' in:\n%s",
		      line, text);
}

static void setup(void)
{
	es_log_set_level("off");
	cmd_metrics_reset();
}

START_TEST(counters_count)
{
	char *text;

	cmd_metrics_appended("AccountOpened", 1);
	cmd_metrics_appended("TransferSent", 2);
	cmd_metrics_appended("SomethingElse", 3);
	cmd_metrics_appended(NULL, 1);
	cmd_metrics_appended("MoneyDeposited", 0);
	cmd_metrics_appended("OverdraftLimitChanged", 1);
	cmd_metrics_append();
	cmd_metrics_append();
	cmd_metrics_conflict();
	cmd_metrics_retry();
	cmd_metrics_retry();
	cmd_metrics_retry();
	cmd_metrics_replay();
	text = written(NULL);
	has_line(text,
		 "tandem_events_appended_total{type=\"AccountOpened\"} 1");
	has_line(text, "tandem_events_appended_total{type=\"TransferSent\"} 2");
	has_line(text, "tandem_events_appended_total{type=\"other\"} 4");
	has_line(text,
		 "tandem_events_appended_total{type=\"MoneyDeposited\"} 0");
	has_line(
		text,
		"tandem_events_appended_total{type=\"OverdraftLimitChanged\"} 1");
	has_line(text, "tandem_appends_total 2");
	has_line(text, "tandem_version_conflicts_total 1");
	has_line(text, "tandem_command_retries_total 3");
	has_line(text, "tandem_idempotent_replays_total 1");
	/* no pool, no pool gauges */
	ck_assert_ptr_null(strstr(text, "tandem_db_pool_size"));
	free(text);
}
END_TEST

START_TEST(commands_by_outcome_from_status)
{
	static const struct {
		const char *command;
		unsigned int status;
	} calls[] = {
		{ "deposit", 201 },	    { "deposit", 200 },
		{ "deposit", 409 },	    { "deposit", 412 },
		{ "deposit", 404 },	    { "withdraw", 422 },
		{ "withdraw", 400 },	    { "withdraw", 415 },
		{ "transfer", 503 },	    { "close", 500 },
		{ "nonsense", 201 },	    { NULL, 201 },
		{ "overdraft_limit", 409 },
	};
	char *text;

	for (size_t i = 0; i < sizeof(calls) / sizeof(*calls); i++)
		cmd_metrics_command(calls[i].command, calls[i].status);
	text = written(NULL);
	has_line(
		text,
		"tandem_commands_total{command=\"deposit\",outcome=\"accepted\"} 2");
	has_line(
		text,
		"tandem_commands_total{command=\"deposit\",outcome=\"rejected\"} 3");
	has_line(
		text,
		"tandem_commands_total{command=\"withdraw\",outcome=\"invalid\"} 3");
	has_line(
		text,
		"tandem_commands_total{command=\"transfer\",outcome=\"unavailable\"} 1");
	has_line(
		text,
		"tandem_commands_total{command=\"close\",outcome=\"error\"} 1");
	has_line(
		text,
		"tandem_commands_total{command=\"other\",outcome=\"accepted\"} 2");
	has_line(
		text,
		"tandem_commands_total{command=\"overdraft_limit\",outcome=\"rejected\"} 1");
	has_line(
		text,
		"tandem_commands_total{command=\"open\",outcome=\"accepted\"} 0");
	free(text);
}
END_TEST

START_TEST(every_family_has_help_and_type)
{
	static const char *const families[] = {
		"tandem_events_appended_total",
		"tandem_appends_total",
		"tandem_version_conflicts_total",
		"tandem_command_retries_total",
		"tandem_idempotent_replays_total",
		"tandem_commands_total",
		"tandem_db_pool_rejected_total",
		"tandem_db_pool_size",
		"tandem_db_pool_in_use",
		"tandem_db_pool_waiting",
		"tandem_db_pool_connected",
	};
	struct cmd_pool_config cfg = {
		.conninfo = "host=127.0.0.1 port=1 connect_timeout=1",
		.size = 3,
		.queue_max = 5,
	};
	struct es_error err = ES_ERROR_INIT;
	struct cmd_pool *pool = cmd_pool_start(&cfg, &err);
	char line[160], *text;

	ck_assert_ptr_nonnull(pool);
	cmd_metrics_pool_reject(CMD_REJECT_TIMEOUT);
	text = written(pool);
	cmd_pool_stop(pool);
	for (size_t i = 0; i < sizeof(families) / sizeof(*families); i++) {
		snprintf(line, sizeof(line), "# TYPE %s ", families[i]);
		ck_assert_msg(strstr(text, line), "no TYPE for %s",
			      families[i]);
		snprintf(line, sizeof(line), "# HELP %s ", families[i]);
		ck_assert_msg(strstr(text, line), "no HELP for %s",
			      families[i]);
	}
	has_line(text, "# TYPE tandem_db_pool_size gauge");
	has_line(text, "# TYPE tandem_appends_total counter");
	has_line(text, "tandem_db_pool_size 3");
	has_line(text, "tandem_db_pool_connected 0");
	has_line(text, "tandem_db_pool_rejected_total{reason=\"timeout\"} 1");
	has_line(text,
		 "tandem_db_pool_rejected_total{reason=\"queue_full\"} 0");
	free(text);
}
END_TEST

START_TEST(reset_zeroes_everything)
{
	char *text;

	cmd_metrics_appended("AccountClosed", 5);
	cmd_metrics_conflict();
	cmd_metrics_command("open", 201);
	cmd_metrics_reset();
	text = written(NULL);
	has_line(text,
		 "tandem_events_appended_total{type=\"AccountClosed\"} 0");
	has_line(text, "tandem_version_conflicts_total 0");
	has_line(
		text,
		"tandem_commands_total{command=\"open\",outcome=\"accepted\"} 0");
	free(text);
}
END_TEST

static Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("counters");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, counters_count);
	tcase_add_test(tc, commands_by_outcome_from_status);
	tcase_add_test(tc, every_family_has_help_and_type);
	tcase_add_test(tc, reset_zeroes_everything);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(metrics_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
