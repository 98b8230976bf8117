/* fuzz/fuzz_response: libFuzzer harness for the CoAP -> HTTP direction. The input holds a request scenario
 * and the device's datagrams; each is parsed by libcoap (coap_pdu_parse, UDP framing) as the worker receives
 * it, taken apart by proxy/client's own receive helpers, and carried through the real pipeline
 * (proxy/forward, cache, observe, translate): status mapping, options -> headers, Content-Format, ETag,
 * Max-Age, Location-*, payload, cache hits, 304, revalidation, notifications. Must never crash, leak, hang
 * or put a control byte into a header; a device's payload must reach the client byte for byte (coapgw does
 * not rewrite application/link-format or any other body). */
#include "proxy/client.c" /* copy_options, take_block, more_blocks, note_blocks, unsolicited_valid: static */

#include "gateway/sse.c" /* event_text: static */

#include <jansson.h>

#include "proxy/forward.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* gateway/sse.c's content reader (never called here) asks the connection watchdog this. */
bool gw_dl_gone(struct gw_dl *dl, struct gw_dl_conn *c)
{
    (void)dl;
    (void)c;
    abort();
}

static const char config_json[] =
    "{\"upstreams\": {\"dev\": {\"uri\": \"coap://127.0.0.1:5683/base\"}},"
    " \"routes\": [{\"prefix\": \"/api/\", \"upstream\": \"dev\"},"
    "              {\"prefix\": \"/raw/\", \"upstream\": \"dev\", \"cache\": false},"
    "              {\"prefix\": \"/web/\", \"upstream\": \"dev\","
    "               \"cors\": {\"allow_origins\": [\"https://app.example\"]}}],"
    " \"limits\": {\"max_body_bytes\": 4096}}";

#define MAX_DGRAMS 8
#define MAX_STEPS 16

static struct cfg *fz_cfg;
static uint64_t fz_now;
static bool fz_conditional; /* the request being run has If-None-Match */

/* The device's side: what the pipeline sent, and the datagrams it answers with, in order. */
static struct {
    struct px_exchange *sent[MAX_STEPS];
    unsigned nsent, answered;
    struct px_exchange *obs; /* the observation's exchange while it runs */
    bool obs_started;
    const uint8_t *dgram[MAX_DGRAMS];
    size_t dgram_len[MAX_DGRAMS];
    unsigned ndgrams, next;
    /* The payload of the last direct answer, which a MISS or BYPASS answer must carry unchanged. */
    uint8_t last_payload[RX_LIMIT];
    size_t last_len;
    bool last_ok;
    /* What each request of the scenario got (kind PX_ANSWER_COAP only; valid false otherwise). */
    struct record {
        bool valid;
        enum px_xcache xcache;
        struct px_http_response http;
        size_t len;
        uint8_t body[4096];
    } rec[4];
    unsigned nrec;
} dev;

static uint64_t fz_clock(void *arg)
{
    (void)arg;
    return fz_now;
}

static void fz_submit(void *impl, struct px_exchange *x)
{
    (void)impl;
    if (dev.nsent == MAX_STEPS) {
        abort(); /* one request never makes this many exchanges */
    }
    x->priv.block2_first = x->priv.block2_last = x->priv.block1 = -1;
    dev.sent[dev.nsent++] = x;
}

static uint64_t fz_observe(void *impl, struct px_exchange *x)
{
    (void)impl;
    if (dev.obs_started) {
        abort(); /* one resource, one observation */
    }
    dev.obs = x;
    dev.obs_started = true;
    return 1;
}

static void fz_unobserve(void *impl, size_t upstream, uint64_t id)
{
    (void)impl;
    (void)upstream;
    (void)id; /* the harness ends the observation itself once the request is gone */
}

/* The next datagram as libcoap 4.3.1 reads it from a client session's socket, or NULL when there is none
 * or libcoap would drop it (the exchange then waits for its deadline). */
