/* config: parses and validates the JSON configuration (jansson) into an immutable struct cfg.
 * No network I/O and no globals; the first error found is reported and parsing stops there. */
#include "config/cfg.h"

#include "base/log.h"
#include "base/pct.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define COAP_DEFAULT_PORT 5683
#define MAX_FILE_BYTES (16L * 1024 * 1024)
#define FIELD_LEN sizeof(((struct cfg_error *)0)->field)
#define REASON_LEN sizeof(((struct cfg_error *)0)->reason)

/* What cfg_default() returns, written as a config file so it goes through the same validation. */
static const char default_json[] = "{\"upstreams\": {\"demo\": {\"uri\": \"coap://127.0.0.1:5683\"}},"
                                   " \"routes\": [{\"prefix\": \"/api/\", \"upstream\": \"demo\"}],"
                                   " \"demo_server\": {\"enabled\": true}}";

static const char *const admin_paths[CFG_ADMIN_COUNT] = {
    [CFG_ADMIN_NONE] = "", [CFG_ADMIN_HEALTHZ] = "/healthz", [CFG_ADMIN_READYZ] = "/readyz",
    [CFG_ADMIN_METRICS] = "/metrics"};

/* One parse: the snapshot being built, the error to fill, the parsed document (borrowed). */
struct parser {
    struct cfg *cfg;
    struct cfg_error *err;
    json_t *root;
};

/* A numeric or boolean member stored at offset in a struct; the table order is the check order. */
enum kind { KIND_BOOL, KIND_UINT, KIND_SIZE };

struct scalar {
    const char *key;
    enum kind kind;
    size_t offset;
    long long min;
    long long max;
};

static const struct scalar upstream_scalars[] = {
    {"timeout_ms", KIND_UINT, offsetof(struct cfg_upstream, timeout_ms), 1, 600000},
    {"max_inflight", KIND_UINT, offsetof(struct cfg_upstream, max_inflight), 1, 1024},
    {"queue_limit", KIND_UINT, offsetof(struct cfg_upstream, queue_limit), 0, 1000000},
    {NULL, KIND_BOOL, 0, 0, 0},
};

static const struct scalar cache_scalars[] = {
    {"enabled", KIND_BOOL, offsetof(struct cfg, cache.enabled), 0, 1},
    {"max_entries", KIND_SIZE, offsetof(struct cfg, cache.max_entries), 1, 100000000},
    {"max_bytes", KIND_SIZE, offsetof(struct cfg, cache.max_bytes), 1024, 1LL << 40},
    {NULL, KIND_BOOL, 0, 0, 0},
};

static const struct scalar limits_scalars[] = {
    {"max_connections", KIND_UINT, offsetof(struct cfg, limits.max_connections), 1, 1000000},
    {"max_body_bytes", KIND_SIZE, offsetof(struct cfg, limits.max_body_bytes), 0, 1073741824},
    {"connection_timeout_s", KIND_UINT, offsetof(struct cfg, limits.connection_timeout_s), 1, 86400},
    {"max_subscribers", KIND_UINT, offsetof(struct cfg, limits.max_subscribers), 1, 1000000},
    {"max_subscribers_per_resource", KIND_UINT, offsetof(struct cfg, limits.max_subscribers_per_resource), 1,
     1000000},
    {"sse_keepalive_s", KIND_UINT, offsetof(struct cfg, limits.sse_keepalive_s), 1, 3600},
    {"longpoll_timeout_s", KIND_UINT, offsetof(struct cfg, limits.longpoll_timeout_s), 1, 3600},
    {NULL, KIND_BOOL, 0, 0, 0},
};

static const char *const top_keys[] = {
    "listen", "upstreams", "routes", "forward_proxy", "cache", "demo_server", "limits", "log", NULL};
static const char *const upstream_keys[] = {"uri", "timeout_ms", "max_inflight", "queue_limit", "type", NULL};
static const char *const route_keys[] = {"prefix", "upstream", "methods", "cache", NULL};
static const char *const forward_keys[] = {"enabled", "prefix", "allow", NULL};
static const char *const cache_keys[] = {"enabled", "max_entries", "max_bytes", NULL};
static const char *const demo_keys[] = {"enabled", "listen", NULL};
static const char *const limits_keys[] = {"max_connections",
                                          "max_body_bytes",
                                          "connection_timeout_s",
                                          "max_subscribers",
                                          "max_subscribers_per_resource",
                                          "sse_keepalive_s",
                                          "longpoll_timeout_s",
                                          NULL};
static const char *const log_keys[] = {"level", "access_log", NULL};

/* ---- errors and field paths ---- */

static void error_init(struct cfg_error *err, const char *file)
{
    memset(err, 0, sizeof(*err));
    snprintf(err->file, sizeof(err->file), "%s", file != NULL ? file : "(config)");
}

static enum cfg_status fail(struct cfg_error *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum cfg_status fail(struct cfg_error *err, const char *field, const char *fmt, ...)
{
    va_list ap;

    snprintf(err->field, sizeof(err->field), "%s", field);
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof(err->reason), fmt, ap);
    va_end(ap);
    return CFG_ERR_INVALID;
}

static enum cfg_status nomem(struct cfg_error *err)
{
    fail(err, "", "out of memory");
    return CFG_ERR_NOMEM;
}

/* Fills reason (if any) and returns -1, for the helpers shared with cfg_endpoint_parse(). */
static int why(char *reason, size_t len, const char *msg)
{
    if (reason != NULL && len > 0) {
        snprintf(reason, len, "%s", msg);
    }
    return -1;
}

