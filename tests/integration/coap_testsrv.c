/* coap_testsrv: a scriptable CoAP server for the integration tests. Each request chooses its own answer
 * through Uri-Query items, so one server instance serves every scenario of a test. Test code only: it
 * favours being obvious over being fast, and it never runs next to production traffic.
 *
 * Usage: coap_testsrv [--port N] [--blackhole]
 *   --port N     UDP port on 127.0.0.1; 0 (default) picks a free one in 20000-26383 (freeport: 26384+).
 *   --blackhole  bind the port and drop every datagram (no ACK, no RST): the 504 timeout case.
 * Prints "ready PORT" on stdout once bound; exits 0 on SIGTERM/SIGINT.
 *
 * Resources (any method):
 *   /r/<anything>?items   scripted answer, items in any order:
 *       code=C.DD (default 2.05)  ct=N  max_age=N  etag=HEX  body=TEXT  size=N (N bytes body, block-wise
 *       when large)  loc_path=a/b  loc_query=x=1 (repeatable)  delay_ms=N (separate response: empty ACK
 *       at once, the answer N ms later)  plen=1 (the body is the received payload length)
 *       silent=1 (never answer; libcoap still sends the empty ACK for a CON request because a server
 *       handler cannot suppress it: use --blackhole for "no ACK at all").
 *       Unknown items are ignored, so tests can add n=<i> to make URIs unique.
 *   /echo[/...]           2.05 text/plain listing what arrived: "method=", "type=", one "opt=<n> val=<hex>"
 *                         line per option in wire order, "payload_len=", "payload_hex=" (first 512 bytes).
 *   /stats                "METHOD /path COUNT" per line for every request to /r and /echo (no query).
 *   /stats/maxconc        highest number of delayed requests outstanding at once.
 *   /stats/outstanding    delayed requests outstanding now.
 *   /stats/reset          zeroes the counters and maxconc.
 *   anything else         4.04 with a diagnostic payload.
 */
#include <coap3/coap.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_COUNTERS 4096
#define MAX_KEY 300
#define PORT_LOW 20000
#define PORT_HIGH 26383 /* below the ephemeral range (32768+); freeport draws from 26384-32767 */

struct counter {
    char key[MAX_KEY];
    unsigned long count;
};

static volatile sig_atomic_t quit;
static struct counter counters[MAX_COUNTERS];
static size_t counters_len;
static unsigned outstanding;
static unsigned max_outstanding;

static void on_signal(int sig)
{
    (void)sig;
    quit = 1;
}

static void count_request(const char *key)
{
    for (size_t i = 0; i < counters_len; i++) {
        if (strcmp(counters[i].key, key) == 0) {
            counters[i].count++;
            return;
        }
    }
    if (counters_len < MAX_COUNTERS) {
        snprintf(counters[counters_len].key, MAX_KEY, "%s", key);
        counters[counters_len].count = 1;
        counters_len++;
    }
}

static const char *method_name(coap_pdu_code_t code)
{
    switch ((int)code) {
    case COAP_REQUEST_CODE_GET:
        return "GET";
    case COAP_REQUEST_CODE_POST:
        return "POST";
    case COAP_REQUEST_CODE_PUT:
        return "PUT";
    case COAP_REQUEST_CODE_DELETE:
        return "DELETE";
    case COAP_REQUEST_CODE_FETCH:
        return "FETCH";
    case COAP_REQUEST_CODE_PATCH:
        return "PATCH";
    case COAP_REQUEST_CODE_IPATCH:
        return "iPATCH";
    }
    return "?";
}

/* Collects the Uri-Path options as "/a/b" (bytes copied as they are) and the first segment. */
static void request_path(const coap_pdu_t *req, char *path, size_t cap, char *first, size_t first_cap)
{
    coap_opt_iterator_t it;
    coap_opt_filter_t filter;
    coap_opt_t *opt;
    size_t used = 0;
    int n = 0;

    coap_option_filter_clear(&filter);
    coap_option_filter_set(&filter, COAP_OPTION_URI_PATH);
    coap_option_iterator_init(req, &it, &filter);
    path[0] = '\0';
    first[0] = '\0';
    while ((opt = coap_option_next(&it)) != NULL) {
        int len = (int)coap_opt_length(opt);
        const char *val = (const char *)coap_opt_value(opt);
        int w = snprintf(path + used, cap - used, "/%.*s", len, val);
        if (w > 0 && (size_t)w < cap - used) {
            used += (size_t)w;
        }
        if (n++ == 0) {
            snprintf(first, first_cap, "%.*s", len, val);
        }
    }
    if (used == 0) {
        snprintf(path, cap, "/");
    }
}