static coap_pdu_t *next_pdu(void)
{
    while (dev.next < dev.ndgrams) {
        unsigned i = dev.next++;
        coap_pdu_t *pdu = coap_pdu_init(0, 0, 0, RX_LIMIT - 4);
        if (pdu == NULL) {
            abort();
        }
        if (dev.dgram_len[i] >= 4 && dev.dgram_len[i] <= RX_LIMIT &&
            coap_pdu_parse(COAP_PROTO_UDP, dev.dgram[i], dev.dgram_len[i], pdu)) {
            return pdu;
        }
        coap_delete_pdu(pdu);
        return NULL;
    }
    return NULL;
}

static void fail_x(struct px_exchange *x, enum px_status st, const char *detail)
{
    x->status = st;
    x->detail = detail;
    x->done(x, x->arg);
}

/* What on_response does with a response to a slot's exchange (proxy/client.c), in its order, less the 4.13
 * retry: the first block of a block-wise body stands for the body here (libcoap would fetch the others).
 * Keep it in step with on_response. */
static void answer(struct px_exchange *x)
{
    coap_pdu_t *pdu = next_pdu();
    const char *detail = NULL;
    size_t len = 0, offset = 0, total = 0;
    const uint8_t *data = NULL;

    dev.last_ok = false;
    if (pdu == NULL) {
        fail_x(x, PX_ERR_TIMEOUT, "the upstream did not answer within timeout_ms");
        return;
    }
    note_blocks(x, pdu);
    x->resp_code = (uint8_t)coap_pdu_get_code(pdu);
    if (!co_code_is_response(x->resp_code)) {
        fail_x(x, PX_ERR_BAD_GATEWAY, "the upstream sent a message that is not a response");
    } else if (unsolicited_valid(x)) {
        fail_x(x, PX_ERR_BAD_GATEWAY, "the upstream answered 2.03 Valid to a request without an ETag");
    } else if (!copy_options(x, pdu)) {
        fail_x(x, PX_ERR_BAD_GATEWAY, "the upstream's response has too many or too large options");
    } else {
        free(x->resp_payload);
        x->resp_payload = NULL;
        x->resp_len = 0;
        enum px_status st = take_block(x, pdu, fz_cfg->limits.max_body_bytes, &detail);
        coap_get_data_large(pdu, &len, &data, &offset, &total);
        if (st == PX_OK && len <= sizeof(dev.last_payload)) {
            if (len > 0) {
                memcpy(dev.last_payload, data, len);
            }
            dev.last_len = len;
            dev.last_ok = true;
        }
        if (st != PX_OK) {
            fail_x(x, st, detail);
        } else {
            x->status = PX_OK;
            x->done(x, x->arg);
        }
    }
    coap_delete_pdu(pdu);
}

static void obs_finish(enum px_status st, const char *detail)
{
    struct px_exchange *x = dev.obs;
    dev.obs = NULL;
    free(x->resp_payload);
    x->resp_payload = NULL;
    x->resp_len = 0;
    fail_x(x, st, detail);
}

/* What obs_response does with a notification (proxy/client.c), in its order; the 24-bit reordering check
 * and the re-registration deadline are left out. Keep it in step with obs_response. */
static void notify(void)
{
    struct px_exchange *x = dev.obs;
    coap_pdu_t *pdu = next_pdu();
    const char *detail = NULL;
    size_t len = 0, offset = 0, total = 0;
    const uint8_t *data = NULL;

    if (pdu == NULL) {
        obs_finish(PX_ERR_TIMEOUT, "the upstream did not answer the registration within timeout_ms");
        return;
    }
    uint8_t code = (uint8_t)coap_pdu_get_code(pdu);
    coap_get_data_large(pdu, &len, &data, &offset, &total);
    if (offset == 0) { /* a new notification starts */
        free(x->resp_payload);
        x->resp_payload = NULL;
        x->resp_len = 0;
    }
    x->resp_code = code;
    if (!co_code_is_response(code)) {
        obs_finish(PX_ERR_BAD_GATEWAY, "the upstream sent a message that is not a response");
    } else if (unsolicited_valid(x)) {
        obs_finish(PX_ERR_BAD_GATEWAY, "the upstream answered 2.03 Valid to a request without an ETag");
    } else if (offset == 0 && !copy_options(x, pdu)) {
        obs_finish(PX_ERR_BAD_GATEWAY, "the upstream's notification has too many or too large options");
    } else if (take_block(x, pdu, fz_cfg->limits.max_body_bytes, &detail) != PX_OK) {
        obs_finish(PX_ERR_BAD_GATEWAY, detail);
    } else if (!more_blocks(pdu)) {
        x->resp_code = code;
        bool observing = co_optset_find(&x->resp, CO_OPT_OBSERVE, 0) != NULL && CO_CODE_CLASS(code) == 2;
        x->notify(x, x->arg);
        if (!observing) {
            obs_finish(PX_OK, "the upstream ended the observation");
        }
    }
    coap_delete_pdu(pdu);
}

