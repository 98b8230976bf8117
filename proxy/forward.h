/* proxy/forward: the request pipeline, route → translate → cache policy → client → answer, with no HTTP
 * library in sight. A front end (gateway/http for libmicrohttpd, the unit tests for themselves) hands it a
 * request's method, target, headers and body, plus two callbacks: suspend (the request waits) and resume (its
 * answer is ready). It gets back an answer object to render. Nothing here blocks or does I/O. */
#ifndef PX_FORWARD_H
#define PX_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/clock.h"
#include "base/metrics.h"
#include "config/cfg.h"
#include "proxy/auth.h"
#include "proxy/cache.h"
#include "proxy/exchange.h"
#include "proxy/observe.h"
#include "proxy/translate.h"

struct px_forward;
struct px_req;
struct px_headers;

/* Creates the pipeline over cfg (borrowed), a transport (the CoAP client or a fake) and cache (borrowed;
 * NULL: no caching). clock NULL means cg_clock_monotonic. Starts the observation registry. NULL on failure.
 * Thread: main. */
struct px_forward *px_forward_create(const struct cfg *cfg, struct px_transport transport,
                                     struct px_cache *cache, cg_clock_fn clock, void *clock_arg);
/* Every request must have been freed. NULL ok. Thread: main. */
void px_forward_destroy(struct px_forward *fwd);

/* Authenticates a request for /metrics against admin.auth (OK when there is none). On PX_AUTH_MISSING the
 * WWW-Authenticate value is written to challenge. */
enum px_auth_result px_forward_admin_auth(const struct px_forward *fwd, const struct px_headers *headers,
                                          char *challenge, size_t len);

/* Draining: new requests get 503, live streams end now (they would never become idle). Thread: any. */
void px_forward_quiesce(struct px_forward *fwd);
bool px_forward_draining(const struct px_forward *fwd);

/* ---- one request ---- */

/* The front end's side of a request. The pipeline makes a request wait in one of two ways, each on the
 * request's own thread just before it returns PX_STEP_WAIT (or a stream's reader gets no event):
 * - suspend: for an exchange or a cache flight, which ends by itself (the device answers or timeout_ms);
 * - park: on the observation registry (a long-poll, a stream waiting for its registration's answer or for
 *   its next notification), which may last as long as the client stays: the front end may watch the
 *   client meanwhile, and when it is gone resume the request itself and call px_req_cancel. NULL: suspend.
 * resume is called once per suspend or park, from any thread, when the request can go on. All get conn. */
struct px_front {
    void (*suspend)(void *conn);
    void (*resume)(void *conn);
    void (*park)(void *conn);
    void *conn;
    const struct sockaddr *remote; /* the client's address (rate limiting); NULL: unknown, not limited */
};

/* The request header fields the pipeline reads, each the field's whole value (a list field sent on several
 * lines joined with ", " as RFC 9110 §5.3 allows) or NULL when absent. Borrowed for the request's life. */
struct px_headers {
    const char *content_type;
    const char *content_length;
    const char *accept;
    const char *if_match;
    const char *if_none_match;
    const char *cache_control;
    const char *pragma;
    const char *origin;                /* CORS (Fetch standard §3.2) */
    const char *access_control_method; /* Access-Control-Request-Method of a preflight */
    const char *authorization;
    /* Any other field by name (an API key's header), NULL when absent. NULL get: none. */
    const char *(*get)(void *ctx, const char *name);
    void *get_ctx;
};

/* A new request. front is copied. NULL on OOM. Thread: the request's. */
struct px_req *px_req_new(struct px_forward *fwd, const struct px_front *front);
/* The client of a parked request is gone: the request leaves the registry now (the last subscriber of a
 * resource deregisters it upstream), so its slot under limits.max_subscribers_per_resource is free before
 * the request is. Call after the request was resumed from its park; it is answered with nothing (free it
 * next). Does nothing for a request that is not live. Thread: the request's. */
void px_req_cancel(struct px_req *req);
/* Frees the request and everything it holds (unsubscribes a live one). The request must not be waiting
 * for an exchange (its resume has been called, or it never waited). NULL ok. */
void px_req_free(struct px_req *req);

/* What px_req_begin decided from the request line and headers. */
enum px_begin {
    PX_BEGIN_READ_BODY,  /* read the body (px_req_body), then px_req_run: it may still be a refusal */
    PX_BEGIN_ANSWER_NOW, /* answer px_req_run's result now and close: the declared body is too large */
};

/* Routes and vets a request: method (501), route (404), route methods (405), declared Content-Length
 * (413). path is the raw target path before '?' and query the raw query after it (NULL: no '?'); both
 * stay percent-encoded and are borrowed for the request's life. Admin paths are the front end's business
 * and never reach the pipeline. */
enum px_begin px_req_begin(struct px_req *req, const char *method, const char *path, const char *query,
                           const struct px_headers *headers);
/* Appends a chunk of the body; beyond limits.max_body_bytes the request becomes a 413 (and the rest is
 * dropped), as is every chunk of a request already refused. */
void px_req_body(struct px_req *req, const void *data, size_t len);

