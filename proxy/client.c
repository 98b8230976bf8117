/* proxy/client: CoAP worker threads. Each worker owns one libcoap context, the sessions of its upstreams and
 * their queues; only that thread calls coap_*() on them. Other threads only touch the inbox (mutex) and the
 * eventfd. Never blocks except in epoll_wait. */
#include "client.h"

#include <arpa/inet.h>
#include <coap3/coap.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/x509.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"

#define MAX_WORKERS 4
#define MAX_EVENTS 32

struct worker;

/* Every session of the client belongs to a holder: a request slot, an observation or the reachability probe.
 * struct holder is the first member of each, so a session's app data can be told apart by its kind. */
enum holder_kind { HOLD_SLOT, HOLD_OBS, HOLD_PROBE };

#define SEEN_CON_MIDS 8 /* message ids of the last confirmable responses a holder's session received */

/* Reachability (see set_health): DOWN_AFTER consecutive failures (a ping or a request that got no answer at
 * all) make an upstream down; any answer makes it up. After a failure the next ping comes PING_RETRY_MS
 * later, and every PING_DOWN_MS (at most ping_interval_s) while down. */
#define DOWN_AFTER 3u
#define PING_RETRY_MS 1000u
#define PING_DOWN_MS 10000u
#define RESOLVE_RETRY_MS 5000u /* a name that failed to resolve is tried again this soon (or sooner) */
#define GAI_DETAILS 8          /* distinct resolution failures an upstream keeps a 502 detail for */

struct holder {
    enum holder_kind kind;
    struct upstream *up;
    coap_session_t *session;
    int fd;                          /* the session's UDP socket, read first by the inbound filter; -1 */
    bool dtls_up;                    /* coaps: the session's DTLS handshake has completed */
    bool dtls_heard;                 /* coaps: the device answered the handshake's first flight */
    int32_t seen_mid[SEEN_CON_MIDS]; /* CON responses already passed to libcoap (-1: none) */
    unsigned seen_next;
    bool b2_started;                 /* a Block2 transfer is under way: b2_* are set */
    uint32_t b2_next;                /* the offset the next Block2 response must carry */
    int32_t b2_mids[4];              /* message ids of the last blocks seen (-1: none) */
    uint8_t b2_etag[8], b2_etag_len; /* the transfer's ETag (length 0: none) */
};

/* One request slot of an upstream: a session carrying at most one exchange. max_inflight slots put that
 * many exchanges on the wire at once, each within NSTART = 1 of its own session. */
struct slot {
    struct holder h;
    struct px_exchange *x;
};

/* What an observation sends: a registration (GET Observe=0), a re-registration after Max-Age (the same), or
 * a deregistration (GET Observe=1, RFC 7641 §3.6). Each is one CON exchange and goes through the upstream's
 * max_inflight and queue like a request (see feed and obs_go). */
enum obs_op { OP_REGISTER, OP_REREGISTER, OP_DEREGISTER };

/* An RFC 7641 observation: its own session and token, alive until ended. */
struct observation {
    struct holder h;
    struct observation *next;
    struct px_exchange *x;
    uint64_t deadline_ms; /* op pending: give up then; else re-register then (Max-Age passed) */
    bool seen;            /* a notification with an Observe value arrived: last_seq/last_ms are set */
    uint32_t last_seq;
    uint64_t last_ms;
    enum obs_op op; /* the operation waiting or on the wire */
    bool queued;    /* op waits in the upstream's queue (x is linked there) */
    bool on_wire;   /* op was sent and holds one of max_inflight until its answer */
    bool cancelled; /* the last subscriber left: nothing more is notified */
    bool counted;   /* holds a place under limits.max_observations_per_upstream */
};

/* A control message: deregister an observation by id. */
struct ctl_msg {
    struct ctl_msg *next;
    size_t upstream;
    uint64_t id;
};

/* A host name to resolve (worker -> resolver thread), and its answer (resolver -> worker). */
struct resolve_job {
    struct resolve_job *next;
    size_t upstream;
    int rc; /* getaddrinfo's; 0: addr is set */
    struct sockaddr_storage addr;
    socklen_t addr_len;
};

/* Reachability probe: an empty CON (CoAP ping, RFC 7252 §4.3) on a session of its own, answered by RST. */
struct probe {
    struct holder h;
    bool outstanding;
    uint64_t deadline_ms; /* outstanding: a failure if no pong by then */
    uint64_t due_ms;      /* next ping (UINT64_MAX: never); any answer pushes it ping_interval_s away */
};

struct upstream {
    const struct cfg_upstream *cfg;
    coap_address_t addr;
    struct worker *worker;
    struct slot *slots;
    unsigned inflight; /* CON exchanges on the wire: requests in slots plus observation operations */
    struct px_exchange *q_head, *q_tail; /* waiting beyond max_inflight, FIFO: requests, and observations'
                                            exchanges (priv.owner) waiting to (de/re)register */
    unsigned q_len;
    struct observation *observations;
    struct probe probe;
    char uri_host[256]; /* RFC 7252 §6.4 step 5: the host name, lower case; "" for an IP literal */
    unsigned fails;     /* consecutive failures (no answer at all); DOWN_AFTER make it down */
    /* Resolution of a host name (uri_host set), worker only: addr is valid while resolved. */
    bool resolved, resolving;
    uint64_t resolve_due_ms, resolved_ms;
    int gai_rc;                 /* the last failure's getaddrinfo code */
    int gai_codes[GAI_DETAILS]; /* 502 details made for these codes (gai_details), never rewritten */
    char *gai_details[GAI_DETAILS];
    atomic_int health;      /* enum px_health, read by any thread */
    pthread_mutex_t why_mu; /* guards why: what showed the current health */
    char why[240];
    /* For /metrics (px_client_upstream_stats): written by the worker, read by any thread; st_observations
     * also by px_client_observe, which takes a place under max_observations_per_upstream there. */
    atomic_uint_fast64_t st_inflight, st_queued, st_observations, st_exchanges, st_timeouts,
        st_retransmissions, st_nacks;
};

/* A forward-proxy target: an upstream made on demand by its worker for one address, with the settings of
 * forward_proxy, and let go once idle. */
struct target {
    struct upstream up;
    struct cfg_upstream cfg;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    uint64_t last_use_ms;
    struct target *next;
};

#define TARGET_IDLE_MS 60000u /* a target with nothing on the wire or queued for this long is let go */
#define TARGETS_MAX 256       /* per worker; beyond it idle ones go first, else 503 */

struct worker {
    struct px_client *client;
    pthread_t thread;
    bool started;
    int efd;
    int epfd;
    int coap_fd; /* libcoap's own epoll fd; the session sockets are also in epfd, for the inbound filter */
    coap_context_t *ctx;
    coap_context_t *ctx_pki; /* the PKI sessions' own context (see pki_context), or NULL */
    int coap_fd_pki;         /* its epoll fd, or -1 */
    pthread_mutex_t mu;
    struct px_exchange *in_head, *in_tail; /* guarded by mu */
    struct ctl_msg *ctl_head, *ctl_tail;   /* guarded by mu */
    struct resolve_job *res_head;          /* answers of the resolver, guarded by mu */
    bool stopping;                         /* guarded by mu */
    struct upstream **ups;                 /* the upstreams this worker owns */
    size_t ups_len;
    struct target *targets; /* forward-proxy targets, made on demand */
    size_t targets_len;
    coap_session_t **graveyard; /* sessions dropped inside a libcoap callback, freed after it */
    size_t graveyard_len, graveyard_cap;
};

/* The resolver thread: getaddrinfo can block for seconds, so host names are resolved here, never on a
 * worker; answers go back to the upstream's worker (worker.res_head). */
struct resolver {
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;            /* guarded by mu */
    struct resolve_job *jobs; /* guarded by mu */
};

struct px_client {
    const struct cfg *cfg;
    struct upstream *ups; /* one per cfg->upstreams[i] */
    struct worker workers[MAX_WORKERS];
    size_t workers_len;
    struct resolver resolver;
    atomic_uint_fast64_t next_obs_id;
    atomic_uint inflight_total; /* exchanges on the wire over all upstreams (limits.max_inflight_total) */
};

/* ---- logging (mod=client) ---- */

/* Values from the request or the configuration are quoted (cg_log_quote): a Uri-Path segment may hold
 * quotes, CR or LF, and must not add fields or lines of its own. Callers check the level first. */
#define LOG_VALUE_MAX 600

/* The request's Uri-Path options as "/a/b" ("/" for none), quoted. */
static void quote_path(const struct px_exchange *x, char *out, size_t cap)
{
    char path[LOG_VALUE_MAX];
    size_t len = 0;

    for (const struct co_opt *o = co_optset_find(x->req, CO_OPT_URI_PATH, 0); o != NULL;
         o = co_optset_find(x->req, CO_OPT_URI_PATH, (unsigned)(o - x->req->opt) + 1)) {
        size_t n = o->len < sizeof(path) - len - 1 ? o->len : sizeof(path) - len - 1;
        path[len++] = '/';
        memcpy(path + len, co_opt_value(x->req, o), n);
        len += n;
        if (len >= sizeof(path) - 1) {
            break;
        }
    }
    if (len == 0) {
        path[len++] = '/';
    }
    cg_log_quote(out, cap, path, len);
}

