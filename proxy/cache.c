/* proxy/cache: CoAP-aware response cache (RFC 7252 §5.6/§5.9) with hard LRU bounds, a resource index for
 * invalidation and a single-flight registry. One mutex guards the tables and is never held across a callback;
 * entries are refcounted so readers use them unlocked. No I/O, no clock (time is a parameter), no globals. */
#include "proxy/cache.h"

#include "base/siphash.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIN_BUCKETS 64
#define KEY_SEPARATOR 0xFF
#define ALIGN8(n) (((n) + 7u) & ~(size_t)7u)

struct px_cache_entry {
    atomic_uint refs;
    atomic_bool linked; /* in the tables and the LRU list; the cache then holds one reference */
    uint8_t code;
    struct px_cache_entry *hnext;       /* key chain */
    struct px_cache_entry *rnext;       /* resource chain */
    struct px_cache_entry *prev, *next; /* LRU list, head = most recently used */
    uint64_t hash, rhash;
    /* Freshness changes on refresh while readers hold no lock: a seqlock written under the cache mutex. */
    atomic_uint seq;
    atomic_uint_least64_t stored_at;
    atomic_uint max_age;
    size_t key_len, resource_len, payload_len, cost;
    uint16_t etag_len;
    const uint8_t *etag;
    const struct co_optset *opts;
    const uint8_t *key, *payload;
    /* The user slot (px_cache_entry_user_lock): a spinlock, the pointer, and how to free it. */
    atomic_bool user_busy;
    void *user;
    void (*user_free)(void *user);
};

struct flight {
    struct flight *next;
    uint64_t hash;
    struct px_cache_waiter *first, *last;
    size_t key_len;
    uint8_t key[];
};

struct px_cache {
    pthread_mutex_t lock;
    struct cg_siphash_key seed;
    size_t max_entries, max_bytes;
    size_t nbuckets; /* power of two, shared by both entry tables */
    struct px_cache_entry **keys, **resources;
    struct px_cache_entry *head, *tail;
    size_t nflight_buckets, nflights;
    struct flight **flights;
    struct px_cache_stats stats;
    /* Invalidation epochs: epoch counts invalidations; recent[] remembers, per resource-hash slot, the epoch
     * of the last one, so an answer fetched before an unsafe method cannot be stored after it. Collisions
     * only make the check stricter (an answer goes unstored). */
    uint64_t epoch;
    uint64_t recent[PX_CACHE_RECENT];
    void (*user_free)(void *user); /* frees an entry's user slot when the entry goes */
};

/* Hashing: SipHash-1-3 (base/siphash) with a per-cache random key, because keys come from HTTP clients. */
static uint64_t siphash(const struct cg_siphash_key *k, const uint8_t *in, size_t len)
{
    return cg_siphash13(k, in, len);
}

/* ---- option helpers ---- */

/* Indices of the set's options sorted by number, stable, so the set's insertion order of different
 * numbers does not matter while the order of repeated options (path segments) does. */
static unsigned sorted_options(const struct co_optset *set, uint8_t idx[CO_OPT_MAX])
{
    unsigned n = set != NULL ? set->count : 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned j = i;
        for (; j > 0 && set->opt[idx[j - 1]].number > set->opt[i].number; j--) {
            idx[j] = idx[j - 1];
        }
        idx[j] = (uint8_t)i;
    }
    return n;
}

static bool is_resource_option(uint16_t number)
{
    return number == CO_OPT_URI_PATH || number == CO_OPT_URI_QUERY;
}

/* RFC 7252 §5.4.6: NoCacheKey options are left out; so are the ones the cache interprets itself. */
static bool is_key_option(uint16_t number)
{
    if ((number & 0x1e) == 0x1c) {
        return false;
    }
    switch (number) {
    case CO_OPT_ETAG:
    case CO_OPT_IF_MATCH:
    case CO_OPT_IF_NONE_MATCH:
    case CO_OPT_OBSERVE:
    case CO_OPT_BLOCK1:
    case CO_OPT_BLOCK2:
        return false;
    default:
        return true;
    }
}

