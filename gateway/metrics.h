/* gateway/metrics: the gateway's request families for /metrics. Counted on MHD threads when a request
 * completes (relaxed atomics, one lock-free lookup of the route's series); written by admin.c. Per-route
 * series are keyed by the route's prefix, not by its index in one configuration, so they survive a reload
 * that keeps the prefix (and a new prefix gets series of its own). */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stdint.h>

#include "base/buf.h"
#include "config/cfg.h"

#define GW_METRICS_NO_ROUTE "(none)" /* the route label of a request no route matched */

/* One routed (or unrouted) request done: route is the matched prefix (NULL: none), method as sent,
 * status the answer's (0: none was sent), us its whole duration. Thread: any. */
void gw_metrics_request(const char *route, const char *method, int status, uint64_t us);

/* One admin request done (counted apart, so probes never move the request families). Thread: any. */
void gw_metrics_admin(enum cfg_admin which, int status);

/* A live SSE stream opened (+1) or ended (-1). Thread: any. */
void gw_metrics_sse(int delta);

/* Appends the families above and the upstream exchange durations (proxy/forward) in the text format. */
void gw_metrics_write(struct cg_buf *b);

#endif