static void quote_str(const char *s, char *out, size_t cap)
{
    cg_log_quote(out, cap, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

/* "event=E upstream="U" path="/p" reason="R"", plus extra (preformatted "key=value " fields, or "").
 * x may be NULL (no path). */
static void log_event(enum cg_log_level level, const struct upstream *up, const struct px_exchange *x,
                      const char *event, const char *extra, const char *reason)
{
    char name[128], path[LOG_VALUE_MAX * 4 / 3], why[400];

    if (!cg_log_enabled(level)) {
        return;
    }
    quote_str(up->cfg->name, name, sizeof(name));
    quote_str(reason, why, sizeof(why));
    if (x == NULL) {
        cg_log_write(level, "client", "event=%s %supstream=%s reason=%s", event, extra, name, why);
        return;
    }
    quote_path(x, path, sizeof(path));
    cg_log_write(level, "client", "event=%s %supstream=%s path=%s reason=%s", event, extra, name, path, why);
}

/* ---- reachability ---- */

/* Sets the health and what showed it. A change is logged (up at info, down at warn) with the reason and
 * the exchange x when there is one. Worker thread (px_client_create before the workers run). */
static void set_health(struct upstream *up, enum px_health h, const struct px_exchange *x, const char *reason)
{
    enum px_health old = (enum px_health)atomic_exchange(&up->health, (int)h);
    if (old != h || h == PX_HEALTH_DOWN) {
        pthread_mutex_lock(&up->why_mu);
        snprintf(up->why, sizeof(up->why), "%s", reason != NULL ? reason : "");
        pthread_mutex_unlock(&up->why_mu);
    }
    if (old != h && h != PX_HEALTH_UNKNOWN) {
        log_event(h == PX_HEALTH_UP ? CG_LOG_INFO : CG_LOG_WARN, up, x,
                  h == PX_HEALTH_UP ? "upstream_up" : "upstream_down", "", reason);
    }
}

static unsigned ping_interval_ms(const struct upstream *up)
{
    return up->cfg->ping_interval_s * 1000u;
}

/* Any CoAP answer from the device (an ACK, an RST, a response, a notification, a pong) shows it is there:
 * the upstream is up, its failures are forgotten, and the next ping is ping_interval_s away. */
static void heard(struct upstream *up, struct px_exchange *x, const char *reason)
{
    if (x != NULL) {
        x->priv.heard = true;
    }
    up->fails = 0;
    if (!up->probe.outstanding && ping_interval_ms(up) > 0) {
        up->probe.due_ms = cg_now_ms() + ping_interval_ms(up);
    }
    set_health(up, PX_HEALTH_UP, x, reason);
}

static void want_resolve(struct upstream *up, uint64_t now);

/* A ping or a request that got no answer at all (no ACK, no RST, no response: silence past the deadline,
 * the last retransmission unacknowledged, ICMP unreachable). One is not enough to call the upstream down:
 * DOWN_AFTER in a row are. Each is followed by a ping soon, and by a new resolution of a host name. */
static void unanswered(struct upstream *up, const struct px_exchange *x, const char *reason)
{
    uint64_t now = cg_now_ms();

    if (up->fails < UINT32_MAX) {
        up->fails++;
    }
    if (up->fails >= DOWN_AFTER) {
        set_health(up, PX_HEALTH_DOWN, x, reason);
    }
    if (!up->probe.outstanding && ping_interval_ms(up) > 0) {
        unsigned wait = up->fails >= DOWN_AFTER ? PING_DOWN_MS : PING_RETRY_MS;
        wait = wait < ping_interval_ms(up) ? wait : ping_interval_ms(up);
        if (now + wait < up->probe.due_ms) {
            up->probe.due_ms = now + wait;
        }
    }
    want_resolve(up, now);
}

enum px_health px_client_upstream_health(struct px_client *c, size_t upstream)
{
    return (enum px_health)atomic_load(&c->ups[upstream].health);
}

enum px_health px_client_upstream_state(struct px_client *c, size_t upstream, char *why, size_t why_len)
{
    struct upstream *up = &c->ups[upstream];

    if (why_len > 0) {
        pthread_mutex_lock(&up->why_mu);
        snprintf(why, why_len, "%s", up->why);
        pthread_mutex_unlock(&up->why_mu);
    }
    return (enum px_health)atomic_load(&up->health);
}

void px_client_upstream_stats(struct px_client *c, size_t upstream, struct px_upstream_stats *out)
{
    struct upstream *up = &c->ups[upstream];

    out->health = (enum px_health)atomic_load_explicit(&up->health, memory_order_relaxed);
    out->inflight = atomic_load_explicit(&up->st_inflight, memory_order_relaxed);
    out->queued = atomic_load_explicit(&up->st_queued, memory_order_relaxed);
    out->observations = atomic_load_explicit(&up->st_observations, memory_order_relaxed);
    out->exchanges = atomic_load_explicit(&up->st_exchanges, memory_order_relaxed);
    out->timeouts = atomic_load_explicit(&up->st_timeouts, memory_order_relaxed);
    out->retransmissions = atomic_load_explicit(&up->st_retransmissions, memory_order_relaxed);
    out->nacks = atomic_load_explicit(&up->st_nacks, memory_order_relaxed);
}

/* Worker only: keeps the gauges /metrics reads in step with the worker's own counts. */
static void stats_sync(struct upstream *up)
{
    atomic_store_explicit(&up->st_inflight, up->inflight, memory_order_relaxed);
    atomic_store_explicit(&up->st_queued, up->q_len, memory_order_relaxed);
}

/* ---- completion ---- */

static void finish(struct px_exchange *x, enum px_status status, const char *detail)
{
    x->status = status;
    x->detail = detail;
    x->done(x, x->arg);
}

static void queue_push(struct upstream *up, struct px_exchange *x)
{
    x->priv.next = NULL;
    if (up->q_tail != NULL) {
        up->q_tail->priv.next = x;
    } else {
        up->q_head = x;
    }
    up->q_tail = x;
    up->q_len++;
    stats_sync(up);
}

/* Takes x out of the queue wherever it is (an observation whose subscriber left, or whose device notified
 * before its re-registration's turn came). */
static void queue_remove(struct upstream *up, struct px_exchange *x)
{
    struct px_exchange *prev = NULL;
    for (struct px_exchange *q = up->q_head; q != NULL; prev = q, q = q->priv.next) {
        if (q != x) {
            continue;
        }
        if (prev != NULL) {
            prev->priv.next = x->priv.next;
        } else {
            up->q_head = x->priv.next;
        }
        if (up->q_tail == x) {
            up->q_tail = prev;
        }
        up->q_len--;
        stats_sync(up);
        return;
    }
}

static struct px_exchange *queue_pop(struct upstream *up)
{
    struct px_exchange *x = up->q_head;
    if (x != NULL) {
        up->q_head = x->priv.next;
        if (up->q_head == NULL) {
            up->q_tail = NULL;
        }
        up->q_len--;
        stats_sync(up);
    }
    return x;
}

static const char *status_word(enum px_status status)
{
    switch (status) {
    case PX_OK:
        return "ok";
    case PX_ERR_TIMEOUT:
        return "timeout";
    case PX_ERR_BAD_GATEWAY:
        return "bad_gateway";
    case PX_ERR_UNAVAILABLE:
        return "unavailable";
    default:
        return "error";
    }
}

/* "-", "N" or "F-L". */
static void format_blocks(int32_t first, int32_t last, char out[24])
{
    if (last < 0) {
        snprintf(out, 24, "-");
    } else if (first < 0 || first == last) {
        snprintf(out, 24, "%ld", (long)last);
    } else {
        snprintf(out, 24, "%ld-%ld", (long)first, (long)last);
    }
}

/* The debug line of one completed exchange. libcoap 4.3.1 does not tell how often it retransmitted a CON:
 * retransmits= is the count certain from its schedule (settle_retransmissions), a lower bound; libcoap's
 * own debug lines show each retransmission. */
static void log_exchange(const struct upstream *up, const struct px_exchange *x, enum px_status status)
{
    char path[LOG_VALUE_MAX * 4 / 3], token[17], code[5] = "-", b1[24], b2[24];
    uint64_t took = cg_now_ms() - (x->priv.deadline_ms - up->cfg->timeout_ms);

    for (size_t i = 0; i < x->priv.token_len && i < 8; i++) {
        snprintf(token + 2 * i, 3, "%02x", x->priv.token[i]);
    }
    token[x->priv.token_len < 8 ? 2 * x->priv.token_len : 16] = '\0';
    if (x->resp_code != 0) {
        co_code_format(x->resp_code, code);
    }
    quote_path(x, path, sizeof(path));
    format_blocks(-1, x->priv.block1, b1);
    format_blocks(x->priv.block2_first, x->priv.block2_last, b2);
    const char *method = co_method_name(x->code);
    cg_log_write(CG_LOG_DEBUG, "client",
                 "event=exchange method=%s path=%s token=%s mid=0x%04x type=%s code=%s status=%s block1=%s "
                 "block2=%s retransmits=%u duration_ms=%llu",
                 method != NULL ? method : "?", path, x->priv.token_len > 0 ? token : "-",
                 (unsigned)(x->priv.mid < 0 ? 0 : x->priv.mid), up->cfg->type == CFG_MSG_NON ? "NON" : "CON",
                 code, status_word(status), b1, b2, x->priv.retransmits, (unsigned long long)took);
}

/* ---- retransmissions ----
 * libcoap 4.3.1 retransmits a CON inside the session and says nothing about it (no callback, no counter; its
 * debug log line is not made below debug level). What is counted instead is what its schedule (RFC 7252
 * §4.2) makes certain: the k-th retransmission of a CON leaves at most ACK_TIMEOUT x ACK_RANDOM_FACTOR x
 * (2^k - 1) after the first transmission, so a CON whose first answer (ACK, RST, response) came, or which
 * was abandoned, E ms after it was sent counts every k (up to MAX_RETRANSMIT) whose latest time is <= E;
 * one nacked after the last retransmission counts MAX_RETRANSMIT. The figure is a lower bound: a
 * retransmission sent in the window between the earliest and the latest time of its schedule is not
 * counted. Each Block-wise follow-up request counts as a CON of its own. */
static unsigned certain_retransmissions(const coap_session_t *session, uint64_t elapsed_ms)
{
    coap_fixed_point_t t = {2, 0}, r = {1, 500};
    unsigned max = 4, k = 0;

    if (session != NULL) {
        t = coap_session_get_ack_timeout(session);
        r = coap_session_get_ack_random_factor(session);
        max = coap_session_get_max_retransmit(session);
    }
    uint64_t first = ((uint64_t)t.integer_part * 1000u + t.fractional_part) *
                     ((uint64_t)r.integer_part * 1000u + r.fractional_part) / 1000u;
    while (k < max && first * ((2ull << k) - 1) <= elapsed_ms) {
        k++;
    }
    return k;
}

/* Counts the retransmissions of x's last CON once its fate is known (an answer, a nack, abandonment);
 * after_last: libcoap gave up after its last retransmission. */
static void settle_retransmissions(struct upstream *up, struct px_exchange *x, const coap_session_t *session,
                                   bool after_last)
{
    if (x->priv.sent_ms == 0 || up->cfg->type == CFG_MSG_NON) {
        x->priv.sent_ms = 0;
        return;
    }
    unsigned n = after_last ? (session != NULL ? coap_session_get_max_retransmit(session) : 4u)
                            : certain_retransmissions(session, cg_now_ms() - x->priv.sent_ms);
    x->priv.sent_ms = 0;
    x->priv.retransmits += n;
    if (n > 0) {
        atomic_fetch_add_explicit(&up->st_retransmissions, n, memory_order_relaxed);
    }
}

/* ---- slots of max_inflight (NSTART) ----
 * up->inflight counts every CON exchange on the wire: requests in slots and observations' registrations,
 * re-registrations and deregistrations. A freed place is taken by the queue's head in feed(), run by the
 * worker loop outside libcoap's callbacks and list walks (a place may be freed deep inside either). */
static void credit_release(struct upstream *up)
{
    up->inflight--;
    stats_sync(up);
}

/* Detaches the slot's exchange and completes it; its place goes to the queue's head in feed(). */
static void slot_complete(struct slot *s, enum px_status status, const char *detail)
{
    struct upstream *up = s->h.up;
    struct px_exchange *x = s->x;

    settle_retransmissions(up, x, s->h.session, false);
    if (cg_log_enabled(CG_LOG_DEBUG)) {
        log_exchange(up, x, status);
    }
    s->x = NULL;
    credit_release(up);
    atomic_fetch_add_explicit(&up->st_exchanges, 1, memory_order_relaxed);
    if (status == PX_ERR_TIMEOUT) {
        atomic_fetch_add_explicit(&up->st_timeouts, 1, memory_order_relaxed);
    }
    atomic_fetch_sub(&up->worker->client->inflight_total, 1);
    finish(x, status, detail);
}

/* Drops a session and everything libcoap still holds for it (retransmissions of an abandoned request must
 * not delay the next one). Only outside libcoap callbacks: libcoap may still be using the session there. */
static void session_drop(coap_session_t *session)
{
    coap_session_disconnected(session, COAP_NACK_TOO_MANY_RETRIES);
    coap_session_release(session);
}

/* Parks a detached session to be dropped once coap_io_process() has returned: libcoap may still be using it
 * in the callback that detached it. */
static void park_session(struct worker *w, coap_session_t *session)
{
    if (w->graveyard_len == w->graveyard_cap) {
        size_t cap = w->graveyard_cap ? w->graveyard_cap * 2 : 8;
        coap_session_t **grown = realloc(w->graveyard, cap * sizeof(*grown));
        if (grown == NULL) {
            return; /* the session leaks until the context is freed; it is detached and harmless */
        }
        w->graveyard = grown;
        w->graveyard_cap = cap;
    }
    w->graveyard[w->graveyard_len++] = session;
}

/* Forgets what the inbound filter learned about a session (a new session starts afresh). */
static void holder_forget(struct holder *h)
{
    for (unsigned i = 0; i < SEEN_CON_MIDS; i++) {
        h->seen_mid[i] = -1;
    }
    h->seen_next = 0;
    h->b2_started = false;
}

/* Detaches the holder's session (slot, observation or probe) and drops it: at once, or (deferred, inside a
 * libcoap callback) parked until coap_io_process() returns. The inbound filter stops watching its socket
 * first: the socket is closed with the session. */
static void holder_detach(struct holder *h, bool deferred)
{
    coap_session_t *s = h->session;

    if (s == NULL) {
        return;
    }
    if (h->fd >= 0) {
        epoll_ctl(h->up->worker->epfd, EPOLL_CTL_DEL, h->fd, NULL);
        h->fd = -1;
    }
    h->session = NULL;
    coap_session_set_app_data(s, NULL);
    if (deferred) {
        park_session(h->up->worker, s);
    } else {
        session_drop(s);
    }
}

/* The socket libcoap made for a client session, found by its local address. libcoap 4.3.1 gives no access
 * to a session's socket and no way to hand it a datagram, but the inbound filter must read each datagram
 * before libcoap does: it opens one connected UDP socket per client session, so the local address names it.
 * -1 when not found (the session then works without the filter). */
static bool fd_is_local(int fd, const coap_address_t *local)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int type = 0;
    socklen_t tlen = sizeof(type);

    return fd >= 0 && getsockname(fd, (struct sockaddr *)&ss, &len) == 0 && len == local->size &&
           memcmp(&ss, &local->addr, len) == 0 && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 &&
           type == SOCK_DGRAM;
}

/* The lowest free descriptor now: the number the next socket() gets unless another thread opens one first.
 */
static int next_fd(void)
{
    int fd = fcntl(0, F_DUPFD_CLOEXEC, 0);
    if (fd >= 0) {
        close(fd);
    }
    return fd;
}

static int session_fd(const coap_session_t *session, int hint)
{
    const coap_address_t *local = coap_session_get_addr_local(session);
    int found = -1;

    if (local == NULL) {
        return -1;
    }
    if (fd_is_local(hint, local)) {
        return hint; /* the usual case: no scan of every descriptor of the process */
    }
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL) {
        if (dir != NULL) {
            closedir(dir);
        }
        return -1;
    }
    for (struct dirent *e; found < 0 && (e = readdir(dir)) != NULL;) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && fd != dirfd(dir) && fd_is_local(fd, local)) {
            found = fd;
        }
    }
    closedir(dir);
    return found;
}

/* ---- DTLS sessions (coaps://, RFC 7252 §9) ---- */

/* libcoap 4.3.1's GnuTLS backend checks the device's certificate chain (verify_peer_cert) but never its
 * name: it calls gnutls_certificate_verify_peers() without a host name, and client_sni only sets SNI. So the
 * name is checked here, on the device's certificate (depth 0), against the URI's host: a DNS name, or an IP
 * address against the iPAddress SANs. libcoap keeps one PKI setup per context, the last one given, and the
 * PKI upstreams of a worker share a context (pki_context), so the upstream is taken from the session, not
 * from arg; every PKI upstream uses the same checks (see session_new), so which setup is the context's does
 * not matter. Anything but a PKI upstream's session is refused outright. */
static int check_peer_name(const char *cn, const uint8_t *der, size_t der_len, coap_session_t *session,
                           unsigned depth, int validated, void *arg)
{
    struct holder *h = coap_session_get_app_data(session);
    gnutls_datum_t d = {.data = (unsigned char *)der, .size = (unsigned)der_len};
    gnutls_x509_crt_t crt;
    unsigned ok = 0;

    (void)cn;
    (void)arg;
    if (depth != 0) {
        return 1; /* a CA of the chain: the chain validation's to judge */
    }
    if (h == NULL || !validated || h->up->cfg->dtls != CFG_DTLS_PKI) {
        return 0;
    }
    h->dtls_heard = true;
    if (gnutls_x509_crt_init(&crt) == 0) {
        if (gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_DER) == 0) {
            ok = gnutls_x509_crt_check_hostname2(crt, h->up->cfg->peer.host, 0);
        }
        gnutls_x509_crt_deinit(crt);
    }
    if (!ok && cg_log_enabled(CG_LOG_WARN)) {
        char why[320];
        snprintf(why, sizeof(why), "the device's certificate is not for %s", h->up->cfg->peer.host);
        log_event(CG_LOG_WARN, h->up, NULL, "dtls_rejected", "", why);
    }
    return ok ? 1 : 0;
}

/* Called by libcoap when the device's answer to the first flight asks for the PSK (its identity hint): the
 * device is there and speaks DTLS, so a handshake that stalls after it is a failure (502), not silence
 * (504): a DTLS server drops the records it cannot decrypt, so a wrong PSK shows as nothing more. The
 * identity and key are the upstream's whatever the hint; libcoap copies them. */
static const coap_dtls_cpsk_info_t *psk_hint(coap_str_const_t *hint, coap_session_t *session, void *arg)
{
    static _Thread_local coap_dtls_cpsk_info_t info;
    struct holder *h = coap_session_get_app_data(session);

    (void)hint;
    (void)arg;
    if (h == NULL) {
        return NULL;
    }
    h->dtls_heard = true;
    info.identity.s = (const uint8_t *)h->up->cfg->psk.identity;
    info.identity.length = strlen(h->up->cfg->psk.identity);
    info.key.s = h->up->cfg->psk.key.bytes;
    info.key.length = h->up->cfg->psk.key.len;
    return &info;
}

static coap_context_t *pki_context(struct worker *w);

/* A new client session for the holder's upstream: plain UDP for coap://, DTLS with the upstream's PSK or
 * certificates for coaps://. libcoap copies the identity and the key (the cfg keeps ours); the PKI file
 * names and the SNI must outlive the session, and do (cfg, struct upstream). SNI is sent for a host name
 * only: RFC 6066 §3 has no IP addresses in it. */
static coap_session_t *session_new(struct holder *h)
{
    struct upstream *up = h->up;
    const struct cfg_upstream *u = up->cfg;
    coap_context_t *ctx = up->worker->ctx;
    char *sni = up->uri_host[0] != '\0' ? up->uri_host : NULL;

    h->dtls_up = false;
    h->dtls_heard = false;
    if (u->dtls == CFG_DTLS_PSK) {
        coap_dtls_cpsk_t psk = {
            .version = COAP_DTLS_CPSK_SETUP_VERSION, .validate_ih_call_back = psk_hint, .client_sni = sni};
        psk.psk_info.identity.s = (const uint8_t *)u->psk.identity;
        psk.psk_info.identity.length = strlen(u->psk.identity);
        psk.psk_info.key.s = u->psk.key.bytes;
        psk.psk_info.key.length = u->psk.key.len;
        return coap_new_client_session_psk2(ctx, NULL, &up->addr, COAP_PROTO_DTLS, &psk);
    }
    if (u->dtls == CFG_DTLS_PKI) {
        coap_dtls_pki_t pki = {.version = COAP_DTLS_PKI_SETUP_VERSION,
                               .verify_peer_cert = 1,
                               .check_common_ca = 1, /* only ca_file is trusted, not the system's CAs */
                               .cert_chain_validation = 1,
                               .cert_chain_verify_depth = 3,
                               .validate_cn_call_back = check_peer_name,
                               .client_sni = sni};
        pki.pki_key.key_type = COAP_PKI_KEY_PEM;
        pki.pki_key.key.pem.ca_file = u->pki.ca_file;
        pki.pki_key.key.pem.public_cert = u->pki.cert;
        pki.pki_key.key.pem.private_key = u->pki.key;
        ctx = pki_context(up->worker);
        return ctx != NULL ? coap_new_client_session_pki(ctx, NULL, &up->addr, COAP_PROTO_DTLS, &pki) : NULL;
    }
    return coap_new_client_session(ctx, NULL, &up->addr, COAP_PROTO_UDP);
}

/* Opens the holder's session when it has none: its own random token seed (libcoap numbers its block-wise
 * follow-up requests from it), and its socket watched by the inbound filter. A DTLS session's datagrams are
 * encrypted, so the filter cannot read them: its message-layer workarounds rest on libcoap there. */
static bool holder_open(struct holder *h)
{
    if (h->session != NULL) {
        return true;
    }
    struct worker *w = h->up->worker;
    int hint = next_fd();
    h->session = session_new(h);
    if (h->session == NULL) {
        return false;
    }
    uint8_t seed[8];
    if (coap_prng(seed, sizeof(seed))) {
        coap_session_init_token(h->session, sizeof(seed), seed);
    }
    coap_session_set_app_data(h->session, h);
    holder_forget(h);
    h->fd = h->up->cfg->secure ? -1 : session_fd(h->session, hint);
    if (h->fd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = h->fd};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, h->fd, &ev) != 0) {
            h->fd = -1;
        }
    }
    return true;
}

static void slot_reset_session(struct slot *s, bool deferred)
{
    holder_detach(&s->h, deferred);
}

static void bury_sessions(struct worker *w)
{
    for (size_t i = 0; i < w->graveyard_len; i++) {
        session_drop(w->graveyard[i]);
    }
    w->graveyard_len = 0;
}

/* ---- sending ---- */

static void release_payload(coap_session_t *session, void *app_ptr)
{
    (void)session;
    free(app_ptr);
}

static int add_payload(coap_session_t *session, coap_pdu_t *pdu, const struct px_exchange *x)
{
    if (x->payload_len == 0) {
        return 1;
    }
    uint8_t *copy = malloc(x->payload_len);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, x->payload, x->payload_len);
    /* libcoap owns copy from here on and frees it through release_payload, even on failure. */
    return coap_add_data_large_request(session, pdu, x->payload_len, copy, release_payload, copy);
}

/* Indices of set's options in ascending number order, repeated options kept in their order (stable
 * insertion sort: sets are small and nearly sorted). The wire needs ascending deltas (RFC 7252 §3.1). */
static void sort_options(const struct co_optset *set, unsigned order[CO_OPT_MAX])
{
    for (unsigned i = 0; i < set->count; i++) {
        unsigned k = i;
        while (k > 0 && set->opt[order[k - 1]].number > set->opt[i].number) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = i;
    }
}

