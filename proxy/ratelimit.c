/* proxy/ratelimit: per-client token buckets in a fixed, striped, SipHash-keyed table (see the header for the
 * policy). Each stripe is a chained hash table over a preallocated array of clients plus an intrusive LRU
 * list, all linked by 32-bit indices; its mutex is held for one lookup and one bucket update. */
#include "proxy/ratelimit.h"

#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/siphash.h"

#define NIL UINT32_MAX
#define MAX_STRIPES 32u
#define MIN_PER_STRIPE 256u /* below this, per-stripe LRU would be too coarse to be worth the parallelism */
#define EVICT_SCAN 8u       /* oldest clients looked at for a full bucket before taking the oldest */
#define NS_PER_MS 1000000ULL
#define NS_PER_S 1000000000ULL
#define MAX_NOW_MS ((1ULL << 63) / NS_PER_MS)
#define MAX_SPAN_NS (1ULL << 62)
#define MAX_CLIENTS (1ULL << 31)

/* Who a request is charged to: the bytes of an IPv4 address or of an IPv6 /64, as they are on the wire. */
struct client_id {
    uint64_t prefix;
    uint64_t family; /* AF_INET or AF_INET6; a whole word so the id hashes without padding bytes */
};

struct client {
    uint64_t prefix;
    uint64_t full_at_ns;   /* GCRA's theoretical arrival time: the bucket is full from this instant on */
    uint32_t hnext;        /* hash chain */
    uint32_t newer, older; /* LRU list: a take makes a client the newest */
    uint8_t family;
};

struct stripe {
    _Alignas(64) pthread_mutex_t lock; /* a cache line of its own: stripes are locked by different threads */
    struct client *clients;            /* cap slots, the first used ones live */
    uint32_t *heads;                   /* mask + 1 chain heads */
    uint32_t mask, cap, used;
    uint32_t newest, oldest;
};

struct px_rl {
    struct cg_siphash_key key;
    uint64_t interval_ns; /* one token's refill time */
    uint64_t span_ns;     /* burst * interval_ns: how far ahead of now full_at_ns may go */
    uint32_t nstripes;    /* power of two */
    struct stripe *stripes;
};

/* ---- client identity ---- */

static uint64_t load_prefix(const uint8_t *bytes, size_t n)
{
    uint64_t v = 0;
    memcpy(&v, bytes, n);
    return v;
}

/* Maps addr to its client; false for a family that is not limited. */
static bool client_of(const struct sockaddr *addr, struct client_id *id)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (addr == NULL) {
        return false;
    }
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)addr;
        *id = (struct client_id){load_prefix((const uint8_t *)&in->sin_addr, 4), AF_INET};
        return true;
    }
    if (addr->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr.s6_addr;
        if (memcmp(a, v4mapped, sizeof(v4mapped)) == 0) {
            *id = (struct client_id){load_prefix(a + 12, 4), AF_INET};
        } else {
            *id = (struct client_id){load_prefix(a, 8), AF_INET6};
        }
        return true;
    }
    return false;
}

static uint64_t hash_of(const struct px_rl *rl, const struct client_id *id)
{
    return cg_siphash13(&rl->key, id, sizeof(*id));
}

/* The high half of the hash picks the stripe, the low half the chain, so the two are independent. */
static struct stripe *stripe_of(const struct px_rl *rl, uint64_t hash)
{
    return &rl->stripes[(hash >> 32) & (rl->nstripes - 1)];
}

/* ---- one stripe: chains and LRU list ---- */

static uint32_t *chain_of(struct stripe *s, uint64_t hash)
{
    return &s->heads[hash & s->mask];
}

static struct client *find(struct stripe *s, uint32_t *head, const struct client_id *id)
{
    for (uint32_t i = *head; i != NIL; i = s->clients[i].hnext) {
        struct client *c = &s->clients[i];
        if (c->prefix == id->prefix && c->family == id->family) {
            return c;
        }
    }
    return NULL;
}

