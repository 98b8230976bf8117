/* gateway/health: `coapgw --health URL`, a tiny HTTP/1.1 client for container health checks (an image has
 * no curl). One GET, one status line read; it never follows redirects and speaks plain http:// only. */
#ifndef GW_HEALTH_H
#define GW_HEALTH_H

#include <stddef.h>

enum gw_health_result {
    GW_HEALTH_OK,        /* a 2xx status line */
    GW_HEALTH_UNHEALTHY, /* another status, no answer, a refused connection, or the deadline passed */
    GW_HEALTH_BAD_URL,   /* not http://HOST[:PORT][/PATH] */
};

/* GETs url and waits at most timeout_ms for the exchange (connecting, sending, the status line); a host name
 * is resolved first with getaddrinfo(3), under the resolver's own timeouts. Writes the status line
 * (GW_HEALTH_OK, or UNHEALTHY with an answer) or "what: why" into msg. Thread: any; blocks the caller. */
enum gw_health_result gw_health_probe(const char *url, unsigned timeout_ms, char *msg, size_t msglen);

#endif