/* A request PDU of the upstream's message type (CON or NON) carrying token, or NULL. */
static coap_pdu_t *request_pdu(coap_session_t *session, const struct upstream *up, uint8_t code,
                               const uint8_t *token, size_t token_len)
{
    coap_pdu_type_t type = up->cfg->type == CFG_MSG_NON ? COAP_MESSAGE_NON : COAP_MESSAGE_CON;
    coap_pdu_t *pdu = coap_pdu_init(type, (coap_pdu_code_t)code, coap_new_message_id(session),
                                    coap_session_max_pdu_size(session));
    if (pdu != NULL && !coap_add_token(pdu, token_len, token)) {
        coap_delete_pdu(pdu);
        return NULL;
    }
    return pdu;
}

/* Adds set's options in ascending number order, merging in one extra option (number 0: none), which replaces
 * any option of the same number in set. False when the PDU refuses one: coap_add_option returns the bytes
 * it wrote, at least 1 even for an empty option, so 0 is a refusal whatever the length (an empty Uri-Query,
 * If-None-Match or Content-Format 0 that does not fit must not be dropped). */
static bool add_options(coap_pdu_t *pdu, const struct co_optset *set, uint16_t extra,
                        const uint8_t *extra_value, size_t extra_len)
{
    unsigned order[CO_OPT_MAX];
    bool pending = extra != 0;

    sort_options(set, order);
    for (unsigned i = 0; i <= set->count; i++) {
        const struct co_opt *o = i < set->count ? &set->opt[order[i]] : NULL;
        if (pending && (o == NULL || o->number >= extra)) {
            if (coap_add_option(pdu, extra, extra_len, extra_value) == 0) {
                return false;
            }
            pending = false;
        }
        if (o == NULL || o->number == extra) {
            continue;
        }
        if (coap_add_option(pdu, o->number, o->len, co_opt_value(set, o)) == 0) {
            return false;
        }
    }
    return true;
}

/* RFC 7252 §5.3.1: a token is the client's defence against spoofed responses, so it carries 64 bits from the
 * PRNG (gateway/main.c installs a buffered getrandom) rather than libcoap's per-session counter. */
static void new_token(struct px_exchange *x)
{
    x->priv.token_len = sizeof(x->priv.token);
    if (!coap_prng(x->priv.token, sizeof(x->priv.token))) {
        uint64_t t = cg_now_ms() ^ (uint64_t)(uintptr_t)x;
        memcpy(x->priv.token, &t, sizeof(t));
    }
}

/* Uri-Host when the upstream is named by a host name (RFC 7252 §6.4 step 5); an IP literal is the default
 * and sends none. libcoap 4.3.1 inserts an option added out of order at its place. */
static bool add_uri_host(coap_pdu_t *pdu, const struct upstream *up)
{
    size_t n = strlen(up->uri_host);
    return n == 0 || coap_add_option(pdu, CO_OPT_URI_HOST, n, (const uint8_t *)up->uri_host) != 0;
}

/* A GET or FETCH asks for Size2 (RFC 7959 §4: Size2 0 in a request), so a representation above
 * limits.max_body_bytes is refused with the first block instead of being fetched up to the limit. */
static bool add_size2_query(coap_pdu_t *pdu, const struct px_exchange *x)
{
    if ((x->code != CO_GET && x->code != CO_FETCH) || co_optset_find(x->req, CO_OPT_SIZE2, 0) != NULL) {
        return true;
    }
    return coap_add_option(pdu, CO_OPT_SIZE2, 0, NULL) != 0;
}

/* The request of x on the slot's session; PX_OK, PX_ERR_URI_TOO_LONG when its options do not fit one
 * message (RFC 7252 §4.6: the device is not asked), or PX_ERR_INTERNAL. */
static enum px_status build_pdu(struct slot *s, struct px_exchange *x, coap_pdu_t **out)
{
    coap_session_t *session = s->h.session;

    *out = NULL;
    new_token(x);
    coap_pdu_t *pdu = request_pdu(session, s->h.up, x->code, x->priv.token, x->priv.token_len);
    if (pdu == NULL) {
        return PX_ERR_INTERNAL;
    }
    x->priv.mid = coap_pdu_get_mid(pdu);
    /* After a 4.13 the body goes block-wise from the start, at the block size the device asked for: a Block1
     * option set before the payload makes libcoap use its size (RFC 7959 §2.9.3). */
    uint8_t block1 = (uint8_t)(0x08 | (x->priv.block1_szx - 1)); /* num 0, M=1 */
    if (!add_options(pdu, x->req, x->priv.block1_szx != 0 ? CO_OPT_BLOCK1 : 0, &block1, 1) ||
        !add_uri_host(pdu, s->h.up) || !add_size2_query(pdu, x)) {
        coap_delete_pdu(pdu);
        return PX_ERR_URI_TOO_LONG;
    }
    if (!add_payload(session, pdu, x)) {
        coap_delete_pdu(pdu);
        return PX_ERR_INTERNAL;
    }
    *out = pdu;
    return PX_OK;
}

static void slot_send(struct slot *s, struct px_exchange *x)
{
    struct upstream *up = s->h.up;

    s->x = x;
    up->inflight++;
    stats_sync(up);
    x->priv.heard = false;
    x->priv.sent_ms = 0;
    if (!holder_open(&s->h)) {
        static const char why[] = "cannot open a CoAP session to the upstream";
        log_event(CG_LOG_WARN, up, x, "send_failed", "", why);
        slot_complete(s, PX_ERR_BAD_GATEWAY, why);
        return;
    }
    s->h.b2_started = false;
    coap_pdu_t *pdu;
    enum px_status st = build_pdu(s, x, &pdu);
    if (st != PX_OK) {
        slot_complete(s, st,
                      st == PX_ERR_URI_TOO_LONG ? "the request's options do not fit one CoAP message"
                                                : "cannot build the CoAP request");
        return;
    }
    x->priv.sent_ms = cg_now_ms();
    if (coap_send(s->h.session, pdu) == COAP_INVALID_MID) {
        static const char why[] = "the upstream cannot be reached";
        log_event(CG_LOG_WARN, up, x, "send_failed", "", why);
        x->priv.sent_ms = 0;
        slot_reset_session(s, false);
        slot_complete(s, PX_ERR_BAD_GATEWAY, why);
    }
}

static struct slot *free_slot(struct upstream *up)
{
    for (unsigned i = 0; i < up->cfg->max_inflight; i++) {
        if (up->slots[i].x == NULL) {
            return &up->slots[i];
        }
    }
    return NULL;
}

/* One of limits.max_inflight_total, the gateway's bound on exchanges on the wire over all upstreams, so
 * many busy upstreams together cannot exhaust sockets and memory. False when none is left. */
static bool take_total(struct px_client *c)
{
    if (atomic_fetch_add(&c->inflight_total, 1) >= c->cfg->limits.max_inflight_total) {
        atomic_fetch_sub(&c->inflight_total, 1);
        return false;
    }
    return true;
}

static void obs_go(struct observation *o);
static const char *unresolved_detail(struct upstream *up);

/* Puts x on the wire in a free place of max_inflight: a request in a free slot, or an observation's
 * operation on its own session. */
static void run_now(struct upstream *up, struct px_exchange *x)
{
    if (x->priv.owner != NULL) {
        obs_go(x->priv.owner);
        return;
    }
    if (!take_total(up->worker->client)) {
        finish(x, PX_ERR_UNAVAILABLE, "the gateway has reached limits.max_inflight_total");
        return;
    }
    slot_send(free_slot(up), x);
}

/* A new request: on the wire when a place is free and nothing waits before it, else queued (up to
 * queue_limit: then 503). An upstream whose host name does not resolve answers 502 at once. */
static void dispatch(struct upstream *up, struct px_exchange *x)
{
    if (!up->resolved) {
        finish(x, PX_ERR_BAD_GATEWAY, unresolved_detail(up));
        return;
    }
    if (up->inflight < up->cfg->max_inflight && up->q_head == NULL) {
        run_now(up, x);
        return;
    }
    if (up->q_len >= up->cfg->queue_limit) {
        finish(x, PX_ERR_UNAVAILABLE, "the upstream's request queue is full");
        return;
    }
    queue_push(up, x);
}

/* Fills the free places of max_inflight from the queue, oldest first. Worker loop only. */
static void feed(struct upstream *up)
{
    while (up->inflight < up->cfg->max_inflight && up->q_head != NULL) {
        run_now(up, queue_pop(up));
    }
}

/* ---- libcoap callbacks (worker thread) ---- */

static bool token_matches(const struct px_exchange *x, const coap_pdu_t *pdu);
static bool copy_options(struct px_exchange *x, const coap_pdu_t *received);
static enum px_status take_block(struct px_exchange *x, const coap_pdu_t *received, size_t limit,
                                 const char **detail);
static bool more_blocks(const coap_pdu_t *received);
static bool unsolicited_valid(const struct px_exchange *x);

static bool token_matches(const struct px_exchange *x, const coap_pdu_t *pdu)
{
    coap_bin_const_t t = coap_pdu_get_token(pdu);
    return t.length == x->priv.token_len && memcmp(t.s, x->priv.token, t.length) == 0;
}

static bool copy_options(struct px_exchange *x, const coap_pdu_t *received)
{
    coap_opt_iterator_t oi;
    coap_opt_t *opt;

    co_optset_clear(&x->resp);
    coap_option_iterator_init(received, &oi, COAP_OPT_ALL);
    while ((opt = coap_option_next(&oi)) != NULL) {
        if (oi.number == CO_OPT_BLOCK1 || oi.number == CO_OPT_BLOCK2) {
            continue;
        }
        if (co_optset_add(&x->resp, oi.number, coap_opt_value(opt), coap_opt_length(opt)) != 0) {
            return false;
        }
    }
    return true;
}

/* Appends one block's data (libcoap drives the Block2 transfer and hands each block here with its offset).
 * A body growing past limits.max_body_bytes, or announcing it in Size2, is refused. */
static enum px_status take_block(struct px_exchange *x, const coap_pdu_t *received, size_t limit,
                                 const char **detail)
{
    size_t len = 0, offset = 0, total = 0;
    const uint8_t *data = NULL;

    if (!coap_get_data_large(received, &len, &data, &offset, &total)) {
        return PX_OK; /* no payload */
    }
    if (total > limit || offset + len > limit) {
        *detail = "the upstream's response is larger than limits.max_body_bytes";
        return PX_ERR_BAD_GATEWAY;
    }
    if (offset != x->resp_len) {
        *detail = "the upstream's block-wise response arrived out of order";
        return PX_ERR_BAD_GATEWAY;
    }
    if (len == 0) {
        return PX_OK;
    }
    uint8_t *grown = realloc(x->resp_payload, offset + len);
    if (grown == NULL) {
        *detail = "out of memory while reading the upstream's response";
        return PX_ERR_INTERNAL;
    }
    memcpy(grown + offset, data, len);
    x->resp_payload = grown;
    x->resp_len = offset + len;
    return PX_OK;
}

/* True when more Block2 blocks of this response are on their way. */
static bool more_blocks(const coap_pdu_t *received)
{
    coap_block_t block;
    return coap_get_block(received, COAP_OPTION_BLOCK2, &block) && block.m;
}

/* ---- observations (RFC 7641) ---- */

/* Sends GET with Observe=value (0 register, 1 deregister) and the observation's token and options. */
static bool obs_send(struct observation *o, uint32_t value)
{
    struct px_exchange *x = o->x;
    uint8_t obs[4];
    coap_pdu_t *pdu = request_pdu(o->h.session, o->h.up, CO_GET, x->priv.token, x->priv.token_len);

    if (pdu == NULL) {
        return false;
    }
    if (!add_options(pdu, x->req, CO_OPT_OBSERVE, obs, coap_encode_var_safe(obs, sizeof(obs), value)) ||
        !add_uri_host(pdu, o->h.up)) {
        coap_delete_pdu(pdu);
        return false;
    }
    x->priv.mid = coap_pdu_get_mid(pdu);
    return coap_send(o->h.session, pdu) != COAP_INVALID_MID;
}

/* RFC 7641 §3.6: deregisters with a GET carrying Observe=1 and the registration's token. In block mode
 * libcoap tracks the observation and gives a request of ours a new token; its own cancel sends the
 * registration's token. */
static bool obs_send_cancel(struct observation *o)
{
    coap_binary_t token = {.length = o->x->priv.token_len, .s = o->x->priv.token};
    coap_pdu_type_t type = o->h.up->cfg->type == CFG_MSG_NON ? COAP_MESSAGE_NON : COAP_MESSAGE_CON;

    return coap_cancel_observe(o->h.session, &token, type) || obs_send(o, 1);
}

/* Gives back the observation's place under limits.max_observations_per_upstream: when it ends, or at once
 * when its last subscriber leaves (a deregistration may still have to go out). */
static void obs_uncount(struct observation *o)
{
    if (o->counted) {
        o->counted = false;
        atomic_fetch_sub(&o->h.up->st_observations, 1);
    }
}

/* Ends the observation: out of the queue and of max_inflight, unlinked, done() called once. */
static void obs_end(struct observation *o, enum px_status status, const char *detail)
{
    struct upstream *up = o->h.up;
    struct observation **p = &up->observations;
    while (*p != NULL && *p != o) {
        p = &(*p)->next;
    }
    if (*p == o) {
        *p = o->next;
    }
    if (o->queued) {
        queue_remove(up, o->x);
        o->queued = false;
    }
    if (o->on_wire) {
        settle_retransmissions(up, o->x, o->h.session, false);
        o->on_wire = false;
        credit_release(up);
    }
    obs_uncount(o);
    holder_detach(&o->h, true); /* obs_end may run inside a libcoap callback */
    struct px_exchange *x = o->x;
    x->priv.owner = NULL;
    free(x->resp_payload);
    x->resp_payload = NULL;
    x->resp_len = 0;
    free(o);
    finish(x, status, detail);
}

/* Queues op for a place of max_inflight; feed() sends it when its turn comes. queue_limit bounds requests
 * only: observations' operations are bounded by limits.max_observations_per_upstream. */
static void obs_queue(struct observation *o, enum obs_op op, uint64_t deadline_ms)
{
    o->op = op;
    o->deadline_ms = deadline_ms;
    o->x->priv.deadline_ms = deadline_ms;
    o->x->priv.owner = o;
    o->queued = true;
    queue_push(o->h.up, o->x);
}

/* The operation's turn has come (feed): it takes a place of max_inflight until its answer. */
static void obs_go(struct observation *o)
{
    struct upstream *up = o->h.up;
    struct px_exchange *x = o->x;

    o->queued = false;
    if (!up->resolved && o->op != OP_DEREGISTER) {
        obs_end(o, PX_ERR_BAD_GATEWAY, unresolved_detail(up));
        return;
    }
    up->inflight++;
    stats_sync(up);
    o->on_wire = true;
    x->priv.heard = false;
    x->priv.sent_ms = 0;
    if (o->op == OP_REGISTER) {
        if (!holder_open(&o->h)) {
            obs_end(o, PX_ERR_BAD_GATEWAY, "cannot open a CoAP session to the upstream");
            return;
        }
        coap_session_set_no_observe_cancel(o->h.session); /* we deregister ourselves, once */
        new_token(x);
    }
    if (o->h.session == NULL) {
        obs_end(o, o->op == OP_DEREGISTER ? PX_OK : PX_ERR_BAD_GATEWAY,
                o->op == OP_DEREGISTER ? "the last subscriber left" : "the observation's session was lost");
        return;
    }
    uint64_t now = cg_now_ms();
    x->priv.sent_ms = now;
    if (o->op == OP_DEREGISTER) {
        o->deadline_ms = now + up->cfg->timeout_ms; /* its answer is awaited this long, then let go */
    }
    if (!(o->op == OP_DEREGISTER ? obs_send_cancel(o) : obs_send(o, 0))) {
        x->priv.sent_ms = 0;
        obs_end(o, o->op == OP_DEREGISTER ? PX_OK : PX_ERR_BAD_GATEWAY,
                o->op == OP_DEREGISTER ? "the last subscriber left" : "the upstream cannot be reached");
    }
}

/* The answer to the operation on the wire has come: its place of max_inflight is free again. */
static void obs_answered(struct observation *o)
{
    if (o->on_wire) {
        settle_retransmissions(o->h.up, o->x, o->h.session, false);
        o->on_wire = false;
        credit_release(o->h.up);
    }
}

