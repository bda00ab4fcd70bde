/* es_probe.c - GET /health and GET /ready, the same on both services. */
#include "es_probe.h"

#include "es_db.h"
#include "es_log.h"

void es_probe_init(struct es_probe *p, const char *conninfo)
{
	p->conninfo = conninfo;
	pthread_mutex_init(&p->lock, NULL);
	p->db = NULL;
	atomic_init(&p->ready, 0);
}

void es_probe_release(struct es_probe *p)
{
	PQfinish(p->db);
	p->db = NULL;
	pthread_mutex_destroy(&p->lock);
}

void es_probe_health(struct es_request *req)
{
	es_http_send_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

/* p->lock held. */
static int check(struct es_probe *p, struct es_error *err)
{
	if (p->db && es_db_broken(p->db)) {
		PQfinish(p->db);
		p->db = NULL;
	}
	if (!p->db) {
		p->db = es_db_connect(p->conninfo, "tandem-ready", err);
		if (!p->db)
			return -1;
	}
	if (es_db_check_ready(p->db, err) < 0) {
		if (es_db_broken(p->db)) {
			PQfinish(p->db);
			p->db = NULL;
		}
		return -1;
	}
	return 0;
}

void es_probe_ready(struct es_probe *p, struct es_request *req)
{
	struct es_error err = ES_ERROR_INIT;
	int was = atomic_load(&p->ready), ok;

	if (pthread_mutex_trylock(&p->lock) != 0) {
		/* another probe is checking: answer what the last one found */
		ok = was;
		if (!ok)
			es_error_set(&err, ES_EUNAVAIL, "database not ready");
	} else {
		ok = check(p, &err) == 0;
		pthread_mutex_unlock(&p->lock);
		atomic_store(&p->ready, ok);
		if (ok != was)
			es_log(ok ? ES_LOG_INFO : ES_LOG_WARN, "readiness",
			       "{s:b, s:s}", "ready", ok, "detail",
			       ok ? "" : err.detail);
	}
	if (ok)
		es_http_send_json(req, 200,
				  json_pack("{s:s, s:s}", "status", "ready",
					    "auth", es_request_auth_mode(req)));
	else
		es_http_send_problem(req, &err);
	es_error_release(&err);
}
