/* proxy/fproxy: RFC 8075 §5 forward-proxy targets, the target allow-list and the checked resolution.
 * Parsing and checking are pure (no I/O, no state); px_fp_resolve is the only function that does I/O. */
#include "proxy/fproxy.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

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

/* Reads 1..65535 from s[0..len) (digits only). Returns 0 or -1. */
static int parse_port(const char *s, size_t len, uint16_t *port)
{
    unsigned long v = 0;
    if (len == 0) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_digit((unsigned char)s[i])) {
            return -1;
        }
        v = v * 10 + (unsigned long)(s[i] - '0');
        if (v > 65535) {
            return -1;
        }
    }
    if (v == 0) {
        return -1;
    }
    *port = (uint16_t)v;
    return 0;
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
    if (parse_port(a.p + host_end + 1, a.len - host_end - 1, &out->port) != 0) {
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

/* ==== Allow-list rules ========================================================================== */

static const char rule_syntax[] =
    "expected IPV4[/LEN][:PORT], [IPV6][/LEN][:PORT] or IPV6[/LEN] (PORT 1..65535 or *)";

static const uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Reads "/LEN" (decimal, 0..max, at most 3 digits) from s[0..len). */
static int parse_len(const char *s, size_t len, unsigned max, unsigned *out)
{
    unsigned v = 0;
    if (len == 0 || len > 3) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_digit((unsigned char)s[i])) {
            return -1;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

static bool host_bits_set(const uint8_t *addr, unsigned len, unsigned bits)
{
    for (unsigned b = len; b < bits; b++) {
        if (addr[b / 8] & (0x80u >> (b % 8))) {
            return true;
        }
    }
    return false;
}

/* The address text of a rule in a bounded, NUL-terminated copy (inet_pton wants a string). */
static int read_rule_addr(int family, const char *s, size_t len, struct px_fp_rule *out, const char **reason)
{
    char text[INET6_ADDRSTRLEN];

    if (memchr(s, '%', len) != NULL) {
        *reason = "zone ids are not allowed in a rule";
        return -1;
    }
    if (len == 0 || len >= sizeof(text)) {
        *reason = family == AF_INET ? "invalid IPv4 address" : "invalid IPv6 address";
        return -1;
    }
    memcpy(text, s, len);
    text[len] = '\0';
    out->family = family;
    if (inet_pton(family, text, out->addr) != 1) {
        *reason = family == AF_INET ? "invalid IPv4 address (four decimal octets)" : "invalid IPv6 address";
        return -1;
    }
    return 0;
}

/* A rule's address, length and port texts. */
struct rule_text {
    int family;
    struct span addr, len, port;
    bool has_len, has_port;
};

/* Splits a rule by the grammar in the header. Returns 0 or -1 (syntax). */
static int split_rule(const char *s, struct rule_text *r)
{
    size_t n = strlen(s);
    const char *end = s + n;
    const char *p;

    memset(r, 0, sizeof(*r));
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL) {
            return -1;
        }
        r->family = AF_INET6;
        r->addr = (struct span){s + 1, (size_t)(close - s) - 1};
        p = close + 1;
    } else {
        const char *stop = s + strcspn(s, "/");
        const char *colon = memchr(s, ':', (size_t)(stop - s));
        /* An IPv6 address has at least two ':'; "ADDRESS:PORT" has one. */
        r->family = colon != NULL && memchr(colon + 1, ':', (size_t)(stop - colon - 1)) ? AF_INET6 : AF_INET;
        /* A bare IPv6 address takes every ':'; only IPv4 and bracketed IPv6 rules name a port. */
        p = r->family == AF_INET6 ? stop : s + strcspn(s, "/:");
        r->addr = (struct span){s, (size_t)(p - s)};
    }
    if (*p == '/') {
        const char *q = p + 1 + strcspn(p + 1, ":");
        if (r->family == AF_INET6 && s[0] != '[' && *q == ':') {
            return -1;
        }
        r->has_len = true;
        r->len = (struct span){p + 1, (size_t)(q - p - 1)};
        p = q;
    }
    if (*p == ':') {
        r->has_port = true;
        r->port = (struct span){p + 1, (size_t)(end - p - 1)};
        p = end;
    }
    return p == end ? 0 : -1;
}

/* A rule written in the IPv4-mapped space means the IPv4 rule, since that is how addresses are checked. */
static void unmap_rule(struct px_fp_rule *out)
{
    if (out->family == AF_INET6 && out->len >= 96 && memcmp(out->addr, mapped_prefix, 12) == 0) {
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->family = AF_INET;
        out->len -= 96;
    }
}

int px_fp_rule_parse(const char *s, struct px_fp_rule *out, const char **reason)
{
    struct rule_text r;
    unsigned bits;

    memset(out, 0, sizeof(*out));
    if (s == NULL || s[0] == '\0') {
        *reason = "empty rule";
        return -1;
    }
    if (split_rule(s, &r) != 0) {
        *reason = rule_syntax;
        return -1;
    }
    if (read_rule_addr(r.family, r.addr.p, r.addr.len, out, reason) != 0) {
        return -1;
    }
    bits = r.family == AF_INET ? 32 : 128;
    out->len = bits;
    if (r.has_len && parse_len(r.len.p, r.len.len, bits, &out->len) != 0) {
        *reason = r.family == AF_INET ? "prefix length must be 0..32" : "prefix length must be 0..128";
        return -1;
    }
    if (host_bits_set(out->addr, out->len, bits)) {
        *reason = "address bits are set beyond the prefix length";
        return -1;
    }
    if (r.has_port && !(r.port.len == 1 && r.port.p[0] == '*') &&
        parse_port(r.port.p, r.port.len, &out->port) != 0) {
        *reason = "port must be 1..65535 or *";
        return -1;
    }
    unmap_rule(out);
    return 0;
}

