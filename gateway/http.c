/* gateway/http: the libmicrohttpd adapter. It reads the request (target, headers, body), hands it to the
 * pipeline (proxy/forward) with suspend/resume callbacks, and renders what comes back. Nothing here blocks,
 * and nothing here runs on a CoAP worker except resume_conn. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "gateway/access.h"
#include "gateway/http_priv.h"
#include "gateway/metrics.h"
#include "gateway/mhdlog.h"

/* ---- the pipeline's callbacks ---- */

/* The pipeline's conn is the request. A request parked on the observation registry (a long-poll, a stream
 * waiting for its registration or its next notification) parks through the watchdog, which watches its
 * socket (libmicrohttpd 0.9.75 does not watch a suspended connection's, see deadline.c); an exchange wait is
 * a plain suspend, bounded by timeout_ms. Every resume goes through the watchdog, which drops the resume of
 * a connection it already resumed because its client was gone. */
static void mhd_suspend(void *conn)
{
    MHD_suspend_connection(conn);
}

static void mhd_resume(void *conn)
{
    MHD_resume_connection(conn);
}

/* The request's own MHD thread, inside a handler. */
static void suspend_conn(void *ctx)
{
    struct request *r = ctx;
    MHD_suspend_connection(r->conn);
}

/* The request's own MHD thread, inside a handler or content reader (the registry's lock held). */
static void park_conn(void *ctx)
{
    struct request *r = ctx;
    gw_dl_park(r->http->dl, r->dl, r->conn);
}

/* Any thread: a CoAP worker, the observation registry, or a follower's leader. r lives until its
 * on_completed, which cannot come before this resume (the pipeline frees no waiting request). */
static void resume_conn(void *ctx)
{
    struct request *r = ctx;
    gw_dl_resume(r->http->dl, r->dl, r->conn);
}

/* ---- request life cycle ---- */

static const char *header(const struct request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

/* The list fields, in the order of r->joined. */
static const char *const list_fields[GW_LIST_FIELDS] = {
    MHD_HTTP_HEADER_ACCEPT,        MHD_HTTP_HEADER_IF_MATCH, MHD_HTTP_HEADER_IF_NONE_MATCH,
    MHD_HTTP_HEADER_CACHE_CONTROL, MHD_HTTP_HEADER_PRAGMA,
};

struct lists {
    struct request *r;
    const char *value[GW_LIST_FIELDS]; /* MHD's value, or r->joined[i] */
    bool oom;
};

/* "a" + ", " + "b", replacing the previous join. */
static bool join(struct lists *l, size_t i, const char *more)
{
    size_t a = strlen(l->value[i]), b = strlen(more);
    char *j = malloc(a + 2 + b + 1);

    if (j == NULL) {
        return false;
    }
    memcpy(j, l->value[i], a);
    memcpy(j + a, ", ", 2);
    memcpy(j + a + 2, more, b + 1);
    free(l->r->joined[i]);
    l->r->joined[i] = j;
    l->value[i] = j;
    return true;
}

/* RFC 9110 §5.3: a list field sent on several lines is one list, the lines joined with ", " in order. MHD
 * 0.9.75's MHD_lookup_connection_value returns only the first line (a no-store on the second line of
 * Cache-Control would be lost), so every line is collected here. Empty lines add nothing (§5.6.1). */
static enum MHD_Result collect_list(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct lists *l = cls;
    (void)kind;

    for (size_t i = 0; i < GW_LIST_FIELDS; i++) {
        if (strcasecmp(key, list_fields[i]) != 0) {
            continue;
        }
        if (l->value[i] == NULL || l->value[i][0] == '\0') {
            l->value[i] = value;
        } else if (value[0] != '\0' && !join(l, i, value)) {
            l->oom = true;
            return MHD_NO;
        }
        break;
    }
    return MHD_YES;
}

/* False when out of memory (a list cut short could drop a no-store: the request is not served). */
/* Any field by name, for the pipeline (an API key's configurable header). */
static const char *header_by_name(void *ctx, const char *name)
{
    return header(ctx, name);
}

static bool read_headers(struct request *r)
{
    struct lists l = {.r = r};

    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_list, &l);
    r->headers = (struct px_headers){
        .content_type = header(r, MHD_HTTP_HEADER_CONTENT_TYPE),
        .content_length = header(r, MHD_HTTP_HEADER_CONTENT_LENGTH),
        .accept = l.value[0],
        .if_match = l.value[1],
        .if_none_match = l.value[2],
        .cache_control = l.value[3],
        .pragma = l.value[4],
        .origin = header(r, MHD_HTTP_HEADER_ORIGIN),
        .access_control_method = header(r, "Access-Control-Request-Method"),
        .authorization = header(r, MHD_HTTP_HEADER_AUTHORIZATION),
        .get = header_by_name,
        .get_ctx = r,
    };
    return !l.oom;
}

