/* gateway/vet: the request checks RFC 9112 and RFC 9110 ask of a server that libmicrohttpd 0.9.75 does not
 * make, or makes and answers with a page of its own (HTML without Content-Type). They run in the access
 * handler's first call, on the request line and the header fields MHD parsed, before MHD reads a byte of the
 * body; a refusal is one problem+json answer and the connection closes (RFC 9112 §6.3: once the framing is
 * in doubt, nothing after it on the connection can be trusted). */
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "base/log.h"
#include "gateway/http_priv.h"

/* ---- the request target ---- */

bool gw_target_clean(const char *target)
{
    for (const unsigned char *p = (const unsigned char *)target; *p != '\0'; p++) {
        if (*p <= ' ' || *p == 0x7f) {
            return false;
        }
    }
    return true;
}

/* MHD 0.9.75 hands the target to on_uri as a C string, so a NUL inside it silently cuts the path short. The
 * request line stays where MHD read it, and the target ends at the NUL MHD wrote over the space before the
 * version ("HTTP/1.1", always 8 bytes, or MHD refuses the line): the version string starts one byte after
 * the target's real end. Only the addresses are compared; nothing is read. */
static bool target_has_nul(const struct request *r, const char *version)
{
    return (uintptr_t)version != r->target_at + r->target_len + 1;
}

/* ---- header fields ---- */

/* What one pass over the header fields found. */
struct scan {
    unsigned host_n;
    const char *host;
    unsigned cl_n;
    const char *cl;
    bool cl_differ;
    unsigned te_n;       /* transfer codings, over every Transfer-Encoding line */
    const char *te_last; /* the last one (not NUL-terminated) */
    size_t te_last_len;
    bool coded;    /* a Content-Encoding other than identity */
    bool bad_name; /* a field name that is not a token */
    bool bad_value;
};

/* RFC 9110 §5.6.2 tchar. */
static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool is_token(const char *s)
{
    if (*s == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (!is_tchar((unsigned char)*s)) {
            return false;
        }
    }
    return true;
}

/* RFC 9110 §5.5: no CR, LF or NUL, and no other control byte than HTAB. MHD 0.9.75 ends a line only at LF,
 * so a bare CR stays inside a value. */
static bool value_clean(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
        if ((*p < ' ' && *p != '\t') || *p == 0x7f) {
            return false;
        }
    }
    return true;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Counts the codings of one Transfer-Encoding line ("gzip, chunked") and keeps the last one; empty list
 * elements do not count (RFC 9110 §5.6.1), parameters are not part of the name. */
static void scan_codings(struct scan *s, const char *v)
{
    while (*v != '\0') {
        while (is_ows(*v) || *v == ',') {
            v++;
        }
        const char *start = v;
        while (*v != '\0' && *v != ',' && *v != ';' && !is_ows(*v)) {
            v++;
        }
        if (v > start) {
            s->te_n++;
            s->te_last = start;
            s->te_last_len = (size_t)(v - start);
        }
        while (*v != '\0' && *v != ',') {
            v++;
        }
    }
}

static enum MHD_Result scan_field(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct scan *s = cls;
    (void)kind;

    s->bad_name = s->bad_name || !is_token(key);
    s->bad_value = s->bad_value || !value_clean(value);
    if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
        s->host = s->host_n++ == 0 ? value : s->host;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        s->cl_differ = s->cl_differ || (s->cl_n > 0 && strcmp(s->cl, value) != 0);
        s->cl = s->cl_n++ == 0 ? value : s->cl;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        scan_codings(s, value);
    } else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_ENCODING) == 0) {
        s->coded = s->coded || (value[0] != '\0' && strcasecmp(value, "identity") != 0);
    }
    return MHD_YES;
}

/* A reg-name byte: unreserved, pct-encoded, sub-delims. */
static bool host_char(unsigned char c)
{
    static const char reg[] = "-._~!$&'()*+,;=%";
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr(reg, c) != NULL);
}

/* RFC 9112 §3.2 / RFC 3986 §3.2.2: uri-host [":" port], uri-host an IP-literal in brackets or a reg-name /
 * IPv4address (unreserved, pct-encoded, sub-delims). Empty is allowed (a target without authority). An
 * IP-literal holds hex digits, ':' and '.', or for IPvFuture and zone ids (RFC 6874) unreserved, sub-delims
 * and '%': the reg-name bytes and ':' (a tchar such as '#' or '|' is none of them). */
static bool host_valid(const char *h)
{
    const char *p = h;

    if (*p == '[') {
        for (p++; *p != ']'; p++) {
            if (*p == '\0' || !(host_char((unsigned char)*p) || *p == ':')) {
                return false;
            }
        }
        p++;
    } else {
        while (*p != '\0' && *p != ':') {
            if (!host_char((unsigned char)*p++)) {
                return false;
            }
        }
    }
    if (*p == ':') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
        }
    }
    return *p == '\0';
}