/* ---- answers ---- */

enum px_xcache { PX_XC_NONE, PX_XC_BYPASS, PX_XC_MISS, PX_XC_HIT, PX_XC_REVALIDATED };
const char *px_xcache_name(enum px_xcache xc); /* "BYPASS", "MISS", ...; NULL for PX_XC_NONE */

enum px_answer_kind {
    PX_ANSWER_PROBLEM,   /* a gateway error: status, problem and detail (application/problem+json) */
    PX_ANSWER_COAP,      /* a device's answer, mapped by RFC 8075: http, body */
    PX_ANSWER_EMPTY,     /* 204 with no header of interest (a long-poll that saw nothing new) */
    PX_ANSWER_STREAM,    /* 200 text/event-stream: read events with px_req_next_event */
    PX_ANSWER_PREFLIGHT, /* 204 to a CORS preflight: the Access-Control-Allow-* headers of cors */
};

/* An answer to render. Owns what it references until px_answer_release; the front end may take the body
 * (set owned to NULL) or the entry reference (set entry to NULL) when it keeps the body longer. */
struct px_answer {
    enum px_answer_kind kind;
    int status;            /* the HTTP status (0 for a prebuildable hit not mapped yet) */
    enum px_xcache xcache; /* PX_XC_NONE: say nothing (no cache, or no route) */
    bool no_store;         /* Cache-Control: no-store instead of max-age (streams, long-poll answers) */
    bool vary_accept;      /* Vary: Accept: the representation was chosen by the request's Accept */
    bool close;            /* close the connection after this answer (a 413's unread body) */
    long retry_after;      /* problems: Retry-After seconds when >= 0 */
    /* CORS (any kind): the route's settings, and the request's Origin when that origin may read the
     * answer (then Access-Control-Allow-Origin echoes it); Vary: Origin whenever cors is set. */
    const struct cfg_cors *cors;
    const char *cors_origin;
    /* PX_ANSWER_PROBLEM */
    enum px_status problem;
    const char *detail;
    char allow[96];     /* Allow for 405, "" otherwise */
    char challenge[96]; /* WWW-Authenticate for 401, "" otherwise */
    /* PX_ANSWER_COAP */
    uint8_t coap_code;
    bool mapped;                  /* http is filled (px_answer_map) */
    struct px_http_response http; /* the mapped headers; http.send_body false: no body (204, 304) */
    const uint8_t *body;          /* the payload; for a 304 the 200's payload (only its length counts) */
    size_t body_len;
    uint8_t *owned;               /* body, when the answer owns it (malloc'd) */
    struct px_cache_entry *entry; /* when the answer comes from the cache: body is lent by it (referenced) */
    long age;                     /* Age when >= 0 (fresh hits) */
    bool prebuildable;            /* a fresh hit whose rendering depends only on (entry, age, route) */
    const struct cfg_route *route;
    /* Private: what px_answer_map reads (Location is rebuilt under prefix, below the base path). */
    const char *prefix;
    const char *const *base;
    size_t base_len;
    const struct co_optset *opts;
    uint32_t remaining; /* entry's freshness left, seconds */
    uint32_t lifetime;  /* entry's freshness lifetime (Max-Age), seconds */
};

/* Fills a->http for a PX_ANSWER_COAP answer when not done yet (fresh hits are mapped lazily, so a front
 * end that reuses a rendering of the same hit pays nothing). Returns false when the code is no response
 * (the answer then becomes a 502 problem). */
bool px_answer_map(struct px_answer *a);
void px_answer_release(struct px_answer *a);

enum px_step {
    PX_STEP_ANSWER, /* *out holds the answer */
    PX_STEP_WAIT,   /* suspended: front->resume will be called, then call px_req_resume */
};

/* The body is complete: runs the data path. */
enum px_step px_req_run(struct px_req *req, struct px_answer *out);
/* After resume: the answer, or (a long-poll that was woken early) PX_STEP_WAIT again. */
enum px_step px_req_resume(struct px_req *req, struct px_answer *out);

/* A stream's next notification (the caller owns the reference), or NULL: then *ended tells whether the
 * stream is over; if not, the request was suspended (front->suspend) and resume comes with the next
 * notification or at wake_at_ms (monotonic, the pipeline's clock). */
struct px_notification *px_req_next_event(struct px_req *req, uint64_t wake_at_ms, bool *ended);

/* What the access log says about a request. */
struct px_req_info {
    const char *route;    /* the matched route's prefix (forward_proxy.prefix for the forward proxy), NULL */
    const char *upstream; /* upstream name, NULL when unrouted */
    uint8_t coap_code;    /* 0: none */
    enum px_xcache xcache;
};
void px_req_info(const struct px_req *req, struct px_req_info *out);

/* /metrics: how long each upstream CoAP exchange of the pipeline took, from its submission (queueing
 * included) to its completion, as struct cg_hist series keyed by upstream name ("forward_proxy" for
 * forward-proxy targets). Observations are not exchanges and are not counted. */
extern struct cg_keyed px_exchange_durations;

#endif
