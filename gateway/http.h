/* gateway/http: the libmicrohttpd front end. Parses, routes and translates requests, hands them to the CoAP
 * client and suspends the connection until the answer comes back; never blocks on a device. */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "config/cfg.h"
#include "proxy/cache.h"
#include "proxy/client.h"

struct gw_http;

/* Binds cfg->listen and starts serving. cfg, client and cache (NULL: no caching) are borrowed and must
 * outlive the server. Returns NULL with "what: why" in err (e.g. the address is in use). Thread: main. */
struct gw_http *gw_http_start(const struct cfg *cfg, struct px_client *client, struct px_cache *cache,
                              char *err, size_t err_len);

/* Stops accepting connections; requests arriving later on open connections get 503 and the connection is
 * closed. Requests in progress go on. Thread: main. */
void gw_http_quiesce(struct gw_http *http);

/* Waits until no request is in progress or timeout_ms passes (monotonic). Returns true when idle. Thread:
 * main. */
bool gw_http_wait_idle(struct gw_http *http, unsigned timeout_ms);
/* Requests in progress now. Any thread. */
int gw_http_active(struct gw_http *http);

/* Stops the daemon and frees everything. gw_http_stop(NULL) does nothing. Thread: main. */
void gw_http_stop(struct gw_http *http);

#endif
