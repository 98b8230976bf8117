/* gateway/http_cache: how an HTTP request uses proxy/cache — fresh hits answered at once, stale entries
 * revalidated with their ETag, misses coalesced into one upstream request (single flight), unsafe methods
 * invalidating. Runs on MHD threads, except the flight/exchange completions, which run on CoAP workers. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "gateway/http_priv.h"

struct shared_answer {
    atomic_int refs;
    enum px_status status; /* PX_OK: a CoAP answer arrived */
    const char *detail;
    bool revalidated;             /* the device said 2.03 Valid to the stale entry's ETag */
    struct px_cache_entry *entry; /* stored or refreshed entry, when the answer was cacheable */
    uint8_t code;                 /* otherwise the raw answer, shared read-only */
    struct co_optset *opts;
    uint8_t *payload;
    size_t len;
};

static void shared_release(struct shared_answer *sh)
{
    if (sh == NULL || atomic_fetch_sub(&sh->refs, 1) != 1) {
        return;
    }
    if (sh->entry != NULL) {
        px_cache_entry_release(sh->entry);
    }
    if (sh->opts != NULL) {
        co_optset_fini(sh->opts);
        free(sh->opts);
    }
    free(sh->payload);
    free(sh);
}

const char *gw_xcache_name(enum xcache xc)
{
    switch (xc) {
    case XC_BYPASS:
        return "BYPASS";
    case XC_MISS:
        return "MISS";
    case XC_HIT:
        return "HIT";
    case XC_REVALIDATED:
        return "REVALIDATED";
    }
    return "BYPASS";
}

/* ---- request headers ---- */

/* Calls fn on each comma-separated, whitespace-trimmed element of a header value. */
static void each_element(const char *value, void (*fn)(struct request *r, const char *s, size_t n),
                         struct request *r)
{
    while (value != NULL && *value != '\0') {
        const char *end = strchr(value, ',');
        size_t n = end != NULL ? (size_t)(end - value) : strlen(value);
        const char *s = value;
        while (n > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            n--;
        }
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
            n--;
        }
        if (n > 0) {
            fn(r, s, n);
        }
        value = end != NULL ? end + 1 : NULL;
    }
}

static bool token_is(const char *s, size_t n, const char *token)
{
    return strlen(token) == n && strncasecmp(s, token, n) == 0;
}

static void cache_directive(struct request *r, const char *s, size_t n)
{
    if (token_is(s, n, "no-store")) {
        r->no_store = true;
    } else if (token_is(s, n, "no-cache") || token_is(s, n, "max-age=0")) {
        r->no_cache = true;
    }
}

/* If-None-Match uses the weak comparison (RFC 9110 §13.1.2): "W/" is ignored. Tags that are not ours can
 * never match and are dropped. */
static void inm_element(struct request *r, const char *s, size_t n)
{
    char tag[40];
    uint8_t bytes[8];

    if (n == 1 && s[0] == '*') {
        r->inm_star = true;
        return;
    }
    if (n > 2 && s[0] == 'W' && s[1] == '/') {
        s += 2;
        n -= 2;
    }
    if (n >= sizeof(tag) || r->inm_count == INM_MAX) {
        return;
    }
    memcpy(tag, s, n);
    tag[n] = '\0';
    long len = px_etag_parse(tag, bytes);
    if (len > 0) {
        memcpy(r->inm_tag[r->inm_count], bytes, (size_t)len);
        r->inm_len[r->inm_count++] = (uint8_t)len;
    }
}