/* A field path cut to fit its buffer ends in "..." so the cut is visible. */
static void mark_cut(char *out, size_t len, int written)
{
    if (written >= 0 && (size_t)written >= len && len > 3) {
        memcpy(out + len - 4, "...", 4);
    }
}

/* out = "base.key", or "key" at the top level. */
static void join(char *out, size_t len, const char *base, const char *key)
{
    if (base[0] == '\0') {
        mark_cut(out, len, snprintf(out, len, "%s", key));
    } else {
        mark_cut(out, len, snprintf(out, len, "%s.%s", base, key));
    }
}

static enum cfg_status fail_at(struct cfg_error *err, const char *base, const char *key, const char *reason)
{
    char field[FIELD_LEN];

    join(field, sizeof(field), base, key);
    return fail(err, field, "%s", reason);
}

/* ---- generic typed getters: an absent member keeps the default ---- */

static enum cfg_status check_known(struct cfg_error *err, const json_t *obj, const char *base,
                                   const char *const *known)
{
    const char *key;
    json_t *value;

    json_object_foreach((json_t *)obj, key, value)
    {
        size_t i = 0;
        while (known[i] != NULL && strcmp(known[i], key) != 0) {
            i++;
        }
        if (known[i] == NULL) {
            return fail_at(err, base, key, "unknown field");
        }
    }
    return CFG_OK;
}

/* *out = the object at parent.key after its unknown-field check, or NULL when absent. */
static enum cfg_status get_section(struct cfg_error *err, const json_t *parent, const char *key,
                                   const char *const *known, json_t **out)
{
    json_t *obj = json_object_get(parent, key);

    *out = NULL;
    if (obj == NULL) {
        return CFG_OK;
    }
    if (!json_is_object(obj)) {
        return fail(err, key, "must be an object");
    }
    *out = obj;
    return check_known(err, obj, key, known);
}

static enum cfg_status get_string(struct cfg_error *err, const json_t *obj, const char *base, const char *key,
                                  bool required, const char **out)
{
    json_t *v = json_object_get(obj, key);

    *out = NULL;
    if (v == NULL) {
        return required ? fail_at(err, base, key, "missing required field") : CFG_OK;
    }
    if (!json_is_string(v)) {
        return fail_at(err, base, key, "must be a string");
    }
    *out = json_string_value(v);
    return CFG_OK;
}

static enum cfg_status get_bool(struct cfg_error *err, const json_t *obj, const char *base, const char *key,
                                bool *out)
{
    json_t *v = json_object_get(obj, key);

    if (v == NULL) {
        return CFG_OK;
    }
    if (!json_is_boolean(v)) {
        return fail_at(err, base, key, "must be a boolean (true or false)");
    }
    *out = json_is_true(v);
    return CFG_OK;
}

static enum cfg_status get_scalar(struct cfg_error *err, const json_t *obj, const char *base,
                                  const struct scalar *s, void *dst)
{
    json_t *v = json_object_get(obj, s->key);
    char *at = (char *)dst + s->offset;
    char field[FIELD_LEN];
    long long n;

    if (v == NULL) {
        return CFG_OK;
    }
    if (s->kind == KIND_BOOL) {
        return get_bool(err, obj, base, s->key, (bool *)at);
    }
    join(field, sizeof(field), base, s->key);
    if (!json_is_integer(v)) {
        return fail(err, field, "must be an integer");
    }
    n = json_integer_value(v);
    if (n < s->min || n > s->max) {
        return fail(err, field, "must be between %lld and %lld", s->min, s->max);
    }
    if (s->kind == KIND_UINT) {
        *(unsigned *)at = (unsigned)n;
    } else {
        *(size_t *)at = (size_t)n;
    }
    return CFG_OK;
}

static enum cfg_status get_scalars(struct cfg_error *err, const json_t *obj, const char *base,
                                   const struct scalar *table, void *dst)
{
    enum cfg_status st = CFG_OK;

    for (const struct scalar *s = table; s->key != NULL && st == CFG_OK; s++) {
        st = get_scalar(err, obj, base, s, dst);
    }
    return st;
}

/* ---- hosts, ports and endpoints ---- */

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool only_digits_and_dots(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '.' && (s[i] < '0' || s[i] > '9')) {
            return false;
        }
    }
    return true;
}

