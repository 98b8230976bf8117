/* proxy/client: the pooled CoAP client. Worker threads each own one libcoap context and the sessions of the
 * upstreams hashed to them; nothing outside a worker touches its context. Work arrives through a locked queue
 * plus an eventfd; every submitted exchange is completed exactly once, from the worker thread. */
#ifndef PX_CLIENT_H
#define PX_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "config/cfg.h"
#include "proxy/translate.h"

struct px_client;
struct px_exchange;

typedef void (*px_done_fn)(struct px_exchange *x, void *arg);

/* One CoAP request/response. Owned by the submitter; it must stay alive (and the request fields unchanged)
 * until done() has been called. */
struct px_exchange {
    /* Request, filled by the submitter. */
    size_t upstream;             /* index into cfg->upstreams */
    uint8_t code;                /* CoAP method */
    const struct co_optset *req; /* options in any order (sent sorted by number, stable); borrowed */
    const uint8_t *payload;      /* borrowed; copied by the worker before sending */
    size_t payload_len;
    px_done_fn done;   /* called once, on a worker thread; may free the exchange */
    px_done_fn notify; /* observations only: each notification (resp_* valid during the call) */
    void *arg;

    /* Result, valid inside and after done(). */
    enum px_status status; /* PX_OK (a CoAP response arrived), PX_ERR_TIMEOUT, PX_ERR_BAD_GATEWAY,
                              PX_ERR_UNAVAILABLE (queue full, shutting down), PX_ERR_INTERNAL */
    const char *detail;    /* static text saying why, for errors */
    uint8_t resp_code;
    struct co_optset resp; /* all response options except Block1/Block2; the submitter initialises it
                              (co_optset_init) before the first submission and finis it when done */
    uint8_t *resp_payload; /* malloc'd, owned by the exchange: free() it; NULL when empty */
    size_t resp_len;

    /* Private to the client. */
    struct {
        struct px_exchange *next;
        uint64_t deadline_ms;
        uint8_t token[8];
        size_t token_len;
        uint64_t obs_id;
        uint8_t block1_szx; /* 0, or SZX + 1 after a 4.13 asked for smaller blocks */
        int32_t mid;        /* message id of the (last) request sent, -1 before */
        int32_t block1;     /* last Block1 number answered, -1 when none (for the debug log) */
        int32_t block2_first, block2_last; /* Block2 numbers received, -1 when none */
    } priv;
};

/* Starts the workers for cfg (borrowed: it must outlive the client). Upstream host names are resolved here.
 * coap_startup() must have been called.
 * Returns NULL with "what: why" in err on failure. Thread: main. */
struct px_client *px_client_create(const struct cfg *cfg, char *err, size_t err_len);

/* Hands x to the worker owning its upstream. Thread: any. Never blocks on the network. */
void px_client_submit(struct px_client *client, struct px_exchange *x);

/* Starts an observation (RFC 7641) of x's resource: a GET with Observe=0 on a session of its own. Every
 * notification calls x->notify() with resp_code/resp/resp_payload valid during the call; a notification
 * without Observe, an error code, a failure to re-register after Max-Age (+ timeout_ms), unreachability or
 * px_client_unobserve() end it with one call of x->done(). Returns an id for px_client_unobserve().
 * Thread: any. */
uint64_t px_client_observe(struct px_client *client,
                           struct px_exchange *x); /* 0: stopping, nothing started */

/* Deregisters observation id (RFC 7641 §3.6) and ends it with x->done(status PX_OK); does nothing when it
 * has already ended. Thread: any. */
void px_client_unobserve(struct px_client *client, size_t upstream, uint64_t id);

/* Completes every queued and in-flight exchange and ends every observation (PX_ERR_UNAVAILABLE), then joins
 * the workers; later submissions complete at once with PX_ERR_UNAVAILABLE (observe returns 0). The client
 * stays allocated. Thread: main. */
void px_client_stop(struct px_client *client);

/* Stops (as px_client_stop) and frees. Completes every queued and in-flight exchange (PX_ERR_UNAVAILABLE),
 * stops and joins the workers, frees everything. px_client_destroy(NULL) does nothing. Thread: main. */
void px_client_destroy(struct px_client *client);

enum px_health { PX_HEALTH_UNKNOWN = 0, PX_HEALTH_UP = 1, PX_HEALTH_DOWN = 2 };

/* What the worker last learned about an upstream's reachability: any answer (even an error or an RST) means
 * up; ICMP errors, a Reset-less silence past timeout_ms, or an unanswered CoAP ping mean down. An upstream
 * with no traffic for 30 s (and each one at start-up) gets a CoAP ping. Thread: any. */
enum px_health px_client_upstream_health(struct px_client *client, size_t upstream);

#endif
