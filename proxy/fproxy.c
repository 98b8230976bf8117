/* proxy/fproxy: RFC 8075 §5 forward-proxy targets, the target allow-list and the checked resolution.
 * Parsing and checking are pure (no I/O, no state); px_fp_resolve is the only function that does I/O. */
#include "proxy/fproxy.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "base/addrrule.h"
#include "base/pct.h"

#define BAD 400
#define NOMEM 500

/* ==== Characters (RFC 3986 §2) ================================================================== */

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* unreserved / reserved / '%': every byte a URI may hold. A decoded encoded-form URI can contain anything,
 * so this is what keeps spaces, controls, NULs and non-ASCII out of what reaches the translation. */
static bool is_uri_char(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("-._~:/?#[]@!$&'()*+,;=%", c) != NULL);
}

/* A DNS name's characters ('_' appears in real names). RFC 3986 reg-name also allows sub-delims and
 * percent-encoding, which no resolver needs and which would only give one host several spellings. */
static bool is_host_char(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_';
}

static bool prefix_nocase(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    if (len < n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (lower(s[i]) != prefix[i]) {
            return false;
        }
    }
    return true;
}

/* ==== Target URI ================================================================================ */

/* The pieces of one URI, as spans of the text being parsed. */
struct span {
    const char *p;
    size_t len;
};

struct uri_parts {
    struct span host, path, query;
    bool has_query;
};

static int fail(const char **reason, const char *why)
{
    *reason = why;
    return BAD;
}

/* The scheme before "://" (or before "%3A" for the encoded form). Returns its length, 0 when rest does not
 * start with a scheme (RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )). */
static size_t scheme_len(const char *s, size_t len)
{
    size_t i = 0;
    if (len == 0 || !is_alpha((unsigned char)s[0])) {
        return 0;
    }
    while (i < len && (is_alpha((unsigned char)s[i]) || is_digit((unsigned char)s[i]) || s[i] == '+' ||
                       s[i] == '-' || s[i] == '.')) {
        i++;
    }
    return i;
}

static int read_scheme(const char *s, size_t n, struct px_fp_target *out, const char **reason)
{
    if (n == 4 && prefix_nocase(s, n, "coap")) {
        out->scheme = PX_FP_COAP;
        out->port = PX_FP_PORT_COAP;
        return 0;
    }
    if (n == 5 && prefix_nocase(s, n, "coaps")) {
        out->scheme = PX_FP_COAPS;
        out->port = PX_FP_PORT_COAPS;
        return 0;
    }
    return fail(reason, "the target URI's scheme must be coap or coaps (RFC 8075 §5)");
}

/* IP-literal = "[" IPv6address "]" (RFC 3986 §3.2.2). The zone-id form of RFC 6874 ("%25") is refused:
 * a zone names an interface of the gateway, which a client has no business choosing. */
static int read_ipv6_literal(struct span a, size_t *used, struct px_fp_target *out, const char **reason)
{
    const char *close = memchr(a.p, ']', a.len);
    char text[INET6_ADDRSTRLEN];
    struct in6_addr addr;
    size_t n;

    if (close == NULL) {
        return fail(reason, "an IPv6 literal lacks its closing ']'");
    }
    n = (size_t)(close - a.p) - 1;
    if (memchr(a.p, '%', n + 1) != NULL) {
        return fail(reason, "IPv6 zone ids are not allowed in the target URI");
    }
    if (n > 0 && lower(a.p[1]) == 'v') {
        return fail(reason, "IPvFuture literals are not supported");
    }
    if (n == 0 || n >= sizeof(text)) {
        return fail(reason, "the IPv6 literal is not a valid IPv6 address");
    }
    memcpy(text, a.p + 1, n);
    text[n] = '\0';
    if (inet_pton(AF_INET6, text, &addr) != 1) {
        return fail(reason, "the IPv6 literal is not a valid IPv6 address");
    }
    out->host_kind = PX_FP_HOST_IPV6;
    *used = n + 2;
    return 0;
}

static int read_reg_name(struct span h, struct px_fp_target *out, const char **reason)
{
    char text[INET_ADDRSTRLEN];
    struct in_addr addr;

    if (h.len == 0) {
        return fail(reason, "the target URI has an empty host");
    }
    if (h.len > PX_FP_HOST_MAX) {
        return fail(reason, "the target host is longer than 255 bytes");
    }
    for (size_t i = 0; i < h.len; i++) {
        if (!is_host_char((unsigned char)h.p[i])) {
            return fail(reason, "the target host must be a DNS name, an IPv4 address or an [IPv6] literal");
        }
    }
    out->host_kind = PX_FP_HOST_NAME;
    if (h.len < sizeof(text)) {
        memcpy(text, h.p, h.len);
        text[h.len] = '\0';
        if (inet_pton(AF_INET, text, &addr) == 1) {
            out->host_kind = PX_FP_HOST_IPV4;
        }
    }
    return 0;
}

