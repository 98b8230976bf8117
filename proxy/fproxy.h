/* proxy/fproxy: the pure core of RFC 8075 §5 forward proxying: the target CoAP URI carried in the request
 * path (`/hc/coap://host:port/path?query`, or the whole URI percent-encoded as one segment), the
 * allow-list of target addresses, and the resolution of a target to one address the caller may connect to.
 *
 * Intended use from the pipeline (nothing here touches config, the client or MHD):
 *
 *     struct px_fp_target t;
 *     const char *reason;
 *     int status = px_fp_target_parse(rest, rest_len, query, &t, &reason);   // any thread, no I/O
 *     if (status != 0) { answer a problem with status and reason; }
 *     ...later, where blocking on DNS is acceptable...
 *     struct sockaddr_storage to;
 *     socklen_t to_len;
 *     status = px_fp_resolve(&t, rules, rules_len, &to, &to_len, &reason);   // blocks on DNS
 *     if (status != 0) { answer a problem; }
 *     connect to `to`; translate t.path and t.query as px_http_request.rest and .query;
 *     px_fp_target_fini(&t);
 *
 * Statuses are HTTP status codes (0 is success) with a static, NUL-terminated English reason that never
 * contains the input, so it is safe in a problem detail or a log line as it is. */
#ifndef PX_FPROXY_H
#define PX_FPROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/addrrule.h"

#define PX_FP_HOST_MAX 255 /* Uri-Host is 1..255 bytes (RFC 7252 §5.10) */
#define PX_FP_PORT_COAP 5683
#define PX_FP_PORT_COAPS 5684

/* ==== Target URI ================================================================================ */

enum px_fp_scheme {
    PX_FP_COAP,
    PX_FP_COAPS, /* parsed; whether it can be served (DTLS) is the caller's decision */
};

enum px_fp_host_kind {
    PX_FP_HOST_NAME, /* a reg-name: a DNS name, or a numeric spelling glibc reads as IPv4 ("127.1") */
    PX_FP_HOST_IPV4, /* an RFC 3986 IPv4address (four decimal octets) */
    PX_FP_HOST_IPV6, /* an IP-literal "[...]": host holds the address without brackets */
};

struct px_fp_target {
    enum px_fp_scheme scheme;
    enum px_fp_host_kind host_kind;
    const char *host;  /* lower-cased, NUL-terminated, 1..PX_FP_HOST_MAX bytes, no brackets, no '%' */
    uint16_t port;     /* the URI's port, or 5683 (coap) / 5684 (coaps) when absent or empty */
    bool port_given;   /* the URI named a port (RFC 7252 §6.4 step 7: Uri-Port only when it differs) */
    const char *path;  /* raw (still percent-encoded) path without its leading '/', "" for none: this is
                        * px_http_request.rest for px_request_to_coap */
    const char *query; /* raw query without '?', NULL when there is none: px_http_request.query */
    char *storage;     /* owns host, path and query (one allocation); free with px_fp_target_fini */
};

/* Parses the request path after the forward-proxy prefix (`rest`, rest_len bytes, raw as received, not
 * NUL-terminated necessarily, without the '?query' part) and the request's raw query (`query`, without
 * '?', NUL-terminated, NULL when the request had no '?'). Both forms of RFC 8075 §5 are accepted:
 *   - default:  rest = "coap://host:port/path", the query is the request's own query;
 *   - encoded:  rest = "coap%3A%2F%2Fhost%3Aport%2Fpath%3Fquery" as one segment (no raw '/'), decoded once
 *     with base/pct; the target's query is the one inside it, or else the request's query (both → 400).
 * The scheme is case-insensitive; host: reg-name (ALPHA DIGIT '-' '.' '_'), IPv4 address, or an IPv6
 * literal in brackets (zone ids, RFC 6874, and IPvFuture refused); port 1..65535. Userinfo, an empty host,
 * a fragment, bytes outside RFC 3986's character set and malformed percent-escapes are refused.
 *
 * Returns 0 and fills *out (release it with px_fp_target_fini), or 400 (malformed) or 500 (out of memory)
 * with *reason set and *out left with nothing to release (px_fp_target_fini on it is still harmless).
 * Thread: any; no I/O, one allocation. */
int px_fp_target_parse(const char *rest, size_t rest_len, const char *query, struct px_fp_target *out,
                       const char **reason);

/* Frees what px_fp_target_parse allocated and clears *t; idempotent. */
void px_fp_target_fini(struct px_fp_target *t);

/* ==== Resolution ================================================================================ */

/* Resolves t->host (getaddrinfo, AF_UNSPEC, SOCK_DGRAM; literals with AI_NUMERICHOST) and allows the target
 * only if EVERY address it resolves to is allowed for t->port by rules[0..n): a name cannot smuggle a
 * forbidden address in beside an allowed one, and glibc's numeric spellings ("127.1", "2130706433",
 * "0x7f.1", "0177.0.0.1") are checked as the address they resolve to, never as text.
 * On success returns 0 and writes the first address (resolver order, RFC 6724) with t->port set into *out
 * and its length into *out_len; an IPv4-mapped address is written as AF_INET. Connect to exactly this
 * address: resolving again could give another answer (DNS rebinding) after the check.
 * Errors: 403 (an address is not allowed), 502 (no such host, no address, resolver failure), 504 (the
 * resolver timed out, EAI_AGAIN), 500 (out of memory), with *reason static.
 * BLOCKS on DNS for PX_FP_HOST_NAME targets (up to the resolver's timeouts, seconds): call it where
 * blocking is acceptable, never on an MHD thread or a CoAP worker. Thread: any (getaddrinfo is MT-safe). */
int px_fp_resolve(const struct px_fp_target *t, const struct cg_addr_rule *rules, size_t n,
                  struct sockaddr_storage *out, socklen_t *out_len, const char **reason);

#endif
