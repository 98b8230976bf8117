/* proxy/translate: the RFC 8075 HTTP <-> CoAP mapping as static const tables and pure functions.
 * Never does I/O, reads a clock, allocates or keeps state: every input is a parameter and every result an
 * out-parameter, so any thread may call anything here at any time. */
#include "proxy/translate.h"

#include <stdio.h>
#include <string.h>

#include "base/pct.h"

#define MAX_OPT_VALUE 255 /* Uri-Path and Uri-Query are 0..255 bytes (RFC 7252 §5.10) */

/* ==== Tables ==================================================================================== */

/* Outcomes: HTTP status, problem title and slug. */
struct status_row {
    int http;
    const char *title;
    const char *slug;
};

static const struct status_row status_table[] = {
    [PX_OK] = {200, "OK", "ok"},
    [PX_ERR_BAD_REQUEST] = {400, "Bad Request", "bad-request"},
    [PX_ERR_NO_ROUTE] = {404, "No Route", "no-route"},
    [PX_ERR_METHOD_NOT_ALLOWED] = {405, "Method Not Allowed", "method-not-allowed"},
    [PX_ERR_NOT_ACCEPTABLE] = {406, "Not Acceptable", "not-acceptable"},
    [PX_ERR_TOO_LARGE] = {413, "Content Too Large", "content-too-large"},
    [PX_ERR_URI_TOO_LONG] = {414, "URI Too Long", "uri-too-long"},
    [PX_ERR_UNSUPPORTED_MEDIA] = {415, "Unsupported Media Type", "unsupported-media-type"},
    [PX_ERR_INTERNAL] = {500, "Internal Error", "internal-error"},
    [PX_ERR_NOT_IMPLEMENTED] = {501, "Not Implemented", "not-implemented"},
    [PX_ERR_BAD_GATEWAY] = {502, "Upstream Error", "upstream-error"},
    [PX_ERR_UNAVAILABLE] = {503, "Service Unavailable", "service-unavailable"},
    [PX_ERR_TIMEOUT] = {504, "Upstream Timeout", "upstream-timeout"},
    [PX_ERR_PRECONDITION_FAILED] = {412, "Precondition Failed", "precondition-failed"},
    [PX_ERR_UNAUTHORIZED] = {401, "Unauthorized", "unauthorized"},
    [PX_ERR_FORBIDDEN] = {403, "Forbidden", "forbidden"},
    [PX_ERR_RATE_LIMITED] = {429, "Too Many Requests", "too-many-requests"},
    [PX_ERR_HEADERS_TOO_LARGE] = {431, "Request Header Fields Too Large", "header-fields-too-large"},
};

