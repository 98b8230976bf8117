/* gateway/sse: a live stream as Server-Sent Events (WHATWG HTML §9.2). The content reader writes each
 * notification the pipeline hands it, a keep-alive comment on quiet streams, and parks (the pipeline
 * suspends the connection) when there is nothing to say. */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "gateway/http_priv.h"

#define SSE_BLOCK 4096

static const char keepalive_comment[] = ": keep-alive\n\n";

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
    struct px_notification *n = px_req_next_event(r->px, r->last_write_ms + keepalive_ms, &ended);
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

struct MHD_Response *gw_sse_response(struct request *r)
{
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK, sse_reader, r, NULL);
    if (resp == NULL) {
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    r->last_write_ms = cg_now_ms();
    return resp;
}