static coap_response_t obs_response(struct observation *o, const coap_pdu_t *received)
{
    struct px_exchange *x = o->x;
    uint8_t code = (uint8_t)coap_pdu_get_code(received);
    size_t len = 0, offset = 0, total = 0;
    const uint8_t *data = NULL;
    const char *detail = NULL;

    if (o->on_wire && o->op == OP_DEREGISTER) {
        /* Whatever the token (libcoap may have sent the cancel with one of its own): the device answered. */
        heard(o->h.up, x, "the upstream answered a deregistration");
        obs_end(o, PX_OK, "the last subscriber left");
        return COAP_RESPONSE_OK;
    }
    if (!token_matches(x, received)) {
        return COAP_RESPONSE_FAIL;
    }
    heard(o->h.up, x, "a notification arrived");
    if (!co_code_is_response(code)) {
        obs_end(o, PX_ERR_BAD_GATEWAY, "the upstream sent a message that is not a response");
        return COAP_RESPONSE_OK;
    }
    x->resp_code = code;
    if (unsolicited_valid(x)) { /* as on_response: a long-poll would answer 304 to an unconditional GET */
        obs_end(o, PX_ERR_BAD_GATEWAY, "the upstream answered 2.03 Valid to a request without an ETag");
        return COAP_RESPONSE_OK;
    }
    coap_get_data_large(received, &len, &data, &offset, &total);
    if (offset == 0) { /* a new notification starts */
        free(x->resp_payload);
        x->resp_payload = NULL;
        x->resp_len = 0;
        if (!copy_options(x, received)) {
            obs_end(o, PX_ERR_BAD_GATEWAY, "the upstream's notification has too many or too large options");
            return COAP_RESPONSE_OK;
        }
    }
    enum px_status st = take_block(x, received, o->h.up->worker->client->cfg->limits.max_body_bytes, &detail);
    if (st != PX_OK) {
        obs_end(o, st, detail);
        return COAP_RESPONSE_OK;
    }
    if (more_blocks(received)) {
        if (o->on_wire) { /* libcoap asks for the next block at once: a CON of its own */
            settle_retransmissions(o->h.up, x, o->h.session, false);
            x->priv.sent_ms = cg_now_ms();
        }
        return COAP_RESPONSE_OK;
    }
    x->resp_code = code;
    const struct co_opt *seq = co_optset_find(&x->resp, CO_OPT_OBSERVE, 0);
    bool observing = seq != NULL && CO_CODE_CLASS(code) == 2;
    uint64_t now = cg_now_ms();
    if (observing) {
        uint32_t v = co_opt_uint(co_opt_value(&x->resp, seq), seq->len);
        if (o->seen && !px_observe_is_newer(o->last_seq, o->last_ms, v, now)) {
            return COAP_RESPONSE_OK; /* reordered or duplicate (RFC 7641 §3.4): an older state, dropped */
        }
        o->seen = true;
        o->last_seq = v;
        o->last_ms = now;
    }
    obs_answered(o);
    if (o->cancelled) {
        /* The last subscriber left while the registration was on its way: deregister what the device
         * accepted; nothing is notified any more. */
        if (!observing) {
            obs_end(o, PX_OK, "the last subscriber left");
        } else if (!o->queued) {
            obs_queue(o, OP_DEREGISTER, now + o->h.up->cfg->timeout_ms);
        }
        return COAP_RESPONSE_OK;
    }
    x->notify(x, x->arg);
    if (!observing) {
        obs_end(o, PX_OK, "the upstream ended the observation");
        return COAP_RESPONSE_OK;
    }
    if (o->queued) { /* a re-registration waiting for its turn: the device spoke first, none is needed */
        queue_remove(o->h.up, x);
        o->queued = false;
    }
    /* Re-register once Max-Age has passed without a notification; at least 1 s, so Max-Age 0 cannot make a
     * registration storm. */
    uint32_t max_age = co_max_age(&x->resp);
    o->deadline_ms = now + (uint64_t)(max_age > 0 ? max_age : 1) * 1000u;
    return COAP_RESPONSE_OK;
}

/* A new observation (px_client_observe): its registration waits for a place of max_inflight like a request,
 * within the same timeout_ms (queueing included). */
static void obs_start(struct upstream *up, struct px_exchange *x)
{
    struct observation *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        atomic_fetch_sub(&up->st_observations, 1);
        finish(x, PX_ERR_INTERNAL, "out of memory");
        return;
    }
    o->h.kind = HOLD_OBS;
    o->h.up = up;
    o->h.fd = -1;
    o->x = x;
    o->counted = true; /* taken by px_client_observe */
    o->next = up->observations;
    up->observations = o;
    obs_queue(o, OP_REGISTER, x->priv.deadline_ms);
}

/* A registration or re-registration on the wire whose last subscriber left, once the device has acknowledged
 * it: a separate response is owed (RFC 7252 §5.2.2) and may come late or never, but the interaction is no
 * longer outstanding (§4.7), so its place of max_inflight is given back now rather than held until
 * timeout_ms. An answer that still comes is deregistered (obs_response); none by the deadline ends it
 * (obs_deadline). Does nothing for any other observation. */
static void obs_release_if_left(struct observation *o)
{
    if (o->cancelled && o->on_wire && o->op != OP_DEREGISTER) {
        obs_answered(o);
    }
}

/* The last subscriber left (px_client_unobserve). A registration still waiting for its turn is dropped
 * with nothing sent; one on the wire gives its place back once acknowledged and is deregistered if the device
 * answers it (obs_response); a registered observation queues its deregistration. */
static void obs_cancel(struct upstream *up, uint64_t id)
{
    for (struct observation *o = up->observations; o != NULL; o = o->next) {
        if (o->x->priv.obs_id != id || o->cancelled) {
            continue;
        }
        o->cancelled = true;
        obs_uncount(o);
        if (o->queued && o->op == OP_REGISTER) {
            obs_end(o, PX_OK, "the last subscriber left");
        } else if (o->queued) {
            o->op = OP_DEREGISTER; /* a waiting re-registration becomes the deregistration */
        } else if (!o->on_wire) {
            obs_queue(o, OP_DEREGISTER, cg_now_ms() + up->cfg->timeout_ms);
        } else if (o->x->priv.heard) {
            obs_release_if_left(o);
        } /* on the wire, unacknowledged: still outstanding (§4.7), its place is kept until the ACK */
        return;
    }
}

/* An observation's deadline has passed: an operation waiting or on the wire is given up (a registration or
 * a re-registration ends the observation with 504); a registered observation silent past Max-Age queues a
 * re-registration. False when it has ended. */
static bool obs_deadline(struct observation *o, uint64_t now)
{
    struct upstream *up = o->h.up;
    bool waited = o->queued;

    if (o->cancelled && !o->queued && !o->on_wire) {
        obs_end(o, PX_OK, "the last subscriber left"); /* an acknowledged registration never answered */
        return false;
    }
    if (!o->queued && !o->on_wire) {
        obs_queue(o, OP_REREGISTER, now + up->cfg->timeout_ms);
        return true;
    }
    if (o->op == OP_DEREGISTER) {
        obs_end(o, PX_OK, "the last subscriber left"); /* its session goes: libcoap stops retransmitting */
        return false;
    }
    const char *why =
        o->op == OP_REGISTER
            ? (waited ? "the registration waited in the upstream's queue past timeout_ms"
                      : "the upstream did not answer the registration within timeout_ms")
            : (waited ? "the upstream stopped notifying and the re-registration waited in the queue past "
                        "timeout_ms"
                      : "the upstream stopped notifying and did not answer a re-registration");
    if (o->on_wire && !o->x->priv.heard) {
        unanswered(up, o->x, why);
    }
    log_event(CG_LOG_WARN, up, o->x, "timeout", "observe=1 ", why);
    obs_end(o, PX_ERR_TIMEOUT, why);
    return false;
}

/* Deadlines of the observations; returns ms until the next one (-1: none). */
static long expire_observations(struct upstream *up, uint64_t now)
{
    long next = -1;
    struct observation *o = up->observations;

    while (o != NULL) {
        struct observation *following = o->next;
        if (o->deadline_ms <= now && !obs_deadline(o, now)) {
            o = following;
            continue;
        }
        long left = o->deadline_ms > now ? (long)(o->deadline_ms - now) : 0;
        if (next < 0 || left < next) {
            next = left;
        }
        o = following;
    }
    return next;
}

/* A 4.13 carrying Block1 names the block size the device can take (RFC 7959 §2.9.3): send the body again,
 * block-wise at that size, once, before answering 413. */
static bool retry_smaller_blocks(struct slot *s, const coap_pdu_t *received)
{
    struct px_exchange *x = s->x;
    coap_block_t block;

    if (x->resp_code != CO_CODE(4, 13) || x->payload_len == 0 || x->priv.block1_szx != 0 ||
        !coap_get_block(received, COAP_OPTION_BLOCK1, &block) ||
        ((size_t)16 << block.szx) >= x->payload_len) {
        return false;
    }
    x->priv.block1_szx = (uint8_t)(block.szx + 1);
    coap_pdu_t *pdu;
    settle_retransmissions(s->h.up, x, s->h.session, false);
    if (build_pdu(s, x, &pdu) != PX_OK || coap_send(s->h.session, pdu) == COAP_INVALID_MID) {
        return false; /* answer the 4.13 as it is */
    }
    x->priv.sent_ms = cg_now_ms();
    if (cg_log_enabled(CG_LOG_INFO)) {
        char extra[32];
        snprintf(extra, sizeof(extra), "block_size=%u ", 16u << block.szx);
        log_event(CG_LOG_INFO, s->h.up, x, "retry_smaller_blocks", extra,
                  "the upstream answered 4.13 with a smaller Block1 size; sending the body again block-wise");
    }
    return true;
}

/* Remembers the block numbers of a response, for the debug log. */
static void note_blocks(struct px_exchange *x, const coap_pdu_t *received)
{
    coap_block_t block;

    if (coap_get_block(received, COAP_OPTION_BLOCK1, &block)) {
        x->priv.block1 = (int32_t)block.num;
    }
    if (coap_get_block(received, COAP_OPTION_BLOCK2, &block)) {
        if (x->priv.block2_first < 0) {
            x->priv.block2_first = (int32_t)block.num;
        }
        x->priv.block2_last = (int32_t)block.num;
    }
}

/* 2.03 Valid confirms an ETag the request carried (RFC 7252 §5.9.1.3); to a request without one it means
 * nothing, and passing it on would answer an unconditional HTTP request with 304. */
static bool unsolicited_valid(const struct px_exchange *x)
{
    return x->resp_code == CO_CODE(2, 3) && co_optset_find(x->req, CO_OPT_ETAG, 0) == NULL;
}

static coap_response_t on_response(coap_session_t *session, const coap_pdu_t *sent,
                                   const coap_pdu_t *received, const coap_mid_t mid)
{
    (void)sent;
    (void)mid;
    enum holder_kind *holder = coap_session_get_app_data(session);
    if (holder == NULL) {
        return COAP_RESPONSE_OK; /* a late answer on an abandoned session: accept it, nobody waits */
    }
    if (*holder == HOLD_OBS) {
        return obs_response((struct observation *)holder, received);
    }
    if (*holder != HOLD_SLOT) {
        return COAP_RESPONSE_FAIL; /* a "response" on the probe's session answers nothing we asked */
    }
    struct slot *s = (struct slot *)holder;
    if (s->x == NULL || !token_matches(s->x, received)) {
        return COAP_RESPONSE_FAIL;
    }
    struct px_exchange *x = s->x;
    heard(s->h.up, x, "a response arrived");
    note_blocks(x, received);
    x->resp_code = (uint8_t)coap_pdu_get_code(received);
    if (!co_code_is_response(x->resp_code)) {
        slot_complete(s, PX_ERR_BAD_GATEWAY, "the upstream sent a message that is not a response");
        return COAP_RESPONSE_OK;
    }
    if (unsolicited_valid(x)) {
        slot_complete(s, PX_ERR_BAD_GATEWAY, "the upstream answered 2.03 Valid to a request without an ETag");
        return COAP_RESPONSE_OK;
    }
    if (retry_smaller_blocks(s, received)) {
        return COAP_RESPONSE_OK;
    }
    size_t len = 0, offset = 0, total = 0;
    const uint8_t *data = NULL;
    coap_get_data_large(received, &len, &data, &offset, &total);
    if (offset == 0) {
        /* The first block, or libcoap restarted the transfer because the ETag changed (RFC 7959 §2.4). */
        free(x->resp_payload);
        x->resp_payload = NULL;
        x->resp_len = 0;
    }
    if (offset == 0 && !copy_options(x, received)) {
        slot_complete(s, PX_ERR_BAD_GATEWAY, "the upstream's response has too many or too large options");
        return COAP_RESPONSE_OK;
    }
    const char *detail = NULL;
    enum px_status st = take_block(x, received, s->h.up->worker->client->cfg->limits.max_body_bytes, &detail);
    if (st != PX_OK) {
        slot_reset_session(s, true); /* stops libcoap asking for the remaining blocks */
        slot_complete(s, st, detail);
        return COAP_RESPONSE_OK;
    }
    if (!more_blocks(received)) {
        slot_complete(s, PX_OK, NULL);
    } else { /* libcoap asks for the next block at once: a CON of its own */
        settle_retransmissions(s->h.up, x, session, false);
        x->priv.sent_ms = cg_now_ms();
    }
    return COAP_RESPONSE_OK;
}

/* The probe's ping was answered (RST: the device is there) or failed (reason says how). Inside a libcoap
 * callback. */
static void probe_answered(struct probe *p, bool up, const char *reason)
{
    p->outstanding = false;
    if (up) {
        heard(p->h.up, NULL, reason);
    } else {
        unanswered(p->h.up, NULL, reason);
        holder_detach(&p->h, true);
    }
}

static void on_pong(coap_session_t *session, const coap_pdu_t *received, const coap_mid_t mid)
{
    (void)received;
    (void)mid;
    enum holder_kind *holder = coap_session_get_app_data(session);
    if (holder != NULL && *holder == HOLD_PROBE) {
        probe_answered((struct probe *)holder, true, "the upstream answered a CoAP ping");
    }
}

/* Pings an upstream nobody has heard from for ping_interval_s (at once at start-up, and soon after a
 * failure: see unanswered), so /readyz knows whether it is reachable without waiting for a client to find
 * out. Nothing when ping_interval_s is 0 or the host name does not resolve. Returns ms until it needs
 * attention again (-1: never). */
static long expire_probe(struct upstream *up, uint64_t now)
{
    struct probe *p = &up->probe;

    if (p->outstanding) {
        if (now < p->deadline_ms) {
            return (long)(p->deadline_ms - now);
        }
        p->outstanding = false;
        holder_detach(&p->h, false);
        unanswered(up, NULL, "no answer to a CoAP ping");
    }
    if (ping_interval_ms(up) == 0 || !up->resolved || p->due_ms == UINT64_MAX) {
        return -1;
    }
    if (now < p->due_ms) {
        return (long)(p->due_ms - now);
    }
    /* coaps: libcoap sends no ping before the handshake is done, and the handshake answers the same question:
     * on_event reports it to probe_answered. */
    bool opened = holder_open(&p->h);
    bool handshake = opened && coap_session_get_state(p->h.session) == COAP_SESSION_STATE_HANDSHAKE;
    p->due_ms = now + ping_interval_ms(up); /* pushed back by any answer, brought forward by a failure */
    if (!handshake && (!opened || coap_session_send_ping(p->h.session) == COAP_INVALID_MID)) {
        unanswered(up, NULL, "cannot send a CoAP ping");
        return (long)(p->due_ms - now);
    }
    unsigned wait = up->cfg->timeout_ms < 5000 ? up->cfg->timeout_ms : 5000;
    p->outstanding = true;
    p->deadline_ms = now + wait;
    return (long)wait;
}

/* What a nack means, for the log: a short name and a sentence. */
static const char *nack_name(coap_nack_reason_t reason)
{
    switch (reason) {
    case COAP_NACK_TOO_MANY_RETRIES:
        return "retries";
    case COAP_NACK_RST:
        return "rst";
    case COAP_NACK_ICMP_ISSUE:
        return "icmp";
    case COAP_NACK_TLS_FAILED:
        return "tls";
    case COAP_NACK_NOT_DELIVERABLE:
        break;
    }
    return "not_deliverable";
}

static const char *nack_text(coap_nack_reason_t reason)
{
    switch (reason) {
    case COAP_NACK_TOO_MANY_RETRIES:
        return "the upstream did not acknowledge the request after the last retransmission";
    case COAP_NACK_RST:
        return "the upstream answered with a Reset";
    case COAP_NACK_ICMP_ISSUE:
        return "ICMP unreachable: nothing listens at the upstream's address";
    case COAP_NACK_TLS_FAILED:
        return "the DTLS handshake failed";
    case COAP_NACK_NOT_DELIVERABLE:
        break;
    }
    return "the request could not be delivered";
}