/* HTTP reason phrases (RFC 9110 §15, RFC 6585 §4) for every status this gateway can send. */
static const struct {
    int status;
    const char *reason;
} http_reason_table[] = {
    {200, "OK"},
    {201, "Created"},
    {204, "No Content"},
    {304, "Not Modified"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {409, "Conflict"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {422, "Unprocessable Content"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
};

/* The IANA "CoAP Content-Formats" registry (RFC 7252 §12.3), media types spelled exactly as registered.
 * Left out on purpose: formats with a content coding (11050, 11060, 12000, 12041, 12050) because
 * px_http_response has no Content-Encoding to carry "deflate"/"zstd"; they go out as
 * application/coap-payload;cf=N, which is exact. 282/283 (CMC) are not in the registry any more. */
static const struct media_row {
    uint16_t cf;
    const char *media;
} media_table[] = {
    {0, "text/plain; charset=utf-8"},
    {16, "application/cose; cose-type=\"cose-encrypt0\""},
    {17, "application/cose; cose-type=\"cose-mac0\""},
    {18, "application/cose; cose-type=\"cose-sign1\""},
    {19, "application/ace+cbor"},
    {21, "image/gif"},
    {22, "image/jpeg"},
    {23, "image/png"},
    {40, "application/link-format"},
    {41, "application/xml"},
    {42, "application/octet-stream"},
    {47, "application/exi"},
    {50, "application/json"},
    {51, "application/json-patch+json"},
    {52, "application/merge-patch+json"},
    {60, "application/cbor"},
    {61, "application/cwt"},
    {62, "application/multipart-core"},
    {63, "application/cbor-seq"},
    {64, "application/edhoc+cbor-seq"},
    {65, "application/cid-edhoc+cbor-seq"},
    {96, "application/cose; cose-type=\"cose-encrypt\""},
    {97, "application/cose; cose-type=\"cose-mac\""},
    {98, "application/cose; cose-type=\"cose-sign\""},
    {101, "application/cose-key"},
    {102, "application/cose-key-set"},
    {110, "application/senml+json"},
    {111, "application/sensml+json"},
    {112, "application/senml+cbor"},
    {113, "application/sensml+cbor"},
    {114, "application/senml-exi"},
    {115, "application/sensml-exi"},
    {140, "application/yang-data+cbor; id=sid"},
    {256, "application/coap-group+json"},
    {257, "application/concise-problem-details+cbor"},
    {258, "application/swid+cbor"},
    {259, "application/pkixcmp"},
    {260, "application/yang-sid+json"},
    {261, "application/ace-groupcomm+cbor"},
    {262, "application/ace-trl+cbor"},
    {263, "application/eat+cwt"},
    {264, "application/eat+jwt"},
    {265, "application/eat-bun+cbor"},
    {266, "application/eat-bun+json"},
    {267, "application/eat-ucs+cbor"},
    {268, "application/eat-ucs+json"},
    {269, "application/coap-eap"},
    {271, "application/dots+cbor"},
    {272, "application/missing-blocks+cbor-seq"},
    {280, "application/pkcs7-mime; smime-type=server-generated-key"},
    {281, "application/pkcs7-mime; smime-type=certs-only"},
    {284, "application/pkcs8"},
    {285, "application/csrattrs"},
    {286, "application/pkcs10"},
    {287, "application/pkix-cert"},
    {290, "application/aif+cbor"},
    {291, "application/aif+json"},
    {310, "application/senml+xml"},
    {311, "application/sensml+xml"},
    {320, "application/senml-etch+json"},
    {322, "application/senml-etch+cbor"},
    {340, "application/yang-data+cbor"},
    {341, "application/yang-data+cbor; id=name"},
    {432, "application/td+json"},
    {433, "application/tm+json"},
    {434, "application/sdf+json"},
    {601, "application/uccs+cbor"},
    {10000, "application/vnd.ocf+cbor"},
    {10001, "application/oscore"},
    {10002, "application/javascript"},
    {10003, "application/eat+cwt; eat_profile=\"tag:psacertified.org,2023:psa#tfm\""},
    {10004, "application/eat+cwt; eat_profile=\"tag:psacertified.org,2019:psa#legacy\""},
    {10005, "application/eat+cwt; eat_profile=2.16.840.1.113741.1.16.1"},
    {10570, "application/toc+cbor"},
    {10571, "application/ce+cbor"},
    {10572, "application/toc+cbor;profile=2.16.840.1.113741.1.16.1"},
    {10573, "application/ce+cbor;profile=2.16.840.1.113741.1.16.1"},
    {11542, "application/vnd.oma.lwm2m+tlv"},
    {11543, "application/vnd.oma.lwm2m+json"},
    {11544, "application/vnd.oma.lwm2m+cbor"},
    {20000, "text/css"},
    {30000, "image/svg+xml"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ==== Small string helpers ======================================================================= */

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* ASCII case-insensitive equality of two spans (never locale-dependent). */
static bool ieq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn) {
        return false;
    }
    for (size_t i = 0; i < an; i++) {
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The span of s without surrounding spaces and tabs. */
static const char *trim(const char *s, size_t *n)
{
    while (is_ows(*s)) {
        s++;
    }
    size_t len = strlen(s);
    while (len > 0 && is_ows(s[len - 1])) {
        len--;
    }
    *n = len;
    return s;
}

static bool is_star(const char *v)
{
    size_t n;
    const char *s = trim(v, &n);
    return n == 1 && s[0] == '*';
}

/* A bounded output buffer that is always NUL-terminated; a write that does not fit sets full. */
struct sbuf {
    char *p;
    size_t cap;
    size_t len;
    bool full;
};

static void sb_init(struct sbuf *b, char *p, size_t cap)
{
    b->p = p;
    b->cap = cap;
    b->len = 0;
    b->full = cap == 0;
    if (cap > 0) {
        p[0] = '\0';
    }
}

static size_t sb_room(const struct sbuf *b)
{
    return b->full ? 0 : b->cap - 1 - b->len;
}

static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
    if (n > sb_room(b)) {
        b->full = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

/* Appends bytes percent-encoded (RFC 3986 §2.1, upper-case hex): unreserved characters and those in keep
 * stay as they are, everything else (including '%', non-ASCII and controls) becomes %XX. */
static void sb_pct(struct sbuf *b, const uint8_t *s, size_t n, const char *keep)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     (c != '\0' && strchr("-._~", c)) || (c != '\0' && strchr(keep, c));
        char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
        if (plain) {
            sb_putn(b, (const char *)&s[i], 1);
        } else {
            sb_putn(b, esc, 3);
        }
    }
}

/* ==== Outcomes ==================================================================================== */

/* No default: a new px_status without a row here is a compiler warning (-Wswitch). */
static const struct status_row *status_row(enum px_status status)
{
    switch (status) {
    case PX_OK:
    case PX_ERR_BAD_REQUEST:
    case PX_ERR_NO_ROUTE:
    case PX_ERR_METHOD_NOT_ALLOWED:
    case PX_ERR_NOT_ACCEPTABLE:
    case PX_ERR_TOO_LARGE:
    case PX_ERR_URI_TOO_LONG:
    case PX_ERR_UNSUPPORTED_MEDIA:
    case PX_ERR_INTERNAL:
    case PX_ERR_NOT_IMPLEMENTED:
    case PX_ERR_BAD_GATEWAY:
    case PX_ERR_UNAVAILABLE:
    case PX_ERR_TIMEOUT:
    case PX_ERR_PRECONDITION_FAILED:
    case PX_ERR_UNAUTHORIZED:
    case PX_ERR_FORBIDDEN:
    case PX_ERR_RATE_LIMITED:
    case PX_ERR_HEADERS_TOO_LARGE:
        return &status_table[status];
    }
    return &status_table[PX_ERR_INTERNAL];
}

const char *px_strerror(enum px_status status)
{
    return status_row(status)->title;
}

int px_status_http(enum px_status status)
{
    return status_row(status)->http;
}

const char *px_status_slug(enum px_status status)
{
    return status_row(status)->slug;
}

const char *px_http_reason(int http_status)
{
    for (size_t i = 0; i < COUNT(http_reason_table); i++) {
        if (http_reason_table[i].status == http_status) {
            return http_reason_table[i].reason;
        }
    }
    return "";
}

/* Length of the valid UTF-8 sequence at s (1..4), 0 when the bytes are not UTF-8 (RFC 3629 §4). */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n = c < 0x80                 ? 1
               : c >= 0xc2 && c <= 0xdf ? 2
               : c >= 0xe0 && c <= 0xef ? 3
               : c >= 0xf0 && c <= 0xf4 ? 4
                                        : 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
    }
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] > 0x8f)) {
        return 0; /* overlong, surrogate or above U+10FFFF */
    }
    return n;
}