/* First call: admin paths are ours; everything else goes to the pipeline, which vets it from the request
 * line and headers. Its verdict is answered once the request is complete, so the connection stays usable
 * (keep-alive); only a declared oversized body is refused at once, before it is read. */
/* limits.max_uri_bytes and max_header_bytes, from what MHD read (it has the whole header section now). */
static enum px_status check_sizes(const struct request *r, const char **detail)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);

    if (r->target_len > r->gen->cfg->limits.max_uri_bytes) {
        *detail = "the request target is longer than limits.max_uri_bytes";
        return PX_ERR_URI_TOO_LONG;
    }
    if (ci != NULL && ci->header_size > r->gen->cfg->limits.max_header_bytes) {
        *detail = "the request header section is larger than limits.max_header_bytes";
        return PX_ERR_HEADERS_TOO_LARGE;
    }
    return PX_OK;
}

static const struct sockaddr *client_address(const struct request *r)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    return ci != NULL ? ci->client_addr : NULL;
}

struct request_id_fields {
    const char *value;
    unsigned count;
};

static enum MHD_Result find_request_id(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct request_id_fields *f = cls;
    (void)kind;

    if (strcasecmp(key, "X-Request-Id") == 0) {
        f->value = value;
        f->count++;
    }
    return MHD_YES;
}

/* X-Request-Id: one field of 1..128 printable ASCII characters is the client's id and is kept; anything
 * else (absent, empty, too long, a space or a control byte, several fields) gets a new random id. Set
 * before anything can answer, so every answer carries it (render.c) and the access line names it. */
static void take_request_id(struct request *r)
{
    struct request_id_fields f = {.value = NULL, .count = 0};

    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, find_request_id, &f);
    if (f.count == 1 && gw_request_id_valid(f.value, strlen(f.value))) {
        memcpy(r->request_id, f.value, strlen(f.value) + 1);
    } else {
        gw_request_id_new(r->request_id);
    }
}

static enum MHD_Result begin(struct request *r, const char *version)
{
    struct px_front front = {.suspend = suspend_conn,
                             .resume = resume_conn,
                             .park = park_conn,
                             .conn = r,
                             .remote = client_address(r)};
    struct px_answer a;
    const char *detail;

    take_request_id(r);
    gw_vet_untrack(r);
    enum px_status st = gw_vet(r, version, &detail);
    if (st == PX_OK) {
        st = check_sizes(r, &detail);
    }
    if (st != PX_OK) {
        return gw_refuse(r, st, detail);
    }
    r->state = GW_BODY;
    r->admin = cfg_admin_path(r->path, strlen(r->path));
    if (r->admin != CFG_ADMIN_NONE) {
        return MHD_YES;
    }
    if ((r->px = px_req_new(r->gen->fwd, &front)) == NULL) {
        return MHD_NO;
    }
    if (!read_headers(r)) {
        return MHD_NO;
    }
    if (px_req_begin(r->px, r->method, r->path, r->query, &r->headers) == PX_BEGIN_ANSWER_NOW) {
        px_req_run(r->px, &a);
        return gw_render(r, &a);
    }
    return MHD_YES;
}

/* Last call: the body is complete. */
static enum MHD_Result run(struct request *r)
{
    struct px_answer a;

    if (r->admin != CFG_ADMIN_NONE) {
        return gw_admin_reply(r);
    }
    if (px_req_run(r->px, &a) == PX_STEP_WAIT) {
        r->state = GW_WAITING;
        return MHD_YES;
    }
    return gw_render(r, &a);
}

/* Resumed: the pipeline has the answer (or, for a long-poll woken early, parks again). Resumed by the
 * watchdog because the client of the parked request is gone: the request leaves the registry (its slot is
 * free now) and MHD closes the connection (on_completed frees the request). */
