/* gateway/http_priv: what the files of the libmicrohttpd adapter share. http.c owns the callbacks and the
 * request's life; render.c turns pipeline answers into MHD responses; admin.c answers the admin endpoints;
 * sse.c frames live streams. Calls go http.c → admin.c → render.c → sse.c, never back. Every function here
 * runs on an MHD thread. vet.c (request checks MHD does not make) is called by http.c and calls render.c. */
#ifndef GW_HTTP_PRIV_H
#define GW_HTTP_PRIV_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/cfg.h"
#include "gateway/access.h"
#include "gateway/deadline.h"
#include "gateway/gen.h"
#include "proxy/cache.h"
#include "proxy/client.h"
#include "proxy/forward.h"

struct gw_http {
    /* The configuration generations (gen.h): each request reads the one it started on, r->gen, never the
     * current one, so a reload never changes a request in flight. */
    struct gw_gens *gens;
    struct MHD_Daemon *daemon;
    /* Copies of generation 1's certificate and key, which the daemon was given and which outlive it. */
    char *tls_cert, *tls_key;
    size_t tls_key_len;
    struct gw_dl *dl; /* header and body deadlines (deadline.c) */
    int listen_fd;
    atomic_int active;                /* requests between URI callback and completion */
    atomic_uint_fast64_t answered[6]; /* requests answered, by status class (index 1..5; 0: no response) */
};

enum gw_state { GW_NEW, GW_BODY, GW_WAITING, GW_ANSWERED };

/* The list fields the pipeline reads (Accept, If-Match, If-None-Match, Cache-Control, Pragma). */
#define GW_LIST_FIELDS 5

/* One HTTP request: the adapter's own state; the proxy's lives in px. */
struct request {
    struct gw_http *http;
    struct gw_gen *gen; /* held from on_uri to on_completed: cfg, client, cache, fwd of this request */
    struct MHD_Connection *conn;
    enum gw_state state;
    char *path;        /* raw path (percent-encoded), NUL-terminated at '?' */
    const char *query; /* raw query after '?', or NULL */
    const char *method;
    /* The raw target in MHD's read buffer, for vet.c: its address and its length up to the first NUL. */
    uintptr_t target_at;
    size_t target_len;
    bool line_bad; /* whitespace or a control byte in the target, or a method that is not a token */
    enum cfg_admin admin;
    struct px_headers headers;
    char *joined[GW_LIST_FIELDS]; /* list fields sent on several lines, joined (read_headers) */
    /* vet.c: this thread's requests in their header section. */
    struct request *parse_prev, *parse_next;
    bool parse_tracked;
    struct gw_dl_conn *dl; /* the connection's deadline, NULL when it is not tracked */
    struct px_req *px;     /* NULL for admin requests */
    uint64_t start_us;
    int status;      /* HTTP status sent, for the access log */
    long long bytes; /* body bytes of the answer (0 for HEAD and 304), -1 for a stream: the access log */
    char request_id[GW_REQUEST_ID_MAX + 1]; /* X-Request-Id, the client's or ours; "" before the first call */
    /* A live stream being written (sse.c). sse_counted: counted in coapgw_sse_subscribers (render.c). */
    bool sse_counted;
    bool sse_end_seen; /* the end of the observation was read (an end notification) */
    char *sse_buf;
    size_t sse_len, sse_off;
    uint64_t last_write_ms;
};

/* vet.c: the RFC 9112/9110 checks MHD 0.9.75 does not make (framing, Host, target, content coding). */
/* False when target (raw, NUL-terminated) holds whitespace or a control byte. */
bool gw_target_clean(const char *target);
/* Vets the request line and header section (first call; version as MHD passes it). PX_OK, or the refusal
 * with a static *detail. */
enum px_status gw_vet(struct request *r, const char *version, const char **detail);
/* Answers a refusal once, as problem+json, and closes the connection. */
enum MHD_Result gw_refuse(struct request *r, enum px_status st, const char *detail);
/* Requests whose header section MHD is reading on this thread: from on_uri (track) to the first call or
 * the end (untrack; idempotent). */
void gw_vet_track(struct request *r);
void gw_vet_untrack(struct request *r);
/* The logger's hook: MHD is about to queue its own error page (status) on a connection of this thread. */
void gw_vet_mhd_refusal(unsigned mhd_status);

/* render.c */
/* Queues resp with status (adds Connection: close while draining) and destroys our reference. */
enum MHD_Result gw_queue(struct request *r, struct MHD_Response *resp, int status);
/* Renders and queues a pipeline answer, then releases it. */
enum MHD_Result gw_render(struct request *r, struct px_answer *a);
/* Refuses a request before the pipeline sees it: problem+json, Connection: close, and Accept-Encoding when
 * not NULL (a 415 for a content coding, RFC 9110 §15.5.16). */
enum MHD_Result gw_render_refusal(struct request *r, enum px_status st, const char *detail,
                                  const char *accept_encoding);
/* Frees a prebuilt hit response (the cache's user-slot destructor). Any thread. */
void gw_prebuilt_free(void *user);

/* admin.c: /healthz, /readyz, /metrics. */
enum MHD_Result gw_admin_reply(struct request *r);

/* sse.c: the response of a live stream (text/event-stream), reading notifications from r->px. */
struct MHD_Response *gw_sse_response(struct request *r);

#endif