static void chain_remove(struct stripe *s, uint32_t *head, uint32_t idx)
{
    uint32_t *link = head;
    while (*link != idx) {
        link = &s->clients[*link].hnext;
    }
    *link = s->clients[idx].hnext;
}

static void lru_unlink(struct stripe *s, uint32_t idx)
{
    struct client *c = &s->clients[idx];
    if (c->newer != NIL) {
        s->clients[c->newer].older = c->older;
    } else {
        s->newest = c->older;
    }
    if (c->older != NIL) {
        s->clients[c->older].newer = c->newer;
    } else {
        s->oldest = c->newer;
    }
}

static void lru_push_newest(struct stripe *s, uint32_t idx)
{
    struct client *c = &s->clients[idx];
    c->newer = NIL;
    c->older = s->newest;
    if (s->newest != NIL) {
        s->clients[s->newest].newer = idx;
    } else {
        s->oldest = idx;
    }
    s->newest = idx;
}

static void touch(struct stripe *s, struct client *c)
{
    uint32_t idx = (uint32_t)(c - s->clients);
    if (s->newest != idx) {
        lru_unlink(s, idx);
        lru_push_newest(s, idx);
    }
}

/* The slot a new client takes in a full stripe: a refilled client among the least recently seen, else the
 * least recently seen. It leaves its chain and the LRU list. */
static uint32_t evict(const struct px_rl *rl, struct stripe *s, uint64_t now_ns)
{
    uint32_t victim = s->oldest;
    uint32_t i = s->oldest;
    for (unsigned n = 0; n < EVICT_SCAN && i != NIL; n++, i = s->clients[i].newer) {
        if (s->clients[i].full_at_ns <= now_ns) {
            victim = i;
            break;
        }
    }
    struct client *c = &s->clients[victim];
    struct client_id id = {c->prefix, c->family};
    chain_remove(s, chain_of(s, hash_of(rl, &id)), victim);
    lru_unlink(s, victim);
    return victim;
}

/* A new client with a full bucket, in a free slot or an evicted one. */
static struct client *admit(const struct px_rl *rl, struct stripe *s, uint32_t *head,
                            const struct client_id *id, uint64_t now_ns)
{
    uint32_t idx = s->used < s->cap ? s->used++ : evict(rl, s, now_ns);
    struct client *c = &s->clients[idx];
    c->prefix = id->prefix;
    c->family = (uint8_t)id->family;
    c->full_at_ns = now_ns;
    c->hnext = *head;
    *head = idx;
    lru_push_newest(s, idx);
    return c;
}

/* ---- the bucket (GCRA) ---- */

/* Takes a token if there is one; else *wait_ns is the time until there is. */
static bool bucket_take(const struct px_rl *rl, struct client *c, uint64_t now_ns, uint64_t *wait_ns)
{
    uint64_t from = c->full_at_ns > now_ns ? c->full_at_ns : now_ns;
    uint64_t next = from + rl->interval_ns;
    if (next - now_ns <= rl->span_ns) {
        c->full_at_ns = next;
        return true;
    }
    *wait_ns = next - rl->span_ns - now_ns;
    return false;
}

static unsigned whole_seconds_up(uint64_t ns)
{
    uint64_t s = (ns + NS_PER_S - 1) / NS_PER_S;
    if (s < 1) {
        return 1;
    }
    return s > UINT_MAX ? UINT_MAX : (unsigned)s;
}

bool px_rl_take(struct px_rl *rl, const struct sockaddr *addr, uint64_t now_ms, unsigned *retry_after_s)
{
    unsigned retry = 0;
    struct client_id id;
    bool ok = true;

    if (client_of(addr, &id)) {
        uint64_t now_ns = (now_ms < MAX_NOW_MS ? now_ms : MAX_NOW_MS) * NS_PER_MS;
        uint64_t hash = hash_of(rl, &id);
        struct stripe *s = stripe_of(rl, hash);
        uint64_t wait_ns = 0;

        pthread_mutex_lock(&s->lock);
        uint32_t *head = chain_of(s, hash);
        struct client *c = find(s, head, &id);
        if (c != NULL) {
            touch(s, c);
        } else {
            c = admit(rl, s, head, &id, now_ns);
        }
        ok = bucket_take(rl, c, now_ns, &wait_ns);
        pthread_mutex_unlock(&s->lock);
        if (!ok) {
            retry = whole_seconds_up(wait_ns);
        }
    }
    if (retry_after_s != NULL) {
        *retry_after_s = retry;
    }
    return ok;
}

