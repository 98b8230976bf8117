/* gateway/sse: a live stream as Server-Sent Events (WHATWG HTML §9.2). The content reader writes each
 * notification the pipeline hands it, a keep-alive comment on quiet streams, and parks (the pipeline
 * suspends the connection) when there is nothing to say. */
#include <microhttpd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/clock.h"
#include "gateway/http_priv.h"

#define SSE_BLOCK 4096

static const char keepalive_comment[] = ": keep-alive\n\n";

/* ---- framing (WHATWG HTML §9.2) ---- */

/* An event being formatted; a failed append (out of memory) spoils the whole event. */
struct text {
    struct cg_buf b;
    bool failed;
};

static void text_add(struct text *t, const char *s, size_t n)
{
    if (!t->failed && cg_buf_append(&t->b, s, n, SIZE_MAX) != 0) {
        t->failed = true;
    }
}

static void text_str(struct text *t, const char *s)
{
    text_add(t, s, strlen(s));
}

/* Content-Formats whose payload is text (sent as is); everything else goes base64. */
static bool text_format(int cf)
{
    static const int text_formats[] = {0, 40, 41, 50, 51, 52, 110, 111, 112, 310, 311, 320, 432};
    for (size_t i = 0; i < sizeof(text_formats) / sizeof(text_formats[0]); i++) {
        if (cf == text_formats[i]) {
            return true;
        }
    }
    return false;
}

/* Printable UTF-8 (tabs and line breaks allowed): safe to send as SSE data lines. */
static bool valid_utf8_text(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        size_t extra;
        if (c < 0x80) {
            if ((c < 0x20 && c != '\n' && c != '\r' && c != '\t') || c == 0x7f) {
                return false;
            }
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) {
            extra = 1;
        } else if ((c & 0xf0) == 0xe0) {
            extra = 2;
        } else if ((c & 0xf8) == 0xf0) {
            extra = 3;
        } else {
            return false;
        }
        if (len - i <= extra) {
            return false;
        }
        for (size_t k = 1; k <= extra; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return false;
            }
        }
        i += extra + 1;
    }
    return true;
}

/* "data: " lines: SSE ends a line at CR, LF or CRLF, so each of them starts a new data line. */
static void add_data_lines(struct text *t, const char *p, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || p[i] == '\n' || p[i] == '\r') {
            text_str(t, "data: ");
            text_add(t, p + start, i - start);
            text_str(t, "\n");
            if (i + 1 < len && p[i] == '\r' && p[i + 1] == '\n') {
                i++;
            }
            start = i + 1;
        }
    }
}

static void add_base64(struct text *t, const uint8_t *p, size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char quad[4];

    text_str(t, "data: ");
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len) {
            v |= (uint32_t)p[i + 1] << 8;
        }
        if (i + 2 < len) {
            v |= p[i + 2];
        }
        quad[0] = alphabet[(v >> 18) & 63];
        quad[1] = alphabet[(v >> 12) & 63];
        quad[2] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
        quad[3] = i + 2 < len ? alphabet[v & 63] : '=';
        text_add(t, quad, 4);
    }
    text_str(t, "\n");
}

/* One notification as one event: "id: <seq>", "event: <code, e.g. 2.05>", the payload as data lines (text
 * kept as is; anything else base64 with "encoding: base64"), or for an end with an error "event: error" and
 * the detail. A malloc'd text (NUL-terminated), NULL on OOM or for a clean end (nothing to say). */
static char *event_text(const struct px_notification *n, size_t *len)
{
    struct text t = {CG_BUF_INIT, false};
    char line[96];

    if (n->end) {
        if (n->status == PX_OK) {
            return NULL;
        }
        text_str(&t, "event: error\n");
        add_data_lines(&t, n->detail ? n->detail : px_strerror(n->status),
                       strlen(n->detail ? n->detail : px_strerror(n->status)));
    } else {
        char code[5];
        co_code_format(n->code, code);
        if (n->has_seq) {
            snprintf(line, sizeof(line), "id: %u\n", n->seq);
            text_str(&t, line);
        }
        snprintf(line, sizeof(line), "event: %s\n", code);
        text_str(&t, line);
        bool text = n->cf >= 0 ? text_format(n->cf) : valid_utf8_text(n->payload, n->len);
        if (text) {
            add_data_lines(&t, (const char *)n->payload, n->len);
        } else {
            text_str(&t, "encoding: base64\n");
            add_base64(&t, n->payload, n->len);
        }
    }
    text_add(&t, "\n", 2); /* the blank line ends the event; the NUL after it is not sent */
    if (t.failed) {
        cg_buf_free(&t.b);
        return NULL;
    }
    size_t n_bytes;
    char *out = (char *)cg_buf_take(&t.b, &n_bytes);
    *len = n_bytes - 1;
    return out;
}

/* ---- the stream ---- */

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

/* The stream's last event, written when its end came without one: the copy is sent, then the stream ends. */
static ssize_t last_event(struct request *r, const char *text, char *buf, size_t max)
{
    size_t n = strlen(text);

    r->sse_end_seen = true;
    if ((r->sse_buf = malloc(n)) == NULL) {
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    memcpy(r->sse_buf, text, n);
    r->sse_len = n;
    return copy_pending(r, buf, max);
}

/* No event to write: the stream parked (0), or it is over. An end that came without an end notification is
 * either the shutdown (the registry ends every stream at once: the client is told, so that it reconnects
 * elsewhere or later rather than taking it for the device's end) or the registry dropping a subscriber that
 * fell PX_SUB_QUEUE notifications behind when it had no memory for an end notification (proxy/observe.c
 * sub_deliver): either way the client is told why. */
static ssize_t no_event(struct request *r, bool ended, char *buf, size_t max)
{
    char text[128];

    if (!ended) {
        return 0; /* parked (suspended) until woken */
    }
    if (r->sse_end_seen) {
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    if (px_forward_draining(r->gen->fwd)) {
        return last_event(r, "event: error\ndata: the gateway is shutting down\n\n", buf, max);
    }
    snprintf(text, sizeof(text), "event: error\ndata: the subscriber fell %d notifications behind\n\n",
             PX_SUB_QUEUE);
    return last_event(r, text, buf, max);
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct request *r = cls;
    uint64_t keepalive_ms = (uint64_t)r->gen->cfg->limits.sse_keepalive_s * 1000u;
    bool ended = false;
    (void)pos;

    if (gw_dl_gone(r->http->dl, r->dl)) {
        /* The client closed the parked stream (the watchdog saw it and resumed us): END_WITH_ERROR makes
         * MHD close the connection, and on_completed unsubscribes, which frees the slot. */
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (r->sse_off < r->sse_len) {
        return copy_pending(r, buf, max);
    }
    free(r->sse_buf);
    r->sse_buf = NULL;
    r->sse_len = r->sse_off = 0;
    if (r->sse_end_seen) {
        return MHD_CONTENT_READER_END_OF_STREAM; /* the last event (an error) is out */
    }

    uint64_t now = cg_now_ms();
    if (now >= r->last_write_ms + keepalive_ms && max >= sizeof(keepalive_comment) - 1) {
        r->last_write_ms = now;
        memcpy(buf, keepalive_comment, sizeof(keepalive_comment) - 1);
        return (ssize_t)(sizeof(keepalive_comment) - 1);
    }
    struct px_notification *n = px_req_next_event(r->px, r->last_write_ms + keepalive_ms, &ended);
    if (n == NULL) {
        return no_event(r, ended, buf, max);
    }
    bool end = n->end;
    r->sse_end_seen = end;
    r->sse_buf = event_text(n, &r->sse_len);
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