static void release_data(coap_session_t *session, void *data)
{
    (void)session;
    free(data);
}

static void add_text(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req, coap_pdu_t *resp,
                     const coap_string_t *query, const char *text, size_t len)
{
    uint8_t buf[4];

    if (len > 900) {
        coap_add_data_large_response(res, session, req, resp, query, COAP_MEDIATYPE_TEXT_PLAIN, -1, 0, len,
                                     (const uint8_t *)text, release_data, (void *)text);
        return;
    }
    coap_add_option(resp, COAP_OPTION_CONTENT_FORMAT,
                    coap_encode_var_safe(buf, sizeof(buf), COAP_MEDIATYPE_TEXT_PLAIN), buf);
    coap_add_data(resp, len, (const uint8_t *)text);
    free((void *)text);
}

/* ---- /stats ---- */
static void handle_stats(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req,
                         const coap_string_t *query, coap_pdu_t *resp, const char *path)
{
    size_t cap = 64 + counters_len * (MAX_KEY + 24);
    char *text = malloc(cap);
    size_t used = 0;

    if (text == NULL) {
        coap_pdu_set_code(resp, COAP_RESPONSE_CODE(500));
        return;
    }
    text[0] = '\0';
    if (strcmp(path, "/stats/maxconc") == 0) {
        used = (size_t)snprintf(text, cap, "%u", max_outstanding);
    } else if (strcmp(path, "/stats/outstanding") == 0) {
        used = (size_t)snprintf(text, cap, "%u", outstanding);
    } else if (strcmp(path, "/stats/reset") == 0) {
        counters_len = 0;
        max_outstanding = outstanding;
        used = (size_t)snprintf(text, cap, "reset");
    } else {
        for (size_t i = 0; i < counters_len; i++) {
            used += (size_t)snprintf(text + used, cap - used, "%s %lu\n", counters[i].key, counters[i].count);
        }
    }
    coap_pdu_set_code(resp, COAP_RESPONSE_CODE(205));
    add_text(res, session, req, resp, query, text, used);
}

/* ---- /echo ---- */
static size_t hex_append(char *out, size_t cap, size_t used, const uint8_t *val, size_t len)
{
    for (size_t i = 0; i < len && used + 3 < cap; i++) {
        used += (size_t)snprintf(out + used, cap - used, "%02x", val[i]);
    }
    return used;
}

static void handle_echo(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req,
                        const coap_string_t *query, coap_pdu_t *resp)
{
    coap_opt_iterator_t it;
    coap_opt_t *opt;
    size_t len = 0, offset = 0, total = 0;
    const uint8_t *data = NULL;
    size_t cap = 4096 + 3 * 1500;
    char *text = malloc(cap);
    size_t used;

    if (text == NULL) {
        coap_pdu_set_code(resp, COAP_RESPONSE_CODE(500));
        return;
    }
    used = (size_t)snprintf(text, cap, "method=%s\ntype=%s\n", method_name(coap_pdu_get_code(req)),
                            coap_pdu_get_type(req) == COAP_MESSAGE_CON ? "CON" : "NON");
    coap_option_iterator_init(req, &it, COAP_OPT_ALL);
    while ((opt = coap_option_next(&it)) != NULL && used + 64 < cap) {
        used += (size_t)snprintf(text + used, cap - used, "opt=%u val=", (unsigned)it.number);
        used = hex_append(text, cap, used, coap_opt_value(opt), coap_opt_length(opt));
        used += (size_t)snprintf(text + used, cap - used, "\n");
    }
    if (!coap_get_data_large(req, &len, &data, &offset, &total)) {
        len = 0;
        total = 0;
    }
    used +=
        (size_t)snprintf(text + used, cap - used, "payload_len=%zu\npayload_hex=", total > len ? total : len);
    used = hex_append(text, cap, used, data, len > 512 ? 512 : len);
    used += (size_t)snprintf(text + used, cap - used, "\n");
    coap_pdu_set_code(resp, COAP_RESPONSE_CODE(205));
    add_text(res, session, req, resp, query, text, used);
}

