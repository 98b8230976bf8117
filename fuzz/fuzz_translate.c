/* fuzz/fuzz_translate: libFuzzer harness for the HTTP -> CoAP direction. Three modes (byte 0):
 *   0: proxy/translate alone: path, query, Content-Type, Accept, If-Match, If-None-Match -> CoAP request;
 *   1: proxy/translate's response mapping over any option list (CoAP options from devices);
 *   2, 3: the whole pipeline (proxy/forward): method, target, every header the pipeline reads and a body
 *      through route, auth, CORS, forward proxy (IP literals only: no DNS here), translation and cache;
 *      each exchange sent is built into a CoAP PDU by proxy/client's own add_options and read back with
 *      libcoap, so what reaches a device is what the translation meant.
 * Must never crash, leak, hang or read out of bounds. */
#include "proxy/client.c" /* add_options, sort_options: static */

#include <sys/stat.h>

#include "proxy/forward.h"
#include "proxy/fproxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Splits the input at NUL bytes into up to n strings (missing ones are NULL). */
static void split(char *buf, size_t len, const char **out, size_t n)
{
    size_t k = 0;
    const char *start = buf;
    for (size_t i = 0; i < n; i++) {
        out[i] = NULL;
    }
    for (size_t i = 0; i <= len && k < n; i++) {
        if (i == len || buf[i] == '\0') {
            out[k++] = start;
            start = buf + i + 1;
        }
    }
}

static void fuzz_request(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH", "HEAD"};
    static const char *const base[] = {"base", "x y"};
    char *buf = malloc(size + 1);
    const char *f[6];
    struct px_coap_request *out = malloc(sizeof(*out));
    const char *detail = NULL;

    memcpy(buf, data, size);
    buf[size] = '\0';
    co_optset_init(&out->opts);
    split(buf, size, f, 6);
    struct px_http_request in = {
        .method = methods[size % 8],
        .rest = f[0] ? f[0] : "",
        .query = f[1],
        .content_type = f[2],
        .accept = f[3],
        .if_match = f[4],
        .if_none_match = f[5],
        .body_len = size % 3,
    };
    if (px_request_to_coap(&in, base, size % 3, out, &detail) != PX_OK && detail == NULL) {
        abort(); /* every refusal says why */
    }
    uint16_t cf;
    bool has;
    if (f[2] != NULL) {
        px_media_to_format(f[2], &cf);
    }
    px_accept_to_coap(f[3], &has, &cf);
    uint8_t tag[8];
    if (f[4] != NULL) {
        px_etag_parse(f[4], tag);
    }
    co_optset_fini(&out->opts);
    free(out);
    free(buf);
}

static void fuzz_response(const uint8_t *data, size_t size)
{
    struct co_optset *opts = malloc(sizeof(*opts));
    struct px_http_response out;
    static const char *const base[] = {"a", "b"};

    co_optset_init(opts);
    /* The input is a list of options: number (1 byte), length (1 byte), value. */
    size_t i = 1;
    while (i + 2 <= size) {
        uint16_t number = data[i];
        size_t len = data[i + 1];
        i += 2;
        if (len > size - i) {
            len = size - i;
        }
        co_optset_add(opts, number, data + i, len);
        i += len;
    }
    struct px_coap_response in = {.code = size > 0 ? data[0] : 0, .opts = opts, .payload_len = size};
    px_response_to_http(&in, "/api/", base, size % 3, size % 2 ? "GET, PUT" : NULL, &out);
    char media[128], problem[256];
    px_format_to_media((uint16_t)(size * 257), media, sizeof(media));
    char *detail = malloc(size + 1);
    memcpy(detail, data, size);
    detail[size] = '\0';
    px_problem_json(problem, sizeof(problem), PX_ERR_BAD_GATEWAY, detail);
    free(detail);
    co_optset_fini(opts);
    free(opts);
}

/* ---- mode 2: the pipeline ---- */

