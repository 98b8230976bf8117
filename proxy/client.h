/* proxy/client: the pooled CoAP client. Worker threads each own one libcoap context and the sessions of the
 * upstreams hashed to them; nothing outside a worker touches its context. Work arrives through a locked queue
 * plus an eventfd; every submitted exchange is completed exactly once, from the worker thread. */
#ifndef PX_CLIENT_H
#define PX_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/cfg.h"
#include "proxy/exchange.h"

struct px_client;

/* Starts the workers for cfg (borrowed: it must outlive the client). Upstream host names are resolved here
 * first (blocking: start-up); a name that does not resolve makes its upstream down (requests 502 naming it),
 * not an error. Later resolutions (every resolve_interval_s, and after a failure) run on a resolver thread
 * of the client, never on a worker. coap_startup() must have been called.
 * Returns NULL with "what: why" in err on failure. Thread: main. */
struct px_client *px_client_create(const struct cfg *cfg, char *err, size_t err_len);

/* Hands x to the worker owning its upstream. Thread: any. Never blocks on the network. */
void px_client_submit(struct px_client *client, struct px_exchange *x);

/* Starts an observation (RFC 7641) of x's resource: a GET with Observe=0 on a session of its own, sent when
 * one of the upstream's max_inflight places is free (it waits in the queue with the requests, within
 * timeout_ms), as are its re-registrations and its deregistration. Every notification calls x->notify()
 * with resp_code/resp/resp_payload valid during the call; a notification without Observe, an error code, a
 * failure to re-register after Max-Age (+ timeout_ms), unreachability or px_client_unobserve() end it with
 * one call of x->done(). Returns an id for px_client_unobserve(), or 0 when nothing was started: then
 * x->status is PX_ERR_UNAVAILABLE and x->detail says why (limits.max_observations_per_upstream reached, or
 * stopping), and no callback runs. Thread: any. */
uint64_t px_client_observe(struct px_client *client, struct px_exchange *x);

/* Deregisters observation id (RFC 7641 §3.6) and ends it with x->done(status PX_OK); does nothing when it
 * has already ended. Its place under max_observations_per_upstream is free as soon as the worker reads
 * this; a registration still waiting in the queue ends with nothing sent; one on the wire is deregistered
 * once the device has answered it. Thread: any. */
void px_client_unobserve(struct px_client *client, size_t upstream, uint64_t id);

/* Completes every queued and in-flight exchange and ends every observation (PX_ERR_UNAVAILABLE), then joins
 * the workers; later submissions complete at once with PX_ERR_UNAVAILABLE (observe returns 0). The client
 * stays allocated. Thread: main. */
void px_client_stop(struct px_client *client);

/* Stops (as px_client_stop) and frees. Completes every queued and in-flight exchange (PX_ERR_UNAVAILABLE),
 * stops and joins the workers, frees everything. px_client_destroy(NULL) does nothing. Thread: main. */
void px_client_destroy(struct px_client *client);

/* The client as a px_transport, for the pipeline and the observation registry. */
struct px_transport px_client_transport(struct px_client *client);

enum px_health { PX_HEALTH_UNKNOWN = 0, PX_HEALTH_UP = 1, PX_HEALTH_DOWN = 2 };

/* What the worker last learned about an upstream's reachability: any CoAP answer (an ACK, an RST, a
 * response, a notification, a pong) means up; 3 consecutive failures (a ping or a request that got no answer
 * at all: silence, ICMP unreachable) mean down, and so does a host name that does not resolve. A request
 * that was acknowledged and then timed out is not a failure. An upstream with no news for ping_interval_s
 * (and each one at start-up) gets a CoAP ping, unless ping_interval_s is 0. Thread: any. */
enum px_health px_client_upstream_health(struct px_client *client, size_t upstream);

/* The same, with what showed it ("no answer to a CoAP ping", "upstream s: cannot resolve ...") copied into
 * why (always NUL-terminated). Thread: any. */
enum px_health px_client_upstream_state(struct px_client *client, size_t upstream, char *why, size_t why_len);

/* --check-config: tries to resolve every upstream's host now and writes one warning line per name that does
 * not resolve ("FILE: upstreams.NAME.uri: warning: ..."); returns how many. Blocks on DNS. Thread: main. */
int px_client_check_names(const struct cfg *cfg, const char *file, FILE *out);

/* What /metrics tells about one configured upstream: gauges (a snapshot) and counters since start. */
struct px_upstream_stats {
    enum px_health health;
    uint64_t inflight;        /* CON exchanges on the wire: requests and observations' (de/re)registrations */
    uint64_t queued;          /* the same, waiting for a place beyond max_inflight */
    uint64_t observations;    /* observations registered or registering (queued included) */
    uint64_t exchanges;       /* exchanges completed (any outcome) */
    uint64_t timeouts;        /* exchanges that ended with 504 */
    uint64_t retransmissions; /* CON retransmissions certainly sent (a lower bound: see client.c) */
    uint64_t nacks;           /* nacks from libcoap (RST, ICMP, too many retries, TLS) */
};

/* Thread: any (relaxed atomic reads; the figures need not be consistent with each other). */
void px_client_upstream_stats(struct px_client *client, size_t upstream, struct px_upstream_stats *out);

#endif
