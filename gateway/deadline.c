/* gateway/deadline: header-section and body deadlines, which libmicrohttpd 0.9.75 does not have (its
 * MHD_OPTION_CONNECTION_TIMEOUT and MHD_CONNECTION_OPTION_TIMEOUT are idle timeouts that every byte resets).
 * Every connection is in one list under one mutex; a watchdog thread looks at it every 250 ms.
 *
 * Ending a connection: MHD offers no call to close a connection from outside its handlers, so the watchdog
 * shutdown(2)s the socket; MHD's epoll wakes, reads the end and closes it (the "closed" notification comes
 * before MHD's close(2), so an fd in the list is never another connection's). Answering 408: MHD 0.9.75
 * refuses MHD_queue_response while a body is being read (only in its HEADERS_PROCESSED and
 * FULL_REQ_RECEIVED states), and is not in our code at all while it waits for header bytes. In both phases
 * MHD has written nothing of an answer yet, so the short 408 is written on the socket before the shutdown,
 * as vet.c does for MHD's own refusals. Over TLS plain bytes would break the stream: the connection is only
 * closed. Before a request line was read (a new or idle keep-alive connection) it is only closed too: a
 * client that sends its next request at that moment would take the 408 for that request's answer.
 *
 * Connection limit: libmicrohttpd 0.9.75 stops polling its listening socket once it has its connection
 * limit, so a client beyond it waits unanswered in the kernel's backlog until a connection ends. The gateway
 * gives MHD a limit with some headroom above limits.max_connections and counts the connections here: one
 * opened while max_connections are admitted is marked refused, answered 503 with Connection: close by
 * http.c, and given 1 s for its header section, so refused connections leave the headroom at once.
 *
 * Parked requests (an SSE stream between events or waiting for its registration, a long-poll): MHD 0.9.75
 * removes a suspended connection from its epoll set, so it never reads the FIN of a client that closes a
 * parked request; the subscription (and its slot under limits.max_subscribers_per_resource) would stay until
 * the next keep-alive write fails, the registration is answered or the long-poll times out. The watchdog
 * peeks at each parked connection's socket (MSG_PEEK: nothing is taken from MHD); end of stream or a hard
 * error marks it gone and resumes it (MHD_resume_connection is safe from any thread). Parking (suspend +
 * mark) and every resume hold dl->mu, so the watchdog resumes only a connection that really is suspended: MHD
 * 0.9.75 takes a resume that comes before the suspend as cancelling that suspend, and a stream reader that
 * returned 0 with no suspend in effect would never be called again. Exchange waits are plain suspends
 * (bounded by timeout_ms), never watched. */
#include "gateway/deadline.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"

#define TICK_MS 250
#define REFUSED_HEADER_MS 1000 /* a refused connection's header deadline: it must not hold MHD's headroom */

enum conn_state { LIVE, ENDED, ANSWERED_408 };

struct gw_dl_conn {
    struct gw_dl_conn *prev, *next;
    int fd;
    enum gw_dl_phase phase;
    enum conn_state state;
    bool request_seen; /* the request line of the current request was read */
    bool parked;       /* suspended by gw_dl_park, not resumed yet */
    bool gone;         /* the client closed the connection while it was parked; the watchdog resumed it */
    bool refused;      /* opened beyond max_connections: not admitted, its request gets 503 */
    uint64_t deadline_ms;
    void *conn; /* MHD's connection, for ops */
};

struct gw_dl {
    pthread_mutex_t mu;
    pthread_cond_t stop_cv;
    pthread_t thread;
    bool stop;
    bool tls;
    unsigned header_s, body_s;
    unsigned max_admitted, admitted; /* connections admitted (not refused) at once, and now */
    struct gw_dl_ops ops;
    struct gw_dl_conn head; /* sentinel of the circular list */
};

static void phase_deadline(struct gw_dl *dl, struct gw_dl_conn *c, enum gw_dl_phase phase)
{
    c->phase = phase;
    if (phase == GW_DL_HEADER) {
        c->deadline_ms = cg_now_ms() + (uint64_t)dl->header_s * 1000u;
    } else if (phase == GW_DL_BODY) {
        c->deadline_ms = cg_now_ms() + (uint64_t)dl->body_s * 1000u;
    }
}

