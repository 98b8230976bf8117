/* gateway/gen: configuration generations. A generation is one configuration snapshot and what is built from
 * it (the CoAP client, the cache, the request pipeline). The current one is published through one pointer;
 * each HTTP request holds the generation it started on until it completes, so a reload (SIGHUP) never
 * changes the rules under a request in flight. Nothing here touches libmicrohttpd. */
#ifndef GW_GEN_H
#define GW_GEN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/cfg.h"
#include "proxy/cache.h"
#include "proxy/client.h"
#include "proxy/forward.h"

struct cache_share;

/* One generation. The four public fields are set before it is published and never change after. */
struct gw_gen {
    uint64_t id; /* 1 for the configuration read at start, one more per applied reload */
    const struct cfg *cfg;
    struct px_client *client;
    struct px_cache *cache; /* NULL: no caching */
    struct px_forward *fwd;
    /* Private to gen.c. */
    atomic_uint refs;               /* requests holding it, plus one while it is the current one */
    struct cache_share *cache_from; /* the cache, possibly shared with older and newer generations */
    struct gw_gen *next;            /* in the retired list */
};

struct gw_gens;

/* Builds generation 1 from cfg and makes it current. cfg is taken (freed with its generation, or at once on
 * failure). user_free is set on every cache built (the HTTP layer's prebuilt responses). NULL with "what:
 * why" in err (e.g. a host name that does not resolve). Thread: main. */
struct gw_gens *gw_gens_create_take(struct cfg *cfg, void (*user_free)(void *user), char *err, size_t len);

/* The current generation, with a reference for the caller (release it with gw_gen_release). Never NULL.
 * Thread: any (a short mutex: the pointer is read and the reference taken as one step, so main can never
 * destroy a generation between the two). */
struct gw_gen *gw_gens_acquire(struct gw_gens *g);
/* Drops a reference. A retired generation whose last reference goes is destroyed by gw_gens_reap, never
 * here (px_client_stop is main-thread only). Thread: any. NULL ok. */
void gw_gen_release(struct gw_gen *gen);

/* The current generation, borrowed. Thread: main (the only thread that replaces it). */
const struct gw_gen *gw_gens_current(const struct gw_gens *g);

/* What a reload did, for its log line. */
struct gw_reload_report {
    uint64_t id;          /* the new generation */
    char changed[192];    /* top-level sections that differ, "upstreams,routes", or "none" */
    char restart[256];    /* fields that need a restart and keep their running values; "" when none */
    bool cache_kept;      /* the cache (and its entries) carried over */
    unsigned alive_older; /* older generations still held by requests (streams, slow exchanges) */
};

/* Builds a generation from next (taken) and publishes it; the one it replaces is retired. Fields that only
 * take effect at start (listen, tls, demo_server, limits.max_connections, max_connections_per_ip,
 * connection_timeout_s, and max_header_bytes/max_uri_bytes beyond the connection memory the daemon
 * reserved) keep their running values in the new snapshot and are named in rep->restart. The cache is kept
 * when the cache settings and the upstreams (names and URIs, in order: the cache key holds the upstream's
 * index) are unchanged. Returns 0, or -1 with "what: why" in err: the current generation then stays.
 * Thread: main. */
int gw_gens_reload_take(struct gw_gens *g, struct cfg *next, struct gw_reload_report *rep, char *err,
                        size_t len);

/* Destroys the retired generations no request holds any more. Returns how many are still held.
 * Thread: main. */
unsigned gw_gens_reap(struct gw_gens *g);

/* Shutdown. quiesce: every live generation's pipeline drains (new requests 503, streams end). stop_clients:
 * px_client_stop on every client (completes what is left, which resumes the connections). Thread: main. */
void gw_gens_quiesce(struct gw_gens *g);
void gw_gens_stop_clients(struct gw_gens *g);
/* Frees every generation, held or not: call it once the HTTP daemon is stopped. NULL ok. Thread: main. */
void gw_gens_destroy(struct gw_gens *g);

/* The per-connection memory the HTTP daemon reserves for cfg's limits (libmicrohttpd's pool): the header
 * section and the target must fit in it. The one formula, for http.c and the reload check. */
size_t gw_gen_pool_bytes(const struct cfg *cfg);

#endif
