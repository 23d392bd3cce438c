/*
 * metrics.h - the daemon's observability endpoint: Prometheus text
 * exposition (format 0.0.4) on GET /metrics, liveness on /healthz and
 * readiness on /readyz (503 while draining), served by libevent's evhttp
 * on the I/O thread's event base, on its own address (metrics-bind,
 * metrics-port; port 0 disables it).
 *
 * Every figure is read at scrape time: the gauges from the snapshot that
 * runtime.stats renders too (stats_take), the counters from srv_stat.
 */
#ifndef CHAND_METRICS_H
#define CHAND_METRICS_H

#include <stddef.h>

#include "conf.h"

struct event_base;

/* Starts the HTTP server on base per c (no-op when c->metrics_port is 0)
 * and writes c->metrics_port_file.  I/O thread.  Returns 0, or -1 with a
 * message in err. */
int metrics_start(struct event_base *base, const conf *c, char *err,
                  size_t errlen);
/* Stops the HTTP server (before the base is freed). */
void metrics_stop(void);
/* Uncounts (srv_stat.metrics_conns) the metrics connections evhttp has
 * closed since the last sweep; a second's timer also does.  The thread of
 * the event base metrics_start was given. */
void metrics_sweep(void);

#endif /* CHAND_METRICS_H */
