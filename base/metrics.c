/* base/metrics: histograms, keyed series and Prometheus text. The hot path is relaxed atomic adds and a
 * lock-free hash lookup; the only lock is taken when a key is seen for the first time. */
#include "base/metrics.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const uint64_t cg_hist_bounds_us[CG_HIST_BUCKETS] = {
    500,    1000,   2500,    5000,    10000,   25000,    50000,    100000,
    250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000, 60000000,
};

void cg_hist_observe(struct cg_hist *h, uint64_t us)
{
    size_t i = 0;
    while (i < CG_HIST_BUCKETS && us > cg_hist_bounds_us[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

uint64_t cg_metrics_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- keyed series ---- */

struct cg_keyed_item {
    size_t len;
    char *key; /* NUL-terminated copy */
    _Alignas(max_align_t) unsigned char value[];
};

/* FNV-1a: the keys are the configuration's names, not a client's, so an unkeyed hash is enough. */
static size_t slot_of(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
    }
    return (size_t)h & (CG_KEYED_SLOTS - 1);
}

static bool item_is(const struct cg_keyed_item *it, const char *key, size_t len)
{
    return it->len == len && memcmp(it->key, key, len) == 0;
}

/* Lock-free: slots are only ever filled, each once, with an item published whole (release). */
static struct cg_keyed_item *find(struct cg_keyed *set, const char *key, size_t len)
{
    for (size_t i = slot_of(key, len), n = 0; n < CG_KEYED_SLOTS; i = (i + 1) & (CG_KEYED_SLOTS - 1), n++) {
        struct cg_keyed_item *it = atomic_load_explicit(&set->slot[i], memory_order_acquire);
        if (it == NULL) {
            return NULL;
        }
        if (item_is(it, key, len)) {
            return it;
        }
    }
    return NULL;
}

/* Caller holds set->mu, and key is not in the set. */
static struct cg_keyed_item *insert_locked(struct cg_keyed *set, const char *key, size_t len)
{
    struct cg_keyed_item *it = calloc(1, sizeof(*it) + set->value_size);
    char *copy = malloc(len + 1);

    if (it == NULL || copy == NULL) {
        free(it);
        free(copy);
        return NULL;
    }
    memcpy(copy, key, len);
    copy[len] = '\0';
    it->key = copy;
    it->len = len;
    size_t i = slot_of(key, len);
    while (atomic_load_explicit(&set->slot[i], memory_order_relaxed) != NULL) {
        i = (i + 1) & (CG_KEYED_SLOTS - 1); /* never full: at most half the slots are used */
    }
    size_t n = atomic_load_explicit(&set->count, memory_order_relaxed);
    atomic_store_explicit(&set->order[n], it, memory_order_release);
    atomic_store_explicit(&set->count, n + 1, memory_order_release);
    atomic_store_explicit(&set->slot[i], it, memory_order_release);
    return it;
}

void *cg_keyed_get(struct cg_keyed *set, const char *key, size_t len)
{
    struct cg_keyed_item *it = find(set, key, len);

    if (it != NULL) {
        return it->value;
    }
    pthread_mutex_lock(&set->mu);
    it = find(set, key, len); /* another thread may have just made it */
    if (it == NULL && atomic_load_explicit(&set->count, memory_order_relaxed) >= CG_KEYED_MAX - 1) {
        key = CG_KEYED_OTHER;
        len = strlen(CG_KEYED_OTHER);
        it = find(set, key, len);
    }
    if (it == NULL) {
        it = insert_locked(set, key, len);
    }
    pthread_mutex_unlock(&set->mu);
    return it != NULL ? it->value : NULL;
}

size_t cg_keyed_count(struct cg_keyed *set)
{
    return atomic_load_explicit(&set->count, memory_order_acquire);
}

void *cg_keyed_at(struct cg_keyed *set, size_t i, const char **key)
{
    struct cg_keyed_item *it = atomic_load_explicit(&set->order[i], memory_order_acquire);
    *key = it->key;
    return it->value;
}

/* ---- Prometheus text ---- */

#define PROM_MAX (16u << 20)

size_t cg_prom_escape(char *dst, size_t cap, const char *src, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        const char *esc = c == '\\' ? "\\\\" : c == '"' ? "\\\"" : c == '\n' ? "\\n" : NULL;
        size_t k = esc != NULL ? 2 : 1;
        if (n + k + 1 > cap) {
            break;
        }
        if (esc != NULL) {
            memcpy(dst + n, esc, 2);
        } else {
            dst[n] = c;
        }
        n += k;
    }
    dst[n] = '\0';
    return n;
}

void cg_prom_printf(struct cg_buf *b, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof(line)) {
        cg_buf_append(b, line, (size_t)n, PROM_MAX);
    }
}

void cg_prom_head(struct cg_buf *b, const char *name, const char *type, const char *help)
{
    cg_prom_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void cg_prom_hist(struct cg_buf *b, const char *name, const char *labels, const struct cg_hist *h)
{
    const char *sep = labels[0] != '\0' ? "," : "";
    uint64_t total = 0;

    for (size_t i = 0; i <= CG_HIST_BUCKETS; i++) {
        total += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        if (i < CG_HIST_BUCKETS) {
            cg_prom_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                           (double)cg_hist_bounds_us[i] / 1e6, (unsigned long long)total);
        } else {
            cg_prom_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                           (unsigned long long)total);
        }
    }
    uint64_t sum = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
    const char *open = labels[0] != '\0' ? "{" : "", *close = labels[0] != '\0' ? "}" : "";
    cg_prom_printf(b, "%s_sum%s%s%s %llu.%06llu\n", name, open, labels, close,
                   (unsigned long long)(sum / 1000000), (unsigned long long)(sum % 1000000));
    cg_prom_printf(b, "%s_count%s%s%s %llu\n", name, open, labels, close, (unsigned long long)total);
}
