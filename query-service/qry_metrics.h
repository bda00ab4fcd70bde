/* qry_metrics.h - GET /metrics of the query service. */
#ifndef QRY_METRICS_H
#define QRY_METRICS_H

#include "qry_read.h"

/* GET /metrics (qry_read.h): reads on a worker, for the lag. */
extern const struct qry_read_def qry_metrics_read;

#endif
