/* proxy/observe: the observation registry. One mutex guards the table, the subscriber lists and their
 * queues; client callbacks (worker threads) and subscriber calls (MHD threads) meet only here. */
#include "proxy/observe.h"

#include "base/clock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct px_observe_obs {
    struct px_observe_obs *next; /* in reg->table while in_table */
    struct px_observe *reg;
    uint8_t *key;
    size_t key_len, resource_len;
    bool store; /* notifications go to reg->store */
    uint64_t id;
    bool in_table;
    bool ended;
    unsigned events;
    unsigned nsubs;
    struct px_subscriber *subs;
    struct px_notification *last; /* the newest notification, for subscribers that join later */
    struct co_optset opts;
    struct px_exchange x;
};

struct px_observe {
    struct px_transport transport;
    cg_clock_fn clock;
    void *clock_arg;
    px_observe_store_fn store;
    void *store_arg;
    unsigned max_per_resource, max_total;
    pthread_mutex_t mu;
    struct px_observe_obs *table;
    unsigned total;
    pthread_t ticker;
    pthread_cond_t stop_cv;
    bool stopping;
};

/* ---- notifications ---- */

void px_notification_release(struct px_notification *n)
{
    if (n != NULL && atomic_fetch_sub(&n->refs, 1) == 1) {
        free(n);
    }
}

static struct px_notification *notification_ref(struct px_notification *n)
{
    atomic_fetch_add(&n->refs, 1);
    return n;
}

static struct px_notification *notification_from(const struct px_exchange *x)
{
    struct px_notification *n = calloc(1, sizeof(*n) + x->resp_len);
    if (n == NULL) {
        return NULL;
    }
    atomic_init(&n->refs, 1);
    n->code = x->resp_code;
    n->cf = -1;
    n->max_age = -1;
    const struct co_opt *o;
    if ((o = co_optset_find(&x->resp, CO_OPT_OBSERVE, 0)) != NULL) {
        n->has_seq = true;
        n->seq = co_opt_uint(co_opt_value(&x->resp, o), o->len);
    }
    if ((o = co_optset_find(&x->resp, CO_OPT_CONTENT_FORMAT, 0)) != NULL) {
        n->cf = (int)co_opt_uint(co_opt_value(&x->resp, o), o->len);
    }
    if ((o = co_optset_find(&x->resp, CO_OPT_MAX_AGE, 0)) != NULL) {
        n->max_age = (long)co_opt_uint(co_opt_value(&x->resp, o), o->len);
    }
    if ((o = co_optset_find(&x->resp, CO_OPT_ETAG, 0)) != NULL && o->len >= 1 && o->len <= sizeof(n->etag)) {
        memcpy(n->etag, co_opt_value(&x->resp, o), o->len);
        n->etag_len = (uint8_t)o->len;
    }
    if (x->resp_len > 0) {
        memcpy(n->payload, x->resp_payload, x->resp_len);
    }
    n->len = x->resp_len;
    return n;
}

#define STR2(x) #x
#define STR(x) STR2(x)
#define SUB_TOO_SLOW "the subscriber fell " STR(PX_SUB_QUEUE) " notifications behind"

static struct px_notification *notification_end(enum px_status status, const char *detail)
{
    struct px_notification *n = calloc(1, sizeof(*n));
    if (n != NULL) {
        atomic_init(&n->refs, 1);
        n->end = true;
        n->status = status;
        n->detail = detail;
        n->cf = -1;
        n->max_age = -1;
    }
    return n;
}

/* ---- subscribers (lock held) ---- */

static void sub_wake(struct px_subscriber *s)
{
    if (s->parked) {
        s->parked = false;
        s->wake(s);
    }
}

static void sub_clear(struct px_subscriber *s)
{
    while (s->q_len > 0) {
        px_notification_release(s->q[s->q_head]);
        s->q_head = (s->q_head + 1) % PX_SUB_QUEUE;
        s->q_len--;
    }
}

/* Queues n for s. A subscriber that has PX_SUB_QUEUE unread notifications is too slow: it is ended, so a
 * stuck reader never holds the others back. */
static void sub_deliver(struct px_subscriber *s, struct px_notification *n)
{
    if (s->ended) {
        return;
    }
    if (!n->end && s->skip > 0 && n->has_seq && CO_CODE_CLASS(n->code) == 2) {
        s->skip--;
        return;
    }
    if (s->q_len == PX_SUB_QUEUE) {
        /* Too slow: what it has not read goes, and its last notification says why (SSE: event: error). */
        sub_clear(s);
        struct px_notification *end = notification_end(PX_ERR_UNAVAILABLE, SUB_TOO_SLOW);
        if (end != NULL) {
            s->q[s->q_head] = end;
            s->q_len = 1;
        }
        s->ended = true;
    } else {
        s->q[(s->q_head + s->q_len) % PX_SUB_QUEUE] = notification_ref(n);
        s->q_len++;
    }
    sub_wake(s);
}

