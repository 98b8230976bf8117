/* fuzz/fuzz_headers: libFuzzer harness for the request header parsers: Accept and Content-Type
 * (proxy/translate), Cache-Control, Pragma and If-None-Match (proxy/policy), If-Match and entity-tags.
 * Must never crash, leak or read out of bounds, and what they return must hold together. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/policy.h"
#include "proxy/translate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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

static void accept(const char *v)
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

/* Input: up to five NUL-separated values: Content-Type/Accept/If-Match, Cache-Control, Pragma,
 * If-None-Match, and the bytes of the answer's ETag. */
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
    accept(v[0]);
    etags(v[0]);
    conditions(v[1], v[2], v[3], part[4] != NULL ? part[4] : data, part[4] != NULL ? len[4] : 0);
    for (size_t i = 0; i < 4; i++) {
        free(v[i]);
    }
    return 0;
}
