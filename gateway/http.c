/* gateway/http: libmicrohttpd callbacks. A request is routed and translated on the MHD thread, handed to the
 * CoAP client, and its connection suspended; the worker's completion resumes it. Nothing here blocks. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "gateway/http_priv.h"
#include "base/log.h"
#include "proxy/route.h"
#include "proxy/translate.h"

/* ---- responses ---- */

enum MHD_Result gw_queue(struct request *r, struct MHD_Response *resp, int status)
{
    if (resp == NULL) {
        return MHD_NO;
    }
    if (atomic_load(&r->http->draining)) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    }
    if (r->http->cache != NULL && r->route != NULL) {
        MHD_add_response_header(resp, "X-Cache", gw_xcache_name(r->xc));
    }
    r->status = status;
    r->state = REQ_ANSWERED;
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply_text(struct request *r, int status, const char *content_type, const char *text)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (resp != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    }
    return gw_queue(r, resp, status);
}

enum MHD_Result gw_reply_problem(struct request *r, enum px_status st, const char *detail)
{
    char body[PROBLEM_MAX];
    size_t len = px_problem_json(body, sizeof(body), st, detail);
    int status = px_status_http(st);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_COPY);

    if (resp == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/problem+json");
    if (st == PX_ERR_METHOD_NOT_ALLOWED && r->route != NULL) {
        char allow[128];
        cfg_methods_format(r->route->methods, allow, sizeof(allow));
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    }
    if (st == PX_ERR_UNAVAILABLE) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    }
    if (st == PX_ERR_TOO_LARGE) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    }
    return gw_queue(r, resp, status);
}

void gw_add_header_if(struct MHD_Response *resp, const char *name, const char *value)
{
    if (value[0] != '\0') {
        MHD_add_response_header(resp, name, value);
    }
}

/* Adds "name: <prefix><v>" when v >= 0. */
void gw_add_number_header(struct MHD_Response *resp, const char *name, const char *prefix, long v)
{
    char buf[48];
    if (v >= 0) {
        snprintf(buf, sizeof(buf), "%s%ld", prefix, v);
        MHD_add_response_header(resp, name, buf);
    }
}

static void release_entry(void *cls)
{
    px_cache_entry_release(cls);
}

/* The body of an answer: a cache entry's payload is lent (the entry stays referenced until MHD is done
 * with it), an owned buffer moves into MHD, anything else is copied. */
static struct MHD_Response *answer_body(const uint8_t *payload, size_t len, uint8_t **owned,
                                        struct px_cache_entry *entry)
{
    struct MHD_Response *resp;

    if (payload == NULL || len == 0) {
        return MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    if (entry != NULL) {
        px_cache_entry_ref(entry);
        resp = MHD_create_response_from_buffer_with_free_callback_cls(len, (void *)payload, release_entry,
                                                                      entry);
        if (resp == NULL) {
            px_cache_entry_release(entry);
        }
        return resp;
    }
    if (owned != NULL && *owned == payload) {
        resp = MHD_create_response_from_buffer(len, (void *)payload, MHD_RESPMEM_MUST_FREE);
        if (resp != NULL) {
            *owned = NULL;
        }
        return resp;
    }
    return MHD_create_response_from_buffer(len, (void *)payload, MHD_RESPMEM_MUST_COPY);
}

/* A 200 whose ETag (or any representation, for "*") the client already holds becomes 304 (RFC 9110 §13.1.2).
 */
static bool not_modified(const struct request *r, int status, const struct co_optset *opts)
{
    if (status != MHD_HTTP_OK || (r->inm_count == 0 && !r->inm_star)) {
        return false;
    }
    const struct co_opt *etag = co_optset_find(opts, CO_OPT_ETAG, 0);
    if (etag == NULL) {
        return r->inm_star;
    }
    return gw_cache_inm_matches(r, co_opt_value(opts, etag), etag->len);
}

/* Builds the HTTP response for a CoAP answer; *status gets its HTTP status. NULL on OOM (or when the code
 * is not a response: *status is then 0). */
static struct MHD_Response *build_answer(struct request *r, uint8_t code, const struct co_optset *opts,
                                         const uint8_t *payload, size_t len, uint8_t **owned,
                                         struct px_cache_entry *entry, int *status)
{
    const struct cfg_upstream *up = &r->http->cfg->upstreams[r->route->upstream];
    struct px_coap_response in = {.code = code, .opts = opts, .payload_len = len};
    struct px_http_response out;