static const char pipeline_json[] =
    "{\"upstreams\": {\"dev\": {\"uri\": \"coap://127.0.0.1:5683/base\"},"
    "                 \"named\": {\"uri\": \"coap://sensor.example:5683\"}},"
    " \"routes\": [{\"prefix\": \"/api/\", \"upstream\": \"dev\"},"
    "              {\"prefix\": \"/ro/\", \"upstream\": \"named\", \"methods\": [\"GET\", \"FETCH\"]},"
    "              {\"prefix\": \"/sec/\", \"upstream\": \"dev\", \"cache\": false,"
    "               \"auth\": {\"type\": \"bearer\", \"tokens_file\": \"tokens.txt\"}},"
    "              {\"prefix\": \"/key/\", \"upstream\": \"dev\","
    "               \"auth\": {\"type\": \"api_key\", \"keys_file\": \"tokens.txt\", \"header\": \"X-K\"}},"
    "              {\"prefix\": \"/web/\", \"upstream\": \"dev\", \"methods\": [\"GET\", \"PUT\"],"
    "               \"cors\": {\"allow_origins\": [\"https://app.example\"],"
    "                        \"allow_headers\": [\"Content-Type\"]}}],"
    " \"forward_proxy\": {\"enabled\": true, \"allow\": [\"127.0.0.0/8\", \"[::1]:5683\"]},"
    " \"limits\": {\"max_body_bytes\": 64}}";

static struct cfg *fz_cfg;
static const char *fz_xk;

static uint64_t fz_clock(void *arg)
{
    (void)arg;
    return 1000000;
}

/* What the transport was handed; completed after the pipeline returns, never inside its call (the
 * transport's contract: done() comes later, on the carrier's thread, outside the pipeline's locks). */
static struct px_exchange *fz_sent, *fz_observed;

static void submit_x(void *impl, struct px_exchange *x)
{
    (void)impl;
    if (fz_sent != NULL || x->upstream >= fz_cfg->upstreams_len) {
        abort(); /* one request, one exchange, to a configured upstream */
    }
    if (x->target != NULL) {
        /* The forward proxy is never open: what it sends to is inside forward_proxy.allow. */
        const struct sockaddr_storage *to = x->target;
        uint16_t port = ntohs(to->ss_family == AF_INET ? ((const struct sockaddr_in *)to)->sin_port
                                                       : ((const struct sockaddr_in6 *)to)->sin6_port);
        if (!cg_addr_allowed(fz_cfg->forward_proxy.allow, fz_cfg->forward_proxy.allow_len, to, port)) {
            abort();
        }
    }
    fz_sent = x;
}

/* An exchange as the worker would send it: options in a PDU (build_pdu's add_options) and read back. */
static void device(struct px_exchange *x)
{
    coap_pdu_t *pdu = coap_pdu_init(COAP_MESSAGE_CON, (coap_pdu_code_t)x->code, 1, RX_LIMIT - 4);
    if (pdu == NULL) {
        abort();
    }
    if (add_options(pdu, x->req, 0, NULL, 0)) {
        unsigned order[CO_OPT_MAX], i = 0;
        coap_opt_iterator_t oi;
        coap_opt_t *opt;
        sort_options(x->req, order);
        coap_option_iterator_init(pdu, &oi, COAP_OPT_ALL);
        while ((opt = coap_option_next(&oi)) != NULL) {
            if (i == x->req->count) {
                abort();
            }
            const struct co_opt *o = &x->req->opt[order[i]];
            if (oi.number != o->number || coap_opt_length(opt) != o->len ||
                memcmp(coap_opt_value(opt), co_opt_value(x->req, o), o->len) != 0) {
                abort(); /* the device would read another request than the one translated */
            }
            i++;
        }
        if (i != x->req->count) {
            abort();
        }
    }
    coap_delete_pdu(pdu);
    x->status = PX_OK;
    x->resp_code = CO_CODE(2, 5);
    co_optset_clear(&x->resp);
    co_optset_add_uint(&x->resp, CO_OPT_CONTENT_FORMAT, 0);
    x->resp_payload = NULL;
    x->resp_len = 0;
    x->done(x, x->arg);
}

static uint64_t observe(void *impl, struct px_exchange *x)
{
    (void)impl;
    if (fz_observed != NULL) {
        abort();
    }
    fz_observed = x;
    return 1;
}

/* The observation ends unanswered: this harness is about the request side. */
static void observe_end(void)
{
    struct px_exchange *x = fz_observed;
    fz_observed = NULL;
    x->status = PX_ERR_TIMEOUT;
    x->detail = "the upstream did not answer the registration within timeout_ms";
    x->done(x, x->arg);
}

static void unobserve(void *impl, size_t upstream, uint64_t id)
{
    (void)impl;
    (void)upstream;
    (void)id;
}

static const char *get_header(void *ctx, const char *name)
{
    (void)ctx;
    return strcasecmp(name, "X-K") == 0 ? fz_xk : NULL;
}

static void noop(void *conn)
{
    (void)conn;
}

