/* fuzz/fuzz_headers: libFuzzer harness for the request header parsers: Accept and Content-Type
 * (proxy/translate), Cache-Control, Pragma and If-None-Match (proxy/policy), If-Match and entity-tags, and
 * the framing fields gateway/vet checks (Host, Content-Length, Transfer-Encoding, Content-Encoding).
 * Must never crash, leak or read out of bounds, and what they return must hold together. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/vet.c" /* scan_field, host_valid, length_valid, framing: static */

#include "proxy/policy.h"
#include "proxy/translate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* gateway/vet.c's refusal path (never taken here) calls into the rest of the front end. */
bool gw_dl_enter(struct gw_dl *dl, struct gw_dl_conn *c, enum gw_dl_phase phase)
{
    (void)dl;
    (void)c;
    (void)phase;
    abort();
}

enum MHD_Result gw_render_refusal(struct request *r, enum px_status st, const char *detail,
                                  const char *accept_encoding)
{
    (void)r;
    (void)st;
    (void)detail;
    (void)accept_encoding;
    abort();
}

/* Each header value gets an allocation of exactly its length + 1, so a read past its NUL is caught. */
static char *take(const uint8_t *d, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL) {
        abort();
    }
    memcpy(s, d, n);
    s[n] = '\0';
    return s;
}

static void media(const char *v)
{
    uint16_t cf, back;
    char buf[96];

    if (px_media_to_format(v, &cf) == 0) {
        /* The media type written for a format maps back to it (the registry table is one-to-one). */
        size_t n = px_format_to_media(cf, buf, sizeof(buf));
        if (n == 0 || n >= sizeof(buf) || px_media_to_format(buf, &back) != 0 || back != cf) {
            abort();
        }
    }
}

static void accept_header(const char *v)
{
    bool has = true;
    uint16_t cf = 0;
    enum px_status st = px_accept_to_coap(v, &has, &cf);
    if (st != PX_OK && st != PX_ERR_NOT_ACCEPTABLE) {
        abort();
    }
    if (st == PX_OK && v[0] == '\0' && has) {
        abort(); /* an empty Accept sends no Accept option */
    }
}

static void etags(const char *v)
{
    uint8_t tag[8], again[8];
    char text[24];
    long n = px_etag_parse(v, tag);
    if (n == 0 || n > 8) {
        abort();
    }
    if (n > 0) {
        size_t len = px_etag_format(tag, (size_t)n, text, sizeof(text));
        if (len == 0 || strstr(v, text) == NULL || px_etag_parse(text, again) != n ||
            memcmp(tag, again, (size_t)n) != 0) {
            abort(); /* parse and format are inverses (up to the OWS parse trims) */
        }
    }
}

static void conditions(const char *cc, const char *pragma, const char *inm, const uint8_t *etag, size_t elen)
{
    struct px_conditions c = PX_CONDITIONS_INIT;
    struct co_optset opts = CO_OPTSET_INIT;

    px_conditions_parse_cache(&c, cc, pragma);
    px_conditions_parse_inm(&c, inm);
    if (c.max_age < -1 || c.min_fresh < -1 || (c.inm_count > 0 && c.inm == NULL)) {
        abort();
    }
    for (unsigned i = 0; i < c.inm_count; i++) {
        if (c.inm[i].len < 1 || c.inm[i].len > 8) {
            abort();
        }
    }
    if (px_conditions_has_inm(&c) != (c.inm_star || c.inm_count > 0)) {
        abort();
    }
    px_conditions_accept_fresh(&c, (uint32_t)elen * 7u, (uint32_t)elen * 3u);
    co_optset_add(&opts, CO_OPT_ETAG, etag, elen > 8 ? 8 : elen);
    bool nm = px_conditions_not_modified(&c, &opts);
    if (c.inm_star && !nm) {
        abort();
    }
    /* A tag that was listed matches its own ETag. */
    if (c.inm_count > 0) {
        co_optset_clear(&opts);
        co_optset_add(&opts, CO_OPT_ETAG, c.inm[0].bytes, c.inm[0].len);
        if (!px_conditions_not_modified(&c, &opts)) {
            abort();
        }
    }
    co_optset_fini(&opts);
    px_conditions_fini(&c);
}