    *status = 0;
    r->coap_code = code;
    if (px_response_to_http(&in, r->route->prefix, (const char *const *)up->base_path, up->base_path_len,
                            NULL, &out) != PX_OK) {
        return NULL;
    }
    uint64_t now = cg_now_ms();
    if (entry != NULL && out.max_age >= 0) {
        out.max_age = (long)px_cache_entry_remaining(entry, now);
    }
    bool is_304 = not_modified(r, out.status, opts);
    if (is_304) {
        out.status = MHD_HTTP_NOT_MODIFIED;
        out.send_body = false;
    }
    /* A 304 keeps the body it replaces: libmicrohttpd never sends a 304's body but derives Content-Length
     * from it, and RFC 9110 §8.6 allows only the length the 200 would have had. */
    struct MHD_Response *resp = out.send_body || is_304
                                    ? answer_body(payload, len, owned, entry)
                                    : MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        return NULL;
    }
    gw_add_header_if(resp, MHD_HTTP_HEADER_CONTENT_TYPE, out.send_body ? out.content_type : "");
    gw_add_header_if(resp, MHD_HTTP_HEADER_ETAG, out.etag);
    gw_add_header_if(resp, MHD_HTTP_HEADER_LOCATION, out.location);
    gw_add_header_if(resp, MHD_HTTP_HEADER_ALLOW, out.allow);
    gw_add_number_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "max-age=", out.max_age);
    gw_add_number_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "", out.retry_after);
    if (entry != NULL && r->xc == XC_HIT) {
        gw_add_number_header(resp, MHD_HTTP_HEADER_AGE, "", (long)px_cache_entry_age(entry, now));
    }
    *status = out.status;
    return resp;
}

enum MHD_Result gw_reply_answer(struct request *r, uint8_t code, const struct co_optset *opts,
                                const uint8_t *payload, size_t len, uint8_t **owned,
                                struct px_cache_entry *entry)
{
    int status;
    struct MHD_Response *resp = build_answer(r, code, opts, payload, len, owned, entry, &status);
    if (resp == NULL && status == 0) {
        return gw_reply_problem(r, PX_ERR_BAD_GATEWAY,
                                "the upstream answered with a code that is not a CoAP response");
    }
    return gw_queue(r, resp, status);
}

/* ---- fresh hits: one prebuilt response per entry and second ---- */

/* A cache entry's ready-made HIT response. Its headers (Age, max-age) hold for one second of the entry's
 * age; within it every hit queues the same MHD response instead of building one. */
struct prebuilt {
    struct MHD_Response *resp;
    const struct cfg_route *route; /* Location depends on the route's prefix */
    uint32_t age, remaining;
    int status;
};

static void prebuilt_free(void *user)
{
    struct prebuilt *pb = user;
    MHD_destroy_response(pb->resp);
    free(pb);
}

enum MHD_Result gw_reply_hit(struct request *r, struct px_cache_entry *e)
{
    uint64_t now = cg_now_ms();
    uint32_t age = px_cache_entry_age(e, now);
    uint32_t remaining = px_cache_entry_remaining(e, now);
    size_t len = 0;
    const uint8_t *payload = px_cache_entry_payload(e, &len);
    bool linked;
    int status;

    struct prebuilt *pb = px_cache_entry_user_lock(e, &linked);
    if (pb == NULL || pb->route != r->route || pb->age != age || pb->remaining != remaining) {
        struct MHD_Response *resp =
            build_answer(r, px_cache_entry_code(e), px_cache_entry_opts(e), payload, len, NULL, e, &status);
        if (resp != NULL) {
            MHD_add_response_header(resp, "X-Cache", gw_xcache_name(XC_HIT));
        }
        struct prebuilt *fresh = linked && resp != NULL ? malloc(sizeof(*fresh)) : NULL;
        if (fresh == NULL) {
            px_cache_entry_user_unlock(e, pb);
            if (resp == NULL && status == 0) {
                return gw_reply_problem(r, PX_ERR_BAD_GATEWAY, "the cached answer is not a CoAP response");
            }
            r->status = status;
            r->state = REQ_ANSWERED;
            enum MHD_Result ret = resp != NULL ? MHD_queue_response(r->conn, (unsigned)status, resp) : MHD_NO;
            MHD_destroy_response(resp);
            return ret;
        }
        if (pb != NULL) {
            prebuilt_free(pb);
        }
        *fresh = (struct prebuilt){
            .resp = resp, .route = r->route, .age = age, .remaining = remaining, .status = status};
        pb = fresh;
    }
    r->coap_code = px_cache_entry_code(e);
    r->status = pb->status;
    r->state = REQ_ANSWERED;
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)pb->status, pb->resp);
    px_cache_entry_user_unlock(e, pb);
    return ret;
}

