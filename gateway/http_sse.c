/* gateway/http_sse: CoAP Observe (RFC 7641) as HTTP live data. Server-Sent Events stream every notification;
 * long-poll (?observe=next) answers the next one. A connection with nothing to send is suspended and woken
 * by the registry (a notification, the end, or its keep-alive/deadline time); no thread waits on it. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "gateway/http_priv.h"

#define SSE_BLOCK 4096
#define LONGPOLL_ITEM "observe=next"

static const char keepalive_comment[] = ": keep-alive\n\n";

static struct request *from_sub(struct px_subscriber *s)
{
    return (struct request *)((char *)s - offsetof(struct request, sub));
}

/* Registry lock held; any thread. */
static void on_sub_wake(struct px_subscriber *s)
{
    MHD_resume_connection(from_sub(s)->conn);
}

/* Registry lock held; the request's MHD thread, inside its handler or content reader. */
static void park(struct px_subscriber *s, void *arg)
{
    struct request *r = arg;
    (void)s;
    MHD_suspend_connection(r->conn);
}

/* ---- detection ---- */

static bool accepts_event_stream(const char *accept)
{
    return accept != NULL && strcasestr(accept, "text/event-stream") != NULL;
}

/* Removes every "observe=next" item from the raw query (it is ours, not the device's). */
static bool take_longpoll_item(struct request *r)
{
    char *q = (char *)r->query;
    bool found = false;
    char *out = q;

    if (q == NULL) {
        return false;
    }
    for (char *item = q; item != NULL;) {
        char *amp = strchr(item, '&');
        size_t n = amp != NULL ? (size_t)(amp - item) : strlen(item);
        if (n == strlen(LONGPOLL_ITEM) && memcmp(item, LONGPOLL_ITEM, n) == 0) {
            found = true;
        } else {
            if (out != q) {
                *out++ = '&';
            }
            memmove(out, item, n);
            out += n;
        }
        item = amp != NULL ? amp + 1 : NULL;
    }
    *out = '\0';
    if (found && *q == '\0') {
        r->query = NULL;
    }
    return found;
}

enum live_mode gw_live_detect(struct request *r)
{
    r->live = LIVE_NONE;
    if (strcmp(r->method, "GET") != 0) {
        return LIVE_NONE;
    }
    if (take_longpoll_item(r)) {
        r->live = LIVE_LONGPOLL;
    } else if (accepts_event_stream(gw_header(r, MHD_HTTP_HEADER_ACCEPT))) {
        r->live = LIVE_SSE;
    }
    return r->live;
}

/* ---- Server-Sent Events ---- */

static ssize_t copy_pending(struct request *r, char *buf, size_t max)
{
    size_t n = r->sse_len - r->sse_off;
    if (n > max) {
        n = max;
    }
    memcpy(buf, r->sse_buf + r->sse_off, n);
    r->sse_off += n;
    return (ssize_t)n;
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct request *r = cls;
    uint64_t keepalive_ms = (uint64_t)r->http->cfg->limits.sse_keepalive_s * 1000u;
    bool ended = false;
    (void)pos;

    if (r->sse_off < r->sse_len) {
        return copy_pending(r, buf, max);
    }
    free(r->sse_buf);
    r->sse_buf = NULL;
    r->sse_len = r->sse_off = 0;

    uint64_t now = cg_now_ms();
    if (now >= r->last_write_ms + keepalive_ms && max >= sizeof(keepalive_comment) - 1) {
        r->last_write_ms = now;
        memcpy(buf, keepalive_comment, sizeof(keepalive_comment) - 1);
        return (ssize_t)(sizeof(keepalive_comment) - 1);
    }
    struct px_notification *n =
        px_observe_next(r->http->observe, &r->sub, r->last_write_ms + keepalive_ms, &ended, park, r);
    if (n == NULL) {
        return ended ? MHD_CONTENT_READER_END_OF_STREAM : 0; /* 0: parked (suspended) until woken */
    }
    bool end = n->end;
    r->sse_buf = px_notification_sse(n, &r->sse_len);
    px_notification_release(n);
    if (r->sse_buf == NULL) {
        return end ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
    }
    r->last_write_ms = now;
    return copy_pending(r, buf, max);
}