/* RFC 1123 host name: dot-separated labels of 1..63 letters, digits and '-', no '-' at either end. */
static bool is_hostname(const char *s, size_t len)
{
    size_t label = 0;

    if (len > 253) {
        return false;
    }
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-' || s[i - label] == '-') {
                return false;
            }
            label = 0;
        } else if (is_alnum(s[i]) || s[i] == '-') {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

static bool is_address(int family, const char *s, size_t len)
{
    char buf[INET6_ADDRSTRLEN];
    unsigned char addr[16];

    if (len == 0 || len >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(family, buf, addr) == 1;
}

/* Checks host (brackets already removed when bracketed) and copies it into out->host. */
static int set_host(const char *host, size_t len, bool bracketed, struct cfg_endpoint *out, char *reason,
                    size_t rlen)
{
    if (len == 0) {
        return why(reason, rlen, "missing host");
    }
    if (bracketed) {
        if (!is_address(AF_INET6, host, len)) {
            return why(reason, rlen, "invalid IPv6 address");
        }
    } else if (memchr(host, ':', len) != NULL) {
        return why(reason, rlen, "an IPv6 address must be in brackets, e.g. [::1]:8080");
    } else if (only_digits_and_dots(host, len)) {
        if (!is_address(AF_INET, host, len)) {
            return why(reason, rlen, "invalid IPv4 address");
        }
    } else if (!is_hostname(host, len)) {
        return why(reason, rlen, "invalid host name (letters, digits, '-' and '.' only)");
    }
    memcpy(out->host, host, len);
    out->host[len] = '\0';
    return 0;
}

static int set_port(const char *s, size_t len, struct cfg_endpoint *out, char *reason, size_t rlen)
{
    unsigned long n = 0;

    if (len == 0) {
        return why(reason, rlen, "missing port after ':'");
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || n > 65535) {
            return why(reason, rlen, "port must be a number between 1 and 65535");
        }
        n = n * 10 + (unsigned long)(s[i] - '0');
    }
    if (n < 1 || n > 65535) {
        return why(reason, rlen, "port must be a number between 1 and 65535");
    }
    out->port = (uint16_t)n;
    return 0;
}

/* Parses "host[:port]" or "[v6][:port]" in s[0..len). The port is required when def_port is 0. */
static int parse_host_port(const char *s, size_t len, uint16_t def_port, struct cfg_endpoint *out,
                           char *reason, size_t rlen)
{
    const char *end = s + len;
    const char *port = NULL;
    size_t hlen = len;
    bool bracketed = len > 0 && s[0] == '[';

    if (bracketed) {
        const char *close = memchr(s, ']', len);
        if (close == NULL) {
            return why(reason, rlen, "missing ']' after the IPv6 address");
        }
        if (close + 1 < end && close[1] != ':') {
            return why(reason, rlen, "unexpected text after ']' (expected :PORT)");
        }
        port = close + 1 < end ? close + 2 : NULL;
        hlen = (size_t)(close - s) - 1;
        s++;
    } else {
        for (size_t i = len; i > 0; i--) {
            if (s[i - 1] == ':') {
                port = s + i;
                hlen = i - 1;
                break;
            }
        }
    }
    if (set_host(s, hlen, bracketed, out, reason, rlen) != 0) {
        return -1;
    }
    if (port == NULL) {
        out->port = def_port;
        return def_port != 0 ? 0 : why(reason, rlen, "missing port (expected HOST:PORT or [IPV6]:PORT)");
    }
    return set_port(port, (size_t)(end - port), out, reason, rlen);
}

int cfg_endpoint_parse(const char *text, struct cfg_endpoint *out, char *reason, size_t reason_len)
{
    struct cfg_endpoint ep;

    if (text == NULL) {
        return why(reason, reason_len, "missing address");
    }
    memset(&ep, 0, sizeof(ep));
    if (parse_host_port(text, strlen(text), 0, &ep, reason, reason_len) != 0) {
        return -1;
    }
    *out = ep;
    return 0;
}

static enum cfg_status get_endpoint(struct cfg_error *err, const json_t *obj, const char *base,
                                    const char *key, struct cfg_endpoint *out)
{
    char reason[REASON_LEN];
    const char *text;
    enum cfg_status st = get_string(err, obj, base, key, false, &text);

    if (st != CFG_OK || text == NULL) {
        return st;
    }
    if (cfg_endpoint_parse(text, out, reason, sizeof(reason)) != 0) {
        return fail_at(err, base, key, reason);
    }
    return CFG_OK;
}

/* ---- upstream URIs ---- */

/* RFC 3986 pchar other than pct-encoded: unreserved, sub-delims, ':' and '@'. */
static bool is_pchar(char c)
{
    return is_alnum(c) || (c != '\0' && strchr("-._~!$&'()*+,;=:@", c) != NULL);
}

static void bad_char(char c, char *reason, size_t rlen)
{
    if (c > ' ' && c < 0x7f) {
        snprintf(reason, rlen, "character '%c' is not allowed in the path (percent-encode it)", c);
    } else {
        snprintf(reason, rlen, "byte 0x%02X is not allowed in the path (percent-encode it)",
                 (unsigned char)c);
    }
}

/* Percent-decodes one path segment s[0..len) into a new string. */
static enum cfg_status decode_segment(const char *s, size_t len, char **out, char *reason, size_t rlen)
{
    char *buf = malloc(len + 1);
    size_t n = 0;

    if (buf == NULL) {
        return CFG_ERR_NOMEM;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 2 < len ? cg_hexval(s[i + 1]) : -1;
            int lo = i + 2 < len ? cg_hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || hi + lo == 0) {
                why(reason, rlen,
                    hi + lo == 0 ? "%00 is not allowed in the path" : "invalid percent-encoding in the path");
                goto out_free_buf;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (!is_pchar(c)) {
            bad_char(c, reason, rlen);
            goto out_free_buf;
        }
        buf[n++] = c;
    }
    buf[n] = '\0';
    *out = buf;
    return CFG_OK;

out_free_buf:
    free(buf);
    return CFG_ERR_INVALID;
}

static bool is_dot_segment(const char *s, size_t len)
{
    return (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.');
}

/* "/a/b" -> {"a","b"}; "" and "/" -> none; one trailing '/' is ignored ("/a/" -> {"a"}). */
static enum cfg_status parse_base_path(const char *path, struct cfg_upstream *u, char *reason, size_t rlen)
{
    size_t len = strlen(path);
    size_t count = 0;

    if (len > 0 && path[len - 1] == '/') {
        len--;
    }
    for (size_t i = 0; i < len; i++) {
        count += path[i] == '/';
    }
    if (count == 0) {
        return CFG_OK;
    }
    u->base_path = calloc(count, sizeof(*u->base_path));
    if (u->base_path == NULL) {
        return CFG_ERR_NOMEM;
    }
    u->base_path_len = count;
    for (size_t i = 0, start = 1; i < count; i++) {
        size_t end = start;
        while (end < len && path[end] != '/') {
            end++;
        }
        if (end == start || is_dot_segment(path + start, end - start)) {
            why(reason, rlen,
                end == start ? "empty segment (//) in the path"
                             : "'.' and '..' segments are not allowed in the path");
            return CFG_ERR_INVALID;
        }
        enum cfg_status st = decode_segment(path + start, end - start, &u->base_path[i], reason, rlen);
        if (st != CFG_OK) {
            return st;
        }
        start = end + 1;
    }
    return CFG_OK;
}

/* Checks "scheme://" and returns a pointer just past it, or NULL with reason filled. */
static const char *skip_scheme(const char *uri, char *reason, size_t rlen)
{
    const char *sep = strstr(uri, "://");
    size_t len = sep != NULL ? (size_t)(sep - uri) : 0;

    for (size_t i = 0; i < len; i++) {
        if (!is_alnum(uri[i]) && (i == 0 || strchr("+-.", uri[i]) == NULL)) {
            len = 0;
        }
    }
    if (len == 0) {
        why(reason, rlen, "must be a coap:// URI, e.g. \"coap://192.0.2.10:5683\"");
        return NULL;
    }
    if (len != 4 || strncasecmp(uri, "coap", 4) != 0) {
        snprintf(reason, rlen, "scheme %.*s is not supported (only coap://)", (int)(len > 32 ? 32 : len),
                 uri);
        return NULL;
    }
    return sep + 3;
}

/* Splits "coap://host[:port][/path]" into u->peer and u->base_path. */
static enum cfg_status parse_uri(const char *uri, struct cfg_upstream *u, char *reason, size_t rlen)
{
    const char *auth = skip_scheme(uri, reason, rlen);
    const char *rest;
    size_t alen;

    if (auth == NULL) {
        return CFG_ERR_INVALID;
    }
    alen = strcspn(auth, "/?#");
    rest = auth + alen;
    if (memchr(auth, '@', alen) != NULL) {
        why(reason, rlen, "userinfo (user@) is not allowed");
        return CFG_ERR_INVALID;
    }
    if (parse_host_port(auth, alen, COAP_DEFAULT_PORT, &u->peer, reason, rlen) != 0) {
        return CFG_ERR_INVALID;
    }
    if (strpbrk(rest, "?#") != NULL) {
        why(reason, rlen,
            *strpbrk(rest, "?#") == '?' ? "a query (?...) is not allowed"
                                        : "a fragment (#...) is not allowed");
        return CFG_ERR_INVALID;
    }
    return parse_base_path(rest, u, reason, rlen);
}

/* ---- upstreams ---- */

static bool is_upstream_name(const char *name)
{
    size_t len = strlen(name);

    for (size_t i = 0; i < len; i++) {
        if (!is_alnum(name[i]) && name[i] != '_' && name[i] != '-') {
            return false;
        }
    }
    return len >= 1 && len <= 64;
}

static enum cfg_status get_uri(struct cfg_error *err, const json_t *obj, const char *base,
                               struct cfg_upstream *u)
{
    char reason[REASON_LEN];
    const char *uri;
    enum cfg_status st = get_string(err, obj, base, "uri", true, &uri);

    if (st != CFG_OK) {
        return st;
    }
    u->uri = strdup(uri);
    if (u->uri == NULL) {
        return nomem(err);
    }
    st = parse_uri(uri, u, reason, sizeof(reason));
    if (st == CFG_ERR_NOMEM) {
        return nomem(err);
    }
    return st == CFG_OK ? CFG_OK : fail_at(err, base, "uri", reason);
}

static enum cfg_status get_msg_type(struct cfg_error *err, const json_t *obj, const char *base,
                                    enum cfg_msg_type *out)
{
    const char *type;
    enum cfg_status st = get_string(err, obj, base, "type", false, &type);

    if (st != CFG_OK || type == NULL) {
        return st;
    }
    if (strcmp(type, "con") != 0 && strcmp(type, "non") != 0) {
        return fail_at(err, base, "type", "must be \"con\" or \"non\"");
    }
    *out = strcmp(type, "con") == 0 ? CFG_MSG_CON : CFG_MSG_NON;
    return CFG_OK;
}

static enum cfg_status parse_upstream(struct cfg_error *err, const char *name, const json_t *obj,
                                      struct cfg_upstream *u)
{
    char base[FIELD_LEN];
    enum cfg_status st;

    join(base, sizeof(base), "upstreams", name);
    if (!is_upstream_name(name)) {
        return fail(err, base, "invalid upstream name (1 to 64 of A-Z a-z 0-9 _ -)");
    }
    if (!json_is_object(obj)) {
        return fail(err, base, "must be an object");
    }
    st = check_known(err, obj, base, upstream_keys);
    if (st != CFG_OK) {
        return st;
    }
    u->name = strdup(name);
    if (u->name == NULL) {
        return nomem(err);
    }
    u->timeout_ms = 5000;
    u->max_inflight = 1;
    u->queue_limit = 64;
    u->type = CFG_MSG_CON;
    st = get_uri(err, obj, base, u);
    if (st == CFG_OK) {
        st = get_scalars(err, obj, base, upstream_scalars, u);
    }
    return st == CFG_OK ? get_msg_type(err, obj, base, &u->type) : st;
}

static enum cfg_status parse_upstreams(struct parser *p)
{
    json_t *obj = json_object_get(p->root, "upstreams");
    json_t *value;
    const char *name;
    size_t i = 0;

    if (obj != NULL && !json_is_object(obj)) {
        return fail(p->err, "upstreams", "must be an object");
    }
    if (json_object_size(obj) == 0) {
        return json_array_size(json_object_get(p->root, "routes")) == 0
                   ? CFG_OK
                   : fail(p->err, "upstreams", "at least one upstream is required when routes are defined");
    }
    p->cfg->upstreams = calloc(json_object_size(obj), sizeof(*p->cfg->upstreams));
    if (p->cfg->upstreams == NULL) {
        return nomem(p->err);
    }
    p->cfg->upstreams_len = json_object_size(obj);
    json_object_foreach(obj, name, value)
    {
        enum cfg_status st = parse_upstream(p->err, name, value, &p->cfg->upstreams[i++]);
        if (st != CFG_OK) {
            return st;
        }
    }
    return CFG_OK;
}

/* ---- routes ---- */

/* A path prefix as routes and the forward proxy use it: "/", "/api/", "/a/b/". */
static const char *prefix_problem(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || s[0] != '/') {
        return "must start with '/'";
    }
    if (s[len - 1] != '/') {
        return "must end with '/', e.g. \"/api/\"";
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '?' || s[i] == '%' || s[i] == '#') {
            return "must not contain '?', '%' or '#'";
        }
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f) {
            return "must not contain spaces or control characters";
        }
    }
    if (strstr(s, "//") != NULL) {
        return "must not contain an empty segment (//)";
    }
    for (size_t i = CFG_ADMIN_NONE + 1; i < CFG_ADMIN_COUNT; i++) {
        if (strncmp(s, admin_paths[i], strlen(admin_paths[i])) == 0) {
            return "must not be or start with an admin path (/healthz, /readyz, /metrics)";
        }
    }
    return NULL;
}