static void pipeline_init(void)
{
    char dir[] = "/tmp/coapgw-fuzz-XXXXXX", name[64];
    struct cfg_error err;

    coap_startup();
    coap_set_log_level(LOG_EMERG);
    cg_log_set_level(CG_LOG_ERROR);
    if (mkdtemp(dir) == NULL) {
        abort();
    }
    snprintf(name, sizeof(name), "%s/tokens.txt", dir);
    FILE *f = fopen(name, "w");
    if (f == NULL || fputs("s3cret-token\n", f) < 0 || fclose(f) != 0 || chmod(name, 0600) != 0) {
        abort();
    }
    snprintf(name, sizeof(name), "%s/gw.json", dir);
    if (cfg_parse(pipeline_json, strlen(pipeline_json), name, &fz_cfg, &err) != CFG_OK) {
        abort();
    }
    snprintf(name, sizeof(name), "%s/tokens.txt", dir);
    unlink(name); /* read at load time */
    rmdir(dir);
}

/* A forward-proxy target naming a host would be resolved (DNS): such inputs are left out. */
static bool resolves_a_name(const char *path, const char *query)
{
    const char *prefix = fz_cfg->forward_proxy.prefix;
    struct px_fp_target t;
    const char *reason;

    if (strncmp(path, prefix, strlen(prefix)) != 0) {
        return false;
    }
    const char *rest = path + strlen(prefix);
    bool name =
        px_fp_target_parse(rest, strlen(rest), query, &t, &reason) == 0 && t.host_kind == PX_FP_HOST_NAME;
    px_fp_target_fini(&t);
    return name;
}

/* Input: NUL-separated method, path, query, the headers of struct px_headers in order, X-K, and the body. */
static void fuzz_pipeline(const uint8_t *data, size_t size, bool with_query)
{
    char *buf = malloc(size + 1);
    const char *f[15];
    struct px_answer a;

    memcpy(buf, data, size);
    buf[size] = '\0';
    split(buf, size, f, 15);
    if (f[0] == NULL || f[1] == NULL || f[1][0] != '/' || resolves_a_name(f[1], with_query ? f[2] : NULL)) {
        free(buf);
        return;
    }
    struct px_headers h = {.content_type = f[3],
                           .content_length = f[4],
                           .accept = f[5],
                           .if_match = f[6],
                           .if_none_match = f[7],
                           .cache_control = f[8],
                           .pragma = f[9],
                           .origin = f[10],
                           .access_control_method = f[11],
                           .authorization = f[12],
                           .get = get_header};
    fz_xk = f[13];
    struct px_cache *cache = px_cache_create(16, 1 << 14);
    struct px_transport t = {.submit = submit_x, .observe = observe, .unobserve = unobserve};
    struct px_forward *fwd = px_forward_create(fz_cfg, t, cache, fz_clock, NULL);
    struct px_front front = {.suspend = noop, .resume = noop};
    struct px_req *req = fwd != NULL ? px_req_new(fwd, &front) : NULL;
    if (req == NULL) {
        abort();
    }
    if (px_req_begin(req, f[0], f[1], with_query ? f[2] : NULL, &h) == PX_BEGIN_READ_BODY && f[14] != NULL) {
        px_req_body(req, f[14], strlen(f[14]));
    }
    enum px_step step = px_req_run(req, &a);
    for (unsigned i = 0; i < 4 && step == PX_STEP_WAIT; i++) {
        if (fz_sent != NULL) {
            struct px_exchange *x = fz_sent;
            fz_sent = NULL;
            device(x);
        } else if (fz_observed != NULL) {
            observe_end();
        } else {
            abort(); /* waiting for nothing */
        }
        step = px_req_resume(req, &a);
    }
    if (step == PX_STEP_ANSWER) {
        if (a.kind == PX_ANSWER_PROBLEM && (a.status < 400 || a.status > 599 || a.detail == NULL)) {
            abort(); /* a refusal is an error status that says why */
        }
        px_answer_map(&a);
        px_answer_release(&a);
    }
    if (fz_sent != NULL) {
        abort(); /* an answered request has no exchange on its way */
    }
    px_req_free(req);
    if (fz_observed != NULL) {
        observe_end(); /* deregistered when its last subscriber left */
    }
    px_forward_destroy(fwd);
    px_cache_destroy(cache);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fz_cfg == NULL) {
        pipeline_init();
    }
    if (size == 0) {
        return 0;
    }
    switch (data[0] & 3) {
    case 0:
        fuzz_request(data + 1, size - 1);
        break;
    case 1:
        fuzz_response(data + 1, size - 1);
        break;
    default:
        fuzz_pipeline(data + 1, size - 1, data[0] & 1);
        break;
    }
    return 0;
}