/* The JSON form of the character at *s (RFC 8259 §7) into unit; advances *s. Invalid UTF-8 -> U+FFFD. */
static size_t json_unit(const char **s, char unit[8])
{
    const unsigned char *c = (const unsigned char *)*s;
    size_t n = utf8_len(c);
    if (n == 0) {
        *s += 1;
        memcpy(unit, "\\ufffd", 6);
        return 6;
    }
    *s += n;
    if (*c == '"' || *c == '\\') {
        unit[0] = '\\';
        unit[1] = (char)*c;
        return 2;
    }
    if (*c < 0x20) {
        return (size_t)snprintf(unit, 8, "\\u%04x", *c);
    }
    memcpy(unit, c, n);
    return n;
}

/* Appends s JSON-escaped, stopping before a character that would leave less than reserve bytes. */
static void json_escape(struct sbuf *b, const char *s, size_t reserve)
{
    while (*s != '\0') {
        char unit[8];
        size_t n = json_unit(&s, unit);
        if (n + reserve > sb_room(b)) {
            return;
        }
        sb_putn(b, unit, n);
    }
}

/* Writes {"type","title","status"[,"detail"]}. When even the fixed members do not fit, falls back to
 * {"status":N}, which fits the documented minimum of 64 bytes. A NULL detail is left out. */
size_t px_problem_json(char *buf, size_t len, enum px_status status, const char *detail)
{
    static const char detail_open[] = ",\"detail\":\"";
    const struct status_row *row = status_row(status);
    char num[16];
    struct sbuf b;
    snprintf(num, sizeof(num), "%d", row->http);
    sb_init(&b, buf, len);
    sb_puts(&b, "{\"type\":\"urn:coapgw:problem:");
    sb_puts(&b, row->slug);
    sb_puts(&b, "\",\"title\":\"");
    sb_puts(&b, row->title);
    sb_puts(&b, "\",\"status\":");
    sb_puts(&b, num);
    if (detail != NULL && sb_room(&b) >= sizeof(detail_open) - 1 + 2) {
        sb_puts(&b, detail_open);
        json_escape(&b, detail, 2);
        sb_puts(&b, "\"");
    }
    sb_puts(&b, "}");
    if (b.full) {
        sb_init(&b, buf, len);
        sb_puts(&b, "{\"status\":");
        sb_puts(&b, num);
        sb_puts(&b, "}");
    }
    return b.len;
}

/* ==== Media types ================================================================================= */

/* Media types are matched like this (RFC 9110 §8.3.1, RFC 8075 §6.4 with the IANA registry):
 * - type/subtype and parameter names are case-insensitive; parameter values are compared
 *   case-insensitively too (charset must be; cose-type and smime-type are never told apart by case);
 *   a quoted value equals the same token unquoted (charset="UTF-8" is charset=utf-8).
 * - every parameter of a registry entry must be present with the same value, except that text/plain
 *   without charset is taken as UTF-8 (its default, US-ASCII, is a subset of UTF-8: RFC 6657 §4);
 *   so text/plain;charset=iso-8859-1 has no Content-Format, and application/cose without cose-type
 *   has none either (we cannot guess which COSE structure it is).
 * - a parameter of the input that the entry does not name is ignored (application/json; charset=utf-8
 *   is 50) unless another entry of the same type names it: then it distinguishes registry entries and
 *   must match one (application/yang-data+cbor; id=sid is 140, ...; id=foo has no Content-Format).
 * - application/coap-payload;cf=N is N (RFC 8075 §6.2), for any N in 0..65535. */
#define MAX_PARAMS 8

struct param {
    const char *name;
    size_t nlen;
    const char *val; /* without the quotes of a quoted-string */
    size_t vlen;
};

struct media {
    const char *type; /* "type/subtype" */
    size_t tlen;
    size_t slash;
    unsigned np;
    struct param p[MAX_PARAMS];
    unsigned q; /* Accept weight in thousandths (RFC 9110 §12.4.2), 1000 when absent */
};

static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static size_t token_len(const char *s, const char *end)
{
    size_t n = 0;
    while (s + n < end && is_tchar(s[n])) {
        n++;
    }
    return n;
}

static const char *skip_ows(const char *s, const char *end)
{
    while (s < end && is_ows(*s)) {
        s++;
    }
    return s;
}

/* name=value with a token or quoted-string value; returns the end, or NULL when malformed. */
static const char *parse_param(const char *s, const char *end, struct param *p)
{
    p->name = s;
    p->nlen = token_len(s, end);
    s += p->nlen;
    if (p->nlen == 0 || s >= end || *s != '=') {
        return NULL;
    }
    s++;
    if (s < end && *s == '"') {
        p->val = ++s;
        while (s < end && *s != '"') {
            s += (*s == '\\' && s + 1 < end) ? 2 : 1;
        }
        if (s >= end) {
            return NULL;
        }
        p->vlen = (size_t)(s - p->val);
        return s + 1;
    }
    p->val = s;
    p->vlen = token_len(s, end);
    return p->vlen == 0 ? NULL : s + p->vlen;
}

/* Weight "0", "0.xyz", "1", "1.000" (RFC 9110 §12.4.2) in thousandths; -1 when malformed. */
static int parse_qvalue(const char *v, size_t n, unsigned *q)
{
    if (n == 0 || (v[0] != '0' && v[0] != '1') || (n > 1 && (v[1] != '.' || n > 5))) {
        return -1;
    }
    unsigned frac = 0;
    for (size_t i = 2; i < 5; i++) {
        if (i < n && (v[i] < '0' || v[i] > '9')) {
            return -1;
        }
        frac = frac * 10 + (i < n ? (unsigned)(v[i] - '0') : 0);
    }
    if (v[0] == '1' && frac != 0) {
        return -1;
    }
    *q = v[0] == '1' ? 1000 : frac;
    return 0;
}

/* Parses type/subtype *(OWS ";" OWS [parameter]) OWS. In an Accept element, "q" ends the media range
 * and what follows it (accept-ext) is ignored. Returns 0, or -1 when malformed. */