/* Each line of v (split in place) is one header field named name, as libmicrohttpd hands them over. */
static void fields(struct scan *sc, const char *name, char *v)
{
    char *save = NULL;
    for (char *line = v != NULL ? strtok_r(v, "\n", &save) : NULL; line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        scan_field(sc, MHD_HEADER_KIND, name, line);
    }
}

static bool digits(const char *v)
{
    if (*v == '\0') {
        return false;
    }
    for (; *v != '\0'; v++) {
        if (*v < '0' || *v > '9') {
            return false;
        }
    }
    return true;
}

/* gateway/vet's framing verdict over Content-Encoding, Content-Length and Transfer-Encoding lines, and its
 * Host check. */
static void framing_fields(const char *ce, const char *cl, const char *te, const char *host)
{
    struct scan sc = {0};
    const char *detail = NULL;
    char *ce_c = ce != NULL ? strdup(ce) : NULL, *cl_c = cl != NULL ? strdup(cl) : NULL;
    char *te_c = te != NULL ? strdup(te) : NULL;
    bool too_big;

    fields(&sc, MHD_HTTP_HEADER_CONTENT_ENCODING, ce_c);
    fields(&sc, MHD_HTTP_HEADER_CONTENT_LENGTH, cl_c);
    fields(&sc, MHD_HTTP_HEADER_TRANSFER_ENCODING, te_c);
    enum px_status st = framing(&sc, true, &detail);
    if (st == PX_OK && sc.te_n > 0 &&
        (sc.cl_n > 0 || sc.te_n != 1 || sc.te_last_len != 7 || strncasecmp(sc.te_last, "chunked", 7) != 0)) {
        abort(); /* a body framed by Transfer-Encoding is chunked alone (RFC 9112 §6.1, §6.3) */
    }
    if (st == PX_OK && sc.cl_n > 0 && (sc.cl_differ || !digits(sc.cl))) {
        abort(); /* one Content-Length value, 1*DIGIT */
    }
    if (st != PX_OK && detail == NULL) {
        abort();
    }
    if (sc.cl_n > 0 && digits(sc.cl)) {
        errno = 0;
        unsigned long long n = strtoull(sc.cl, NULL, 10);
        (void)n;
        if (length_valid(sc.cl, &too_big) != true || too_big != (errno == ERANGE)) {
            abort(); /* "too big" is exactly "does not fit 64 bits" */
        }
    }
    if (host != NULL && host_valid(host)) {
        for (const unsigned char *p = (const unsigned char *)host; *p != '\0'; p++) {
            if (*p <= ' ' || *p >= 0x7f || strchr("/?#@\\", *p) != NULL) {
                abort(); /* a Host that passes is an authority: no path, query, userinfo or control byte */
            }
        }
    }
    free(ce_c);
    free(cl_c);
    free(te_c);
}

/* Input: up to five NUL-separated values: Content-Type/Accept/If-Match (also Content-Encoding),
 * Cache-Control (also Content-Length lines), Pragma (also Transfer-Encoding lines), If-None-Match (also
 * Host), and the bytes of the answer's ETag. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[5] = {NULL};
    size_t len[5] = {0};
    size_t k = 0, start = 0;

    for (size_t i = 0; i <= size && k < 5; i++) {
        if (i == size || data[i] == '\0') {
            part[k] = data + start;
            len[k++] = i - start;
            start = i + 1;
        }
    }
    char *v[4];
    for (size_t i = 0; i < 4; i++) {
        v[i] = part[i] != NULL ? take(part[i], len[i]) : NULL;
    }
    media(v[0]);
    accept_header(v[0]);
    etags(v[0]);
    conditions(v[1], v[2], v[3], part[4] != NULL ? part[4] : data, part[4] != NULL ? len[4] : 0);
    framing_fields(v[0], v[1], v[2], v[3]);
    for (size_t i = 0; i < 4; i++) {
        free(v[i]);
    }
    return 0;
}
