/* gateway/gen: configuration generations, and what a reload changes. A generation owns its snapshot, its
 * CoAP client and its pipeline, and shares its cache with the generations around it when the cache would
 * hold the same things. Only main builds, publishes and destroys generations; any thread acquires one. */
#include "gateway/gen.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A cache and the generations using it. Its count changes on main only (build and reap). */
struct cache_share {
    unsigned refs;
    struct px_cache *cache;
};

struct gw_gens {
    pthread_mutex_t mu;     /* current, as read by gw_gens_acquire */
    struct gw_gen *current; /* holds one reference */
    struct gw_gen *retired; /* replaced, some still held by requests; main only */
    uint64_t last_id;       /* main only */
    size_t pool_bytes;      /* per-connection memory the daemon reserved (generation 1's limits) */
    void (*user_free)(void *user);
};

size_t gw_gen_pool_bytes(const struct cfg *cfg)
{
    /* Room for a header section of max_header_bytes, so that it is ours to answer 431 (with problem+json);
     * a larger one fills MHD's pool and gets MHD's own 431 page. MHD's default pool (32 KiB) unless the
     * limits need more: a larger pool costs memory on every connection (bench/reqmem.sh: 2.4 KB per request
     * more at 34 KiB). */
    size_t pool = 2 * cfg->limits.max_header_bytes + cfg->limits.max_uri_bytes + 8192;
    return pool < 32768 ? 32768 : pool;
}

/* ---- one generation ---- */

static void cache_share_release(struct cache_share *s)
{
    if (s != NULL && --s->refs == 0) {
        px_cache_destroy(s->cache); /* entries still lent to responses stay valid until released */
        free(s);
    }
}

static struct cache_share *cache_share_new(const struct cfg *cfg, void (*user_free)(void *))
{
    struct cache_share *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return NULL;
    }
    s->cache = px_cache_create(cfg->cache.max_entries, cfg->cache.max_bytes);
    if (s->cache == NULL) {
        free(s);
        return NULL;
    }
    if (user_free != NULL) {
        px_cache_set_user_free(s->cache, user_free);
    }
    s->refs = 1;
    return s;
}

/* The client is stopped before the pipeline goes: its last completions (a deregistration, an exchange that
 * outlived its request's wait) may still call into the observation registry. */
static void gen_destroy(struct gw_gen *gen)
{
    if (gen == NULL) {
        return;
    }
    px_client_stop(gen->client);
    px_forward_destroy(gen->fwd);
    px_client_destroy(gen->client);
    cache_share_release(gen->cache_from);
    cfg_free((struct cfg *)(uintptr_t)gen->cfg);
    free(gen);
}

/* A generation over cfg (taken), with the cache of reuse when not NULL, else a new one when enabled. */
static struct gw_gen *gen_build(const struct gw_gens *g, struct cfg *cfg, struct cache_share *reuse,
                                char *err, size_t len)
{
    struct gw_gen *gen = calloc(1, sizeof(*gen));

    if (gen == NULL) {
        cfg_free(cfg);
        snprintf(err, len, "reload: out of memory");
        return NULL;
    }
    gen->cfg = cfg;
    atomic_init(&gen->refs, 1);
    gen->client = px_client_create(cfg, err, len);
    if (gen->client == NULL) {
        gen_destroy(gen);
        return NULL;
    }
    if (reuse != NULL) {
        reuse->refs++;
        gen->cache_from = reuse;
    } else if (cfg->cache.enabled && (gen->cache_from = cache_share_new(cfg, g->user_free)) == NULL) {
        snprintf(err, len, "cache: out of memory");
        gen_destroy(gen);
        return NULL;
    }
    gen->cache = gen->cache_from != NULL ? gen->cache_from->cache : NULL;
    gen->fwd = px_forward_create(cfg, px_client_transport(gen->client), gen->cache, NULL, NULL);
    if (gen->fwd == NULL) {
        snprintf(err, len, "http: cannot start the request pipeline");
        gen_destroy(gen);
        return NULL;
    }
    return gen;
}

struct gw_gen *gw_gens_acquire(struct gw_gens *g)
{
    pthread_mutex_lock(&g->mu);
    struct gw_gen *gen = g->current;
    atomic_fetch_add(&gen->refs, 1);
    pthread_mutex_unlock(&g->mu);
    return gen;
}

void gw_gen_release(struct gw_gen *gen)
{
    if (gen != NULL) {
        atomic_fetch_sub(&gen->refs, 1);
    }
}

const struct gw_gen *gw_gens_current(const struct gw_gens *g)
{
    return g->current;
}

/* ---- comparing snapshots ---- */