static void obs_free(struct px_observe_obs *obs)
{
    px_notification_release(obs->last);
    co_optset_fini(&obs->opts);
    co_optset_fini(&obs->x.resp);
    free(obs->key);
    free(obs);
}

static void table_remove(struct px_observe *reg, struct px_observe_obs *obs)
{
    struct px_observe_obs **p = &reg->table;
    while (*p != NULL && *p != obs) {
        p = &(*p)->next;
    }
    if (*p == obs) {
        *p = obs->next;
    }
    obs->in_table = false;
}

/* ---- client callbacks (worker thread) ---- */

static void on_notify(struct px_exchange *x, void *arg)
{
    struct px_observe_obs *obs = arg;
    struct px_notification *n = notification_from(x);

    if (obs->store && obs->reg->store != NULL) {
        obs->reg->store(obs->reg->store_arg, obs->key, obs->key_len, obs->resource_len, x);
    }
    if (n == NULL) {
        return;
    }
    pthread_mutex_lock(&obs->reg->mu);
    obs->events++;
    px_notification_release(obs->last);
    obs->last = notification_ref(n);
    for (struct px_subscriber *s = obs->subs; s != NULL; s = s->next) {
        sub_deliver(s, n);
    }
    pthread_mutex_unlock(&obs->reg->mu);
    px_notification_release(n);
}

static void on_done(struct px_exchange *x, void *arg)
{
    struct px_observe_obs *obs = arg;
    struct px_observe *reg = obs->reg;
    struct px_notification *n = notification_end(x->status, x->detail);

    pthread_mutex_lock(&reg->mu);
    obs->ended = true;
    if (obs->in_table) {
        table_remove(reg, obs);
    }
    for (struct px_subscriber *s = obs->subs; s != NULL; s = s->next) {
        if (n != NULL) {
            sub_deliver(s, n);
        } else {
            s->ended = true;
            sub_wake(s);
        }
    }
    bool orphan = obs->nsubs == 0;
    pthread_mutex_unlock(&reg->mu);
    px_notification_release(n);
    if (orphan) {
        obs_free(obs);
    }
}

/* ---- subscribe / unsubscribe ---- */

static struct px_observe_obs *table_find(struct px_observe *reg, const uint8_t *key, size_t key_len)
{
    for (struct px_observe_obs *obs = reg->table; obs != NULL; obs = obs->next) {
        if (obs->key_len == key_len && memcmp(obs->key, key, key_len) == 0) {
            return obs;
        }
    }
    return NULL;
}

static struct px_observe_obs *obs_create(struct px_observe *reg, size_t upstream, const uint8_t *key,
                                         size_t key_len, const struct co_optset *req)
{
    struct px_observe_obs *obs = calloc(1, sizeof(*obs));
    if (obs == NULL) {
        return NULL;
    }
    obs->key = malloc(key_len);
    if (obs->key == NULL) {
        free(obs);
        return NULL;
    }
    memcpy(obs->key, key, key_len);
    obs->key_len = key_len;
    obs->reg = reg;
    if (co_optset_copy(&obs->opts, req) != 0) {
        free(obs->key);
        free(obs);
        return NULL;
    }
    obs->x.upstream = upstream;
    obs->x.code = CO_GET;
    obs->x.req = &obs->opts;
    obs->x.notify = on_notify;
    obs->x.done = on_done;
    obs->x.arg = obs;
    return obs;
}

static unsigned count_subs(const struct px_observe_obs *obs)
{
    return obs != NULL ? obs->nsubs : 0;
}

enum px_status px_observe_subscribe(struct px_observe *reg, size_t upstream, const uint8_t *key,
                                    size_t key_len, const struct co_optset *req, struct px_subscriber *s,
                                    const char **detail)
{
    enum px_status st = PX_OK;

    s->next = NULL;
    s->obs = NULL;
    s->q_head = s->q_len = 0;
    s->parked = s->ended = false;
    s->skip = 0;
    pthread_mutex_lock(&reg->mu);
    struct px_observe_obs *obs = table_find(reg, key, key_len);
    if (reg->total >= reg->max_total) {
        *detail = "the gateway has reached limits.max_subscribers in total";
        st = PX_ERR_UNAVAILABLE;
        goto out_unlock;
    }
    if (count_subs(obs) >= reg->max_per_resource) {
        *detail = "this resource has reached limits.max_subscribers";
        st = PX_ERR_UNAVAILABLE;
        goto out_unlock;
    }
    if (obs == NULL) {
        obs = obs_create(reg, upstream, key, key_len, req);
        if (obs == NULL) {
            *detail = "out of memory";
            st = PX_ERR_INTERNAL;
            goto out_unlock;
        }
        obs->store = s->store;
        obs->resource_len = s->resource_len <= key_len ? s->resource_len : key_len;
        obs->id = reg->transport.observe(reg->transport.impl, &obs->x);
        if (obs->id == 0) { /* refused at once: the transport says why (a limit, or stopping) */
            *detail = obs->x.detail != NULL ? obs->x.detail : "the gateway is shutting down";
            obs_free(obs);
            st = PX_ERR_UNAVAILABLE;
            goto out_unlock;
        }
        obs->in_table = true;
        obs->next = reg->table;
        reg->table = obs;
    }
    s->obs = obs;
    s->next = obs->subs;
    obs->subs = s;
    obs->nsubs++;
    reg->total++;
    if (s->want_next) {
        s->skip = obs->events == 0 ? 1 : 0;
    } else if (obs->last != NULL) {
        sub_deliver(s, obs->last);
    }
out_unlock:
    pthread_mutex_unlock(&reg->mu);
    return st;
}

