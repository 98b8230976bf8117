/* gateway/access: the access line in both formats and the request id's rules. No I/O but the kernel's
 * randomness for new ids. */
#include "gateway/access.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "base/log.h"
#include "coap/code.h"

bool gw_request_id_valid(const char *v, size_t len)
{
    if (v == NULL || len == 0 || len > GW_REQUEST_ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)v[i] < 0x21 || (unsigned char)v[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

/* 16 random bytes per id; getrandom(2) once per 16 ids and thread. */
void gw_request_id_new(char out[33])
{
    static const char hex[] = "0123456789abcdef";
    static _Thread_local uint8_t pool[256];
    static _Thread_local size_t left;

    if (left < 16) {
        if (getrandom(pool, sizeof(pool), 0) != (ssize_t)sizeof(pool)) {
            /* No randomness (it cannot fail for 256 bytes once the pool is initialised): still unique
             * enough per thread with a counter, and never empty. */
            static _Thread_local uint64_t n;
            snprintf(out, 33, "%016llx%016llx", (unsigned long long)(uintptr_t)&n, (unsigned long long)++n);
            return;
        }
        left = sizeof(pool);
    }
    const uint8_t *p = pool + sizeof(pool) - left;
    for (size_t i = 0; i < 16; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 0xf];
    }
    out[32] = '\0';
    left -= 16;
}

/* ---- the text line ---- */

/* Bare in a key=value line: printable ASCII with nothing a reader could take for a quote or an escape. */
static bool bare_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e || c == '"' || c == '\\') {
            return false;
        }
    }
    return len > 0;
}

/* s (at most max bytes of it) as a value: bare when it can be, else quoted. */
static const char *text_value(char *buf, size_t cap, const char *s, size_t max)
{
    if (s == NULL) {
        return "-";
    }
    size_t len = strnlen(s, max);
    if (bare_ok(s, len)) {
        snprintf(buf, cap, "%.*s", (int)len, s);
    } else {
        cg_log_quote(buf, cap, s, len);
    }
    return buf;
}

size_t gw_access_text(char *out, size_t cap, const struct gw_access *a)
{
    char method[4 * 32 + 3], path[4 * 256 + 3], id[4 * GW_REQUEST_ID_MAX + 3], code[5] = "-";
    /* Hundredths of a millisecond in integers: no floating-point formatting on every request. */
    long long centi = (long long)(a->duration_us / 10);

    if (a->coap_code != 0) {
        co_code_format(a->coap_code, code);
    }
    int n = snprintf(out, cap,
                     "event=access method=%s path=%s status=%d upstream=%s coap=%s cache=%s ms=%lld.%02lld "
                     "request_id=%s",
                     text_value(method, sizeof(method), a->method, 32),
                     text_value(path, sizeof(path), a->path, 256), a->status,
                     a->upstream != NULL ? a->upstream : "-", code, a->cache != NULL ? a->cache : "-",
                     centi / 100, centi % 100, text_value(id, sizeof(id), a->request_id, GW_REQUEST_ID_MAX));
    return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

/* ---- the JSON line ---- */

static void json_string(struct cg_json *j, const char *key, const char *v)
{
    cg_json_str(j, key, v, v != NULL ? strlen(v) : 0);
}

/* The path with its query, as the client sent them (percent-encoded), cut at 1024 bytes: escaped (at most
 * six bytes each) it leaves room in CG_LOG's 8 KiB line for every member after it. */
static void json_target(struct cg_json *j, const struct gw_access *a)
{
    char target[1025];
    const char *path = a->path != NULL ? a->path : "";
    int n = a->query != NULL ? snprintf(target, sizeof(target), "%s?%s", path, a->query)
                             : snprintf(target, sizeof(target), "%s", path);
    size_t len = n < 0 ? 0 : (size_t)n >= sizeof(target) ? sizeof(target) - 1 : (size_t)n;
    cg_json_str(j, "path", target, len);
}

size_t gw_access_json(char *out, size_t cap, const char *ts, const struct gw_access *a)
{
    struct cg_json j;
    char code[5], ms[32];

    cg_json_begin(&j, out, cap);
    json_string(&j, "ts", ts);
    cg_json_str(&j, "request_id", a->request_id,
                a->request_id != NULL ? strnlen(a->request_id, GW_REQUEST_ID_MAX) : 0);
    json_string(&j, "remote", a->remote);
    cg_json_str(&j, "method", a->method, a->method != NULL ? strnlen(a->method, 32) : 0);
    json_target(&j, a);
    cg_json_int(&j, "status", a->status);
    json_string(&j, "upstream", a->upstream);
    if (a->coap_code != 0) {
        co_code_format(a->coap_code, code);
    }
    json_string(&j, "coap_code", a->coap_code != 0 ? code : NULL);
    json_string(&j, "cache", a->cache);
    if (a->bytes >= 0) {
        cg_json_int(&j, "bytes", a->bytes);
    } else {
        cg_json_raw(&j, "bytes", "null");
    }
    snprintf(ms, sizeof(ms), "%llu.%03llu", (unsigned long long)(a->duration_us / 1000),
             (unsigned long long)(a->duration_us % 1000));
    cg_json_raw(&j, "duration_ms", ms);
    return cg_json_end(&j);
}
