/*
 * metrics.h - the daemon's observability endpoint: Prometheus text
 * exposition (format 0.0.4) on GET /metrics, liveness on /healthz and
 * readiness on /readyz (503 while draining), served by libevent's evhttp
 * on the I/O thread's event base, on its own address (metrics-bind,
 * metrics-port; port 0 disables it).
 *
 * The counters below are bumped from any thread with relaxed atomics; the
 * gauges are read at scrape time from the same places runtime.stats reads.
 */
#ifndef CHAND_METRICS_H
#define CHAND_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"
#include "proto.h"

struct event_base;

/* Starts the HTTP server on base per c (no-op when c->metrics_port is 0)
 * and writes c->metrics_port_file.  I/O thread.  Returns 0, or -1 with a
 * message in err. */
int metrics_start(struct event_base *base, const conf *c, char *err,
                  size_t errlen);
/* Stops the HTTP server (before the base is freed). */
void metrics_stop(void);
/* Returns the bound metrics port, 0 when disabled. */
int metrics_port(void);

/* Counts one answered request of method m (NULL: the request was invalid
 * before a method was known) that ended ok or with an error.  Any thread. */
void metrics_count_request(const proto_method *m, bool ok);
/* Counts bytes read from / written to clients.  Any thread. */
void metrics_bytes_in(size_t n);
void metrics_bytes_out(size_t n);

#endif /* CHAND_METRICS_H */
