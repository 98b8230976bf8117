/* proxy/translate: the RFC 8075 HTTP <-> CoAP mapping (methods, URIs, media types, options, status codes)
 * as static const tables and pure functions. No I/O, no clock, no allocation, no globals. */
#ifndef PX_TRANSLATE_H
#define PX_TRANSLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coap/code.h"
#include "coap/optset.h"

/* ---- Outcome of translation and of a proxied exchange; one table maps each to an HTTP status ---- */
enum px_status {
    PX_OK = 0,
    PX_ERR_BAD_REQUEST,         /* 400: malformed URI, bad percent-encoding, dot-segment, bad header */
    PX_ERR_NO_ROUTE,            /* 404: no route for the path */
    PX_ERR_METHOD_NOT_ALLOWED,  /* 405: method not in the route's list (send Allow) */
    PX_ERR_NOT_ACCEPTABLE,      /* 406: Accept names only media types with no CoAP Content-Format */
    PX_ERR_TOO_LARGE,           /* 413: request body above limits.max_body_bytes */
    PX_ERR_URI_TOO_LONG,        /* 414: a Uri-Path/Uri-Query option above 255 bytes, or too many options */
    PX_ERR_UNSUPPORTED_MEDIA,   /* 415: request Content-Type has no CoAP Content-Format */
    PX_ERR_INTERNAL,            /* 500 */
    PX_ERR_NOT_IMPLEMENTED,     /* 501: OPTIONS, TRACE, CONNECT, unknown methods */
    PX_ERR_BAD_GATEWAY,         /* 502: upstream unreachable (ICMP, RST) or malformed/unexpected answer */
    PX_ERR_UNAVAILABLE,         /* 503: upstream queue full or gateway shutting down (Retry-After) */
    PX_ERR_TIMEOUT,             /* 504: upstream silent past timeout_ms */
    PX_ERR_PRECONDITION_FAILED, /* 412: If-Match lists only entity-tags the upstream cannot have */
    PX_ERR_UNAUTHORIZED,        /* 401: the route wants credentials and none came (WWW-Authenticate) */
    PX_ERR_FORBIDDEN,           /* 403: wrong credentials, a refused origin or forward-proxy target */
    PX_ERR_RATE_LIMITED,        /* 429: the client address is over rate_limit (Retry-After) */
    PX_ERR_HEADERS_TOO_LARGE,   /* 431: the header section is above limits.max_header_bytes */
};

const char *px_strerror(enum px_status status); /* short title, e.g. "Upstream Timeout" */
int px_status_http(enum px_status status);      /* 200 for PX_OK, else the HTTP status above */
const char *
px_status_slug(enum px_status status); /* "upstream-timeout": problem type is "urn:coapgw:problem:<slug>" */

/* Writes an RFC 9457 application/problem+json body {"type","title","status","detail"} into buf (detail is
 * JSON-escaped, truncated to fit). Returns the length written (always NUL-terminated, len >= 64 required). */
size_t px_problem_json(char *buf, size_t len, enum px_status status, const char *detail);

/* HTTP reason phrase for a status code ("Gateway Timeout"), "" when unknown. */
const char *px_http_reason(int http_status);

/* ---- Media types <-> Content-Format (RFC 8075 §6.3, IANA CoAP Content-Formats registry) ---- */
/* Maps an HTTP Content-Type header value (parameters, case and whitespace tolerated as HTTP allows) to a
 * Content-Format. "application/coap-payload; cf=N" maps to N. Returns 0, or -1 when there is no mapping. */
int px_media_to_format(const char *content_type, uint16_t *cf);
/* Writes the media type for a Content-Format; unknown formats become "application/coap-payload;cf=N"
 * (spelled as in RFC 8075 §6.2). Returns the length written. */
size_t px_format_to_media(uint16_t cf, char *buf, size_t len);

/* Picks the CoAP Accept for an HTTP Accept header value. *has_accept = false when no Accept option should be
 * sent (header absent or empty, or any wildcard range present). Returns PX_ERR_NOT_ACCEPTABLE when only
 * unmappable concrete types are listed (or all have q=0). */