static int parse_media(const char *s, const char *end, struct media *m, bool accept)
{
    s = skip_ows(s, end);
    size_t t1 = token_len(s, end);
    if (t1 == 0 || s + t1 >= end || s[t1] != '/') {
        return -1;
    }
    size_t t2 = token_len(s + t1 + 1, end);
    if (t2 == 0) {
        return -1;
    }
    *m = (struct media){.type = s, .tlen = t1 + 1 + t2, .slash = t1, .q = 1000};
    for (s += m->tlen; (s = skip_ows(s, end)) < end;) {
        struct param p;
        if (*s != ';') {
            return -1;
        }
        s = skip_ows(s + 1, end);
        if (s == end || *s == ';') {
            continue;
        }
        if ((s = parse_param(s, end, &p)) == NULL) {
            return -1;
        }
        if (accept && ieq(p.name, p.nlen, "q", 1)) {
            return parse_qvalue(p.val, p.vlen, &m->q);
        }
        if (m->np == MAX_PARAMS) {
            return -1;
        }
        m->p[m->np++] = p;
    }
    return 0;
}

static bool media_is(const struct media *m, const char *type)
{
    return ieq(m->type, m->tlen, type, strlen(type));
}

static const struct param *find_param(const struct media *m, const char *name, size_t nlen)
{
    for (unsigned i = 0; i < m->np; i++) {
        if (ieq(m->p[i].name, m->p[i].nlen, name, nlen)) {
            return &m->p[i];
        }
    }
    return NULL;
}

static bool row_has_type(const struct media_row *row, const struct media *in)
{
    return ieq(row->media, strcspn(row->media, "; "), in->type, in->tlen);
}

static void parse_row(const struct media_row *row, struct media *e)
{
    parse_media(row->media, row->media + strlen(row->media), e, false);
}

/* US-ASCII and its IANA aliases (IANA Character Sets registry): a subset of UTF-8, so text in it is
 * Content-Format 0 as it is (RFC 6657 §4). */
static bool is_ascii_charset(const struct param *p)
{
    static const char *const names[] = {
        "us-ascii",         "ascii",     "us",     "iso-ir-6", "ansi_x3.4-1968", "ansi_x3.4-1986",
        "iso_646.irv:1991", "iso646-us", "ibm367", "cp367",    "csascii"};
    for (size_t i = 0; i < COUNT(names); i++) {
        if (ieq(p->val, p->vlen, names[i], strlen(names[i]))) {
            return true;
        }
    }
    return false;
}

static bool row_params_match(const struct media *e, const struct media *in)
{
    for (unsigned i = 0; i < e->np; i++) {
        const struct param *ep = &e->p[i];
        const struct param *ip = find_param(in, ep->name, ep->nlen);
        bool charset = media_is(in, "text/plain") && ieq(ep->name, ep->nlen, "charset", 7);
        if (charset && (ip == NULL || is_ascii_charset(ip))) {
            continue;
        }
        if (ip == NULL || !ieq(ip->val, ip->vlen, ep->val, ep->vlen)) {
            return false;
        }
    }
    return true;
}

/* Does some registry entry of this type name the parameter? Then it tells entries apart. */
static bool param_distinguishes(const struct media *in, const struct param *p)
{
    for (size_t i = 0; i < COUNT(media_table); i++) {
        struct media e;
        if (!row_has_type(&media_table[i], in)) {
            continue;
        }
        parse_row(&media_table[i], &e);
        if (find_param(&e, p->name, p->nlen) != NULL) {
            return true;
        }
    }
    return false;
}

static bool extra_params_ignorable(const struct media *e, const struct media *in)
{
    for (unsigned i = 0; i < in->np; i++) {
        const struct param *ip = &in->p[i];
        if (find_param(e, ip->name, ip->nlen) == NULL && param_distinguishes(in, ip)) {
            return false;
        }
    }
    return true;
}

static int coap_payload_format(const struct media *in, uint16_t *cf)
{
    const struct param *p = find_param(in, "cf", 2);
    unsigned long v = 0;
    if (p == NULL || p->vlen == 0 || p->vlen > 5) {
        return -1;
    }
    for (size_t i = 0; i < p->vlen; i++) {
        if (p->val[i] < '0' || p->val[i] > '9') {
            return -1;
        }
        v = v * 10 + (unsigned long)(p->val[i] - '0');
    }
    if (v > UINT16_MAX) {
        return -1;
    }
    *cf = (uint16_t)v;
    return 0;
}

static int media_format(const struct media *in, uint16_t *cf)
{
    if (media_is(in, "application/coap-payload")) {
        return coap_payload_format(in, cf);
    }
    for (size_t i = 0; i < COUNT(media_table); i++) {
        struct media e;
        if (!row_has_type(&media_table[i], in)) {
            continue;
        }
        parse_row(&media_table[i], &e);
        if (row_params_match(&e, in) && extra_params_ignorable(&e, in)) {
            *cf = media_table[i].cf;
            return 0;
        }
    }
    return -1;
}

int px_media_to_format(const char *content_type, uint16_t *cf)
{
    struct media m;
    if (content_type == NULL ||
        parse_media(content_type, content_type + strlen(content_type), &m, false) != 0) {
        return -1;
    }
    return media_format(&m, cf);
}

/* Unknown formats are spelled as in RFC 8075 §6.2: "application/coap-payload;cf=60". When buf is too
 * small, writes "" and returns 0. */
size_t px_format_to_media(uint16_t cf, char *buf, size_t len)
{
    struct sbuf b;
    sb_init(&b, buf, len);
    for (size_t i = 0; i < COUNT(media_table); i++) {
        if (media_table[i].cf == cf) {
            sb_puts(&b, media_table[i].media);
            break;
        }
    }
    if (b.len == 0 && !b.full) {
        char num[8];
        snprintf(num, sizeof(num), "%u", (unsigned)cf);
        sb_puts(&b, "application/coap-payload;cf=");
        sb_puts(&b, num);
    }
    if (b.full) {
        sb_init(&b, buf, len);
    }
    return b.len;
}

