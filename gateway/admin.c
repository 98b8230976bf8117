/* gateway/admin: the gateway's own endpoints. /healthz (alive), /readyz (serving; only "required" upstreams
 * count), /metrics (Prometheus text). Never routed, never sent to a device. */
#include <coap3/coap.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/metrics.h"
#include "gateway/http_priv.h"
#include "gateway/metrics.h"

struct text {
    char buf[4096];
    size_t len;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, sizeof(t->buf) - t->len, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof(t->buf) - t->len) {
        t->len += (size_t)n;
    }
}

static enum MHD_Result reply_text(struct request *r, int status, const char *content_type,
                                  const struct text *t)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(t->len, (void *)t->buf, MHD_RESPMEM_MUST_COPY);
    r->bytes = (long long)t->len;
    if (resp != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    }
    return gw_queue(r, resp, status);
}

/* One metric family without labels: HELP and TYPE once, then the sample. */
static void metric(struct cg_buf *b, const char *name, const char *type, const char *help, uint64_t value)
{
    cg_prom_head(b, name, type, help);
    cg_prom_printf(b, "%s %llu\n", name, (unsigned long long)value);
}

static void cache_metrics(struct cg_buf *b, struct px_cache *cache)
{
    struct px_cache_stats st;
    px_cache_stats(cache, &st);
    metric(b, "coapgw_cache_hits_total", "counter", "Fresh cache hits.", st.hits);
    metric(b, "coapgw_cache_misses_total", "counter", "Lookups that found no fresh entry.", st.misses);
    metric(b, "coapgw_cache_revalidated_total", "counter", "Stale entries refreshed by 2.03 Valid.",
           st.revalidated);
    metric(b, "coapgw_cache_stores_total", "counter", "Responses stored.", st.stores);
    metric(b, "coapgw_cache_evictions_total", "counter", "Entries evicted by the bounds.", st.evictions);
    metric(b, "coapgw_cache_invalidations_total", "counter", "Entries dropped after unsafe methods.",
           st.invalidations);
    metric(b, "coapgw_cache_entries", "gauge", "Entries stored.", st.entries);
    metric(b, "coapgw_cache_bytes", "gauge", "Bytes accounted to stored entries.", st.bytes);
}

/* The per-upstream families, each with one sample per configured upstream. */
enum up_field {
    UP_UP,
    UP_INFLIGHT,
    UP_QUEUED,
    UP_OBSERVATIONS,
    UP_EXCHANGES,
    UP_TIMEOUTS,
    UP_RETRANS,
    UP_NACKS
};

static const struct {
    const char *name, *type, *help;
} up_families[] = {
    [UP_UP] = {"coapgw_upstream_up", "gauge",
               "1 when the upstream answered its last exchange or ping, else 0."},
    [UP_INFLIGHT] = {"coapgw_upstream_inflight", "gauge", "CoAP exchanges on the wire."},
    [UP_QUEUED] = {"coapgw_upstream_queue_depth", "gauge", "CoAP exchanges waiting beyond max_inflight."},
    [UP_OBSERVATIONS] = {"coapgw_upstream_observations", "gauge",
                         "CoAP observations registered or registering."},
    [UP_EXCHANGES] = {"coapgw_upstream_exchanges_total", "counter", "CoAP exchanges completed, any outcome."},
    [UP_TIMEOUTS] = {"coapgw_upstream_timeouts_total", "counter",
                     "CoAP exchanges that ended past timeout_ms."},
    [UP_RETRANS] = {"coapgw_upstream_retransmissions_total", "counter", "CoAP CON retransmissions sent."},
    [UP_NACKS] = {"coapgw_upstream_nacks_total", "counter",
                  "Failed CoAP exchanges: RST, ICMP, retries exhausted, "
                  "DTLS."},
};

static uint64_t up_value(const struct px_upstream_stats *st, enum up_field f)
{
    switch (f) {
    case UP_UP:
        return st->health == PX_HEALTH_UP;
    case UP_INFLIGHT:
        return st->inflight;
    case UP_QUEUED:
        return st->queued;
    case UP_OBSERVATIONS:
        return st->observations;
    case UP_EXCHANGES:
        return st->exchanges;
    case UP_TIMEOUTS:
        return st->timeouts;
    case UP_RETRANS:
        return st->retransmissions;
    case UP_NACKS:
        return st->nacks;
    }
    return 0;
}

static void upstream_metrics(struct cg_buf *b, const struct gw_gen *gen)
{
    const struct cfg *cfg = gen->cfg;
    size_t n = cfg->upstreams_len;
    struct px_upstream_stats *st = n > 0 ? calloc(n, sizeof(*st)) : NULL;

    if (st == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        px_client_upstream_stats(gen->client, i, &st[i]);
    }
    for (size_t f = 0; f < sizeof(up_families) / sizeof(up_families[0]); f++) {
        cg_prom_head(b, up_families[f].name, up_families[f].type, up_families[f].help);
        for (size_t i = 0; i < n; i++) {
            char name[512];
            cg_prom_escape(name, sizeof(name), cfg->upstreams[i].name, strlen(cfg->upstreams[i].name));
            cg_prom_printf(b, "%s{upstream=\"%s\"} %llu\n", up_families[f].name, name,
                           (unsigned long long)up_value(&st[i], (enum up_field)f));
        }
    }
    free(st);
}