/* A nack of a request an exchange waits for: logged at warn with what it means. */
static void log_nack(const struct upstream *up, const struct px_exchange *x, coap_nack_reason_t reason)
{
    char extra[32];
    if (!cg_log_enabled(CG_LOG_WARN)) {
        return;
    }
    snprintf(extra, sizeof(extra), "nack=%s ", nack_name(reason));
    log_event(CG_LOG_WARN, up, x, "nack", extra, nack_text(reason));
}

/* What a nack says about the upstream: an RST is an answer, anything else is none. */
static void nack_news(struct upstream *up, struct px_exchange *x, coap_nack_reason_t reason)
{
    if (reason == COAP_NACK_RST) {
        heard(up, x, nack_text(reason));
    } else {
        unanswered(up, x, nack_text(reason));
    }
}

static void obs_nack(struct observation *o, const coap_pdu_t *sent, coap_nack_reason_t reason)
{
    bool deregistering = o->on_wire && o->op == OP_DEREGISTER;

    if (!deregistering && sent != NULL && !token_matches(o->x, sent)) {
        return;
    }
    if (reason == COAP_NACK_TOO_MANY_RETRIES && o->on_wire) {
        settle_retransmissions(o->h.up, o->x, o->h.session, true);
    }
    nack_news(o->h.up, o->x, reason);
    if (deregistering) {
        obs_end(o, PX_OK, "the last subscriber left");
        return;
    }
    log_nack(o->h.up, o->x, reason);
    obs_end(o, reason == COAP_NACK_TOO_MANY_RETRIES ? PX_ERR_TIMEOUT : PX_ERR_BAD_GATEWAY,
            "the upstream did not accept the observation");
}

/* A DTLS session that failed or closed (a failed handshake, a fatal alert, the device's close_notify)
 * cannot carry anything again: libcoap 4.3.1 does not reconnect it. The holder lets it go (the next request
 * opens a fresh one) and what it carried ends with 502. Reached from the DTLS events and from the nack
 * COAP_NACK_TLS_FAILED, whichever comes first: the holder is detached then, so the other finds none. */
static void dtls_lost(struct holder *h)
{
    struct upstream *up = h->up;
    bool was_up = h->dtls_up;
    const char *why = was_up ? "the DTLS session with the upstream was closed"
                             : "the DTLS handshake with the upstream failed";
    struct px_exchange *x = h->kind == HOLD_SLOT ? ((struct slot *)h)->x : NULL;

    log_event(was_up ? CG_LOG_INFO : CG_LOG_WARN, up, x, was_up ? "dtls_closed" : "dtls_failed", "", why);
    if (h->kind == HOLD_OBS) {
        obs_end((struct observation *)h, PX_ERR_BAD_GATEWAY, why);
        return;
    }
    if (h->kind == HOLD_PROBE && !was_up) {
        probe_answered((struct probe *)h, false, why);
        return;
    }
    holder_detach(h, true);
    if (!was_up) {
        unanswered(up, x, why);
    }
    if (x != NULL) {
        slot_complete((struct slot *)h, PX_ERR_BAD_GATEWAY, why);
    }
}

/* A DTLS session whose handshake has completed: logged at debug, one line per handshake (event=dtls_connected
 * with the holder's kind), so a test can count them; a slot keeps its session, so N requests cost one. */
static void dtls_note_connected(struct holder *h)
{
    static const char *const kinds[] = {[HOLD_SLOT] = "slot", [HOLD_OBS] = "observe", [HOLD_PROBE] = "probe"};
    char extra[32];

    if (h->session == NULL || h->dtls_up ||
        coap_session_get_state(h->session) != COAP_SESSION_STATE_ESTABLISHED) {
        return;
    }
    h->dtls_up = true;
    snprintf(extra, sizeof(extra), "holder=%s ", kinds[h->kind]);
    log_event(CG_LOG_DEBUG, h->up, NULL, "dtls_connected", extra, "the DTLS handshake completed");
    if (h->kind == HOLD_PROBE && ((struct probe *)h)->outstanding) {
        probe_answered((struct probe *)h, true, "the DTLS handshake with the upstream completed");
    }
}

/* libcoap 4.3.1's GnuTLS client raises no COAP_EVENT_DTLS_CONNECTED when a handshake completes in
 * coap_dtls_receive (it only calls coap_session_connected), so after each round the worker looks at the
 * sessions of its coaps upstreams, as libcoap's coap_io_prepare_epoll walks every session each round too. */
static void note_handshakes(struct worker *w)
{
    for (size_t i = 0; i < w->ups_len; i++) {
        struct upstream *up = w->ups[i];
        if (!up->cfg->secure) {
            continue;
        }
        for (unsigned k = 0; k < up->cfg->max_inflight; k++) {
            dtls_note_connected(&up->slots[k].h);
        }
        for (struct observation *o = up->observations; o != NULL; o = o->next) {
            dtls_note_connected(&o->h);
        }
        dtls_note_connected(&up->probe.h);
    }
}

/* libcoap's DTLS events: a failure or a close ends the session (dtls_lost). */
static int on_event(coap_session_t *session, const coap_event_t event)
{
    struct holder *h = coap_session_get_app_data(session);

    if (h == NULL || !h->up->cfg->secure) {
        return 0; /* COAP_EVENT_DTLS_CLOSED is 0: never read an event of another kind as one */
    }
    if (event == COAP_EVENT_DTLS_CONNECTED) {
        dtls_note_connected(h);
    } else if (event == COAP_EVENT_DTLS_ERROR || event == COAP_EVENT_DTLS_CLOSED) {
        dtls_lost(h);
    }
    return 0;
}

static void on_nack(coap_session_t *session, const coap_pdu_t *sent, const coap_nack_reason_t reason,
                    const coap_mid_t mid)
{
    (void)mid;
    enum holder_kind *holder = coap_session_get_app_data(session);
    if (holder == NULL) {
        return;
    }
    atomic_fetch_add_explicit(&((struct holder *)holder)->up->st_nacks, 1, memory_order_relaxed);
    if (reason == COAP_NACK_TLS_FAILED) {
        dtls_lost((struct holder *)holder);
        return;
    }
    if (*holder == HOLD_PROBE) {
        probe_answered((struct probe *)holder, reason == COAP_NACK_RST,
                       reason == COAP_NACK_RST ? "the upstream answered a CoAP ping" : nack_text(reason));
        return;
    }
    if (*holder == HOLD_OBS) {
        obs_nack((struct observation *)holder, sent, reason);
        return;
    }
    struct slot *s = (struct slot *)holder;
    bool ours = s->x != NULL && (sent == NULL || token_matches(s->x, sent));
    if (!ours) {
        if (reason == COAP_NACK_RST) {
            heard(s->h.up, NULL, nack_text(reason));
        }
        return;
    }
    nack_news(s->h.up, s->x, reason);
    log_nack(s->h.up, s->x, reason);
    switch (reason) {
    case COAP_NACK_TOO_MANY_RETRIES:
        settle_retransmissions(s->h.up, s->x, s->h.session, true);
        slot_reset_session(s, true);
        slot_complete(s, PX_ERR_TIMEOUT, "the upstream did not acknowledge the request");
        return;
    case COAP_NACK_RST:
        slot_complete(s, PX_ERR_BAD_GATEWAY, "the upstream rejected the request with a Reset");
        return;
    case COAP_NACK_NOT_DELIVERABLE:
    case COAP_NACK_ICMP_ISSUE:
    case COAP_NACK_TLS_FAILED:
        slot_reset_session(s, true);
        slot_complete(s, PX_ERR_BAD_GATEWAY, "the upstream is unreachable");
        return;
    }
}

/* ---- inbound filter (RFC 7252 §4.2, §4.5, §5.4) ---- */

/* libcoap 4.3.1 gets several things on the receive path wrong for a client, and offers no hook before them,
 * so every datagram on a client session's socket is peeked at here before coap_io_process() reads it:
 * - it drops a retransmitted copy of a CON response (handle_response: "Duplicate response") without
 *   ACKing it again, although the copy says our first ACK was lost (§4.5): the filter ACKs such copies;
 * - it discards a whole PDU when one option has a length outside its range ("discard malformed PDU") and
 *   answers it with RST, even when it is an ACK, where an elective option should simply be ignored
 *   (§5.4.1, §5.4.3) and an ACK is never answered with RST (§4.2): the filter passes the response on
 *   without those options;
 * - it silently drops an ACK with an unrecognised critical option, so nobody hears of the answer until the
 *   deadline: the filter rejects it (RST for CON/NON, nothing for an ACK) and answers the client 502;
 * - when the ETag changes between blocks it restarts the Block2 transfer with a token it then does not
 *   match, and it answers a wrong block number by asking for nothing more: the filter ends the exchange
 *   with 502 instead (RFC 7959 §2.4 allows either a restart or an error; a splice never). */

#define WIRE_MAX 2048 /* larger than any datagram a session accepts */

struct wire_opt {
    uint16_t number, len;
    const uint8_t *value;
};

struct wire_msg {
    uint8_t type, code, tkl;
    uint16_t mid;
    const uint8_t *token;
    struct wire_opt opt[CO_OPT_MAX];
    unsigned count;
    const uint8_t *payload;
    size_t payload_len;
};

/* An option header's extended delta or length (RFC 7252 §3.1); false when it runs past the end or is 15. */
static bool wire_ext(const uint8_t *d, size_t n, size_t *p, unsigned nibble, uint32_t *out)
{
    if (nibble < 13) {
        *out = nibble;
        return true;
    }
    if (nibble == 13 && *p < n) {
        *out = 13u + d[(*p)++];
        return true;
    }
    if (nibble == 14 && *p + 1 < n) {
        *out = 269u + ((uint32_t)d[*p] << 8 | d[*p + 1]);
        *p += 2;
        return true;
    }
    return false;
}

/* Parses a CoAP datagram; false when it is not one (libcoap then judges it) or has more than CO_OPT_MAX
 * options. */
static bool wire_parse(const uint8_t *d, size_t n, struct wire_msg *m)
{
    size_t p;
    uint32_t number = 0;

    if (n < 4 || d[0] >> 6 != 1 || (d[0] & 15) > 8 || 4u + (d[0] & 15) > n) {
        return false;
    }
    *m = (struct wire_msg){.type = (uint8_t)(d[0] >> 4 & 3),
                           .code = d[1],
                           .tkl = (uint8_t)(d[0] & 15),
                           .mid = (uint16_t)(d[2] << 8 | d[3]),
                           .token = d + 4};
    for (p = 4u + m->tkl; p < n;) {
        uint32_t delta, len;
        if (d[p] == 0xff) {
            m->payload = d + p + 1;
            m->payload_len = n - p - 1;
            return m->payload_len > 0;
        }
        unsigned hd = d[p] >> 4, hl = d[p] & 15;
        p++;
        if (!wire_ext(d, n, &p, hd, &delta) || !wire_ext(d, n, &p, hl, &len) || len > n - p ||
            (number += delta) > 0xffff || m->count == CO_OPT_MAX) {
            return false;
        }
        m->opt[m->count++] = (struct wire_opt){(uint16_t)number, (uint16_t)len, d + p};
        p += len;
    }
    return true;
}

/* The length range of each option libcoap 4.3.1 checks (coap_pdu_parse_opt_base), RFC 7252 §5.10 and
 * the RFCs after it; libcoap discards the PDU for any length outside it. */
static const struct {
    uint16_t number, min, max;
} opt_lengths[] = {
    {1, 0, 8},     {3, 1, 255},  {4, 1, 8},    {5, 0, 0},    {6, 0, 3},   {7, 0, 2},
    {8, 0, 255},   {9, 0, 255},  {11, 0, 255}, {12, 0, 2},   {14, 0, 4},  {15, 1, 255},
    {16, 1, 1},    {17, 0, 2},   {20, 0, 255}, {23, 0, 3},   {27, 0, 3},  {28, 0, 4},
    {35, 1, 1034}, {39, 1, 255}, {60, 0, 4},   {252, 0, 40}, {258, 0, 1}, {292, 0, 8},
};

static bool opt_length_ok(const struct wire_opt *o)
{
    for (size_t i = 0; i < sizeof(opt_lengths) / sizeof(opt_lengths[0]); i++) {
        if (opt_lengths[i].number == o->number) {
            return o->len >= opt_lengths[i].min && o->len <= opt_lengths[i].max;
        }
    }
    return true;
}

/* Critical options a response may carry that libcoap 4.3.1 knows (coap_option_check_critical). */
static bool critical_known(uint16_t number)
{
    static const uint16_t known[] = {1, 3, 5, 7, 11, 15, 17, 23, 27, 35, 39};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (known[i] == number) {
            return true;
        }
    }
    return false;
}

enum verdict { PASS, STRIP, REJECT };

/* §5.4.1: an unrecognised critical option rejects the message; §5.4.3: a critical option with a bad length
 * counts as unrecognised, an elective one is ignored (STRIP). */
static enum verdict judge(const struct wire_msg *m)
{
    enum verdict v = PASS;
    for (unsigned i = 0; i < m->count; i++) {
        bool critical = m->opt[i].number & 1;
        if (critical && (!critical_known(m->opt[i].number) || !opt_length_ok(&m->opt[i]))) {
            return REJECT;
        }
        if (!opt_length_ok(&m->opt[i])) {
            v = STRIP;
        }
    }
    return v;
}

static const struct wire_opt *wire_find(const struct wire_msg *m, uint16_t number)
{
    for (unsigned i = 0; i < m->count; i++) {
        if (m->opt[i].number == number) {
            return &m->opt[i];
        }
    }
    return NULL;
}

/* Sends an empty ACK or RST for mid on the session's socket (connected to the device). */
static void send_empty(const struct holder *h, uint8_t type, uint16_t mid)
{
    uint8_t d[4] = {(uint8_t)(0x40 | type << 4), 0, (uint8_t)(mid >> 8), (uint8_t)mid};
    ssize_t r = send(h->fd, d, sizeof(d), MSG_DONTWAIT);
    (void)r;
}

static bool seen_con(const struct holder *h, uint16_t mid)
{
    for (unsigned i = 0; i < SEEN_CON_MIDS; i++) {
        if (h->seen_mid[i] == (int32_t)mid) {
            return true;
        }
    }
    return false;
}

static void remember_con(struct holder *h, uint16_t mid)
{
    h->seen_mid[h->seen_next] = mid;
    h->seen_next = (h->seen_next + 1) % SEEN_CON_MIDS;
}

/* Ends the holder's exchange (slot) or observation with 502 because of message m, which has been consumed;
 * extra: preformatted fields for the warn line, or "". Outside libcoap callbacks. */
static void holder_fail_x(struct holder *h, const char *extra, const char *detail)
{
    if (h->kind == HOLD_SLOT) {
        struct slot *s = (struct slot *)h;
        if (s->x != NULL) {
            heard(h->up, s->x, "a response arrived");
            log_event(CG_LOG_WARN, h->up, s->x, "bad_response", extra, detail);
            slot_reset_session(s, false); /* stops libcoap retransmitting or asking for more blocks */
            slot_complete(s, PX_ERR_BAD_GATEWAY, detail);
        }
    } else if (h->kind == HOLD_OBS) {
        obs_end((struct observation *)h, PX_ERR_BAD_GATEWAY, detail);
    }
}

static void holder_fail(struct holder *h, const char *detail)
{
    holder_fail_x(h, "", detail);
}

/* RFC 7959 §2.4: every block of one transfer carries the ETag of block 0 and the number asked for (libcoap
 * asks for them in order). The filter may miss a datagram: one that arrives between its peek and libcoap's
 * read goes to libcoap unseen. So a block further on than expected is taken as the new position (a real
 * jump ahead is refused by take_block, which sees every block libcoap delivers), and only a block from
 * behind is judged: a copy of a recent block (a message id seen) is left to libcoap's duplicate detection,
 * any other is a wrong block, which libcoap 4.3.1 would answer by asking for nothing more. NULL when block m
 * may go on, else why not. */
static bool b2_mid_seen(const struct holder *h, int32_t mid)
{
    for (size_t i = 0; i < sizeof(h->b2_mids) / sizeof(h->b2_mids[0]); i++) {
        if (h->b2_mids[i] == mid) {
            return true;
        }
    }
    return false;
}

