/* proxy/auth: a route's credentials check. Secrets are kept as SHA-256 digests (gnutls_hash_fast), so the
 * comparison is over 32 bytes whatever the secrets' lengths, and the plaintext is not kept at all. */
#include "proxy/auth.h"

#include <gnutls/crypto.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DIGEST_LEN 32 /* SHA-256 */

struct px_auth {
    enum px_auth_scheme scheme;
    char header[PX_AUTH_HEADER_MAX + 1]; /* "" for bearer */
    size_t count;
    uint8_t digests[][DIGEST_LEN];
};

__attribute__((format(printf, 3, 4))) static int fail(char *reason, size_t cap, const char *fmt, ...)
{
    if (cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int digest(const void *data, size_t len, uint8_t out[DIGEST_LEN])
{
    /* gnutls wants a non-NULL pointer even for no bytes. */
    return gnutls_hash_fast(GNUTLS_DIG_SHA256, len > 0 ? data : "", len, out) < 0 ? -1 : 0;
}

/* RFC 9110 §5.6.2 tchar: what a header name is made of. */
static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* RFC 6750 §2.1 b64token, without the trailing '='s. */
static bool is_b64token_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("-._~+/", c) != NULL);
}

/* b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
static bool is_b64token(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && is_b64token_char((unsigned char)s[i])) {
        i++;
    }
    if (i == 0) {
        return false;
    }
    while (i < len && s[i] == '=') {
        i++;
    }
    return i == len;
}

/* An API key arrives as a header field value: no control bytes (a tab inside is allowed, RFC 9110 §5.5). */
static bool is_field_value(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return false;
        }
    }
    return true;
}

static int check_header(const char *h, char *reason, size_t cap)
{
    size_t n = h != NULL ? strlen(h) : 0;
    if (n == 0) {
        return fail(reason, cap, "an api_key route needs a header name");
    }
    if (n > PX_AUTH_HEADER_MAX) {
        return fail(reason, cap, "header name is longer than %d characters", PX_AUTH_HEADER_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_tchar((unsigned char)h[i])) {
            return fail(reason, cap, "header name is not an HTTP token (RFC 9110 section 5.6.2)");
        }
    }
    if (strcasecmp(h, "Authorization") == 0) {
        return fail(reason, cap, "header name must not be Authorization (use the bearer type)");
    }
    return 0;
}

/* Refuses secrets no client could send. Names the secret by its place only, never by its bytes. */
static int check_secrets(const struct px_auth_desc *d, char *reason, size_t cap)
{
    if (d->secrets_len == 0 || d->secrets == NULL) {
        return fail(reason, cap, "holds no secret");
    }
    for (size_t i = 0; i < d->secrets_len; i++) {
        const struct cg_secret *s = &d->secrets[i];
        if (s->len == 0 || s->bytes == NULL) {
            return fail(reason, cap, "secret #%zu is empty", i + 1);
        }
        if (d->scheme == PX_AUTH_BEARER && !is_b64token(s->bytes, s->len)) {
            return fail(reason, cap,
                        "secret #%zu is not a bearer token (RFC 6750 b64token: A-Z a-z 0-9 - . _ ~ + /, "
                        "then = at the end)",
                        i + 1);
        }
        if (d->scheme == PX_AUTH_API_KEY && !is_field_value(s->bytes, s->len)) {
            return fail(reason, cap, "secret #%zu has a control character, which a header cannot carry",
                        i + 1);
        }
    }
    return 0;
}

static int check_desc(const struct px_auth_desc *d, char *reason, size_t cap)
{
    if (d->scheme != PX_AUTH_BEARER && d->scheme != PX_AUTH_API_KEY) {
        return fail(reason, cap, "unknown authentication type");
    }
    if (d->scheme == PX_AUTH_API_KEY && check_header(d->header, reason, cap) != 0) {
        return -1;
    }
    if (d->secrets_len > (SIZE_MAX - sizeof(struct px_auth)) / DIGEST_LEN) {
        return fail(reason, cap, "holds too many secrets");
    }
    return check_secrets(d, reason, cap);
}