/* ==== Checking an address ======================================================================= */

/* An address reduced to what is checked: IPv4-mapped IPv6 becomes IPv4 (RFC 4291 §2.5.5.2), because a
 * dual-stack socket sends ::ffff:a.b.c.d as IPv4 to a.b.c.d. */
struct addr {
    int family;
    uint8_t b[16];
    unsigned bits;
};

static bool reduce(const struct sockaddr_storage *ss, struct addr *a)
{
    memset(a, 0, sizeof(*a));
    if (ss->ss_family == AF_INET) {
        memcpy(a->b, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        a->family = AF_INET;
        a->bits = 32;
        return true;
    }
    if (ss->ss_family == AF_INET6) {
        const uint8_t *v6 = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
        if (memcmp(v6, mapped_prefix, 12) == 0) {
            memcpy(a->b, v6 + 12, 4);
            a->family = AF_INET;
            a->bits = 32;
        } else {
            memcpy(a->b, v6, 16);
            a->family = AF_INET6;
            a->bits = 128;
        }
        return true;
    }
    return false;
}

static bool in_prefix(const uint8_t *a, const uint8_t *net, unsigned len)
{
    unsigned whole = len / 8, rest = len % 8;
    if (memcmp(a, net, whole) != 0) {
        return false;
    }
    return rest == 0 || ((a[whole] ^ net[whole]) & (0xffu << (8 - rest)) & 0xffu) == 0;
}

static bool host_bits_all_one(const uint8_t *a, unsigned len)
{
    for (unsigned b = len; b < 32; b++) {
        if (!(a[b / 8] & (0x80u >> (b % 8)))) {
            return false;
        }
    }
    return true;
}

/* 0.0.0.0/8 ("this network", RFC 1122 §3.2.1.3: a source only) and :: (RFC 4291 §2.5.2: never a
 * destination); Linux connects 0.0.0.0 to the local host, a classic way around loopback rules. */
static bool unspecified(const struct addr *a)
{
    static const uint8_t zero[16];
    return a->family == AF_INET ? a->b[0] == 0 : memcmp(a->b, zero, 16) == 0;
}

static bool multicast(const struct addr *a)
{
    return a->family == AF_INET ? (a->b[0] & 0xf0) == 0xe0 : a->b[0] == 0xff;
}

static bool limited_broadcast(const struct addr *a)
{
    return a->family == AF_INET && host_bits_all_one(a->b, 0);
}

/* One rule against one address; multicast and broadcast only when the rule names them (see the header). */
static bool rule_matches(const struct px_fp_rule *r, const struct addr *a, uint16_t port)
{
    if (r->family != a->family || (r->port != 0 && r->port != port) || !in_prefix(a->b, r->addr, r->len)) {
        return false;
    }
    if (multicast(a)) {
        return r->len >= (a->family == AF_INET ? 4u : 8u); /* the rule lies inside multicast space */
    }
    if (limited_broadcast(a)) {
        return r->len == 32;
    }
    /* /31 (RFC 3021) and /32 have no broadcast address; a wider rule's all-ones host is its broadcast. */
    return !(a->family == AF_INET && r->len <= 30 && host_bits_all_one(a->b, r->len));
}

bool px_fp_addr_allowed(const struct px_fp_rule *rules, size_t n, const struct sockaddr_storage *addr,
                        uint16_t port)
{
    struct addr a;

    if (!reduce(addr, &a) || unspecified(&a)) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (rule_matches(&rules[i], &a, port)) {
            return true;
        }
    }
    return false;
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

/* Writes the address to connect to, with the target's port; a mapped address as the IPv4 it means. */
static void write_out(const struct sockaddr_storage *ss, uint16_t port, struct sockaddr_storage *out,
                      socklen_t *out_len)
{
    struct addr a;

    reduce(ss, &a);
    memset(out, 0, sizeof(*out));
    if (a.family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)out;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        memcpy(&in->sin_addr, a.b, 4);
        *out_len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
        memcpy(in6, ss, sizeof(*in6)); /* keeps flowinfo and scope (always 0: zones are refused) */
        in6->sin6_port = htons(port);
        *out_len = sizeof(*in6);
    }
}

/* Every address must pass: one forbidden address among allowed ones refuses the whole name, since which
 * one a connection would use is the resolver's choice, not ours. */
static int check_all(const struct addrinfo *res, const struct px_fp_target *t, const struct px_fp_rule *rules,
                     size_t n, const struct addrinfo **first, const char **reason)
{
    *first = NULL;
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        struct sockaddr_storage ss;
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof(ss)) {
            continue;
        }
        memset(&ss, 0, sizeof(ss));
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        if (!px_fp_addr_allowed(rules, n, &ss, t->port)) {
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

int px_fp_resolve(const struct px_fp_target *t, const struct px_fp_rule *rules, size_t n,
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
        write_out(&ss, t->port, out, out_len);
    }
    freeaddrinfo(res);
    return st;
}