/* ---- /r: the scripted answer ---- */
struct script {
    int code;
    long ct;
    long max_age;
    uint8_t etag[8];
    size_t etag_len;
    const char *body;
    size_t body_len;
    long size;
    long delay_ms;
    int silent;
    int plen;
    const char *loc_path;
    size_t loc_path_len;
};

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static size_t hex_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i + 1 < len && n < cap; i += 2) {
        int hi = hex_nibble(in[i]), lo = hex_nibble(in[i + 1]);
        if (hi < 0 || lo < 0) {
            break;
        }
        out[n++] = (uint8_t)(hi << 4 | lo);
    }
    return n;
}

static long num(const char *val, size_t len)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%.*s", (int)len, val);
    return strtol(buf, NULL, 10);
}

/* "4.04" -> COAP_RESPONSE_CODE(404) */
static int parse_code(const char *val, size_t len)
{
    char buf[16];
    unsigned c = 0, d = 0;
    snprintf(buf, sizeof(buf), "%.*s", (int)len, val);
    if (sscanf(buf, "%u.%u", &c, &d) != 2 || c > 7 || d > 31) {
        return COAP_RESPONSE_CODE(205);
    }
    return (int)(c << 5 | d);
}

static void parse_item(struct script *s, const char *item, size_t len)
{
    const char *eq = memchr(item, '=', len);
    if (eq == NULL) {
        return;
    }
    size_t klen = (size_t)(eq - item);
    const char *val = eq + 1;
    size_t vlen = len - klen - 1;
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(item, k, klen) == 0)
    if (KEY("code")) {
        s->code = parse_code(val, vlen);
    } else if (KEY("ct")) {
        s->ct = num(val, vlen);
    } else if (KEY("max_age")) {
        s->max_age = num(val, vlen);
    } else if (KEY("etag")) {
        s->etag_len = hex_decode(val, vlen, s->etag, sizeof(s->etag));
    } else if (KEY("body")) {
        s->body = val;
        s->body_len = vlen;
    } else if (KEY("size")) {
        s->size = num(val, vlen);
    } else if (KEY("delay_ms")) {
        s->delay_ms = num(val, vlen);
    } else if (KEY("silent")) {
        s->silent = num(val, vlen) != 0;
    } else if (KEY("plen")) {
        s->plen = num(val, vlen) != 0;
    } else if (KEY("loc_path")) {
        s->loc_path = val;
        s->loc_path_len = vlen;
    }
#undef KEY
}

static void read_script(const coap_pdu_t *req, struct script *s)
{
    coap_opt_iterator_t it;
    coap_opt_filter_t filter;
    coap_opt_t *opt;

    memset(s, 0, sizeof(*s));
    s->code = COAP_RESPONSE_CODE(205);
    s->ct = -1;
    s->max_age = -1;
    s->size = -1;
    coap_option_filter_clear(&filter);
    coap_option_filter_set(&filter, COAP_OPTION_URI_QUERY);
    coap_option_iterator_init(req, &it, &filter);
    while ((opt = coap_option_next(&it)) != NULL) {
        parse_item(s, (const char *)coap_opt_value(opt), coap_opt_length(opt));
    }
}

static void add_uint_opt(coap_pdu_t *resp, uint16_t number, unsigned long value)
{
    uint8_t buf[8];
    coap_add_option(resp, number, coap_encode_var_safe8(buf, sizeof(buf), value), buf);
}

/* Options go in ascending number order: ETag 4, Location-Path 8, Content-Format 12, Max-Age 14,
 * Location-Query 20. */
