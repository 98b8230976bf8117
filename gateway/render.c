/* gateway/render: a pipeline answer as a libmicrohttpd response, every one with the request's X-Request-Id.
 * Fresh cache hits reuse the headers mapped once per entry and second of age, so a hit costs a lookup,
 * copying a few headers and a queue. Never blocks. */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/http_priv.h"
#include "gateway/metrics.h"

#define PROBLEM_MAX 1024
#define REQUEST_ID_HEADER "X-Request-Id"

enum MHD_Result gw_queue(struct request *r, struct MHD_Response *resp, int status)
{
    if (resp == NULL) {
        return MHD_NO;
    }
    if (px_forward_draining(r->gen->fwd)) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    }
    if (r->request_id[0] != '\0') {
        MHD_add_response_header(resp, REQUEST_ID_HEADER, r->request_id);
    }
    if (strcmp(r->method, MHD_HTTP_METHOD_HEAD) == 0 && r->bytes > 0) {
        r->bytes = 0; /* MHD sends no body to HEAD */
    }
    r->status = status;
    r->state = GW_ANSWERED;
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void add_header_if(struct MHD_Response *resp, const char *name, const char *value)
{
    if (value[0] != '\0') {
        MHD_add_response_header(resp, name, value);
    }
}

/* Adds "name: <prefix><v>" when v >= 0. */
static void add_number_header(struct MHD_Response *resp, const char *name, const char *prefix, long v)
{
    char buf[48];
    if (v >= 0) {
        snprintf(buf, sizeof(buf), "%s%ld", prefix, v);
        MHD_add_response_header(resp, name, buf);
    }
}

static void add_xcache(struct MHD_Response *resp, const struct px_answer *a)
{
    const char *name = px_xcache_name(a->xcache);
    if (name != NULL) {
        MHD_add_response_header(resp, "X-Cache", name);
    }
}

/* Joins the strings with ", " into buf (cut at a whole element when it does not fit). */
static void join_list(const struct cfg_strings *list, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < list->len; i++) {
        int n = snprintf(buf + used, len - used, "%s%s", used > 0 ? ", " : "", list->v[i]);
        if (n < 0 || (size_t)n >= len - used) {
            buf[used] = '\0';
            return;
        }
        used += (size_t)n;
    }
}

/* CORS on every answer of a route that has it: the answer depends on Origin (Vary), and an allowed origin
 * may read it, with the headers a script needs beyond the CORS-safelisted ones. */
static void add_cors(struct MHD_Response *resp, const struct px_answer *a)
{
    if (a->cors == NULL) {
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Origin");
    if (a->cors_origin == NULL) {
        return;
    }
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", a->cors_origin);
    if (a->kind != PX_ANSWER_PREFLIGHT) {
        MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                                "ETag, Location, Retry-After, X-Cache, X-Request-Id");
    }
}

static struct MHD_Response *problem_response(struct request *r, const struct px_answer *a)
{
    char body[PROBLEM_MAX];
    size_t len = px_problem_json(body, sizeof(body), a->problem, a->detail);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_COPY);

    r->bytes = (long long)len;
    if (resp == NULL) {
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/problem+json");
    add_header_if(resp, MHD_HTTP_HEADER_ALLOW, a->allow);
    add_header_if(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, a->challenge);
    add_number_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "", a->retry_after);
    if (a->close) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    }
    return resp;
}

static void release_entry(void *cls)
{
    px_cache_entry_release(cls);
}

/* The body: a cache entry's payload is lent (the entry reference moves to MHD, released when it is done
 * with the buffer), an owned buffer moves into MHD, anything else is copied. */
static struct MHD_Response *body_response(struct px_answer *a)
{
    struct MHD_Response *resp;

