/* gateway/http: the libmicrohttpd front end. Parses, routes and translates requests, hands them to the CoAP
 * client and suspends the connection until the answer comes back; never blocks on a device. */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/gen.h"

struct gw_http;

/* Binds the current generation's listen address and starts serving; every request takes the generation
 * current when it starts (gen.h). gens is borrowed and must outlive the server. Returns NULL with "what:
 * why" in err (e.g. the address is in use). Thread: main. */
struct gw_http *gw_http_start(struct gw_gens *gens, char *err, size_t err_len);

/* The cache's user-slot destructor for this front end's prebuilt responses: give it to
 * gw_gens_create_take. Any thread. */
void gw_prebuilt_free(void *user);

/* A reload was published: applies what the front end keeps outside the snapshot (the header and body
 * deadlines). Thread: main. */
void gw_http_reloaded(struct gw_http *http);

/* Stops accepting connections; requests arriving later on open connections get 503 and the connection is
 * closed, and live streams end, on every generation. Requests in progress go on. Thread: main. */
void gw_http_quiesce(struct gw_http *http);

/* Waits until no request is in progress or timeout_ms passes (monotonic). Returns true when idle. Thread:
 * main. */
bool gw_http_wait_idle(struct gw_http *http, unsigned timeout_ms);
/* Requests in progress now. Any thread. */
int gw_http_active(struct gw_http *http);

/* Stops the daemon and frees everything. gw_http_stop(NULL) does nothing. Thread: main. */
void gw_http_stop(struct gw_http *http);

#endif