static bool str_eq(const char *a, const char *b)
{
    return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

static bool bytes_eq(const void *a, size_t alen, const void *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static bool endpoint_eq(const struct cfg_endpoint *a, const struct cfg_endpoint *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

static bool strings_eq(const struct cfg_strings *a, const struct cfg_strings *b)
{
    if (a->len != b->len) {
        return false;
    }
    for (size_t i = 0; i < a->len; i++) {
        if (!str_eq(a->v[i], b->v[i])) {
            return false;
        }
    }
    return true;
}

/* The secrets too: a token file whose content changed is a changed route. */
static bool auth_eq(const struct cfg_auth *a, const struct cfg_auth *b)
{
    if (a->type != b->type || !str_eq(a->header, b->header) || !str_eq(a->file, b->file) ||
        a->secrets.count != b->secrets.count) {
        return false;
    }
    for (size_t i = 0; i < a->secrets.count; i++) {
        const struct cg_secret *x = &a->secrets.items[i], *y = &b->secrets.items[i];
        if (!bytes_eq(x->bytes, x->len, y->bytes, y->len)) {
            return false;
        }
    }
    return true;
}

static bool cors_eq(const struct cfg_cors *a, const struct cfg_cors *b)
{
    return strings_eq(&a->allow_origins, &b->allow_origins) &&
           strings_eq(&a->allow_headers, &b->allow_headers) && a->max_age_s == b->max_age_s;
}

/* uri holds peer, secure and the base path. */
static bool upstream_eq(const struct cfg_upstream *a, const struct cfg_upstream *b)
{
    return str_eq(a->name, b->name) && str_eq(a->uri, b->uri) && a->timeout_ms == b->timeout_ms &&
           a->max_inflight == b->max_inflight && a->queue_limit == b->queue_limit && a->type == b->type &&
           a->dtls == b->dtls && str_eq(a->psk.identity, b->psk.identity) &&
           str_eq(a->psk.key_file, b->psk.key_file) && a->psk.key_hex == b->psk.key_hex &&
           bytes_eq(a->psk.key.bytes, a->psk.key.len, b->psk.key.bytes, b->psk.key.len) &&
           str_eq(a->pki.ca_file, b->pki.ca_file) && str_eq(a->pki.cert, b->pki.cert) &&
           str_eq(a->pki.key, b->pki.key);
}

static bool upstreams_eq(const struct cfg *a, const struct cfg *b)
{
    if (a->upstreams_len != b->upstreams_len) {
        return false;
    }
    for (size_t i = 0; i < a->upstreams_len; i++) {
        if (!upstream_eq(&a->upstreams[i], &b->upstreams[i])) {
            return false;
        }
    }
    return true;
}

static bool routes_eq(const struct cfg *a, const struct cfg *b)
{
    if (a->routes_len != b->routes_len) {
        return false;
    }
    for (size_t i = 0; i < a->routes_len; i++) {
        const struct cfg_route *x = &a->routes[i], *y = &b->routes[i];
        if (!str_eq(x->prefix, y->prefix) ||
            !str_eq(a->upstreams[x->upstream].name, b->upstreams[y->upstream].name) ||
            x->methods != y->methods || x->cache != y->cache || !cors_eq(&x->cors, &y->cors) ||
            !auth_eq(&x->auth, &y->auth)) {
            return false;
        }
    }
    return true;
}

static bool forward_proxy_eq(const struct cfg *a, const struct cfg *b)
{
    if (a->forward_proxy.enabled != b->forward_proxy.enabled ||
        !str_eq(a->forward_proxy.prefix, b->forward_proxy.prefix) ||
        a->forward_proxy.timeout_ms != b->forward_proxy.timeout_ms ||
        a->forward_proxy.allow_len != b->forward_proxy.allow_len) {
        return false;
    }
    for (size_t i = 0; i < a->forward_proxy.allow_len; i++) {
        const struct cg_addr_rule *x = &a->forward_proxy.allow[i], *y = &b->forward_proxy.allow[i];
        if (x->family != y->family || memcmp(x->addr, y->addr, sizeof(x->addr)) != 0 || x->len != y->len ||
            x->port != y->port) {
            return false;
        }
    }
    return true;
}

static bool cache_settings_eq(const struct cfg *a, const struct cfg *b)
{
    return a->cache.enabled == b->cache.enabled && a->cache.max_entries == b->cache.max_entries &&
           a->cache.max_bytes == b->cache.max_bytes;
}

/* Whether next may use cur's cache: the same bounds, and the same upstreams at the same indexes (the cache
 * key starts with the upstream's index; the URI gives the device and the base path in the key's options).
 * Timeouts, NSTART or credentials do not change what a device answers. */
static bool cache_reusable(const struct cfg *cur, const struct cfg *next)
{
    if (!cur->cache.enabled || !cache_settings_eq(cur, next) || cur->upstreams_len != next->upstreams_len) {
        return false;
    }
    for (size_t i = 0; i < cur->upstreams_len; i++) {
        if (!str_eq(cur->upstreams[i].name, next->upstreams[i].name) ||
            !str_eq(cur->upstreams[i].uri, next->upstreams[i].uri)) {
            return false;
        }
    }
    return true;
}

static void list_add(char *list, size_t len, const char *name)
{
    size_t used = strlen(list);
    snprintf(list + used, len - used, "%s%s", used > 0 ? "," : "", name);
}

/* The top-level sections of next that differ from cur. limits, rate_limit and log are plain scalars in a
 * snapshot that cfg_parse calloc'ed and filled field by field, so their padding is zero and memcmp is
 * exact (and a field added to them later is compared without a change here). */
static void describe_changes(const struct cfg *cur, const struct cfg *next, char *out, size_t len)
{
    out[0] = '\0';
    if (!upstreams_eq(cur, next)) {
        list_add(out, len, "upstreams");
    }
    if (!routes_eq(cur, next)) {
        list_add(out, len, "routes");
    }
    if (!forward_proxy_eq(cur, next)) {
        list_add(out, len, "forward_proxy");
    }
    if (!cache_settings_eq(cur, next)) {
        list_add(out, len, "cache");
    }
    if (!auth_eq(&cur->admin.auth, &next->admin.auth)) {
        list_add(out, len, "admin");
    }
    if (memcmp(&cur->rate_limit, &next->rate_limit, sizeof(cur->rate_limit)) != 0) {
        list_add(out, len, "rate_limit");
    }
    if (memcmp(&cur->limits, &next->limits, sizeof(cur->limits)) != 0) {
        list_add(out, len, "limits");
    }
    if (memcmp(&cur->log, &next->log, sizeof(cur->log)) != 0) {
        list_add(out, len, "log");
    }
    if (out[0] == '\0') {
        snprintf(out, len, "none");
    }
}

/* ---- what only a restart applies ---- */

static int dup_bytes(uint8_t **dst, size_t *dst_len, const uint8_t *src, size_t src_len)
{
    *dst = NULL;
    *dst_len = 0;
    if (src == NULL) {
        return 0;
    }
    if ((*dst = malloc(src_len + 1)) == NULL) {
        return -1;
    }
    memcpy(*dst, src, src_len + 1); /* NUL-terminated */
    *dst_len = src_len;
    return 0;
}

static int dup_str(char **dst, const char *src)
{
    *dst = src != NULL ? strdup(src) : NULL;
    return src != NULL && *dst == NULL ? -1 : 0;
}

/* next's tls becomes a copy of cur's. The replaced key is zeroed before it is freed. */
static int tls_keep(const struct cfg *cur, struct cfg *next)
{
    free(next->tls.cert);
    free(next->tls.key);
    free(next->tls.cert_pem);
    if (next->tls.key_pem != NULL) {
        explicit_bzero(next->tls.key_pem, next->tls.key_len);
    }
    free(next->tls.key_pem);
    memset(&next->tls, 0, sizeof(next->tls));
    if (dup_str(&next->tls.cert, cur->tls.cert) != 0 || dup_str(&next->tls.key, cur->tls.key) != 0 ||
        dup_bytes(&next->tls.cert_pem, &next->tls.cert_len, cur->tls.cert_pem, cur->tls.cert_len) != 0) {
        return -1;
    }
    return dup_bytes(&next->tls.key_pem, &next->tls.key_len, cur->tls.key_pem, cur->tls.key_len);
}

#define KEEP(field, name)                                                                                    \
    do {                                                                                                     \
        if (next->field != cur->field) {                                                                     \
            list_add(out, len, name);                                                                        \
            next->field = cur->field;                                                                        \
        }                                                                                                    \
    } while (0)

/* Puts back in next the running values of what the HTTP daemon, the demo server and the deadline watchdog
 * took at start, naming each field that differed in out. The snapshot then tells what really runs, and the
 * next reload compares with that. -1 when out of memory. */
static int keep_running(const struct gw_gens *g, const struct cfg *cur, struct cfg *next, char *out,
                        size_t len)
{
    out[0] = '\0';
    if (!endpoint_eq(&cur->listen, &next->listen)) {
        list_add(out, len, "listen");
        next->listen = cur->listen;
    }
    bool cert = str_eq(cur->tls.cert, next->tls.cert) &&
                bytes_eq(cur->tls.cert_pem, cur->tls.cert_len, next->tls.cert_pem, next->tls.cert_len);
    bool key = str_eq(cur->tls.key, next->tls.key) &&
               bytes_eq(cur->tls.key_pem, cur->tls.key_len, next->tls.key_pem, next->tls.key_len);
    if (!cert) {
        list_add(out, len, "tls.cert");
    }
    if (!key) {
        list_add(out, len, "tls.key");
    }
    if ((!cert || !key) && tls_keep(cur, next) != 0) {
        return -1;
    }
    KEEP(demo.enabled, "demo_server.enabled");
    if (!endpoint_eq(&cur->demo.listen, &next->demo.listen)) {
        list_add(out, len, "demo_server.listen");
        next->demo.listen = cur->demo.listen;
    }
    KEEP(limits.max_connections, "limits.max_connections");
    KEEP(limits.max_connections_per_ip, "limits.max_connections_per_ip");
    KEEP(limits.connection_timeout_s, "limits.connection_timeout_s");
    if (gw_gen_pool_bytes(next) > g->pool_bytes) {
        KEEP(limits.max_header_bytes, "limits.max_header_bytes");
        KEEP(limits.max_uri_bytes, "limits.max_uri_bytes");
    }
    return 0;
}

#undef KEEP

/* ---- the set of generations ---- */

struct gw_gens *gw_gens_create_take(struct cfg *cfg, void (*user_free)(void *user), char *err, size_t len)
{
    struct gw_gens *g = calloc(1, sizeof(*g));

    if (g == NULL) {
        cfg_free(cfg);
        snprintf(err, len, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&g->mu, NULL);
    g->user_free = user_free;
    g->pool_bytes = gw_gen_pool_bytes(cfg);
    g->current = gen_build(g, cfg, NULL, err, len);
    if (g->current == NULL) {
        pthread_mutex_destroy(&g->mu);
        free(g);
        return NULL;
    }
    g->current->id = g->last_id = 1;
    return g;
}

int gw_gens_reload_take(struct gw_gens *g, struct cfg *next, struct gw_reload_report *rep, char *err,
                        size_t len)
{
    const struct gw_gen *cur = g->current;

    memset(rep, 0, sizeof(*rep));
    if (keep_running(g, cur->cfg, next, rep->restart, sizeof(rep->restart)) != 0) {
        cfg_free(next);
        snprintf(err, len, "reload: out of memory");
        return -1;
    }
    describe_changes(cur->cfg, next, rep->changed, sizeof(rep->changed));
    struct cache_share *reuse = cache_reusable(cur->cfg, next) ? cur->cache_from : NULL;
    struct gw_gen *gen = gen_build(g, next, reuse, err, len);
    if (gen == NULL) {
        return -1;
    }
    gen->id = ++g->last_id;

    pthread_mutex_lock(&g->mu);
    struct gw_gen *old = g->current;
    g->current = gen;
    pthread_mutex_unlock(&g->mu);
    old->next = g->retired;
    g->retired = old;
    gw_gen_release(old); /* its reference as the current one: from now on only requests hold it */

    rep->id = gen->id;
    rep->cache_kept = reuse != NULL;
    rep->alive_older = gw_gens_reap(g);
    return 0;
}

/* A retired generation is never acquired again (gw_gens_acquire reads only the current one under the same
 * mutex that published its successor), so once its count is 0 it stays 0. */
unsigned gw_gens_reap(struct gw_gens *g)
{
    unsigned held = 0;

    for (struct gw_gen **p = &g->retired; *p != NULL;) {
        struct gw_gen *gen = *p;
        if (atomic_load(&gen->refs) == 0) {
            *p = gen->next;
            gen_destroy(gen);
        } else {
            held++;
            p = &gen->next;
        }
    }
    return held;
}

void gw_gens_quiesce(struct gw_gens *g)
{
    px_forward_quiesce(g->current->fwd);
    for (struct gw_gen *gen = g->retired; gen != NULL; gen = gen->next) {
        px_forward_quiesce(gen->fwd);
    }
}

void gw_gens_stop_clients(struct gw_gens *g)
{
    if (g == NULL) {
        return;
    }
    px_client_stop(g->current->client);
    for (struct gw_gen *gen = g->retired; gen != NULL; gen = gen->next) {
        px_client_stop(gen->client);
    }
}

void gw_gens_destroy(struct gw_gens *g)
{
    if (g == NULL) {
        return;
    }
    while (g->retired != NULL) {
        struct gw_gen *gen = g->retired;
        g->retired = gen->next;
        gen_destroy(gen);
    }
    gen_destroy(g->current);
    pthread_mutex_destroy(&g->mu);
    free(g);
}