/* ---- checks on what the client would get ---- */

static void header_ok(const char *v, size_t cap)
{
    size_t n = strnlen(v, cap);
    if (n == cap) {
        abort(); /* not terminated */
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == 0x7f) {
            abort(); /* a device must not be able to add a header or a line */
        }
    }
}

static void check_problem(const struct px_answer *a)
{
    char body[512];
    json_error_t err;

    px_problem_json(body, sizeof(body), a->problem, a->detail);
    json_t *j = json_loads(body, 0, &err);
    if (j == NULL || json_integer_value(json_object_get(j, "status")) != a->status) {
        abort();
    }
    json_decref(j);
}

static void check_coap(struct px_answer *a)
{
    const struct px_http_response *h = &a->http;
    uint8_t tag[8];

    if (!px_answer_map(a)) {
        check_problem(a);
        return;
    }
    if (a->status < 200 || a->status > 599 || a->status != h->status) {
        abort();
    }
    if (a->status == 304 && !fz_conditional) {
        abort(); /* 304 answers a conditional request only (a device's 2.03 to one without ETag is 502) */
    }
    header_ok(h->content_type, sizeof(h->content_type));
    header_ok(h->etag, sizeof(h->etag));
    header_ok(h->location, sizeof(h->location));
    header_ok(h->allow, sizeof(h->allow));
    if (h->etag[0] != '\0' && px_etag_parse(h->etag, tag) < 1) {
        abort(); /* an ETag we cannot read back would never revalidate */
    }
    if (h->location[0] != '\0' && h->location[0] != '?' &&
        strncmp(h->location, a->prefix, strlen(a->prefix)) != 0) {
        abort(); /* a Location points under the route, or is a query: never elsewhere */
    }
    if (a->body_len > fz_cfg->limits.max_body_bytes || (a->body_len > 0 && a->body == NULL)) {
        abort();
    }
    unsigned sum = 0;
    for (size_t i = 0; i < a->body_len; i++) {
        sum += a->body[i]; /* every byte is readable */
    }
    (void)sum;
    struct record *r = &dev.rec[dev.nrec];
    r->valid = true;
    r->xcache = a->xcache;
    r->http = *h;
    r->len = a->body_len;
    if (a->body_len > 0) {
        memcpy(r->body, a->body, a->body_len);
    }
    if ((a->xcache == PX_XC_MISS || a->xcache == PX_XC_BYPASS) && dev.last_ok &&
        (a->body_len != dev.last_len ||
         (a->body_len > 0 && memcmp(a->body, dev.last_payload, a->body_len) != 0))) {
        abort(); /* the payload is passed on as it came, link-format included */
    }
}

static void check_answer(struct px_answer *a)
{
    switch (a->kind) {
    case PX_ANSWER_PROBLEM:
        check_problem(a);
        break;
    case PX_ANSWER_COAP:
        check_coap(a);
        break;
    case PX_ANSWER_EMPTY:
    case PX_ANSWER_STREAM:
    case PX_ANSWER_PREFLIGHT:
        break;
    }
}

/* ---- the client's side ---- */

struct conn {
    unsigned suspended, resumed;
};

static void on_suspend(void *p)
{
    ((struct conn *)p)->suspended++;
}

static void on_resume(void *p)
{
    ((struct conn *)p)->resumed++;
}

/* ---- SSE: each notification must be one event whose data is its payload (WHATWG HTML §9.2.6) ---- */

struct sse_event {
    char *data; /* the data buffer, "\n" after each data line, as the WHATWG parser builds it */
    size_t data_len;
    char name[16], id[16];
    bool base64;
    unsigned events; /* dispatched (blank lines) */
};