bool gw_cache_inm_matches(const struct request *r, const uint8_t *etag, size_t etag_len)
{
    if (r->inm_star) {
        return true;
    }
    for (unsigned i = 0; i < r->inm_count; i++) {
        if (r->inm_len[i] == etag_len && memcmp(r->inm_tag[i], etag, etag_len) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- preparing ---- */

static bool is_unsafe(uint8_t code)
{
    return code == CO_POST || code == CO_PUT || code == CO_DELETE || code == CO_PATCH ||
           code == CO_IPATCH;
}

static bool make_key(struct request *r)
{
    uint8_t buf[PX_CACHE_KEY_MAX];
    bool fetch = r->creq.code == CO_FETCH && r->creq.has_body;
    size_t len = px_cache_key(r->route->upstream, r->creq.code, &r->creq.opts, fetch ? r->body : NULL,
                              fetch ? r->body_len : 0, buf, sizeof(buf), &r->resource_len);
    if (len == 0) {
        return false;
    }
    r->key = malloc(len);
    if (r->key == NULL) {
        return false;
    }
    memcpy(r->key, buf, len);
    r->key_len = len;
    return true;
}

void gw_cache_prepare(struct request *r)
{
    uint8_t code = r->creq.code;

    r->xc = XC_BYPASS;
    if (code == CO_GET || code == CO_FETCH) {
        /* On unsafe methods If-None-Match is a precondition for the device (translate sends "*"). */
        each_element(gw_header(r, MHD_HTTP_HEADER_IF_NONE_MATCH), inm_element, r);
    }
    if (r->http->cache == NULL) {
        return;
    }
    if (is_unsafe(code)) {
        make_key(r); /* only to invalidate the resource once the device has answered */
        return;
    }
    if (!r->route->cache || (code != CO_GET && code != CO_FETCH)) {
        return;
    }
    if (gw_header(r, MHD_HTTP_HEADER_IF_MATCH) != NULL) {
        return; /* a precondition for the device: its answer is this client's, never everyone's */
    }
    const char *cc = gw_header(r, MHD_HTTP_HEADER_CACHE_CONTROL);
    each_element(cc != NULL ? cc : gw_header(r, MHD_HTTP_HEADER_PRAGMA), cache_directive, r);
    if (r->no_store || !make_key(r)) {
        return;
    }
    r->xc = XC_MISS;
}

/* ---- serving ---- */

static enum MHD_Result reply_entry(struct request *r, struct px_cache_entry *e)
{
    size_t len = 0;
    const uint8_t *payload = px_cache_entry_payload(e, &len);
    return gw_reply_answer(r, px_cache_entry_code(e), px_cache_entry_opts(e), payload, len, NULL, e);
}

/* A follower's flight is over: take a reference to the shared answer and wake the connection. */
static void on_wake(struct px_cache_waiter *w, void *result)
{
    struct request *r = (struct request *)((char *)w - offsetof(struct request, waiter));
    struct shared_answer *sh = result;

    if (sh != NULL) {
        atomic_fetch_add(&sh->refs, 1);
    } else {
        r->x.status = PX_ERR_INTERNAL;
        r->x.detail = "out of memory while sharing the upstream's answer";
    }
    r->shared = sh;
    r->state = REQ_DONE;
    MHD_resume_connection(r->conn);
}

/* Turns the leader's finished exchange into the answer all waiters share: refresh on 2.03, store when
 * cacheable, else keep the raw answer. Worker thread. */
static struct shared_answer *make_shared(struct request *r)
{
    struct px_cache *cache = r->http->cache;
    struct px_exchange *x = &r->x;
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
    uint64_t now = cg_now_ms();
    if (r->stale != NULL && x->resp_code == CO_CODE(2, 3)) {
        px_cache_refresh(cache, r->stale, &x->resp, now);
        sh->entry = r->stale;
        r->stale = NULL;
        sh->revalidated = true;
        return sh;
    }
    if (x->resp_code != CO_CODE(2, 3) && co_code_cacheable(x->resp_code)) {
        sh->entry = px_cache_store_since(cache, r->key, r->key_len, r->resource_len, x->resp_code, &x->resp,
                                         x->resp_payload, x->resp_len, now, r->cache_epoch);
        if (sh->entry != NULL) {
            return sh;
        }
    }
    sh->opts = malloc(sizeof(*sh->opts));
    if (sh->opts == NULL) {
        sh->status = PX_ERR_INTERNAL;
        sh->detail = "out of memory while sharing the upstream's answer";
        return sh;
    }
    co_optset_init(sh->opts);
    co_optset_move(sh->opts, &x->resp);
    sh->code = x->resp_code;
    sh->payload = x->resp_payload;
    sh->len = x->resp_len;
    x->resp_payload = NULL;
    return sh;
}

/* The leader's exchange is done: share the answer with every waiter, then wake the leader. Worker thread. */
static void on_flight_done(struct px_exchange *x, void *arg)
{
    struct request *r = arg;
    struct shared_answer *sh = make_shared(r);

    px_cache_flight_finish(r->http->cache, r->key, r->key_len, sh);
    if (sh == NULL) {
        x->status = PX_ERR_INTERNAL;
        x->detail = "out of memory while sharing the upstream's answer";
    }
    r->shared = sh;
    r->state = REQ_DONE;
    MHD_resume_connection(r->conn);
}

enum MHD_Result gw_cache_serve(struct request *r)
{
    struct px_cache *cache = r->http->cache;
    bool fresh = false;
    struct px_cache_entry *e = px_cache_lookup(cache, r->key, r->key_len, cg_now_ms(), &fresh);

    if (e != NULL && fresh && !r->no_cache) {
        r->xc = XC_HIT;
        bool plain = r->inm_count == 0 && !r->inm_star && !atomic_load(&r->http->draining);
        enum MHD_Result ret = plain ? gw_reply_hit(r, e) : reply_entry(r, e);
        px_cache_entry_release(e);
        return ret;
    }
    r->state = REQ_WAITING;
    /* Suspended before joining: the flight may finish (and resume us) on a worker at any moment. */
    MHD_suspend_connection(r->conn);
    r->waiter.wake = on_wake;
    if (!px_cache_flight_join(cache, r->key, r->key_len, &r->waiter)) {
        if (e != NULL) {
            px_cache_entry_release(e);
        }
        return MHD_YES;
    }
    if (e != NULL) {
        size_t len = 0;
        const uint8_t *etag = px_cache_entry_etag(e, &len);
        if (len > 0 && co_optset_add(&r->creq.opts, CO_OPT_ETAG, etag, len) == 0) {
            r->stale = e; /* revalidate: 2.03 refreshes it */
        } else {
            px_cache_entry_release(e);
        }
    }
    r->cache_epoch = px_cache_epoch(cache);
    gw_forward(r, on_flight_done);
    return MHD_YES;
}

enum MHD_Result gw_cache_reply(struct request *r)
{
    struct shared_answer *sh = r->shared;

    if (sh->status != PX_OK) {
        return gw_reply_problem(r, sh->status, sh->detail);
    }
    if (sh->entry != NULL) {
        r->xc = sh->revalidated ? XC_REVALIDATED : XC_MISS;
        return reply_entry(r, sh->entry);
    }
    r->xc = XC_MISS;
    return gw_reply_answer(r, sh->code, sh->opts, sh->payload, sh->len, NULL, NULL);
}

/* ---- invalidation ---- */

/* A 2.01's Location names the created resource: drop what is cached for it too (RFC 7252 §5.9.1.1). */
static void invalidate_location(struct request *r)
{
    const struct co_optset *resp = &r->x.resp;
    struct co_optset *target = malloc(sizeof(*target));
    uint8_t key[PX_CACHE_KEY_MAX];
    size_t resource_len = 0;

    if (target == NULL) {
        return;
    }
    co_optset_init(target);
    for (unsigned i = 0; i < resp->count; i++) {
        const struct co_opt *o = &resp->opt[i];
        uint16_t as = o->number == CO_OPT_LOCATION_PATH    ? CO_OPT_URI_PATH
                      : o->number == CO_OPT_LOCATION_QUERY ? CO_OPT_URI_QUERY
                                                           : 0;
        if (as != 0) {
            co_optset_add(target, as, co_opt_value(resp, o), o->len);
        }
    }
    if (target->count > 0 &&
        px_cache_key(r->route->upstream, CO_GET, target, NULL, 0, key, sizeof(key), &resource_len) > 0) {
        px_cache_invalidate(r->http->cache, key, resource_len);
    }
    co_optset_fini(target);
    free(target);
}

void gw_cache_invalidate_after(struct request *r)
{
    if (r->key == NULL || r->http->cache == NULL || r->xc != XC_BYPASS || r->x.status != PX_OK ||
        CO_CODE_CLASS(r->x.resp_code) != 2) {
        return;
    }
    px_cache_invalidate(r->http->cache, r->key, r->resource_len);
    if (r->x.resp_code == CO_CODE(2, 1)) {
        invalidate_location(r);
    }
}

void gw_cache_release(struct request *r)
{
    if (r->stale != NULL) {
        px_cache_entry_release(r->stale);
        r->stale = NULL;
    }
    shared_release(r->shared);
    r->shared = NULL;
    free(r->key);
    r->key = NULL;
}