/* ---- life cycle ---- */

static uint32_t stripes_for(size_t max_clients)
{
    uint32_t n = 1;
    while (n < MAX_STRIPES && max_clients / (2 * (size_t)n) >= MIN_PER_STRIPE) {
        n *= 2;
    }
    return n;
}

static int stripe_init(struct stripe *s, uint32_t cap)
{
    uint32_t nheads = 1;
    while (nheads < cap) {
        nheads *= 2;
    }
    memset(s, 0, sizeof(*s));
    s->clients = malloc((size_t)cap * sizeof(*s->clients));
    s->heads = malloc((size_t)nheads * sizeof(*s->heads));
    if (s->clients == NULL || s->heads == NULL || pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s->clients);
        free(s->heads);
        return -1;
    }
    memset(s->heads, 0xff, (size_t)nheads * sizeof(*s->heads)); /* every chain NIL */
    s->mask = nheads - 1;
    s->cap = cap;
    s->newest = s->oldest = NIL;
    return 0;
}

static void stripe_fini(struct stripe *s)
{
    pthread_mutex_destroy(&s->lock);
    free(s->clients);
    free(s->heads);
}

static void free_stripes(struct px_rl *rl, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        stripe_fini(&rl->stripes[i]);
    }
    free(rl->stripes);
}

/* Splits max_clients over the stripes so their capacities add up to exactly max_clients. */
static int stripes_init(struct px_rl *rl, size_t max_clients)
{
    uint32_t n = rl->nstripes;
    rl->stripes = aligned_alloc(_Alignof(struct stripe), n * sizeof(struct stripe));
    if (rl->stripes == NULL) {
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t cap = (uint32_t)(max_clients / n + (i < max_clients % n ? 1 : 0));
        if (stripe_init(&rl->stripes[i], cap) != 0) {
            free_stripes(rl, i);
            return -1;
        }
    }
    return 0;
}

struct px_rl *px_rl_create(double per_ip_rps, unsigned burst, size_t max_clients)
{
    if (!isfinite(per_ip_rps) || per_ip_rps <= 0 || per_ip_rps > 1e9 || burst < 1 || max_clients < 1 ||
        max_clients > MAX_CLIENTS) {
        return NULL;
    }
    double interval = 1e9 / per_ip_rps + 0.5; /* rounded when converted: no libm needed */
    if (interval > (double)(MAX_SPAN_NS / burst)) {
        return NULL;
    }
    struct px_rl *rl = calloc(1, sizeof(*rl));
    if (rl == NULL) {
        return NULL;
    }
    rl->interval_ns = (uint64_t)interval;
    rl->span_ns = rl->interval_ns * burst;
    rl->nstripes = stripes_for(max_clients);
    cg_siphash_key_random(&rl->key);
    if (stripes_init(rl, max_clients) != 0) {
        free(rl);
        return NULL;
    }
    return rl;
}

void px_rl_destroy(struct px_rl *rl)
{
    if (rl == NULL) {
        return;
    }
    free_stripes(rl, rl->nstripes);
    free(rl);
}

size_t px_rl_clients(struct px_rl *rl)
{
    size_t n = 0;
    for (uint32_t i = 0; i < rl->nstripes; i++) {
        struct stripe *s = &rl->stripes[i];
        pthread_mutex_lock(&s->lock);
        n += s->used;
        pthread_mutex_unlock(&s->lock);
    }
    return n;
}