/* The response options a stored entry keeps: what an HTTP response and a revalidation need. */
static bool is_kept_option(uint16_t number)
{
    switch (number) {
    case CO_OPT_CONTENT_FORMAT:
    case CO_OPT_ETAG:
    case CO_OPT_MAX_AGE:
    case CO_OPT_LOCATION_PATH:
    case CO_OPT_LOCATION_QUERY:
        return true;
    default:
        return false;
    }
}

/* ---- key ---- */

struct keybuf {
    uint8_t *p;
    size_t len, cap;
    bool overflow;
};

static void kb_put(struct keybuf *kb, const void *src, size_t n)
{
    if (n > kb->cap - kb->len) {
        kb->overflow = true;
        return;
    }
    if (n > 0) {
        memcpy(kb->p + kb->len, src, n);
        kb->len += n;
    }
}

static void kb_u16(struct keybuf *kb, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    kb_put(kb, b, 2);
}

static void kb_u32(struct keybuf *kb, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    kb_put(kb, b, 4);
}

/* Appends number(2 BE) len(2 BE) value for each key option of the wanted kind; returns how many. */
static unsigned kb_options(struct keybuf *kb, const struct co_optset *set, const uint8_t *idx, unsigned n,
                           bool resource)
{
    unsigned written = 0;
    for (unsigned i = 0; i < n; i++) {
        const struct co_opt *o = &set->opt[idx[i]];
        if (is_resource_option(o->number) != resource || !is_key_option(o->number)) {
            continue;
        }
        kb_u16(kb, o->number);
        kb_u16(kb, o->len);
        kb_put(kb, co_opt_value(set, o), o->len);
        written++;
    }
    return written;
}

/* Layout: [upstream 4][Uri-Path, Uri-Query records] | [0xFF][code][count 2][other key option records]
 * [FETCH payload]. Resource records all start with 0x00, so the separator ends the resource part. */
size_t px_cache_key(size_t upstream, uint8_t code, const struct co_optset *opts, const uint8_t *payload,
                    size_t payload_len, uint8_t *out, size_t cap, size_t *resource_len)
{
    struct keybuf kb = {.p = out, .cap = cap};
    uint8_t idx[CO_OPT_MAX];
    unsigned n = sorted_options(opts, idx);
    uint8_t mid[2] = {KEY_SEPARATOR, code};

    if (upstream > UINT32_MAX) {
        return 0;
    }
    kb_u32(&kb, (uint32_t)upstream);
    kb_options(&kb, opts, idx, n, true);
    size_t resource = kb.len;
    kb_put(&kb, mid, sizeof(mid));
    size_t count_at = kb.len;
    kb_u16(&kb, 0);
    unsigned others = kb_options(&kb, opts, idx, n, false);
    if (code == CO_FETCH) {
        kb_put(&kb, payload, payload_len);
    }
    if (kb.overflow) {
        return 0;
    }
    out[count_at] = (uint8_t)(others >> 8);
    out[count_at + 1] = (uint8_t)others;
    if (resource_len != NULL) {
        *resource_len = resource;
    }
    return kb.len;
}

/* ---- entries ---- */

/* Sequentially consistent throughout (no fences, which TSan cannot check): a reader that sees an even,
 * unchanged seq around its loads read a pair no refresh was writing. */
static void freshness_write(struct px_cache_entry *e, uint64_t stored_at, uint32_t max_age)
{
    unsigned s = atomic_load(&e->seq);
    atomic_store(&e->seq, s + 1);
    atomic_store(&e->stored_at, stored_at);
    atomic_store(&e->max_age, max_age);
    atomic_store(&e->seq, s + 2);
}

static void freshness_read(struct px_cache_entry *e, uint64_t *stored_at, uint32_t *max_age)
{
    unsigned s1, s2;
    do {
        s1 = atomic_load(&e->seq);
        *stored_at = atomic_load(&e->stored_at);
        *max_age = atomic_load(&e->max_age);
        s2 = atomic_load(&e->seq);
    } while (s1 != s2 || (s1 & 1));
}

static uint64_t elapsed_ms(uint64_t stored_at, uint64_t now_ms)
{
    return now_ms > stored_at ? now_ms - stored_at : 0;
}

static bool entry_fresh(struct px_cache_entry *e, uint64_t now_ms)
{
    uint64_t stored_at;
    uint32_t max_age;
    freshness_read(e, &stored_at, &max_age);
    return elapsed_ms(stored_at, now_ms) < (uint64_t)max_age * 1000;
}