/* The whole 408 answer, framed as MHD frames its own. */
static int message_408(char *msg, size_t cap, enum gw_dl_phase phase)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    char body[256];
    int body_len = snprintf(body, sizeof(body),
                            "{\"type\":\"urn:coapgw:problem:request-timeout\",\"title\":\"Request Timeout\","
                            "\"status\":408,\"detail\":\"the %s was not complete within limits.%s\"}",
                            phase == GW_DL_BODY ? "request body" : "request header section",
                            phase == GW_DL_BODY ? "body_timeout_s" : "header_timeout_s");

    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));
    return snprintf(msg, cap,
                    "HTTP/1.1 408 Request Timeout\r\nDate: %s\r\nConnection: close\r\n"
                    "Content-Type: application/problem+json\r\nContent-Length: %d\r\n\r\n%s",
                    date, body_len, body);
}

/* Under dl->mu. The send cannot block (MSG_DONTWAIT) and the answer fits an empty socket buffer. */
static void end_conn(struct gw_dl *dl, struct gw_dl_conn *c)
{
    char msg[512];

    c->state = ENDED;
    if (!dl->tls && (c->phase == GW_DL_BODY || c->request_seen)) {
        int n = message_408(msg, sizeof(msg), c->phase);
        if (n > 0 && (size_t)n < sizeof(msg) &&
            send(c->fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)n) {
            c->state = ANSWERED_408;
        }
    }
    CG_LOG(CG_LOG_DEBUG, "http", "event=deadline phase=%s answered=%s",
           c->phase == GW_DL_BODY ? "body" : "header", c->state == ANSWERED_408 ? "408" : "none");
    shutdown(c->fd, SHUT_RDWR);
}

static bool past_deadline(const struct gw_dl_conn *c, uint64_t now)
{
    return c->state == LIVE && c->phase != GW_DL_NONE && now >= c->deadline_ms;
}

/* A parked connection's client has closed it (or reset it): a peek sees the end, or an error that is not
 * "nothing to read yet". Bytes waiting (a pipelined request) hide a FIN behind them: not gone yet. */
static bool client_gone(int fd)
{
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);

    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Under dl->mu. */
static void check_parked(struct gw_dl *dl, struct gw_dl_conn *c)
{
    if (!c->parked || !client_gone(c->fd)) {
        return;
    }
    c->parked = false;
    c->gone = true;
    CG_LOG(CG_LOG_DEBUG, "http", "event=parked_client_gone");
    dl->ops.resume(c->conn);
}

static void sweep(struct gw_dl *dl)
{
    uint64_t now = cg_now_ms();

    for (struct gw_dl_conn *c = dl->head.next; c != &dl->head; c = c->next) {
        if (past_deadline(c, now)) {
            end_conn(dl, c);
        }
        check_parked(dl, c);
    }
}

static void *watchdog(void *arg)
{
    struct gw_dl *dl = arg;

    pthread_mutex_lock(&dl->mu);
    while (!dl->stop) {
        struct timespec until = cg_timespec_after_ms(CLOCK_MONOTONIC, TICK_MS);
        pthread_cond_timedwait(&dl->stop_cv, &dl->mu, &until);
        sweep(dl);
    }
    pthread_mutex_unlock(&dl->mu);
    return NULL;
}

static bool init_sync(struct gw_dl *dl)
{
    pthread_condattr_t ca;

    if (pthread_condattr_init(&ca) != 0) {
        return false;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    bool ok = pthread_cond_init(&dl->stop_cv, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (ok && pthread_mutex_init(&dl->mu, NULL) != 0) {
        pthread_cond_destroy(&dl->stop_cv);
        ok = false;
    }
    return ok;
}

struct gw_dl *gw_dl_start(unsigned header_s, unsigned body_s, bool tls, unsigned max_connections,
                          struct gw_dl_ops ops)
{
    struct gw_dl *dl = calloc(1, sizeof(*dl));

    if (dl == NULL) {
        return NULL;
    }
    dl->header_s = header_s;
    dl->body_s = body_s;
    dl->tls = tls;
    dl->max_admitted = max_connections;
    dl->ops = ops;
    dl->head.prev = dl->head.next = &dl->head;
    if (!init_sync(dl)) {
        free(dl);
        return NULL;
    }
    if (pthread_create(&dl->thread, NULL, watchdog, dl) != 0) {
        pthread_cond_destroy(&dl->stop_cv);
        pthread_mutex_destroy(&dl->mu);
        free(dl);
        return NULL;
    }
    return dl;
}

void gw_dl_stop(struct gw_dl *dl)
{
    if (dl == NULL) {
        return;
    }
    pthread_mutex_lock(&dl->mu);
    dl->stop = true;
    pthread_cond_signal(&dl->stop_cv);
    pthread_mutex_unlock(&dl->mu);
    pthread_join(dl->thread, NULL);
    while (dl->head.next != &dl->head) {
        struct gw_dl_conn *c = dl->head.next;
        dl->head.next = c->next;
        free(c);
    }
    pthread_cond_destroy(&dl->stop_cv);
    pthread_mutex_destroy(&dl->mu);
    free(dl);
}

struct gw_dl_conn *gw_dl_open(struct gw_dl *dl, int fd, void *conn)
{
    struct gw_dl_conn *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    c->fd = fd;
    c->conn = conn;
    c->state = LIVE;
    pthread_mutex_lock(&dl->mu);
    phase_deadline(dl, c, GW_DL_HEADER);
    c->refused = dl->admitted >= dl->max_admitted;
    if (c->refused) {
        c->deadline_ms = cg_now_ms() + REFUSED_HEADER_MS;
    } else {
        dl->admitted++;
    }
    c->next = &dl->head;
    c->prev = dl->head.prev;
    dl->head.prev->next = c;
    dl->head.prev = c;
    pthread_mutex_unlock(&dl->mu);
    return c;
}

void gw_dl_close(struct gw_dl *dl, struct gw_dl_conn *c)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&dl->mu);
    c->prev->next = c->next;
    c->next->prev = c->prev;
    if (!c->refused) {
        dl->admitted--;
    }
    pthread_mutex_unlock(&dl->mu);
    free(c);
}