static void b2_advance(struct holder *h, uint64_t offset, const struct wire_msg *m)
{
    memmove(h->b2_mids + 1, h->b2_mids, sizeof(h->b2_mids) - sizeof(h->b2_mids[0]));
    h->b2_mids[0] = m->mid;
    h->b2_next = (uint32_t)(offset + m->payload_len);
}

static const char *check_block2(struct holder *h, const struct wire_msg *m)
{
    const struct wire_opt *b2 = wire_find(m, CO_OPT_BLOCK2), *etag = wire_find(m, CO_OPT_ETAG);
    if (b2 == NULL || m->code >> 5 != 2) {
        return NULL;
    }
    uint32_t v = co_opt_uint(b2->value, b2->len), szx = v & 7;
    uint64_t offset = (uint64_t)(v >> 4) << (szx + 4);
    if (szx == 7) {
        return NULL; /* BERT: libcoap judges it */
    }
    if (!h->b2_started) {
        h->b2_started = true;
        h->b2_etag_len = (uint8_t)(etag != NULL && etag->len <= 8 ? etag->len : 0);
        memcpy(h->b2_etag, etag != NULL ? etag->value : h->b2_etag, h->b2_etag_len);
        for (size_t i = 0; i < sizeof(h->b2_mids) / sizeof(h->b2_mids[0]); i++) {
            h->b2_mids[i] = -1;
        }
        b2_advance(h, offset, m);
        return NULL;
    }
    size_t elen = etag != NULL ? etag->len : 0;
    if (elen != h->b2_etag_len || (elen != 0 && memcmp(etag->value, h->b2_etag, elen) != 0)) {
        return "the upstream's representation changed (another ETag) during a block-wise transfer";
    }
    if (offset < h->b2_next) {
        return b2_mid_seen(h, m->mid) ? NULL
                                      : "the upstream answered with another block than the one asked for";
    }
    b2_advance(h, offset, m);
    return NULL;
}

/* A response with bad-length elective options, delivered here without them (libcoap would discard it):
 * only a whole, non-block-wise response on a slot; anything else ends the exchange with 502. */
static void deliver_stripped(struct slot *s, const struct wire_msg *m)
{
    struct px_exchange *x = s->x;
    bool ours = m->tkl == x->priv.token_len && memcmp(m->token, x->priv.token, m->tkl) == 0;

    if (!ours) {
        return; /* not an answer to the exchange: consumed and ignored */
    }
    if (m->type == COAP_MESSAGE_CON) {
        send_empty(&s->h, COAP_MESSAGE_ACK, m->mid);
    }
    if (wire_find(m, CO_OPT_BLOCK2) != NULL || wire_find(m, CO_OPT_BLOCK1) != NULL) {
        holder_fail(&s->h, "the upstream's block-wise response has an option of invalid length");
        return;
    }
    co_optset_clear(&x->resp);
    for (unsigned i = 0; i < m->count; i++) {
        if (opt_length_ok(&m->opt[i]) &&
            co_optset_add(&x->resp, m->opt[i].number, m->opt[i].value, m->opt[i].len) != 0) {
            holder_fail(&s->h, "the upstream's response has too many or too large options");
            return;
        }
    }
    x->resp_code = m->code;
    free(x->resp_payload);
    x->resp_payload = NULL;
    x->resp_len = 0;
    if (m->payload_len > s->h.up->worker->client->cfg->limits.max_body_bytes) {
        holder_fail(&s->h, "the upstream's response is larger than limits.max_body_bytes");
        return;
    }
    if (m->payload_len > 0 && (x->resp_payload = malloc(m->payload_len)) != NULL) {
        memcpy(x->resp_payload, m->payload, m->payload_len);
        x->resp_len = m->payload_len;
    }
    if (unsolicited_valid(x)) {
        holder_fail(&s->h, "the upstream answered 2.03 Valid to a request without an ETag");
        return;
    }
    heard(s->h.up, x, "a response arrived");
    slot_reset_session(s, false); /* a piggybacked answer: libcoap would retransmit the request */
    slot_complete(s, PX_OK, NULL);
}

/* libcoap 4.3.1 reads a datagram into COAP_RXBUFFER_SIZE (1472) bytes, cutting off the rest, and parses it
 * into a PDU of at most coap_session_max_pdu_size() = MTU - 4 bytes after the 4-byte header
 * (coap_handle_dgram, coap_pdu_resize: "pdu too big"): anything longer than the session's MTU (libcoap's
 * default, which the gateway keeps) is discarded as "malformed PDU" and answered with an RST of message id
 * 0, so the exchange would wait for its deadline. A response to a slot's exchange that long ends it with a
 * prompt 502 instead (RST for a CON or NON, which cannot be processed, §4.2); any other is dropped here. */
#define RX_STR_(v) #v
#define RX_STR(v) RX_STR_(v)
#define RX_LIMIT COAP_DEFAULT_MTU
_Static_assert(RX_LIMIT <= COAP_RXBUFFER_SIZE, "libcoap's read buffer is below its MTU: RX_LIMIT is wrong");

static void drop_oversize(struct holder *h, const uint8_t *d, size_t peeked, size_t len)
{
    static const char why[] =
        "the upstream's datagram is larger than libcoap reads (" RX_STR(RX_LIMIT) " bytes)";
    struct slot *s = (struct slot *)h;
    unsigned tkl = d[0] & 15u;
    bool response = peeked >= 4 && d[0] >> 6 == 1 && tkl <= 8 && 4u + tkl <= peeked && d[1] >> 5 >= 2 &&
                    d[1] >> 5 <= 5 && (d[0] >> 4 & 3) != COAP_MESSAGE_RST;
    bool ours = response && h->kind == HOLD_SLOT && s->x != NULL && tkl == s->x->priv.token_len &&
                memcmp(d + 4, s->x->priv.token, tkl) == 0;
    uint8_t sink[1];
    char extra[48];
    ssize_t r = recv(h->fd, sink, sizeof(sink), MSG_DONTWAIT); /* read here: libcoap could only drop it */
    (void)r;
    snprintf(extra, sizeof(extra), "bytes=%zu limit=%u ", len, (unsigned)RX_LIMIT);
    if (!ours) {
        log_event(CG_LOG_DEBUG, h->up, NULL, "oversize_datagram", extra, "not an answer to an exchange");
        return;
    }
    if ((d[0] >> 4 & 3) != COAP_MESSAGE_ACK) {
        send_empty(h, COAP_MESSAGE_RST, (uint16_t)(d[2] << 8 | d[3]));
    }
    holder_fail_x(h, extra, why);
}

/* A datagram with a CoAP header on a session's socket (connected: it comes from the device) is an answer:
 * the upstream is up, and an ACK (or RST) of the exchange's request means that a timeout after it is not
 * "no answer at all" (libcoap 4.3.1 tells nobody about empty ACKs). The session's own retransmissions stop
 * at the ACK, so they are counted then. */
static void note_heard(struct holder *h, const uint8_t *d, size_t n)
{
    struct px_exchange *x = NULL;

    if (n < 4 || d[0] >> 6 != 1) {
        return;
    }
    if (h->kind == HOLD_SLOT) {
        x = ((struct slot *)h)->x;
    } else if (h->kind == HOLD_OBS && ((struct observation *)h)->on_wire) {
        x = ((struct observation *)h)->x;
    }
    uint8_t type = d[0] >> 4 & 3;
    bool acked = x != NULL && (type == COAP_MESSAGE_ACK || type == COAP_MESSAGE_RST) && x->priv.mid >= 0 &&
                 (uint16_t)(d[2] << 8 | d[3]) == (uint16_t)x->priv.mid;
    if (acked) {
        settle_retransmissions(h->up, x, h->session, false);
    }
    heard(h->up, x, "the upstream answered");
    if (acked && h->kind == HOLD_OBS) {
        obs_release_if_left((struct observation *)h);
    }
}

/* An ACK naming the slot's request (its message id) that is no answer to it: malformed (libcoap discards
 * it), an empty message with bytes after the header, a request code, or another token (libcoap takes that
 * for nobody's); or the exchange's token in an ACK of another message id (RFC 7252 §4.2: an ACK echoes the
 * request's id; libcoap matches by token alone). The device is broken and the gateway can tell: 502 at
 * once, not 504 at the deadline. Block-wise transfers are left to libcoap and check_block2 (their later
 * requests carry message ids of libcoap's own); codes of class 1, 6 and 7 stay libcoap's (README). */
static const char *broken_ack(const struct holder *h, const uint8_t *d, size_t n, struct wire_msg *m)
{
    const struct px_exchange *x = h->kind == HOLD_SLOT ? ((const struct slot *)h)->x : NULL;
    if (x == NULL || x->priv.mid < 0 || h->b2_started || n < 4 || d[0] >> 6 != 1 ||
        (d[0] >> 4 & 3) != COAP_MESSAGE_ACK) {
        return NULL;
    }
    bool parsed = wire_parse(d, n, m), same_mid = (d[2] << 8 | d[3]) == x->priv.mid;
    bool ours = parsed && m->tkl == x->priv.token_len && memcmp(m->token, x->priv.token, m->tkl) == 0;
    if (!parsed || m->code >> 5 == 1 || m->code >> 5 > 5) {
        return same_mid && !parsed ? "the upstream's answer is not a well-formed CoAP message" : NULL;
    }
    if (same_mid && m->code == 0) {
        return n == 4 ? NULL : "the upstream's empty acknowledgement carries a token or more bytes";
    }
    if (same_mid && (m->code >> 5 == 0 || !ours)) {
        return m->code >> 5 == 0 ? "the upstream answered with a request code"
                                 : "the upstream's answer carries another token than the request's";
    }
    bool blocks = wire_find(m, CO_OPT_BLOCK1) != NULL || wire_find(m, CO_OPT_BLOCK2) != NULL;
    return !same_mid && ours && !blocks ? "the upstream's answer acknowledges another message id" : NULL;
}

/* Handles the datagram at the head of the holder's socket when it is one of the cases above (it is then
 * read); else leaves it for libcoap. True when it was read and the next one may be looked at. */
static bool filter_one(struct holder *h)
{
    static _Thread_local uint8_t d[WIRE_MAX];
    static _Thread_local struct wire_msg m;
    ssize_t n = recv(h->fd, d, sizeof(d), MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC);

    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            return false;
        }
        /* Peeking took the pending ICMP error that libcoap would have read: report it as libcoap does. */
        on_nack(h->session, NULL, COAP_NACK_ICMP_ISSUE, COAP_INVALID_MID);
        return false;
    }
    note_heard(h, d, (size_t)n < sizeof(d) ? (size_t)n : sizeof(d));
    if ((size_t)n > RX_LIMIT) {
        drop_oversize(h, d, (size_t)n < sizeof(d) ? (size_t)n : sizeof(d), (size_t)n);
        return true;
    }
    const char *broken = (size_t)n <= sizeof(d) ? broken_ack(h, d, (size_t)n, &m) : NULL;
    if (broken != NULL) {
        ssize_t r = recv(h->fd, d, sizeof(d), MSG_DONTWAIT); /* an ACK: ignored, never RST (§4.2) */
        (void)r;
        holder_fail(h, broken);
        return true;
    }
    if ((size_t)n > sizeof(d) || !wire_parse(d, (size_t)n, &m) || m.code >> 5 < 2 || m.code >> 5 > 5 ||
        m.type == COAP_MESSAGE_RST) {
        return false; /* not a response: libcoap's to judge */
    }
    if (m.type == COAP_MESSAGE_CON && seen_con(h, m.mid)) {
        ssize_t r = recv(h->fd, d, sizeof(d), MSG_DONTWAIT); /* processed once already: ACK it again */
        (void)r;
        send_empty(h, COAP_MESSAGE_ACK, m.mid);
        return true;
    }
    enum verdict v = judge(&m);
    const char *why =
        v == REJECT ? "the upstream's response has a critical option the gateway does not know"
                    : (h->kind == HOLD_SLOT && ((struct slot *)h)->x != NULL ? check_block2(h, &m) : NULL);
    if (why == NULL && (v == PASS || h->kind != HOLD_SLOT || ((struct slot *)h)->x == NULL)) {
        if (m.type == COAP_MESSAGE_CON) {
            remember_con(h, m.mid);
        }
        return false;
    }
    ssize_t r = recv(h->fd, d, sizeof(d), MSG_DONTWAIT);
    (void)r;
    if (why != NULL) {
        if (m.type != COAP_MESSAGE_ACK) {
            /* §4.2: a rejected CON (or NON) gets RST; a rejected ACK is ignored. An accepted CON the
             * exchange cannot use (another ETag, another block) is acknowledged. */
            send_empty(h, v == REJECT ? COAP_MESSAGE_RST : COAP_MESSAGE_ACK, m.mid);
        }
        holder_fail(h, why);
        return true;
    }
    deliver_stripped((struct slot *)h, &m);
    return true;
}

static struct holder *holder_by_fd(struct worker *w, int fd)
{
    for (size_t i = 0; i < w->ups_len; i++) {
        struct upstream *up = w->ups[i];
        for (unsigned k = 0; k < up->cfg->max_inflight; k++) {
            if (up->slots[k].h.fd == fd) {
                return &up->slots[k].h;
            }
        }
        for (struct observation *o = up->observations; o != NULL; o = o->next) {
            if (o->h.fd == fd) {
                return &o->h;
            }
        }
        if (up->probe.h.fd == fd) {
            return &up->probe.h;
        }
    }
    return NULL;
}

/* Runs the filter on a readable session socket; a bounded number of datagrams, the rest next round. */
static void filter_fd(struct worker *w, int fd)
{
    for (int i = 0; i < 16; i++) {
        struct holder *h = holder_by_fd(w, fd); /* looked up again: the last datagram may have ended it */
        if (h == NULL || !filter_one(h)) {
            return;
        }
    }
}

/* ---- deadlines ---- */

/* Completes what is past its deadline; returns ms until the next deadline (or -1 when there is none). */
static long expire_upstream(struct upstream *up, uint64_t now)
{
    long next = -1;

    for (unsigned i = 0; i < up->cfg->max_inflight; i++) {
        struct slot *s = &up->slots[i];
        if (s->x == NULL) {
            continue;
        }
        if (s->x->priv.deadline_ms <= now && s->h.dtls_heard && !s->h.dtls_up) {
            static const char why[] = "the DTLS handshake did not complete within timeout_ms";
            unanswered(up, s->x, why);
            log_event(CG_LOG_WARN, up, s->x, "dtls_failed", "", why);
            slot_reset_session(s, false);
            slot_complete(s, PX_ERR_BAD_GATEWAY, why);
            i = (unsigned)-1;
            continue;
        }
        if (s->x->priv.deadline_ms <= now) {
            static const char why[] = "the upstream did not answer within timeout_ms";
            if (!s->x->priv.heard) { /* acknowledged, then silent: the device is there, only slow */
                unanswered(up, s->x, why);
            }
            log_event(CG_LOG_WARN, up, s->x, "timeout", "", why);
            slot_reset_session(s, false);
            slot_complete(s, PX_ERR_TIMEOUT, "the upstream did not answer within timeout_ms");
            i = (unsigned)-1; /* slot_complete may have refilled slots: rescan */
            continue;
        }
        long left = (long)(s->x->priv.deadline_ms - now);
        if (next < 0 || left < next) {
            next = left;
        }
    }
    while (up->q_head != NULL && up->q_head->priv.deadline_ms <= now) {
        static const char why[] = "the request waited in the upstream's queue past timeout_ms";
        if (up->q_head->priv.owner != NULL) { /* an observation's operation: ends it, out of the queue */
            obs_deadline(up->q_head->priv.owner, now);
            continue;
        }
        log_event(CG_LOG_WARN, up, up->q_head, "timeout", "", why);
        finish(queue_pop(up), PX_ERR_TIMEOUT, why);
    }
    if (up->q_head != NULL) {
        long left = (long)(up->q_head->priv.deadline_ms - now);
        if (next < 0 || left < next) {
            next = left;
        }
    }
    return next;
}

/* ---- host names: resolved again on failure and every resolve_interval_s, off the worker ---- */

/* The 502 detail of an upstream whose name does not resolve: made once per getaddrinfo code and kept until
 * the client is freed, so an MHD thread reading it while the worker learns something new reads a string
 * that never changes. */
