/* proxy/observe: fans CoAP observations (RFC 7641) out to HTTP subscribers. Any number of subscribers to one
 * resource share one upstream observation; the last one leaving deregisters it. Thread-safe: one mutex,
 * never held across I/O; notifications are refcounted and immutable, so fan-out copies no payload. */
#ifndef PX_OBSERVE_H
#define PX_OBSERVE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/clock.h"
#include "proxy/exchange.h"
#include "proxy/translate.h"

#define PX_SUB_QUEUE 32 /* notifications a subscriber may have unread before it is dropped as too slow */

/* One notification, or the end of the observation (end = true). */
struct px_notification {
    atomic_int refs;
    bool end;
    enum px_status status; /* end only: PX_OK when the device ended it, else why it failed */
    const char *detail;    /* end only */
    uint8_t code;
    bool has_seq;
    uint32_t seq; /* Observe option value */
    int cf;       /* Content-Format, -1 when absent */
    uint8_t etag[8];
    uint8_t etag_len;
    long max_age; /* -1 when absent */
    size_t len;
    uint8_t payload[];
};

struct px_observe_obs;

/* A subscriber is owned by its HTTP request; the registry links it while subscribed. */
struct px_subscriber {
    /* Set by the owner before px_observe_subscribe(). */
    void (*wake)(struct px_subscriber *s); /* called under the registry lock, once per park */
    bool want_next;                        /* long-poll: skip the registration's answer (current state) */
    uint64_t wake_at_ms; /* set by px_observe_next: the ticker wakes a parked subscriber then (0: never) */
    bool store;          /* the first subscriber decides: hand each notification to the store hook */
    size_t resource_len; /* the key's resource part (px_cache_key), for the store hook */
    /* Private. */
    struct px_subscriber *next;
    struct px_observe_obs *obs;
    struct px_notification *q[PX_SUB_QUEUE];
    unsigned q_head, q_len;
    unsigned skip;
    bool parked;
    bool ended;
};

struct px_observe;

/* limits: subscribers per resource and in total. The registry runs one ticker thread (1 s) that wakes
 * subscribers whose wake_at_ms has passed. NULL on failure. */
struct px_observe *px_observe_create(struct px_transport transport, cg_clock_fn clock, void *clock_arg,
                                     unsigned max_per_resource, unsigned max_total);
/* Called on a CoAP worker, outside the registry's lock, with each notification (x's resp_* valid during the
 * call) of an observation whose first subscriber set store: the pipeline stores it in the cache, so a GET
 * never answers an older representation than the one the subscribers just got. Set once, before the first
 * subscription. */
typedef void (*px_observe_store_fn)(void *arg, const uint8_t *key, size_t key_len, size_t resource_len,
                                    const struct px_exchange *x);
void px_observe_set_store(struct px_observe *reg, px_observe_store_fn fn, void *arg);

/* Every subscriber must have unsubscribed. NULL ok. */
void px_observe_destroy(struct px_observe *reg);

/* Subscribes s to the resource key (upstream + CoAP request options req, which are copied). The first
 * subscriber starts the upstream observation; a later SSE subscriber gets the last notification at once.
 * Returns PX_ERR_UNAVAILABLE (with *detail) when a limit is reached or the gateway is stopping. */
enum px_status px_observe_subscribe(struct px_observe *reg, size_t upstream, const uint8_t *key,
                                    size_t key_len, const struct co_optset *req, struct px_subscriber *s,
                                    const char **detail);
/* Ends every subscriber's stream (shutdown): each gets its queued notifications, then the end. */
void px_observe_close_all(struct px_observe *reg);

/* Leaves; the last subscriber of a live observation deregisters it upstream. Safe to call twice. */
void px_observe_unsubscribe(struct px_observe *reg, struct px_subscriber *s);

/* The next notification for s (the caller owns that reference), or NULL. When NULL and nothing more can
 * come, *ended is true. When NULL and not ended, park(s) is called under the lock and s->wake() will be
 * called (under the lock) when something arrives or wake_at_ms passes. */
struct px_notification *px_observe_next(struct px_observe *reg, struct px_subscriber *s, uint64_t wake_at_ms,
                                        bool *ended, void (*park)(struct px_subscriber *s, void *arg),
                                        void *arg);

void px_notification_release(struct px_notification *n);

#endif