/* ==== Accept (RFC 9110 §12.5.1, RFC 8075 §6.1) ===================================================== */

/* The next comma-separated element (commas inside quoted-strings do not count). */
static const char *element_end(const char *s)
{
    bool quoted = false;
    for (; *s != '\0' && (quoted || *s != ','); s++) {
        if (*s == '\\' && quoted && s[1] != '\0') {
            s++;
        } else if (*s == '"') {
            quoted = !quoted;
        }
    }
    return s;
}

/* Elements that do not parse as a media range are skipped (robustness, RFC 9110 §2.3); a header made
 * only of such elements counts as absent. Ranges with q=0 are "not acceptable" and never chosen. Any
 * wildcard with q > 0 means the client takes anything: no Accept option (RFC 8075 §6.1: "*" MUST map to
 * no Accept). Otherwise the mappable range with the highest q wins, the first on ties. A list of only
 * unmappable (or q=0) ranges is 406: we answer as the origin would (RFC 9110 §12.5.1 allows either) rather
 * than silently dropping the preference as RFC 8075 §6.1 suggests, as the header contract asks. */
enum px_status px_accept_to_coap(const char *accept, bool *has_accept, uint16_t *cf)
{
    bool any = false;
    unsigned best_q = 0;
    *has_accept = false;
    for (const char *s = accept; s != NULL && *s != '\0';) {
        const char *end = element_end(s);
        struct media m;
        uint16_t f;
        if (parse_media(s, end, &m, true) == 0) {
            any = true;
            bool wildcard = m.type[0] == '*' || m.type[m.slash + 1] == '*';
            if (m.q > 0 && wildcard) {
                *has_accept = false;
                return PX_OK;
            }
            if (m.q > best_q && media_format(&m, &f) == 0) {
                best_q = m.q;
                *cf = f;
                *has_accept = true;
            }
        }
        s = *end == ',' ? end + 1 : end;
    }
    return (*has_accept || !any) ? PX_OK : PX_ERR_NOT_ACCEPTABLE;
}

/* ==== URIs (RFC 7252 §6.4, RFC 3986 §2.1) ========================================================= */

struct item_ctx {
    struct co_optset *set;
    uint16_t number;
    const char **detail;
};

typedef enum px_status (*item_fn)(struct item_ctx *ctx, const char *s, size_t n);

/* Calls fn for every sep-separated item of str, empty ones included ("a//b/" has 4 items). */
static enum px_status each_item(const char *str, char sep, item_fn fn, struct item_ctx *ctx)
{
    for (const char *s = str;;) {
        const char *e = strchr(s, sep);
        enum px_status st = fn(ctx, s, e != NULL ? (size_t)(e - s) : strlen(s));
        if (st != PX_OK || e == NULL) {
            return st;
        }
        s = e + 1;
    }
}

static enum px_status check_item(struct item_ctx *ctx, const char *s, size_t n)
{
    long len = cg_pct_decoded_len(s, n);
    if (len < 0) {
        *ctx->detail = ctx->number == CO_OPT_URI_PATH ? "malformed percent-encoding in the path"
                                                      : "malformed percent-encoding in the query";
        return PX_ERR_BAD_REQUEST;
    }
    if (len > MAX_OPT_VALUE) {
        *ctx->detail = ctx->number == CO_OPT_URI_PATH ? "a path segment is longer than 255 bytes"
                                                      : "a query item is longer than 255 bytes";
        return PX_ERR_URI_TOO_LONG;
    }
    return PX_OK;
}

/* "." and ".." (also spelled %2E) would be removed by any URI normaliser (RFC 3986 §5.2.4), so a
 * device would see a different resource than the HTTP URI names: refuse them. */
static enum px_status check_segment(struct item_ctx *ctx, const char *s, size_t n)
{
    uint8_t v[2];
    enum px_status st = check_item(ctx, s, n);
    long len = st == PX_OK ? cg_pct_decode(s, n, v, sizeof(v)) : -1;
    if (len > 0 && v[0] == '.' && (len == 1 || v[1] == '.')) {
        *ctx->detail = "\".\" and \"..\" path segments are not allowed";
        return PX_ERR_BAD_REQUEST;
    }
    return st;
}

static enum px_status add_item(struct item_ctx *ctx, const char *s, size_t n)
{
    uint8_t v[MAX_OPT_VALUE];
    long len = cg_pct_decode(s, n, v, sizeof(v));
    if (len < 0 || co_optset_add(ctx->set, ctx->number, v, (size_t)len) != 0) {
        *ctx->detail = "too many path segments and query items for one CoAP request";
        return PX_ERR_URI_TOO_LONG;
    }
    return PX_OK;
}

static bool has_path(const struct px_http_request *in)
{
    return in->rest != NULL && in->rest[0] != '\0';
}

static enum px_status check_uri(const struct px_http_request *in, const char *const *base, size_t base_len,
                                const char **detail)
{
    struct item_ctx path = {NULL, CO_OPT_URI_PATH, detail};
    struct item_ctx query = {NULL, CO_OPT_URI_QUERY, detail};
    enum px_status st = PX_OK;
    for (size_t i = 0; i < base_len; i++) {
        if (strlen(base[i]) > MAX_OPT_VALUE) {
            *detail = "a segment of the upstream base path is longer than 255 bytes";
            return PX_ERR_URI_TOO_LONG;
        }
    }
    if (has_path(in)) {
        st = each_item(in->rest, '/', check_segment, &path);
    }
    if (st == PX_OK && in->query != NULL) {
        st = each_item(in->query, '&', check_item, &query);
    }
    return st;
}