    if (a->body == NULL || a->body_len == 0) {
        return MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    if (a->entry != NULL) {
        resp = MHD_create_response_from_buffer_with_free_callback_cls(a->body_len, (void *)a->body,
                                                                      release_entry, a->entry);
        if (resp != NULL) {
            a->entry = NULL;
        }
        return resp;
    }
    if (a->owned != NULL && a->owned == a->body) {
        resp = MHD_create_response_from_buffer(a->body_len, a->owned, MHD_RESPMEM_MUST_FREE);
        if (resp != NULL) {
            a->owned = NULL;
        }
        return resp;
    }
    return MHD_create_response_from_buffer(a->body_len, (void *)a->body, MHD_RESPMEM_MUST_COPY);
}

/* A mapped device answer. A 304 keeps the body it replaces: libmicrohttpd 0.9.75 never sends a 304's body
 * but derives Content-Length from it, and RFC 9110 §8.6 allows only the length the 200 would have had. */
static struct MHD_Response *coap_response(struct request *r, struct px_answer *a)
{
    const struct px_http_response *h = &a->http;

    r->bytes = h->send_body ? (long long)a->body_len : 0;
    struct MHD_Response *resp = h->send_body || a->status == MHD_HTTP_NOT_MODIFIED
                                    ? body_response(a)
                                    : MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        return NULL;
    }
    add_header_if(resp, MHD_HTTP_HEADER_CONTENT_TYPE, h->send_body ? h->content_type : "");
    add_header_if(resp, MHD_HTTP_HEADER_ETAG, h->etag);
    add_header_if(resp, MHD_HTTP_HEADER_LOCATION, h->location);
    add_header_if(resp, MHD_HTTP_HEADER_ALLOW, h->allow);
    add_number_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "max-age=", h->max_age);
    add_number_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "", h->retry_after);
    add_number_header(resp, MHD_HTTP_HEADER_AGE, "", a->age);
    if (a->no_store) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    }
    if (a->vary_accept) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, MHD_HTTP_HEADER_ACCEPT);
    }
    return resp;
}

static struct MHD_Response *empty_response(const struct px_answer *a)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (resp != NULL && a->no_store) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    }
    return resp;
}

/* A preflight's answer (Fetch standard §4.8): the route's methods and the configured request headers. */
static struct MHD_Response *preflight_response(const struct px_answer *a)
{
    char headers[1024];
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);

    if (resp == NULL) {
        return NULL;
    }
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", a->allow);
    join_list(&a->cors->allow_headers, headers, sizeof(headers));
    add_header_if(resp, "Access-Control-Allow-Headers", headers);
    add_number_header(resp, "Access-Control-Max-Age", "", (long)a->cors->max_age_s);
    return resp;
}

static struct MHD_Response *stream_response(struct request *r, const struct px_answer *a)
{
    struct MHD_Response *resp = gw_sse_response(r);
    if (resp == NULL) {
        return NULL;
    }
    gw_metrics_sse(1); /* on_completed counts it out */
    r->sse_counted = true;
    r->bytes = -1; /* written by the content reader, as notifications come */
    if (a->no_store) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    }
    return resp;
}

static struct MHD_Response *build(struct request *r, struct px_answer *a)
{
    r->bytes = 0;
    switch (a->kind) {
    case PX_ANSWER_PROBLEM:
        return problem_response(r, a);
    case PX_ANSWER_COAP:
        return px_answer_map(a) ? coap_response(r, a) : problem_response(r, a);
    case PX_ANSWER_EMPTY:
        return empty_response(a);
    case PX_ANSWER_STREAM:
        return stream_response(r, a);
    case PX_ANSWER_PREFLIGHT:
        return preflight_response(a);
    }
    return NULL;
}

/* ---- fresh hits: headers mapped once per entry and second ---- */

/* A cache entry's ready-made HIT response, a template that is never queued itself: each hit gets a response
 * of its own (its X-Request-Id is its own) with the template's headers copied, and the entry's payload
 * lent, not copied. The headers (Age, max-age) hold for one second of the entry's age. */
struct prebuilt {
    struct MHD_Response *resp;
    const struct cfg_route *route; /* Location depends on the route's prefix */
    uint64_t gen; /* route's generation: a kept cache outlives it, and a later route may reuse its address */
    long age;
    uint32_t remaining;
    int status;
    long long bytes; /* body bytes: 0 when the answer has none (a 2.05 mapped to 204, say) */
};

void gw_prebuilt_free(void *user)
{
    struct prebuilt *pb = user;
    MHD_destroy_response(pb->resp);
    free(pb);
}

