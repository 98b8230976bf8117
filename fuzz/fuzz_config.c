/* fuzz/fuzz_config: libFuzzer harness for config/ — any bytes as a configuration file must give a snapshot
 * or an error message that names the file, never a crash, a leak or a hang; a snapshot holds what the rest
 * of the gateway takes for granted. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/cfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the rest of the gateway takes for granted about a snapshot. */
static void check(const struct cfg *cfg)
{
    for (size_t i = 0; i < cfg->routes_len; i++) {
        const struct cfg_route *r = &cfg->routes[i];
        size_t n = strlen(r->prefix);
        if (n == 0 || r->prefix[0] != '/' || r->prefix[n - 1] != '/' || r->upstream >= cfg->upstreams_len) {
            abort(); /* a prefix starts and ends with '/'; a route names an upstream that exists */
        }
    }
    for (size_t i = 0; i < cfg->upstreams_len; i++) {
        const struct cfg_upstream *u = &cfg->upstreams[i];
        if (u->peer.port == 0 || u->timeout_ms < 1 || u->max_inflight < 1 ||
            (u->base_path_len > 0 && u->base_path == NULL)) {
            abort();
        }
    }
    if (cfg->forward_proxy.enabled && cfg->forward_proxy.allow_len == 0) {
        abort(); /* an open proxy never appears by accident */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cfg *cfg = NULL;
    struct cfg_error err;
    char msg[800];

    if (cfg_parse((const char *)data, size, "fuzz.json", &cfg, &err) == CFG_OK) {
        check(cfg);
        cfg_free(cfg);
    } else if (cfg_error_format(&err, msg, sizeof(msg)), strncmp(msg, "fuzz.json:", 10) != 0) {
        abort(); /* every error names the file first: FILE: field: reason, or FILE:LINE:COL: reason */
    }
    return 0;
}
