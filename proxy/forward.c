/* proxy/forward: the request pipeline. px_req_run is the data path read top to bottom; what it decides on
 * a CoAP worker (an exchange or a flight finishing) is done by the completion callbacks below it, which end
 * by calling the front end's resume and nothing else of the front end. No I/O, no HTTP library. */
#include "proxy/forward.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "proxy/fproxy.h"
#include "proxy/policy.h"
#include "proxy/ratelimit.h"
#include "proxy/route.h"

#define LONGPOLL_ITEM "observe=next"
#define OOM_SHARING "out of memory while sharing the upstream's answer"

struct px_forward {
    const struct cfg *cfg;
    struct px_transport transport;
    struct px_cache *cache; /* NULL: no caching */
    struct px_observe *observe;
    cg_clock_fn clock;
    void *clock_arg;
    atomic_bool draining;
    struct px_rl *rl;            /* rate_limit, NULL when off */
    struct px_auth **route_auth; /* per cfg->routes[i], NULL where the route has none */
    struct px_auth *admin_auth;
};

enum req_state {
    REQ_NEW,
    REQ_BODY,
    REQ_WAITING,     /* an exchange or a flight is on its way */
    REQ_DONE,        /* ... and has finished */
    REQ_LONGPOLL,    /* parked until the next notification or the deadline */
    REQ_SSE_PENDING, /* parked until the registration is answered: the stream or its error */
    REQ_STREAM,
    REQ_ANSWERED,
};
enum live_mode { LIVE_NONE, LIVE_SSE, LIVE_LONGPOLL };

/* The outcome of one upstream fetch that several requests share (single flight). Refcounted; the last
 * request to let go frees it. Immutable once made. */
struct shared_answer {
    atomic_int refs;
    enum px_status status; /* PX_OK: a CoAP answer arrived */
    const char *detail;
    bool revalidated;             /* the device said 2.03 Valid to the stale entry's ETag */
    struct px_cache_entry *entry; /* stored or refreshed entry, when the answer was cacheable */
    uint8_t code;                 /* otherwise the raw answer */
    struct co_optset opts;
    uint8_t *payload;
    size_t len;
};

/* A live-data subscription; allocated only for live requests (a subscriber carries its queue). */
struct live {
    struct px_subscriber sub;
    struct px_req *req;
    uint64_t deadline_ms;          /* long-poll: 204 then */
    struct px_notification *first; /* SSE: the registration's answer, the stream's first event */
};

struct px_req {
    struct px_forward *fwd;
    struct px_front front;
    struct px_headers h;
    enum req_state state;
    const char *method, *path, *query; /* raw; query may point to query_copy */
    char *query_copy;                  /* the query without the long-poll item */
    const struct cfg_route *route;
    const char *rest;
    bool preflight;         /* a CORS preflight the route answers itself */
    enum px_status refusal; /* decided from the headers, answered when the request is complete */
    unsigned retry_after;   /* a 429's Retry-After */
    const char *refusal_detail;
    struct cg_buf body;
    bool body_too_large;
    uint8_t coap_code; /* the CoAP code behind the answer (0: none) */
    struct px_coap_request creq;
    struct px_exchange x;
    uint64_t submitted_us; /* when x was handed to the transport (/metrics) */
    /* Cache. */
    enum px_xcache xc;
    struct px_conditions cond;
    uint8_t *key; /* when the request looked at the cache or must invalidate */
    size_t key_len, resource_len;
    struct px_cache_entry *stale; /* entry being revalidated (flight leader only) */
    uint64_t cache_epoch;         /* invalidation epoch when the leader's request left */
    struct shared_answer *shared; /* the flight's outcome (leader and followers) */
    struct px_cache_waiter waiter;
    /* Live data. */
    enum live_mode live_mode;
    struct live *live;
    /* Forward proxying (RFC 8075 §5): the target, checked and resolved in px_req_begin. */
    bool fp;
    struct px_fp_target fp_target;
    struct sockaddr_storage fp_addr;
    socklen_t fp_addr_len;
    char *fp_prefix; /* "/hc/coap://host:port/": where Location answers point back to */
};

struct cg_keyed px_exchange_durations = CG_KEYED_INIT(sizeof(struct cg_hist));

static uint64_t now_ms(const struct px_forward *fwd)
{
    return fwd->clock(fwd->clock_arg);
}

/* ==== answers ==================================================================================== */

const char *px_xcache_name(enum px_xcache xc)
{
    switch (xc) {
    case PX_XC_NONE:
        return NULL;
    case PX_XC_BYPASS:
        return "BYPASS";
    case PX_XC_MISS:
        return "MISS";
    case PX_XC_HIT:
        return "HIT";
    case PX_XC_REVALIDATED:
        return "REVALIDATED";
    }
    return NULL;
}

/* Exact match, as browsers serialise origins (RFC 6454 §6.1), or "*". */
static bool origin_allowed(const struct cfg_cors *cors, const char *origin)
{
    if (origin == NULL) {
        return false;
    }
    for (size_t i = 0; i < cors->allow_origins.len; i++) {
        if (strcmp(cors->allow_origins.v[i], "*") == 0 || strcmp(cors->allow_origins.v[i], origin) == 0) {
            return true;
        }
    }
    return false;
}

static const struct px_auth *route_auth(const struct px_req *req);

static void answer_init(struct px_req *req, struct px_answer *a, enum px_answer_kind kind, int status)
{
    memset(a, 0, sizeof(*a));
    a->kind = kind;
    a->status = status;
    a->xcache = req->fwd->cache != NULL && req->route != NULL ? req->xc : PX_XC_NONE;
    /* A long-poll answer is one notification, not a representation to reuse (nor is a stream). */
    a->no_store = req->live_mode != LIVE_NONE;
    a->retry_after = -1;
    a->age = -1;
    a->route = req->route;
    if (req->route != NULL) {
        const struct cfg_upstream *up = &req->fwd->cfg->upstreams[req->route->upstream];
        a->prefix = req->route->prefix;
        a->base = (const char *const *)up->base_path;
        a->base_len = up->base_path_len;
    } else {
        a->prefix = req->fp_prefix != NULL ? req->fp_prefix : "/";
    }
    a->cors = req->route != NULL && req->route->cors.allow_origins.len > 0 ? &req->route->cors : NULL;
    a->cors_origin = a->cors != NULL && origin_allowed(a->cors, req->h.origin) ? req->h.origin : NULL;
    req->state = REQ_ANSWERED;
}