int px_auth_new(const struct px_auth_desc *desc, struct px_auth **out, char *reason, size_t reason_cap)
{
    *out = NULL;
    if (check_desc(desc, reason, reason_cap) != 0) {
        return -1;
    }
    size_t size = sizeof(struct px_auth) + desc->secrets_len * DIGEST_LEN;
    struct px_auth *a = calloc(1, size);
    if (a == NULL) {
        return fail(reason, reason_cap, "out of memory");
    }
    a->scheme = desc->scheme;
    if (desc->scheme == PX_AUTH_API_KEY) {
        memcpy(a->header, desc->header, strlen(desc->header) + 1);
    }
    a->count = desc->secrets_len;
    for (size_t i = 0; i < a->count; i++) {
        if (digest(desc->secrets[i].bytes, desc->secrets[i].len, a->digests[i]) != 0) {
            cg_secret_free(a, size);
            return fail(reason, reason_cap, "cannot compute SHA-256 (gnutls)");
        }
    }
    *out = a;
    return 0;
}

void px_auth_free(struct px_auth *auth)
{
    if (auth != NULL) {
        /* A digest is as good as a password hash: zero it too. */
        cg_secret_free(auth, sizeof(*auth) + auth->count * DIGEST_LEN);
    }
}

enum px_auth_scheme px_auth_scheme(const struct px_auth *auth)
{
    return auth->scheme;
}

const char *px_auth_header(const struct px_auth *auth)
{
    return auth->scheme == PX_AUTH_API_KEY ? auth->header : NULL;
}

/* Compares the candidate's digest with every accepted digest: no early exit, so the time does not say which
 * secret matched, nor whether one did. A digest failure denies. */
static enum px_auth_result match(const struct px_auth *auth, const char *cand, size_t len)
{
    uint8_t d[DIGEST_LEN];
    if (digest(cand, len, d) != 0) {
        return PX_AUTH_WRONG;
    }
    bool ok = false;
    for (size_t i = 0; i < auth->count; i++) {
        ok |= cg_secret_equal(d, DIGEST_LEN, auth->digests[i], DIGEST_LEN);
    }
    explicit_bzero(d, sizeof(d));
    return ok ? PX_AUTH_OK : PX_AUTH_WRONG;
}

static bool absent(const char *v)
{
    return v == NULL || v[0] == '\0';
}

/* RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token. The scheme is case-insensitive (RFC 9110 §11.1). */
static enum px_auth_result check_bearer(const struct px_auth *auth, const char *value)
{
    if (absent(value)) {
        return PX_AUTH_MISSING;
    }
    if (strncasecmp(value, "Bearer", 6) != 0 || value[6] != ' ') {
        return PX_AUTH_WRONG;
    }
    const char *token = value + 6;
    while (*token == ' ') {
        token++;
    }
    size_t len = strlen(token);
    if (!is_b64token(token, len)) {
        return PX_AUTH_WRONG;
    }
    return match(auth, token, len);
}

static enum px_auth_result check_api_key(const struct px_auth *auth, const char *authorization,
                                         const char *key)
{
    if (!absent(key)) {
        return match(auth, key, strlen(key));
    }
    return absent(authorization) ? PX_AUTH_MISSING : PX_AUTH_WRONG;
}

enum px_auth_result px_auth_check(const struct px_auth *auth, const char *authorization, const char *api_key)
{
    if (auth == NULL) {
        return PX_AUTH_OK;
    }
    if (auth->scheme == PX_AUTH_BEARER) {
        return check_bearer(auth, authorization);
    }
    return check_api_key(auth, authorization, api_key);
}

int px_auth_challenge(const struct px_auth *auth, char *buf, size_t len)
{
    int n;
    if (auth->scheme == PX_AUTH_BEARER) {
        n = snprintf(buf, len, "Bearer realm=\"coapgw\"");
    } else {
        /* The name is a token (checked in px_auth_new), so it needs no escaping inside the quotes. */
        n = snprintf(buf, len, "ApiKey header=\"%s\"", auth->header);
    }
    return n >= 0 && (size_t)n < len ? n : -1;
}