static enum MHD_Result resumed(struct request *r)
{
    struct px_answer a;

    if (gw_dl_gone(r->http->dl, r->dl)) {
        px_req_cancel(r->px);
        return MHD_NO;
    }
    if (px_req_resume(r->px, &a) == PX_STEP_WAIT) {
        return MHD_YES;
    }
    return gw_render(r, &a);
}

/* A connection opened beyond limits.max_connections (deadline.c counts them): its request gets 503 at once
 * and the connection closes, rather than the client waiting in the listen backlog (see start_daemon). */
static enum MHD_Result refuse_over_limit(struct request *r)
{
    struct px_answer a = {.kind = PX_ANSWER_PROBLEM,
                          .status = px_status_http(PX_ERR_UNAVAILABLE),
                          .xcache = PX_XC_NONE,
                          .close = true,
                          .retry_after = 1,
                          .problem = PX_ERR_UNAVAILABLE,
                          .detail = "the gateway has reached limits.max_connections"};

    gw_vet_untrack(r);
    CG_LOG(CG_LOG_DEBUG, "http", "event=connection_limit max_connections=%u",
           r->gen->cfg->limits.max_connections);
    return gw_render(r, &a);
}

/* First call: the header section is complete, the body's deadline starts. False from gw_dl_enter: the
 * watchdog ended the connection at that very moment. */
static enum MHD_Result headers_done(struct request *r, const char *version)
{
    if (!gw_dl_enter(r->http->dl, r->dl, GW_DL_BODY)) {
        return MHD_NO;
    }
    enum MHD_Result ret = gw_dl_refused(r->http->dl, r->dl) ? refuse_over_limit(r) : begin(r, version);
    if (r->state != GW_BODY) {
        gw_dl_enter(r->http->dl, r->dl, GW_DL_NONE); /* answered at once */
    }
    return ret;
}

/* A chunk of the body. Past limits.body_timeout_s the connection is ended here (a 408 written on the
 * socket, see deadline.c): MHD 0.9.75 would refuse a queued response while the body is being read. The
 * chunk is taken, and MHD then reads the end of the shut-down socket and closes the connection. */
static enum MHD_Result body_chunk(struct request *r, const char *data, size_t *size)
{
    if (gw_dl_check(r->http->dl, r->dl) && r->px != NULL) {
        px_req_body(r->px, data, *size);
    }
    *size = 0;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    struct request *r = *req_cls;
    (void)cls;
    (void)url;