static bool prebuilt_matches(const struct prebuilt *pb, const struct px_answer *a, uint64_t gen)
{
    return pb != NULL && pb->route == a->route && pb->gen == gen && pb->age == a->age &&
           pb->remaining == a->remaining;
}

static enum MHD_Result copy_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    MHD_add_response_header(cls, key, value);
    return MHD_YES;
}

/* This hit's own response from the template: the entry's payload, lent with a reference of its own. */
static struct MHD_Response *hit_response(const struct prebuilt *pb, struct px_cache_entry *e)
{
    struct MHD_Response *resp;
    size_t len = 0;
    const uint8_t *payload = px_cache_entry_payload(e, &len);

    if (pb->bytes > 0 && len > 0) {
        px_cache_entry_ref(e);
        resp = MHD_create_response_from_buffer_with_free_callback_cls(len, (void *)payload, release_entry, e);
        if (resp == NULL) {
            px_cache_entry_release(e);
        }
    } else {
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    if (resp != NULL) {
        MHD_get_response_headers(pb->resp, copy_header, resp);
    }
    return resp;
}

/* Maps the hit and keeps the result as the entry's template (the old one freed). NULL when the entry is
 * no longer cached (nothing to keep it in) or memory runs out: *resp is then the answer itself. */
static struct prebuilt *prebuild(struct request *r, struct px_answer *a, struct prebuilt *old, bool linked,
                                 struct MHD_Response **resp)
{
    struct px_cache_entry *e = a->entry;

    /* The body is lent by the entry, referenced for the response's life by release_entry. */
    px_cache_entry_ref(e);
    *resp = build(r, a);
    if (*resp != NULL) {
        add_xcache(*resp, a);
        add_cors(*resp, a); /* Vary: Origin only: a prebuilt hit never carries an allowed origin */
    }
    if (a->entry == e) {
        px_cache_entry_release(e); /* not taken by the response */
    }
    a->entry = e;
    struct prebuilt *fresh = linked && *resp != NULL ? malloc(sizeof(*fresh)) : NULL;
    if (fresh == NULL) {
        return NULL;
    }
    if (old != NULL) {
        gw_prebuilt_free(old);
    }
    *fresh = (struct prebuilt){.resp = *resp,
                               .route = a->route,
                               .gen = r->gen->id,
                               .age = a->age,
                               .remaining = a->remaining,
                               .status = a->status,
                               .bytes = r->bytes};
    *resp = NULL;
    return fresh;
}

static enum MHD_Result render_hit(struct request *r, struct px_answer *a)
{
    struct px_cache_entry *e = a->entry;
    struct MHD_Response *resp = NULL;
    bool linked;

    struct prebuilt *pb = px_cache_entry_user_lock(e, &linked);
    if (!prebuilt_matches(pb, a, r->gen->id)) {
        struct prebuilt *fresh = prebuild(r, a, pb, linked, &resp);
        if (fresh == NULL) {
            px_cache_entry_user_unlock(e, pb);
            return gw_queue(r, resp, a->status);
        }
        pb = fresh;
    }
    resp = hit_response(pb, e);
    r->bytes = pb->bytes;
    int status = pb->status;
    px_cache_entry_user_unlock(e, pb);
    return gw_queue(r, resp, status);
}

enum MHD_Result gw_render_refusal(struct request *r, enum px_status st, const char *detail,
                                  const char *accept_encoding)
{
    struct px_answer a = {.kind = PX_ANSWER_PROBLEM,
                          .status = px_status_http(st),
                          .xcache = PX_XC_NONE,
                          .close = true,
                          .retry_after = -1,
                          .problem = st,
                          .detail = detail};
    struct MHD_Response *resp = problem_response(r, &a);

    if (resp != NULL && accept_encoding != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_ENCODING, accept_encoding);
    }
    return gw_queue(r, resp, a.status);
}

enum MHD_Result gw_render(struct request *r, struct px_answer *a)
{
    enum MHD_Result ret;

    if (a->prebuildable && a->entry != NULL) {
        ret = render_hit(r, a);
    } else {
        struct MHD_Response *resp = build(r, a);
        if (resp != NULL) {
            add_xcache(resp, a);
            add_cors(resp, a);
        }
        ret = gw_queue(r, resp, a->status);
    }
    px_answer_release(a);
    return ret;
}