/* Bytes a read-only copy of the kept options takes: the set, its opt[] and its values. */
static size_t kept_size(const struct co_optset *opts)
{
    size_t bytes = sizeof(struct co_optset);
    for (unsigned i = 0; i < opts->count; i++) {
        if (is_kept_option(opts->opt[i].number)) {
            bytes += sizeof(struct co_opt) + opts->opt[i].len;
        }
    }
    return bytes;
}

/* Builds the read-only set at mem (kept_size(src) bytes): never grown, never freed on its own. */
static struct co_optset *copy_kept(uint8_t *mem, const struct co_optset *src)
{
    struct co_optset *dst = (struct co_optset *)mem;
    unsigned n = src->count, kept = 0;
    for (unsigned i = 0; i < n; i++) {
        kept += is_kept_option(src->opt[i].number);
    }
    *dst = (struct co_optset){.cap = kept, .opt = (struct co_opt *)(mem + sizeof(*dst))};
    dst->buf = (uint8_t *)(dst->opt + kept);
    for (unsigned i = 0; i < n; i++) {
        const struct co_opt *o = &src->opt[i];
        if (!is_kept_option(o->number)) {
            continue;
        }
        dst->opt[dst->count++] =
            (struct co_opt){.number = o->number, .len = o->len, .off = (uint16_t)dst->used};
        if (o->len > 0) {
            memcpy(dst->buf + dst->used, co_opt_value(src, o), o->len);
        }
        dst->used += o->len;
    }
    dst->bufcap = dst->used;
    return dst;
}

static void entry_set_etag(struct px_cache_entry *e)
{
    const struct co_opt *o = co_optset_find(e->opts, CO_OPT_ETAG, 0);
    e->etag = o != NULL ? co_opt_value(e->opts, o) : NULL;
    e->etag_len = o != NULL ? o->len : 0;
}

/* One allocation: [entry][kept options: set, opt[], values][key][payload]; cost is its exact size. */
static struct px_cache_entry *entry_new(const uint8_t *key, size_t key_len, size_t resource_len, uint8_t code,
                                        const struct co_optset *opts, const uint8_t *payload,
                                        size_t payload_len)
{
    size_t opts_size = ALIGN8(kept_size(opts));
    size_t cost = sizeof(struct px_cache_entry) + opts_size + key_len + payload_len;
    uint8_t *block = malloc(cost);
    if (block == NULL) {
        return NULL;
    }
    struct px_cache_entry *e = (struct px_cache_entry *)block;
    memset(e, 0, sizeof(*e));
    struct co_optset *set = copy_kept(block + sizeof(*e), opts);
    uint8_t *k = block + sizeof(*e) + opts_size;
    memcpy(k, key, key_len);
    if (payload_len > 0) {
        memcpy(k + key_len, payload, payload_len);
    }
    e->opts = set;
    e->key = k;
    e->payload = k + key_len;
    e->code = code;
    e->key_len = key_len;
    e->resource_len = resource_len;
    e->payload_len = payload_len;
    e->cost = cost;
    atomic_init(&e->refs, 1);
    entry_set_etag(e);
    return e;
}