static void sse_field(struct sse_event *e, const char *line, size_t n)
{
    const char *colon = memchr(line, ':', n);
    size_t name_len = colon != NULL ? (size_t)(colon - line) : n;
    const char *v = colon != NULL ? colon + 1 : line + n;
    size_t vn = (size_t)(line + n - v);
    if (vn > 0 && v[0] == ' ') {
        v++;
        vn--;
    }
    if (e->events > 0) {
        abort(); /* a field after the event's end: a device's payload began a second event */
    }
    if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        memcpy(e->data + e->data_len, v, vn);
        e->data_len += vn;
        e->data[e->data_len++] = '\n';
    } else if (name_len == 5 && memcmp(line, "event", 5) == 0 && vn < sizeof(e->name)) {
        memcpy(e->name, v, vn);
        e->name[vn] = '\0';
    } else if (name_len == 2 && memcmp(line, "id", 2) == 0 && vn < sizeof(e->id)) {
        memcpy(e->id, v, vn);
        e->id[vn] = '\0';
    } else if (name_len == 8 && memcmp(line, "encoding", 8) == 0 && vn == 6 && memcmp(v, "base64", 6) == 0) {
        e->base64 = true;
    } else {
        abort(); /* no other field is ever written */
    }
}

/* Parses text as an EventSource does: lines end at CRLF, LF or CR; a blank line dispatches the event. */
static void sse_parse(const char *text, size_t len, struct sse_event *e)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] != '\n' && text[i] != '\r') {
            continue;
        }
        if (i == start) {
            e->events++;
        } else {
            sse_field(e, text + start, i - start);
        }
        if (text[i] == '\r' && i + 1 < len && text[i + 1] == '\n') {
            i++;
        }
        start = i + 1;
    }
    if (start != len || e->events != 1) {
        abort(); /* exactly one event, ended */
    }
    if (e->data_len > 0) {
        e->data_len--; /* the dispatch drops the last "\n" */
    }
}

static size_t base64_decode(const char *s, size_t n, uint8_t *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t k = 0;
    uint32_t v = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n && s[i] != '='; i++) {
        const char *p = memchr(alphabet, s[i], 64);
        if (p == NULL || s[i] == '\0') {
            abort();
        }
        v = v << 6 | (uint32_t)(p - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[k++] = (uint8_t)(v >> bits);
        }
    }
    return k;
}

static void check_event(const struct px_notification *n)
{
    size_t len = 0;
    char *text = event_text(n, &len);
    if (text == NULL) {
        if (!n->end || n->status != PX_OK) {
            abort(); /* only a clean end says nothing */
        }
        return;
    }
    struct sse_event e = {.data = malloc(2 * len + 1)};
    uint8_t *want = malloc(n->len + 1), *got = malloc(len + 1);
    size_t want_len = 0, got_len;
    sse_parse(text, len, &e);
    if (n->end) {
        if (strcmp(e.name, "error") != 0 || e.base64) {
            abort();
        }
    } else {
        char code[5], id[16];
        co_code_format(n->code, code);
        snprintf(id, sizeof(id), "%u", n->seq);
        if (strcmp(e.name, code) != 0 || strcmp(e.id, n->has_seq ? id : "") != 0) {
            abort();
        }
        /* Text goes as is, but SSE has no way to tell CR LF or CR from LF: both arrive as LF. */
        for (size_t i = 0; i < n->len; i++) {
            uint8_t c = n->payload[i];
            if (!e.base64 && c == '\r' && i + 1 < n->len && n->payload[i + 1] == '\n') {
                continue;
            }
            want[want_len++] = !e.base64 && c == '\r' ? '\n' : c;
        }
        if (e.base64) {
            got_len = base64_decode(e.data, e.data_len, got);
        } else {
            memcpy(got, e.data, e.data_len);
            got_len = e.data_len;
        }
        if (got_len != want_len || memcmp(got, want, want_len) != 0) {
            abort(); /* the event's data is not the notification's payload */
        }
    }
    free(want);
    free(got);
    free(e.data);
    free(text);
}

/* Reads a stream's events until it waits or ends; true when it ended. */
static bool drain_stream(struct px_req *req)
{
    bool ended = false;
    struct px_notification *n;
    while ((n = px_req_next_event(req, fz_now + 15000, &ended)) != NULL) {
        check_event(n);
        px_notification_release(n);
    }
    return ended;
}