/* The answer of a request that went straight to the device (cache bypassed). */
static enum MHD_Result reply_direct(struct request *r)
{
    struct px_exchange *x = &r->x;

    if (x->status != PX_OK) {
        return gw_reply_problem(r, x->status, x->detail);
    }
    return gw_reply_answer(r, x->resp_code, &x->resp, x->resp_payload, x->resp_len, &x->resp_payload, NULL);
}

/* ---- request life cycle ---- */

static void on_exchange_done(struct px_exchange *x, void *arg)
{
    struct request *r = arg;
    (void)x;
    gw_cache_invalidate_after(r);
    r->state = REQ_DONE;
    MHD_resume_connection(r->conn);
}

void gw_forward(struct request *r, px_done_fn done)
{
    r->x.upstream = r->route->upstream;
    r->x.code = r->creq.code;
    r->x.req = &r->creq.opts;
    r->x.payload = r->creq.has_body ? r->body : NULL;
    r->x.payload_len = r->creq.has_body ? r->body_len : 0;
    r->x.done = done;
    r->x.arg = r;
    px_client_submit(r->http->client, &r->x);
}

static void refuse(struct request *r, enum px_status st, const char *detail)
{
    r->refusal = st;
    r->refusal_detail = detail;
}

const char *gw_header(struct request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

struct metrics_buf {
    char text[4096];
    size_t len;
};

static void metrics_add(struct metrics_buf *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void metrics_add(struct metrics_buf *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(m->text + m->len, sizeof(m->text) - m->len, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof(m->text) - m->len) {
        m->len += (size_t)n;
    }
}

/* One metric family without labels: HELP and TYPE once, then the sample. */
static void metric(struct metrics_buf *m, const char *name, const char *type, const char *help,
                   uint64_t value)
{
    metrics_add(m, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
                (unsigned long long)value);
}

/* Prometheus text exposition (version 0.0.4) of the gateway's counters. */
static enum MHD_Result reply_metrics(struct request *r)
{
    struct gw_http *http = r->http;
    struct metrics_buf m = {.len = 0};
    metric(&m, "coapgw_http_requests_active", "gauge", "HTTP requests in progress.",
           (uint64_t)atomic_load(&http->active));
    metrics_add(&m, "# HELP coapgw_http_responses_total HTTP responses sent, by status class.\n"
                    "# TYPE coapgw_http_responses_total counter\n");
    for (int c = 1; c <= 5; c++) {
        metrics_add(&m, "coapgw_http_responses_total{class=\"%dxx\"} %llu\n", c,
                    (unsigned long long)atomic_load(&http->answered[c]));
    }
    if (http->cache != NULL) {
        struct px_cache_stats st;
        px_cache_stats(http->cache, &st);
        metric(&m, "coapgw_cache_hits_total", "counter", "Fresh cache hits.", st.hits);
        metric(&m, "coapgw_cache_misses_total", "counter", "Lookups that found no fresh entry.", st.misses);
        metric(&m, "coapgw_cache_revalidated_total", "counter", "Stale entries refreshed by 2.03 Valid.",
               st.revalidated);
        metric(&m, "coapgw_cache_stores_total", "counter", "Responses stored.", st.stores);
        metric(&m, "coapgw_cache_evictions_total", "counter", "Entries evicted by the bounds.", st.evictions);
        metric(&m, "coapgw_cache_invalidations_total", "counter", "Entries dropped after unsafe methods.",
               st.invalidations);
        metric(&m, "coapgw_cache_entries", "gauge", "Entries stored.", st.entries);
        metric(&m, "coapgw_cache_bytes", "gauge", "Bytes accounted to stored entries.", st.bytes);
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(m.len, m.text, MHD_RESPMEM_MUST_COPY);
    if (resp != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8");
    }
    return gw_queue(r, resp, MHD_HTTP_OK);
}

/* /readyz: 200 while serving and every upstream answered its last exchange or ping; otherwise 503. The body
 * lists each upstream ("NAME up|down|unknown"). */
static enum MHD_Result reply_ready(struct request *r)
{
    static const char *const names[] = {"unknown", "up", "down"};
    const struct cfg *cfg = r->http->cfg;
    struct metrics_buf m = {.len = 0};
    bool ready = !atomic_load(&r->http->draining);

    metrics_add(&m, "%s\n", ready ? "serving" : "draining");
    for (size_t i = 0; i < cfg->upstreams_len; i++) {
        enum px_health h = px_client_upstream_health(r->http->client, i);
        ready = ready && h == PX_HEALTH_UP;
        metrics_add(&m, "%s %s\n", cfg->upstreams[i].name, names[h]);
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(m.len, m.text, MHD_RESPMEM_MUST_COPY);
    if (resp != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    }
    return gw_queue(r, resp, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE);
}

static enum MHD_Result reply_admin(struct request *r)
{
    if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
        r->route = NULL;
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (resp != NULL) {
            MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        }
        return gw_queue(r, resp, MHD_HTTP_METHOD_NOT_ALLOWED);
    }
    if (strcmp(r->path, "/metrics") == 0) {
        return reply_metrics(r);
    }
    if (strcmp(r->path, "/readyz") == 0) {
        return reply_ready(r);
    }
    return reply_text(r, MHD_HTTP_OK, "text/plain; charset=utf-8", "ok\n");
}

/* Content-Length above the limit is refused before a byte of the body is read. */
static bool declared_too_large(struct request *r)
{
    const char *cl = gw_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl == NULL) {
        return false;
    }
    char *end;
    errno = 0;
    unsigned long long n = strtoull(cl, &end, 10);
    return errno != 0 || n > r->http->cfg->limits.max_body_bytes;
}

/* First call: everything that can be decided from the request line and headers. The verdict is kept and
 * answered once the request is complete, so the connection stays usable (keep-alive); only a declared
 * oversized body is refused at once, before it is read. */
static enum MHD_Result begin(struct request *r)
{
    uint8_t code;
    bool head;

    r->state = REQ_BODY;
    if (px_route_is_admin(r->path, strlen(r->path))) {
        r->admin = true;
    } else if (atomic_load(&r->http->draining)) {
        refuse(r, PX_ERR_UNAVAILABLE, "the gateway is shutting down");
    } else if ((code = co_method_from_http(r->method, &head)) == 0) {
        refuse(r, PX_ERR_NOT_IMPLEMENTED, "this method has no CoAP equivalent");
    } else if ((r->route = px_route_match(r->http->cfg, r->path, strlen(r->path), &r->rest)) == NULL) {
        refuse(r, PX_ERR_NO_ROUTE, "no route matches this path");
    } else if ((r->route->methods & px_route_method_bit(r->method)) == 0) {
        refuse(r, PX_ERR_METHOD_NOT_ALLOWED, "the route does not allow this method");
    } else if (declared_too_large(r)) {
        return gw_reply_problem(r, PX_ERR_TOO_LARGE, "the request body is larger than limits.max_body_bytes");
    }
    return MHD_YES;
}

static void take_body(struct request *r, const char *data, size_t len)
{
    size_t limit = r->http->cfg->limits.max_body_bytes;

    if (r->admin || r->refusal != PX_OK) {
        return; /* the body is read and dropped: the answer does not depend on it */
    }
    if (r->body_too_large || r->body_len + len > limit) {
        r->body_too_large = true;
        return;
    }
    if (r->body_len + len > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : BODY_INITIAL;
        while (cap < r->body_len + len) {
            cap *= 2;
        }
        uint8_t *grown = realloc(r->body, cap);
        if (grown == NULL) {
            r->body_too_large = true;
            return;
        }
        r->body = grown;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
}

/* Last call: the body is complete; translate and hand over to the CoAP client. */
static enum MHD_Result submit(struct request *r)
{
    const char *detail = NULL;

    if (r->admin) {
        return reply_admin(r);
    }
    if (r->refusal != PX_OK) {
        return gw_reply_problem(r, r->refusal, r->refusal_detail);
    }
    if (r->body_too_large) {
        return gw_reply_problem(r, PX_ERR_TOO_LARGE, "the request body is larger than limits.max_body_bytes");
    }
    const struct cfg_upstream *up = &r->http->cfg->upstreams[r->route->upstream];
    gw_live_detect(r);
    struct px_http_request in = {
        .method = r->method,
        .rest = r->rest,
        .query = r->query,
        .content_type = gw_header(r, MHD_HTTP_HEADER_CONTENT_TYPE),
        .accept = r->live == LIVE_SSE ? NULL : gw_header(r, MHD_HTTP_HEADER_ACCEPT),
        .if_match = gw_header(r, MHD_HTTP_HEADER_IF_MATCH),
        .if_none_match = gw_header(r, MHD_HTTP_HEADER_IF_NONE_MATCH),
        .body_len = r->body_len,
    };
    enum px_status st =
        px_request_to_coap(&in, (const char *const *)up->base_path, up->base_path_len, &r->creq, &detail);
    if (st != PX_OK) {
        return gw_reply_problem(r, st, detail);
    }
    if (r->live != LIVE_NONE) {
        return gw_live_serve(r);
    }
    gw_cache_prepare(r);
    if (r->xc != XC_BYPASS) {
        return gw_cache_serve(r);
    }
    r->state = REQ_WAITING;
    /* Suspend before submitting: the worker may resume the connection before this function returns. */
    MHD_suspend_connection(r->conn);
    gw_forward(r, on_exchange_done);
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    struct request *r = *req_cls;
    (void)cls;
    (void)url;
    (void)version;

    if (r == NULL) {
        return MHD_NO;
    }
    switch (r->state) {
    case REQ_NEW:
        r->conn = conn;
        r->method = method;
        return begin(r);
    case REQ_BODY:
        if (*upload_data_size != 0) {
            take_body(r, upload_data, *upload_data_size);
            *upload_data_size = 0;
            return MHD_YES;
        }
        return submit(r);
    case REQ_DONE:
        return r->shared != NULL ? gw_cache_reply(r) : reply_direct(r);
    case REQ_LONGPOLL:
        return gw_live_longpoll(r);
    case REQ_WAITING:
    case REQ_ANSWERED:
        *upload_data_size = 0;
        return MHD_YES;
    }
    return MHD_NO;
}

/* Called by MHD with the raw request target before any unescaping: the request context is born here. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct gw_http *http = cls;
    struct request *r = malloc(sizeof(*r));
    (void)conn;

    if (r == NULL) {
        return NULL;
    }
    r->http = http;
    r->conn = conn;
    r->state = REQ_NEW;
    r->route = NULL;
    r->rest = "";
    r->method = "";
    r->body = NULL;
    r->body_len = r->body_cap = 0;
    r->body_too_large = false;
    r->admin = false;
    r->refusal = PX_OK;
    r->refusal_detail = NULL;
    r->status = 0;
    r->x.resp_payload = NULL;
    r->x.resp_code = 0;
    r->x.status = PX_OK;
    co_optset_init(&r->x.resp);
    co_optset_init(&r->creq.opts);
    r->coap_code = 0;
    r->xc = XC_BYPASS;
    r->key = NULL;
    r->key_len = r->resource_len = 0;
    r->stale = NULL;
    r->shared = NULL;
    r->no_cache = r->no_store = r->inm_star = false;
    r->inm_count = 0;
    r->live = LIVE_NONE;
    r->subscribed = false;
    r->sse_buf = NULL;
    r->sse_len = r->sse_off = 0;
    clock_gettime(CLOCK_MONOTONIC, &r->start);
    r->path = strdup(uri);
    if (r->path == NULL) {
        free(r);
        return NULL;
    }
    char *q = strchr(r->path, '?');
    r->query = NULL;
    if (q != NULL) {
        *q = '\0';
        r->query = q + 1;
    }
    atomic_fetch_add(&http->active, 1);
    return r;
}

static void log_access(const struct request *r)
{
    struct timespec now;
    char code[5] = "-";

    clock_gettime(CLOCK_MONOTONIC, &now);
    /* Hundredths of a millisecond in integers: no floating-point formatting on every request. */
    long long centi =
        ((long long)(now.tv_sec - r->start.tv_sec) * 1000000000LL + (now.tv_nsec - r->start.tv_nsec)) /
        10000LL;
    if (r->coap_code != 0) {
        co_code_format(r->coap_code, code);
    }
    const char *upstream = r->route ? r->http->cfg->upstreams[r->route->upstream].name : "-";
    cg_log_buffered(
        CG_LOG_INFO, "http",
        "event=access method=%s path=%.256s status=%d upstream=%s coap=%s cache=%s ms=%lld.%02lld", r->method,
        r->path, r->status, upstream, code, gw_xcache_name(r->xc), centi / 100, centi % 100);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct gw_http *http = cls;
    struct request *r = *req_cls;
    (void)conn;
    (void)toe;

    if (r == NULL) {
        return;
    }
    if (http->cfg->log.access_log && r->state != REQ_NEW && cg_log_enabled(CG_LOG_INFO)) {
        log_access(r);
    }
    unsigned klass = r->status >= 100 && r->status < 600 ? (unsigned)r->status / 100 : 0;
    atomic_fetch_add_explicit(&http->answered[klass], 1, memory_order_relaxed);
    gw_live_release(r);
    gw_cache_release(r);
    free(r->x.resp_payload);
    co_optset_fini(&r->x.resp);
    co_optset_fini(&r->creq.opts);
    free(r->body);
    free(r->path);
    free(r);
    *req_cls = NULL;
    atomic_fetch_sub(&http->active, 1);
}

/* ---- daemon ---- */

static int open_listener(const struct cfg_endpoint *ep, char *err, size_t err_len)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *res = NULL;
    char port[8];
    int one = 1;

    snprintf(port, sizeof(port), "%u", ep->port);
    int rc = getaddrinfo(ep->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_len, "http: cannot resolve %s: %s", ep->host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        goto out_error;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        goto out_close;
    }
    freeaddrinfo(res);
    return fd;

out_close:
    close(fd);
out_error:
    snprintf(err, err_len, "http: cannot listen on %s:%u: %s", ep->host, ep->port, strerror(errno));
    freeaddrinfo(res);
    return -1;
}

static unsigned pool_size(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1) {
        return 1;
    }
    return cpus > 16 ? 16 : (unsigned)cpus;
}