static enum cfg_status get_prefix(struct cfg_error *err, const json_t *obj, const char *base, bool required,
                                  char **out)
{
    const char *prefix;
    const char *problem;
    enum cfg_status st = get_string(err, obj, base, "prefix", required, &prefix);

    if (st != CFG_OK || prefix == NULL) {
        return st;
    }
    problem = prefix_problem(prefix);
    if (problem != NULL) {
        return fail_at(err, base, "prefix", problem);
    }
    free(*out);
    *out = strdup(prefix);
    return *out == NULL ? nomem(err) : CFG_OK;
}

static enum cfg_status check_duplicate_prefix(struct cfg_error *err, const struct cfg *cfg, size_t index,
                                              const char *base)
{
    char field[FIELD_LEN];

    for (size_t i = 0; i < index; i++) {
        if (strcmp(cfg->routes[i].prefix, cfg->routes[index].prefix) == 0) {
            join(field, sizeof(field), base, "prefix");
            return fail(err, field, "duplicate prefix \"%.64s\" (also routes[%zu])",
                        cfg->routes[index].prefix, i);
        }
    }
    return CFG_OK;
}

static enum cfg_status get_route_upstream(struct cfg_error *err, const struct cfg *cfg, const json_t *obj,
                                          const char *base, size_t *out)
{
    char field[FIELD_LEN];
    const char *name;
    enum cfg_status st = get_string(err, obj, base, "upstream", true, &name);

    if (st != CFG_OK) {
        return st;
    }
    for (size_t i = 0; i < cfg->upstreams_len; i++) {
        if (strcmp(cfg->upstreams[i].name, name) == 0) {
            *out = i;
            return CFG_OK;
        }
    }
    join(field, sizeof(field), base, "upstream");
    return fail(err, field, "no upstream named \"%.64s\"", name);
}

