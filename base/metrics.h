/* base/metrics: lock-free counters for /metrics. Histograms of durations, sets of series keyed by a label
 * value (a route's prefix, an upstream's name) that live as long as the process, so a reload that keeps a
 * name keeps its series, and the Prometheus text format's escaping. Counting is a relaxed atomic add and
 * never blocks or allocates on the hot path (a series is allocated once, the first time its key is seen).
 * Nothing here knows what is counted: the families are defined by the code that counts. */
#ifndef CG_METRICS_H
#define CG_METRICS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

/* ---- histograms of durations ---- */

#define CG_HIST_BUCKETS 16 /* upper bounds, plus +Inf */

/* The bucket bounds in microseconds (0.5 ms .. 60 s), shared by every duration histogram. */
extern const uint64_t cg_hist_bounds_us[CG_HIST_BUCKETS];

/* One histogram: per-bucket counts (not cumulative: the writer cumulates, so count always equals the +Inf
 * bucket) and the sum in microseconds. Zero-initialised is empty. */
struct cg_hist {
    atomic_uint_fast64_t bucket[CG_HIST_BUCKETS + 1];
    atomic_uint_fast64_t sum_us;
};

/* Counts one observation of us microseconds. Thread: any. */
void cg_hist_observe(struct cg_hist *h, uint64_t us);

/* Monotonic microseconds (CLOCK_MONOTONIC), for the durations measured. Thread: any. */
uint64_t cg_metrics_now_us(void);

/* ---- series keyed by a label value ---- */

#define CG_KEYED_MAX 256         /* series in one set; the last one is "(other)", for every key beyond */
#define CG_KEYED_SLOTS 512       /* hash slots: a power of two, twice CG_KEYED_MAX */
#define CG_KEYED_OTHER "(other)" /* the key of the series that takes what does not fit */

struct cg_keyed_item;

/* A set of series, each value_size bytes (zeroed at creation, so atomics start at 0). Lookups are lock-free;
 * a new key takes the set's mutex once. Items are never freed: a set is meant for static storage. */
struct cg_keyed {
    size_t value_size;
    pthread_mutex_t mu;
    _Atomic(struct cg_keyed_item *) slot[CG_KEYED_SLOTS];
    _Atomic(struct cg_keyed_item *) order[CG_KEYED_MAX]; /* in creation order, for the writer */
    atomic_size_t count;
};

#define CG_KEYED_INIT(size)                                                                                  \
    {                                                                                                        \
        .value_size = (size), .mu = PTHREAD_MUTEX_INITIALIZER                                                \
    }

/* The series of key[0..len), created (zeroed) when new; the "(other)" series once the set is full. NULL
 * only when out of memory. Thread: any. */
void *cg_keyed_get(struct cg_keyed *set, const char *key, size_t len);

/* Series i (0 <= i < cg_keyed_count) and its key (NUL-terminated). Thread: any. */
size_t cg_keyed_count(struct cg_keyed *set);
void *cg_keyed_at(struct cg_keyed *set, size_t i, const char **key);

/* ---- the Prometheus text format (version 0.0.4) ---- */

/* Writes src[0..len) into dst as a label value's inside: backslash, double quote and line feed escaped
 * (\\ \" \n), as the exposition format requires; other bytes as they are (label values are UTF-8 text).
 * Truncates at a whole escape to fit cap; dst is NUL-terminated. Returns the length written. cap >= 1. */
size_t cg_prom_escape(char *dst, size_t cap, const char *src, size_t len);

/* Appends formatted text to b (at most 16 MiB in all; what does not fit is left out). */
void cg_prom_printf(struct cg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "# HELP name help\n# TYPE name type\n" (help is ours: no escaping). */
void cg_prom_head(struct cg_buf *b, const char *name, const char *type, const char *help);

/* The samples of a histogram: name_bucket{labels,le=...} (cumulative), name_sum (seconds), name_count.
 * labels is "" or label pairs already escaped ("route=\"/api/\""). */
void cg_prom_hist(struct cg_buf *b, const char *name, const char *labels, const struct cg_hist *h);

#endif