static enum px_step problem(struct px_req *req, struct px_answer *a, enum px_status st, const char *detail)
{
    answer_init(req, a, PX_ANSWER_PROBLEM, px_status_http(st));
    a->problem = st;
    a->detail = detail;
    if (st == PX_ERR_METHOD_NOT_ALLOWED && req->route != NULL) {
        cfg_methods_format(req->route->methods, a->allow, sizeof(a->allow));
    }
    if (st == PX_ERR_UNAVAILABLE) {
        a->retry_after = 1;
    }
    if (st == PX_ERR_RATE_LIMITED) {
        a->retry_after = req->retry_after;
    }
    if (st == PX_ERR_UNAUTHORIZED && req->route != NULL) {
        px_auth_challenge(route_auth(req), a->challenge, sizeof(a->challenge));
    }
    a->close = st == PX_ERR_TOO_LARGE; /* the unread body must not be taken for the next request */
    return PX_STEP_ANSWER;
}

bool px_answer_map(struct px_answer *a)
{
    if (a->kind != PX_ANSWER_COAP || a->mapped) {
        return true;
    }
    struct px_coap_response in = {.code = a->coap_code, .opts = a->opts, .payload_len = a->body_len};
    if (px_response_to_http(&in, a->prefix, a->base, a->base_len, NULL, &a->http) != PX_OK) {
        a->kind = PX_ANSWER_PROBLEM;
        a->status = px_status_http(PX_ERR_BAD_GATEWAY);
        a->problem = PX_ERR_BAD_GATEWAY;
        a->detail = "the upstream answered with a code that is not a CoAP response";
        a->allow[0] = '\0';
        return false;
    }
    a->mapped = true;
    a->status = a->http.status;
    if (a->entry != NULL && a->http.max_age >= 0) {
        /* The entry's freshness lifetime, with its Age beside it (RFC 9111 §4.2.3, §5.1): a downstream
         * cache subtracts the age itself. A max-age already reduced by the age would count it twice. */
        a->http.max_age = a->lifetime;
    }
    if (a->no_store) {
        a->http.max_age = -1;
    }
    return true;
}

void px_answer_release(struct px_answer *a)
{
    free(a->owned);
    a->owned = NULL;
    if (a->entry != NULL) {
        px_cache_entry_release(a->entry);
        a->entry = NULL;
    }
}

/* A device's answer. The payload is lent (entry: referenced by the answer; or borrowed from the request for
 * its life) or moved (*owned is taken). Mapped now, unless it is a plain fresh hit. */
static enum px_step coap_answer(struct px_req *req, struct px_answer *a, uint8_t code,
                                const struct co_optset *opts, const uint8_t *payload, size_t len,
                                uint8_t **owned, struct px_cache_entry *entry)
{
    answer_init(req, a, PX_ANSWER_COAP, 0);
    a->coap_code = req->coap_code = code;
    /* The device chose the representation by the Accept we passed on (RFC 9110 §12.5.5). */
    a->vary_accept = req->creq.code == CO_GET || req->creq.code == CO_FETCH;
    a->opts = opts;
    a->body = payload;
    a->body_len = len;
    if (owned != NULL && *owned == payload) {
        a->owned = *owned;
        *owned = NULL;
    }
    if (entry != NULL) {
        uint64_t now = now_ms(req->fwd);
        px_cache_entry_ref(entry);
        a->entry = entry;
        a->remaining = px_cache_entry_remaining(entry, now);
        a->lifetime = px_cache_entry_max_age(entry);
        if (req->xc == PX_XC_HIT) {
            a->age = (long)px_cache_entry_age(entry, now);
        }
    }
    a->prebuildable = entry != NULL && req->xc == PX_XC_HIT && !px_conditions_has_inm(&req->cond) &&
                      a->cors_origin == NULL && !px_forward_draining(req->fwd);
    if (a->prebuildable) {
        return PX_STEP_ANSWER;
    }
    if (!px_answer_map(a)) {
        return PX_STEP_ANSWER;
    }
    /* RFC 9110 §13.1.2: a 200 whose entity-tag the client holds becomes 304 (the body stays, for its
     * length only). */
    if (a->status == 200 && px_conditions_not_modified(&req->cond, opts)) {
        a->status = a->http.status = 304;
        a->http.send_body = false;
    }
    return PX_STEP_ANSWER;
}

static enum px_step empty_answer(struct px_req *req, struct px_answer *a)
{
    answer_init(req, a, PX_ANSWER_EMPTY, 204);
    return PX_STEP_ANSWER;
}

/* ==== requests =================================================================================== */

struct px_req *px_req_new(struct px_forward *fwd, const struct px_front *front)
{
    struct px_req *req = calloc(1, sizeof(*req));
    if (req == NULL) {
        return NULL;
    }
    req->fwd = fwd;
    req->front = *front;
    req->state = REQ_NEW;
    req->rest = "";
    req->method = "";
    req->xc = PX_XC_BYPASS;
    req->cond = (struct px_conditions)PX_CONDITIONS_INIT;
    co_optset_init(&req->creq.opts);
    co_optset_init(&req->x.resp);
    return req;
}

static void shared_release(struct shared_answer *sh)
{
    if (sh == NULL || atomic_fetch_sub(&sh->refs, 1) != 1) {
        return;
    }
    if (sh->entry != NULL) {
        px_cache_entry_release(sh->entry);
    }
    co_optset_fini(&sh->opts);
    free(sh->payload);
    free(sh);
}

void px_req_free(struct px_req *req)
{
    if (req == NULL) {
        return;
    }
    if (req->live != NULL) {
        px_observe_unsubscribe(req->fwd->observe, &req->live->sub);
        px_notification_release(req->live->first);
        free(req->live);
    }
    if (req->stale != NULL) {
        px_cache_entry_release(req->stale);
    }
    shared_release(req->shared);
    px_conditions_fini(&req->cond);
    free(req->key);
    free(req->x.resp_payload);
    co_optset_fini(&req->x.resp);
    co_optset_fini(&req->creq.opts);
    cg_buf_free(&req->body);
    free(req->query_copy);
    px_fp_target_fini(&req->fp_target);
    free(req->fp_prefix);
    free(req);
}