/* The cfg_method bit for a method name, 0 when unknown. */
static unsigned method_bit(const char *name)
{
    uint8_t code = co_method_by_name(name);
    return code != 0 ? CO_METHOD_BIT(code) : 0;
}

static enum cfg_status add_method(struct cfg_error *err, const json_t *v, const char *field,
                                  unsigned *methods)
{
    const char *name = json_string_value(v);
    unsigned bit;

    if (name == NULL) {
        return fail(err, field, "must be a string");
    }
    bit = method_bit(name);
    if (bit == 0 && strcmp(name, "HEAD") == 0) {
        return fail(err, field, "HEAD is implied by GET; list GET instead");
    }
    if (bit == 0) {
        return fail(err, field,
                    "unknown method \"%.32s\" (known: GET, POST, PUT, DELETE, FETCH, PATCH, iPATCH)", name);
    }
    if (*methods & bit) {
        return fail(err, field, "duplicate method \"%.32s\"", name);
    }
    *methods |= bit;
    return CFG_OK;
}

static enum cfg_status get_methods(struct cfg_error *err, const json_t *obj, const char *base, unsigned *out)
{
    json_t *arr = json_object_get(obj, "methods");
    char field[FIELD_LEN];
    unsigned methods = 0;
    json_t *v;
    size_t i;

    if (arr == NULL) {
        return CFG_OK;
    }
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        return fail_at(err, base, "methods",
                       json_is_array(arr) ? "must not be empty" : "must be an array of method names");
    }
    json_array_foreach(arr, i, v)
    {
        mark_cut(field, sizeof(field), snprintf(field, sizeof(field), "%s.methods[%zu]", base, i));
        enum cfg_status st = add_method(err, v, field, &methods);
        if (st != CFG_OK) {
            return st;
        }
    }
    *out = methods;
    return CFG_OK;
}

