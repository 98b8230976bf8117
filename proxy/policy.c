/* proxy/policy: request cache directives and If-None-Match. */
#include "proxy/policy.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/translate.h"

/* Calls fn on each comma-separated, whitespace-trimmed, non-empty element of a header value. */
static void each_element(const char *value, void (*fn)(struct px_conditions *c, const char *s, size_t n),
                         struct px_conditions *c)
{
    while (value != NULL && *value != '\0') {
        const char *end = strchr(value, ',');
        size_t n = end != NULL ? (size_t)(end - value) : strlen(value);
        const char *s = value;
        while (n > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            n--;
        }
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
            n--;
        }
        if (n > 0) {
            fn(c, s, n);
        }
        value = end != NULL ? end + 1 : NULL;
    }
}

static bool token_is(const char *s, size_t n, const char *token)
{
    return strlen(token) == n && strncasecmp(s, token, n) == 0;
}

/* The delta-seconds argument of "name=..." (RFC 9111 §1.2.2), as a token or a quoted-string (RFC 9111
 * §5.2: senders use the token form, recipients accept both): -1 when s is not that directive or the argument
 * is no number. Values beyond 2^31 are 2^31 (§1.2.2). */
static long delta_seconds(const char *s, size_t n, const char *name)
{
    size_t k = strlen(name);
    if (n <= k + 1 || strncasecmp(s, name, k) != 0 || s[k] != '=') {
        return -1;
    }
    s += k + 1;
    n -= k + 1;
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    if (n == 0) {
        return -1;
    }
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v < 214748364L ? v * 10 + (s[i] - '0') : 2147483648L;
    }
    return v;
}

/* Keeps the strictest of repeated directives. */
static void keep_min(long *slot, long v)
{
    if (v >= 0 && (*slot < 0 || v < *slot)) {
        *slot = v;
    }
}

static void cache_directive(struct px_conditions *c, const char *s, size_t n)
{
    if (token_is(s, n, "no-store")) {
        c->no_store = true;
    } else if (token_is(s, n, "no-cache")) {
        c->no_cache = true;
    } else {
        keep_min(&c->max_age, delta_seconds(s, n, "max-age"));
        long min_fresh = delta_seconds(s, n, "min-fresh");
        if (min_fresh > c->min_fresh) {
            c->min_fresh = min_fresh; /* the strictest min-fresh is the largest */
        }
    }
}

bool px_conditions_accept_fresh(const struct px_conditions *c, uint32_t age, uint32_t remaining)
{
    /* max-age=0 asks for revalidation whatever the age: whole seconds cannot tell "0.9 s" from "now". */
    if (c->no_cache || c->max_age == 0 || (c->max_age > 0 && (long)age > c->max_age)) {
        return false;
    }
    return c->min_fresh < 0 || (long)remaining >= c->min_fresh;
}

void px_conditions_parse_cache(struct px_conditions *c, const char *cache_control, const char *pragma)
{
    each_element(cache_control != NULL ? cache_control : pragma, cache_directive, c);
}

static void inm_element(struct px_conditions *c, const char *s, size_t n)
{
    char tag[40];
    struct px_etag e;

    if (n == 1 && s[0] == '*') {
        c->inm_star = true;
        return;
    }
    if (n > 2 && s[0] == 'W' && s[1] == '/') {
        s += 2;
        n -= 2;
    }
    if (n >= sizeof(tag)) {
        return;
    }
    memcpy(tag, s, n);
    tag[n] = '\0';
    long len = px_etag_parse(tag, e.bytes);
    if (len <= 0) {
        return;
    }
    e.len = (uint8_t)len;
    struct px_etag *grown = realloc(c->inm, (c->inm_count + 1) * sizeof(*grown));
    if (grown == NULL) {
        return;
    }
    c->inm = grown;
    c->inm[c->inm_count++] = e;
}

void px_conditions_parse_inm(struct px_conditions *c, const char *if_none_match)
{
    each_element(if_none_match, inm_element, c);
}

bool px_conditions_has_inm(const struct px_conditions *c)
{
    return c->inm_star || c->inm_count > 0;
}

bool px_conditions_not_modified(const struct px_conditions *c, const struct co_optset *opts)
{
    if (!px_conditions_has_inm(c)) {
        return false;
    }
    const struct co_opt *etag = co_optset_find(opts, CO_OPT_ETAG, 0);
    if (c->inm_star || etag == NULL) {
        return c->inm_star;
    }
    for (unsigned i = 0; i < c->inm_count; i++) {
        if (c->inm[i].len == etag->len && memcmp(c->inm[i].bytes, co_opt_value(opts, etag), etag->len) == 0) {
            return true;
        }
    }
    return false;
}

void px_conditions_fini(struct px_conditions *c)
{
    free(c->inm);
    *c = (struct px_conditions)PX_CONDITIONS_INIT;
}