struct gw_http *gw_http_start(const struct cfg *cfg, struct px_client *client, struct px_cache *cache,
                              char *err, size_t err_len)
{
    struct gw_http *http = calloc(1, sizeof(*http));
    if (http == NULL) {
        snprintf(err, err_len, "http: out of memory");
        return NULL;
    }
    http->cfg = cfg;
    http->client = client;
    http->cache = cache;
    if (cache != NULL) {
        px_cache_set_user_free(cache, prebuilt_free);
    }
    http->observe =
        px_observe_create(client, cfg->limits.max_subscribers_per_resource, cfg->limits.max_subscribers);
    if (http->observe == NULL) {
        snprintf(err, err_len, "http: cannot start the observation registry");
        free(http);
        return NULL;
    }
    http->listen_fd = open_listener(&cfg->listen, err, err_len);
    if (http->listen_fd < 0) {
        px_observe_destroy(http->observe);
        free(http);
        return NULL;
    }
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    http->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, http, MHD_OPTION_EXTERNAL_LOGGER, gw_mhdlog, NULL, /* first */
        MHD_OPTION_LISTEN_SOCKET, http->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, pool_size(), MHD_OPTION_CONNECTION_LIMIT, cfg->limits.max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, cfg->limits.connection_timeout_s, MHD_OPTION_URI_LOG_CALLBACK, on_uri,
        http, MHD_OPTION_NOTIFY_COMPLETED, on_completed, http, MHD_OPTION_END);
    if (http->daemon == NULL) {
        snprintf(err, err_len, "http: cannot start the HTTP server on %s:%u", cfg->listen.host,
                 cfg->listen.port);
        close(http->listen_fd);
        px_observe_destroy(http->observe);
        free(http);
        return NULL;
    }
    return http;
}

void gw_http_quiesce(struct gw_http *http)
{
    atomic_store(&http->draining, true);
    int fd = MHD_quiesce_daemon(http->daemon);
    if (fd >= 0) {
        close(fd);
        http->listen_fd = -1;
    }
    px_observe_close_all(http->observe); /* live streams end now; they would never become idle */
}

bool gw_http_wait_idle(struct gw_http *http, unsigned timeout_ms)
{
    struct timespec tick = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};

    for (unsigned waited = 0; atomic_load(&http->active) > 0; waited += 10) {
        if (waited >= timeout_ms) {
            return false;
        }
        nanosleep(&tick, NULL);
    }
    return true;
}

void gw_http_stop(struct gw_http *http)
{
    if (http == NULL) {
        return;
    }
    MHD_stop_daemon(http->daemon); /* also closes the listening socket unless quiesced */
    px_observe_destroy(http->observe);
    free(http);
}
