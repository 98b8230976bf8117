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

static void cache_directive(struct px_conditions *c, const char *s, size_t n)
{
    if (token_is(s, n, "no-store")) {
        c->no_store = true;
    } else if (token_is(s, n, "no-cache") || token_is(s, n, "max-age=0")) {
        c->no_cache = true;
    }
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
    *c = (struct px_conditions){0};
}