void px_observe_unsubscribe(struct px_observe *reg, struct px_subscriber *s)
{
    struct px_observe_obs *obs = s->obs;
    bool free_now = false;

    if (obs == NULL) {
        return;
    }
    pthread_mutex_lock(&reg->mu);
    struct px_subscriber **p = &obs->subs;
    while (*p != NULL && *p != s) {
        p = &(*p)->next;
    }
    if (*p == s) {
        *p = s->next;
    }
    sub_clear(s);
    s->obs = NULL;
    obs->nsubs--;
    reg->total--;
    if (obs->nsubs == 0) {
        if (obs->ended) {
            free_now = true;
        } else if (obs->in_table) {
            /* The worker ends it (on_done frees it: no subscriber is left to read). */
            table_remove(reg, obs);
            reg->transport.unobserve(reg->transport.impl, obs->x.upstream, obs->id);
        }
    }
    pthread_mutex_unlock(&reg->mu);
    if (free_now) {
        obs_free(obs);
    }
}

void px_observe_close_all(struct px_observe *reg)
{
    pthread_mutex_lock(&reg->mu);
    for (struct px_observe_obs *obs = reg->table; obs != NULL; obs = obs->next) {
        for (struct px_subscriber *s = obs->subs; s != NULL; s = s->next) {
            s->ended = true;
            sub_wake(s);
        }
    }
    pthread_mutex_unlock(&reg->mu);
}

struct px_notification *px_observe_next(struct px_observe *reg, struct px_subscriber *s, uint64_t wake_at_ms,
                                        bool *ended, void (*park)(struct px_subscriber *s, void *arg),
                                        void *arg)
{
    struct px_notification *n = NULL;

    pthread_mutex_lock(&reg->mu);
    *ended = false;
    s->wake_at_ms = wake_at_ms;
    if (s->q_len > 0) {
        n = s->q[s->q_head];
        s->q_head = (s->q_head + 1) % PX_SUB_QUEUE;
        s->q_len--;
    } else if (s->ended || s->obs == NULL) {
        *ended = true;
    } else {
        s->parked = true;
        park(s, arg);
    }
    if (n != NULL && n->end) {
        s->ended = true;
    }
    pthread_mutex_unlock(&reg->mu);
    return n;
}

/* ---- ticker: wakes parked subscribers whose wake_at_ms passed (SSE keep-alives, long-poll deadlines) ----
 */

static void *ticker_main(void *arg)
{
    struct px_observe *reg = arg;

    pthread_mutex_lock(&reg->mu);
    while (!reg->stopping) {
        struct timespec until = cg_timespec_after_ms(CLOCK_MONOTONIC, 1000);
        pthread_cond_timedwait(&reg->stop_cv, &reg->mu, &until);
        uint64_t now = reg->clock(reg->clock_arg);
        for (struct px_observe_obs *obs = reg->table; obs != NULL; obs = obs->next) {
            for (struct px_subscriber *s = obs->subs; s != NULL; s = s->next) {
                if (s->wake_at_ms != 0 && s->wake_at_ms <= now) {
                    sub_wake(s);
                }
            }
        }
    }
    pthread_mutex_unlock(&reg->mu);
    return NULL;
}

struct px_observe *px_observe_create(struct px_transport transport, cg_clock_fn clock, void *clock_arg,
                                     unsigned max_per_resource, unsigned max_total)
{
    struct px_observe *reg = calloc(1, sizeof(*reg));
    pthread_condattr_t ca;

    if (reg == NULL) {
        return NULL;
    }
    reg->transport = transport;
    reg->clock = clock;
    reg->clock_arg = clock_arg;
    reg->max_per_resource = max_per_resource;
    reg->max_total = max_total;
    pthread_mutex_init(&reg->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&reg->stop_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&reg->ticker, NULL, ticker_main, reg) != 0) {
        pthread_cond_destroy(&reg->stop_cv);
        pthread_mutex_destroy(&reg->mu);
        free(reg);
        return NULL;
    }
    return reg;
}

void px_observe_set_store(struct px_observe *reg, px_observe_store_fn fn, void *arg)
{
    reg->store = fn;
    reg->store_arg = arg;
}

void px_observe_destroy(struct px_observe *reg)
{
    if (reg == NULL) {
        return;
    }
    pthread_mutex_lock(&reg->mu);
    reg->stopping = true;
    pthread_cond_signal(&reg->stop_cv);
    pthread_mutex_unlock(&reg->mu);
    pthread_join(reg->ticker, NULL);
    pthread_cond_destroy(&reg->stop_cv);
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}