static const char *unresolved_detail(struct upstream *up)
{
    static const char fallback[] = "the upstream's host name does not resolve";

    for (size_t i = 0; i < GAI_DETAILS; i++) {
        if (up->gai_details[i] != NULL && up->gai_codes[i] == up->gai_rc) {
            return up->gai_details[i];
        }
        if (up->gai_details[i] == NULL) {
            char text[512];
            int n = snprintf(text, sizeof(text), "upstream %s: cannot resolve %s: %s", up->cfg->name,
                             up->cfg->peer.host, gai_strerror(up->gai_rc));
            if (n < 0 || (up->gai_details[i] = strdup(text)) == NULL) {
                return fallback;
            }
            up->gai_codes[i] = up->gai_rc;
            return up->gai_details[i];
        }
    }
    return fallback;
}

/* After a failure, the name is resolved again soon (at most once a second). */
static void want_resolve(struct upstream *up, uint64_t now)
{
    if (up->uri_host[0] == '\0' || up->resolving) {
        return;
    }
    uint64_t due = up->resolved_ms + 1000u > now ? up->resolved_ms + 1000u : now;
    if (due < up->resolve_due_ms) {
        up->resolve_due_ms = due;
    }
}

static void resolver_post(struct px_client *c, struct resolve_job *job);

/* Hands the name to the resolver thread when due; returns ms until then (-1: nothing to wait for). */
static long expire_resolve(struct upstream *up, uint64_t now)
{
    if (up->uri_host[0] == '\0' || up->resolving) {
        return -1;
    }
    if (now < up->resolve_due_ms) {
        return (long)(up->resolve_due_ms - now);
    }
    struct px_client *c = up->worker->client;
    struct resolve_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        up->resolve_due_ms = now + RESOLVE_RETRY_MS;
        return (long)RESOLVE_RETRY_MS;
    }
    job->upstream = (size_t)(up - c->ups);
    up->resolving = true;
    resolver_post(c, job);
    return -1;
}

static bool same_addr(const coap_address_t *a, const struct sockaddr_storage *b, socklen_t b_len)
{
    return a->size == b_len && memcmp(&a->addr, b, b_len) == 0;
}

/* Idle sessions were opened to the old address: they go, so the next exchange opens one to the new one.
 * Exchanges and observations on the wire finish where they are. */
static void drop_idle_sessions(struct upstream *up)
{
    for (unsigned k = 0; k < up->cfg->max_inflight; k++) {
        if (up->slots[k].x == NULL) {
            holder_detach(&up->slots[k].h, false);
        }
    }
    if (!up->probe.outstanding) {
        holder_detach(&up->probe.h, false);
    }
}

/* The resolver's answer, on the worker. A name that does not resolve makes the upstream down (its requests
 * get 502 naming it and why) and is tried again within RESOLVE_RETRY_MS; a new address is used from the
 * next exchange on, and pinged at once. */
static void resolve_apply(struct upstream *up, const struct resolve_job *job)
{
    uint64_t now = cg_now_ms();
    uint64_t interval = (uint64_t)up->cfg->resolve_interval_s * 1000u;
    char extra[INET6_ADDRSTRLEN + 16];

    up->resolving = false;
    up->resolved_ms = now;
    if (job->rc != 0) {
        up->gai_rc = job->rc;
        up->resolved = false;
        up->resolve_due_ms = now + (interval < RESOLVE_RETRY_MS ? interval : RESOLVE_RETRY_MS);
        up->fails = DOWN_AFTER;
        set_health(up, PX_HEALTH_DOWN, NULL, unresolved_detail(up));
        return;
    }
    up->resolve_due_ms = now + interval;
    if (up->resolved && same_addr(&up->addr, &job->addr, job->addr_len)) {
        return;
    }
    bool changed = up->resolved; /* not the first address: a change worth a line */
    coap_address_init(&up->addr);
    up->addr.size = job->addr_len;
    memcpy(&up->addr.addr, &job->addr, job->addr_len);
    up->resolved = true;
    drop_idle_sessions(up);
    if (changed && cg_log_enabled(CG_LOG_INFO)) {
        char host[INET6_ADDRSTRLEN] = "?";
        const struct sockaddr *sa = (const struct sockaddr *)&job->addr;
        const void *bin = sa->sa_family == AF_INET6
                              ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                              : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
        inet_ntop(sa->sa_family, bin, host, sizeof(host));
        snprintf(extra, sizeof(extra), "addr=%s ", host);
        log_event(CG_LOG_INFO, up, NULL, "resolved", extra,
                  "the upstream's host name resolves to a new address");
    }
    if (atomic_load(&up->health) == PX_HEALTH_DOWN) {
        up->fails = 0;
        set_health(up, PX_HEALTH_UNKNOWN, NULL, "the upstream's host name resolves again");
    }
    if (ping_interval_ms(up) > 0 && !up->probe.outstanding) {
        up->probe.due_ms = now;
    }
}

/* ---- forward-proxy targets ---- */

static void upstream_slots_init(struct upstream *up)
{
    for (unsigned k = 0; k < up->cfg->max_inflight; k++) {
        up->slots[k].h.kind = HOLD_SLOT;
        up->slots[k].h.up = up;
        up->slots[k].h.fd = -1;
    }
    up->probe.h.kind = HOLD_PROBE;
    up->probe.h.up = up;
    up->probe.h.fd = -1;
}

static bool target_busy(const struct target *t)
{
    return t->up.inflight > 0 || t->up.q_len > 0 || t->up.observations != NULL;
}

static void target_free(struct worker *w, struct target *t)
{
    for (unsigned k = 0; k < t->cfg.max_inflight; k++) {
        holder_detach(&t->up.slots[k].h, false);
    }
    holder_detach(&t->up.probe.h, false);
    pthread_mutex_destroy(&t->up.why_mu);
    free(t->up.slots);
    (void)w;
    free(t);
}

/* Lets go of the first idle target (the list is most recently used first, so that is the oldest idle one
 * from the tail): returns whether one went. */
static bool target_evict_idle(struct worker *w, uint64_t now, bool any_age)
{
    struct target **p = &w->targets, **victim = NULL;
    for (; *p != NULL; p = &(*p)->next) {
        if (!target_busy(*p) && (any_age || now - (*p)->last_use_ms >= TARGET_IDLE_MS)) {
            victim = p;
        }
    }
    if (victim == NULL) {
        return false;
    }
    struct target *t = *victim;
    *victim = t->next;
    w->targets_len--;
    target_free(w, t);
    return true;
}

static struct target *target_new(struct worker *w, const struct px_exchange *x)
{
    const struct cfg *cfg = w->client->cfg;
    struct target *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    t->cfg = (struct cfg_upstream){.name = "forward_proxy",
                                   .timeout_ms = cfg->forward_proxy.timeout_ms,
                                   .max_inflight = 1,
                                   .queue_limit = 64,
                                   .type = CFG_MSG_CON};
    t->up.cfg = &t->cfg;
    t->up.worker = w;
    if ((t->up.slots = calloc(1, sizeof(*t->up.slots))) == NULL) {
        free(t);
        return NULL;
    }
    upstream_slots_init(&t->up);
    memcpy(&t->addr, x->target, (size_t)x->target_len);
    t->addr_len = x->target_len;
    coap_address_init(&t->up.addr);
    t->up.addr.size = x->target_len;
    memcpy(&t->up.addr.addr, x->target, (size_t)x->target_len);
    t->up.uri_host[0] = '\0'; /* Uri-Host comes with the request: the target's name is the client's */
    t->up.resolved = true;    /* resolved by the pipeline (px_fp_resolve) */
    atomic_init(&t->up.health, PX_HEALTH_UNKNOWN);
    pthread_mutex_init(&t->up.why_mu, NULL);
    t->up.probe.due_ms = UINT64_MAX; /* no pings (ping_interval_s 0): a target is not ours to watch */
    return t;
}

/* The target's upstream, made when new (an idle one is let go when the worker has TARGETS_MAX). */
static struct upstream *target_get(struct worker *w, const struct px_exchange *x)
{
    uint64_t now = cg_now_ms();
    for (struct target *t = w->targets; t != NULL; t = t->next) {
        if (t->addr_len == x->target_len && memcmp(&t->addr, x->target, (size_t)x->target_len) == 0) {
            t->last_use_ms = now;
            return &t->up;
        }
    }
    if (w->targets_len >= TARGETS_MAX && !target_evict_idle(w, now, true)) {
        return NULL;
    }
    struct target *t = target_new(w, x);
    if (t == NULL) {
        return NULL;
    }
    t->last_use_ms = now;
    t->next = w->targets;
    w->targets = t;
    w->targets_len++;
    return &t->up;
}

/* Deadlines of the targets' exchanges, and idle targets let go. */
static long expire_targets(struct worker *w, uint64_t now)
{
    long next = -1;
    while (target_evict_idle(w, now, false)) {
    }
    for (struct target *t = w->targets; t != NULL; t = t->next) {
        long n = expire_upstream(&t->up, now);
        if (n >= 0 && (next < 0 || n < next)) {
            next = n;
        }
    }
    return w->targets != NULL && (next < 0 || next > (long)TARGET_IDLE_MS) ? (long)TARGET_IDLE_MS : next;
}

static long expire_all(struct worker *w)
{
    uint64_t now = cg_now_ms();
    long next = -1;

    long n = expire_targets(w, now);
    if (n >= 0) {
        next = n;
    }
    for (size_t i = 0; i < w->ups_len; i++) {
        n = expire_upstream(w->ups[i], now);
        if (n >= 0 && (next < 0 || n < next)) {
            next = n;
        }
        n = expire_observations(w->ups[i], now);
        if (n >= 0 && (next < 0 || n < next)) {
            next = n;
        }
        n = expire_probe(w->ups[i], now);
        if (n >= 0 && (next < 0 || n < next)) {
            next = n;
        }
        n = expire_resolve(w->ups[i], now);
        if (n >= 0 && (next < 0 || n < next)) {
            next = n;
        }
    }
    return next;
}

static void feed_all(struct worker *w)
{
    for (size_t i = 0; i < w->ups_len; i++) {
        feed(w->ups[i]);
    }
    for (struct target *t = w->targets; t != NULL; t = t->next) {
        feed(&t->up);
    }
}

/* ---- worker loop ---- */

static struct px_exchange *inbox_take(struct worker *w, struct ctl_msg **ctl, struct resolve_job **res,
                                      bool *stopping)
{
    pthread_mutex_lock(&w->mu);
    struct px_exchange *list = w->in_head;
    w->in_head = w->in_tail = NULL;
    *ctl = w->ctl_head;
    w->ctl_head = w->ctl_tail = NULL;
    *res = w->res_head;
    w->res_head = NULL;
    *stopping = w->stopping;
    pthread_mutex_unlock(&w->mu);
    return list;
}

static struct upstream *target_get(struct worker *w, const struct px_exchange *x);

/* An observation whose subscriber left before its worker saw it: it is still in this batch of the inbox
 * (unobserve always follows observe), so it ends here, before anything is sent. */
static bool inbox_cancel(struct worker *w, struct px_exchange **list, const struct ctl_msg *m)
{
    for (struct px_exchange **p = list; *p != NULL; p = &(*p)->priv.next) {
        struct px_exchange *x = *p;
        if (x->priv.obs_id == m->id && x->upstream == m->upstream && x->target == NULL) {
            *p = x->priv.next;
            atomic_fetch_sub(&w->client->ups[m->upstream].st_observations, 1);
            finish(x, PX_OK, "the last subscriber left");
            return true;
        }
    }
    return false;
}

static void resolve_apply(struct upstream *up, const struct resolve_job *job);

static void run_inbox(struct worker *w, struct px_exchange *list, struct ctl_msg *ctl,
                      struct resolve_job *res)
{
    while (res != NULL) {
        struct resolve_job *next = res->next;
        resolve_apply(&w->client->ups[res->upstream], res);
        free(res);
        res = next;
    }
    while (ctl != NULL) {
        struct ctl_msg *next = ctl->next;
        if (!inbox_cancel(w, &list, ctl)) {
            obs_cancel(&w->client->ups[ctl->upstream], ctl->id);
        }
        free(ctl);
        ctl = next;
    }
    while (list != NULL) {
        struct px_exchange *next = list->priv.next;
        struct upstream *up = list->target != NULL ? target_get(w, list) : &w->client->ups[list->upstream];
        if (up == NULL) {
            finish(list, PX_ERR_UNAVAILABLE, "the forward proxy has reached its number of targets");
        } else if (list->priv.obs_id != 0) {
            obs_start(up, list);
        } else {
            dispatch(up, list);
        }
        list = next;
    }
}

static void drain_eventfd(int efd)
{
    uint64_t v;
    ssize_t r = read(efd, &v, sizeof(v));
    (void)r;
}

static void fail_all(struct worker *w, struct px_exchange *list, struct ctl_msg *ctl, struct resolve_job *res)
{
    while (res != NULL) {
        struct resolve_job *next = res->next;
        free(res);
        res = next;
    }
    while (ctl != NULL) {
        struct ctl_msg *next = ctl->next;
        free(ctl);
        ctl = next;
    }
    while (list != NULL) {
        struct px_exchange *next = list->priv.next;
        if (list->priv.obs_id != 0 && list->target == NULL) {
            atomic_fetch_sub(&w->client->ups[list->upstream].st_observations, 1);
        }
        finish(list, PX_ERR_UNAVAILABLE, "the gateway is shutting down");
        list = next;
    }
    for (size_t i = 0; i < w->ups_len; i++) {
        struct upstream *up = w->ups[i];
        struct px_exchange *x;
        while ((x = queue_pop(up)) != NULL) {
            if (x->priv.owner != NULL) { /* an observation's: ended with the others below */
                ((struct observation *)x->priv.owner)->queued = false;
                continue;
            }
            finish(x, PX_ERR_UNAVAILABLE, "the gateway is shutting down");
        }
        for (unsigned k = 0; k < up->cfg->max_inflight; k++) {
            struct slot *s = &up->slots[k];
            if (s->x != NULL) {
                slot_reset_session(s, false);
                slot_complete(s, PX_ERR_UNAVAILABLE, "the gateway is shutting down");
            }
        }
        while (up->observations != NULL) {
            obs_end(up->observations, PX_ERR_UNAVAILABLE, "the gateway is shutting down");
        }
        /* Idle sessions too, before coap_free_context: a DTLS session is closed (close_notify) with no holder
         * left for its close event to reach. */
        for (unsigned k = 0; k < up->cfg->max_inflight; k++) {
            slot_reset_session(&up->slots[k], false);
        }
        holder_detach(&up->probe.h, false);
    }
    for (struct target *t = w->targets; t != NULL; t = t->next) {
        struct px_exchange *x;
        while ((x = queue_pop(&t->up)) != NULL) {
            finish(x, PX_ERR_UNAVAILABLE, "the gateway is shutting down");
        }
        if (t->up.slots[0].x != NULL) {
            slot_reset_session(&t->up.slots[0], false);
            slot_complete(&t->up.slots[0], PX_ERR_UNAVAILABLE, "the gateway is shutting down");
        }
    }
    bury_sessions(w);
    while (w->targets != NULL) {
        struct target *t = w->targets;
        w->targets = t->next;
        target_free(w, t);
    }
    w->targets_len = 0;
}

static coap_tick_t ticks_now(void)
{
    coap_tick_t t;
    coap_ticks(&t);
    return t;
}

/* coap_io_prepare_epoll for the worker's contexts: ms until libcoap needs to run again, 0 for never. */
static unsigned prepare_contexts(struct worker *w)
{
    coap_tick_t now = ticks_now();
    unsigned wait = coap_io_prepare_epoll(w->ctx, now);
    unsigned pki_wait = w->ctx_pki != NULL ? coap_io_prepare_epoll(w->ctx_pki, now) : 0;

    return pki_wait != 0 && (wait == 0 || pki_wait < wait) ? pki_wait : wait;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event ev[MAX_EVENTS];

    for (;;) {
        bool stopping;
        struct ctl_msg *ctl;
        struct resolve_job *res;
        struct px_exchange *list = inbox_take(w, &ctl, &res, &stopping);
        if (stopping) {
            fail_all(w, list, ctl, res);
            break;
        }
        run_inbox(w, list, ctl, res);
        long next_deadline = expire_all(w);
        feed_all(w);
        unsigned coap_wait = prepare_contexts(w);
        long timeout = coap_wait == 0 ? -1 : (long)coap_wait;
        if (next_deadline >= 0 && (timeout < 0 || next_deadline < timeout)) {
            timeout = next_deadline;
        }
        int n = epoll_wait(w->epfd, ev, MAX_EVENTS, (int)timeout);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.fd == w->efd) {
                drain_eventfd(w->efd);
            } else if (ev[i].data.fd != w->coap_fd && ev[i].data.fd != w->coap_fd_pki) {
                filter_fd(w, ev[i].data.fd);
            }
        }
        coap_io_process(w->ctx, COAP_IO_NO_WAIT);
        if (w->ctx_pki != NULL) {
            coap_io_process(w->ctx_pki, COAP_IO_NO_WAIT);
        }
        note_handshakes(w);
        bury_sessions(w);
    }
    return NULL;
}

