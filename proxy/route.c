/* proxy/route: route selection over the immutable config. No I/O, no allocation. */
#include "route.h"

#include <string.h>

static const char *const admin_paths[] = {"/healthz", "/readyz", "/metrics"};

int px_route_is_admin(const char *path, size_t path_len)
{
    for (size_t i = 0; i < sizeof(admin_paths) / sizeof(admin_paths[0]); i++) {
        if (strlen(admin_paths[i]) == path_len && memcmp(admin_paths[i], path, path_len) == 0) {
            return 1;
        }
    }
    return 0;
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

static const struct {
    const char *name;
    unsigned bit;
} method_bits[] = {
    {"GET", CFG_METHOD_GET},     {"HEAD", CFG_METHOD_GET},      {"POST", CFG_METHOD_POST},
    {"PUT", CFG_METHOD_PUT},     {"DELETE", CFG_METHOD_DELETE}, {"FETCH", CFG_METHOD_FETCH},
    {"PATCH", CFG_METHOD_PATCH}, {"iPATCH", CFG_METHOD_IPATCH}, {"IPATCH", CFG_METHOD_IPATCH},
};

unsigned px_route_method_bit(const char *method)
{
    for (size_t i = 0; i < sizeof(method_bits) / sizeof(method_bits[0]); i++) {
        if (strcmp(method_bits[i].name, method) == 0) {
            return method_bits[i].bit;
        }
    }
    return 0;
}
