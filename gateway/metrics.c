/* gateway/metrics: requests by route, method and status class, their durations, admin requests and SSE
 * streams. Process-wide counters (like the log's dropped lines): they outlive any one configuration. */
#include "gateway/metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "base/metrics.h"
#include "proxy/forward.h"

/* The methods a label may name; anything else is "other", so a client cannot make series. */
static const char *const method_names[] = {"GET",   "HEAD",  "POST",   "PUT",     "DELETE",
                                           "FETCH", "PATCH", "iPATCH", "OPTIONS", "other"};
#define METHODS (sizeof(method_names) / sizeof(method_names[0]))
#define CLASSES 6 /* 1xx..5xx, and 0: no answer was sent */

static const char *const class_names[CLASSES] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};

struct route_series {
    atomic_uint_fast64_t requests[METHODS][CLASSES];
    struct cg_hist duration;
};

static struct cg_keyed routes = CG_KEYED_INIT(sizeof(struct route_series));

static const char *const admin_names[CFG_ADMIN_COUNT] = {[CFG_ADMIN_NONE] = NULL,
                                                         [CFG_ADMIN_HEALTHZ] = "healthz",
                                                         [CFG_ADMIN_READYZ] = "readyz",
                                                         [CFG_ADMIN_METRICS] = "metrics"};
static atomic_uint_fast64_t admin_requests[CFG_ADMIN_COUNT][CLASSES];

static atomic_int_fast64_t sse_streams;

static size_t method_index(const char *method)
{
    for (size_t i = 0; i + 1 < METHODS; i++) {
        if (strcmp(method, method_names[i]) == 0) {
            return i;
        }
    }
    return METHODS - 1;
}

static size_t class_index(int status)
{
    return status >= 100 && status < 600 ? (size_t)status / 100 : 0;
}

void gw_metrics_request(const char *route, const char *method, int status, uint64_t us)
{
    const char *key = route != NULL ? route : GW_METRICS_NO_ROUTE;
    struct route_series *s = cg_keyed_get(&routes, key, strlen(key));

    if (s == NULL) {
        return;
    }
    atomic_fetch_add_explicit(&s->requests[method_index(method)][class_index(status)], 1,
                              memory_order_relaxed);
    cg_hist_observe(&s->duration, us);
}

void gw_metrics_admin(enum cfg_admin which, int status)
{
    if (which > CFG_ADMIN_NONE && which < CFG_ADMIN_COUNT) {
        atomic_fetch_add_explicit(&admin_requests[which][class_index(status)], 1, memory_order_relaxed);
    }
}

void gw_metrics_sse(int delta)
{
    atomic_fetch_add_explicit(&sse_streams, delta, memory_order_relaxed);
}

/* ---- the text ---- */

/* label="escaped value" into buf. */
static const char *label(char *buf, size_t cap, const char *name, const char *value)
{
    char esc[512];
    cg_prom_escape(esc, sizeof(esc), value, strlen(value));
    snprintf(buf, cap, "%s=\"%s\"", name, esc);
    return buf;
}

/* Only the series that have counted something: a label set appears with its first request. */
static void write_requests(struct cg_buf *b)
{
    char route[600];

    cg_prom_head(b, "coapgw_http_requests_total", "counter",
                 "HTTP requests answered (admin endpoints apart), by route prefix, method and status class.");
    for (size_t i = 0, n = cg_keyed_count(&routes); i < n; i++) {
        const char *key;
        struct route_series *s = cg_keyed_at(&routes, i, &key);
        label(route, sizeof(route), "route", key);
        for (size_t m = 0; m < METHODS; m++) {
            for (size_t c = 0; c < CLASSES; c++) {
                uint64_t v = atomic_load_explicit(&s->requests[m][c], memory_order_relaxed);
                if (v != 0) {
                    cg_prom_printf(b, "coapgw_http_requests_total{%s,method=\"%s\",class=\"%s\"} %llu\n",
                                   route, method_names[m], class_names[c], (unsigned long long)v);
                }
            }
        }
    }
    cg_prom_head(
        b, "coapgw_http_request_duration_seconds", "histogram",
        "HTTP requests (admin endpoints apart) from the request line to the end of the answer, by route "
        "prefix; a live stream counts its whole life.");
    for (size_t i = 0, n = cg_keyed_count(&routes); i < n; i++) {
        const char *key;
        struct route_series *s = cg_keyed_at(&routes, i, &key);
        cg_prom_hist(b, "coapgw_http_request_duration_seconds", label(route, sizeof(route), "route", key),
                     &s->duration);
    }
}

static void write_exchanges(struct cg_buf *b)
{
    char up[600];

    cg_prom_head(b, "coapgw_coap_exchange_duration_seconds", "histogram",
                 "Upstream CoAP exchanges from submission (queueing included) to completion, by upstream.");
    for (size_t i = 0, n = cg_keyed_count(&px_exchange_durations); i < n; i++) {
        const char *key;
        struct cg_hist *h = cg_keyed_at(&px_exchange_durations, i, &key);
        cg_prom_hist(b, "coapgw_coap_exchange_duration_seconds", label(up, sizeof(up), "upstream", key), h);
    }
}

static void write_admin(struct cg_buf *b)
{
    cg_prom_head(
        b, "coapgw_admin_requests_total", "counter",
        "Requests to the admin endpoints (/healthz, /readyz, /metrics), by endpoint and status class.");
    for (int a = CFG_ADMIN_HEALTHZ; a < CFG_ADMIN_COUNT; a++) {
        for (size_t c = 0; c < CLASSES; c++) {
            uint64_t v = atomic_load_explicit(&admin_requests[a][c], memory_order_relaxed);
            if (v != 0) {
                cg_prom_printf(b, "coapgw_admin_requests_total{endpoint=\"%s\",class=\"%s\"} %llu\n",
                               admin_names[a], class_names[c], (unsigned long long)v);
            }
        }
    }
}

void gw_metrics_write(struct cg_buf *b)
{
    write_requests(b);
    write_exchanges(b);
    write_admin(b);
    cg_prom_head(b, "coapgw_sse_subscribers", "gauge", "Server-Sent Events streams open.");
    cg_prom_printf(b, "coapgw_sse_subscribers %lld\n",
                   (long long)atomic_load_explicit(&sse_streams, memory_order_relaxed));
}
