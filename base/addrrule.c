/* base/addrrule: allow-list rules and the address check. */
#include "base/addrrule.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

struct span {
    const char *p;
    size_t len;
};

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Reads 1..65535 from s[0..len) (digits only). Returns 0 or -1. */
int cg_port_parse(const char *s, size_t len, uint16_t *port)
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
static int read_rule_addr(int family, const char *s, size_t len, struct cg_addr_rule *out,
                          const char **reason)
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
static void unmap_rule(struct cg_addr_rule *out)
{
    if (out->family == AF_INET6 && out->len >= 96 && memcmp(out->addr, mapped_prefix, 12) == 0) {
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->family = AF_INET;
        out->len -= 96;
    }
}

int cg_addr_rule_parse(const char *s, struct cg_addr_rule *out, const char **reason)
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
        cg_port_parse(r.port.p, r.port.len, &out->port) != 0) {
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
static bool rule_matches(const struct cg_addr_rule *r, const struct addr *a, uint16_t port)
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

bool cg_addr_allowed(const struct cg_addr_rule *rules, size_t n, const struct sockaddr_storage *addr,
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

/* Writes the address to connect to, with the target's port; a mapped address as the IPv4 it means. */
void cg_addr_normalize(const struct sockaddr_storage *ss, uint16_t port, struct sockaddr_storage *out,
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