static void add_script_options(const coap_pdu_t *req, const struct script *s, coap_pdu_t *resp, int large)
{
    coap_opt_iterator_t it;
    coap_opt_filter_t filter;
    coap_opt_t *opt;

    if (s->etag_len > 0) {
        coap_add_option(resp, COAP_OPTION_ETAG, s->etag_len, s->etag);
    }
    if (s->loc_path != NULL) {
        const char *p = s->loc_path, *end = s->loc_path + s->loc_path_len;
        while (p <= end) {
            const char *slash = memchr(p, '/', (size_t)(end - p));
            const char *seg_end = slash ? slash : end;
            coap_add_option(resp, COAP_OPTION_LOCATION_PATH, (size_t)(seg_end - p), (const uint8_t *)p);
            p = seg_end + 1;
        }
    }
    if (!large && s->ct >= 0) {
        add_uint_opt(resp, COAP_OPTION_CONTENT_FORMAT, (unsigned long)s->ct);
    }
    if (!large && s->max_age >= 0) {
        add_uint_opt(resp, COAP_OPTION_MAXAGE, (unsigned long)s->max_age);
    }
    coap_option_filter_clear(&filter);
    coap_option_filter_set(&filter, COAP_OPTION_URI_QUERY);
    coap_option_iterator_init(req, &it, &filter);
    while ((opt = coap_option_next(&it)) != NULL) {
        const char *v = (const char *)coap_opt_value(opt);
        size_t len = coap_opt_length(opt);
        if (len >= 10 && memcmp(v, "loc_query=", 10) == 0) {
            coap_add_option(resp, COAP_OPTION_LOCATION_QUERY, len - 10, (const uint8_t *)v + 10);
        }
    }
}

static void answer_script(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req,
                          const coap_string_t *query, coap_pdu_t *resp, const struct script *s)
{
    int large = s->size > 900;

    coap_pdu_set_code(resp, (coap_pdu_code_t)s->code);
    add_script_options(req, s, resp, large);
    if (large) {
        uint8_t *data = malloc((size_t)s->size);
        if (data == NULL) {
            coap_pdu_set_code(resp, COAP_RESPONSE_CODE(500));
            return;
        }
        for (long i = 0; i < s->size; i++) {
            data[i] = (uint8_t)('a' + i % 26);
        }
        coap_add_data_large_response(res, session, req, resp, query,
                                     (uint16_t)(s->ct >= 0 ? s->ct : COAP_MEDIATYPE_APPLICATION_OCTET_STREAM),
                                     (int)s->max_age, 0, (size_t)s->size, data, release_data, data);
    } else if (s->size >= 0) {
        uint8_t data[901];
        for (long i = 0; i < s->size; i++) {
            data[i] = (uint8_t)('a' + i % 26);
        }
        coap_add_data(resp, (size_t)s->size, data);
    } else if (s->body != NULL) {
        coap_add_data(resp, s->body_len, (const uint8_t *)s->body);
    } else if (s->plen) {
        size_t len = 0, offset = 0, total = 0;
        const uint8_t *data = NULL;
        char text[32];
        if (!coap_get_data_large(req, &len, &data, &offset, &total)) {
            len = total = 0;
        }
        coap_add_data(resp, (size_t)snprintf(text, sizeof(text), "%zu", total > len ? total : len),
                      (const uint8_t *)text);
    }
}

static void handle_script(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req,
                          const coap_string_t *query, coap_pdu_t *resp, const char *key)
{
    struct script s;
    coap_async_t *async;

    read_script(req, &s);
    async = coap_find_async(session, coap_pdu_get_token(req));
    if (async != NULL) {
        /* The delay fired: libcoap calls us again with a copy of the request, then frees the async. */
        outstanding--;
        answer_script(res, session, req, query, resp, &s);
        return;
    }
    count_request(key);
    if (s.silent) {
        return; /* no code set: an empty ACK for CON, nothing for NON */
    }
    if (s.delay_ms > 0) {
        async = coap_register_async(session, req, (coap_tick_t)s.delay_ms * COAP_TICKS_PER_SECOND / 1000);
        if (async == NULL) {
            coap_pdu_set_code(resp, COAP_RESPONSE_CODE(503));
            return;
        }
        outstanding++;
        if (outstanding > max_outstanding) {
            max_outstanding = outstanding;
        }
        return; /* empty ACK now, the separate response when the delay fires */
    }
    answer_script(res, session, req, query, resp, &s);
}

