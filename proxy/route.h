/* proxy/route: picks the route for a raw request path (longest prefix wins, matched on segment
 * boundaries) and checks the method against the route's list. Pure: no I/O, no allocation. */
#ifndef PX_ROUTE_H
#define PX_ROUTE_H

#include <stddef.h>

#include "config/cfg.h"

/* Returns the best route for path (raw, before '?'), or NULL. *rest points into path just after the
 * prefix (no leading '/'); "" when the path equals the prefix or the prefix without its final '/'.
 * Thread: any (reads the immutable config). */
const struct cfg_route *px_route_match(const struct cfg *cfg, const char *path, size_t path_len,
                                       const char **rest);

/* Maps an HTTP method name to its cfg_method bit (HEAD -> GET); 0 for methods no route can allow. */
unsigned px_route_method_bit(const char *method);

/* True when the admin endpoints own this path ("/healthz", "/readyz", "/metrics"). */
int px_route_is_admin(const char *path, size_t path_len);

#endif