    if (r == NULL) {
        return MHD_NO;
    }
    switch (r->state) {
    case GW_NEW:
        r->conn = conn;
        r->method = method;
        return headers_done(r, version);
    case GW_BODY:
        if (*upload_data_size != 0) {
            return body_chunk(r, upload_data, upload_data_size);
        }
        if (!gw_dl_enter(r->http->dl, r->dl, GW_DL_NONE)) {
            return MHD_NO; /* the body ended as the watchdog answered 408 */
        }
        return run(r);
    case GW_WAITING:
        return resumed(r);
    case GW_ANSWERED:
        *upload_data_size = 0;
        return MHD_YES;
    }
    return MHD_NO;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* RFC 9112 §3.2.2: an absolute-form target ("http://host:port/path?query", what a client configured with
 * the gateway as its proxy sends) names the resource by its path; the authority is the gateway's. Returns
 * where the path starts in target ("" when it has none: then the path is "/"), or target itself. */
static const char *origin_part(const char *target)
{
    size_t skip = 0;

    if (strncasecmp(target, "http://", 7) == 0) {
        skip = 7;
    } else if (strncasecmp(target, "https://", 8) == 0) {
        skip = 8;
    } else {
        return target;
    }
    return target + skip + strcspn(target + skip, "/?");
}

/* The connection's deadline, from MHD's socket context (set by on_connection). */
static struct gw_dl_conn *conn_deadline(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

/* Called by MHD with the raw request target before any unescaping: the request context is born here, and
 * keeps the raw path and query (percent-decoding is done once, per segment, by the pipeline, so %2F stays
 * inside one Uri-Path option as RFC 7252 §6.4 requires). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct gw_http *http = cls;
    struct request *r = uri != NULL ? calloc(1, sizeof(*r)) : NULL; /* MHD 0.9.75: never NULL here */

    if (r == NULL) {
        return NULL;
    }
    r->http = http;
    r->conn = conn;
    r->dl = conn_deadline(conn);
    gw_dl_request_line(http->dl, r->dl);
    r->state = GW_NEW;
    r->method = "";
    r->start_us = now_us();
    r->target_at = (uintptr_t)uri;
    r->target_len = strlen(uri);
    r->line_bad = !gw_target_clean(uri);
    const char *origin = origin_part(uri);
    if (asprintf(&r->path, "%s%s", origin[0] == '/' ? "" : "/", origin) < 0) {
        free(r);
        return NULL;
    }
    char *q = strchr(r->path, '?');
    if (q != NULL) {
        *q = '\0';
        r->query = q + 1;
        /* Right after this callback MHD 0.9.75 stores each query item as a record in the connection's pool;
         * thousands of items overflow it, and MHD then queues its 431 but overwrites its own state and never
         * sends it (the request hangs, until connection_timeout_s). Nothing reads MHD's copy of the query
         * (the raw one is ours now), so MHD is left an empty one. uri is MHD's writable read buffer. */
        ((char *)(uintptr_t)uri)[strchr(uri, '?') - uri + 1] = '\0';
    }
    r->gen = gw_gens_acquire(http->gens); /* the configuration this request lives by, to its end */
    gw_vet_track(r);
    atomic_fetch_add(&http->active, 1);
    return r;
}

/* The client's address without its port, for the JSON access line. */
static const char *remote_text(const struct request *r, char *buf, size_t cap)
{
    const struct sockaddr *sa = client_address(r);

    if (sa == NULL ||
        getnameinfo(sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
                    buf, (socklen_t)cap, NULL, 0, NI_NUMERICHOST) != 0) {
        return NULL;
    }
    return buf;
}

/* /healthz and /readyz are probed every few seconds: their lines are debug, every other one info. */
static void log_access(const struct request *r, const struct px_req_info *info, uint64_t us)
{
    enum cg_log_level level =
        r->admin == CFG_ADMIN_HEALTHZ || r->admin == CFG_ADMIN_READYZ ? CG_LOG_DEBUG : CG_LOG_INFO;
    char remote[64], ts[CG_LOG_TS_LEN], line[8192];

    if (!cg_log_enabled(level)) {
        return;
    }
    /* The method is unknown ("-") when MHD refused the header section before the access handler ran. */
    const char *xc = px_xcache_name(info->xcache);
    struct gw_access a = {
        .request_id = r->request_id[0] != '\0' ? r->request_id : NULL,
        .method = r->method[0] != '\0' ? r->method : NULL,
        .path = r->path,
        .query = r->query,
        .status = r->status,
        .upstream = info->upstream,
        .coap_code = info->coap_code,
        .cache = xc,
        .bytes = r->bytes,
        .duration_us = us,
    };
    if (cg_log_format() == CG_LOG_JSON) {
        a.remote = remote_text(r, remote, sizeof(remote));
        cg_log_timestamp(ts);
        cg_log_stdout(line, gw_access_json(line, sizeof(line), ts, &a));
        return;
    }
    gw_access_text(line, 2048, &a);
    cg_log_buffered(level, "http", "%s", line);
}

/* Admin requests are counted apart: a probe's 503 is no request the gateway failed. */
static void count_request(struct gw_http *http, const struct request *r, const struct px_req_info *info,
                          uint64_t us)
{
    if (r->admin != CFG_ADMIN_NONE) {
        gw_metrics_admin(r->admin, r->status);
        return;
    }
    unsigned klass = r->status >= 100 && r->status < 600 ? (unsigned)r->status / 100 : 0;
    atomic_fetch_add_explicit(&http->answered[klass], 1, memory_order_relaxed);
    gw_metrics_request(info->route, r->method, r->status, us);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct gw_http *http = cls;
    struct request *r = *req_cls;
    (void)toe;

    /* A keep-alive connection's next header section is due within header_timeout_s of this one's end. */
    gw_dl_enter(http->dl, conn_deadline(conn), GW_DL_HEADER);
    if (r == NULL) {
        return;
    }
    if (r->status == 0) {
        r->status = gw_dl_status(http->dl, r->dl);
    }
    struct px_req_info info = {.route = NULL, .upstream = NULL, .coap_code = 0, .xcache = PX_XC_NONE};
    if (r->px != NULL) {
        px_req_info(r->px, &info);
    }
    uint64_t us = now_us() - r->start_us;
    if (r->gen->cfg->log.access_log && r->state != GW_NEW) {
        log_access(r, &info, us);
    }
    count_request(http, r, &info, us);
    if (r->sse_counted) {
        gw_metrics_sse(-1);
    }
    gw_vet_untrack(r);
    px_req_free(r->px);
    for (size_t i = 0; i < GW_LIST_FIELDS; i++) {
        free(r->joined[i]);
    }
    free(r->sse_buf);
    free(r->path);
    gw_gen_release(r->gen); /* after px_req_free: the pipeline and the cache were the generation's */
    free(r);
    *req_cls = NULL;
    atomic_fetch_sub(&http->active, 1);
}

/* MHD_OPTION_NOTIFY_CONNECTION: every connection is tracked for its deadlines from its first moment. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct gw_http *http = cls;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = ci != NULL ? gw_dl_open(http->dl, ci->connect_fd, conn) : NULL;
        if (*socket_context == NULL) {
            CG_LOG(CG_LOG_WARN, "http", "event=deadline_untracked reason=\"out of memory\"");
        }
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        gw_dl_close(http->dl, *socket_context);
        *socket_context = NULL;
    }
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

/* MHD's connection limit above limits.max_connections: MHD 0.9.75 stops polling the listening socket of a
 * thread at its share of the limit (new clients then hang in the backlog), so it is given room for the
 * connections deadline.c marks refused, which are answered 503 and closed at once. */
static unsigned mhd_connection_limit(unsigned max_connections)
{
    unsigned headroom = max_connections / 8;

    headroom = headroom < 64 ? 64 : headroom > 1024 ? 1024 : headroom;
    return max_connections + headroom;
}

/* The libmicrohttpd daemon on http->listen_fd, with the limits of the configuration. */
static struct MHD_Daemon *start_daemon(struct gw_http *http, const struct cfg *cfg)
{
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    bool tls = http->tls_cert != NULL;
    if (tls) {
        flags |= MHD_USE_TLS; /* libmicrohttpd's GnuTLS support */
    }
    /* Room for a header section of max_header_bytes (gen.c has the formula and its reasons). */
    size_t pool = gw_gen_pool_bytes(cfg);
    struct MHD_OptionItem no_options[] = {{MHD_OPTION_END, 0, NULL}};
    struct MHD_OptionItem tls_options[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, http->tls_cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, http->tls_key},
        {MHD_OPTION_END, 0, NULL},
    };
    return MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, http, MHD_OPTION_EXTERNAL_LOGGER, gw_mhdlog, NULL, /* first */
        MHD_OPTION_LISTEN_SOCKET, http->listen_fd, MHD_OPTION_THREAD_POOL_SIZE, pool_size(),
        MHD_OPTION_CONNECTION_LIMIT, mhd_connection_limit(cfg->limits.max_connections),
        MHD_OPTION_CONNECTION_TIMEOUT, cfg->limits.connection_timeout_s, MHD_OPTION_URI_LOG_CALLBACK, on_uri,
        http, MHD_OPTION_NOTIFY_COMPLETED, on_completed, http, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        http,
        /* Not strict: at 1, MHD 0.9.75 closes on a space in the target without any answer and refuses a
         * missing Host with its own HTML page (see vet.c); at -1 ("permissive") it is the one level that
         * refuses whitespace before a colon. gateway/vet.c makes all three checks, with problem+json. */
        MHD_OPTION_STRICT_FOR_CLIENT, (int)0, MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->limits.max_connections_per_ip,
        /* The HTTPS options only with MHD_USE_TLS: otherwise MHD 0.9.75 logs that they are misplaced. */
        MHD_OPTION_ARRAY, tls ? tls_options : no_options, MHD_OPTION_END);
}

