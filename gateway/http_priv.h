/* gateway/http_priv: what gateway/http.c and gateway/http_cache.c share — the per-request state and the
 * response helpers. Private to gateway/http*; every function here runs on an MHD thread unless noted. */
#ifndef GW_HTTP_PRIV_H
#define GW_HTTP_PRIV_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "config/cfg.h"
#include "gateway/mhdlog.h"
#include "proxy/cache.h"
#include "proxy/client.h"
#include "proxy/observe.h"
#include "proxy/translate.h"

#define PROBLEM_MAX 1024
#define BODY_INITIAL 4096
#define INM_MAX 4

struct gw_http {
    const struct cfg *cfg;
    struct px_client *client;
    struct px_cache *cache; /* NULL when cache.enabled is false */
    struct px_observe *observe;
    struct MHD_Daemon *daemon;
    int listen_fd;
    atomic_int active; /* requests between URI callback and completion */
    atomic_bool draining;
    atomic_uint_fast64_t answered[6]; /* requests answered, by status class (index 1..5; 0: no response) */
};

enum req_state { REQ_NEW, REQ_BODY, REQ_WAITING, REQ_DONE, REQ_LONGPOLL, REQ_ANSWERED };

/* Live data: Server-Sent Events (Accept: text/event-stream) or long-poll (?observe=next). */
enum live_mode { LIVE_NONE, LIVE_SSE, LIVE_LONGPOLL };

/* X-Cache: how the cache took part in the answer. */
enum xcache { XC_BYPASS, XC_MISS, XC_HIT, XC_REVALIDATED };

/* The outcome of one upstream fetch that several requests share (single flight). Refcounted; the last
 * request to finish with it frees it. */
struct shared_answer;

struct request {
    struct gw_http *http;
    struct MHD_Connection *conn;
    enum req_state state;
    char *path;        /* raw path (percent-encoded), NUL-terminated at '?' */
    const char *query; /* raw query after '?', or NULL */
    const char *method;
    const struct cfg_route *route;
    const char *rest;
    uint8_t *body;
    size_t body_len, body_cap;
    bool body_too_large;
    bool admin;             /* /healthz, /readyz, /metrics */
    enum px_status refusal; /* decided from the headers, answered when the request is complete */
    const char *refusal_detail;
    struct timespec start;
    int status;        /* HTTP status sent, for the access log */
    uint8_t coap_code; /* CoAP code behind the answer, for the access log (0: none) */
    struct px_coap_request creq;
    struct px_exchange x;

    /* Cache state (gateway/http_cache.c). */
    enum xcache xc;
    uint8_t *key; /* malloc'd cache key when the request looked at the cache or must invalidate */
    size_t key_len, resource_len;
    struct px_cache_entry *stale;  /* entry being revalidated (flight leader only) */
    uint64_t cache_epoch;          /* invalidation epoch when the leader's request left */
    struct shared_answer *shared;  /* the flight's outcome (leader and followers) */
    struct px_cache_waiter waiter; /* queued behind another request's flight */
    bool no_cache;                 /* Cache-Control: no-cache / max-age=0 / Pragma: no-cache */
    bool no_store;                 /* Cache-Control: no-store */
    bool inm_star;                 /* If-None-Match: * */
    unsigned inm_count;            /* our entity-tags listed in If-None-Match */
    uint8_t inm_tag[INM_MAX][8];
    uint8_t inm_len[INM_MAX];

    /* Live data (gateway/http_sse.c). */
    enum live_mode live;
    bool subscribed;
    struct px_subscriber sub;
    char *sse_buf; /* the event being written */
    size_t sse_len, sse_off;
    uint64_t last_write_ms;
    uint64_t longpoll_deadline_ms;
};

/* gateway/http.c */
enum MHD_Result gw_queue(struct request *r, struct MHD_Response *resp, int status);
enum MHD_Result gw_reply_problem(struct request *r, enum px_status st, const char *detail);
void gw_add_header_if(struct MHD_Response *resp, const char *name, const char *value);
void gw_add_number_header(struct MHD_Response *resp, const char *name, const char *prefix, long v);
const char *gw_header(struct request *r, const char *name);
/* Fills r->x and hands it to the CoAP client with done(); the connection must already be suspended. */
void gw_forward(struct request *r, px_done_fn done);
/* Builds the HTTP response for a CoAP answer (RFC 8075 mapping, If-None-Match → 304, X-Cache, Age). The
 * payload is lent from entry when given (max-age then counts down from the entry's freshness), moved when
 * *owned == payload (set to NULL), else copied. */
enum MHD_Result gw_reply_answer(struct request *r, uint8_t code, const struct co_optset *opts,
                                const uint8_t *payload, size_t len, uint8_t **owned,
                                struct px_cache_entry *entry);

/* gateway/http_sse.c */
/* Recognises a live-data request (before translation): SSE drops the Accept header from translation,
 * long-poll removes its "observe=next" item from r->query. */
enum live_mode gw_live_detect(struct request *r);
/* Subscribes and starts the stream or the long-poll wait. */
enum MHD_Result gw_live_serve(struct request *r);
/* A woken long-poll request: answer or park again. */
enum MHD_Result gw_live_longpoll(struct request *r);
/* Unsubscribes and frees the stream state. */
void gw_live_release(struct request *r);

/* Answers a fresh hit with the entry's prebuilt response (rebuilt when its second of age changes). Only
 * for requests without If-None-Match while not draining. */
enum MHD_Result gw_reply_hit(struct request *r, struct px_cache_entry *entry);

/* gateway/http_cache.c */
/* Decides from the headers and the route whether r may use the cache; parses Cache-Control and
 * If-None-Match. */
void gw_cache_prepare(struct request *r);
/* Serves r through the cache (hit, revalidation or single-flight miss). Returns MHD_YES/MHD_NO as the
 * access handler must. Called only when gw_cache_prepare() set r->xc != XC_BYPASS. */
enum MHD_Result gw_cache_serve(struct request *r);
/* The answer of a cache-served request, once its flight is done (state REQ_DONE with r->shared). */
enum MHD_Result gw_cache_reply(struct request *r);
/* After an unsafe method's exchange: drop the resource's entries (and a 2.01's Location target). Any thread.
 */
void gw_cache_invalidate_after(struct request *r);
/* Applies If-None-Match to a 200 answer carrying etag: true when it must become 304. */
bool gw_cache_inm_matches(const struct request *r, const uint8_t *etag, size_t etag_len);
/* Releases r's cache references. */
void gw_cache_release(struct request *r);
const char *gw_xcache_name(enum xcache xc);

#endif