static enum cfg_status parse_route(struct cfg_error *err, struct cfg *cfg, size_t index, const json_t *obj)
{
    struct cfg_route *r = &cfg->routes[index];
    char base[FIELD_LEN];
    enum cfg_status st;

    snprintf(base, sizeof(base), "routes[%zu]", index);
    if (!json_is_object(obj)) {
        return fail(err, base, "must be an object");
    }
    st = check_known(err, obj, base, route_keys);
    if (st == CFG_OK) {
        st = get_prefix(err, obj, base, true, &r->prefix);
    }
    if (st == CFG_OK) {
        st = check_duplicate_prefix(err, cfg, index, base);
    }
    if (st == CFG_OK) {
        st = get_route_upstream(err, cfg, obj, base, &r->upstream);
    }
    if (st == CFG_OK) {
        st = get_methods(err, obj, base, &r->methods);
    }
    return st == CFG_OK ? get_bool(err, obj, base, "cache", &r->cache) : st;
}

static enum cfg_status parse_routes(struct parser *p)
{
    json_t *arr = json_object_get(p->root, "routes");
    size_t n = json_array_size(arr);

    if (arr != NULL && !json_is_array(arr)) {
        return fail(p->err, "routes", "must be an array");
    }
    if (n == 0) {
        return CFG_OK;
    }
    p->cfg->routes = calloc(n, sizeof(*p->cfg->routes));
    if (p->cfg->routes == NULL) {
        return nomem(p->err);
    }
    p->cfg->routes_len = n;
    for (size_t i = 0; i < n; i++) {
        p->cfg->routes[i].methods = CFG_METHOD_ALL;
        p->cfg->routes[i].cache = true;
        enum cfg_status st = parse_route(p->err, p->cfg, i, json_array_get(arr, i));
        if (st != CFG_OK) {
            return st;
        }
    }
    return CFG_OK;
}

/* ---- forward proxy ---- */

static int parse_prefix_len(const char *s, unsigned max, unsigned *out)
{
    unsigned n = 0;

    if (*s == '\0') {
        return -1;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || n > max) {
            return -1;
        }
        n = n * 10 + (unsigned)(*s - '0');
    }
    *out = n;
    return n <= max ? 0 : -1;
}

static bool host_bits_set(const struct cfg_cidr *c, unsigned max)
{
    for (unsigned bit = c->prefix_len; bit < max; bit++) {
        if (c->addr[bit / 8] & (0x80u >> (bit % 8))) {
            return true;
        }
    }
    return false;
}

/* "127.0.0.0/8", "::1/128"; a bare address means the full length. Bits past the prefix must be zero. */
static int parse_cidr(const char *s, struct cfg_cidr *out, char *reason, size_t rlen)
{
    const char *slash = strchr(s, '/');
    size_t alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    char addr[INET6_ADDRSTRLEN];
    unsigned max;

    out->family = memchr(s, ':', alen) != NULL ? AF_INET6 : AF_INET;
    max = out->family == AF_INET6 ? 128 : 32;
    out->prefix_len = max;
    snprintf(addr, sizeof(addr), "%.*s", (int)(alen < sizeof(addr) ? alen : 0), s);
    if (alen == 0 || alen >= sizeof(addr) || inet_pton(out->family, addr, out->addr) != 1) {
        snprintf(reason, rlen,
                 "invalid CIDR \"%.64s\" (expected ADDRESS/LENGTH, e.g. 127.0.0.0/8 or ::1/128)", s);
        return -1;
    }
    if (slash != NULL && parse_prefix_len(slash + 1, max, &out->prefix_len) != 0) {
        snprintf(reason, rlen, "invalid CIDR \"%.64s\": prefix length must be between 0 and %u", s, max);
        return -1;
    }
    if (host_bits_set(out, max)) {
        snprintf(reason, rlen, "invalid CIDR \"%.64s\": address bits are set beyond the /%u prefix", s,
                 out->prefix_len);
        return -1;
    }
    return 0;
}

static enum cfg_status get_allow(struct cfg_error *err, const json_t *obj, struct cfg *cfg)
{
    json_t *arr = json_object_get(obj, "allow");
    char reason[REASON_LEN];
    char field[FIELD_LEN];
    json_t *v;
    size_t i;

    if (arr == NULL || (json_is_array(arr) && json_array_size(arr) == 0)) {
        return CFG_OK;
    }
    if (!json_is_array(arr)) {
        return fail(err, "forward_proxy.allow", "must be an array of CIDR strings");
    }
    cfg->forward_proxy.allow = calloc(json_array_size(arr), sizeof(*cfg->forward_proxy.allow));
    if (cfg->forward_proxy.allow == NULL) {
        return nomem(err);
    }
    cfg->forward_proxy.allow_len = json_array_size(arr);
    json_array_foreach(arr, i, v)
    {
        snprintf(field, sizeof(field), "forward_proxy.allow[%zu]", i);
        if (!json_is_string(v)) {
            return fail(err, field, "must be a string");
        }
        if (parse_cidr(json_string_value(v), &cfg->forward_proxy.allow[i], reason, sizeof(reason)) != 0) {
            return fail(err, field, "%s", reason);
        }
    }
    return CFG_OK;
}

static enum cfg_status parse_forward_proxy(struct parser *p)
{
    json_t *obj;
    enum cfg_status st = get_section(p->err, p->root, "forward_proxy", forward_keys, &obj);

