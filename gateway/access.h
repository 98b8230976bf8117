/* gateway/access: the access log line (text or JSON) and the request id. Pure formatting and checks, no
 * I/O and no libmicrohttpd: http.c gathers the facts, this file writes them, so the unit tests read the
 * exact lines a request produces. */
#ifndef GW_ACCESS_H
#define GW_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_REQUEST_ID_MAX 128 /* longest request id kept from a client */

/* An X-Request-Id a client may choose: 1..GW_REQUEST_ID_MAX bytes, each printable ASCII (0x21-0x7E). */
bool gw_request_id_valid(const char *v, size_t len);

/* A fresh id: 32 lower-case hex digits from the kernel's randomness (buffered per thread), NUL-terminated.
 * Thread: any. */
void gw_request_id_new(char out[33]);

/* What one access line says. Strings may be NULL (unknown: "-" in text, null in JSON); method, path, query
 * and request_id come from the client and are escaped as needed. */
struct gw_access {
    const char *request_id;
    const char *remote; /* the client's address (no port) */
    const char *method;
    const char *path;  /* raw, percent-encoded, before '?' */
    const char *query; /* raw, after '?'; NULL: none */
    int status;        /* 0: no answer was sent */
    const char *upstream;
    uint8_t coap_code; /* 0: none */
    const char *cache; /* X-Cache value, or NULL */
    long long bytes;   /* body bytes sent, -1: unknown (a stream) */
    uint64_t duration_us;
};

/* The text line's key=value part ("event=access method=... path=... status=... upstream=... coap=...
 * cache=... ms=... request_id=..."): method, path and request id bare when they hold only printable ASCII
 * other than quote and backslash, else quoted and escaped (cg_log_quote). Returns the length (< cap). */
size_t gw_access_text(char *out, size_t cap, const struct gw_access *a);

/* The JSON line: {"ts","request_id","remote","method","path","status","upstream","coap_code","cache",
 * "bytes","duration_ms"}, every string escaped (cg_json_quote). ts is RFC 3339 UTC with milliseconds.
 * Returns the length (< cap). cap >= 64. */
size_t gw_access_json(char *out, size_t cap, const char *ts, const struct gw_access *a);

#endif