/* Feeds the device's datagrams to whatever the request waits for, until it is answered (or the stream
 * ends). The answer is checked and released here. */
static void drive(struct px_req *req, struct conn *c, struct px_answer *out, enum px_step step)
{
    struct px_answer a = *out;
    bool streaming = false;

    if (step == PX_STEP_ANSWER) {
        goto answered;
    }
    for (unsigned i = 0; i < MAX_STEPS; i++) {
        if (dev.answered < dev.nsent) {
            answer(dev.sent[dev.answered++]);
        } else if (dev.obs != NULL) {
            notify();
        } else if (!streaming) {
            abort(); /* waiting for nothing */
        }
        if (streaming) {
            if (drain_stream(req)) {
                return;
            }
            continue;
        }
        if (c->resumed == c->suspended) {
            step = px_req_resume(req, &a);
            if (step == PX_STEP_ANSWER) {
                goto answered;
            }
        }
    }
    return; /* still waiting: px_req_free cancels it */
answered:
    check_answer(&a);
    streaming = a.kind == PX_ANSWER_STREAM;
    px_answer_release(&a);
    if (streaming) {
        for (unsigned i = 0; i < MAX_STEPS && !drain_stream(req) && dev.obs != NULL; i++) {
            notify();
        }
    }
}

struct scenario {
    const char *method, *path, *query;
    struct px_headers h;
    const char *body;
};

/* A hit must be the answer that was stored: same status, headers and body (the cache keeps every option
 * the mapping reads). */
static void same_as_stored(const struct record *stored, const struct record *hit)
{
    if (!stored->valid || !hit->valid || hit->xcache != PX_XC_HIT || stored->xcache != PX_XC_MISS) {
        return;
    }
    const struct px_http_response *a = &stored->http, *b = &hit->http;
    if (a->status != b->status || strcmp(a->content_type, b->content_type) != 0 ||
        strcmp(a->etag, b->etag) != 0 || strcmp(a->location, b->location) != 0 || a->max_age != b->max_age ||
        stored->len != hit->len || memcmp(stored->body, hit->body, hit->len) != 0) {
        abort();
    }
}

static void run(struct px_forward *fwd, const struct scenario *s)
{
    struct conn c = {0};
    struct px_front front = {.suspend = on_suspend, .resume = on_resume, .conn = &c};
    struct px_req *req = px_req_new(fwd, &front);
    struct px_answer a;

    if (req == NULL) {
        abort();
    }
    fz_conditional = s->h.if_none_match != NULL;
    if (px_req_begin(req, s->method, s->path, s->query, &s->h) == PX_BEGIN_ANSWER_NOW) {
        if (px_req_run(req, &a) != PX_STEP_ANSWER) {
            abort();
        }
        check_answer(&a);
        px_answer_release(&a);
    } else {
        if (s->body != NULL) {
            px_req_body(req, s->body, strlen(s->body));
        }
        enum px_step step = px_req_run(req, &a);
        drive(req, &c, &a, step);
    }
    px_req_free(req);
    if (dev.obs != NULL) {
        obs_finish(PX_OK, NULL); /* the registry deregistered it when the last subscriber left */
    }
    if (dev.nrec + 1 < sizeof(dev.rec) / sizeof(dev.rec[0])) {
        dev.nrec++;
    }
}

/* byte 0 picks the scenario; the rest is the device's datagrams, each after its length (2 bytes, big
 * endian; a length past the end takes what is left). */
static void split_dgrams(const uint8_t *d, size_t n)
{
    size_t p = 0;
    while (p < n && dev.ndgrams < MAX_DGRAMS) {
        size_t len = p + 2 <= n ? (size_t)(d[p] << 8 | d[p + 1]) : 0;
        p += 2;
        if (p > n || len > n - p) {
            len = p <= n ? n - p : 0;
        }
        dev.dgram[dev.ndgrams] = d + (p <= n ? p : n);
        dev.dgram_len[dev.ndgrams++] = len;
        p += len;
    }
}