void px_req_cancel(struct px_req *req)
{
    if (req == NULL || req->live == NULL) {
        return;
    }
    px_observe_unsubscribe(req->fwd->observe, &req->live->sub); /* px_req_free's second call does nothing */
    req->state = REQ_ANSWERED;
}

void px_req_info(const struct px_req *req, struct px_req_info *out)
{
    out->route = req->route != NULL ? req->route->prefix
                 : req->fp          ? req->fwd->cfg->forward_proxy.prefix
                                    : NULL;
    out->upstream = req->route != NULL ? req->fwd->cfg->upstreams[req->route->upstream].name
                    : req->fp          ? "forward_proxy"
                                       : NULL;
    out->coap_code = req->coap_code;
    out->xcache = req->fwd->cache != NULL && req->route != NULL ? req->xc : PX_XC_NONE;
}

static void refuse(struct px_req *req, enum px_status st, const char *detail)
{
    req->refusal = st;
    req->refusal_detail = detail;
}

static const char *header_get(const struct px_headers *h, const char *name)
{
    return h->get != NULL && name != NULL ? h->get(h->get_ctx, name) : NULL;
}

static enum px_auth_result authenticate(const struct px_auth *auth, const struct px_headers *h)
{
    if (auth == NULL) {
        return PX_AUTH_OK; /* the route has no authentication */
    }
    return px_auth_check(auth, h->authorization, header_get(h, px_auth_header(auth)));
}

/* 401 (with the challenge of the route's scheme) or 403; the reason names no secret. */
static void refuse_auth(struct px_req *req, enum px_auth_result result)
{
    if (result == PX_AUTH_MISSING) {
        refuse(req, PX_ERR_UNAUTHORIZED, "this route needs credentials");
    } else {
        refuse(req, PX_ERR_FORBIDDEN, "the credentials are not valid for this route");
    }
}

/* A Content-Length above the limit is refused before a byte of the body is read. */
static bool declared_too_large(const struct px_req *req)
{
    const char *cl = req->h.content_length;
    if (cl == NULL) {
        return false;
    }
    char *end;
    errno = 0;
    unsigned long long n = strtoull(cl, &end, 10);
    return errno != 0 || n > req->fwd->cfg->limits.max_body_bytes;
}

/* Constrained devices must not be flooded through the gateway: each request takes a token of its client
 * address's bucket before anything else is decided (admin paths never come here). */
static bool rate_limited(struct px_req *req)
{
    struct px_rl *rl = req->fwd->rl;
    return rl != NULL && req->front.remote != NULL &&
           !px_rl_take(rl, req->front.remote, now_ms(req->fwd), &req->retry_after);
}

/* ---- forward proxying ---- */

static bool accepts_event_stream(const char *accept);
static enum px_step forward_direct(struct px_req *req);

static bool is_forward(const struct px_req *req)
{
    const struct cfg *cfg = req->fwd->cfg;
    return cfg->forward_proxy.enabled &&
           strncmp(req->path, cfg->forward_proxy.prefix, strlen(cfg->forward_proxy.prefix)) == 0;
}

static enum px_status fp_status(int code)
{
    switch (code) {
    case 400:
        return PX_ERR_BAD_REQUEST;
    case 403:
        return PX_ERR_FORBIDDEN;
    case 504:
        return PX_ERR_TIMEOUT;
    case 500:
        return PX_ERR_INTERNAL;
    default:
        return PX_ERR_BAD_GATEWAY;
    }
}

/* Parses the target after the prefix, refuses what cannot be served, and resolves it: every address the
 * host resolves to must be allowed, and the one checked is the one used (no second lookup to rebind).
 * px_fp_resolve blocks on DNS for a host name: on this thread, bounded by the resolver's timeouts (the
 * literal forms never block). */
static void forward_begin(struct px_req *req)
{
    const struct cfg *cfg = req->fwd->cfg;
    const char *rest = req->path + strlen(cfg->forward_proxy.prefix);
    const char *reason = NULL;
    bool head;

    req->fp = true;
    req->route = NULL;
    int code = px_fp_target_parse(rest, strlen(rest), req->query, &req->fp_target, &reason);
    if (code != 0) {
        refuse(req, fp_status(code), reason);
    } else if (req->fp_target.scheme == PX_FP_COAPS) {
        refuse(req, PX_ERR_NOT_IMPLEMENTED, "the forward proxy reaches coap:// targets only");
    } else if (co_method_from_http(req->method, &head) == 0) {
        refuse(req, PX_ERR_NOT_IMPLEMENTED, "this method has no CoAP equivalent");
    } else if ((code = px_fp_resolve(&req->fp_target, cfg->forward_proxy.allow, cfg->forward_proxy.allow_len,
                                     &req->fp_addr, &req->fp_addr_len, &reason)) != 0) {
        refuse(req, fp_status(code), reason);
    } else if (asprintf(&req->fp_prefix, "%scoap://%s%s%s:%u/", cfg->forward_proxy.prefix,
                        req->fp_target.host_kind == PX_FP_HOST_IPV6 ? "[" : "", req->fp_target.host,
                        req->fp_target.host_kind == PX_FP_HOST_IPV6 ? "]" : "", req->fp_target.port) < 0) {
        req->fp_prefix = NULL;
        refuse(req, PX_ERR_INTERNAL, "out of memory");
    } else if (declared_too_large(req)) {
        refuse(req, PX_ERR_TOO_LARGE, "the request body is larger than limits.max_body_bytes");
    }
}

/* The data path of a forward-proxy request: translated from the target's path and query, with Uri-Host for
 * a host name (RFC 7252 §6.4 step 5; the port is the destination's, so no Uri-Port), straight to the target:
 * no cache (answers of arbitrary targets are not shared) and no live data. */