static enum MHD_Result start_stream(struct request *r)
{
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK, sse_reader, r, NULL);
    if (resp == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    r->last_write_ms = cg_now_ms();
    return gw_queue(r, resp, MHD_HTTP_OK);
}

/* ---- long-poll ---- */

static enum MHD_Result reply_notification(struct request *r, const struct px_notification *n)
{
    struct co_optset *opts = malloc(sizeof(*opts));
    if (opts == NULL) {
        return gw_reply_problem(r, PX_ERR_INTERNAL, "out of memory");
    }
    co_optset_init(opts);
    if (n->etag_len > 0) {
        co_optset_add(opts, CO_OPT_ETAG, n->etag, n->etag_len);
    }
    if (n->cf >= 0) {
        co_optset_add_uint(opts, CO_OPT_CONTENT_FORMAT, (uint32_t)n->cf);
    }
    if (n->max_age >= 0) {
        co_optset_add_uint(opts, CO_OPT_MAX_AGE, (uint32_t)n->max_age);
    }
    enum MHD_Result ret = gw_reply_answer(r, n->code, opts, n->payload, n->len, NULL, NULL);
    co_optset_fini(opts);
    free(opts);
    return ret;
}

static enum MHD_Result reply_end(struct request *r, enum px_status status, const char *detail)
{
    if (status != PX_OK) {
        return gw_reply_problem(r, status, detail);
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    return gw_queue(r, resp, MHD_HTTP_NO_CONTENT);
}

enum MHD_Result gw_live_longpoll(struct request *r)
{
    bool ended = false;

    if (cg_now_ms() >= r->longpoll_deadline_ms) {
        return reply_end(r, PX_OK, NULL); /* 204: nothing new within longpoll_timeout_s */
    }
    struct px_notification *n =
        px_observe_next(r->http->observe, &r->sub, r->longpoll_deadline_ms, &ended, park, r);
    if (n == NULL) {
        return ended ? reply_end(r, PX_ERR_BAD_GATEWAY, "the observation ended") : MHD_YES;
    }
    enum MHD_Result ret = n->end ? reply_end(r, n->status, n->detail) : reply_notification(r, n);
    px_notification_release(n);
    return ret;
}

/* ---- entry ---- */

enum MHD_Result gw_live_serve(struct request *r)
{
    uint8_t key[PX_CACHE_KEY_MAX];
    size_t resource_len = 0;
    const char *detail = NULL;

    size_t key_len = px_cache_key(r->route->upstream, CO_GET, &r->creq.opts, NULL, 0, key, sizeof(key),
                                  &resource_len);
    if (key_len == 0) {
        return gw_reply_problem(r, PX_ERR_URI_TOO_LONG, "the resource's options are too large to observe");
    }
    r->sub.wake = on_sub_wake;
    r->sub.want_next = r->live == LIVE_LONGPOLL;
    r->sub.wake_at_ms = 0;
    enum px_status st = px_observe_subscribe(r->http->observe, r->route->upstream, key, key_len,
                                             &r->creq.opts, &r->sub, &detail);
    if (st != PX_OK) {
        return gw_reply_problem(r, st, detail);
    }
    r->subscribed = true;
    if (r->live == LIVE_SSE) {
        return start_stream(r);
    }
    r->state = REQ_LONGPOLL;
    r->longpoll_deadline_ms = cg_now_ms() + (uint64_t)r->http->cfg->limits.longpoll_timeout_s * 1000u;
    return gw_live_longpoll(r);
}

void gw_live_release(struct request *r)
{
    if (r->subscribed) {
        px_observe_unsubscribe(r->http->observe, &r->sub);
        r->subscribed = false;
    }
    free(r->sse_buf);
    r->sse_buf = NULL;
}