/* Descriptors beyond the connections: the listening socket, MHD's epoll and wake-up fds per thread, the
 * CoAP workers' sockets, the log. */
#define FD_RESERVE 64

/* limits.max_connections needs as many descriptors, and MHD's headroom above it: raise the soft RLIMIT_NOFILE
 * up to the hard one when it is lower, and say so when even that is not enough (MHD would then fail accept(2)
 * with EMFILE). */
static void check_fd_limit(unsigned max_connections)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)mhd_connection_limit(max_connections) + FD_RESERVE;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need) {
        return;
    }
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        rl.rlim_cur = was;
    }
    if (rl.rlim_cur < need) {
        CG_LOG(CG_LOG_WARN, "http", "event=fd_limit max_connections=%u needed=%llu nofile=%llu",
               max_connections, (unsigned long long)need, (unsigned long long)rl.rlim_cur);
    }
}

/* The certificate and key the daemon is given: its own copies, since generation 1's snapshot goes at the
 * first reload while the daemon runs on. */
static bool copy_tls(struct gw_http *http, const struct cfg *cfg)
{
    if (cfg->tls.cert_pem == NULL) {
        return true;
    }
    http->tls_cert = strdup((const char *)cfg->tls.cert_pem);
    http->tls_key = strdup((const char *)cfg->tls.key_pem);
    http->tls_key_len = cfg->tls.key_len;
    return http->tls_cert != NULL && http->tls_key != NULL;
}