static enum px_step forward_run(struct px_req *req, struct px_answer *out)
{
    const char *detail = NULL;
    struct px_http_request in = {
        .method = req->method,
        .rest = req->fp_target.path,
        .query = req->fp_target.query,
        .content_type = req->h.content_type,
        .accept = req->h.accept,
        .if_match = req->h.if_match,
        .if_none_match = req->h.if_none_match,
        .body_len = req->body.len,
    };
    if (strcmp(req->method, "GET") == 0 && accepts_event_stream(req->h.accept)) {
        return problem(req, out, PX_ERR_NOT_IMPLEMENTED,
                       "live data is not offered through the forward proxy");
    }
    enum px_status st = px_request_to_coap(&in, NULL, 0, &req->creq, &detail);
    if (st != PX_OK) {
        return problem(req, out, st, detail);
    }
    const char *host = req->fp_target.host;
    if (req->fp_target.host_kind == PX_FP_HOST_NAME &&
        co_optset_add(&req->creq.opts, CO_OPT_URI_HOST, host, strlen(host)) != 0) {
        return problem(req, out, PX_ERR_URI_TOO_LONG, "the request's options do not fit one CoAP message");
    }
    req->xc = PX_XC_BYPASS;
    return forward_direct(req);
}

/* An OPTIONS with Origin and Access-Control-Request-Method on a route with CORS (Fetch standard §4.8).
 * Without CORS on the route, OPTIONS stays a method with no CoAP equivalent (501). */
static bool is_preflight(const struct px_req *req)
{
    return strcmp(req->method, "OPTIONS") == 0 && req->route != NULL &&
           req->route->cors.allow_origins.len > 0 && req->h.origin != NULL &&
           req->h.access_control_method != NULL;
}

/* 204 with the route's methods and headers for an allowed origin; a disallowed one learns nothing. */
static enum px_step preflight_answer(struct px_req *req, struct px_answer *a)
{
    answer_init(req, a, PX_ANSWER_PREFLIGHT, 204);
    if (a->cors_origin == NULL) {
        return problem(req, a, PX_ERR_FORBIDDEN, "this origin may not use the route from a browser");
    }
    cfg_methods_format(req->route->methods, a->allow, sizeof(a->allow));
    return PX_STEP_ANSWER;
}

static const struct px_auth *route_auth(const struct px_req *req)
{
    return req->fwd->route_auth[req->route - req->fwd->cfg->routes];
}

enum px_begin px_req_begin(struct px_req *req, const char *method, const char *path, const char *query,
                           const struct px_headers *headers)
{
    enum px_auth_result auth;
    bool head;

    req->method = method;
    req->path = path;
    req->query = query;
    req->h = *headers;
    req->state = REQ_BODY;
    req->route = px_route_match(req->fwd->cfg, path, strlen(path), &req->rest);
    if (px_forward_draining(req->fwd)) {
        refuse(req, PX_ERR_UNAVAILABLE, "the gateway is shutting down");
    } else if (rate_limited(req)) {
        refuse(req, PX_ERR_RATE_LIMITED, "this client address is over rate_limit.per_ip_rps");
    } else if (is_forward(req)) {
        forward_begin(req); /* the target, checked against forward_proxy.allow; any method */
    } else if (is_preflight(req)) {
        req->preflight = true; /* answered before authentication: browsers send it without credentials */
    } else if (co_method_from_http(method, &head) == 0) {
        refuse(req, PX_ERR_NOT_IMPLEMENTED, "this method has no CoAP equivalent");
    } else if (req->route == NULL) {
        refuse(req, PX_ERR_NO_ROUTE, "no route matches this path");
    } else if ((auth = authenticate(route_auth(req), headers)) != PX_AUTH_OK) {
        refuse_auth(req, auth); /* before anything else about the route is told */
    } else if ((req->route->methods & px_route_method_bit(method)) == 0) {
        refuse(req, PX_ERR_METHOD_NOT_ALLOWED, "the route does not allow this method");
    } else if (declared_too_large(req)) {
        refuse(req, PX_ERR_TOO_LARGE, "the request body is larger than limits.max_body_bytes");
        return PX_BEGIN_ANSWER_NOW;
    }
    return PX_BEGIN_READ_BODY;
}

void px_req_body(struct px_req *req, const void *data, size_t len)
{
    if (req->refusal != PX_OK || req->preflight || req->body_too_large) {
        return; /* read and dropped: the answer does not depend on it */
    }
    if (cg_buf_append(&req->body, data, len, req->fwd->cfg->limits.max_body_bytes) != 0) {
        req->body_too_large = true; /* out of memory is answered the same way: the body cannot be taken */
    }
}

/* ==== the data path ============================================================================== */

static enum live_mode detect_live(struct px_req *req);
static enum px_step serve_live(struct px_req *req, struct px_answer *out);
static void prepare_cache(struct px_req *req);
static enum px_step serve_cached(struct px_req *req, struct px_answer *out);
static enum px_step forward_direct(struct px_req *req);

enum px_step px_req_run(struct px_req *req, struct px_answer *out)
{
    const char *detail = NULL;

    if (req->refusal != PX_OK) {
        return problem(req, out, req->refusal, req->refusal_detail);
    }
    if (req->preflight) {
        return preflight_answer(req, out);
    }
    if (req->body_too_large) {
        return problem(req, out, PX_ERR_TOO_LARGE, "the request body is larger than limits.max_body_bytes");
    }
    if (req->fp) {
        return forward_run(req, out);
    }
    const struct cfg_upstream *up = &req->fwd->cfg->upstreams[req->route->upstream];
    req->live_mode = detect_live(req);
    struct px_http_request in = {
        .method = req->method,
        .rest = req->rest,
        .query = req->query,
        .content_type = req->h.content_type,
        .accept =
            req->live_mode == LIVE_SSE ? NULL : req->h.accept, /* the stream is ours, not the device's */
        .if_match = req->h.if_match,
        .if_none_match = req->h.if_none_match,
        .body_len = req->body.len,
    };
    enum px_status st =
        px_request_to_coap(&in, (const char *const *)up->base_path, up->base_path_len, &req->creq, &detail);
    if (st != PX_OK) {
        return problem(req, out, st, detail);
    }
    if (req->live_mode != LIVE_NONE) {
        return serve_live(req, out);
    }
    prepare_cache(req);
    if (req->xc == PX_XC_MISS) {
        return serve_cached(req, out);
    }
    return forward_direct(req);
}