static void handle_any(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req,
                       const coap_string_t *query, coap_pdu_t *resp)
{
    char path[256], first[64], key[MAX_KEY];

    request_path(req, path, sizeof(path), first, sizeof(first));
    snprintf(key, sizeof(key), "%s %s", method_name(coap_pdu_get_code(req)), path);
    if (strcmp(first, "stats") == 0) {
        handle_stats(res, session, req, query, resp, path);
    } else if (strcmp(first, "echo") == 0) {
        count_request(key);
        handle_echo(res, session, req, query, resp);
    } else if (strcmp(first, "r") == 0) {
        handle_script(res, session, req, query, resp, key);
    } else {
        static const char diag[] = "coap_testsrv: no such resource";
        coap_pdu_set_code(resp, COAP_RESPONSE_CODE(404));
        coap_add_data(resp, sizeof(diag) - 1, (const uint8_t *)diag);
    }
}

/* ---- start-up ---- */
static unsigned random_port(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    srandom((unsigned)(ts.tv_nsec ^ (getpid() << 16)));
    return PORT_LOW + (unsigned)random() % (PORT_HIGH - PORT_LOW);
}

static void loopback(coap_address_t *addr, unsigned port)
{
    coap_address_init(addr);
    addr->addr.sin.sin_family = AF_INET;
    addr->addr.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr->addr.sin.sin_port = htons((uint16_t)port);
    addr->size = sizeof(struct sockaddr_in);
}

static int run_blackhole(unsigned want)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    unsigned port = want ? want : random_port();
    coap_address_t addr;
    int tries = 0;

    if (fd < 0) {
        perror("socket");
        return 1;
    }
    for (;;) {
        loopback(&addr, port);
        if (bind(fd, &addr.addr.sa, addr.size) == 0) {
            break;
        }
        if (want || ++tries > 200) {
            perror("bind");
            return 1;
        }
        port = PORT_LOW + (port - PORT_LOW + 7919) % (PORT_HIGH - PORT_LOW);
    }
    printf("ready %u\n", port);
    fflush(stdout);
    while (!quit) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char buf[2048];
        if (poll(&p, 1, 200) > 0) {
            (void)recv(fd, buf, sizeof(buf), 0);
        }
    }
    close(fd);
    return 0;
}

static int run_server(unsigned want)
{
    coap_context_t *ctx;
    coap_resource_t *res;
    coap_address_t addr;
    unsigned port = want ? want : random_port();
    int tries = 0;

    coap_startup();
    coap_set_log_level(LOG_EMERG); /* failed binds while searching a port are expected */
    ctx = coap_new_context(NULL);
    if (ctx == NULL) {
        fprintf(stderr, "coap_testsrv: cannot create context\n");
        return 1;
    }
    coap_context_set_block_mode(ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
    for (;;) {
        loopback(&addr, port);
        if (coap_new_endpoint(ctx, &addr, COAP_PROTO_UDP) != NULL) {
            break;
        }
        if (want || ++tries > 200) {
            fprintf(stderr, "coap_testsrv: cannot bind 127.0.0.1:%u\n", port);
            coap_free_context(ctx);
            return 1;
        }
        port = PORT_LOW + (port - PORT_LOW + 7919) % (PORT_HIGH - PORT_LOW);
    }
    coap_set_log_level(LOG_WARNING);
    res = coap_resource_unknown_init2(handle_any, 0);
    coap_register_request_handler(res, COAP_REQUEST_GET, handle_any);
    coap_register_request_handler(res, COAP_REQUEST_POST, handle_any);
    coap_register_request_handler(res, COAP_REQUEST_DELETE, handle_any);
    coap_register_request_handler(res, COAP_REQUEST_FETCH, handle_any);
    coap_register_request_handler(res, COAP_REQUEST_PATCH, handle_any);
    coap_register_request_handler(res, COAP_REQUEST_IPATCH, handle_any);
    coap_add_resource(ctx, res);

    printf("ready %u\n", port);
    fflush(stdout);
    while (!quit) {
        coap_io_process(ctx, 200);
    }
    coap_free_context(ctx);
    coap_cleanup();
    return 0;
}

int main(int argc, char **argv)
{
    unsigned port = 0;
    int blackhole = 0;
    struct sigaction sa;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--blackhole") == 0) {
            blackhole = 1;
        } else {
            fprintf(stderr, "usage: coap_testsrv [--port N] [--blackhole]\n");
            return 2;
        }
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return blackhole ? run_blackhole(port) : run_server(port);
}