static void scenarios(struct px_forward *fwd, uint8_t pick)
{
    char inm[40];
    struct scenario s = {.method = "GET", .path = "/api/r/x"};

    switch (pick & 7) {
    case 0: /* GET, GET again (a hit or not), then conditional and forced revalidation */
        run(fwd, &s);
        fz_now += (pick >> 3) * 1000u;
        run(fwd, &s);
        same_as_stored(&dev.rec[0], &dev.rec[1]);
        /* If-None-Match: "*", the ETag the client was given (among others), or one it never saw. */
        snprintf(inm, sizeof(inm), "W/\"zz\", %s", dev.rec[0].valid ? dev.rec[0].http.etag : "");
        s.h.if_none_match = pick & 8 ? "*" : pick & 32 ? "\"0f\"" : inm;
        s.h.cache_control = pick & 16 ? "no-cache" : "max-age=1, min-fresh=2";
        run(fwd, &s);
        const struct record *hit = &dev.rec[2];
        bool listed = (pick & 8) != 0 || ((pick & 32) == 0 && dev.rec[0].valid && hit->http.etag[0] != '\0' &&
                                          strcmp(hit->http.etag, dev.rec[0].http.etag) == 0);
        if (hit->valid && hit->xcache == PX_XC_HIT && hit->http.status == 200 && listed) {
            abort(); /* a fresh 200 whose ETag (or "*") the client holds is a 304 (RFC 9110 §13.1.2) */
        }
        return;
    case 1: /* GET, a PUT (2.xx invalidates), and the GET again: never the old entry */
        run(fwd, &s);
        s.method = "PUT";
        s.h.content_type = "application/json";
        s.body = "{\"on\":true}";
        run(fwd, &s);
        s = (struct scenario){.method = "GET", .path = "/api/r/x"};
        run(fwd, &s);
        if (dev.rec[1].valid && dev.rec[1].http.status < 300 && dev.rec[2].valid &&
            dev.rec[2].xcache == PX_XC_HIT) {
            abort();
        }
        return;
    case 2: /* POST on a route without cache */
        s.method = "POST";
        s.path = "/raw/";
        s.query = "a=1&b";
        s.h.content_type = "text/plain";
        s.body = "hello";
        run(fwd, &s);
        return;
    case 3: /* CORS: an allowed origin */
        s.path = "/web/.well-known/core";
        s.h.origin = "https://app.example";
        s.h.accept = "application/link-format";
        run(fwd, &s);
        return;
    case 4: /* SSE: the datagrams are the registration's answer and the notifications */
        s.h.accept = "text/event-stream";
        run(fwd, &s);
        return;
    case 5: /* long-poll, then a GET that the notifications may have refreshed */
        s.query = "observe=next&u=1";
        run(fwd, &s);
        s.query = "u=1";
        run(fwd, &s);
        return;
    case 6: /* FETCH twice: keyed with its payload */
        s.method = "FETCH";
        s.h.content_type = "application/cbor";
        s.body = "\xa1\x01\x02";
        run(fwd, &s);
        run(fwd, &s);
        same_as_stored(&dev.rec[0], &dev.rec[1]);
        return;
    case 7: /* HEAD, and an Accept the device answers as it likes */
        s.method = "HEAD";
        s.h.accept = "application/json, text/plain;q=0.5";
        run(fwd, &s);
        return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fz_cfg == NULL) {
        struct cfg_error err;
        coap_startup();
        coap_set_log_level(LOG_EMERG);
        cg_log_set_level(CG_LOG_ERROR);
        if (cfg_parse(config_json, strlen(config_json), "fuzz.json", &fz_cfg, &err) != CFG_OK) {
            abort();
        }
    }
    if (size == 0) {
        return 0;
    }
    memset(&dev, 0, sizeof(dev));
    fz_now = 1000000;
    split_dgrams(data + 1, size - 1);
    struct px_cache *cache = px_cache_create(64, 1 << 16);
    struct px_transport t = {.submit = fz_submit, .observe = fz_observe, .unobserve = fz_unobserve};
    struct px_forward *fwd = px_forward_create(fz_cfg, t, cache, fz_clock, NULL);
    if (cache == NULL || fwd == NULL) {
        abort();
    }
    scenarios(fwd, data[0]);
    px_forward_destroy(fwd);
    px_cache_destroy(cache);
    return 0;
}