/* ==== ETag (RFC 7252 §5.10.6 <-> RFC 9110 §8.8.3) ================================================= */

/* The opaque ETag bytes are written as lower-case hex inside the quotes ("0a1b"): every byte value
 * is representable (entity-tags forbid DQUOTE, controls and DEL), the tag stays short (at most 18
 * characters) and parsing it back is exact. Only strong tags are made: a CoAP ETag is strong. */
size_t px_etag_format(const uint8_t *etag, size_t len, char *buf, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    if (len < 1 || len > 8 || cap < 2 * len + 3) {
        if (cap > 0) {
            buf[0] = '\0';
        }
        return 0;
    }
    buf[0] = '"';
    for (size_t i = 0; i < len; i++) {
        buf[1 + 2 * i] = hex[etag[i] >> 4];
        buf[2 + 2 * i] = hex[etag[i] & 15];
    }
    buf[2 * len + 1] = '"';
    buf[2 * len + 2] = '\0';
    return 2 * len + 2;
}

/* One of our tags: '"', 2..16 lower-case hex digits (an even number), '"'. */
static long parse_etag_span(const char *s, size_t n, uint8_t out[8])
{
    if (n < 4 || n > 18 || n % 2 != 0 || s[0] != '"' || s[n - 1] != '"') {
        return -1;
    }
    for (size_t i = 1; i + 1 < n; i += 2) {
        int hi = cg_hexval(s[i]), lo = cg_hexval(s[i + 1]);
        if (hi < 0 || lo < 0 || (s[i] >= 'A' && s[i] <= 'F') || (s[i + 1] >= 'A' && s[i + 1] <= 'F')) {
            return -1;
        }
        out[i / 2] = (uint8_t)(hi * 16 + lo);
    }
    return (long)(n - 2) / 2;
}

long px_etag_parse(const char *text, uint8_t out[8])
{
    size_t n;
    const char *s = text != NULL ? trim(text, &n) : NULL;
    return s != NULL ? parse_etag_span(s, n, out) : -1;
}

/* Next entity-tag of a comma-separated list (RFC 9110 §13.1.1): 1 with its span (quotes included),
 * 0 at the end, -1 on a syntax error. Empty list elements are skipped (RFC 9110 §5.6.1). */
static int next_etag(const char **p, const char **tag, size_t *n, bool *weak)
{
    const char *s = *p;
    while (is_ows(*s) || *s == ',') {
        s++;
    }
    if (*s == '\0') {
        return 0;
    }
    *weak = s[0] == 'W' && s[1] == '/';
    s += *weak ? 2 : 0;
    const char *close = *s == '"' ? strchr(s + 1, '"') : NULL;
    if (close == NULL) {
        return -1;
    }
    *tag = s;
    *n = (size_t)(close + 1 - s);
    for (s = close + 1; is_ows(*s);) {
        s++;
    }
    *p = s;
    return (*s == ',' || *s == '\0') ? 1 : -1;
}

/* If-Match (RFC 9110 §13.1.1) uses the strong comparison: a weak tag or one this gateway never issued
 * cannot equal the upstream's current ETag, so it is dropped; when nothing is left, the precondition is
 * false whatever the device holds and we answer 412 without asking it. Syntax errors are 400. */
static enum px_status check_if_match(const char *v, const char **detail)
{
    const char *p = v, *tag;
    size_t n;
    bool weak;
    int r, ours = 0;
    uint8_t bytes[8];
    if (v == NULL || is_star(v)) {
        return PX_OK;
    }
    while ((r = next_etag(&p, &tag, &n, &weak)) > 0) {
        ours += !weak && parse_etag_span(tag, n, bytes) > 0;
    }
    if (r < 0) {
        *detail = "If-Match is not a list of entity-tags";
        return PX_ERR_BAD_REQUEST;
    }
    if (ours == 0) {
        *detail = "If-Match names no entity-tag the upstream can have";
        return PX_ERR_PRECONDITION_FAILED;
    }
    return PX_OK;
}

/* "*" is an empty If-Match: "the resource exists" (RFC 7252 §5.10.8.1); each tag of ours is one option. */
static int add_if_match(struct co_optset *set, const char *v)
{
    const char *p = v, *tag;
    size_t n;
    bool weak;
    uint8_t bytes[8];
    if (v == NULL) {
        return 0;
    }
    if (is_star(v)) {
        return co_optset_add(set, CO_OPT_IF_MATCH, NULL, 0);
    }
    while (next_etag(&p, &tag, &n, &weak) > 0) {
        long len = weak ? -1 : parse_etag_span(tag, n, bytes);
        if (len > 0 && co_optset_add(set, CO_OPT_IF_MATCH, bytes, (size_t)len) != 0) {
            return -1;
        }
    }
    return 0;
}

/* If-None-Match: * (RFC 7252 §5.10.8.2) goes upstream only on unsafe methods: on GET/FETCH the HTTP
 * meaning (304 when it exists) is not CoAP's (4.12), and entity-tags are for the cache, never sent. */
static int add_if_none_match(struct co_optset *set, const char *v, uint8_t code)
{
    if (v == NULL || !is_star(v) || code == CO_GET || code == CO_FETCH) {
        return 0;
    }
    return co_optset_add(set, CO_OPT_IF_NONE_MATCH, NULL, 0);
}

/* CoAP's If-None-Match is empty: it can only say "*" (RFC 7252 §5.10.8.2). Entity-tags on a method that
 * changes the resource would be a precondition the device cannot evaluate, so they are refused, never
 * dropped. On GET and FETCH they are the cache's business (a 304 from a stored entry). */
static enum px_status check_if_none_match(const char *v, uint8_t code, const char **detail)
{
    if (v == NULL || is_star(v) || code == CO_GET || code == CO_FETCH) {
        return PX_OK;
    }
    *detail = "If-None-Match with entity-tags cannot be expressed in CoAP (only If-None-Match: *)";
    return PX_ERR_NOT_IMPLEMENTED;
}