/* The answer of a request whose exchange or flight is done. */
static enum px_step answer_done(struct px_req *req, struct px_answer *out)
{
    struct shared_answer *sh = req->shared;
    struct px_exchange *x = &req->x;

    if (sh == NULL) {
        if (x->status != PX_OK) {
            return problem(req, out, x->status, x->detail);
        }
        return coap_answer(req, out, x->resp_code, &x->resp, x->resp_payload, x->resp_len, &x->resp_payload,
                           NULL);
    }
    if (sh->status != PX_OK) {
        return problem(req, out, sh->status, sh->detail);
    }
    if (sh->entry != NULL) {
        req->xc = sh->revalidated ? PX_XC_REVALIDATED : PX_XC_MISS;
        size_t len = 0;
        const uint8_t *payload = px_cache_entry_payload(sh->entry, &len);
        return coap_answer(req, out, px_cache_entry_code(sh->entry), px_cache_entry_opts(sh->entry), payload,
                           len, NULL, sh->entry);
    }
    req->xc = PX_XC_MISS;
    return coap_answer(req, out, sh->code, &sh->opts, sh->payload, sh->len, NULL, NULL);
}

static enum px_step longpoll_step(struct px_req *req, struct px_answer *out);
static enum px_step sse_start(struct px_req *req, struct px_answer *out);

enum px_step px_req_resume(struct px_req *req, struct px_answer *out)
{
    if (req->state == REQ_LONGPOLL) {
        return longpoll_step(req, out);
    }
    if (req->state == REQ_SSE_PENDING) {
        return sse_start(req, out);
    }
    return answer_done(req, out);
}

/* ==== to the device ============================================================================== */

/* Hands the translated request to the transport with done() as its completion. Suspended first: the
 * transport may complete it (and resume the front end) before this function returns. */
static void submit(struct px_req *req, px_done_fn done)
{
    struct px_exchange *x = &req->x;

    req->state = REQ_WAITING;
    x->upstream = req->route != NULL ? req->route->upstream : 0;
    x->target = req->fp ? &req->fp_addr : NULL;
    x->target_len = req->fp ? req->fp_addr_len : 0;
    x->code = req->creq.code;
    x->req = &req->creq.opts;
    x->payload = req->creq.has_body ? req->body.p : NULL;
    x->payload_len = req->creq.has_body ? req->body.len : 0;
    x->done = done;
    x->notify = NULL;
    x->arg = req;
    req->submitted_us = cg_metrics_now_us();
    req->fwd->transport.submit(req->fwd->transport.impl, x);
}

/* Worker thread: the exchange's duration, for /metrics. */
static void count_exchange(const struct px_req *req)
{
    const char *name =
        req->route != NULL ? req->fwd->cfg->upstreams[req->route->upstream].name : "forward_proxy";
    struct cg_hist *h = cg_keyed_get(&px_exchange_durations, name, strlen(name));
    if (h != NULL) {
        cg_hist_observe(h, cg_metrics_now_us() - req->submitted_us);
    }
}

/* A 2.01's Location names the created resource: drop what is cached for it too (RFC 7252 §5.9.1.1). */
static void invalidate_location(struct px_req *req)
{
    const struct co_optset *resp = &req->x.resp;
    struct co_optset target = CO_OPTSET_INIT;
    uint8_t key[PX_CACHE_KEY_MAX];
    size_t resource_len = 0;

    for (unsigned i = 0; i < resp->count; i++) {
        const struct co_opt *o = &resp->opt[i];
        uint16_t as = o->number == CO_OPT_LOCATION_PATH    ? CO_OPT_URI_PATH
                      : o->number == CO_OPT_LOCATION_QUERY ? CO_OPT_URI_QUERY
                                                           : 0;
        if (as != 0) {
            co_optset_add(&target, as, co_opt_value(resp, o), o->len);
        }
    }
    if (target.count > 0 &&
        px_cache_key(req->route->upstream, CO_GET, &target, NULL, 0, key, sizeof(key), &resource_len) > 0) {
        px_cache_invalidate(req->fwd->cache, key, resource_len);
    }
    co_optset_fini(&target);
}

/* After an unsafe method's success, the resource's entries (and a 2.01's Location target) are stale. */
static void invalidate_after(struct px_req *req)
{
    if (req->key == NULL || req->fwd->cache == NULL || req->x.status != PX_OK ||
        CO_CODE_CLASS(req->x.resp_code) != 2) {
        return;
    }
    px_cache_invalidate(req->fwd->cache, req->key, req->resource_len);
    if (req->x.resp_code == CO_CODE(2, 1)) {
        invalidate_location(req);
    }
}

/* Worker thread: a direct exchange is done. Invalidation happens before the client hears of the success,
 * so a GET it sends next cannot be answered from the old entry. */
static void on_exchange_done(struct px_exchange *x, void *arg)
{
    struct px_req *req = arg;
    (void)x;
    count_exchange(req);
    invalidate_after(req);
    req->state = REQ_DONE;
    req->front.resume(req->front.conn);
}

static enum px_step forward_direct(struct px_req *req)
{
    req->front.suspend(req->front.conn);
    submit(req, on_exchange_done);
    return PX_STEP_WAIT;
}

/* ==== the cache ================================================================================== */

static bool make_key(struct px_req *req)
{
    uint8_t buf[PX_CACHE_KEY_MAX];
    bool fetch = req->creq.code == CO_FETCH && req->creq.has_body;
    size_t len =
        px_cache_key(req->route->upstream, req->creq.code, &req->creq.opts, fetch ? req->body.p : NULL,
                     fetch ? req->body.len : 0, buf, sizeof(buf), &req->resource_len);
    if (len == 0 || (req->key = malloc(len)) == NULL) {
        return false;
    }
    memcpy(req->key, buf, len);
    req->key_len = len;
    return true;
}

/* Whether the request may use the cache (xc MISS) or bypasses it; unsafe methods keep a key only to
 * invalidate the resource once the device has answered. */