static void build_info(struct cg_buf *b)
{
    char coap[64], mhd[64];
    const char *cv = coap_package_version(), *mv = MHD_get_version();

    if (strncmp(cv, "libcoap ", 8) == 0) {
        cv += 8; /* "libcoap 4.3.1" */
    }
    cg_prom_escape(coap, sizeof(coap), cv, strlen(cv));
    cg_prom_escape(mhd, sizeof(mhd), mv, strlen(mv));
    cg_prom_head(b, "coapgw_build_info", "gauge", "Always 1: the versions of coapgw and its libraries.");
    cg_prom_printf(b, "coapgw_build_info{version=\"%s\",libcoap=\"%s\",libmicrohttpd=\"%s\"} 1\n",
                   COAPGW_VERSION, coap, mhd);
}

/* Prometheus text exposition (version 0.0.4) of the gateway's counters. */
static enum MHD_Result reply_metrics(struct request *r)
{
    struct gw_http *http = r->http;
    struct cg_buf b = CG_BUF_INIT;

    build_info(&b);
    metric(&b, "coapgw_http_requests_active", "gauge", "HTTP requests in progress.",
           (uint64_t)atomic_load(&http->active));
    cg_prom_head(&b, "coapgw_http_responses_total", "counter",
                 "HTTP responses sent (admin endpoints apart), by status class.");
    for (int c = 1; c <= 5; c++) {
        cg_prom_printf(&b, "coapgw_http_responses_total{class=\"%dxx\"} %llu\n", c,
                       (unsigned long long)atomic_load(&http->answered[c]));
    }
    gw_metrics_write(&b);
    upstream_metrics(&b, r->gen);
    if (r->gen->cache != NULL) {
        cache_metrics(&b, r->gen->cache);
    }
    metric(&b, "coapgw_log_lines_dropped_total", "counter",
           "Log lines dropped because stderr or stdout was not read fast enough or failed.",
           cg_log_dropped());
    size_t len;
    uint8_t *body = cg_buf_take(&b, &len);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    r->bytes = (long long)len;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    return gw_queue(r, resp, MHD_HTTP_OK);
}

/* /readyz: 200 while serving, 503 while draining, whatever the devices do, unless an upstream marked
 * "required" is down: then 503 and the body says which and why. The body lists every upstream, one a line:
 * "NAME up|down|unknown[ required][: why]". */
static enum MHD_Result reply_ready(struct request *r)
{
    static const char *const names[] = {"unknown", "up", "down"};
    const struct cfg *cfg = r->gen->cfg;
    struct text t = {.len = 0};
    bool draining = px_forward_draining(r->gen->fwd);
    size_t blocking = 0;

    for (size_t i = 0; i < cfg->upstreams_len; i++) {
        blocking +=
            cfg->upstreams[i].required && px_client_upstream_health(r->gen->client, i) == PX_HEALTH_DOWN;
    }
    text_add(&t, "%s\n",
             draining       ? "draining"
             : blocking > 0 ? "not ready: a required upstream is down"
                            : "serving");
    for (size_t i = 0; i < cfg->upstreams_len; i++) {
        char why[240];
        enum px_health h = px_client_upstream_state(r->gen->client, i, why, sizeof(why));
        text_add(&t, "%s %s%s%s%s\n", cfg->upstreams[i].name, names[h],
                 cfg->upstreams[i].required ? " required" : "", why[0] != '\0' ? ": " : "", why);
    }
    bool ready = !draining && blocking == 0;
    return reply_text(r, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", &t);
}

static enum MHD_Result reply_health(struct request *r)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(3, (void *)"ok\n", MHD_RESPMEM_PERSISTENT);
    r->bytes = 3;
    if (resp != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    }
    return gw_queue(r, resp, MHD_HTTP_OK);
}

static enum MHD_Result reply_not_allowed(struct request *r)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (resp != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    }
    return gw_queue(r, resp, MHD_HTTP_METHOD_NOT_ALLOWED);
}

static const char *conn_header(void *ctx, const char *name)
{
    return MHD_lookup_connection_value(ctx, MHD_HEADER_KIND, name);
}

/* admin.auth guards /metrics (what it tells is an inventory of the deployment); the probes stay open.
 * MHD_YES/MHD_NO when refused (answered), -1 when the request may go on. */
static int refuse_metrics(struct request *r)
{
    struct px_headers h = {.authorization = conn_header(r->conn, MHD_HTTP_HEADER_AUTHORIZATION),
                           .get = conn_header,
                           .get_ctx = r->conn};
    struct px_answer a = {.kind = PX_ANSWER_PROBLEM, .xcache = PX_XC_NONE, .retry_after = -1, .age = -1};
    enum px_auth_result result = px_forward_admin_auth(r->gen->fwd, &h, a.challenge, sizeof(a.challenge));

    if (result == PX_AUTH_OK) {
        return -1;
    }
    a.problem = result == PX_AUTH_MISSING ? PX_ERR_UNAUTHORIZED : PX_ERR_FORBIDDEN;
    a.status = px_status_http(a.problem);
    a.detail = result == PX_AUTH_MISSING ? "/metrics needs the admin credentials"
                                         : "the credentials are not valid for /metrics";
    return gw_render(r, &a);
}

enum MHD_Result gw_admin_reply(struct request *r)
{
    int refused;

    if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
        return reply_not_allowed(r);
    }
    switch (r->admin) {
    case CFG_ADMIN_METRICS:
        if ((refused = refuse_metrics(r)) >= 0) {
            return (enum MHD_Result)refused;
        }
        return reply_metrics(r);
    case CFG_ADMIN_READYZ:
        return reply_ready(r);
    case CFG_ADMIN_HEALTHZ:
    case CFG_ADMIN_NONE:
        break;
    }
    return reply_health(r);
}