void px_cache_entry_ref(struct px_cache_entry *e)
{
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

void px_cache_entry_release(struct px_cache_entry *e)
{
    if (e != NULL && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) {
        if (e->user != NULL && e->user_free != NULL) {
            e->user_free(e->user);
        }
        free(e);
    }
}

void *px_cache_entry_user_lock(struct px_cache_entry *e, bool *linked)
{
    while (atomic_exchange_explicit(&e->user_busy, true, memory_order_acquire)) {
        /* held only while a response is queued or rebuilt */
    }
    *linked = atomic_load(&e->linked);
    return e->user;
}

/* An unlinked entry gives up its user slot: a prebuilt response may hold a reference to the entry, and that
 * cycle must end when the cache lets the entry go. Set after `linked` became false, so no slot comes back. */
static void drop_user(struct px_cache_entry *e)
{
    bool linked;
    void *user = px_cache_entry_user_lock(e, &linked);
    px_cache_entry_user_unlock(e, NULL);
    if (user != NULL && e->user_free != NULL) {
        e->user_free(user);
    }
}

void px_cache_entry_user_unlock(struct px_cache_entry *e, void *user)
{
    e->user = user;
    atomic_store_explicit(&e->user_busy, false, memory_order_release);
}

void px_cache_set_user_free(struct px_cache *cache, void (*user_free)(void *user))
{
    cache->user_free = user_free;
}

/* Victims are collected under the lock and released after it, so free() never runs inside it. */
static void release_list(struct px_cache_entry *list)
{
    while (list != NULL) {
        struct px_cache_entry *next = list->hnext;
        drop_user(list);
        px_cache_entry_release(list);
        list = next;
    }
}

uint8_t px_cache_entry_code(const struct px_cache_entry *e)
{
    return e->code;
}

const struct co_optset *px_cache_entry_opts(const struct px_cache_entry *e)
{
    return e->opts;
}

const uint8_t *px_cache_entry_payload(const struct px_cache_entry *e, size_t *len)
{
    *len = e->payload_len;
    return e->payload;
}

const uint8_t *px_cache_entry_etag(const struct px_cache_entry *e, size_t *len)
{
    *len = e->etag_len;
    return e->etag;
}

uint32_t px_cache_entry_age(struct px_cache_entry *e, uint64_t now_ms)
{
    uint64_t stored_at;
    uint32_t max_age;
    freshness_read(e, &stored_at, &max_age);
    uint64_t age = elapsed_ms(stored_at, now_ms) / 1000;
    return age > UINT32_MAX ? UINT32_MAX : (uint32_t)age;
}

uint32_t px_cache_entry_max_age(struct px_cache_entry *e)
{
    uint64_t stored_at;
    uint32_t max_age;
    freshness_read(e, &stored_at, &max_age);
    return max_age;
}

uint32_t px_cache_entry_remaining(struct px_cache_entry *e, uint64_t now_ms)
{
    uint64_t stored_at;
    uint32_t max_age;
    freshness_read(e, &stored_at, &max_age);
    uint64_t age = elapsed_ms(stored_at, now_ms) / 1000;
    return age < max_age ? max_age - (uint32_t)age : 0;
}

/* ---- tables and LRU list (cache->lock held) ---- */

static size_t bucket(const struct px_cache *cache, uint64_t hash)
{
    return (size_t)hash & (cache->nbuckets - 1);
}

static void lru_unlink(struct px_cache *cache, struct px_cache_entry *e)
{
    *(e->prev != NULL ? &e->prev->next : &cache->head) = e->next;
    *(e->next != NULL ? &e->next->prev : &cache->tail) = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_head(struct px_cache *cache, struct px_cache_entry *e)
{
    e->prev = NULL;
    e->next = cache->head;
    *(cache->head != NULL ? &cache->head->prev : &cache->tail) = e;
    cache->head = e;
}

static void chains_link(struct px_cache *cache, struct px_cache_entry *e)
{
    struct px_cache_entry **kb = &cache->keys[bucket(cache, e->hash)];
    struct px_cache_entry **rb = &cache->resources[bucket(cache, e->rhash)];
    e->hnext = *kb;
    *kb = e;
    e->rnext = *rb;
    *rb = e;
}

static void chains_unlink(struct px_cache *cache, struct px_cache_entry *e)
{
    struct px_cache_entry **p = &cache->keys[bucket(cache, e->hash)];
    while (*p != e) {
        p = &(*p)->hnext;
    }
    *p = e->hnext;
    p = &cache->resources[bucket(cache, e->rhash)];
    while (*p != e) {
        p = &(*p)->rnext;
    }
    *p = e->rnext;
}

/* Rebuilds both chains at twice the size; on OOM the old tables stay (longer chains, still correct). */
static void tables_grow(struct px_cache *cache)
{
    size_t n = cache->nbuckets * 2;
    struct px_cache_entry **keys = calloc(n, sizeof(*keys));
    struct px_cache_entry **resources = calloc(n, sizeof(*resources));
    if (keys == NULL || resources == NULL) {
        free(keys);
        free(resources);
        return;
    }
    free(cache->keys);
    free(cache->resources);
    cache->keys = keys;
    cache->resources = resources;
    cache->nbuckets = n;
    for (struct px_cache_entry *e = cache->head; e != NULL; e = e->next) {
        chains_link(cache, e);
    }
}

static void entry_link(struct px_cache *cache, struct px_cache_entry *e)
{
    chains_link(cache, e);
    lru_push_head(cache, e);
    e->linked = true;
    cache->stats.entries++;
    cache->stats.bytes += e->cost;
    if (cache->stats.entries > cache->nbuckets) {
        tables_grow(cache);
    }
}

/* Takes e out of the cache and pushes it (still holding the cache's reference) onto *victims. */
static void entry_unlink(struct px_cache *cache, struct px_cache_entry *e, struct px_cache_entry **victims)
{
    chains_unlink(cache, e);
    lru_unlink(cache, e);
    e->linked = false;
    cache->stats.entries--;
    cache->stats.bytes -= e->cost;
    e->hnext = *victims;
    *victims = e;
}

static struct px_cache_entry *entry_find(struct px_cache *cache, uint64_t hash, const uint8_t *key,
                                         size_t key_len)
{
    for (struct px_cache_entry *e = cache->keys[bucket(cache, hash)]; e != NULL; e = e->hnext) {
        if (e->hash == hash && e->key_len == key_len && memcmp(e->key, key, key_len) == 0) {
            return e;
        }
    }
    return NULL;
}

/* Evicts from the LRU tail until one more entry of cost bytes fits both bounds. */
static void make_room(struct px_cache *cache, size_t cost, struct px_cache_entry **victims)
{
    while (cache->tail != NULL &&
           (cache->stats.entries + 1 > cache->max_entries || cache->stats.bytes + cost > cache->max_bytes)) {
        entry_unlink(cache, cache->tail, victims);
        cache->stats.evictions++;
    }
}

/* ---- the cache ---- */

struct px_cache *px_cache_create(size_t max_entries, size_t max_bytes)
{
    struct px_cache *cache = calloc(1, sizeof(*cache));
    if (cache == NULL) {
        return NULL;
    }
    cache->max_entries = max_entries > 0 ? max_entries : 1;
    cache->max_bytes = max_bytes;
    cache->nbuckets = MIN_BUCKETS;
    cache->nflight_buckets = MIN_BUCKETS;
    cache->keys = calloc(MIN_BUCKETS, sizeof(*cache->keys));
    cache->resources = calloc(MIN_BUCKETS, sizeof(*cache->resources));
    cache->flights = calloc(MIN_BUCKETS, sizeof(*cache->flights));
    if (cache->keys == NULL || cache->resources == NULL || cache->flights == NULL ||
        pthread_mutex_init(&cache->lock, NULL) != 0) {
        goto out_free_tables;
    }
    cg_siphash_key_random(&cache->seed);
    return cache;

out_free_tables:
    free(cache->keys);
    free(cache->resources);
    free(cache->flights);
    free(cache);
    return NULL;
}

static void flights_free(struct px_cache *cache)
{
    for (size_t i = 0; i < cache->nflight_buckets; i++) {
        while (cache->flights[i] != NULL) {
            struct flight *f = cache->flights[i];
            cache->flights[i] = f->next;
            free(f);
        }
    }
    free(cache->flights);
}

void px_cache_destroy(struct px_cache *cache)
{
    if (cache == NULL) {
        return;
    }
    struct px_cache_entry *victims = NULL;
    while (cache->head != NULL) {
        entry_unlink(cache, cache->head, &victims);
    }
    release_list(victims);
    flights_free(cache);
    free(cache->keys);
    free(cache->resources);
    pthread_mutex_destroy(&cache->lock);
    free(cache);
}

struct px_cache_entry *px_cache_lookup(struct px_cache *cache, const uint8_t *key, size_t key_len,
                                       uint64_t now_ms, bool *fresh)
{
    uint64_t hash = siphash(&cache->seed, key, key_len);
    bool is_fresh = false;

    pthread_mutex_lock(&cache->lock);
    struct px_cache_entry *e = entry_find(cache, hash, key, key_len);
    if (e != NULL) {
        lru_unlink(cache, e);
        lru_push_head(cache, e);
        px_cache_entry_ref(e);
        is_fresh = entry_fresh(e, now_ms);
    }
    if (is_fresh) {
        cache->stats.hits++;
    } else {
        cache->stats.misses++;
    }
    pthread_mutex_unlock(&cache->lock);
    if (fresh != NULL) {
        *fresh = is_fresh;
    }
    return e;
}

/* Why a response is not stored, before any allocation: 2.03 only refreshes (px_cache_refresh); Max-Age 0 is
 * kept only with an ETag, because then it is still worth a conditional request. */
static bool storable(uint8_t code, const struct co_optset *opts, uint32_t max_age)
{
    if (!co_code_cacheable(code) || code == CO_CODE(2, 3)) {
        return false;
    }
    return max_age > 0 || co_optset_find(opts, CO_OPT_ETAG, 0) != NULL;
}

/* Links e unless its resource was invalidated after epoch since; false (e untouched) then. */
static bool insert_entry(struct px_cache *cache, struct px_cache_entry *e, uint64_t since)
{
    struct px_cache_entry *victims = NULL;

    pthread_mutex_lock(&cache->lock);
    if (cache->recent[e->rhash % PX_CACHE_RECENT] > since) {
        pthread_mutex_unlock(&cache->lock);
        return false;
    }
    struct px_cache_entry *old = entry_find(cache, e->hash, e->key, e->key_len);
    if (old != NULL) {
        entry_unlink(cache, old, &victims);
    }
    make_room(cache, e->cost, &victims);
    entry_link(cache, e);
    cache->stats.stores++;
    pthread_mutex_unlock(&cache->lock);
    release_list(victims);
    return true;
}

static void count_too_large(struct px_cache *cache)
{
    pthread_mutex_lock(&cache->lock);
    cache->stats.not_stored_too_large++;
    pthread_mutex_unlock(&cache->lock);
}

struct px_cache_entry *px_cache_store(struct px_cache *cache, const uint8_t *key, size_t key_len,
                                      size_t resource_len, uint8_t code, const struct co_optset *opts,
                                      const uint8_t *payload, size_t payload_len, uint64_t now_ms)
{
    return px_cache_store_since(cache, key, key_len, resource_len, code, opts, payload, payload_len, now_ms,
                                UINT64_MAX);
}

uint64_t px_cache_epoch(struct px_cache *cache)
{
    pthread_mutex_lock(&cache->lock);
    uint64_t epoch = cache->epoch;
    pthread_mutex_unlock(&cache->lock);
    return epoch;
}

struct px_cache_entry *px_cache_store_since(struct px_cache *cache, const uint8_t *key, size_t key_len,
                                            size_t resource_len, uint8_t code, const struct co_optset *opts,
                                            const uint8_t *payload, size_t payload_len, uint64_t now_ms,
                                            uint64_t since)
{
    assert(key_len > 0 && resource_len <= key_len);
    uint32_t max_age = co_max_age(opts);
    if (key_len == 0 || resource_len > key_len || !storable(code, opts, max_age)) {
        return NULL;
    }
    if (payload_len > cache->max_bytes / 8) {
        count_too_large(cache);
        return NULL;
    }
    struct px_cache_entry *e = entry_new(key, key_len, resource_len, code, opts, payload, payload_len);
    if (e == NULL) {
        return NULL;
    }
    if (e->cost > cache->max_bytes) {
        free(e);
        count_too_large(cache);
        return NULL;
    }
    e->user_free = cache->user_free;
    e->hash = siphash(&cache->seed, key, key_len);
    e->rhash = siphash(&cache->seed, key, resource_len);
    freshness_write(e, now_ms, max_age);
    atomic_store_explicit(&e->refs, 2, memory_order_relaxed); /* the cache's and the caller's */
    if (!insert_entry(cache, e, since)) {
        free(e);
        return NULL;
    }
    return e;
}

void px_cache_refresh(struct px_cache *cache, struct px_cache_entry *entry, const struct co_optset *opts,
                      uint64_t now_ms)
{
    if (entry == NULL) {
        return;
    }
    uint32_t max_age = co_max_age(opts);
    pthread_mutex_lock(&cache->lock);
    freshness_write(entry, now_ms, max_age);
    if (entry->linked) {
        lru_unlink(cache, entry);
        lru_push_head(cache, entry);
    }
    cache->stats.revalidated++;
    pthread_mutex_unlock(&cache->lock);
}

size_t px_cache_invalidate(struct px_cache *cache, const uint8_t *resource, size_t len)
{
    uint64_t rhash = siphash(&cache->seed, resource, len);
    struct px_cache_entry *victims = NULL;
    size_t n = 0;

    pthread_mutex_lock(&cache->lock);
    cache->recent[rhash % PX_CACHE_RECENT] = ++cache->epoch;
    struct px_cache_entry *e = cache->resources[bucket(cache, rhash)];
    while (e != NULL) {
        struct px_cache_entry *next = e->rnext;
        if (e->rhash == rhash && e->resource_len == len && memcmp(e->key, resource, len) == 0) {
            entry_unlink(cache, e, &victims);
            n++;
        }
        e = next;
    }
    cache->stats.invalidations += n;
    pthread_mutex_unlock(&cache->lock);
    release_list(victims);
    return n;
}

void px_cache_stats(struct px_cache *cache, struct px_cache_stats *out)
{
    pthread_mutex_lock(&cache->lock);
    *out = cache->stats;
    pthread_mutex_unlock(&cache->lock);
}

/* ---- single flight ---- */

static struct flight **flight_slot(struct px_cache *cache, uint64_t hash, const uint8_t *key, size_t key_len)
{
    struct flight **p = &cache->flights[(size_t)hash & (cache->nflight_buckets - 1)];
    while (*p != NULL &&
           !((*p)->hash == hash && (*p)->key_len == key_len && memcmp((*p)->key, key, key_len) == 0)) {
        p = &(*p)->next;
    }
    return p;
}

static void flights_grow(struct px_cache *cache)
{
    size_t n = cache->nflight_buckets * 2;
    struct flight **table = calloc(n, sizeof(*table));
    if (table == NULL) {
        return;
    }
    for (size_t i = 0; i < cache->nflight_buckets; i++) {
        while (cache->flights[i] != NULL) {
            struct flight *f = cache->flights[i];
            cache->flights[i] = f->next;
            f->next = table[(size_t)f->hash & (n - 1)];
            table[(size_t)f->hash & (n - 1)] = f;
        }
    }
    free(cache->flights);
    cache->flights = table;
    cache->nflight_buckets = n;
}

/* Without memory for a flight record the caller still leads: its request just is not shared. */
static void flight_start(struct px_cache *cache, struct flight **slot, uint64_t hash, const uint8_t *key,
                         size_t key_len)
{
    struct flight *f = malloc(sizeof(*f) + key_len);
    if (f == NULL) {
        return;
    }
    *f = (struct flight){.hash = hash, .key_len = key_len};
    memcpy(f->key, key, key_len);
    *slot = f;
    if (++cache->nflights > cache->nflight_buckets) {
        flights_grow(cache);
    }
}

bool px_cache_flight_join(struct px_cache *cache, const uint8_t *key, size_t key_len,
                          struct px_cache_waiter *w)
{
    uint64_t hash = siphash(&cache->seed, key, key_len);
    bool leader = false;

    w->next = NULL;
    pthread_mutex_lock(&cache->lock);
    struct flight **slot = flight_slot(cache, hash, key, key_len);
    if (*slot == NULL) {
        flight_start(cache, slot, hash, key, key_len);
        leader = true;
    } else {
        struct flight *f = *slot;
        *(f->last != NULL ? &f->last->next : &f->first) = w;
        f->last = w;
    }
    pthread_mutex_unlock(&cache->lock);
    return leader;
}

size_t px_cache_flight_finish(struct px_cache *cache, const uint8_t *key, size_t key_len, void *result)
{
    uint64_t hash = siphash(&cache->seed, key, key_len);
    struct px_cache_waiter *w = NULL;

    pthread_mutex_lock(&cache->lock);
    struct flight **slot = flight_slot(cache, hash, key, key_len);
    struct flight *f = *slot;
    if (f != NULL) {
        *slot = f->next;
        cache->nflights--;
        w = f->first;
    }
    pthread_mutex_unlock(&cache->lock);
    free(f);

    size_t woken = 0;
    while (w != NULL) {
        struct px_cache_waiter *next = w->next; /* wake may free w */
        w->wake(w, result);
        w = next;
        woken++;
    }
    return woken;
}