enum px_status px_accept_to_coap(const char *accept, bool *has_accept, uint16_t *cf);

/* ---- Request: HTTP -> CoAP ---- */
struct px_http_request {
    const char *method; /* as received */
    const char *rest; /* raw path after the route prefix, no leading '/', still percent-encoded; "" if none */
    const char *query;         /* raw query after '?', still percent-encoded; NULL if no '?' */
    const char *content_type;  /* header value or NULL */
    const char *accept;        /* header value or NULL */
    const char *if_match;      /* header value or NULL: one quoted entity-tag made by px_etag_format */
    const char *if_none_match; /* header value or NULL: "*" (passed as If-None-Match) or an entity-tag */
    size_t body_len;           /* request body length (0 when none) */
};

struct px_coap_request {
    uint8_t code;          /* CoAP method code */
    bool head;             /* HTTP HEAD: answer without a body */
    bool has_body;         /* send the HTTP body as payload (POST/PUT/FETCH/PATCH/iPATCH with body) */
    struct co_optset opts; /* in ascending option-number order as required on the wire */
};

/* Translates the request. base/base_len are the upstream URI's decoded path segments (prepended as
 * Uri-Path). rest: each '/'-separated segment becomes one Uri-Path option, percent-decoded; an empty path
 * gives no Uri-Path; a trailing '/' gives an empty last Uri-Path (RFC 7252 §6.4 step 8); "." and ".."
 * segments are rejected (400). query: each '&'-separated item becomes one Uri-Query, percent-decoded.
 * On error *detail points to a static explanation. */
enum px_status px_request_to_coap(const struct px_http_request *in, const char *const *base, size_t base_len,
                                  struct px_coap_request *out, const char **detail);

/* ---- ETag: CoAP opaque bytes <-> HTTP entity-tag ---- */
/* Writes the quoted HTTP entity-tag for an ETag option value (1..8 bytes), e.g. "\"a1b2\"". Returns length.
 */
size_t px_etag_format(const uint8_t *etag, size_t len, char *buf, size_t cap);
/* Parses one quoted entity-tag made by px_etag_format (weak "W/" prefix rejected) back into bytes.
 * Returns the byte length (1..8), or -1 when it is not one of ours. */
long px_etag_parse(const char *text, uint8_t out[8]);

/* ---- Response: CoAP -> HTTP (RFC 8075 §7, Table 2) ---- */
struct px_coap_response {
    uint8_t code;
    const struct co_optset *opts;
    size_t payload_len;
};

struct px_http_response {
    int status;
    char content_type[96]; /* "" when no Content-Type header */
    char etag[24];         /* quoted entity-tag or "" */
    char location[1024];   /* "" when none */
    long max_age;          /* Cache-Control: max-age=N when >= 0; -1 none */
    long retry_after;      /* Retry-After seconds when >= 0; -1 none */
    char allow[96];        /* Allow header or "" */
    bool send_body;        /* false for 204/304: the payload is not sent */
};

/* Translates a CoAP response. route_prefix ("/api/") and base/base_len (upstream base path) map
 * Location-Path/Location-Query back to a path under the route; a location outside the base path yields
 * no Location. allow: the Allow value when the allowed methods are known (4.05 -> 405), else NULL
 * (4.05 -> 400). Returns PX_ERR_BAD_GATEWAY for codes that are not responses (class 0/1/6/7, 2.31). */
enum px_status px_response_to_http(const struct px_coap_response *in, const char *route_prefix,
                                   const char *const *base, size_t base_len, const char *allow,
                                   struct px_http_response *out);

/* Table 2 alone: HTTP status for a CoAP response code and whether a payload is present; 0 when the code
 * is not a response code. */
int px_code_to_http(uint8_t code, bool has_payload, bool allow_known);

/* RFC 7641 §3.4: is a notification with Observe value v2 received at t2_ms newer than the last one (v1 at
 * t1_ms)? True when v2 is ahead of v1 in 24-bit serial arithmetic, or more than 128 s have passed. */
bool px_observe_is_newer(uint32_t v1, uint64_t t1_ms, uint32_t v2, uint64_t t2_ms);

#endif
