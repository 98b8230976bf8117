/* proxy/route: route selection over the immutable config. No I/O, no allocation. */
#include "route.h"

#include <stdbool.h>
#include <string.h>

int px_route_is_admin(const char *path, size_t path_len)
{
    return cfg_admin_path(path, path_len) != CFG_ADMIN_NONE;
}

/* Length of the part of path matched by prefix, or 0 when it does not match. The prefix "/api/" matches
 * "/api/..." and also "/api" exactly. */
static size_t prefix_match(const char *prefix, const char *path, size_t path_len)
{
    size_t plen = strlen(prefix);

    if (path_len >= plen && memcmp(prefix, path, plen) == 0) {
        return plen;
    }
    if (plen > 1 && path_len == plen - 1 && memcmp(prefix, path, path_len) == 0) {
        return path_len;
    }
    return 0;
}

const struct cfg_route *px_route_match(const struct cfg *cfg, const char *path, size_t path_len,
                                       const char **rest)
{
    const struct cfg_route *best = NULL;
    size_t best_len = 0;

    for (size_t i = 0; i < cfg->routes_len; i++) {
        size_t n = prefix_match(cfg->routes[i].prefix, path, path_len);
        if (n > best_len) {
            best = &cfg->routes[i];
            best_len = n;
        }
    }
    if (best != NULL) {
        *rest = path + best_len;
    }
    return best;
}

unsigned px_route_method_bit(const char *method)
{
    bool head;
    uint8_t code = co_method_from_http(method, &head);
    return code != 0 ? CO_METHOD_BIT(code) : 0;
}