/* ==== Request: HTTP -> CoAP ======================================================================= */

struct formats {
    bool has_cf;
    uint16_t cf;
    bool has_accept;
    uint16_t accept;
};

/* A body without Content-Type goes without Content-Format: both say "format unspecified" (RFC 9110
 * §8.3, RFC 7252 §5.10.3); no Content-Format without a payload. */
static enum px_status plan_formats(const struct px_http_request *in, bool has_body, struct formats *f,
                                   const char **detail)
{
    *f = (struct formats){0};
    if (has_body && in->content_type != NULL) {
        if (px_media_to_format(in->content_type, &f->cf) != 0) {
            *detail = "Content-Type has no CoAP Content-Format; application/coap-payload;cf=N names one";
            return PX_ERR_UNSUPPORTED_MEDIA;
        }
        f->has_cf = true;
    }
    if (px_accept_to_coap(in->accept, &f->has_accept, &f->accept) != PX_OK) {
        *detail = "Accept lists no media type that has a CoAP Content-Format";
        return PX_ERR_NOT_ACCEPTABLE;
    }
    return PX_OK;
}

static enum px_status add_uri_path(const struct px_http_request *in, const char *const *base, size_t base_len,
                                   struct co_optset *set, const char **detail)
{
    struct item_ctx path = {set, CO_OPT_URI_PATH, detail};
    for (size_t i = 0; i < base_len; i++) {
        if (co_optset_add(set, CO_OPT_URI_PATH, base[i], strlen(base[i])) != 0) {
            *detail = "too many path segments and query items for one CoAP request";
            return PX_ERR_URI_TOO_LONG;
        }
    }
    return has_path(in) ? each_item(in->rest, '/', add_item, &path) : PX_OK;
}

/* Options go in ascending number order, as on the wire: If-Match 1, If-None-Match 5, Uri-Path 11,
 * Content-Format 12, Uri-Query 15, Accept 17. */
static enum px_status emit(const struct px_http_request *in, const char *const *base, size_t base_len,
                           const struct formats *f, struct px_coap_request *out, const char **detail)
{
    struct co_optset *set = &out->opts;
    struct item_ctx query = {set, CO_OPT_URI_QUERY, detail};
    enum px_status st = PX_ERR_URI_TOO_LONG;
    *detail = "too many options for one CoAP request";
    if (add_if_match(set, in->if_match) != 0 || add_if_none_match(set, in->if_none_match, out->code) != 0) {
        return st;
    }
    if ((st = add_uri_path(in, base, base_len, set, detail)) != PX_OK) {
        return st;
    }
    if (f->has_cf && co_optset_add_uint(set, CO_OPT_CONTENT_FORMAT, f->cf) != 0) {
        return PX_ERR_URI_TOO_LONG;
    }
    if (in->query != NULL && (st = each_item(in->query, '&', add_item, &query)) != PX_OK) {
        return st;
    }
    if (f->has_accept && co_optset_add_uint(set, CO_OPT_ACCEPT, f->accept) != 0) {
        return PX_ERR_URI_TOO_LONG;
    }
    *detail = NULL;
    return PX_OK;
}

/* Checks run in the order HTTP wants the answers: method (501), URI (400/414), media (415/406), and
 * preconditions last (412, RFC 9110 §13.2.1). A GET/DELETE/HEAD body is ignored: CoAP has no payload
 * for them (RFC 7252 §5.8). */
enum px_status px_request_to_coap(const struct px_http_request *in, const char *const *base, size_t base_len,
                                  struct px_coap_request *out, const char **detail)
{
    const char *unused;
    struct formats f;
    enum px_status st;
    detail = detail != NULL ? detail : &unused;
    *detail = NULL;
    out->code = 0;
    out->head = false;
    out->has_body = false;
    co_optset_clear(&out->opts);
    if ((out->code = co_method_from_http(in->method, &out->head)) == 0) {
        *detail = "the method has no CoAP equivalent";
        return PX_ERR_NOT_IMPLEMENTED;
    }
    out->has_body = in->body_len > 0 && co_method_has_payload(out->code);
    if ((st = check_uri(in, base, base_len, detail)) != PX_OK ||
        (st = plan_formats(in, out->has_body, &f, detail)) != PX_OK ||
        (st = check_if_match(in->if_match, detail)) != PX_OK ||
        (st = check_if_none_match(in->if_none_match, out->code, detail)) != PX_OK) {
        return st;
    }
    return emit(in, base, base_len, &f, out, detail);
}

/* ==== Response: CoAP -> HTTP ====================================================================== */

int px_code_to_http(uint8_t code, bool has_payload, bool allow_known)
{
    const struct co_code_info *row = co_code_info(code);
    if (row == NULL) {
        return 0;
    }
    if ((row->flags & CO_EMPTY_204) && !has_payload) {
        return 204;
    }
    if ((row->flags & CO_ALLOW_405) && allow_known) {
        return 405;
    }
    return row->http;
}

bool px_observe_is_newer(uint32_t v1, uint64_t t1_ms, uint32_t v2, uint64_t t2_ms)
{
    const uint32_t half = 1u << 23;
    v1 &= 0xffffffu;
    v2 &= 0xffffffu;
    return (v1 < v2 && v2 - v1 < half) || (v1 > v2 && v1 - v2 > half) || t2_ms > t1_ms + 128000u;
}

static const struct co_opt *response_opt(const struct px_coap_response *in, uint16_t number, unsigned from)
{
    return in->opts != NULL ? co_optset_find(in->opts, number, from) : NULL;
}

/* Without Content-Format, an error payload is a diagnostic message, UTF-8 text (RFC 7252 §5.5.2), and a
 * success payload is opaque bytes: say so rather than let the client sniff. */