static void prepare_cache(struct px_req *req)
{
    uint8_t code = req->creq.code;
    bool safe_read = code == CO_GET || code == CO_FETCH;

    req->xc = PX_XC_BYPASS;
    if (safe_read) {
        /* On unsafe methods If-None-Match is a precondition for the device (translate sends it). */
        px_conditions_parse_inm(&req->cond, req->h.if_none_match);
    }
    if (req->fwd->cache == NULL) {
        return;
    }
    if (co_method_is_unsafe(code)) {
        make_key(req);
        return;
    }
    if (!req->route->cache || !safe_read || req->h.if_match != NULL) {
        return; /* If-Match is a precondition for the device: its answer is this client's, never everyone's */
    }
    px_conditions_parse_cache(&req->cond, req->h.cache_control, req->h.pragma);
    if (req->cond.no_store || !make_key(req)) {
        return;
    }
    req->xc = PX_XC_MISS;
}

/* Worker thread: turns the leader's finished exchange into the answer all waiters share: refresh on 2.03,
 * store when cacheable, else keep the raw answer. */
static struct shared_answer *make_shared(struct px_req *req)
{
    struct px_cache *cache = req->fwd->cache;
    struct px_exchange *x = &req->x;
    struct shared_answer *sh = calloc(1, sizeof(*sh));

    if (sh == NULL) {
        return NULL;
    }
    atomic_init(&sh->refs, 1);
    sh->status = x->status;
    sh->detail = x->detail;
    if (x->status != PX_OK) {
        return sh;
    }
    uint64_t now = now_ms(req->fwd);
    if (req->stale != NULL && x->resp_code == CO_CODE(2, 3)) {
        px_cache_refresh(cache, req->stale, &x->resp, now);
        sh->entry = req->stale;
        req->stale = NULL;
        sh->revalidated = true;
        return sh;
    }
    if (x->resp_code != CO_CODE(2, 3) && co_code_cacheable(x->resp_code)) {
        sh->entry = px_cache_store_since(cache, req->key, req->key_len, req->resource_len, x->resp_code,
                                         &x->resp, x->resp_payload, x->resp_len, now, req->cache_epoch);
        if (sh->entry != NULL) {
            return sh;
        }
    }
    co_optset_move(&sh->opts, &x->resp);
    sh->code = x->resp_code;
    sh->payload = x->resp_payload;
    sh->len = x->resp_len;
    x->resp_payload = NULL;
    return sh;
}

/* Worker thread: the leader's exchange is done; share the answer with every waiter, then wake the leader. */
static void on_flight_done(struct px_exchange *x, void *arg)
{
    struct px_req *req = arg;
    count_exchange(req);
    struct shared_answer *sh = make_shared(req);

    px_cache_flight_finish(req->fwd->cache, req->key, req->key_len, sh);
    if (sh == NULL) {
        x->status = PX_ERR_INTERNAL;
        x->detail = OOM_SHARING;
    }
    req->shared = sh;
    req->state = REQ_DONE;
    req->front.resume(req->front.conn);
}

/* Whoever finished the flight: a follower's answer is the shared one. */
static void on_wake(struct px_cache_waiter *w, void *result)
{
    struct px_req *req = (struct px_req *)((char *)w - offsetof(struct px_req, waiter));
    struct shared_answer *sh = result;

    if (sh != NULL) {
        atomic_fetch_add(&sh->refs, 1);
    } else {
        req->x.status = PX_ERR_INTERNAL;
        req->x.detail = OOM_SHARING;
    }
    req->shared = sh;
    req->state = REQ_DONE;
    req->front.resume(req->front.conn);
}

/* A fresh hit is answered now; otherwise the request joins the key's flight: the leader asks the device
 * (revalidating a stale entry with its ETag), followers wait for the leader's answer. */
static enum px_step serve_cached(struct px_req *req, struct px_answer *out)
{
    struct px_cache *cache = req->fwd->cache;
    bool fresh = false;
    struct px_cache_entry *e = px_cache_lookup(cache, req->key, req->key_len, now_ms(req->fwd), &fresh);

    uint64_t now = now_ms(req->fwd);
    if (e != NULL && fresh &&
        px_conditions_accept_fresh(&req->cond, px_cache_entry_age(e, now),
                                   px_cache_entry_remaining(e, now))) {
        req->xc = PX_XC_HIT;
        size_t len = 0;
        const uint8_t *payload = px_cache_entry_payload(e, &len);
        enum px_step step =
            coap_answer(req, out, px_cache_entry_code(e), px_cache_entry_opts(e), payload, len, NULL, e);
        px_cache_entry_release(e);
        return step;
    }
    req->state = REQ_WAITING;
    /* Suspended before joining: the flight may finish (and resume us) on a worker at any moment. */
    req->front.suspend(req->front.conn);
    req->waiter.wake = on_wake;
    if (!px_cache_flight_join(cache, req->key, req->key_len, &req->waiter)) {
        if (e != NULL) {
            px_cache_entry_release(e);
        }
        return PX_STEP_WAIT;
    }
    if (e != NULL) {
        size_t len = 0;
        const uint8_t *etag = px_cache_entry_etag(e, &len);
        if (len > 0 && co_optset_add(&req->creq.opts, CO_OPT_ETAG, etag, len) == 0) {
            req->stale = e; /* revalidate: 2.03 refreshes it */
        } else {
            px_cache_entry_release(e);
        }
    }
    req->cache_epoch = px_cache_epoch(cache);
    submit(req, on_flight_done);
    return PX_STEP_WAIT;
}

/* ==== live data ================================================================================== */

static bool accepts_event_stream(const char *accept)
{
    return accept != NULL && strcasestr(accept, "text/event-stream") != NULL;
}

/* Removes every "observe=next" item from the raw query (it is ours, not the device's); the others stay as
 * they are, in order. True when there was one. */