/* 1*DIGIT; *too_big when it does not fit 64 bits. */
static bool length_valid(const char *v, bool *too_big)
{
    unsigned long long n = 0;

    *too_big = false;
    if (*v == '\0') {
        return false;
    }
    for (; *v >= '0' && *v <= '9'; v++) {
        unsigned d = (unsigned)(*v - '0');
        *too_big = *too_big || n > (~0ULL - d) / 10;
        n = n * 10 + d;
    }
    return *v == '\0';
}

/* ---- the verdict ---- */

static enum px_status framing(const struct scan *s, bool http11, const char **detail)
{
    bool too_big;

    if (s->te_n > 0 && s->cl_n > 0) {
        *detail = "Content-Length together with Transfer-Encoding (RFC 9112 §6.1)";
        return PX_ERR_BAD_REQUEST;
    }
    if (s->te_n > 0 && !http11) {
        *detail = "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)";
        return PX_ERR_BAD_REQUEST;
    }
    if (s->te_n > 0 && (s->te_last_len != 7 || strncasecmp(s->te_last, "chunked", 7) != 0)) {
        *detail = "the last transfer coding is not chunked: the body has no length (RFC 9112 §6.3)";
        return PX_ERR_BAD_REQUEST;
    }
    if (s->te_n > 1) {
        *detail = "only the chunked transfer coding is implemented";
        return PX_ERR_NOT_IMPLEMENTED;
    }
    if (s->cl_differ) {
        *detail = "two different Content-Length values (RFC 9112 §6.3)";
        return PX_ERR_BAD_REQUEST;
    }
    if (s->cl_n > 0 && !length_valid(s->cl, &too_big)) {
        *detail = "Content-Length is not a number (RFC 9110 §8.6)";
        return PX_ERR_BAD_REQUEST;
    }
    if (s->cl_n > 0 && too_big) {
        *detail = "the request body is larger than limits.max_body_bytes";
        return PX_ERR_TOO_LARGE;
    }
    return PX_OK;
}

/* The header section (both paths: gw_vet and MHD's own refusals). */
static enum px_status vet_fields(const struct request *r, bool http11, const char **detail)
{
    struct scan s = {.host_n = 0};

    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, scan_field, &s);
    /* MHD 0.9.75 keeps "Transfer-Encoding : chunked" as a field named "Transfer-Encoding " and reads the body
     * by Content-Length, while a proxy in front may read it chunked; it refuses whitespace before the colon
     * only at MHD_OPTION_STRICT_FOR_CLIENT -1 (its check is inverted), and then with its HTML page. */
    if (s.bad_name) {
        *detail = "a field name that is not a token, e.g. whitespace before the colon (RFC 9112 §5.1)";
        return PX_ERR_BAD_REQUEST;
    }
    if (s.bad_value) {
        *detail = "a control byte in a field value (RFC 9110 §5.5)";
        return PX_ERR_BAD_REQUEST;
    }
    /* MHD 0.9.75 reads a body by Transfer-Encoding whenever there is one (Content-Length ignored, a second
     * value too) and, when it is not exactly "chunked", until the client closes: the connection hung until
     * the idle timeout. It uses the first of several Content-Length fields. */
    enum px_status st = framing(&s, http11, detail);
    if (st != PX_OK) {
        return st;
    }
    /* MHD 0.9.75 checks Host only in strict mode (and then answers with its HTML page, sent twice, see
     * below); it never counts Host fields or looks at the value. */
    if ((http11 && s.host_n == 0) || s.host_n > 1 || (s.host_n == 1 && !host_valid(s.host))) {
        *detail = "an HTTP/1.1 request needs exactly one valid Host (RFC 9112 §3.2)";
        return PX_ERR_BAD_REQUEST;
    }
    /* The gateway does not decode content codings (RFC 9110 §8.4): forwarding the bytes under the
     * Content-Format they claim would hand the device gzip as JSON. */
    if (s.coded && (s.te_n > 0 || (s.cl_n > 0 && strcmp(s.cl, "0") != 0))) {
        *detail = "the request body has a Content-Encoding; the gateway forwards identity bodies only";
        return PX_ERR_UNSUPPORTED_MEDIA;
    }
    return PX_OK;
}

enum px_status gw_vet(struct request *r, const char *version, const char **detail)
{
    /* MHD 0.9.75 takes any byte but SP in the method and any byte but LF in the target (a bare CR, ESC, or
     * a SP when a version follows it). */
    r->line_bad = r->line_bad || !is_token(r->method);
    if (r->line_bad || target_has_nul(r, version)) {
        *detail = "the method or the request target contains a control byte or whitespace (RFC 9112 §3)";
        return PX_ERR_BAD_REQUEST;
    }
    /* MHD refuses every version but "HTTP/1.d" before any callback. */
    return vet_fields(r, version[7] != '0', detail);
}