    if (st != CFG_OK || obj == NULL) {
        return st;
    }
    st = get_bool(p->err, obj, "forward_proxy", "enabled", &p->cfg->forward_proxy.enabled);
    if (st == CFG_OK && p->cfg->forward_proxy.enabled) {
        /* Not implemented yet: refusing is the only way an open proxy cannot appear by accident. */
        return fail(p->err, "forward_proxy.enabled", "forward proxying is not supported by this version");
    }
    if (st == CFG_OK) {
        st = get_prefix(p->err, obj, "forward_proxy", false, &p->cfg->forward_proxy.prefix);
    }
    return st == CFG_OK ? get_allow(p->err, obj, p->cfg) : st;
}

/* ---- the other sections ---- */

static enum cfg_status parse_scalar_section(struct parser *p, const char *key, const char *const *known,
                                            const struct scalar *table)
{
    json_t *obj;
    enum cfg_status st = get_section(p->err, p->root, key, known, &obj);

    if (st != CFG_OK || obj == NULL) {
        return st;
    }
    return get_scalars(p->err, obj, key, table, p->cfg);
}

static enum cfg_status parse_demo(struct parser *p)
{
    json_t *obj;
    enum cfg_status st = get_section(p->err, p->root, "demo_server", demo_keys, &obj);

    if (st != CFG_OK || obj == NULL) {
        return st;
    }
    st = get_bool(p->err, obj, "demo_server", "enabled", &p->cfg->demo.enabled);
    return st == CFG_OK ? get_endpoint(p->err, obj, "demo_server", "listen", &p->cfg->demo.listen) : st;
}

static enum cfg_status parse_log(struct parser *p)
{
    json_t *obj;
    const char *level;
    enum cfg_status st = get_section(p->err, p->root, "log", log_keys, &obj);

    if (st != CFG_OK || obj == NULL) {
        return st;
    }
    st = get_string(p->err, obj, "log", "level", false, &level);
    if (st == CFG_OK && level != NULL) {
        enum cg_log_level parsed;
        if (cg_log_level_parse(level, &parsed) == 0) {
            p->cfg->log.level = (int)parsed;
        } else {
            return fail(p->err, "log.level", "must be one of error, warn, info, debug");
        }
    }
    return st == CFG_OK ? get_bool(p->err, obj, "log", "access_log", &p->cfg->log.access_log) : st;
}

static enum cfg_status parse_root(struct parser *p)
{
    enum cfg_status st;

    if (!json_is_object(p->root)) {
        return fail(p->err, "", "the top level must be a JSON object");
    }
    st = check_known(p->err, p->root, "", top_keys);
    if (st == CFG_OK) {
        st = get_endpoint(p->err, p->root, "", "listen", &p->cfg->listen);
    }
    if (st == CFG_OK) {
        st = parse_upstreams(p);
    }
    if (st == CFG_OK) {
        st = parse_routes(p);
    }
    if (st == CFG_OK) {
        st = parse_forward_proxy(p);
    }
    if (st == CFG_OK) {
        st = parse_scalar_section(p, "cache", cache_keys, cache_scalars);
    }
    if (st == CFG_OK) {
        st = parse_demo(p);
    }
    if (st == CFG_OK) {
        st = parse_scalar_section(p, "limits", limits_keys, limits_scalars);
    }
    return st == CFG_OK ? parse_log(p) : st;
}

/* ---- public API ---- */

/* A snapshot holding every default of a config file (no upstreams, no routes, no demo server). */
static struct cfg *defaults_new(void)
{
    struct cfg *cfg = calloc(1, sizeof(*cfg));

    if (cfg == NULL) {
        return NULL;
    }
    snprintf(cfg->listen.host, sizeof(cfg->listen.host), "127.0.0.1");
    cfg->listen.port = 8080;
    cfg->forward_proxy.prefix = strdup("/hc/");
    cfg->cache.enabled = true;
    cfg->cache.max_entries = 10000;
    cfg->cache.max_bytes = 67108864;
    snprintf(cfg->demo.listen.host, sizeof(cfg->demo.listen.host), "127.0.0.1");
    cfg->demo.listen.port = 5683;
    cfg->limits.max_connections = 10000;
    cfg->limits.max_body_bytes = 1048576;
    cfg->limits.connection_timeout_s = 30;
    cfg->limits.max_subscribers = 1000;
    cfg->limits.max_subscribers_per_resource = 100;
    cfg->limits.sse_keepalive_s = 15;
    cfg->limits.longpoll_timeout_s = 30;
    cfg->log.level = 2;
    cfg->log.access_log = true;
    if (cfg->forward_proxy.prefix == NULL) {
        free(cfg);
        return NULL;
    }
    return cfg;
}

static enum cfg_status syntax_error(struct cfg_error *err, const json_error_t *jerr)
{
    err->line = jerr->line > 0 ? jerr->line : 1;
    err->column = jerr->column > 0 ? jerr->column : 1;
    snprintf(err->reason, sizeof(err->reason), "%s", jerr->text);
    return CFG_ERR_SYNTAX;
}

enum cfg_status cfg_parse(const char *text, size_t len, const char *name, struct cfg **out,
                          struct cfg_error *err)
{
    struct cfg_error local;
    json_error_t jerr;
    struct parser p;
    enum cfg_status st;

    assert(out != NULL);
    err = err != NULL ? err : &local;
    error_init(err, name);
    *out = NULL;
    p.err = err;
    p.root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (p.root == NULL) {
        return syntax_error(err, &jerr);
    }
    p.cfg = defaults_new();
    st = p.cfg != NULL ? parse_root(&p) : nomem(err);
    json_decref(p.root);
    if (st != CFG_OK) {
        cfg_free(p.cfg);
        return st;
    }
    *out = p.cfg;
    return CFG_OK;
}