static bool take_longpoll_item(struct px_req *req)
{
    const char *q = req->query;
    bool found = false, first = true;

    if (q == NULL || (req->query_copy = malloc(strlen(q) + 1)) == NULL) {
        return false;
    }
    char *out = req->query_copy;
    for (const char *item = q; item != NULL;) {
        const char *amp = strchr(item, '&');
        size_t n = amp != NULL ? (size_t)(amp - item) : strlen(item);
        if (n == strlen(LONGPOLL_ITEM) && memcmp(item, LONGPOLL_ITEM, n) == 0) {
            found = true;
        } else {
            if (!first) {
                *out++ = '&'; /* even after an empty item: "?&x=1" keeps its "" (RFC 7252 §6.4 step 8) */
            }
            first = false;
            memcpy(out, item, n);
            out += n;
        }
        item = amp != NULL ? amp + 1 : NULL;
    }
    *out = '\0';
    if (found) {
        req->query = !first ? req->query_copy : NULL; /* NULL only when observe=next was all there was */
    }
    return found;
}

static enum live_mode detect_live(struct px_req *req)
{
    if (strcmp(req->method, "GET") != 0) {
        return LIVE_NONE;
    }
    if (take_longpoll_item(req)) {
        return LIVE_LONGPOLL;
    }
    return accepts_event_stream(req->h.accept) ? LIVE_SSE : LIVE_NONE;
}

/* Registry lock held; any thread. */
static void on_sub_wake(struct px_subscriber *s)
{
    struct live *live = (struct live *)s;
    live->req->front.resume(live->req->front.conn);
}

/* Registry lock held; the request's own thread. A park, not a suspend: only the client can end it early. */
static void park(struct px_subscriber *s, void *arg)
{
    struct px_req *req = arg;
    (void)s;
    if (req->front.park != NULL) {
        req->front.park(req->front.conn);
    } else {
        req->front.suspend(req->front.conn);
    }
}

static enum px_step serve_live(struct px_req *req, struct px_answer *out)
{
    uint8_t key[PX_CACHE_KEY_MAX];
    size_t resource_len = 0;
    const char *detail = NULL;

    size_t key_len =
        px_cache_key(req->route->upstream, CO_GET, &req->creq.opts, NULL, 0, key, sizeof(key), &resource_len);
    if (key_len == 0) {
        return problem(req, out, PX_ERR_URI_TOO_LONG, "the resource's options are too large to observe");
    }
    struct live *live = calloc(1, sizeof(*live));
    if (live == NULL) {
        return problem(req, out, PX_ERR_INTERNAL, "out of memory");
    }
    live->req = req;
    live->sub.wake = on_sub_wake;
    live->sub.want_next = req->live_mode == LIVE_LONGPOLL;
    live->sub.store = req->route->cache && req->fwd->cache != NULL;
    live->sub.resource_len = resource_len;
    enum px_status st = px_observe_subscribe(req->fwd->observe, req->route->upstream, key, key_len,
                                             &req->creq.opts, &live->sub, &detail);
    if (st != PX_OK) {
        free(live);
        return problem(req, out, st, detail);
    }
    req->live = live;
    if (req->live_mode == LIVE_SSE) {
        return sse_start(req, out);
    }
    req->state = REQ_LONGPOLL;
    live->deadline_ms = now_ms(req->fwd) + (uint64_t)req->fwd->cfg->limits.longpoll_timeout_s * 1000u;
    return longpoll_step(req, out);
}

/* A notification as a one-off CoAP answer: its options are rebuilt from what the notification kept. */
static enum px_step notification_answer(struct px_req *req, struct px_answer *out,
                                        const struct px_notification *n)
{
    struct co_optset opts = CO_OPTSET_INIT;
    uint8_t *copy = NULL;

    if (n->len > 0 && (copy = malloc(n->len)) == NULL) {
        return problem(req, out, PX_ERR_INTERNAL, "out of memory");
    }
    if (n->len > 0) {
        memcpy(copy, n->payload, n->len);
    }
    if (n->etag_len > 0) {
        co_optset_add(&opts, CO_OPT_ETAG, n->etag, n->etag_len);
    }
    if (n->cf >= 0) {
        co_optset_add_uint(&opts, CO_OPT_CONTENT_FORMAT, (uint32_t)n->cf);
    }
    if (n->max_age >= 0) {
        co_optset_add_uint(&opts, CO_OPT_MAX_AGE, (uint32_t)n->max_age);
    }
    enum px_step step = coap_answer(req, out, n->code, &opts, copy, n->len, &copy, NULL);
    out->opts = NULL; /* mapped already; opts goes now */
    co_optset_fini(&opts);
    free(copy);
    return step;
}

/* A live request whose observation ended without an end notification: the shutdown ended it (503, so the
 * client retries later or elsewhere), or the device's observation went away. */
static enum px_step live_ended(struct px_req *req, struct px_answer *out)
{
    if (px_forward_draining(req->fwd)) {
        return problem(req, out, PX_ERR_UNAVAILABLE, "the gateway is shutting down");
    }
    return problem(req, out, PX_ERR_BAD_GATEWAY, "the observation ended");
}

/* SSE: the stream starts once the registration is answered with a success (RFC 7641 §3.2: an error is no
 * observation). An error gets its HTTP status instead, as a long-poll would, so a browser's EventSource
 * does not reconnect to it forever, each time a new CoAP GET. A later subscriber of a live observation
 * gets the latest notification at once, so it never waits here. */
static enum px_step sse_start(struct px_req *req, struct px_answer *out)
{
    bool ended = false;
    struct live *live = req->live;
    struct px_notification *n = px_observe_next(req->fwd->observe, &live->sub, 0, &ended, park, req);

    if (n == NULL) {
        req->state = REQ_SSE_PENDING;
        return ended ? live_ended(req, out) : PX_STEP_WAIT;
    }
    enum px_step step;
    if (n->end) {
        step = problem(req, out, n->status != PX_OK ? n->status : PX_ERR_BAD_GATEWAY,
                       n->status != PX_OK ? n->detail : "the upstream ended the observation at once");
    } else if (CO_CODE_CLASS(n->code) != 2) {
        step = notification_answer(req, out, n);
    } else {
        live->first = n;
        answer_init(req, out, PX_ANSWER_STREAM, 200);
        req->state = REQ_STREAM;
        return PX_STEP_ANSWER;
    }
    px_notification_release(n);
    return step;
}