/* authority = host [ ":" port ] (RFC 3986 §3.2); userinfo is refused: it names no CoAP concept and
 * "coap://allowed@evil/" style targets exist only to fool readers. */
static int read_authority(struct span a, struct uri_parts *parts, struct px_fp_target *out,
                          const char **reason)
{
    size_t host_end;
    int st;

    if (memchr(a.p, '@', a.len) != NULL) {
        return fail(reason, "userinfo (user@) is not allowed in the target URI");
    }
    if (a.len > 0 && a.p[0] == '[') {
        st = read_ipv6_literal(a, &host_end, out, reason);
        if (st != 0) {
            return st;
        }
        parts->host = (struct span){a.p + 1, host_end - 2};
    } else {
        const char *colon = memchr(a.p, ':', a.len);
        host_end = colon != NULL ? (size_t)(colon - a.p) : a.len;
        parts->host = (struct span){a.p, host_end};
        st = read_reg_name(parts->host, out, reason);
        if (st != 0) {
            return st;
        }
    }
    if (host_end == a.len) {
        return 0;
    }
    if (a.p[host_end] != ':') {
        return fail(reason, "unexpected characters after the IPv6 literal");
    }
    if (host_end + 1 == a.len) {
        return 0; /* "coap://h:/" : an empty port is the default (RFC 3986 §3.2.3) */
    }
    if (cg_port_parse(a.p + host_end + 1, a.len - host_end - 1, &out->port) != 0) {
        return fail(reason, "the target port must be a number from 1 to 65535");
    }
    out->port_given = true;
    return 0;
}

/* Path and query stay percent-encoded for the per-segment translation, but a byte no URI holds or a
 * malformed escape is refused here, so the error names the target URI. */
static int check_chars(struct span s, const char **reason)
{
    for (size_t i = 0; i < s.len; i++) {
        if (!is_uri_char((unsigned char)s.p[i]) || s.p[i] == '#') {
            return fail(reason, "the target URI holds a character URIs may not contain");
        }
    }
    if (cg_pct_decoded_len(s.p, s.len) < 0) {
        return fail(reason, "the target URI has a malformed percent-escape");
    }
    return 0;
}

/* uri = scheme "://" authority path-abempty [ "?" query ], with no fragment (RFC 7252 §6.1 has none). */
static int split_uri(const char *u, size_t len, struct uri_parts *parts, struct px_fp_target *out,
                     const char **reason)
{
    size_t sl = scheme_len(u, len);
    size_t i, a_end, p_end;
    int st;

    if (memchr(u, '#', len) != NULL) {
        return fail(reason, "a fragment (#...) is not allowed in the target URI");
    }
    if (sl == 0 || len - sl < 3 || memcmp(u + sl, "://", 3) != 0) {
        return fail(reason, "expected coap://host[:port][/path][?query] after the forward-proxy prefix");
    }
    st = read_scheme(u, sl, out, reason);
    if (st != 0) {
        return st;
    }
    i = sl + 3;
    for (a_end = i; a_end < len && u[a_end] != '/' && u[a_end] != '?'; a_end++) {
    }
    st = read_authority((struct span){u + i, a_end - i}, parts, out, reason);
    if (st != 0) {
        return st;
    }
    for (p_end = a_end; p_end < len && u[p_end] != '?'; p_end++) {
    }
    /* path-abempty: "" or "/..." ; the leading '/' is dropped like the route code drops its prefix */
    parts->path = (struct span){u + a_end, p_end - a_end};
    if (parts->path.len > 0) {
        parts->path.p++;
        parts->path.len--;
    }
    parts->has_query = p_end < len;
    if (parts->has_query) {
        parts->query = (struct span){u + p_end + 1, len - p_end - 1};
    }
    st = check_chars(parts->path, reason);
    return st != 0 ? st : check_chars(parts->query, reason);
}

/* Copies host (lower-cased: RFC 3986 §6.2.2.1), path and query into one allocation owned by out. */
static int store(const struct uri_parts *parts, struct px_fp_target *out, const char **reason)
{
    size_t n = parts->host.len + 1 + parts->path.len + 1 + (parts->has_query ? parts->query.len + 1 : 0);
    char *s = malloc(n);
    char *p = s;

    if (s == NULL) {
        *reason = "out of memory";
        return NOMEM;
    }
    out->storage = s;
    out->host = p;
    for (size_t i = 0; i < parts->host.len; i++) {
        *p++ = lower(parts->host.p[i]);
    }
    *p++ = '\0';
    out->path = p;
    memcpy(p, parts->path.p, parts->path.len);
    p += parts->path.len;
    *p++ = '\0';
    if (parts->has_query) {
        out->query = p;
        memcpy(p, parts->query.p, parts->query.len);
        p[parts->query.len] = '\0';
    }
    return 0;
}