/* ---- set-up ---- */

/* getaddrinfo for the upstream's host and port: the first address. Blocks: the resolver thread, start-up and
 * --check-config only. */
static int resolve_name(const struct cfg_upstream *u, struct sockaddr_storage *out, socklen_t *out_len)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];

    snprintf(port, sizeof(port), "%u", u->peer.port);
    int rc = getaddrinfo(u->peer.host, port, &hints, &res);
    if (rc != 0) {
        return rc;
    }
    if (res == NULL || res->ai_addrlen > sizeof(*out)) {
        freeaddrinfo(res);
        return EAI_FAIL;
    }
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *out_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void wake(struct worker *w);

static void *resolver_main(void *arg)
{
    struct px_client *c = arg;
    struct resolver *r = &c->resolver;

    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->stopping && r->jobs == NULL) {
            pthread_cond_wait(&r->cv, &r->mu);
        }
        if (r->stopping) {
            break;
        }
        struct resolve_job *job = r->jobs;
        r->jobs = job->next;
        pthread_mutex_unlock(&r->mu);
        job->rc = resolve_name(&c->cfg->upstreams[job->upstream], &job->addr, &job->addr_len);
        struct worker *w = c->ups[job->upstream].worker;
        pthread_mutex_lock(&w->mu);
        bool stopping = w->stopping;
        if (!stopping) {
            job->next = w->res_head;
            w->res_head = job;
        }
        pthread_mutex_unlock(&w->mu);
        if (stopping) {
            free(job);
        } else {
            wake(w);
        }
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Worker thread: queues a name for the resolver (freed at once when it is stopping). */
static void resolver_post(struct px_client *c, struct resolve_job *job)
{
    struct resolver *r = &c->resolver;

    pthread_mutex_lock(&r->mu);
    if (r->stopping || !r->started) {
        pthread_mutex_unlock(&r->mu);
        free(job);
        return;
    }
    job->next = r->jobs;
    r->jobs = job;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void resolver_stop(struct resolver *r)
{
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_signal(&r->cv);
    bool started = r->started;
    pthread_mutex_unlock(&r->mu);
    if (started) {
        pthread_join(r->thread, NULL);
        r->started = false;
    }
    while (r->jobs != NULL) {
        struct resolve_job *job = r->jobs;
        r->jobs = job->next;
        free(job);
    }
}

/* At start-up (main thread): the address, or the upstream down with the reason and the name tried again
 * by the resolver. Never an error: a device whose name does not resolve yet must not stop the gateway. */
static void upstream_resolve_first(struct upstream *up)
{
    struct resolve_job job = {.upstream = 0};
    uint64_t now = cg_now_ms();

    job.rc = resolve_name(up->cfg, &job.addr, &job.addr_len);
    up->resolved_ms = now;
    up->resolve_due_ms = now; /* resolve_apply sets the next time */
    resolve_apply(up, &job);
    if (job.rc != 0) {
        log_event(CG_LOG_WARN, up, NULL, "resolve_failed", "", unresolved_detail(up));
    }
}

int px_client_check_names(const struct cfg *cfg, const char *file, FILE *out)
{
    int failed = 0;

    for (size_t i = 0; i < cfg->upstreams_len; i++) {
        const struct cfg_upstream *u = &cfg->upstreams[i];
        struct sockaddr_storage ss;
        socklen_t len;
        int rc = resolve_name(u, &ss, &len);
        if (rc != 0) {
            fprintf(out,
                    "%s: upstreams.%s.uri: warning: %s does not resolve now (%s); the upstream stays down "
                    "until it does\n",
                    file, u->name, u->peer.host, gai_strerror(rc));
            failed++;
        }
    }
    return failed;
}

/* Uri-Host for a host name (lower case: RFC 3986 §6.2.2.1, as RFC 7252 §6.4 step 5 sends it); "" for an IP
 * literal, whose Uri-Host would be the destination address, the default. */
static void set_uri_host(struct upstream *up)
{
    const char *host = up->cfg->peer.host;
    struct in6_addr a6;
    struct in_addr a4;
    size_t i = 0;

    if (inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1) {
        up->uri_host[0] = '\0';
        return;
    }
    for (; host[i] != '\0' && i + 1 < sizeof(up->uri_host); i++) {
        up->uri_host[i] = (char)tolower((unsigned char)host[i]);
    }
    up->uri_host[i] = '\0';
}

static coap_context_t *context_new(void)
{
    coap_context_t *ctx = coap_new_context(NULL);

    if (ctx == NULL) {
        return NULL;
    }
    /* libcoap drives Block1/Block2; each Block2 block is handed to on_response so the body limit holds. */
    coap_context_set_block_mode(ctx, COAP_BLOCK_USE_LIBCOAP);
    coap_register_response_handler(ctx, on_response);
    coap_register_nack_handler(ctx, on_nack);
    coap_register_pong_handler(ctx, on_pong);
    coap_register_event_handler(ctx, on_event);
    return ctx;
}

/* libcoap 4.3.1 keeps DTLS credentials per context, not per session: once a context has had a PKI setup,
 * every DTLS session it opens also offers certificate cipher suites, and a PSK-only GnuTLS server then
 * picks one it has no certificate for and stalls ("Insufficient credentials provided"). So the PKI sessions
 * of a worker live in a second context, made when the first one is needed (worker thread). */
static coap_context_t *pki_context(struct worker *w)
{
    if (w->ctx_pki != NULL) {
        return w->ctx_pki;
    }
    coap_context_t *ctx = context_new();
    int fd = ctx != NULL ? coap_context_get_coap_fd(ctx) : -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (fd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        if (ctx != NULL) {
            coap_free_context(ctx);
        }
        return NULL;
    }
    w->ctx_pki = ctx;
    w->coap_fd_pki = fd;
    return ctx;
}

static int worker_init(struct worker *w, struct px_client *c, char *err, size_t err_len)
{
    w->client = c;
    w->efd = -1;
    w->coap_fd = -1;
    w->epfd = -1;
    pthread_mutex_init(&w->mu, NULL);
    w->coap_fd_pki = -1;
    w->ctx = context_new();
    if (w->ctx == NULL) {
        snprintf(err, err_len, "client: cannot create a CoAP context");
        return -1;
    }
    int coap_fd = w->coap_fd = coap_context_get_coap_fd(w->ctx);
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (coap_fd < 0 || w->efd < 0 || w->epfd < 0) {
        snprintf(err, err_len, "client: cannot set up the worker's event loop: %s",
                 coap_fd < 0 ? "libcoap was built without epoll" : strerror(errno));
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = coap_fd};
    epoll_ctl(w->epfd, EPOLL_CTL_ADD, coap_fd, &ev);
    ev.data.fd = w->efd;
    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->efd, &ev);
    return 0;
}

static void worker_fini(struct worker *w)
{
    if (w->ctx != NULL) {
        coap_free_context(w->ctx);
    }
    if (w->ctx_pki != NULL) {
        coap_free_context(w->ctx_pki);
    }
    if (w->efd >= 0) {
        close(w->efd);
    }
    if (w->epfd >= 0) {
        close(w->epfd);
    }
    pthread_mutex_destroy(&w->mu);
    free(w->ups);
    free(w->graveyard);
}

static size_t worker_count(const struct cfg *cfg)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t n = cpus > 0 ? (size_t)cpus : 1;
    if (n > MAX_WORKERS) {
        n = MAX_WORKERS;
    }
    if (n > cfg->upstreams_len) {
        n = cfg->upstreams_len;
    }
    return n == 0 ? 1 : n;
}

static int upstreams_init(struct px_client *c, char *err, size_t err_len)
{
    const struct cfg *cfg = c->cfg;

    c->ups = calloc(cfg->upstreams_len ? cfg->upstreams_len : 1, sizeof(*c->ups));
    if (c->ups == NULL) {
        snprintf(err, err_len, "client: out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->upstreams_len; i++) {
        struct upstream *up = &c->ups[i];
        up->cfg = &cfg->upstreams[i];
        up->worker = &c->workers[i % c->workers_len];
        up->slots = calloc(up->cfg->max_inflight, sizeof(*up->slots));
        pthread_mutex_init(&up->why_mu, NULL);
        atomic_init(&up->health, PX_HEALTH_UNKNOWN);
        if (up->slots == NULL) {
            snprintf(err, err_len, "client: out of memory");
            return -1;
        }
        upstream_slots_init(up);
        up->probe.due_ms = up->cfg->ping_interval_s > 0 ? 0 : UINT64_MAX; /* a ping at start-up */
        set_uri_host(up);
        upstream_resolve_first(up);
        struct worker *w = up->worker;
        struct upstream **grown = realloc(w->ups, (w->ups_len + 1) * sizeof(*w->ups));
        if (grown == NULL) {
            snprintf(err, err_len, "client: out of memory");
            return -1;
        }
        w->ups = grown;
        w->ups[w->ups_len++] = up;
    }
    return 0;
}

struct px_client *px_client_create(const struct cfg *cfg, char *err, size_t err_len)
{
    struct px_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, err_len, "client: out of memory");
        return NULL;
    }
    c->cfg = cfg;
    pthread_mutex_init(&c->resolver.mu, NULL);
    pthread_cond_init(&c->resolver.cv, NULL);
    c->workers_len = worker_count(cfg);
    for (size_t i = 0; i < c->workers_len; i++) {
        if (worker_init(&c->workers[i], c, err, err_len) != 0) {
            c->workers_len = i + 1;
            goto out_destroy;
        }
    }
    if (upstreams_init(c, err, err_len) != 0) {
        goto out_destroy;
    }
    int rrc = pthread_create(&c->resolver.thread, NULL, resolver_main, c);
    if (rrc != 0) {
        snprintf(err, err_len, "client: cannot start the resolver thread: %s", strerror(rrc));
        goto out_destroy;
    }
    c->resolver.started = true;
    for (size_t i = 0; i < c->workers_len; i++) {
        int rc = pthread_create(&c->workers[i].thread, NULL, worker_main, &c->workers[i]);
        if (rc != 0) {
            snprintf(err, err_len, "client: cannot start a worker thread: %s", strerror(rc));
            goto out_destroy;
        }
        c->workers[i].started = true;
    }
    return c;

out_destroy:
    px_client_destroy(c);
    return NULL;
}

static void wake(struct worker *w)
{
    uint64_t one = 1;
    ssize_t r = write(w->efd, &one, sizeof(one));
    (void)r;
}

static bool enqueue(struct px_client *c, struct px_exchange *x);

void px_client_submit(struct px_client *c, struct px_exchange *x)
{
    x->priv.obs_id = 0;
    x->priv.block1_szx = 0;
    if (!enqueue(c, x)) {
        finish(x, PX_ERR_UNAVAILABLE, "the gateway is shutting down");
    }
}

uint64_t px_client_observe(struct px_client *c, struct px_exchange *x)
{
    struct upstream *up = &c->ups[x->upstream];

    /* The place under max_observations_per_upstream is taken here, so the 503 is at once; the worker gives
     * it back when the observation ends or its last subscriber leaves. */
    if (atomic_fetch_add(&up->st_observations, 1) >= c->cfg->limits.max_observations_per_upstream) {
        atomic_fetch_sub(&up->st_observations, 1);
        x->status = PX_ERR_UNAVAILABLE;
        x->detail = "the upstream has reached limits.max_observations_per_upstream";
        return 0;
    }
    x->priv.obs_id = atomic_fetch_add(&c->next_obs_id, 1) + 1;
    uint64_t id = x->priv.obs_id;
    /* No callback runs here when the workers are stopping (the caller may hold its own lock). */
    if (!enqueue(c, x)) {
        atomic_fetch_sub(&up->st_observations, 1);
        x->status = PX_ERR_UNAVAILABLE;
        x->detail = "the gateway is shutting down";
        return 0;
    }
    return id; /* x may be done (and freed) by the time this returns */
}

void px_client_unobserve(struct px_client *c, size_t upstream, uint64_t id)
{
    struct worker *w = c->ups[upstream].worker;
    struct ctl_msg *m = malloc(sizeof(*m));

    if (m == NULL) {
        return; /* the observation lives on until the device ends it or the gateway stops */
    }
    m->next = NULL;
    m->upstream = upstream;
    m->id = id;
    pthread_mutex_lock(&w->mu);
    if (w->stopping) {
        pthread_mutex_unlock(&w->mu);
        free(m);
        return;
    }
    bool was_empty = w->in_head == NULL && w->ctl_head == NULL;
    if (w->ctl_tail != NULL) {
        w->ctl_tail->next = m;
    } else {
        w->ctl_head = m;
    }
    w->ctl_tail = m;
    pthread_mutex_unlock(&w->mu);
    if (was_empty) {
        wake(w);
    }
}

static void transport_submit(void *impl, struct px_exchange *x)
{
    px_client_submit(impl, x);
}

static uint64_t transport_observe(void *impl, struct px_exchange *x)
{
    return px_client_observe(impl, x);
}

static void transport_unobserve(void *impl, size_t upstream, uint64_t id)
{
    px_client_unobserve(impl, upstream, id);
}

struct px_transport px_client_transport(struct px_client *c)
{
    return (struct px_transport){.impl = c,
                                 .submit = transport_submit,
                                 .observe = transport_observe,
                                 .unobserve = transport_unobserve};
}

/* Queues x for its worker; false (and nothing queued) when the workers are stopping. */
/* The worker of a forward-proxy target: by its address, so one target always meets the same worker. */
static struct worker *target_worker(struct px_client *c, const struct px_exchange *x)
{
    uint64_t h = 1469598103934665603ull;
    const uint8_t *p = (const uint8_t *)x->target;
    for (socklen_t i = 0; i < x->target_len; i++) {
        h = (h ^ p[i]) * 1099511628211ull;
    }
    return &c->workers[h % c->workers_len];
}

static bool enqueue(struct px_client *c, struct px_exchange *x)
{
    struct worker *w = x->target != NULL ? target_worker(c, x) : c->ups[x->upstream].worker;
    unsigned timeout =
        x->target != NULL ? c->cfg->forward_proxy.timeout_ms : c->ups[x->upstream].cfg->timeout_ms;
    bool was_empty;

    x->priv.next = NULL;
    x->priv.deadline_ms = cg_now_ms() + timeout;
    x->priv.mid = -1;
    x->priv.owner = NULL;
    x->priv.heard = false;
    x->priv.sent_ms = 0;
    x->priv.retransmits = 0;
    x->priv.block1 = x->priv.block2_first = x->priv.block2_last = -1;
    x->resp_payload = NULL;
    x->resp_len = 0;
    x->resp_code = 0;
    x->detail = NULL;
    co_optset_clear(&x->resp);

    pthread_mutex_lock(&w->mu);
    if (w->stopping) {
        pthread_mutex_unlock(&w->mu);
        return false;
    }
    was_empty = w->in_head == NULL && w->ctl_head == NULL;
    if (w->in_tail != NULL) {
        w->in_tail->priv.next = x;
    } else {
        w->in_head = x;
    }
    w->in_tail = x;
    pthread_mutex_unlock(&w->mu);
    if (was_empty) {
        wake(w);
    }
    return true;
}

void px_client_stop(struct px_client *c)
{
    if (c == NULL) {
        return;
    }
    resolver_stop(&c->resolver); /* first: it hands answers to the workers */
    for (size_t i = 0; i < c->workers_len; i++) {
        struct worker *w = &c->workers[i];
        if (!w->started) {
            continue;
        }
        pthread_mutex_lock(&w->mu);
        w->stopping = true;
        pthread_mutex_unlock(&w->mu);
        wake(w);
        pthread_join(w->thread, NULL);
        w->started = false;
    }
}

void px_client_destroy(struct px_client *c)
{
    if (c == NULL) {
        return;
    }
    px_client_stop(c);
    for (size_t i = 0; i < c->workers_len; i++) {
        worker_fini(&c->workers[i]);
    }
    if (c->ups != NULL) {
        for (size_t i = 0; i < c->cfg->upstreams_len; i++) {
            free(c->ups[i].slots);
            for (size_t k = 0; k < GAI_DETAILS; k++) {
                free(c->ups[i].gai_details[k]);
            }
            if (c->ups[i].cfg != NULL) {
                pthread_mutex_destroy(&c->ups[i].why_mu);
            }
        }
        free(c->ups);
    }
    pthread_cond_destroy(&c->resolver.cv);
    pthread_mutex_destroy(&c->resolver.mu);
    free(c);
}