/* Long-poll: the next notification, 204 at the deadline, or park again. */
static enum px_step longpoll_step(struct px_req *req, struct px_answer *out)
{
    bool ended = false;
    struct live *live = req->live;

    if (now_ms(req->fwd) >= live->deadline_ms) {
        return empty_answer(req, out); /* nothing new within longpoll_timeout_s */
    }
    struct px_notification *n =
        px_observe_next(req->fwd->observe, &live->sub, live->deadline_ms, &ended, park, req);
    if (n == NULL) {
        return ended ? live_ended(req, out) : PX_STEP_WAIT;
    }
    enum px_step step;
    if (!n->end) {
        step = notification_answer(req, out, n);
    } else if (n->status != PX_OK) {
        step = problem(req, out, n->status, n->detail);
    } else {
        step = empty_answer(req, out);
    }
    px_notification_release(n);
    return step;
}

struct px_notification *px_req_next_event(struct px_req *req, uint64_t wake_at_ms, bool *ended)
{
    if (req->live == NULL) {
        *ended = true;
        return NULL;
    }
    if (req->live->first != NULL) {
        struct px_notification *first = req->live->first;
        req->live->first = NULL;
        *ended = false;
        return first;
    }
    return px_observe_next(req->fwd->observe, &req->live->sub, wake_at_ms, ended, park, req);
}

/* Worker thread: a notification of an observed resource on a caching route is its newest representation;
 * store it so a GET answers nothing older (RFC 7641 §3.2 notifications are fresh responses). */
static void store_notification(void *arg, const uint8_t *key, size_t key_len, size_t resource_len,
                               const struct px_exchange *x)
{
    struct px_forward *fwd = arg;

    if (fwd->cache == NULL || !co_code_cacheable(x->resp_code)) {
        return;
    }
    struct px_cache_entry *e = px_cache_store(fwd->cache, key, key_len, resource_len, x->resp_code, &x->resp,
                                              x->resp_payload, x->resp_len, now_ms(fwd));
    if (e != NULL) {
        px_cache_entry_release(e);
    }
}

/* ==== the pipeline =============================================================================== */

/* The px_auth of an auth section, NULL (and ok) when it has none. */
static int auth_build(const struct cfg_auth *a, struct px_auth **out)
{
    char reason[CG_SECRET_REASON_MAX];
    struct px_auth_desc d = {
        .scheme = a->type == CFG_AUTH_BEARER ? PX_AUTH_BEARER : PX_AUTH_API_KEY,
        .header = a->header,
        .secrets = a->secrets.items,
        .secrets_len = a->secrets.count,
    };
    *out = NULL;
    return a->type == CFG_AUTH_NONE ? 0 : px_auth_new(&d, out, reason, sizeof(reason));
}

static int auth_build_all(struct px_forward *fwd)
{
    const struct cfg *cfg = fwd->cfg;

    if ((fwd->route_auth = calloc(cfg->routes_len + 1, sizeof(*fwd->route_auth))) == NULL) {
        return -1;
    }
    for (size_t i = 0; i < cfg->routes_len; i++) {
        if (auth_build(&cfg->routes[i].auth, &fwd->route_auth[i]) != 0) {
            return -1;
        }
    }
    return auth_build(&cfg->admin.auth, &fwd->admin_auth);
}

enum px_auth_result px_forward_admin_auth(const struct px_forward *fwd, const struct px_headers *headers,
                                          char *challenge, size_t len)
{
    enum px_auth_result r = authenticate(fwd->admin_auth, headers);
    if (r == PX_AUTH_MISSING) {
        px_auth_challenge(fwd->admin_auth, challenge, len);
    }
    return r;
}

/* Clients tracked by the rate limiter: beyond it the longest-idle are forgotten (px_rl_create). */
#define RL_MAX_CLIENTS 65536

static int rl_build(struct px_forward *fwd)
{
    unsigned rps = fwd->cfg->rate_limit.per_ip_rps;
    unsigned burst = fwd->cfg->rate_limit.burst != 0 ? fwd->cfg->rate_limit.burst : 2 * rps;

    if (rps == 0) {
        return 0;
    }
    fwd->rl = px_rl_create((double)rps, burst, RL_MAX_CLIENTS);
    return fwd->rl != NULL ? 0 : -1;
}

static void auth_free_all(struct px_forward *fwd)
{
    for (size_t i = 0; fwd->route_auth != NULL && i < fwd->cfg->routes_len; i++) {
        px_auth_free(fwd->route_auth[i]);
    }
    free(fwd->route_auth);
    px_auth_free(fwd->admin_auth);
    px_rl_destroy(fwd->rl);
}

struct px_forward *px_forward_create(const struct cfg *cfg, struct px_transport transport,
                                     struct px_cache *cache, cg_clock_fn clock, void *clock_arg)
{
    struct px_forward *fwd = calloc(1, sizeof(*fwd));
    if (fwd == NULL) {
        return NULL;
    }
    fwd->cfg = cfg;
    if (auth_build_all(fwd) != 0 || rl_build(fwd) != 0) {
        auth_free_all(fwd);
        free(fwd);
        return NULL;
    }
    fwd->cfg = cfg;
    fwd->transport = transport;
    fwd->cache = cache;
    fwd->clock = clock != NULL ? clock : cg_clock_monotonic;
    fwd->clock_arg = clock_arg;
    fwd->observe = px_observe_create(transport, fwd->clock, fwd->clock_arg,
                                     cfg->limits.max_subscribers_per_resource, cfg->limits.max_subscribers);
    if (fwd->observe == NULL) {
        auth_free_all(fwd);
        free(fwd);
        return NULL;
    }
    px_observe_set_store(fwd->observe, store_notification, fwd);
    return fwd;
}

void px_forward_destroy(struct px_forward *fwd)
{
    if (fwd == NULL) {
        return;
    }
    px_observe_destroy(fwd->observe);
    auth_free_all(fwd);
    free(fwd);
}

void px_forward_quiesce(struct px_forward *fwd)
{
    atomic_store(&fwd->draining, true);
    px_observe_close_all(fwd->observe);
}

bool px_forward_draining(const struct px_forward *fwd)
{
    return atomic_load(&((struct px_forward *)fwd)->draining);
}