static void free_tls(struct gw_http *http)
{
    free(http->tls_cert);
    if (http->tls_key != NULL) {
        explicit_bzero(http->tls_key, http->tls_key_len);
    }
    free(http->tls_key);
}

/* Undoes gw_http_start up to the daemon. */
static void *start_failed(struct gw_http *http)
{
    if (http->listen_fd >= 0) {
        close(http->listen_fd);
    }
    gw_dl_stop(http->dl);
    free_tls(http);
    free(http);
    return NULL;
}

struct gw_http *gw_http_start(struct gw_gens *gens, char *err, size_t err_len)
{
    const struct cfg *cfg = gw_gens_current(gens)->cfg;
    struct gw_http *http = calloc(1, sizeof(*http));
    if (http == NULL) {
        snprintf(err, err_len, "http: out of memory");
        return NULL;
    }
    http->gens = gens;
    http->listen_fd = -1;
    if (!copy_tls(http, cfg)) {
        snprintf(err, err_len, "http: out of memory");
        return start_failed(http);
    }
    http->listen_fd = open_listener(&cfg->listen, err, err_len);
    if (http->listen_fd < 0) {
        return start_failed(http);
    }
    http->dl = gw_dl_start(cfg->limits.header_timeout_s, cfg->limits.body_timeout_s,
                           cfg->tls.cert_pem != NULL, cfg->limits.max_connections,
                           (struct gw_dl_ops){.suspend = mhd_suspend, .resume = mhd_resume});
    if (http->dl == NULL) {
        snprintf(err, err_len, "http: cannot start the deadline watchdog");
        return start_failed(http);
    }
    check_fd_limit(cfg->limits.max_connections);
    gw_mhdlog_set_refusal_hook(gw_vet_mhd_refusal);
    http->daemon = start_daemon(http, cfg);
    if (http->daemon == NULL) {
        snprintf(err, err_len, "http: cannot start the HTTP server on %s:%u", cfg->listen.host,
                 cfg->listen.port);
        return start_failed(http);
    }
    return http;
}

void gw_http_reloaded(struct gw_http *http)
{
    const struct cfg *cfg = gw_gens_current(http->gens)->cfg;
    gw_dl_set_timeouts(http->dl, cfg->limits.header_timeout_s, cfg->limits.body_timeout_s);
}

void gw_http_quiesce(struct gw_http *http)
{
    gw_gens_quiesce(http->gens); /* new requests get 503, live streams end now, on every generation */
    int fd = MHD_quiesce_daemon(http->daemon);
    if (fd >= 0) {
        close(fd);
        http->listen_fd = -1;
    }
}

bool gw_http_wait_idle(struct gw_http *http, unsigned timeout_ms)
{
    struct timespec tick = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
    uint64_t until = cg_now_ms() + timeout_ms;

    while (atomic_load(&http->active) > 0) {
        if (cg_now_ms() >= until) {
            return false;
        }
        nanosleep(&tick, NULL);
    }
    return true;
}

int gw_http_active(struct gw_http *http)
{
    return atomic_load(&http->active);
}

void gw_http_stop(struct gw_http *http)
{
    if (http == NULL) {
        return;
    }
    MHD_stop_daemon(http->daemon); /* also closes the listening socket unless quiesced */
    gw_dl_stop(http->dl);          /* after the daemon: no notification can come any more */
    free_tls(http);
    free(http);
}