bool gw_dl_refused(struct gw_dl *dl, const struct gw_dl_conn *c)
{
    (void)dl; /* set once by gw_dl_open, before any other thread sees c */
    return c != NULL && c->refused;
}

void gw_dl_request_line(struct gw_dl *dl, struct gw_dl_conn *c)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&dl->mu);
    c->request_seen = true;
    pthread_mutex_unlock(&dl->mu);
}

bool gw_dl_enter(struct gw_dl *dl, struct gw_dl_conn *c, enum gw_dl_phase phase)
{
    if (c == NULL) {
        return true;
    }
    pthread_mutex_lock(&dl->mu);
    bool live = c->state == LIVE;
    if (live) {
        phase_deadline(dl, c, phase);
        if (phase == GW_DL_HEADER) {
            c->request_seen = false; /* the next request on a keep-alive connection */
        }
    }
    pthread_mutex_unlock(&dl->mu);
    return live;
}

bool gw_dl_check(struct gw_dl *dl, struct gw_dl_conn *c)
{
    if (c == NULL) {
        return true;
    }
    pthread_mutex_lock(&dl->mu);
    if (past_deadline(c, cg_now_ms())) {
        end_conn(dl, c);
    }
    bool live = c->state == LIVE;
    pthread_mutex_unlock(&dl->mu);
    return live;
}

int gw_dl_status(struct gw_dl *dl, const struct gw_dl_conn *c)
{
    if (c == NULL) {
        return 0;
    }
    pthread_mutex_lock(&dl->mu);
    int status = c->state == ANSWERED_408 ? 408 : 0;
    pthread_mutex_unlock(&dl->mu);
    return status;
}

void gw_dl_park(struct gw_dl *dl, struct gw_dl_conn *c, void *conn)
{
    if (c == NULL) {
        dl->ops.suspend(conn);
        return;
    }
    pthread_mutex_lock(&dl->mu);
    dl->ops.suspend(conn);
    c->parked = true;
    /* A client that sent its request and closed at once is gone already: seen now, not a tick later, so
     * a registration still queued for it is dropped before it reaches the wire (bench/subcycle.sh). */
    check_parked(dl, c);
    pthread_mutex_unlock(&dl->mu);
}

void gw_dl_resume(struct gw_dl *dl, struct gw_dl_conn *c, void *conn)
{
    if (c == NULL) {
        dl->ops.resume(conn);
        return;
    }
    pthread_mutex_lock(&dl->mu);
    c->parked = false;
    if (!c->gone) {
        dl->ops.resume(conn);
    }
    pthread_mutex_unlock(&dl->mu);
}

bool gw_dl_gone(struct gw_dl *dl, struct gw_dl_conn *c)
{
    if (c == NULL) {
        return false;
    }
    pthread_mutex_lock(&dl->mu);
    bool gone = c->gone;
    pthread_mutex_unlock(&dl->mu);
    return gone;
}

void gw_dl_set_timeouts(struct gw_dl *dl, unsigned header_s, unsigned body_s)
{
    pthread_mutex_lock(&dl->mu);
    dl->header_s = header_s;
    dl->body_s = body_s;
    pthread_mutex_unlock(&dl->mu);
}