enum MHD_Result gw_refuse(struct request *r, enum px_status st, const char *detail)
{
    return gw_render_refusal(r, st, detail, st == PX_ERR_UNSUPPORTED_MEDIA ? "identity" : NULL);
}

/* ---- MHD's own refusals ---- */

/* When parse_connection_headers finds an error (a malformed Content-Length, one beyond 64 bits, a missing
 * Host in strict mode), MHD 0.9.75 queues its own HTML page without Content-Type and builds its header block,
 * then overwrites its state and goes on as if the request were fine; the access handler is never called
 * (a response is queued), and once the request is "complete" MHD builds the header block a second time:
 * the client gets two. The page cannot be replaced through the API. The one code of ours that runs in
 * between is the error logger, on the connection's own thread, just before MHD queues the page: there the
 * gateway writes its own answer on the socket and shuts its sending side, so MHD's page fails to go out
 * (EPIPE) and MHD closes the connection.
 *
 * To find the connection from the logger, each pool thread keeps the requests whose header section MHD is
 * reading (on_uri to the first call of the access handler). A connection is served by one pool thread, so
 * the list needs no lock. The one being refused is the one whose header section is complete (MHD's state
 * is past HEADERS_RECEIVED) with nothing queued yet: any other with a complete header section would already
 * have reached the access handler, in the same pass. */
static _Thread_local struct request *parsing;

void gw_vet_track(struct request *r)
{
    r->parse_prev = NULL;
    r->parse_next = parsing;
    if (parsing != NULL) {
        parsing->parse_prev = r;
    }
    parsing = r;
    r->parse_tracked = true;
}

void gw_vet_untrack(struct request *r)
{
    if (!r->parse_tracked) {
        return;
    }
    if (r->parse_prev != NULL) {
        r->parse_prev->parse_next = r->parse_next;
    } else {
        parsing = r->parse_next;
    }
    if (r->parse_next != NULL) {
        r->parse_next->parse_prev = r->parse_prev;
    }
    r->parse_tracked = false;
}

static struct request *being_refused(void)
{
    for (struct request *r = parsing; r != NULL; r = r->parse_next) {
        if (MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE) != NULL &&
            MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_HTTP_STATUS) == NULL) {
            return r;
        }
    }
    return NULL;
}

/* The whole answer, as MHD would frame it: status line, Date, Connection: close, problem+json. */
static int problem_message(char *msg, size_t cap, enum px_status st, const char *detail)
{
    char body[1024], date[64];
    size_t body_len = px_problem_json(body, sizeof(body), st, detail);
    int status = px_status_http(st);
    time_t now = time(NULL);
    struct tm tm;

    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));
    return snprintf(
        msg, cap,
        "HTTP/1.1 %d %s\r\nDate: %s\r\nConnection: close\r\nContent-Type: application/problem+json"
        "\r\nContent-Length: %zu\r\n\r\n%.*s",
        status, px_http_reason(status), date, body_len, (int)body_len, body);
}

void gw_vet_mhd_refusal(unsigned mhd_status)
{
    struct request *r = being_refused();
    const char *detail = "malformed request";
    char msg[1536];

    if (r == NULL) {
        return; /* not in a header section (e.g. a bad chunk): MHD's page is the only answer */
    }
    /* The answer is MHD's or ours now, not the deadline watchdog's 408: two answers would interleave. */
    if (!gw_dl_enter(r->http->dl, r->dl, GW_DL_NONE)) {
        return; /* the watchdog answered first and shut the socket: MHD's page fails to go out */
    }
    const union MHD_ConnectionInfo *tls =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (tls != NULL && tls->tls_session != NULL) {
        return; /* HTTPS: plain bytes on the socket would break the TLS stream; MHD's page goes out alone */
    }
    gw_vet_untrack(r);
    enum px_status st = vet_fields(r, false, &detail);
    if (st == PX_OK) {
        st = mhd_status == MHD_HTTP_CONTENT_TOO_LARGE ? PX_ERR_TOO_LARGE : PX_ERR_BAD_REQUEST;
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    int n = problem_message(msg, sizeof(msg), st, detail);
    r->status = px_status_http(st);
    r->state = GW_ANSWERED;
    /* Nothing was written on this connection yet: the short answer fits the socket buffer at once. */
    if (ci != NULL && n > 0 && (size_t)n < sizeof(msg)) {
        if (send(ci->connect_fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
            CG_LOG(CG_LOG_DEBUG, "http", "event=refusal_unsent status=%d", r->status);
        }
        shutdown(ci->connect_fd, SHUT_WR);
    }
}