static void set_content_type(const struct px_coap_response *in, struct px_http_response *out)
{
    const struct co_opt *o = response_opt(in, CO_OPT_CONTENT_FORMAT, 0);
    if (in->payload_len == 0 || !out->send_body) {
        return;
    }
    if (o != NULL && o->len <= 2) {
        px_format_to_media((uint16_t)co_opt_uint(co_opt_value(in->opts, o), o->len), out->content_type,
                           sizeof(out->content_type));
    } else if (CO_CODE_CLASS(in->code) == 2) {
        snprintf(out->content_type, sizeof(out->content_type), "application/octet-stream");
    } else {
        snprintf(out->content_type, sizeof(out->content_type), "text/plain; charset=utf-8");
    }
}

/* Location-Path must start with the upstream base path (else no Location: the target is outside the
 * route); the rest goes under route_prefix, each segment percent-encoded as a pchar (RFC 3986 §3.3).
 * A "." or ".." segment would be resolved away by the client, so it also yields no Location. Returns the
 * index of the first segment after the base, or -1. */
static int location_start(const struct px_coap_response *in, const char *const *base, size_t base_len)
{
    unsigned from = 0;
    for (size_t b = 0; b < base_len; b++) {
        const struct co_opt *o = response_opt(in, CO_OPT_LOCATION_PATH, from);
        if (o == NULL || o->len != strlen(base[b]) ||
            memcmp(co_opt_value(in->opts, o), base[b], o->len) != 0) {
            return -1;
        }
        from = (unsigned)(o - in->opts->opt) + 1;
    }
    return (int)from;
}

static bool is_dot_segment(const uint8_t *v, size_t n)
{
    return (n == 1 && v[0] == '.') || (n == 2 && v[0] == '.' && v[1] == '.');
}

static bool put_location_path(struct sbuf *b, const struct px_coap_response *in, unsigned from,
                              const char *prefix)
{
    size_t plen = strlen(prefix);
    bool first = true;
    sb_puts(b, prefix);
    if (plen == 0 || prefix[plen - 1] != '/') {
        sb_puts(b, "/");
    }
    for (const struct co_opt *o = response_opt(in, CO_OPT_LOCATION_PATH, from); o != NULL;
         o = response_opt(in, CO_OPT_LOCATION_PATH, (unsigned)(o - in->opts->opt) + 1)) {
        const uint8_t *v = co_opt_value(in->opts, o);
        if (is_dot_segment(v, o->len)) {
            return false;
        }
        sb_puts(b, first ? "" : "/");
        sb_pct(b, v, o->len, "!$&'()*+,;=:@");
        first = false;
    }
    return true;
}

/* Location-Query items joined with '&'; '&' and '+' inside an item are encoded so that neither splits
 * nor turns into a space on the way back. */
static void put_location_query(struct sbuf *b, const struct px_coap_response *in)
{
    char sep = '?';
    for (const struct co_opt *o = response_opt(in, CO_OPT_LOCATION_QUERY, 0); o != NULL;
         o = response_opt(in, CO_OPT_LOCATION_QUERY, (unsigned)(o - in->opts->opt) + 1)) {
        sb_putn(b, &sep, 1);
        sb_pct(b, co_opt_value(in->opts, o), o->len, "!$'()*,;=:@/?");
        sep = '&';
    }
}

/* Only Location-Query: the relative reference "?q" (RFC 3986 §5.2.2 keeps the request path, as CoAP
 * does, RFC 7252 §5.10.7). A Location that does not fit is left out rather than cut. */
static void set_location(const struct px_coap_response *in, const char *prefix, const char *const *base,
                         size_t base_len, struct px_http_response *out)
{
    struct sbuf b;
    bool has_path = response_opt(in, CO_OPT_LOCATION_PATH, 0) != NULL;
    int start = has_path ? location_start(in, base, base_len) : 0;
    sb_init(&b, out->location, sizeof(out->location));
    if (start < 0 ||
        (has_path && !put_location_path(&b, in, (unsigned)start, prefix != NULL ? prefix : "/"))) {
        sb_init(&b, out->location, sizeof(out->location));
        return;
    }
    put_location_query(&b, in);
    if (b.full) {
        sb_init(&b, out->location, sizeof(out->location));
    }
}

static void set_etag(const struct px_coap_response *in, struct px_http_response *out)
{
    const struct co_opt *o = response_opt(in, CO_OPT_ETAG, 0);
    if (o != NULL && CO_CODE_CLASS(in->code) == 2) {
        px_etag_format(co_opt_value(in->opts, o), o->len, out->etag, sizeof(out->etag));
    }
}

enum px_status px_response_to_http(const struct px_coap_response *in, const char *route_prefix,
                                   const char *const *base, size_t base_len, const char *allow,
                                   struct px_http_response *out)
{
    const struct co_code_info *row = co_code_info(in->code);
    bool allow_known = allow != NULL && strlen(allow) < sizeof(out->allow);
    *out = (struct px_http_response){.max_age = -1, .retry_after = -1, .send_body = true};
    if (row == NULL || row->http == 0) {
        return PX_ERR_BAD_GATEWAY;
    }
    out->status = px_code_to_http(in->code, in->payload_len > 0, allow_known);
    out->send_body = out->status != 204 && out->status != 304;
    if (out->status == 405) {
        snprintf(out->allow, sizeof(out->allow), "%s", allow);
    }
    if (row->flags & CO_CACHEABLE) {
        out->max_age = (long)co_max_age(in->opts);
    }
    if (row->flags & CO_RETRY_AFTER) {
        out->retry_after = (long)co_max_age(in->opts);
    }
    set_content_type(in, out);
    set_etag(in, out);
    set_location(in, route_prefix, base, base_len, out);
    return PX_OK;
}
