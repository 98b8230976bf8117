/* fuzz/fuzz_response: libFuzzer harness for the CoAP -> HTTP direction. The input holds a request scenario
 * and the device's datagrams; each is parsed by libcoap (coap_pdu_parse, UDP framing) as the worker receives
 * it, taken apart by proxy/client's own receive helpers, and carried through the real pipeline
 * (proxy/forward, cache, observe, translate): status mapping, options -> headers, Content-Format, ETag,
 * Max-Age, Location-*, payload, cache hits, 304, revalidation, notifications. Must never crash, leak, hang
 * or put a control byte into a header; a device's payload must reach the client byte for byte (coapgw does
 * not rewrite application/link-format or any other body). */
#include "proxy/client.c" /* copy_options, take_block, more_blocks, note_blocks, unsolicited_valid: static */

#include <jansson.h>

#include "proxy/forward.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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

/* What on_response does with a response to a slot's exchange (proxy/client.c), less the 4.13 retry: the
 * first block of a block-wise body stands for the body here (libcoap would fetch the others). */
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

/* What obs_response does with a notification (proxy/client.c); the 24-bit reordering check is left out. */
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
    if (!co_code_is_response(code)) {
        obs_finish(PX_ERR_BAD_GATEWAY, "the upstream sent a message that is not a response");
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
    header_ok(h->content_type, sizeof(h->content_type));
    header_ok(h->etag, sizeof(h->etag));
    header_ok(h->location, sizeof(h->location));
    header_ok(h->allow, sizeof(h->allow));
    if (h->etag[0] != '\0' && px_etag_parse(h->etag, tag) < 1) {
        abort(); /* an ETag we cannot read back would never revalidate */
    }
    if (h->location[0] != '\0' && h->location[0] != '/' && h->location[0] != '?') {
        abort();
    }
    if (a->body_len > fz_cfg->limits.max_body_bytes || (a->body_len > 0 && a->body == NULL)) {
        abort();
    }
    unsigned sum = 0;
    for (size_t i = 0; i < a->body_len; i++) {
        sum += a->body[i]; /* every byte is readable */
    }
    (void)sum;
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

/* Reads a stream's events until it waits or ends; true when it ended. */
static bool drain_stream(struct px_req *req)
{
    bool ended = false;
    struct px_notification *n;
    while ((n = px_req_next_event(req, fz_now + 15000, &ended)) != NULL) {
        if (n->len > 0 && n->payload[n->len - 1] == 0xff && n->payload[0] == 0xff) {
            fz_now += 1; /* touch the payload */
        }
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

static void run(struct px_forward *fwd, const struct scenario *s)
{
    struct conn c = {0};
    struct px_front front = {.suspend = on_suspend, .resume = on_resume, .conn = &c};
    struct px_req *req = px_req_new(fwd, &front);
    struct px_answer a;

    if (req == NULL) {
        abort();
    }
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
        snprintf(inm, sizeof(inm), "\"%02x\", *", pick);
        s.h.if_none_match = pick & 8 ? "*" : inm;
        s.h.cache_control = pick & 16 ? "no-cache" : "max-age=1, min-fresh=2";
        run(fwd, &s);
        return;
    case 1: /* PUT with a body (2.01 Location invalidates), then a GET */
        s.method = "PUT";
        s.h.content_type = "application/json";
        s.body = "{\"on\":true}";
        run(fwd, &s);
        s = (struct scenario){.method = "GET", .path = "/api/r/x"};
        run(fwd, &s);
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