/* Parses a whole URI (u[0..len)) and merges in the request's own query. */
static int parse_uri(const char *u, size_t len, const char *query, struct px_fp_target *out,
                     const char **reason)
{
    struct uri_parts parts = {0};
    int st = split_uri(u, len, &parts, out, reason);

    if (st != 0) {
        return st;
    }
    if (query != NULL) {
        if (parts.has_query) {
            return fail(reason, "a query both inside the percent-encoded target URI and after it");
        }
        parts.query = (struct span){query, strlen(query)};
        parts.has_query = true;
        st = check_chars(parts.query, reason);
    }
    return st != 0 ? st : store(&parts, out, reason);
}

/* The encoded form (RFC 8075 §5: the target URI percent-encoded as one segment) is decoded once; what it
 * decodes to is parsed like the default form, its own escapes ("%252F" → "%2F") staying in the path. */
static int parse_encoded(const char *rest, size_t rest_len, const char *query, struct px_fp_target *out,
                         const char **reason)
{
    uint8_t *u;
    long n;
    int st;

    if (memchr(rest, '/', rest_len) != NULL) {
        return fail(reason, "the percent-encoded target URI must be the only path segment after the prefix");
    }
    u = malloc(rest_len + 1);
    if (u == NULL) {
        *reason = "out of memory";
        return NOMEM;
    }
    n = cg_pct_decode(rest, rest_len, u, rest_len);
    st = n < 0 ? fail(reason, "the target URI has a malformed percent-escape")
               : parse_uri((const char *)u, (size_t)n, query, out, reason);
    free(u);
    return st;
}

int px_fp_target_parse(const char *rest, size_t rest_len, const char *query, struct px_fp_target *out,
                       const char **reason)
{
    size_t sl = scheme_len(rest, rest_len);
    int st;

    memset(out, 0, sizeof(*out));
    if (rest_len == 0) {
        return fail(reason, "no target URI after the forward-proxy prefix");
    }
    if (sl > 0 && prefix_nocase(rest + sl, rest_len - sl, "%3a")) {
        st = parse_encoded(rest, rest_len, query, out, reason);
    } else {
        st = parse_uri(rest, rest_len, query, out, reason);
    }
    if (st != 0) {
        px_fp_target_fini(out);
    }
    return st;
}

void px_fp_target_fini(struct px_fp_target *t)
{
    free(t->storage);
    memset(t, 0, sizeof(*t));
}

/* ==== Resolution ================================================================================ */

static int gai_status(int err, const char **reason)
{
    switch (err) {
    case EAI_AGAIN:
        *reason = "the target host's name resolution timed out";
        return 504;
    case EAI_MEMORY:
        *reason = "out of memory";
        return NOMEM;
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        *reason = "the target host is not known";
        return 502;
    default:
        *reason = "the target host could not be resolved";
        return 502;
    }
}

/* Every address must pass: one forbidden address among allowed ones refuses the whole name, since which
 * one a connection would use is the resolver's choice, not ours. */
static int check_all(const struct addrinfo *res, const struct px_fp_target *t,
                     const struct cg_addr_rule *rules, size_t n, const struct addrinfo **first,
                     const char **reason)
{
    *first = NULL;
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        struct sockaddr_storage ss;
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof(ss)) {
            continue;
        }
        memset(&ss, 0, sizeof(ss));
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        if (!cg_addr_allowed(rules, n, &ss, t->port)) {
            *reason = "the target address is not allowed by the forward-proxy allow-list";
            return 403;
        }
        if (*first == NULL) {
            *first = ai;
        }
    }
    if (*first == NULL) {
        *reason = "the target host has no IPv4 or IPv6 address";
        return 502;
    }
    return 0;
}

int px_fp_resolve(const struct px_fp_target *t, const struct cg_addr_rule *rules, size_t n,
                  struct sockaddr_storage *out, socklen_t *out_len, const char **reason)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
    struct addrinfo *res = NULL;
    const struct addrinfo *first;
    int err, st;

    if (t->host == NULL || t->host[0] == '\0') {
        *reason = "the target URI has an empty host";
        return BAD;
    }
    /* Literals never reach DNS; reg-names may be numeric spellings, which glibc reads without DNS too. */
    hints.ai_flags = t->host_kind == PX_FP_HOST_NAME ? 0 : AI_NUMERICHOST;
    err = getaddrinfo(t->host, NULL, &hints, &res);
    if (err != 0) {
        return gai_status(err, reason);
    }
    st = check_all(res, t, rules, n, &first, reason);
    if (st == 0) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        memcpy(&ss, first->ai_addr, first->ai_addrlen); /* check_all bounded ai_addrlen */
        cg_addr_normalize(&ss, t->port, out, out_len);
    }
    freeaddrinfo(res);
    return st;
}