/* Appends the rest of f to *buf (grown as needed, NUL-terminated). Returns 0 or an errno value. */
static int read_all(FILE *f, char **buf, size_t *len)
{
    size_t cap = 0;

    for (;;) {
        if (*len + 1 >= cap) {
            cap = cap == 0 ? 4096 : cap * 2;
            char *bigger = cap <= MAX_FILE_BYTES ? realloc(*buf, cap) : NULL;
            if (bigger == NULL) {
                return cap <= MAX_FILE_BYTES ? ENOMEM : EFBIG;
            }
            *buf = bigger;
        }
        errno = 0;
        *len += fread(*buf + *len, 1, cap - *len - 1, f);
        if (ferror(f)) {
            return errno != 0 ? errno : EIO;
        }
        if (feof(f)) {
            (*buf)[*len] = '\0';
            return 0;
        }
    }
}

/* Reads the whole file into a new buffer; on error fills err as "cannot read: why". */
static enum cfg_status read_file(const char *path, char **text, size_t *len, struct cfg_error *err)
{
    FILE *f = fopen(path, "rb");
    int e = f == NULL ? errno : 0;

    *text = NULL;
    *len = 0;
    if (f != NULL) {
        e = read_all(f, text, len);
        fclose(f);
    }
    if (e != 0) {
        free(*text);
        fail(err, "", "cannot read: %s", strerror(e));
        return e == ENOMEM ? CFG_ERR_NOMEM : CFG_ERR_IO;
    }
    return CFG_OK;
}

enum cfg_status cfg_load(const char *path, struct cfg **out, struct cfg_error *err)
{
    struct cfg_error local;
    enum cfg_status st;
    size_t len;
    char *text;

    assert(path != NULL && out != NULL);
    err = err != NULL ? err : &local;
    error_init(err, path);
    *out = NULL;
    st = read_file(path, &text, &len, err);
    if (st != CFG_OK) {
        return st;
    }
    st = cfg_parse(text, len, path, out, err);
    free(text);
    return st;
}

struct cfg *cfg_default(void)
{
    struct cfg *cfg;

    return cfg_parse(default_json, sizeof(default_json) - 1, "(defaults)", &cfg, NULL) == CFG_OK ? cfg : NULL;
}

const char *cfg_method_name(enum cfg_method m)
{
    for (uint8_t code = 1; code <= CO_METHOD_COUNT; code++) {
        if (CO_METHOD_BIT(code) == (unsigned)m) {
            return co_method_name(code);
        }
    }
    return "";
}

enum cfg_admin cfg_admin_path(const char *path, size_t len)
{
    for (size_t i = CFG_ADMIN_NONE + 1; i < CFG_ADMIN_COUNT; i++) {
        if (strlen(admin_paths[i]) == len && memcmp(admin_paths[i], path, len) == 0) {
            return (enum cfg_admin)i;
        }
    }
    return CFG_ADMIN_NONE;
}

const char *cfg_admin_path_name(enum cfg_admin admin)
{
    return admin_paths[admin];
}

void cfg_methods_format(unsigned methods, char *buf, size_t len)
{
    size_t used = 0;

    if (len == 0) {
        return;
    }
    buf[0] = '\0';
    for (unsigned bit = 1; bit & CFG_METHOD_ALL; bit <<= 1) {
        if (!(methods & bit)) {
            continue;
        }
        const char *name = bit == CFG_METHOD_GET ? "GET, HEAD" : cfg_method_name((enum cfg_method)bit);
        int n = snprintf(buf + used, len - used, "%s%s", used > 0 ? ", " : "", name);
        if (n < 0 || (size_t)n >= len - used) {
            return;
        }
        used += (size_t)n;
    }
}

void cfg_error_format(const struct cfg_error *err, char *buf, size_t len)
{
    if (len == 0) {
        return;
    }
    if (err->line > 0) {
        snprintf(buf, len, "%s:%d:%d: %s", err->file, err->line, err->column, err->reason);
    } else if (err->field[0] == '\0') {
        snprintf(buf, len, "%s: %s", err->file, err->reason);
    } else {
        snprintf(buf, len, "%s: %s: %s", err->file, err->field, err->reason);
    }
}

const char *cfg_strerror(enum cfg_status status)
{
    switch (status) {
    case CFG_OK:
        return "ok";
    case CFG_ERR_IO:
        return "cannot read the configuration file";
    case CFG_ERR_SYNTAX:
        return "JSON syntax error in the configuration";
    case CFG_ERR_INVALID:
        return "invalid configuration";
    case CFG_ERR_NOMEM:
        return "out of memory";
    }
    return "unknown configuration status";
}

static void upstream_clear(struct cfg_upstream *u)
{
    for (size_t i = 0; i < u->base_path_len; i++) {
        free(u->base_path[i]);
    }
    free(u->base_path);
    free(u->name);
    free(u->uri);
}

void cfg_free(struct cfg *cfg)
{
    if (cfg == NULL) {
        return;
    }
    for (size_t i = 0; i < cfg->upstreams_len; i++) {
        upstream_clear(&cfg->upstreams[i]);
    }
    free(cfg->upstreams);
    for (size_t i = 0; i < cfg->routes_len; i++) {
        free(cfg->routes[i].prefix);
    }
    free(cfg->routes);
    free(cfg->forward_proxy.prefix);
    free(cfg->forward_proxy.allow);
    free(cfg);
}
