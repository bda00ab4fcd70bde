/*
 * qry_metrics.c - GET /metrics: the HTTP server's metrics, then per view
 * the events applied, the time spent applying them, the lag, whether it
 * stopped and its parked streams, then the role, the read-your-writes waiters,
 * the in-memory view's size and the read pool, in the Prometheus text format.
 */
#include "qry_metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "qry_status.h"

#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* A label value: \\, \" and \n escaped, as the text format wants. */
static void label(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', out);
		if (*s == '\n')
			fputs("\\n", out);
		else
			fputc(*s, out);
	}
}

/* One tandem_parked_stream line per stream parked for view `name`. */
static void parked_write(FILE *out, const char *name,
			 const struct qry_parked *p)
{
	size_t i;

	for (i = 0; i < p->n; i++) {
		fprintf(out, "tandem_parked_stream{view=\"%s\",stream=\"",
			name);
		label(out, p->v[i].stream);
		fprintf(out, "\",position=\"%lld\",error=\"", p->v[i].position);
		label(out, p->v[i].error);
		fprintf(out, "\"} %lld\n", p->v[i].since);
	}
}

static void run_metrics(struct qry_read *j, void *p, struct qry_worker *w)
{
	struct es_error err = ES_ERROR_INIT;
	PGconn *db = qry_worker_db(w, QRY_DB_WRITE, &err);
	struct es_http *h = atomic_load(&j->ctx->http);
	struct qry_status_view *v;
	char *text = NULL;
	size_t len = 0, n = 0, i;
	long long epoch;
	long queued = 0, busy = 0;
	struct qry_memory_stats ms;
	int leader, rc = 0;
	FILE *out;

	(void)p;

	es_error_release(&err);
	v = qry_status_snap(j->ctx->st, db, &n, &leader, &epoch);
	out = open_memstream(&text, &len);
	if (!out || !v) {
		if (out)
			fclose(out);
		free(text);
		qry_status_snap_free(v, n);
		es_error_set(&err, ES_EINTERNAL, "cannot write the metrics");
		es_http_send_problem(j->req, &err);
		return;
	}
	if (h)
		rc = es_http_metrics_write(h, out);
	fprintf(out, "# HELP tandem_events_projected_total Events applied to "
		     "each view.\n# TYPE tandem_events_projected_total "
		     "counter\n");
	for (i = 0; i < n; i++)
		fprintf(out,
			"tandem_events_projected_total{view=\"%s\"} %lld\n",
			v[i].s.name, v[i].s.applied);
	fprintf(out, "# HELP tandem_projection_apply_seconds Time spent "
		     "applying batches to each view.\n# TYPE "
		     "tandem_projection_apply_seconds summary\n");
	for (i = 0; i < n; i++)
		fprintf(out,
			"tandem_projection_apply_seconds_sum{view=\"%s\"} %.6f\n"
			"tandem_projection_apply_seconds_count{view=\"%s\"} %lld\n",
			v[i].s.name, v[i].s.apply_seconds, v[i].s.name,
			v[i].s.batches);
	fprintf(out, "# HELP tandem_projection_lag_events Committed events "
		     "a view has not applied yet.\n# TYPE "
		     "tandem_projection_lag_events gauge\n");
	for (i = 0; i < n; i++)
		if (v[i].lag_known)
			fprintf(out,
				"tandem_projection_lag_events{view=\"%s\"} %lld\n",
				v[i].s.name, v[i].lag_events);
	fprintf(out, "# HELP tandem_projection_lag_seconds Age of the oldest "
		     "event a view has not applied yet.\n# TYPE "
		     "tandem_projection_lag_seconds gauge\n");
	for (i = 0; i < n; i++)
		if (v[i].lag_known)
			fprintf(out,
				"tandem_projection_lag_seconds{view=\"%s\"} %.3f\n",
				v[i].s.name, (double)v[i].lag_ms / 1e3);
	fprintf(out,
		"# HELP tandem_projection_stopped Whether a malformed "
		"event stopped the view.\n# TYPE tandem_projection_stopped "
		"gauge\n");
	for (i = 0; i < n; i++)
		fprintf(out, "tandem_projection_stopped{view=\"%s\"} %d\n",
			v[i].s.name, v[i].s.stopped ? 1 : 0);
	fprintf(out, "# HELP tandem_parked_streams Streams parked for the "
		     "view.\n# TYPE tandem_parked_streams gauge\n");
	for (i = 0; i < n; i++)
		fprintf(out, "tandem_parked_streams{view=\"%s\"} %zu\n",
			v[i].s.name, v[i].s.parked.n);
	fprintf(out, "# HELP tandem_parked_stream Since when (Unix time) a "
		     "stream is parked for a view, at which event and why.\n"
		     "# TYPE tandem_parked_stream gauge\n");
	for (i = 0; i < n; i++)
		parked_write(out, v[i].s.name, &v[i].s.parked);
	qry_readpool_stats(j->ctx->pool, &queued, &busy);
	qry_memory_stats(j->ctx->mem, &ms);
	fprintf(out,
		"# HELP tandem_waiting_requests Read-your-writes requests "
		"waiting for a view.\n# TYPE tandem_waiting_requests gauge\n"
		"tandem_waiting_requests %ld\n"
		"# HELP tandem_leader Whether this process projects the views.\n"
		"# TYPE tandem_leader gauge\ntandem_leader %d\n"
		"# HELP tandem_leader_epoch The fencing epoch while leader.\n"
		"# TYPE tandem_leader_epoch gauge\ntandem_leader_epoch %lld\n"
		"# HELP tandem_memory_accounts Accounts in the in-memory view.\n"
		"# TYPE tandem_memory_accounts gauge\ntandem_memory_accounts %zu\n"
		"# HELP tandem_memory_bytes Bytes of accounts the in-memory view "
		"counts against MEMORY_VIEW_MAX_MB.\n"
		"# TYPE tandem_memory_bytes gauge\ntandem_memory_bytes %zu\n"
		"# HELP tandem_memory_max_bytes MEMORY_VIEW_MAX_MB in bytes, "
		"0: no cap.\n"
		"# TYPE tandem_memory_max_bytes gauge\n"
		"tandem_memory_max_bytes %zu\n"
		"# HELP tandem_memory_capped Whether the cap left accounts out of "
		"the in-memory view (they are read from view_accounts).\n"
		"# TYPE tandem_memory_capped gauge\ntandem_memory_capped %d\n"
		"# HELP tandem_read_queue Database reads waiting for a worker.\n"
		"# TYPE tandem_read_queue gauge\ntandem_read_queue %ld\n"
		"# HELP tandem_read_busy Read workers running a query.\n"
		"# TYPE tandem_read_busy gauge\ntandem_read_busy %ld\n",
		qry_state_waiting(j->ctx->st), leader ? 1 : 0,
		leader ? epoch : 0, ms.accounts, ms.bytes, ms.max_bytes,
		ms.capped, queued, busy);
	qry_status_snap_free(v, n);
	if (fclose(out) != 0 || rc < 0) {
		es_error_set(&err, ES_EINTERNAL, "cannot write the metrics");
		es_http_send_problem(j->req, &err);
	} else {
		es_http_send_text(j->req, 200, METRICS_TYPE, text, len);
	}
	free(text);
}

const struct qry_read_def qry_metrics_read = {
	.run = run_metrics,
};
